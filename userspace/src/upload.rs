//! The upload stage of `sink.kind = "gcs"`: opens the durable spool, names objects for
//! this boot and run, starts the uploader (its own tokio runtime and threads, never on
//! the packet path) and gives the pipeline a [`Sink::Spool`] that commits to it.
//!
//! Start order makes every misconfiguration one line before any packet is taken: an
//! unwritable spool directory, then the bucket check (unknown bucket, refused
//! credentials, unreachable endpoint). Batches an earlier run left in the spool are
//! uploaded first. Shutdown runs after the pipeline has committed its last batch: the
//! uploader keeps going for `shutdown_grace_secs`, and what is left stays spooled for the
//! next start.

use std::sync::Arc;

use serde::Serialize;
use sluice_upload::{SpoolError, UploadSnapshot};

use crate::{
    config::{Config, SinkKind},
    sink::{DirectorySink, Sink, SinkError},
};

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkStartError {
    /// The directory sink's directory is unwritable.
    #[error(transparent)]
    Directory(#[from] SinkError),
    /// The spool directory cannot be opened, written or locked.
    #[error("sink.gcs.spool_dir: {0}")]
    Spool(#[from] SpoolError),
    /// The boot id could not be read or kept.
    #[error("sink.gcs.spool_dir: cannot read or keep the boot id: {0}")]
    BootId(std::io::Error),
    /// A run id could not be drawn.
    #[error("cannot draw a run id: {0}")]
    RunId(std::io::Error),
    /// The uploader refused to start (bucket, endpoint, credentials).
    #[cfg(feature = "gcs")]
    #[error("sink.gcs: {0}")]
    Uploader(#[from] sluice_upload::UploadError),
    /// This build has no uploader.
    #[cfg(not(feature = "gcs"))]
    #[error("sink.kind = \"gcs\": this sluice was built without the `gcs` feature")]
    NotBuilt,
}

/// The running uploader, for metrics and shutdown.
#[derive(Debug)]
pub struct UploadStage {
    #[cfg(feature = "gcs")]
    uploader: sluice_upload::Uploader,
    /// Without the uploader there is no stage: this type cannot be built.
    #[cfg(not(feature = "gcs"))]
    never: std::convert::Infallible,
}

/// What the upload stage did, in the final report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UploadSummary {
    /// Objects created by this run.
    pub uploaded: u64,
    /// Uploads that found their object already there (HTTP 412 after a retry or a
    /// restart): delivered, not duplicated.
    pub already_there: u64,
    /// Spooled batches held by the objects of `uploaded` and `already_there` (an object
    /// combines one or more batches).
    pub uploaded_batches: u64,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Attempts that failed transiently.
    pub retryable_errors: u64,
    /// Attempts that failed permanently (the batch stayed spooled).
    pub permanent_errors: u64,
    /// Batches the spool refused for space (their packets are `spool_full` drops).
    pub refused_batches: u64,
    /// Corrupt spool files moved to quarantine at start.
    pub quarantined_files: u64,
    /// Batches still spooled at exit (uploaded at the next start).
    pub left_spooled_files: u64,
    /// Their bytes.
    pub left_spooled_bytes: u64,
}

impl UploadSummary {
    /// The summary of a snapshot.
    pub fn of(s: &UploadSnapshot) -> Self {
        Self {
            uploaded: s.ok,
            already_there: s.exists,
            uploaded_batches: s.object_batches,
            retries: s.retries,
            retryable_errors: s.retryable_error,
            permanent_errors: s.permanent_error,
            refused_batches: s.spool.refused,
            quarantined_files: s.spool.quarantined,
            left_spooled_files: s.spool.files,
            left_spooled_bytes: s.spool.bytes,
        }
    }
}

/// Opens the configured sink: the directory, or the spool with its uploader. `streams`
/// are the stream names by index.
pub fn open_sink(
    config: &Config,
    streams: Vec<String>,
) -> Result<(Sink, Option<UploadStage>), SinkStartError> {
    let gcs = match (config.sink.kind, &config.sink.gcs) {
        (SinkKind::Directory, _) => {
            return Ok((
                Sink::Directory(DirectorySink::open(&config.sink, streams)?),
                None,
            ));
        }
        (SinkKind::Gcs, Some(gcs)) => gcs,
        // Refused by config validation; kept total.
        (SinkKind::Gcs, None) => {
            return Err(SinkStartError::Spool(SpoolError::Unwritable {
                dir: std::path::PathBuf::new(),
                source: std::io::Error::other("no [sink.gcs] section"),
            }));
        }
    };
    #[cfg(not(feature = "gcs"))]
    {
        let _ = (gcs, streams);
        Err(SinkStartError::NotBuilt)
    }
    #[cfg(feature = "gcs")]
    open_spool_sink(config, gcs, streams)
}

/// `sink.gcs.object_target_bytes` when unset and the format is gzip: BigQuery reads a
/// gzip file with one worker, so such objects stay modest.
#[cfg(feature = "gcs")]
const GZIP_OBJECT_TARGET_BYTES: u64 = 64 << 20;

/// The spool, its uploader, and the sink that commits to it.
#[cfg(feature = "gcs")]
fn open_spool_sink(
    config: &Config,
    gcs: &sluice_upload::UploadConfig,
    streams: Vec<String>,
) -> Result<(Sink, Option<UploadStage>), SinkStartError> {
    use sluice_upload::{BootId, ObjectNamer, RunId, Spool};

    let spool = Arc::new(Spool::open(&gcs.spool_dir, gcs.spool_byte_limit)?);
    let boot = BootId::current(&gcs.spool_dir).map_err(SinkStartError::BootId)?;
    let run = RunId::random().map_err(SinkStartError::RunId)?;
    let host = if config.sink.host.is_empty() {
        crate::sink::hostname()
    } else {
        config.sink.host.clone()
    };
    let namer = ObjectNamer::new(&gcs.prefix, &host, &boot, run);
    let mut gcs = gcs.clone();
    if gcs.object_target_bytes.is_none() && config.sink.format.is_gzip() {
        gcs.object_target_bytes = Some(GZIP_OBJECT_TARGET_BYTES);
    }
    let uploader = sluice_upload::Uploader::start(&gcs, Arc::clone(&spool))?;
    tracing::info!(
        boot = boot.short(),
        run = %run,
        "object names: {}",
        namer.name(
            "<stream>",
            crate::record::timestamp::now_micros(),
            0,
            0,
            config.sink.format.extension()
        )
    );
    Ok((
        Sink::Spool(crate::sink::SpoolSink::new(spool, namer, streams)),
        Some(UploadStage { uploader }),
    ))
}

impl UploadStage {
    /// Reads the uploader's counters from any thread.
    pub fn watch(&self) -> Arc<dyn Fn() -> UploadSnapshot + Send + Sync> {
        #[cfg(feature = "gcs")]
        {
            let watch = self.uploader.watch();
            Arc::new(move || watch.snapshot())
        }
        #[cfg(not(feature = "gcs"))]
        match self.never {}
    }

    /// Uploads for up to the grace period, then stops; what is left stays spooled.
    pub fn shutdown(self) -> UploadSummary {
        #[cfg(feature = "gcs")]
        {
            let report = self.uploader.shutdown();
            if report.drained {
                tracing::info!("uploader stopped: the spool is empty");
            } else {
                tracing::warn!(
                    files = report.left_files,
                    bytes = report.left_bytes,
                    "uploader stopped at the end of its grace period: the rest stays spooled for the next start"
                );
            }
            UploadSummary::of(&report.metrics)
        }
        #[cfg(not(feature = "gcs"))]
        match self.never {}
    }
}
