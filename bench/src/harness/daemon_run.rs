//! One `sluice run` of the release binary inside the receiver namespace, as an operator
//! would run it: config file, `--ready-file` to know it is receiving, SIGTERM (to its PID)
//! to stop, `--stats-file` for its final account.
//!
//! Around that it reads what the daemon cannot report about itself: its CPU time
//! (`/proc/<pid>/stat`, and per thread group from [`ThreadCpu`]) and its peak RSS
//! (`VmHWM`), all taken just before SIGTERM. Records go to a fresh directory per run,
//! deleted afterwards (a step at 2 Mpps writes gigabytes of NDJSON).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_testkit::daemon::{self, DaemonError, RunFiles, RunningSluice};
use sluice_testkit::netns::Netns;
use sluice_testkit::stats::Stats;

use super::cpu;
use super::daemon_config::DaemonConfig;
use super::measurement::Accounting;
use super::threads::{ThreadCpu, ThreadGroupCpu};

/// Why a daemon run failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonRunError {
    /// Writing the config or making the output directory failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Starting, waiting for or stopping the daemon failed.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

/// A daemon that is receiving.
#[derive(Debug)]
pub struct DaemonRun {
    running: RunningSluice,
    out_dir: PathBuf,
    cpu_at_start: f64,
    threads: Option<ThreadCpu>,
}

/// What the daemon reported and what was read about it.
#[derive(Clone, Debug)]
pub struct DaemonResult {
    /// Its stats file.
    pub stats: Stats,
    /// Its account, with the exit status.
    pub accounting: Accounting,
    /// User+system seconds while traffic ran (start of traffic to SIGTERM).
    pub cpu_seconds: Option<f64>,
    /// The same window's CPU seconds by thread group.
    pub thread_cpu: Option<ThreadGroupCpu>,
    /// VmHWM just before SIGTERM, KiB.
    pub peak_rss_kib: Option<u64>,
}

impl DaemonRun {
    /// Writes `config` into `work` as `<name>.toml`, records to `records_root/<name>`, then
    /// starts `binary run` in `netns` and waits (up to 30 s) until it is ready.
    ///
    /// # Errors
    /// [`DaemonRunError`], with the end of the daemon's log when it failed to start.
    pub fn start(
        binary: &Path,
        netns: &Netns,
        work: &Path,
        records_root: &Path,
        name: &str,
        config: &DaemonConfig,
    ) -> Result<DaemonRun, DaemonRunError> {
        let io = |what: String| move |source| DaemonRunError::Io { what, source };
        let out_dir = records_root.join(name);
        let _ = std::fs::remove_dir_all(&out_dir);
        std::fs::create_dir_all(&out_dir).map_err(io(format!("creating {}", out_dir.display())))?;
        let files = RunFiles::in_dir(work, name);
        config
            .write(work, name, &out_dir)
            .map_err(io(format!("writing the config of {name}")))?;
        let mut running = daemon::start_run(binary, netns, &files)?;
        running.wait_ready(Duration::from_secs(30))?;
        let cpu_at_start = running
            .pid()
            .and_then(|pid| cpu::process_cpu_seconds(pid).ok())
            .unwrap_or(0.0);
        let threads = running.pid().map(|pid| ThreadCpu::start(pid, ""));
        Ok(DaemonRun {
            running,
            out_dir,
            cpu_at_start,
            threads,
        })
    }

    /// The daemon's PID.
    pub fn pid(&self) -> Option<u32> {
        self.running.pid()
    }

    /// Restarts the CPU clocks (call when traffic starts).
    pub fn mark_traffic_start(&mut self) {
        if let Some(pid) = self.pid() {
            if let Ok(seconds) = cpu::process_cpu_seconds(pid) {
                self.cpu_at_start = seconds;
            }
            self.threads = Some(ThreadCpu::start(pid, ""));
        }
    }

    /// Current peak RSS, KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.pid().and_then(|pid| cpu::peak_rss_kib(pid).ok())
    }

    /// Reads CPU and RSS, stops with SIGTERM (SIGKILL after 60 s: draining a full queue
    /// of batches takes a while), reads the stats and deletes the records.
    ///
    /// # Errors
    /// [`DaemonRunError::Daemon`] when it cannot be stopped or left no stats.
    pub fn stop(mut self) -> Result<DaemonResult, DaemonRunError> {
        let pid = self.pid();
        let cpu_seconds = pid
            .and_then(|pid| cpu::process_cpu_seconds(pid).ok())
            .map(|now| now - self.cpu_at_start);
        let thread_cpu = self.threads.take().map(|mut threads| {
            threads.sample();
            threads.by_group()
        });
        let peak_rss_kib = pid.and_then(|pid| cpu::peak_rss_kib(pid).ok());
        let log = self.running.files().log.clone();
        let result = self.running.stop(Duration::from_secs(60));
        let _ = std::fs::remove_dir_all(&self.out_dir);
        let (status, in_time, stats) = result?;
        let mut exit = status.to_string();
        if !in_time {
            exit.push_str(" (killed: did not stop within 60 s)");
        }
        if !status.success() {
            exit.push_str(&format!("; log: {}", daemon::log_tail(&log, 5)));
        }
        let accounting = Accounting {
            seen: stats.seen,
            recorded: stats.recorded,
            dropped_total: stats.dropped_total,
            in_flight: stats.in_flight,
            records_written: stats.records_written,
            exit,
        };
        Ok(DaemonResult {
            stats,
            accounting,
            cpu_seconds,
            thread_cpu,
            peak_rss_kib,
        })
    }
}
