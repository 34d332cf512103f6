//! One qemu VM (software emulation, TCG: KVM does not work on these machines) booted from
//! a cached kernel and a run's disk image, with its NIC on the tap of the run's network
//! namespace and its serial console on the qemu process's stdin and stdout.
//!
//! The console is logged to a file and parsed for the probe's markers
//! ([`super::probe::parse_marker`]); every wait is bounded. The qemu process is ours: it
//! is SIGKILLed by PID when the [`Vm`] drops (a power cut, which is also what
//! [`Vm::power_cut`] does on purpose).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::probe::parse_marker;
use super::rootfs::Kernel;

/// The guest NIC's MAC: frames must be addressed to it (qemu filters by MAC).
pub const GUEST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// The emulated NIC, which decides the XDP mode the guest can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nic {
    /// `virtio_net` in the guest: native (driver) XDP. VLAN filtering off, or qemu drops
    /// tagged frames before the guest sees them.
    VirtioNet,
    /// `e1000` in the guest: no native XDP, so Sluice falls back to generic mode.
    E1000,
}

impl Nic {
    /// Short name for case names.
    pub fn name(self) -> &'static str {
        match self {
            Nic::VirtioNet => "virtio-net",
            Nic::E1000 => "e1000",
        }
    }

    /// The XDP attach mode Sluice must report with `xdp_mode = "auto"`.
    pub fn expected_xdp_mode(self) -> &'static str {
        match self {
            Nic::VirtioNet => "native",
            Nic::E1000 => "generic",
        }
    }

    /// Whether the emulated NIC pads frames shorter than 60 bytes before the guest sees
    /// them (e1000 does, like a real wire; virtio-net hands them over as sent).
    pub fn pads_short_frames(self) -> bool {
        self == Nic::E1000
    }

    fn device(self) -> String {
        let mac = sluice_testkit::netns::format_mac(&GUEST_MAC);
        match self {
            Nic::VirtioNet => format!("virtio-net-pci,netdev=n0,mac={mac},ctrl_vlan=off"),
            Nic::E1000 => format!("e1000,netdev=n0,mac={mac}"),
        }
    }
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Kernel and initrd.
    pub kernel: Kernel,
    /// The run's raw disk image.
    pub disk: PathBuf,
    /// The guest NIC.
    pub nic: Nic,
    /// The tap device (in the run's namespace) the NIC is plugged into.
    pub tap: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
}

/// qemu's arguments for `spec`.
pub fn qemu_args(spec: &VmSpec) -> Vec<String> {
    let mut args: Vec<String> = [
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-smp",
        &spec.cpus.to_string(),
        "-m",
        &spec.memory_mib.to_string(),
        "-kernel",
        &spec.kernel.vmlinuz.to_string_lossy(),
        "-initrd",
        &spec.kernel.initrd.to_string_lossy(),
        "-append",
        // panic=1 with -no-reboot: a guest kernel panic ends qemu at once, so a wait
        // fails then instead of at its timeout.
        "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet loglevel=3 panic=1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend([
        "-drive".to_owned(),
        // cache=none: a guest fsync reaches the image file, so a killed qemu loses only
        // what the guest had not synced — the premise of the power-cut test.
        format!(
            "file={},format=raw,if=virtio,cache=none",
            spec.disk.to_string_lossy()
        ),
        "-netdev".to_owned(),
        format!("tap,id=n0,ifname={},script=no,downscript=no", spec.tap),
        "-device".to_owned(),
        spec.nic.device(),
    ]);
    args.extend(
        [
            "-display",
            "none",
            "-vga",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
        ]
        .map(str::to_owned),
    );
    args
}

/// A running VM.
pub struct Vm {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    log: PathBuf,
    /// Every `(key, value)` marker seen so far, in order.
    pub markers: Vec<(String, String)>,
}

