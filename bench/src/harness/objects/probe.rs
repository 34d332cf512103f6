//! What the objects mode reads about a running daemon besides its stats file: the upload
//! counters on its `/metrics` endpoint (scraped inside the receiver namespace, where the
//! endpoint listens on the loopback), the CPU time of its uploader threads, what is left
//! in its spool, and what the bucket holds in the end.
//!
//! The uploader's threads are found by name (`sluice-upload`, the dispatcher, and
//! `sluice-upload-rt`, its tokio runtime's workers and blocking pool). The blocking pool
//! retires idle threads after a few seconds, and a thread that has exited leaves
//! `/proc/PID/task` with its CPU time, so [`ThreadCpu`] samples every thread while it is
//! alive and keeps the last value of those that are gone. Each thread's CPU time is its
//! `se.sum_exec_runtime` (`/proc/PID/task/TID/sched`, nanoseconds), not utime+stime from
//! its `stat`: those are whole clock ticks, cut per thread, and the uploader's dozen
//! threads each run well under a tick per second, so their sum read 0 where the runtime
//! says milliseconds. `stat` is the fallback on kernels without the `sched` file.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_testkit::netns::Netns;

use crate::harness::cpu;

/// The daemon's metrics port (its default `[metrics] listen`, 127.0.0.1:9464).
pub const METRICS_PORT: u16 = 9464;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] sluice_testkit::netns::NetnsError),
    /// The request failed.
    #[error("GET http://127.0.0.1:{port}/metrics: {source}")]
    Http {
        /// The port.
        port: u16,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The answer lacks a counter.
    #[error("/metrics: {0}")]
    Format(String),
}

/// The upload counters of one scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadCounters {
    /// `sluice_upload_objects_total`.
    pub objects: u64,
    /// `sluice_upload_object_batches_total`.
    pub object_batches: u64,
    /// `sluice_uploaded_bytes_total`.
    pub uploaded_bytes: u64,
    /// `sluice_upload_objects_pending`.
    pub objects_pending: u64,
    /// `sluice_spool_files`.
    pub spool_files: u64,
}

/// The unlabelled sample `name` of Prometheus text: `name value` on a line of its own.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_ascii_whitespace().next()?.parse().ok()
    })
}

/// Reads the upload counters out of a `/metrics` body.
///
/// # Errors
/// The name of the first counter that is missing (a daemon without the gcs sink has none).
pub fn parse_metrics(text: &str) -> Result<UploadCounters, String> {
    let counter = |name: &str| -> Result<u64, String> {
        sample(text, name)
            .map(|value| value as u64)
            .ok_or_else(|| format!("no {name}"))
    };
    Ok(UploadCounters {
        objects: counter("sluice_upload_objects_total")?,
        object_batches: counter("sluice_upload_object_batches_total")?,
        uploaded_bytes: counter("sluice_uploaded_bytes_total")?,
        objects_pending: counter("sluice_upload_objects_pending")?,
        spool_files: counter("sluice_spool_files")?,
    })
}

/// One `GET path` on 127.0.0.1:`port` of the calling thread's namespace, bounded by 5 s;
/// the body of a 200 answer.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    if !head.starts_with("HTTP/1.1 200 ") {
        let status = head.lines().next().unwrap_or_default();
        return Err(std::io::Error::other(format!("answered {status:?}")));
    }
    Ok(body.to_owned())
}

/// Scrapes the daemon's `/metrics` inside `netns`.
///
/// # Errors
/// [`ProbeError`].
pub fn scrape(netns: &Netns, port: u16) -> Result<UploadCounters, ProbeError> {
    let body = netns
        .run_in(|| http_get(port, "/metrics"))?
        .map_err(|source| ProbeError::Http { port, source })?;
    parse_metrics(&body).map_err(ProbeError::Format)
}

/// CPU time of the threads of one process whose name starts with a prefix, over a window
/// (see the module docs).
#[derive(Clone, Debug)]
pub struct ThreadCpu {
    pid: u32,
    prefix: &'static str,
    /// CPU seconds of each thread when first seen in the window (0 for threads born in
    /// it).
    baseline: BTreeMap<u32, f64>,
    /// CPU seconds of each thread at its last sample.
    latest: BTreeMap<u32, f64>,
}

