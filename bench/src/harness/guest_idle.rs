//! How this VM's vCPUs idle, for the report, and `--guest-halt-poll-ns`, which changes it
//! for one run.
//!
//! The daemon's CPU per packet may depend on what its threads find when they wake: a
//! vCPU that halts at once when idle (cpuidle's `haltpoll` driver with
//! `guest_halt_poll_ns` 0, as on the Firecracker VMs this project is measured on) gives
//! its core to the host, and a worker may then come back to caches others have used; a
//! guest that polls first keeps its core a while. Measured once (BENCHMARKS.md, session
//! 16): no effect beyond the spread between runs. So the report names the guest's idle
//! policy, and the option sets `haltpoll`'s poll time for a run, to repeat such a
//! comparison, and puts the old one back after (on Ctrl-C too: the testkit's signal
//! cleanup writes it back).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// cpuidle's current driver.
const CPUIDLE_DRIVER: &str = "/sys/devices/system/cpu/cpuidle/current_driver";
/// `haltpoll`'s poll time: how long an idle vCPU polls before it halts.
pub const HALT_POLL_NS: &str = "/sys/module/haltpoll/parameters/guest_halt_poll_ns";

/// The guest's idle policy, as the report states it: `cpuidle haltpoll,
/// guest_halt_poll_ns 0`, or the driver alone.
pub fn describe() -> String {
    describe_from(&read_trimmed(CPUIDLE_DRIVER), &read_trimmed(HALT_POLL_NS))
}

fn describe_from(driver: &Option<String>, poll_ns: &Option<String>) -> String {
    match (driver.as_deref(), poll_ns.as_deref()) {
        (Some(driver), Some(ns)) if driver == "haltpoll" => {
            format!("cpuidle {driver}, guest_halt_poll_ns {ns}")
        }
        (Some(driver), _) => format!("cpuidle {driver}"),
        (None, _) => "cpuidle driver unknown".into(),
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// `guest_halt_poll_ns` set for a run: the old value goes back when this is dropped.
#[derive(Debug)]
pub struct HaltPollOverride {
    path: PathBuf,
    previous: String,
}

impl HaltPollOverride {
    /// Sets `haltpoll`'s `guest_halt_poll_ns` to `ns`.
    ///
    /// # Errors
    /// The parameter is missing (the guest idles with another driver) or cannot be read
    /// or written.
    pub fn set(ns: u64) -> anyhow::Result<Self> {
        Self::set_at(Path::new(HALT_POLL_NS), ns).with_context(|| {
            format!(
                "--guest-halt-poll-ns: this guest's idle driver is {}",
                read_trimmed(CPUIDLE_DRIVER).unwrap_or_else(|| "unknown".into())
            )
        })
    }

    fn set_at(path: &Path, ns: u64) -> anyhow::Result<Self> {
        let previous = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read it", path.display()))?
            .trim()
            .to_owned();
        // Registered first: a signal between the write and the return still restores it.
        sluice_testkit::cleanup::register_restore(path, &previous);
        if let Err(e) = std::fs::write(path, ns.to_string()) {
            sluice_testkit::cleanup::unregister_restore(path);
            return Err(e).with_context(|| format!("{}: cannot write {ns}", path.display()));
        }
        Ok(Self {
            path: path.to_owned(),
            previous,
        })
    }

    /// The value it had before.
    pub fn previous(&self) -> &str {
        &self.previous
    }
}

impl Drop for HaltPollOverride {
    fn drop(&mut self) {
        let written = std::fs::write(&self.path, &self.previous);
        sluice_testkit::cleanup::unregister_restore(&self.path);
        if let Err(e) = written {
            eprintln!(
                "sluice-bench: could not put {} back to {}: {e}",
                self.path.display(),
                self.previous
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_poll_time_only_for_haltpoll() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            describe_from(&some("haltpoll"), &some("0")),
            "cpuidle haltpoll, guest_halt_poll_ns 0"
        );
        assert_eq!(
            describe_from(&some("acpi_idle"), &some("200000")),
            "cpuidle acpi_idle"
        );
        assert_eq!(describe_from(&None, &None), "cpuidle driver unknown");
    }

    #[test]
    fn an_override_puts_the_old_value_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("guest_halt_poll_ns");
        std::fs::write(&path, "0\n").expect("written");
        {
            let set = HaltPollOverride::set_at(&path, 200_000).expect("set");
            assert_eq!(set.previous(), "0");
            assert_eq!(
                std::fs::read_to_string(&path).ok().as_deref(),
                Some("200000")
            );
        }
        assert_eq!(std::fs::read_to_string(&path).ok().as_deref(), Some("0"));
        let missing = HaltPollOverride::set_at(&dir.path().join("absent"), 1);
        assert!(missing.is_err_and(|e| e.to_string().contains("cannot read")));
    }
}