impl Vm {
    /// Starts qemu inside the namespace `netns`, its console logged to `log`.
    ///
    /// # Errors
    /// When qemu cannot start.
    pub fn boot(netns: &str, spec: &VmSpec, log: &Path) -> anyhow::Result<Vm> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns, "qemu-system-x86_64"])
            .args(qemu_args(spec))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting `{}`", crate::cmd::display(&command)))?;
        let stdin = child.stdin.take();
        let (sender, lines) = channel();
        let mut file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let stdout = child.stdout.take().context("qemu stdout")?;
        let stderr = child.stderr.take().context("qemu stderr")?;
        let err_sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_sender.send(format!("qemu stderr: {line}"));
            }
        });
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\r', '\n'])
                            .to_owned();
                        let _ = writeln!(file, "{line}");
                        if sender.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Vm {
            child,
            stdin,
            lines,
            log: log.to_owned(),
            markers: Vec::new(),
        })
    }

    /// Waits up to `timeout` for the probe's marker `key` and returns its value.
    ///
    /// # Errors
    /// When the time runs out or qemu exits first (with the end of the console log).
    pub fn wait_for(&mut self, key: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some((k, v)) = parse_marker(&line) {
                        self.markers.push((k.to_owned(), v.to_owned()));
                        if k == key {
                            return Ok(v.to_owned());
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "no `{key}` from the guest within {timeout:?}; console:\n{}",
                        self.console_tail(25)
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!(
                        "qemu exited before `{key}`; console:\n{}",
                        self.console_tail(25)
                    )
                }
            }
        }
    }

    /// The values of every marker `key` seen so far.
    pub fn values(&self, key: &str) -> Vec<&str> {
        self.markers
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Sends one command line to the probe.
    ///
    /// # Errors
    /// When the console is closed.
    pub fn send(&mut self, command: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("the console is closed")?;
        stdin
            .write_all(format!("{command}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .context("writing to the guest console")
    }

    /// Asks the guest to power off and waits up to `timeout` for qemu to exit; kills it
    /// after that.
    ///
    /// # Errors
    /// When the guest did not power off in time.
    pub fn power_off(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.send("poweroff")?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait().context("waiting for qemu")?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.power_cut()?;
        bail!("the guest did not power off within {timeout:?}")
    }

    /// Kills qemu (SIGKILL by PID) and reaps it: the power cut.
    ///
    /// # Errors
    /// When the process cannot be killed or reaped.
    pub fn power_cut(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait().context("waiting for qemu")?.is_none() {
            self.child.kill().context("killing qemu")?;
        }
        self.child.wait().context("reaping qemu")?;
        Ok(())
    }

    /// Whether the guest's kernel panicked (its console says so).
    pub fn kernel_panicked(&self) -> bool {
        std::fs::read_to_string(&self.log)
            .is_ok_and(|text| text.contains("Kernel panic - not syncing"))
    }

    /// The console log's path.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the console log.
    pub fn console_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Err(e) = self.power_cut() {
            eprintln!("warning: stopping qemu (pid {}): {e:#}", self.child.id());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_boots_the_kernel_on_the_image_with_the_nic_on_the_tap() {
        let spec = VmSpec {
            kernel: Kernel {
                release: "6.1.0-41-amd64".into(),
                vmlinuz: "/c/boot/vmlinuz-6.1.0-41-amd64".into(),
                initrd: "/c/boot/initrd.img-6.1.0-41-amd64".into(),
            },
            disk: "/run/disk.img".into(),
            nic: Nic::VirtioNet,
            tap: "tap0".into(),
            cpus: 2,
            memory_mib: 1536,
        };
        let args = qemu_args(&spec).join(" ");
        assert_eq!(
            args,
            "-accel tcg,thread=multi -cpu max -smp 2 -m 1536 \
             -kernel /c/boot/vmlinuz-6.1.0-41-amd64 -initrd /c/boot/initrd.img-6.1.0-41-amd64 \
             -append root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet loglevel=3 panic=1 \
             -drive file=/run/disk.img,format=raw,if=virtio,cache=none \
             -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
             -device virtio-net-pci,netdev=n0,mac=02:00:00:00:00:01,ctrl_vlan=off \
             -display none -vga none -serial stdio -monitor none -no-reboot"
        );
        let e1000 = VmSpec {
            nic: Nic::E1000,
            ..spec
        };
        assert!(qemu_args(&e1000).contains(&"e1000,netdev=n0,mac=02:00:00:00:00:01".to_owned()));
    }
}
