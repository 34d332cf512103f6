//! The objects benchmark (issue 11, `cargo xtask bench --objects`): what the uploader
//! makes of steady traffic — how many objects per hour, how large, how many batches each,
//! and what that costs in CPU — with the uploader's defaults (batches combined into one
//! object per `object_max_age_secs` = 300, 256 MiB or 1 024 batches, whichever comes
//! first) against one object per batch (`object_target_bytes = 1`, the behaviour before
//! combining).
//!
//! The daemon is the packet-rate benchmark's sluice XDP row, raw → Parquet (the
//! production default format), with `sink.kind = "gcs"` against fake-gcs-server on the
//! receiver namespace's loopback (127.0.0.1:80, filesystem backend on a disk, so that the
//! bucket, which grows with the traffic, stays out of memory). Each run gets a fresh
//! emulator, spool and bucket, deleted when it ends.
//!
//! - [`runner`]: one lab and generator; per rate and mode an emulator, a daemon, the
//!   traffic window with its probes, SIGTERM, and the checks that everything was uploaded.
//! - [`probe`]: `/metrics` scrapes, the uploader threads' CPU, the spool's leftovers, the
//!   bucket's listing.
//! - [`outcome`]: one run's readings and the figures derived from them.
//! - [`report`]: the console lines, the table and the BENCHMARKS.md section (between its
//!   own markers, `<!-- objects:begin -->` / `<!-- objects:end -->`).

pub mod outcome;
pub mod probe;
pub mod report;
pub mod runner;

use std::path::PathBuf;
use std::time::Duration;

use super::plan::Rate;

/// The bucket each run's emulator holds.
pub const BUCKET: &str = "sluice-bench";
/// The object prefix of every run.
pub const PREFIX: &str = "bench";
/// The emulator's address, on the receiver namespace's loopback (port 80).
pub const EMULATOR_ADDRESS: &str = "127.0.0.1";
/// Default offered rates, Mpps (also with `--quick`).
pub const DEFAULT_RATES: &str = "0.5,1";
/// How often the probes run during the traffic window.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The uploader's default `object_target_bytes` for Parquet.
pub const DEFAULT_TARGET_BYTES: u64 = sluice_upload::config::DEFAULT_OBJECT_TARGET_BYTES;
/// Most batches the uploader puts in one object, whatever its age and size.
pub const MAX_BATCHES: u64 = sluice_upload::plan::MAX_BATCHES as u64;

/// The uploader's default `object_max_age_secs`.
pub fn default_max_age_secs() -> u64 {
    sluice_upload::UploadConfig::new(BUCKET, "/").object_max_age_secs
}

/// How the uploader forms objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectMode {
    /// The defaults: `object_max_age_secs` = 300, `object_target_bytes` unset (256 MiB
    /// for Parquet).
    Combined,
    /// `object_target_bytes = 1`: every spooled batch is an object of its own.
    PerBatch,
}

impl ObjectMode {
    /// Both, in the table's order.
    pub const ALL: [ObjectMode; 2] = [ObjectMode::Combined, ObjectMode::PerBatch];

    /// The mode's label in the tables.
    pub fn label(self) -> &'static str {
        match self {
            ObjectMode::Combined => "combined (defaults)",
            ObjectMode::PerBatch => "per batch (`object_target_bytes = 1`)",
        }
    }

    /// Short name for console lines and file names.
    pub fn short(self) -> &'static str {
        match self {
            ObjectMode::Combined => "combined",
            ObjectMode::PerBatch => "per-batch",
        }
    }

    /// `object_max_age_secs` of a run in this mode under `plan` (`None`: the default).
    pub fn object_max_age_secs(self, plan: &ObjectsPlan) -> Option<u64> {
        match self {
            ObjectMode::Combined => plan.object_max_age_secs,
            ObjectMode::PerBatch => None,
        }
    }

    /// The `object_target_bytes` the mode sets (`None`: the default).
    pub fn object_target_bytes(self) -> Option<u64> {
        match self {
            ObjectMode::Combined => None,
            ObjectMode::PerBatch => Some(1),
        }
    }
}