/// `se.sum_exec_runtime` (milliseconds) of a `/proc/PID/task/TID/sched` text, in seconds.
pub fn parse_sum_exec_runtime(text: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix("se.sum_exec_runtime")?;
        let milliseconds: f64 = value.trim_start().strip_prefix(':')?.trim().parse().ok()?;
        Some(milliseconds / 1e3)
    })
}

/// CPU seconds of the thread whose `/proc` directory is `task`: its runtime from
/// `sched`, or utime+stime from `stat`.
fn thread_seconds(task: &Path) -> Option<f64> {
    if let Some(seconds) = std::fs::read_to_string(task.join("sched"))
        .ok()
        .and_then(|text| parse_sum_exec_runtime(&text))
    {
        return Some(seconds);
    }
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    let ticks = cpu::parse_pid_stat(&stat).ok()?;
    Some(ticks as f64 / cpu::ticks_per_second())
}

/// Thread id, `comm` and CPU seconds of every thread of `pid` whose name starts with
/// `prefix`.
fn threads_of(pid: u32, prefix: &str) -> Vec<(u32, f64)> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let tid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            if !comm.starts_with(prefix) {
                return None;
            }
            Some((tid, thread_seconds(&entry.path())?))
        })
        .collect()
}

impl ThreadCpu {
    /// Starts the window: the threads of `pid` named `prefix*` now are its baseline.
    pub fn start(pid: u32, prefix: &'static str) -> ThreadCpu {
        let now: BTreeMap<u32, f64> = threads_of(pid, prefix).into_iter().collect();
        ThreadCpu {
            pid,
            prefix,
            baseline: now.clone(),
            latest: now,
        }
    }

    /// Reads every matching thread again; a thread not in the baseline was born in the
    /// window and counts from 0.
    pub fn sample(&mut self) {
        for (tid, seconds) in threads_of(self.pid, self.prefix) {
            self.baseline.entry(tid).or_insert(0.0);
            self.latest.insert(tid, seconds);
        }
    }

    /// CPU seconds of the matching threads since the window started.
    pub fn seconds(&self) -> f64 {
        self.latest
            .iter()
            .map(|(tid, latest)| (latest - self.baseline.get(tid).copied().unwrap_or(0.0)).max(0.0))
            .sum()
    }

    /// Threads seen in the window.
    pub fn threads(&self) -> usize {
        self.latest.len()
    }
}

/// Files left in a spool directory after the daemon stopped, at any depth (manifests,
/// quarantine, temporaries), except its lock file.
///
/// # Errors
/// When the directory cannot be read.
pub fn spool_leftovers(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut left = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if path != dir.join(".lock") {
                left.push(path);
            }
        }
    }
    left.sort();
    Ok(left)
}

/// What a bucket listing holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketSummary {
    /// Objects.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Spooled batches they hold: `N` for an object named `...-x<N>.<ext>`, else 1.
    pub batches: u64,
    /// Objects holding the most batches the uploader puts in one
    /// ([`super::MAX_BATCHES`]).
    pub at_batch_cap: u64,
}

