//! Sinks: where sealed batches go, from one thread. The local directory sink writes
//! files where they stay; the spool sink commits them to the durable spool that the
//! Cloud Storage uploader empties ([`crate::upload`]). Either way a batch counts as
//! recorded only once it is on disk.

mod directory;
mod spool;

use std::path::PathBuf;

use crossbeam_channel::Receiver;

pub use directory::{DirectorySink, hostname};
pub use spool::SpoolSink;

use crate::{
    accounting::{DropReason, LocalCounters, StageCounters},
    detail::{self, DetailCounters, DetailSlot},
    pipeline::batch::SealedBatch,
};

/// Why a sink could not open or write.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The output directory could not be created or written at start.
    #[error("sink.path {path}: cannot write there: {source}")]
    Unwritable {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A batch file could not be written, synced or renamed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The spool refused the batch for space (its limit, or the disk).
    #[error(transparent)]
    SpoolFull(sluice_upload::SpoolError),
    /// The spool could not take the batch for another reason.
    #[error(transparent)]
    Spool(sluice_upload::SpoolError),
}

/// The sink a pipeline writes to.
#[derive(Debug)]
pub enum Sink {
    /// Files in a local directory.
    Directory(DirectorySink),
    /// The durable spool of the upload sink.
    Spool(SpoolSink),
}

impl Sink {
    /// The name of stream `index`.
    pub fn stream_name(&self, index: usize) -> &str {
        match self {
            Self::Directory(s) => s.stream_name(index),
            Self::Spool(s) => s.stream_name(index),
        }
    }

    /// Writes one batch durably.
    pub fn write(&mut self, batch: &SealedBatch) -> Result<(), SinkError> {
        match self {
            Self::Directory(s) => s.write(batch).map(drop),
            Self::Spool(s) => s.write(batch).map(drop),
        }
    }
}

/// Writes every sealed batch until the workers are gone. Packets of a batch the spool
/// refuses for space are counted as `spool_full` drops (the spool logs that at a bounded
/// rate); of a batch that cannot be written otherwise, as `sink_error` drops, logged at
/// most once a second.
pub fn run_sink(
    mut sink: Sink,
    batches: Receiver<SealedBatch>,
    counters: &StageCounters,
    details: &DetailSlot,
    mut detail: DetailCounters,
) {
    let mut local = LocalCounters::default();
    let mut last_error_log: Option<std::time::Instant> = None;
    let mut suppressed = 0u64;
    for batch in batches {
        match sink.write(&batch) {
            Ok(_) => {
                local.recorded += batch.packets;
                local.records += batch.records;
                let totals = detail
                    .streams
                    .entry(sink.stream_name(batch.stream).to_owned())
                    .or_default();
                totals.records += batch.records;
                totals.batches += 1;
                totals.uncompressed_bytes += batch.uncompressed_bytes as u64;
                totals.compressed_bytes += batch.bytes.len() as u64;
                totals.null_overflows += batch.null_overflows;
                local.files_written += 1;
                local.bytes_written += batch.bytes.len() as u64;
            }
            Err(SinkError::SpoolFull(_)) => {
                local.drop_n(DropReason::SpoolFull, batch.packets);
            }
            Err(e) => {
                local.drop_n(DropReason::SinkError, batch.packets);
                let now = std::time::Instant::now();
                if last_error_log.is_none_or(|t| now.duration_since(t).as_secs() >= 1) {
                    tracing::error!(error = %e, packets = batch.packets, suppressed, "batch dropped");
                    last_error_log = Some(now);
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
            }
        }
        counters.publish(&local);
        detail::publish(details, &detail);
    }
    counters.publish(&local);
    detail::publish(details, &detail);
}
