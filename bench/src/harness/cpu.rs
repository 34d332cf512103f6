//! CPU time from `/proc/stat` (per core) and `/proc/<pid>/stat` (one process), so every
//! rate in the table comes with what it cost and where.
//!
//! On a veth pair the receiver's XDP program and network stack run in softirq on the
//! *sender's* core, so a process's own CPU time misses most of the kernel's share: the
//! harness reports machine-wide busy time per core next to every rate, and checks that the
//! machine is quiet before it measures anything.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Why CPU counters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not look like the kernel's format.
    #[error("{path}: unexpected format: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

/// Jiffies of one core: busy (user, nice, system, irq, softirq, steal) and idle (idle,
/// iowait), plus softirq on its own because that is where veth receive work lands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreTimes {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// idle + iowait.
    pub idle: u64,
    /// softirq alone.
    pub softirq: u64,
}

/// One reading of every core's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuSample {
    /// Indexed by CPU number (`cpuN` lines, in order).
    pub cores: Vec<CoreTimes>,
    /// When it was read.
    pub at: Instant,
}

/// Busy share per core over an interval, and the total CPU time spent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuUsage {
    /// Busy percentage of each core (0–100).
    pub busy_percent: Vec<f64>,
    /// Softirq percentage of each core (0–100).
    pub softirq_percent: Vec<f64>,
    /// Busy CPU seconds summed over all cores.
    pub busy_seconds: f64,
    /// Busy CPU seconds of each core.
    pub core_busy_seconds: Vec<f64>,
}

