//! The uploader's counters, kept as atomics by the upload tasks and read as a plain
//! [`UploadSnapshot`] by whoever publishes metrics (the daemon's Prometheus registry; this
//! crate does not depend on one).
//!
//! Names and meanings, as in `docs/metrics.md`:
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `sluice_uploads_total{outcome}` | counter | attempts by outcome: `ok`, `exists` (412: already there, a success), `retryable_error`, `permanent_error` |
//! | `sluice_upload_retries_total` | counter | attempts beyond the first of a batch |
//! | `sluice_upload_duration_seconds` | histogram | one upload, first attempt to success |
//! | `sluice_uploaded_bytes_total` | counter | bytes of objects that reached the bucket (`ok` + `exists`) |
//! | `sluice_upload_objects_total` | counter | objects that reached the bucket |
//! | `sluice_upload_object_batches_total` | counter | spooled batches those objects held |
//! | `sluice_upload_objects_pending` | gauge | objects planned (batches decided) and not yet uploaded |
//! | `sluice_spool_files`, `sluice_spool_bytes` | gauges | what the spool holds ([`crate::SpoolStats`]) |
//! | `sluice_spool_quarantined_files_total` | counter | corrupt spool files moved aside |
//! | `sluice_spool_refused_batches_total` | counter | commits refused as full (the daemon counts their packets as `spool_full` drops) |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::spool::SpoolStats;

/// How one upload attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UploadOutcome {
    /// Created.
    Ok,
    /// HTTP 412 on a create-only write: the object is already there (an earlier attempt
    /// or run got it through). Counted as a success.
    Exists,
    /// A transient failure (timeout, connection, 408, 429, 5xx): retried with backoff.
    RetryableError,
    /// A failure a retry will not fix by itself (403, 404 bucket, 400): logged, the batch
    /// stays spooled and is tried again after the maximum backoff.
    PermanentError,
}

impl UploadOutcome {
    /// Every outcome, in label order.
    pub const ALL: [Self; 4] = [
        Self::Ok,
        Self::Exists,
        Self::RetryableError,
        Self::PermanentError,
    ];

    /// The `outcome` label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Exists => "exists",
            Self::RetryableError => "retryable_error",
            Self::PermanentError => "permanent_error",
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::Ok => 0,
            Self::Exists => 1,
            Self::RetryableError => 2,
            Self::PermanentError => 3,
        }
    }
}

/// Upper bounds of the duration histogram's buckets, in seconds (`+Inf` is implied). An
/// upload spans its retries, so the buckets reach an hour.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// The live counters (shared by the upload tasks).
#[derive(Debug, Default)]
pub struct UploadMetrics {
    outcomes: [AtomicU64; 4],
    retries: AtomicU64,
    uploaded_bytes: AtomicU64,
    objects: AtomicU64,
    object_batches: AtomicU64,
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_micros: AtomicU64,
}

impl UploadMetrics {
    /// Counts one attempt's outcome.
    pub fn count(&self, outcome: UploadOutcome) {
        self.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one retry.
    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// An object of `batches` batches reached the bucket.
    pub fn object_uploaded(&self, batches: u64) {
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.object_batches.fetch_add(batches, Ordering::Relaxed);
    }

    /// Records one finished upload of `bytes` that took `took` from its first attempt.
    pub fn finished(&self, bytes: u64, took: Duration) {
        self.uploaded_bytes.fetch_add(bytes, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.duration_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// A copy of the counters, with the spool's.
    pub fn snapshot(&self, spool: SpoolStats) -> UploadSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut cumulative = 0;
        let mut counts = Vec::with_capacity(DURATION_BUCKETS.len() + 1);
        for bucket in &self.buckets {
            cumulative += load(bucket);
            counts.push(cumulative);
        }
        UploadSnapshot {
            ok: load(&self.outcomes[0]),
            exists: load(&self.outcomes[1]),
            retryable_error: load(&self.outcomes[2]),
            permanent_error: load(&self.outcomes[3]),
            retries: load(&self.retries),
            uploaded_bytes: load(&self.uploaded_bytes),
            objects: load(&self.objects),
            object_batches: load(&self.object_batches),
            duration: HistogramSnapshot {
                bounds: DURATION_BUCKETS.to_vec(),
                cumulative_counts: counts,
                sum_seconds: load(&self.duration_micros) as f64 / 1e6,
            },
            spool,
        }
    }
}

/// A histogram as Prometheus exposes it.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds (`le`), in seconds, without `+Inf`.
    pub bounds: Vec<f64>,
    /// Observations `<=` each bound, then the total (`+Inf`): one more than `bounds`.
    pub cumulative_counts: Vec<u64>,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.cumulative_counts.last().copied().unwrap_or(0)
    }
}

/// The uploader's counters at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadSnapshot {
    /// `sluice_uploads_total{outcome="ok"}`.
    pub ok: u64,
    /// `sluice_uploads_total{outcome="exists"}`.
    pub exists: u64,
    /// `sluice_uploads_total{outcome="retryable_error"}`.
    pub retryable_error: u64,
    /// `sluice_uploads_total{outcome="permanent_error"}`.
    pub permanent_error: u64,
    /// `sluice_upload_retries_total`.
    pub retries: u64,
    /// `sluice_uploaded_bytes_total`.
    pub uploaded_bytes: u64,
    /// `sluice_upload_objects_total`.
    pub objects: u64,
    /// `sluice_upload_object_batches_total`.
    pub object_batches: u64,
    /// `sluice_upload_duration_seconds`.
    pub duration: HistogramSnapshot,
    /// `sluice_spool_*`.
    pub spool: SpoolStats,
}

impl UploadSnapshot {
    /// The `sluice_uploads_total` value of `outcome`.
    pub fn uploads(&self, outcome: UploadOutcome) -> u64 {
        match outcome {
            UploadOutcome::Ok => self.ok,
            UploadOutcome::Exists => self.exists,
            UploadOutcome::RetryableError => self.retryable_error,
            UploadOutcome::PermanentError => self.permanent_error,
        }
    }

    /// Batches that reached the bucket (`ok` + `exists`).
    pub fn delivered(&self) -> u64 {
        self.ok + self.exists
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_retries_and_histogram_are_counted_exactly() {
        let m = UploadMetrics::default();
        m.count(UploadOutcome::RetryableError);
        m.count(UploadOutcome::RetryableError);
        m.count_retry();
        m.count_retry();
        m.count(UploadOutcome::Ok);
        m.count(UploadOutcome::Exists);
        m.finished(100, Duration::from_millis(3));
        m.finished(50, Duration::from_millis(700));
        m.finished(1, Duration::from_secs(7200));
        let s = m.snapshot(SpoolStats::default());
        assert_eq!(
            UploadOutcome::ALL.map(|o| (o.label(), s.uploads(o))),
            [
                ("ok", 1),
                ("exists", 1),
                ("retryable_error", 2),
                ("permanent_error", 0)
            ]
        );
        assert_eq!(s.retries, 2);
        assert_eq!(s.delivered(), 2);
        assert_eq!(s.uploaded_bytes, 151);
        assert_eq!(s.duration.count(), 3);
        assert_eq!(
            s.duration.cumulative_counts,
            [1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3]
        );
        assert!((s.duration.sum_seconds - 7200.703).abs() < 1e-9);
    }
}
