//! One planned object from spool to bucket: build it from its batches (one batch is
//! uploaded from memory as it is; several are joined by `sluice_formats::combine`, without
//! decoding, into a temporary file of the spool, checked batch by batch against their
//! trailers), upload it create-only until the bucket has it (retrying transient errors
//! with backoff, forever, and permanent ones at the maximum backoff, logged at a bounded
//! rate), then retire it: manifest marked uploaded, batches removed.
//!
//! A batch found corrupt, or that its format cannot join to the others, is quarantined
//! (never deleted, never uploaded, counted) and the manifest rewritten without it before
//! any upload, so the object's contents on disk always match what is uploaded.
//!
//! A task is cancelled only at shutdown (after the grace period) or when the uploader is
//! dropped; the batches then stay spooled with their manifest, and an attempt that landed
//! anyway is found as "exists" (HTTP 412) when the next run rebuilds the object.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_formats::combine::{CombineError, CombineKind, Combiner};

use super::client::Destination;
use crate::backoff::Backoff;
use crate::config::UploadConfig;
use crate::log_limit::LogLimiter;
use crate::metrics::{UploadMetrics, UploadOutcome};
use crate::spool::{PlannedObject, Spool, SpoolError};

/// What every upload task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) spool: Arc<Spool>,
    pub(crate) destination: Destination,
    pub(crate) metrics: Arc<UploadMetrics>,
    pub(crate) backoff: Backoff,
    pub(crate) config: UploadConfig,
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
        config: UploadConfig,
    ) -> Self {
        let every = Duration::from_secs(10);
        Self {
            spool,
            destination,
            metrics,
            backoff,
            config,
            retry_log: LogLimiter::new(every),
            permanent_log: LogLimiter::new(every),
            spool_log: LogLimiter::new(every),
        }
    }
}

/// Builds one planned object, uploads it create-only, and retires its batches (see the
/// module docs).
pub(crate) async fn upload_object(shared: Arc<Shared>, object: PlannedObject) {
    let started = Instant::now();
    let Some((object, payload)) = build(&shared, object).await else {
        return;
    };
    let bytes = payload.len();
    let timeout = shared.config.attempt_timeout_for(bytes);
    let mut retry: u32 = 0;
    loop {
        if retry > 0 {
            shared.metrics.count_retry();
        }
        let result = match &payload {
            Payload::Memory { bytes, crc32c } => {
                shared
                    .destination
                    .upload(&object.object_name, bytes.clone(), *crc32c, timeout)
                    .await
            }
            Payload::File { path, crc32c, .. } => {
                shared
                    .destination
                    .upload_file(&object.object_name, path, *crc32c, timeout)
                    .await
            }
        };
        shared.metrics.count(result.outcome);
        let delay = match result.outcome {
            UploadOutcome::Ok => break,
            UploadOutcome::Exists => {
                tracing::info!(
                    object = %object.object_name,
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
                        object = %object.object_name,
                        attempt = retry + 1,
                        error = %result.detail,
                        retry_in_ms = delay.as_millis(),
                        similar_held_back = held_back,
                        "upload attempt failed; retrying (the batches stay spooled)"
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
                        object = %object.object_name,
                        error = %result.detail,
                        retry_in_ms = delay.as_millis(),
                        similar_held_back = held_back,
                        "upload refused (wrong bucket or permissions?); the batches stay spooled and are tried again"
                    );
                }
                delay
            }
        };
        tokio::time::sleep(delay).await;
        retry = retry.saturating_add(1);
    }
    shared.metrics.finished(bytes, started.elapsed());
    shared.metrics.object_uploaded(object.batches.len() as u64);
    finish(&shared, &object).await;
    if let Payload::File { path, .. } = payload {
        let _ = tokio::fs::remove_file(path).await;
    }
}

/// An object's bytes: one batch's payload in memory, or several combined in a temporary
/// file of the spool.
enum Payload {
    Memory {
        bytes: Bytes,
        crc32c: u32,
    },
    File {
        path: PathBuf,
        len: u64,
        crc32c: u32,
    },
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Self::Memory { bytes, .. } => bytes.len() as u64,
            Self::File { len, .. } => *len,
        }
    }
}

/// What one try at building an object gave.
enum Built {
    Ready(Payload),
    /// A batch was quarantined (corrupt): build again without it.
    Dropped(u64),
    /// A batch cannot be joined to the others: it becomes an object of its own; build
    /// again without it.
    Alone(u64),
    /// Nothing could be read (I/O): retry after a delay.
    Failed(String),
}

