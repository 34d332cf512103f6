//! Sends a pcap onto a veth end with tcpreplay, from inside a namespace, and reports how
//! many frames actually left.
//!
//! tcpreplay is the sender because it writes frames verbatim (VLAN tags, bad lengths,
//! fragments) through a packet socket, which the kernel's own stack would not. Every run
//! is bounded: the pcap is finite, `loops` is explicit, the rate is capped by `pps`, and
//! the process is killed after a timeout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::cleanup::ProcessGuard;
use crate::netns::Netns;

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum TcpreplayError {
    /// tcpreplay could not be started or waited for.
    #[error("cannot run tcpreplay: {source}")]
    Spawn {
        /// The underlying error.
        source: std::io::Error,
    },
    /// It exited non-zero or did not finish in time.
    #[error("tcpreplay failed ({status}): {output}")]
    Failed {
        /// Exit status or "timed out".
        status: String,
        /// Its stdout and stderr.
        output: String,
    },
    /// Not every frame of the pcap left ([`send_all`]).
    #[error("tcpreplay sent {report:?} of {frames} frames")]
    Incomplete {
        /// What it reported.
        report: ReplayReport,
        /// Frames the pcap holds.
        frames: u64,
    },
    /// Its statistics could not be found in the output.
    #[error("tcpreplay printed no `{field}` line: {output}")]
    Unparsed {
        /// The missing statistic.
        field: &'static str,
        /// Its output.
        output: String,
    },
}

/// The counters tcpreplay prints for the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// `Successful packets:`.
    pub successful: u64,
    /// `Failed packets:`.
    pub failed: u64,
    /// `Truncated packets:`.
    pub truncated: u64,
}

/// The parameters of one bounded replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayParams {
    /// Packets per second (tcpreplay `--pps`).
    pub pps: u32,
    /// How many times the file is sent (`--loop`, at least 1).
    pub loops: u32,
    /// Kill tcpreplay after this long.
    pub timeout: Duration,
}

impl Default for ReplayParams {
    /// 2000 pps, once, 60 s timeout.
    fn default() -> Self {
        Self {
            pps: 2000,
            loops: 1,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Sends `pcap` out of `interface` inside `netns`.
///
/// # Errors
/// [`TcpreplayError`] when it cannot run, fails, times out, or prints no statistics.
pub fn send(
    netns: &Netns,
    interface: &str,
    pcap: &Path,
    params: ReplayParams,
) -> Result<ReplayReport, TcpreplayError> {
    let dir = tempfile_dir().map_err(|source| TcpreplayError::Spawn { source })?;
    let log_path = dir.join("tcpreplay.log");
    let log =
        std::fs::File::create(&log_path).map_err(|source| TcpreplayError::Spawn { source })?;
    let log_err = log
        .try_clone()
        .map_err(|source| TcpreplayError::Spawn { source })?;
    let child = netns
        .command("tcpreplay")
        .arg("-i")
        .arg(interface)
        .arg(format!("--pps={}", params.pps))
        .arg(format!("--loop={}", params.loops.max(1)))
        .arg(pcap)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|source| TcpreplayError::Spawn { source })?;
    let mut guard = ProcessGuard::new("tcpreplay", child);
    let waited = guard.wait_timeout(params.timeout);
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let (status, in_time) = waited.map_err(|e| TcpreplayError::Failed {
        status: e.to_string(),
        output: output.clone(),
    })?;
    if !in_time || !status.success() {
        return Err(TcpreplayError::Failed {
            status: if in_time {
                status.to_string()
            } else {
                format!("timed out after {:?}", params.timeout)
            },
            output,
        });
    }
    parse_report(&output)
}

/// Sends `pcap` (`frames` frames) once at `pps` out of `interface` inside `netns` (killed
/// after `timeout`), requiring every frame to have left whole.
///
/// # Errors
/// As [`send`], and [`TcpreplayError::Incomplete`] when a frame failed or was truncated.
pub fn send_all(
    netns: &Netns,
    interface: &str,
    pcap: &Path,
    frames: u64,
    pps: u32,
    timeout: Duration,
) -> Result<(), TcpreplayError> {
    let params = ReplayParams {
        pps,
        loops: 1,
        timeout,
    };
    let report = send(netns, interface, pcap, params)?;
    let whole = ReplayReport {
        successful: frames,
        failed: 0,
        truncated: 0,
    };
    if report == whole {
        Ok(())
    } else {
        Err(TcpreplayError::Incomplete { report, frames })
    }
}

/// A private scratch directory for the log (the pcap's directory may be read-only).
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-tcpreplay-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Reads the device statistics from tcpreplay's output.
///
/// # Errors
/// [`TcpreplayError::Unparsed`] naming the first missing line.
pub fn parse_report(output: &str) -> Result<ReplayReport, TcpreplayError> {
    let field = |name: &'static str| {
        output
            .lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix(name)
                    .and_then(|rest| rest.trim().parse::<u64>().ok())
            })
            .ok_or_else(|| TcpreplayError::Unparsed {
                field: name,
                output: output.to_owned(),
            })
    };
    Ok(ReplayReport {
        successful: field("Successful packets:")?,
        failed: field("Failed packets:")?,
        truncated: field("Truncated packets:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Actual: 258 packets (124964 bytes) sent in 0.128510 seconds\n\
        Rated: 972406.8 Bps, 7.77 Mbps, 2007.62 pps\n\
        Statistics for network device: pa\n\
        \tSuccessful packets:        258\n\
        \tFailed packets:            0\n\
        \tTruncated packets:         0\n\
        \tRetried packets (ENOBUFS): 0\n";

    #[test]
    fn report_is_parsed_from_tcpreplay_output() {
        let report = parse_report(OUTPUT).expect("parse");
        assert_eq!(
            report,
            ReplayReport {
                successful: 258,
                failed: 0,
                truncated: 0
            }
        );
        assert!(matches!(
            parse_report("Actual: 1 packets"),
            Err(TcpreplayError::Unparsed {
                field: "Successful packets:",
                ..
            })
        ));
    }

    #[test]
    fn pcap_is_sent_across_a_netns_pair() {
        let name = "tcpreplay::pcap_is_sent_across_a_netns_pair";
        if !crate::privilege::require_root(name)
            || !crate::privilege::require_tool(name, "tcpreplay")
        {
            return;
        }
        let pair = crate::netns::NetnsPair::create().expect("netns pair");
        let dir = tempfile::tempdir().expect("tempdir");
        let pcap = dir.path().join("negatives.pcap");
        let cases = crate::frames::negative_cases(&crate::frames::MatrixParams::default());
        crate::pcap::write_pcap(&pcap, cases.iter().map(|c| c.frame.as_slice())).expect("pcap");
        let params = ReplayParams {
            pps: 5000,
            loops: 2,
            timeout: Duration::from_secs(30),
        };
        let report = send(&pair.a, &pair.if_a, &pcap, params).expect("tcpreplay");
        assert_eq!(
            report,
            ReplayReport {
                successful: 2 * cases.len() as u64,
                failed: 0,
                truncated: 0
            }
        );
    }
}
