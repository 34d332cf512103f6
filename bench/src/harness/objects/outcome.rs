//! One run of the objects benchmark — a rate and a mode — as read, and every figure the
//! table shows, derived here in one place.
//!
//! The *window* is the traffic: from just before the generator starts to just after it
//! stops. Objects, their batches and bytes are deltas of the daemon's upload counters
//! over it; the uploader's, the daemon's and the emulator's CPU are deltas over it too.
//! What happens after it (SIGTERM, which uploads all that is spooled) is checked, not
//! timed.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ObjectMode;
use super::probe::{BucketSummary, UploadCounters};
use crate::harness::cpu::CpuUsage;
use crate::harness::measurement::Accounting;
use crate::harness::plan::Rate;

/// What one run read.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectsRun {
    /// The rate asked of the generator.
    pub rate: Rate,
    /// How objects were formed.
    pub mode: ObjectMode,
    /// `object_max_age_secs` when set (combined runs only; `None`: the default).
    pub object_max_age_secs: Option<u64>,
    /// The traffic asked for.
    pub traffic: Duration,
    /// Packets the generator offered.
    pub offered: u64,
    /// How long the generator ran.
    pub generator_elapsed: Duration,
    /// The window (traffic) as the probes saw it.
    pub window: Duration,
    /// Upload counters when the traffic started.
    pub at_start: UploadCounters,
    /// Upload counters when it stopped.
    pub at_end: UploadCounters,
    /// `sluice_upload_objects_total` polled during the window: (time since the start,
    /// value).
    pub objects_polled: Vec<(Duration, u64)>,
    /// CPU seconds of the `sluice-upload*` threads over the window.
    pub uploader_cpu_seconds: f64,
    /// How many such threads were seen.
    pub uploader_threads: usize,
    /// CPU seconds of the whole daemon over the window.
    pub daemon_cpu_seconds: Option<f64>,
    /// CPU seconds of the emulator over the window.
    pub emulator_cpu_seconds: Option<f64>,
    /// Machine-wide CPU over the window.
    pub machine: CpuUsage,
    /// The daemon's peak RSS (VmHWM) before SIGTERM, KiB.
    pub daemon_peak_rss_kib: Option<u64>,
    /// The emulator's peak RSS (VmHWM) after the daemon's last upload, KiB.
    pub emulator_peak_rss_kib: Option<u64>,
    /// The daemon's account at exit.
    pub accounting: Option<Accounting>,
    /// Drops by reason (from the stats file).
    pub dropped: BTreeMap<String, u64>,
    /// Batches the daemon committed to the spool (`files_written`).
    pub batches_written: Option<u64>,
    /// The stats file's `upload.uploaded + upload.already_there` (objects of the run).
    pub objects_uploaded: Option<u64>,
    /// The stats file's `upload.left_spooled_files`.
    pub left_spooled_files: Option<u64>,
    /// Files left in the spool directory after exit (its lock aside).
    pub spool_leftovers: Option<usize>,
    /// The bucket after exit.
    pub bucket: Option<BucketSummary>,
    /// How long listing the bucket took.
    pub listing_took: Option<Duration>,
    /// What went wrong, if the run could not be measured.
    pub error: Option<String>,
}

impl ObjectsRun {
    /// A run not measured yet.
    pub fn new(rate: Rate, mode: ObjectMode, traffic: Duration) -> ObjectsRun {
        ObjectsRun {
            rate,
            mode,
            object_max_age_secs: None,
            traffic,
            offered: 0,
            generator_elapsed: Duration::ZERO,
            window: Duration::ZERO,
            at_start: UploadCounters::default(),
            at_end: UploadCounters::default(),
            objects_polled: Vec::new(),
            uploader_cpu_seconds: 0.0,
            uploader_threads: 0,
            daemon_cpu_seconds: None,
            emulator_cpu_seconds: None,
            machine: CpuUsage::default(),
            daemon_peak_rss_kib: None,
            emulator_peak_rss_kib: None,
            accounting: None,
            dropped: BTreeMap::new(),
            batches_written: None,
            objects_uploaded: None,
            left_spooled_files: None,
            spool_leftovers: None,
            bucket: None,
            listing_took: None,
            error: None,
        }
    }

