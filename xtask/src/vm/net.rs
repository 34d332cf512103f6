//! A VM run's network: a network namespace of its own (`sluice-vm-<pid>-<n>`, deleted by
//! exact name on drop) holding the tap device qemu plugs the guest NIC into.
//!
//! Only documentation addresses: the host side (tap0) is 192.0.2.1/24 with a fixed MAC,
//! the guest 192.0.2.2/24 with [`super::qemu::GUEST_MAC`]. Nothing leaves the namespace.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use sluice_testkit::netns::Netns;

use crate::cmd;

pub use sluice_testkit::netns::format_mac;

/// The tap device's name inside the namespace.
pub const TAP: &str = "tap0";
/// The host side's address (the tap).
pub const HOST_ADDR: &str = "192.0.2.1";
/// The guest's address (configured by systemd-networkd in the image).
pub const GUEST_ADDR: &str = "192.0.2.2";
/// The tap's MAC: the source of the frames the host sends.
pub const HOST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The namespace name of this process's `n`-th run.
pub fn namespace_name(pid: u32, n: usize) -> String {
    format!("sluice-vm-{pid}-{n}")
}

/// A namespace with an up tap device addressed 192.0.2.1/24.
pub struct TapNetns {
    netns: Netns,
}

impl TapNetns {
    /// Creates the next namespace of this process and its tap.
    ///
    /// # Errors
    /// When a command fails (not root, name taken).
    pub fn create() -> anyhow::Result<TapNetns> {
        let name = namespace_name(std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let netns = Netns::create(&name).with_context(|| format!("creating namespace {name}"))?;
        let made = TapNetns { netns };
        let mac = format_mac(&HOST_MAC);
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["tuntap", "add", "dev", TAP, "mode", "tap"],
            vec!["link", "set", TAP, "address", &mac],
            vec!["addr", "add", "192.0.2.1/24", "dev", TAP],
            vec!["link", "set", TAP, "up"],
        ] {
            cmd::stdout(made.command("ip").args(&args))?;
        }
        Ok(made)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        self.netns.name()
    }

    /// The namespace itself.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        self.netns.command(program)
    }

    /// `curl` of `http://192.0.2.2:<port><path>` from the namespace, bounded to 10 s; the
    /// body, or `None` when it failed.
    pub fn http_get(&self, port: u16, path: &str) -> Option<String> {
        let out = cmd::output(self.command("curl").args([
            "-sf",
            "--max-time",
            "10",
            &format!("http://{GUEST_ADDR}:{port}{path}"),
        ]))
        .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for TapNetns {
    fn drop(&mut self) {
        // qemu has exited (the Vm drops first); the namespace goes with `self.netns`.
        let _ = cmd::output(self.command("ip").args(["link", "del", TAP]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_named_by_pid_and_run() {
        assert_eq!(namespace_name(4242, 3), "sluice-vm-4242-3");
    }
}
