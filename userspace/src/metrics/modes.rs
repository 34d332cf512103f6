//! What the kernel gave us, as metrics: the running kernel's release, the XDP attach mode
//! of the interface and the AF_XDP bind mode of each queue, each beside what the config
//! asked for, so that a fallback the operator did not choose (native → generic, zero-copy
//! → copy) is visible on a dashboard and can fire an alert.

use prometheus::{IntGaugeVec, Opts, Registry};

/// The modes in effect, filled in as the source starts (empty for the UDP source).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkModes {
    /// The interface the program is attached to.
    pub interface: String,
    /// `(mode, requested)` of the XDP attachment, e.g. `("generic", "auto")`.
    pub xdp: Option<(&'static str, &'static str)>,
    /// `(queue, mode, requested)` of each AF_XDP socket, e.g. `(0, "copy", "auto")`.
    pub queues: Vec<(u32, &'static str, &'static str)>,
}

impl LinkModes {
    /// One line for the log and systemd's status: `eth0 native; queue 0 copy`.
    pub fn summary(&self) -> String {
        let mut out = self.interface.clone();
        if let Some((mode, _)) = self.xdp {
            out.push(' ');
            out.push_str(mode);
        }
        for (queue, mode, _) in &self.queues {
            out.push_str(&format!("; queue {queue} {mode}"));
        }
        out
    }
}

/// The gauges (value 1 on the current label set).
pub struct ModeGauges {
    xdp: IntGaugeVec,
    bind: IntGaugeVec,
}

impl ModeGauges {
    /// Registers `sluice_kernel_info`, `sluice_xdp_attach_mode`, `sluice_xsk_bind_mode`.
    pub fn register(registry: &Registry, kernel_release: &str) -> prometheus::Result<Self> {
        let kernel = IntGaugeVec::new(
            Opts::new("sluice_kernel_info", "The running kernel (value 1)."),
            &["release"],
        )?;
        registry.register(Box::new(kernel.clone()))?;
        kernel.with_label_values(&[kernel_release]).set(1);
        let xdp = IntGaugeVec::new(
            Opts::new(
                "sluice_xdp_attach_mode",
                "XDP attach mode in effect (value 1): native or generic, with the configured source.xdp_mode.",
            ),
            &["interface", "mode", "requested"],
        )?;
        registry.register(Box::new(xdp.clone()))?;
        let bind = IntGaugeVec::new(
            Opts::new(
                "sluice_xsk_bind_mode",
                "AF_XDP bind mode in effect per queue (value 1): zero_copy or copy, with the configured source.bind_mode.",
            ),
            &["interface", "queue", "mode", "requested"],
        )?;
        registry.register(Box::new(bind.clone()))?;
        Ok(Self { xdp, bind })
    }

    /// Shows `modes` (clearing what it no longer holds).
    pub fn update(&self, modes: &LinkModes) {
        self.xdp.reset();
        self.bind.reset();
        if let Some((mode, requested)) = modes.xdp {
            self.xdp
                .with_label_values(&[modes.interface.as_str(), mode, requested])
                .set(1);
        }
        for (queue, mode, requested) in &modes.queues {
            self.bind
                .with_label_values(&[
                    modes.interface.as_str(),
                    &queue.to_string(),
                    mode,
                    requested,
                ])
                .set(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_exported_with_what_was_requested() {
        let registry = Registry::new();
        let gauges = ModeGauges::register(&registry, "6.1.0-27-amd64").expect("register");
        let modes = LinkModes {
            interface: "eth0".into(),
            xdp: Some(("generic", "auto")),
            queues: vec![(0, "copy", "auto"), (1, "zero_copy", "auto")],
        };
        gauges.update(&modes);
        assert_eq!(
            modes.summary(),
            "eth0 generic; queue 0 copy; queue 1 zero_copy"
        );
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .expect("encode");
        let text = String::from_utf8(out).expect("utf-8");
        for line in [
            r#"sluice_kernel_info{release="6.1.0-27-amd64"} 1"#,
            r#"sluice_xdp_attach_mode{interface="eth0",mode="generic",requested="auto"} 1"#,
            r#"sluice_xsk_bind_mode{interface="eth0",mode="copy",queue="0",requested="auto"} 1"#,
            r#"sluice_xsk_bind_mode{interface="eth0",mode="zero_copy",queue="1",requested="auto"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