/// Builds the object's bytes, dropping batches that turn out corrupt (quarantined, and
/// the manifest rewritten without them). `None` when no batch is left.
async fn build(
    shared: &Arc<Shared>,
    mut object: PlannedObject,
) -> Option<(PlannedObject, Payload)> {
    let mut failures: u32 = 0;
    loop {
        let spool = Arc::clone(&shared.spool);
        let job = object.clone();
        let built = tokio::task::spawn_blocking(move || build_blocking(&spool, &job))
            .await
            .unwrap_or_else(|join| Built::Failed(join.to_string()));
        let error = match built {
            Built::Ready(payload) => return Some((object, payload)),
            Built::Dropped(sequence) | Built::Alone(sequence) => {
                let spool = Arc::clone(&shared.spool);
                let id = object.id;
                let alone = matches!(built, Built::Alone(_));
                match tokio::task::spawn_blocking(move || {
                    if alone {
                        spool.detach_alone(id, sequence)
                    } else {
                        spool.drop_from_object(id, sequence)
                    }
                })
                .await
                {
                    Ok(Ok(Some(rest))) => {
                        object = rest;
                        continue;
                    }
                    Ok(Ok(None)) => return None,
                    Ok(Err(e)) => e.to_string(),
                    Err(join) => join.to_string(),
                }
            }
            Built::Failed(error) => error,
        };
        let delay = shared.backoff.delay(failures);
        if let Some(held_back) = shared.spool_log.allow() {
            tracing::error!(object = %object.object_name, %error, retry_in_ms = delay.as_millis(), similar_held_back = held_back, "cannot build an object from its spooled batches; retrying");
        }
        tokio::time::sleep(delay).await;
        failures = failures.saturating_add(1);
    }
}

fn build_blocking(spool: &Spool, object: &PlannedObject) -> Built {
    if let [batch] = object.batches.as_slice() {
        return match spool.read(batch) {
            Ok(payload) => Built::Ready(Payload::Memory {
                bytes: Bytes::from(payload),
                crc32c: batch.crc32c,
            }),
            // Quarantined (logged and counted by the spool) or gone.
            Err(SpoolError::Corrupt { .. } | SpoolError::NotSpooled { .. }) => {
                Built::Dropped(batch.sequence)
            }
            Err(e) => Built::Failed(e.to_string()),
        };
    }
    let kind = crate::plan::group_of(&object.batches[0].object_name)
        .and_then(|(_, _, extension)| CombineKind::for_extension(extension));
    let Some(kind) = kind else {
        // Only batches of a known format are ever grouped; upload the first alone.
        return Built::Alone(object.batches[0].sequence);
    };
    let path = spool.object_temp_path(object.id);
    let file = match std::fs::File::create(&path) {
        Ok(file) => file,
        Err(e) => return Built::Failed(format!("{}: {e}", path.display())),
    };
    let mut combiner = Combiner::new(kind, ChecksummedWriter::new(BufWriter::new(file)));
    for batch in &object.batches {
        let payload = match spool.read(batch) {
            Ok(payload) => payload,
            Err(SpoolError::Corrupt { .. } | SpoolError::NotSpooled { .. }) => {
                let _ = std::fs::remove_file(&path);
                return Built::Dropped(batch.sequence);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Built::Failed(e.to_string());
            }
        };
        if let Err(e) = combiner.push(Bytes::from(payload)) {
            let _ = std::fs::remove_file(&path);
            return match e {
                // Intact (its trailer checked) but not joinable here, e.g. a CSV batch
                // written by an older version: it goes up on its own, never lost.
                CombineError::Batch { source, .. } => {
                    tracing::warn!(object = %object.object_name, batch = %batch.object_name, reason = %source, "a batch cannot be joined to its object; it is uploaded on its own");
                    Built::Alone(batch.sequence)
                }
                other => Built::Failed(format!("{}: {other}", path.display())),
            };
        }
    }
    let finished = combiner
        .finish()
        .map_err(|e| e.to_string())
        .and_then(|(writer, _)| writer.into_parts().map_err(|e| e.to_string()));
    match finished {
        Ok((len, crc32c)) => Built::Ready(Payload::File { path, len, crc32c }),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Built::Failed(format!("{}: {e}", path.display()))
        }
    }
}

/// Counts and checksums what goes through (the object's size and CRC32C for the upload).
struct ChecksummedWriter<W> {
    inner: W,
    len: u64,
    crc32c: u32,
}

impl<W: Write> ChecksummedWriter<BufWriter<W>> {
    fn new(inner: BufWriter<W>) -> Self {
        Self {
            inner,
            len: 0,
            crc32c: 0,
        }
    }

    /// Flushes and returns the size and CRC32C.
    fn into_parts(mut self) -> std::io::Result<(u64, u32)> {
        self.inner.flush()?;
        Ok((self.len, self.crc32c))
    }
}

impl<W: Write> Write for ChecksummedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc32c = crc32c::crc32c_append(self.crc32c, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Retires an uploaded object (its manifest marked uploaded, its batches removed),
/// retrying I/O errors: until then its batches would be uploaded again (and found to
/// exist), and the spool's byte limit depends on their removal.
async fn finish(shared: &Arc<Shared>, object: &PlannedObject) {
    let mut failures: u32 = 0;
    loop {
        let spool = Arc::clone(&shared.spool);
        let job = object.clone();
        let finished = tokio::task::spawn_blocking(move || spool.finish_object(&job)).await;
        let error = match finished {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(join) => join.to_string(),
        };
        let delay = shared.backoff.delay(failures);
        if let Some(held_back) = shared.spool_log.allow() {
            tracing::error!(object = %object.object_name, %error, retry_in_ms = delay.as_millis(), similar_held_back = held_back, "cannot remove an uploaded object's batches from the spool; retrying");
        }
        tokio::time::sleep(delay).await;
        failures = failures.saturating_add(1);
    }
}
