//! Shared helpers for the privileged tests: a throw-away network namespace with a veth
//! pair, and running code inside it.
//!
//! The namespace gets a unique name (`xsk-<pid>-<n>`) and is deleted by exact name in
//! `Drop`, so a failing assertion does not leave it behind.

#![allow(dead_code)] // not every test binary uses every helper
#![allow(clippy::unwrap_used)] // tests may panic

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Returns `true` when the test may run: the project's rule for tests that need root
/// (`sluice_testkit::privilege`: fail under `CI=true`, else skip with a printed reason).
pub fn privileged(test: &str) -> bool {
    sluice_testkit::privilege::require(
        test,
        sluice_testkit::privilege::is_root(),
        "needs root (network namespaces, veth, AF_XDP sockets); run `cargo test -p sluice-xsk` as root",
    )
}

fn run(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A network namespace holding a veth pair `vxa` <-> `vxb`, both up.
pub struct VethNs {
    name: String,
}

impl VethNs {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "xsk-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(&["netns", "add", &name]);
        // From here on, Drop cleans up even if a later step panics.
        let ns = Self { name };
        // Keep the links quiet: no IPv6 means no DAD/MLD/router solicitations showing up
        // as unexpected frames. Best effort (IPv6 may be absent); set before the links
        // exist so they inherit it from `default`.
        ns.run(|| {
            for knob in ["all", "default"] {
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6"), "1");
            }
        });
        run(&[
            "-n", &ns.name, "link", "add", "vxa", "type", "veth", "peer", "name", "vxb",
        ]);
        run(&["-n", &ns.name, "link", "set", "vxa", "up"]);
        run(&["-n", &ns.name, "link", "set", "vxb", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a thread that has entered the namespace (setns affects only the
    /// calling thread) and returns its result; panics in `f` propagate.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: a valid namespace fd; only this thread's namespace changes.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for VethNs {
    fn drop(&mut self) {
        let ok = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("warning: could not delete network namespace {}", self.name);
        }
    }
}

/// Interface index of `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> u32 {
    let c = CString::new(name).unwrap();
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(
        idx,
        0,
        "if_nametoindex({name}): {}",
        std::io::Error::last_os_error()
    );
    idx
}
