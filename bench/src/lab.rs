//! The benchmark's wire: two private network namespaces joined by a veth, so generated
//! traffic never touches the host's interfaces.
//!
//! [`BenchLab::create`] builds on [`sluice_testkit::netns::NetnsPair`]: unique names
//! (`sl-<pid>-<n>-a` sends, `...-b` receives), fixed MACs, 198.51.100.1/2 and
//! 2001:db8:51::1/2 on the veth ends, deletion by exact name on drop and on SIGINT/SIGTERM.
//!
//! Two facts of veth shape every measurement (see ../shared/toolchain.md):
//! - Live frames from the generator are lost silently unless the receiving veth has NAPI:
//!   attach an XDP program there (even `sluice_pass`, see [`crate::kernel_path`]) first.
//! - Without threaded NAPI, the receiver's XDP program and stack run in softirq on the
//!   *sender's* core. [`BenchLab::set_threaded_napi`] (only possible once XDP is attached on
//!   the receiver) and [`BenchLab::pin_napi_threads`] move that work to a core of its own.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use sluice_testkit::netns::{
    ADDR_V4_A, ADDR_V4_B, ADDR_V6_A, ADDR_V6_B, MAC_A, MAC_B, Netns, NetnsError, NetnsPair,
};

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Creating or entering a namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A command run inside a namespace failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status or spawn error.
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// An interface does not exist in its namespace.
    #[error("no interface {interface} in namespace {namespace}")]
    NoInterface {
        /// The interface.
        interface: String,
        /// The namespace.
        namespace: String,
    },
    /// No NAPI kernel thread appeared for the interface after enabling threaded NAPI.
    #[error("no napi/{interface}* kernel thread found (is threaded NAPI on?)")]
    NoNapiThread {
        /// The interface.
        interface: String,
    },
    /// Setting a thread's CPU affinity failed.
    #[error("cannot pin thread {pid} to CPU {cpu}: {source}")]
    Affinity {
        /// The thread id.
        pid: i32,
        /// The CPU.
        cpu: usize,
        /// The error.
        source: std::io::Error,
    },
}

/// Which end of the veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The generator's end (namespace `a`).
    Sender,
    /// The receiver's end (namespace `b`), where XDP, sluice or the kernel path listens.
    Receiver,
}

/// Sender and receiver namespaces joined by a veth (see the module docs).
#[derive(Debug)]
pub struct BenchLab {
    pair: NetnsPair,
}

impl BenchLab {
    /// Creates both namespaces and the veth, addressed and up. Needs root (or
    /// CAP_SYS_ADMIN + CAP_NET_ADMIN) and `ip`.
    ///
    /// # Errors
    /// [`LabError::Netns`] from the first step that fails; what was created is deleted.
    pub fn create() -> Result<Self, LabError> {
        Ok(Self {
            pair: NetnsPair::create()?,
        })
    }

    /// The namespace of `side`.
    pub fn netns(&self, side: Side) -> &Netns {
        match side {
            Side::Sender => &self.pair.a,
            Side::Receiver => &self.pair.b,
        }
    }

    /// The generator's namespace.
    pub fn sender(&self) -> &Netns {
        &self.pair.a
    }

    /// The receiver's namespace.
    pub fn receiver(&self) -> &Netns {
        &self.pair.b
    }

    /// The veth end in `side`'s namespace.
    pub fn interface(&self, side: Side) -> &str {
        match side {
            Side::Sender => &self.pair.if_a,
            Side::Receiver => &self.pair.if_b,
        }
    }

    /// The sender's veth name.
    pub fn sender_if(&self) -> &str {
        &self.pair.if_a
    }

    /// The receiver's veth name.
    pub fn receiver_if(&self) -> &str {
        &self.pair.if_b
    }

    /// MAC address of `side`'s veth end.
    pub fn mac(&self, side: Side) -> [u8; 6] {
        match side {
            Side::Sender => MAC_A,
            Side::Receiver => MAC_B,
        }
    }

    /// IPv4 address of `side`'s veth end (198.51.100.1 sender, .2 receiver).
    pub fn addr_v4(&self, side: Side) -> Ipv4Addr {
        match side {
            Side::Sender => ADDR_V4_A,
            Side::Receiver => ADDR_V4_B,
        }
    }

    /// IPv6 address of `side`'s veth end (2001:db8:51::1 sender, ::2 receiver).
    pub fn addr_v6(&self, side: Side) -> Ipv6Addr {
        match side {
            Side::Sender => ADDR_V6_A,
            Side::Receiver => ADDR_V6_B,
        }
    }

