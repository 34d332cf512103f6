//! One batch from spool to bucket: read and check the file, upload it create-only until
//! the bucket has it (retrying transient errors with backoff, forever, and permanent ones
//! at the maximum backoff, logged at a bounded rate), then remove the file.
//!
//! A task is cancelled only at shutdown (after the grace period) or when the uploader is
//! dropped; the file then stays spooled, and an attempt that landed anyway is found as
//! "exists" (HTTP 412) by the next run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::client::Destination;
use crate::backoff::Backoff;
use crate::log_limit::LogLimiter;
use crate::metrics::{UploadMetrics, UploadOutcome};
use crate::spool::{Spool, SpoolError, SpooledBatch};

/// What every upload task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) spool: Arc<Spool>,
    pub(crate) destination: Destination,
    pub(crate) metrics: Arc<UploadMetrics>,
    pub(crate) backoff: Backoff,
    pub(crate) attempt_timeout: Duration,
    pub(crate) retry_log: LogLimiter,
    pub(crate) permanent_log: LogLimiter,
    pub(crate) spool_log: LogLimiter,
}

impl Shared {
    pub(crate) fn new(
        spool: Arc<Spool>,
        destination: Destination,
        metrics: Arc<UploadMetrics>,
        backoff: Backoff,
        attempt_timeout: Duration,
    ) -> Self {
        let every = Duration::from_secs(10);
        Self {
            spool,
            destination,
            metrics,
            backoff,
            attempt_timeout,
            retry_log: LogLimiter::new(every),
            permanent_log: LogLimiter::new(every),
            spool_log: LogLimiter::new(every),
        }
    }
}

/// Uploads one spooled batch and removes it (see the module docs).
pub(crate) async fn upload_batch(shared: Arc<Shared>, batch: SpooledBatch) {
    let started = Instant::now();
    let Some(payload) = read_payload(&shared, &batch).await else {
        return;
    };
    let bytes = payload.len() as u64;
    let mut retry: u32 = 0;
    loop {
        if retry > 0 {
            shared.metrics.count_retry();
        }
        let result = shared
            .destination
            .upload(
                &batch.object_name,
                payload.clone(),
                batch.crc32c,
                shared.attempt_timeout,
            )
            .await;
        shared.metrics.count(result.outcome);
        let delay = match result.outcome {
            UploadOutcome::Ok => break,
            UploadOutcome::Exists => {
                tracing::info!(
                    object = %batch.object_name,
                    attempt = retry + 1,
                    "object already in the bucket (HTTP 412): an earlier attempt or run uploaded it"
                );
                break;
            }
            UploadOutcome::RetryableError => {
                let delay = shared.backoff.delay(retry);
                if let Some(held_back) = shared.retry_log.allow() {
                    tracing::warn!(
                        bucket = %shared.destination.bucket,
                        object = %batch.object_name,
                        attempt = retry + 1,
                        error = %result.detail,
                        retry_in_ms = delay.as_millis(),
                        similar_held_back = held_back,
                        "upload attempt failed; retrying (the batch stays spooled)"
                    );
                }
                delay
            }
            UploadOutcome::PermanentError => {
                let delay = shared.backoff.max();
                if let Some(held_back) = shared.permanent_log.allow() {
                    tracing::error!(
                        bucket = %shared.destination.bucket,
                        endpoint = %shared.destination.endpoint,
                        object = %batch.object_name,
                        error = %result.detail,
                        retry_in_ms = delay.as_millis(),
                        similar_held_back = held_back,
                        "upload refused (wrong bucket or permissions?); the batch stays spooled and is tried again"
                    );
                }
                delay
            }
        };
        tokio::time::sleep(delay).await;
        retry = retry.saturating_add(1);
    }
    shared.metrics.finished(bytes, started.elapsed());
    remove(&shared, &batch).await;
}

/// The checked payload, or `None` when the batch is gone (quarantined as corrupt, or no
/// longer spooled). I/O errors are retried with backoff.
async fn read_payload(shared: &Arc<Shared>, batch: &SpooledBatch) -> Option<Bytes> {
    let mut failures: u32 = 0;
    loop {
        let spool = Arc::clone(&shared.spool);
        let job = batch.clone();
        let read = tokio::task::spawn_blocking(move || spool.read(&job)).await;
        let error = match read {
            Ok(Ok(payload)) => return Some(Bytes::from(payload)),
            // Logged and counted by the spool; not uploaded.
            Ok(Err(SpoolError::Corrupt { .. } | SpoolError::NotSpooled { .. })) => return None,
            Ok(Err(e)) => e.to_string(),
            Err(join) => join.to_string(),
        };
        let delay = shared.backoff.delay(failures);
        if let Some(held_back) = shared.spool_log.allow() {
            tracing::error!(object = %batch.object_name, %error, retry_in_ms = delay.as_millis(), similar_held_back = held_back, "cannot read a spooled batch; retrying");
        }
        tokio::time::sleep(delay).await;
        failures = failures.saturating_add(1);
    }
}

/// Removes an uploaded batch from the spool, retrying I/O errors (a batch left behind
/// would be uploaded again and found to exist; removing it is only tidiness, but the
/// spool's byte limit depends on it).
async fn remove(shared: &Arc<Shared>, batch: &SpooledBatch) {
    let mut failures: u32 = 0;
    loop {
        let spool = Arc::clone(&shared.spool);
        let name = batch.object_name.clone();
        let removed = tokio::task::spawn_blocking(move || spool.remove(&name)).await;
        let error = match removed {
            Ok(Ok(()) | Err(SpoolError::NotSpooled { .. })) => return,
            Ok(Err(e)) => e.to_string(),
            Err(join) => join.to_string(),
        };
        let delay = shared.backoff.delay(failures);
        if let Some(held_back) = shared.spool_log.allow() {
            tracing::error!(object = %batch.object_name, %error, retry_in_ms = delay.as_millis(), similar_held_back = held_back, "cannot remove an uploaded batch from the spool; retrying");
        }
        tokio::time::sleep(delay).await;
        failures = failures.saturating_add(1);
    }
}
