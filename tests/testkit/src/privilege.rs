//! One rule for tests that need root, a tool, or a kernel feature: in CI they fail loudly,
//! elsewhere they skip with a printed reason.
//!
//! CI (`CI=true`) runs as root on a machine set up by `cargo xtask setup`, so a missing
//! prerequisite there is a broken environment that must not pass as "skipped". A developer
//! running `cargo test` unprivileged still gets a green run for the tests they can run,
//! with a line saying what was skipped and why.

use std::io::Write as _;
use std::path::PathBuf;

/// True when running under CI (`CI=true`).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// True when the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Applies the rule to a prerequisite that is missing: panics in CI, otherwise prints
/// `SKIP <test_name>: <reason>` and returns false. Returns true when `present`.
///
/// # Panics
/// When `present` is false and [`is_ci`].
pub fn require(test_name: &str, present: bool, reason: &str) -> bool {
    if present {
        return true;
    }
    if is_ci() {
        panic!("{test_name}: {reason} (CI=true: failing instead of skipping)");
    }
    // Straight to the stderr handle: the test harness captures `eprintln!` of passing
    // tests, and a skip must be visible.
    let _ = writeln!(std::io::stderr(), "SKIP {test_name}: {reason}");
    false
}

/// Requires root (see [`require`]).
///
/// # Panics
/// When not root and [`is_ci`].
pub fn require_root(test_name: &str) -> bool {
    require(test_name, is_root(), "needs root (euid 0)")
}

/// The path of `tool` on `PATH`, if it is there and executable.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(tool))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Requires `tool` on `PATH` (see [`require`]); `cargo xtask setup` installs the tools the
/// tests use (ip, ping, tcpreplay, tshark, tcpdump, ethtool).
///
/// # Panics
/// When missing and [`is_ci`].
pub fn require_tool(test_name: &str, tool: &str) -> bool {
    require(
        test_name,
        find_tool(tool).is_some(),
        &format!("needs `{tool}` on PATH (run `cargo xtask setup`)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_prerequisite_is_accepted_without_output() {
        assert!(require("privilege::present", true, "unused"));
    }

    #[test]
    fn find_tool_locates_sh_and_rejects_nonsense() {
        assert!(find_tool("sh").is_some());
        assert_eq!(find_tool("sluice-testkit-no-such-tool"), None);
    }

    #[test]
    fn missing_prerequisite_skips_outside_ci_and_panics_in_ci() {
        let result = std::panic::catch_unwind(|| require("privilege::missing", false, "absent"));
        if is_ci() {
            assert!(result.is_err());
        } else {
            assert_eq!(result.ok(), Some(false));
        }
    }
}
