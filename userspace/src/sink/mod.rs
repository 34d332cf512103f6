//! Sinks: where sealed batches are written. Today the local directory sink; the
//! durable spool and Cloud Storage uploader slot in behind the same thread.

mod directory;

use std::path::PathBuf;

use crossbeam_channel::Receiver;

pub use directory::DirectorySink;

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
}

/// Writes every sealed batch until the workers are gone. Records in a batch that cannot
/// be written are counted as `sink_error` drops; the error is logged at most once a second.
pub fn run_sink(
    mut sink: DirectorySink,
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
                local.files_written += 1;
                local.bytes_written += batch.bytes.len() as u64;
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