/// Batches in the object `name` (docs/upload.md, "Names").
pub fn batches_in_object(name: &str) -> u64 {
    let file = name.rsplit('/').next().unwrap_or(name);
    let stem = file.split('.').next().unwrap_or(file);
    stem.rsplit_once("-x")
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

/// Sums a listing of (name, size).
pub fn summarize(listing: &[(String, u64)]) -> BucketSummary {
    listing
        .iter()
        .fold(BucketSummary::default(), |sum, (name, size)| {
            let batches = batches_in_object(name);
            BucketSummary {
                objects: sum.objects + 1,
                bytes: sum.bytes + size,
                batches: sum.batches + batches,
                at_batch_cap: sum.at_batch_cap + u64::from(batches >= super::MAX_BATCHES),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_counters_are_read_from_prometheus_text() {
        let text = "# HELP sluice_upload_objects_total Objects.\n\
                    # TYPE sluice_upload_objects_total counter\n\
                    sluice_upload_objects_total 12\n\
                    sluice_upload_objects_pending 1\n\
                    sluice_upload_object_batches_total 345\n\
                    sluice_uploaded_bytes_total 3.3554432e+08\n\
                    sluice_uploads_total{outcome=\"ok\"} 12\n\
                    sluice_spool_files 7\n\
                    sluice_spool_files_other 9\n";
        assert_eq!(
            parse_metrics(text),
            Ok(UploadCounters {
                objects: 12,
                object_batches: 345,
                uploaded_bytes: 335_544_320,
                objects_pending: 1,
                spool_files: 7,
            })
        );
        assert_eq!(
            parse_metrics("sluice_upload_objects_total 1\n"),
            Err("no sluice_upload_object_batches_total".into())
        );
    }

    #[test]
    fn object_names_tell_their_batches() {
        assert_eq!(
            batches_in_object(
                "b/raw/dt=2026-11-22/hour=03/probe1-3f2a9c1e-00c0ffee-2-00000017-x12.parquet"
            ),
            12
        );
        assert_eq!(
            batches_in_object(
                "b/raw/dt=2026-11-22/hour=03/bench-3f2a9c1e-00c0ffee-2-00000017.parquet"
            ),
            1
        );
        assert_eq!(batches_in_object("p/raw/host-x1-a-00000001.ndjson.gz"), 1);
        assert_eq!(batches_in_object("p/raw/h-00000001-x3.ndjson.gz"), 3);
        let listing = vec![
            ("p/raw/h-1-x3.parquet".to_owned(), 100),
            ("p/raw/h-4.parquet".to_owned(), 20),
            ("p/raw/h-5-x1024.parquet".to_owned(), 1000),
        ];
        assert_eq!(
            summarize(&listing),
            BucketSummary {
                objects: 3,
                bytes: 1120,
                batches: 1028,
                at_batch_cap: 1,
            }
        );
    }

    #[test]
    fn spool_leftovers_skip_only_the_lock() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join(".lock"), b"").expect("lock");
        std::fs::create_dir(dir.path().join("objects")).expect("objects dir");
        assert_eq!(
            spool_leftovers(dir.path()).expect("read"),
            Vec::<PathBuf>::new()
        );
        std::fs::write(dir.path().join("objects/a.object"), b"m").expect("manifest");
        assert_eq!(
            spool_leftovers(dir.path()).expect("read"),
            vec![dir.path().join("objects/a.object")]
        );
    }

    #[test]
    fn runtime_is_read_from_the_sched_file() {
        let text = "sluice-upload-r (4242, #threads: 20)\n\
                    -------------------------------------------------------------------\n\
                    se.exec_start                                :      10880411.036589\n\
                    se.vruntime                                  :        234611.142359\n\
                    se.sum_exec_runtime                          :          1234.500000\n\
                    se.nr_migrations                             :                    1\n";
        assert_eq!(parse_sum_exec_runtime(text), Some(1.2345));
        assert_eq!(parse_sum_exec_runtime("se.vruntime : 1.0\n"), None);
    }

    #[test]
    fn thread_cpu_counts_only_the_named_threads_of_the_process() {
        let mut threads = ThreadCpu::start(std::process::id(), "no-such-thread-name");
        threads.sample();
        assert_eq!(threads.threads(), 0);
        assert_eq!(threads.seconds(), 0.0);
        let spin = std::thread::Builder::new()
            .name("objects-probe-t".into())
            .spawn(|| {
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < Duration::from_millis(30) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                std::thread::sleep(Duration::from_millis(300));
                x
            })
            .expect("spawn");
        let mut threads = ThreadCpu::start(std::process::id(), "objects-probe");
        std::thread::sleep(Duration::from_millis(100));
        threads.sample();
        let _ = spin.join();
        assert_eq!(threads.threads(), 1);
        assert!(threads.seconds() < 0.2, "{}", threads.seconds());
    }
}
