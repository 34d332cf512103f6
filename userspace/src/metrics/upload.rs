//! `sluice_upload_duration_seconds`: the uploader keeps its histogram as plain atomics
//! (`sluice_upload::UploadMetrics`, no Prometheus dependency in that crate); this
//! collector exposes the latest snapshot of it exactly, buckets and sum, at every scrape.

use std::sync::{Mutex, PoisonError};

use prometheus::{core::Collector, core::Desc, proto};
use sluice_upload::HistogramSnapshot;

/// Name of the family.
pub const UPLOAD_DURATION: &str = "sluice_upload_duration_seconds";

/// A histogram family whose values are set from a snapshot.
pub struct SnapshotHistogram {
    desc: Desc,
    latest: Mutex<HistogramSnapshot>,
}

impl std::fmt::Debug for SnapshotHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotHistogram").finish_non_exhaustive()
    }
}

impl SnapshotHistogram {
    /// The upload duration histogram, empty (every bucket at zero).
    pub fn upload_duration() -> prometheus::Result<Self> {
        let desc = Desc::new(
            UPLOAD_DURATION.to_owned(),
            "One upload, first attempt to success.".to_owned(),
            Vec::new(),
            std::collections::HashMap::new(),
        )?;
        let bounds = sluice_upload::metrics::DURATION_BUCKETS.to_vec();
        let empty = HistogramSnapshot {
            cumulative_counts: vec![0; bounds.len() + 1],
            bounds,
            sum_seconds: 0.0,
        };
        Ok(Self {
            desc,
            latest: Mutex::new(empty),
        })
    }

    /// Replaces the values.
    pub fn set(&self, snapshot: &HistogramSnapshot) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = snapshot.clone();
    }
}

impl Collector for SnapshotHistogram {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut histogram = proto::Histogram::default();
        histogram.set_sample_count(latest.count());
        histogram.set_sample_sum(latest.sum_seconds);
        let buckets = latest
            .bounds
            .iter()
            .zip(&latest.cumulative_counts)
            .map(|(bound, count)| {
                let mut bucket = proto::Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(*count);
                bucket
            })
            .collect();
        histogram.set_bucket(buckets);
        let mut metric = proto::Metric::default();
        metric.set_histogram(histogram);
        let mut family = proto::MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(proto::MetricType::HISTOGRAM);
        family.set_metric(vec![metric]);
        vec![family]
    }
}
