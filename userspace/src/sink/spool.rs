//! The upload sink's side of the pipeline: every sealed batch is committed to the durable
//! spool (`sluice_upload::Spool`: temporary name, fsync, rename, directory fsync) under
//! its final object name, `PREFIX/<stream>/dt=YYYY-MM-DD/hour=HH/<host>-<boot>-<run>-<worker>-<sequence>.<ext>`.
//! Only then is it accepted; the uploader (on its own threads) takes it from there.
//!
//! The name is fixed here, once, and travels with the spooled file: a retry, a restart or
//! a crash uploads it under the same name, create-only, so nothing is written twice.

use std::{collections::HashMap, sync::Arc};

use sluice_upload::{ObjectNamer, Spool, SpoolError};

use super::SinkError;
use crate::pipeline::batch::SealedBatch;

/// Commits batches to the spool.
#[derive(Debug)]
pub struct SpoolSink {
    spool: Arc<Spool>,
    namer: ObjectNamer,
    streams: Vec<String>,
    next_sequence: HashMap<(usize, usize), u64>,
}

impl SpoolSink {
    /// Commits into `spool`, naming objects with `namer`; `streams` are the stream names
    /// by stream index.
    pub fn new(spool: Arc<Spool>, namer: ObjectNamer, streams: Vec<String>) -> Self {
        Self {
            spool,
            namer,
            streams,
            next_sequence: HashMap::new(),
        }
    }

    /// The name of stream `index`.
    pub fn stream_name(&self, index: usize) -> &str {
        self.streams.get(index).map_or("unknown", String::as_str)
    }

    /// Commits one batch durably; returns its object name.
    pub fn write(&mut self, batch: &SealedBatch) -> Result<String, SinkError> {
        let next = self
            .next_sequence
            .entry((batch.stream, batch.worker))
            .or_insert(0);
        let sequence = *next;
        *next += 1;
        let stream = self
            .streams
            .get(batch.stream)
            .map_or("unknown", String::as_str);
        let name = self.namer.name(
            stream,
            batch.first_received_at,
            batch.worker,
            sequence,
            batch.extension,
        );
        match self.spool.commit(&name, &batch.bytes) {
            Ok(_) => Ok(name),
            Err(e @ SpoolError::Full { .. }) => Err(SinkError::SpoolFull(e)),
            Err(e) => Err(SinkError::Spool(e)),
        }
    }
}