impl CpuUsage {
    /// `98/45` style: busy % per core, rounded.
    pub fn per_core(&self) -> String {
        self.busy_percent
            .iter()
            .map(|p| format!("{p:.0}"))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// `91/2` style: softirq % per core, rounded.
    pub fn softirq_per_core(&self) -> String {
        self.softirq_percent
            .iter()
            .map(|p| format!("{p:.0}"))
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Clock ticks per second (`USER_HZ`), which `/proc/stat` counts in.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Parses the `cpuN` lines of `/proc/stat` text.
pub fn parse_proc_stat(text: &str) -> Result<Vec<CoreTimes>, String> {
    let mut cores = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(name) = fields.next() else { continue };
        let Some(number) = name.strip_prefix("cpu") else {
            continue;
        };
        if number.is_empty() {
            continue; // the aggregate line
        }
        let values: Vec<u64> = fields
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{name}: {e}"))?;
        // user nice system idle iowait irq softirq steal [guest guest_nice]
        if values.len() < 8 {
            return Err(format!(
                "{name}: {} fields, expected at least 8",
                values.len()
            ));
        }
        cores.push(CoreTimes {
            busy: values[0] + values[1] + values[2] + values[5] + values[6] + values[7],
            idle: values[3] + values[4],
            softirq: values[6],
        });
    }
    if cores.is_empty() {
        return Err("no cpuN lines".into());
    }
    Ok(cores)
}

impl CpuSample {
    /// Reads `/proc/stat`.
    ///
    /// # Errors
    /// [`CpuError`] when it cannot be read or parsed.
    pub fn now() -> Result<CpuSample, CpuError> {
        let path = PathBuf::from("/proc/stat");
        let text = std::fs::read_to_string(&path).map_err(|source| CpuError::Read {
            path: path.clone(),
            source,
        })?;
        let cores = parse_proc_stat(&text).map_err(|detail| CpuError::Format { path, detail })?;
        Ok(CpuSample {
            cores,
            at: Instant::now(),
        })
    }

    /// What happened between `self` (earlier) and `later`.
    pub fn usage_until(&self, later: &CpuSample) -> CpuUsage {
        let hz = ticks_per_second();
        let mut usage = CpuUsage::default();
        for (before, after) in self.cores.iter().zip(&later.cores) {
            let busy = after.busy.saturating_sub(before.busy);
            let idle = after.idle.saturating_sub(before.idle);
            let softirq = after.softirq.saturating_sub(before.softirq);
            let total = (busy + idle).max(1) as f64;
            usage.busy_percent.push(100.0 * busy as f64 / total);
            usage.softirq_percent.push(100.0 * softirq as f64 / total);
            usage.busy_seconds += busy as f64 / hz;
            usage.core_busy_seconds.push(busy as f64 / hz);
        }
        usage
    }
}

/// Samples for `window` and returns the usage (the quiet check).
///
/// # Errors
/// [`CpuError`].
pub fn measure(window: Duration) -> Result<CpuUsage, CpuError> {
    let before = CpuSample::now()?;
    std::thread::sleep(window);
    Ok(before.usage_until(&CpuSample::now()?))
}

/// Busy share above which a core does not count as quiet.
pub const QUIET_BUSY_PERCENT: f64 = 10.0;

/// A warning when any core was busier than [`QUIET_BUSY_PERCENT`], else None.
pub fn quiet_warning(usage: &CpuUsage) -> Option<String> {
    let busy: Vec<String> = usage
        .busy_percent
        .iter()
        .enumerate()
        .filter(|(_, p)| **p > QUIET_BUSY_PERCENT)
        .map(|(i, p)| format!("cpu{i} {p:.0}%"))
        .collect();
    (!busy.is_empty()).then(|| {
        format!(
            "the machine is not quiet ({} busy before any traffic): numbers will be noisy; \
             stop other work (builds, tests) and run again for publishable figures",
            busy.join(", ")
        )
    })
}

/// User + system CPU seconds of process `pid` so far (`/proc/<pid>/stat` fields 14, 15),
/// counting all its threads.
///
/// # Errors
/// [`CpuError`] when the process is gone or the file is malformed.
pub fn process_cpu_seconds(pid: u32) -> Result<f64, CpuError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let text = std::fs::read_to_string(&path).map_err(|source| CpuError::Read {
        path: path.clone(),
        source,
    })?;
    parse_pid_stat(&text)
        .map(|ticks| ticks as f64 / ticks_per_second())
        .map_err(|detail| CpuError::Format { path, detail })
}

/// utime + stime ticks from `/proc/<pid>/stat` text (the command may contain spaces and
/// parentheses, so fields are counted from the last `)`).
pub fn parse_pid_stat(text: &str) -> Result<u64, String> {
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("no ')' after the command")?;
    // After ')': state(3) ppid(4) ... utime(14) stime(15): indices 11 and 12 here.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .ok_or_else(|| format!("only {} fields", fields.len()))?
            .parse()
            .map_err(|e| format!("field {}: {e}", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// Peak resident set size of `pid` in KiB (`VmHWM` in `/proc/<pid>/status`).
///
/// # Errors
/// [`CpuError`] when the process is gone or the line is missing.
pub fn peak_rss_kib(pid: u32) -> Result<u64, CpuError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = std::fs::read_to_string(&path).map_err(|source| CpuError::Read {
        path: path.clone(),
        source,
    })?;
    parse_vm_hwm(&text).map_err(|detail| CpuError::Format { path, detail })
}

/// The `VmHWM:   1234 kB` value.
pub fn parse_vm_hwm(text: &str) -> Result<u64, String> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .ok_or("no VmHWM line")?;
    line.trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|e| format!("VmHWM: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 5 100 1 0 2 0 0 0\n\
                        cpu0 4 0 2 50 1 0 2 0 0 0\n\
                        cpu1 6 0 3 50 0 0 0 1 0 0\n\
                        intr 1 2 3\nctxt 5\n";

    #[test]
    fn proc_stat_cores_are_parsed_without_the_aggregate() {
        let cores = parse_proc_stat(STAT).expect("parse");
        assert_eq!(
            cores,
            [
                CoreTimes {
                    busy: 8,
                    idle: 51,
                    softirq: 2
                },
                CoreTimes {
                    busy: 10,
                    idle: 50,
                    softirq: 0
                }
            ]
        );
        assert!(parse_proc_stat("intr 1\n").is_err());
        assert!(parse_proc_stat("cpu0 1 2\n").is_err());
    }

    #[test]
    fn usage_is_the_delta_per_core() {
        let at = Instant::now();
        let before = CpuSample {
            cores: vec![CoreTimes::default(); 2],
            at,
        };
        let after = CpuSample {
            cores: vec![
                CoreTimes {
                    busy: 75,
                    idle: 25,
                    softirq: 50,
                },
                CoreTimes {
                    busy: 0,
                    idle: 100,
                    softirq: 0,
                },
            ],
            at,
        };
        let usage = before.usage_until(&after);
        assert_eq!(usage.busy_percent, [75.0, 0.0]);
        assert_eq!(usage.per_core(), "75/0");
        assert_eq!(usage.softirq_per_core(), "50/0");
        assert!((usage.busy_seconds - 75.0 / ticks_per_second()).abs() < 1e-9);
        assert_eq!(usage.core_busy_seconds, [75.0 / ticks_per_second(), 0.0]);
        assert!(quiet_warning(&usage).is_some_and(|w| w.contains("cpu0 75%")));
        let quiet = CpuUsage {
            busy_percent: vec![3.0, 9.0],
            ..CpuUsage::default()
        };
        assert_eq!(quiet_warning(&quiet), None);
    }

    #[test]
    fn pid_stat_and_status_fields_are_read() {
        let text = "42 (sluice (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0\n";
        assert_eq!(parse_pid_stat(text), Ok(10));
        assert!(parse_pid_stat("42 sluice").is_err());
        let status = "Name:\tsluice\nVmPeak:\t 9000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm(status), Ok(51234));
        assert!(parse_vm_hwm("Name: x\n").is_err());
    }
}
