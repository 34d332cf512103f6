//! Refuses to start without the capabilities the XDP source needs, naming the missing one,
//! instead of failing later with a bare EPERM from deep inside a syscall.

/// A capability the XDP source needs, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needed {
    /// Name, e.g. `CAP_BPF`.
    pub name: &'static str,
    /// Bit number in the capability sets.
    pub bit: u32,
    /// What it is needed for.
    pub why: &'static str,
}

/// Capabilities the XDP source always needs.
pub const REQUIRED: [Needed; 4] = [
    Needed {
        name: "CAP_BPF",
        bit: 39,
        why: "to create BPF maps and load the XDP program",
    },
    Needed {
        name: "CAP_PERFMON",
        bit: 38,
        why: "for the verifier to accept variable packet offsets",
    },
    Needed {
        name: "CAP_NET_ADMIN",
        bit: 12,
        why: "to attach XDP to the interface and fill the XSKMAP",
    },
    Needed {
        name: "CAP_NET_RAW",
        bit: 13,
        why: "to create AF_XDP sockets",
    },
];

/// Needed only when the UMEM is larger than RLIMIT_MEMLOCK.
pub const IPC_LOCK: Needed = Needed {
    name: "CAP_IPC_LOCK",
    bit: 14,
    why: "to lock the UMEM in memory (it exceeds RLIMIT_MEMLOCK; or raise LimitMEMLOCK)",
};

/// Why the process may not start the XDP source.
#[derive(Debug, thiserror::Error)]
#[error("missing capability {name}: needed {why}")]
pub struct MissingCapability {
    /// The capability.
    pub name: &'static str,
    /// What it is for.
    pub why: &'static str,
}

/// The effective capability set of this process (from /proc/self/status).
pub fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Checks `effective` for everything needed to lock `umem_bytes` of UMEM.
pub fn check(effective: u64, umem_bytes: u64, memlock_limit: u64) -> Result<(), MissingCapability> {
    let mut needed: Vec<Needed> = REQUIRED.to_vec();
    if umem_bytes > memlock_limit {
        needed.push(IPC_LOCK);
    }
    match needed.iter().find(|n| effective & (1u64 << n.bit) == 0) {
        Some(n) => Err(MissingCapability {
            name: n.name,
            why: n.why,
        }),
        None => Ok(()),
    }
}

/// The soft RLIMIT_MEMLOCK in bytes (`u64::MAX` when unlimited).
pub fn memlock_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return 0;
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        limit.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = (1 << 39) | (1 << 38) | (1 << 12) | (1 << 13) | (1 << 14);

    #[test]
    fn names_the_first_missing_capability() {
        assert!(check(ALL, 1 << 30, 0).is_ok());
        let e = check(ALL & !(1 << 13), 0, u64::MAX).err();
        assert_eq!(e.map(|e| e.name), Some("CAP_NET_RAW"));
        let e = check(ALL & !(1 << 39), 0, u64::MAX).err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("missing capability CAP_BPF: needed to create BPF maps and load the XDP program")
        );
    }

    #[test]
    fn ipc_lock_only_when_umem_exceeds_memlock() {
        let without_lock = ALL & !(1 << 14);
        assert!(check(without_lock, 1 << 20, 8 << 20).is_ok());
        let e = check(without_lock, 16 << 20, 8 << 20).err();
        assert_eq!(e.map(|e| e.name), Some("CAP_IPC_LOCK"));
    }
}