    /// The mode as the tables name it, with the age when it is not the default.
    pub fn mode_label(&self) -> String {
        match (self.mode, self.object_max_age_secs) {
            (ObjectMode::Combined, Some(age)) => {
                format!("combined (`object_max_age_secs = {age}`)")
            }
            (mode, _) => mode.label().to_owned(),
        }
    }

    /// The object age the combined mode waits for, seconds.
    pub fn max_age_secs(&self) -> u64 {
        self.object_max_age_secs
            .unwrap_or_else(super::default_max_age_secs)
    }

    fn window_seconds(&self) -> f64 {
        self.window.as_secs_f64().max(1e-9)
    }

    /// Offered packets per second.
    pub fn offered_pps(&self) -> f64 {
        self.offered as f64 / self.generator_elapsed.as_secs_f64().max(1e-9)
    }

    /// Objects uploaded in the window.
    pub fn objects_in_window(&self) -> u64 {
        self.at_end.objects.saturating_sub(self.at_start.objects)
    }

    /// Objects in the window × 3600 / window seconds.
    pub fn objects_per_hour(&self) -> f64 {
        self.objects_in_window() as f64 * 3600.0 / self.window_seconds()
    }

    /// The polls at which the count of objects went up: (time, value).
    fn increases(&self) -> Vec<(Duration, u64)> {
        let mut last = self.at_start.objects;
        let mut out = Vec::new();
        for &(at, objects) in &self.objects_polled {
            if objects > last {
                out.push((at, objects));
                last = objects;
            }
        }
        out
    }

    /// When the first object of the window was seen uploaded (to the poll interval).
    pub fn first_object_after(&self) -> Option<Duration> {
        self.increases().first().map(|(at, _)| *at)
    }

    /// Objects per hour between the first and the last upload seen in the window, which
    /// leaves out the time the first object took to fill; `None` with fewer than two
    /// polls that saw uploads.
    pub fn steady_objects_per_hour(&self) -> Option<f64> {
        let increases = self.increases();
        let (first_at, first) = *increases.first()?;
        let (last_at, last) = *increases.last()?;
        let span = last_at.saturating_sub(first_at).as_secs_f64();
        (last > first && span > 0.0).then(|| (last - first) as f64 * 3600.0 / span)
    }

    /// Uploaded bytes per object in the window.
    pub fn mean_object_bytes(&self) -> Option<f64> {
        let objects = self.objects_in_window();
        (objects > 0).then(|| {
            self.at_end
                .uploaded_bytes
                .saturating_sub(self.at_start.uploaded_bytes) as f64
                / objects as f64
        })
    }

    /// Spooled batches per object in the window.
    pub fn batches_per_object(&self) -> Option<f64> {
        let objects = self.objects_in_window();
        (objects > 0).then(|| {
            self.at_end
                .object_batches
                .saturating_sub(self.at_start.object_batches) as f64
                / objects as f64
        })
    }

    /// The uploader threads' CPU seconds per second of window.
    pub fn uploader_cpu_per_second(&self) -> f64 {
        self.uploader_cpu_seconds / self.window_seconds()
    }

    /// The emulator's CPU seconds per second of window.
    pub fn emulator_cpu_per_second(&self) -> Option<f64> {
        self.emulator_cpu_seconds.map(|s| s / self.window_seconds())
    }

    /// The daemon's CPU seconds per million packets recorded.
    pub fn daemon_seconds_per_mpkt(&self) -> Option<f64> {
        let recorded = self.accounting.as_ref()?.recorded;
        let seconds = self.daemon_cpu_seconds?;
        (recorded > 0).then(|| seconds / (recorded as f64 / 1e6))
    }

    /// seen = recorded + dropped, nothing in flight.
    pub fn balanced(&self) -> bool {
        self.accounting.as_ref().is_some_and(Accounting::balanced)
    }

    /// `ring_full 12, worker_queue_full 3`, or `none`.
    pub fn drop_reasons(&self) -> String {
        crate::harness::measurement::drop_reasons(&self.dropped)
    }