    /// The interface index of `side`'s veth end, inside its namespace.
    ///
    /// # Errors
    /// [`LabError::NoInterface`] or [`LabError::Netns`].
    pub fn ifindex(&self, side: Side) -> Result<u32, LabError> {
        let name = self.interface(side).to_owned();
        let namespace = self.netns(side);
        let index = namespace.run_in(|| ifindex_here(&name))?;
        index.ok_or_else(|| LabError::NoInterface {
            interface: name,
            namespace: namespace.name().to_owned(),
        })
    }

    /// Runs `program args` inside `side`'s namespace (`ip netns exec`), failing with its
    /// stderr on a non-zero exit; returns its stdout.
    ///
    /// # Errors
    /// [`LabError::Command`].
    pub fn exec(&self, side: Side, program: &str, args: &[&str]) -> Result<String, LabError> {
        let mut command = self.netns(side).command(program);
        command.args(args).stdin(Stdio::null());
        run(command, &format!("{program} {}", args.join(" ")))
    }

    /// Turns threaded NAPI on or off for `side`'s veth end (`/sys/class/net/IF/threaded`,
    /// written through `ip netns exec`, which mounts the namespace's own sysfs). On veth it
    /// can only be written while an XDP program is attached to that end.
    ///
    /// # Errors
    /// [`LabError::Command`] (e.g. "Operation not supported" without XDP).
    pub fn set_threaded_napi(&self, side: Side, on: bool) -> Result<(), LabError> {
        let script = format!(
            "echo {} > /sys/class/net/{}/threaded",
            u8::from(on),
            self.interface(side)
        );
        self.exec(side, "sh", &["-c", &script]).map(|_| ())
    }

    /// Pins every NAPI kernel thread of `side`'s veth end to `cpu` and returns their
    /// thread ids. Call after [`BenchLab::set_threaded_napi`]. The kernel names them
    /// `napi/<if>-<id>` (cut to 15 bytes), which is what is matched.
    ///
    /// # Errors
    /// [`LabError::NoNapiThread`] when none exists, [`LabError::Affinity`].
    pub fn pin_napi_threads(&self, side: Side, cpu: usize) -> Result<Vec<i32>, LabError> {
        let interface = self.interface(side);
        let mut wanted = format!("napi/{interface}-");
        wanted.truncate(15);
        let pids = kernel_threads_named(&wanted);
        if pids.is_empty() {
            return Err(LabError::NoNapiThread {
                interface: interface.to_owned(),
            });
        }
        for &pid in &pids {
            pin_thread(pid, cpu)?;
        }
        Ok(pids)
    }
}

impl BenchLab {
    /// The veth driver's counters of `side`'s end (`ethtool -S`), e.g.
    /// `tx_queue_0_xdp_xmit` / `tx_queue_0_xdp_xmit_errors` on the sender (frames the
    /// generator's redirect queued / could not queue into the peer's 256-entry ring) and
    /// `rx_queue_0_xdp_packets`, `rx_queue_0_xdp_drops`, `rx_queue_0_drops` on the receiver.
    ///
    /// # Errors
    /// [`LabError::Command`] when `ethtool` fails.
    pub fn veth_stats(&self, side: Side) -> Result<BTreeMap<String, u64>, LabError> {
        let output = self.exec(side, "ethtool", &["-S", self.interface(side)])?;
        Ok(parse_ethtool_stats(&output))
    }
}

/// `name: value` lines of `ethtool -S` (the header line has no number and is skipped).
fn parse_ethtool_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// `if_nametoindex` in the calling thread's namespace.
pub(crate) fn ifindex_here(name: &str) -> Option<u32> {
    let c_name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Runs `command`, returning its stdout, or its stderr as an error.
pub(crate) fn run(mut command: Command, shown: &str) -> Result<String, LabError> {
    let output = command.output().map_err(|e| LabError::Command {
        command: shown.to_owned(),
        status: e.to_string(),
        stderr: String::new(),
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: shown.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Thread ids of the processes whose `comm` starts with `prefix` (kernel threads included).
fn kernel_threads_named(prefix: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with(prefix))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Sets the CPU affinity of thread `pid` (0 = the calling thread) to exactly `cpu`.
pub fn pin_thread(pid: i32, cpu: usize) -> Result<(), LabError> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; CPU_SET ignores CPUs beyond the set's size.
    unsafe {
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
    }
    // SAFETY: valid set pointer and size.
    let rc = unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(LabError::Affinity {
            pid,
            cpu,
            source: std::io::Error::last_os_error(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethtool_stats_are_parsed_by_name() {
        let text = "NIC statistics:\n     peer_ifindex: 2\n     tx_queue_0_xdp_xmit: 2111320\n     tx_queue_0_xdp_xmit_errors: 0\n";
        let stats = parse_ethtool_stats(text);
        assert_eq!(stats.len(), 3);
        assert_eq!(stats["tx_queue_0_xdp_xmit"], 2_111_320);
        assert_eq!(stats["tx_queue_0_xdp_xmit_errors"], 0);
    }
}