/// Everything one objects benchmark runs with (built from the command line).
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectsPlan {
    /// Offered rates, in order; each is run in both modes.
    pub rates: Vec<Rate>,
    /// Traffic per rate in [`ObjectMode::Combined`] (default 600 s, `--quick` 20 s). With
    /// the generator's traffic (~0.15 bytes per record in Parquet) an object closes on the
    /// uploader's cap of [`MAX_BATCHES`] batches, about every 75 s at 1 Mpps and 145 s at
    /// 0.5 Mpps on the 2-CPU VM, long before 256 MiB or 300 s: 600 s hold four or more.
    pub combined_traffic: Duration,
    /// Traffic per rate in [`ObjectMode::PerBatch`] (default 60 s, `--quick` 10 s).
    pub per_batch_traffic: Duration,
    /// `object_max_age_secs` of the combined runs; `None` (the published runs) leaves the
    /// daemon's default, 300. A shorter age makes a quick run show several objects.
    pub object_max_age_secs: Option<u64>,
    /// CPU the generator is pinned to.
    pub generator_cpu: usize,
    /// `pipeline.workers` (0 = one per CPU).
    pub workers: u32,
    /// `pipeline.queue_depth`.
    pub queue_depth: u32,
    /// `source.busy_poll_usecs`.
    pub busy_poll_usecs: u32,
    /// `pipeline.worker_scheduling`, if not the daemon's default.
    pub worker_scheduling: Option<String>,
    /// Raw payload length, bytes.
    pub payload_len: usize,
    /// The release `sluice` binary.
    pub sluice: PathBuf,
    /// The fake-gcs-server binary.
    pub emulator: PathBuf,
    /// Where each run's spool directory is made (`--records-dir`; tmpfs by default in
    /// this mode, as before the packet-rate rows moved their records to a disk).
    pub spool_root: PathBuf,
    /// Where each run's emulator keeps its objects (a disk: gigabytes per run).
    pub emulator_root: PathBuf,
    /// A smoke run.
    pub quick: bool,
}

impl ObjectsPlan {
    /// Every run, in order: (rate, mode, traffic).
    pub fn runs(&self) -> Vec<(Rate, ObjectMode, Duration)> {
        self.rates
            .iter()
            .flat_map(|rate| {
                ObjectMode::ALL
                    .into_iter()
                    .map(move |mode| (*rate, mode, self.traffic(mode)))
            })
            .collect()
    }

    /// Traffic per run in `mode`.
    pub fn traffic(&self, mode: ObjectMode) -> Duration {
        match mode {
            ObjectMode::Combined => self.combined_traffic,
            ObjectMode::PerBatch => self.per_batch_traffic,
        }
    }

    /// Rough wall time, for the banner: the traffic plus ~15 s per run (emulator and
    /// daemon start, the upload at SIGTERM, the listing).
    pub fn estimate(&self) -> Duration {
        self.runs()
            .iter()
            .map(|(_, _, traffic)| *traffic + Duration::from_secs(15))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rate_runs_in_both_modes_with_its_own_duration() {
        let plan = ObjectsPlan {
            rates: vec![Rate::Pps(500_000), Rate::Pps(1_000_000)],
            combined_traffic: Duration::from_secs(300),
            per_batch_traffic: Duration::from_secs(60),
            object_max_age_secs: None,
            generator_cpu: 0,
            workers: 0,
            queue_depth: 256,
            busy_poll_usecs: 0,
            worker_scheduling: None,
            payload_len: 18,
            sluice: PathBuf::from("/t/sluice"),
            emulator: PathBuf::from("/e"),
            spool_root: PathBuf::from("/dev/shm"),
            emulator_root: PathBuf::from("/var/tmp"),
            quick: false,
        };
        let runs = plan.runs();
        assert_eq!(
            runs,
            vec![
                (
                    Rate::Pps(500_000),
                    ObjectMode::Combined,
                    Duration::from_secs(300)
                ),
                (
                    Rate::Pps(500_000),
                    ObjectMode::PerBatch,
                    Duration::from_secs(60)
                ),
                (
                    Rate::Pps(1_000_000),
                    ObjectMode::Combined,
                    Duration::from_secs(300)
                ),
                (
                    Rate::Pps(1_000_000),
                    ObjectMode::PerBatch,
                    Duration::from_secs(60)
                ),
            ]
        );
        assert_eq!(plan.estimate(), Duration::from_secs(2 * (315 + 75)));
        assert_eq!(ObjectMode::PerBatch.object_target_bytes(), Some(1));
        assert_eq!(ObjectMode::Combined.object_target_bytes(), None);
    }
}