    /// Why not everything was uploaded at exit; empty when it was: a clean exit, nothing
    /// left spooled (stats file and directory), every object of the run in the bucket and
    /// every batch the daemon wrote in one of them.
    pub fn upload_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match &self.accounting {
            Some(a) if a.exit.starts_with("exit status: 0") => {}
            Some(a) => problems.push(format!("exit: {}", a.exit)),
            None => problems.push("no stats".into()),
        }
        match self.left_spooled_files {
            Some(0) => {}
            Some(n) => problems.push(format!("{n} batches left spooled")),
            None => problems.push("no upload account in the stats".into()),
        }
        match self.spool_leftovers {
            Some(0) => {}
            Some(n) => problems.push(format!("{n} files left in the spool directory")),
            None => problems.push("spool directory not read".into()),
        }
        match (self.bucket, self.batches_written, self.objects_uploaded) {
            (Some(bucket), Some(batches), Some(objects)) => {
                if bucket.batches != batches {
                    problems.push(format!(
                        "the bucket's objects hold {} batches, the daemon wrote {batches}",
                        bucket.batches
                    ));
                }
                if bucket.objects != objects {
                    problems.push(format!(
                        "{} objects in the bucket, the daemon uploaded {objects}",
                        bucket.objects
                    ));
                }
            }
            _ => problems.push("bucket not listed".into()),
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> ObjectsRun {
        let mut run = ObjectsRun::new(
            Rate::Pps(1_000_000),
            ObjectMode::Combined,
            Duration::from_secs(300),
        );
        run.window = Duration::from_secs(300);
        run.generator_elapsed = Duration::from_secs(300);
        run.offered = 300_000_000;
        run.at_start = UploadCounters {
            objects: 2,
            object_batches: 10,
            uploaded_bytes: 1000,
            ..UploadCounters::default()
        };
        run.at_end = UploadCounters {
            objects: 12,
            object_batches: 1010,
            uploaded_bytes: 2_621_441_000,
            ..UploadCounters::default()
        };
        run.objects_polled = vec![
            (Duration::from_secs(1), 2),
            (Duration::from_secs(30), 3),
            (Duration::from_secs(31), 3),
            (Duration::from_secs(57), 5),
            (Duration::from_secs(290), 12),
        ];
        run.uploader_cpu_seconds = 15.0;
        run.daemon_cpu_seconds = Some(240.0);
        run.accounting = Some(Accounting {
            seen: 300_000_000,
            recorded: 300_000_000,
            exit: "exit status: 0".into(),
            ..Accounting::default()
        });
        run
    }

    #[test]
    fn window_figures_are_counter_deltas() {
        let run = run();
        assert_eq!(run.objects_in_window(), 10);
        assert_eq!(run.objects_per_hour(), 120.0);
        assert_eq!(run.mean_object_bytes(), Some(262_144_000.0));
        assert_eq!(run.batches_per_object(), Some(100.0));
        assert_eq!(run.uploader_cpu_per_second(), 0.05);
        assert_eq!(run.daemon_seconds_per_mpkt(), Some(0.8));
        assert_eq!(run.offered_pps(), 1e6);
        assert!(run.balanced());
    }

    #[test]
    fn steady_rate_runs_from_the_first_to_the_last_upload() {
        let run = run();
        assert_eq!(run.first_object_after(), Some(Duration::from_secs(30)));
        // 3 → 12 between 30 s and 290 s.
        assert_eq!(run.steady_objects_per_hour(), Some(9.0 * 3600.0 / 260.0));
        let mut one = run.clone();
        one.objects_polled.truncate(3);
        assert_eq!(one.steady_objects_per_hour(), None);
        let mut none = run;
        none.at_end = none.at_start;
        none.objects_polled.clear();
        assert_eq!(none.first_object_after(), None);
        assert_eq!(none.mean_object_bytes(), None);
        assert_eq!(none.objects_per_hour(), 0.0);
    }

    #[test]
    fn everything_uploaded_needs_every_check() {
        let mut run = run();
        assert_eq!(
            run.upload_problems().len(),
            3,
            "{:?}",
            run.upload_problems()
        );
        run.left_spooled_files = Some(0);
        run.spool_leftovers = Some(0);
        run.batches_written = Some(1010);
        run.objects_uploaded = Some(12);
        run.bucket = Some(BucketSummary {
            objects: 12,
            bytes: 1,
            batches: 1010,
            at_batch_cap: 0,
        });
        assert_eq!(run.upload_problems(), Vec::<String>::new());
        run.bucket = Some(BucketSummary {
            objects: 12,
            bytes: 1,
            batches: 1009,
            at_batch_cap: 0,
        });
        assert_eq!(
            run.upload_problems(),
            vec!["the bucket's objects hold 1009 batches, the daemon wrote 1010".to_owned()]
        );
    }
}
