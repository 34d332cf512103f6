//! A worker: frames in, compressed batches out.
//!
//! Workers share one frame queue (so one busy tunnel on one queue still spreads over every
//! worker), parse each frame, encode records into their own open batch, and seal it at its
//! size or age limit. Counters are kept locally and published once per frame batch.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{
    batch::{BatchBuilder, SealedBatch},
    frames::{FrameBatch, FrameOrigin},
};
use crate::{
    accounting::{DropReason, LocalCounters, StageCounters},
    decap::{self, Datagram, PortFilter, Rejected},
    record::PacketRecord,
};

/// Everything one worker thread owns.
pub struct Worker {
    /// Frames from the receivers.
    pub frames: Receiver<FrameBatch>,
    /// Empty frame batches back to the receivers.
    pub recycle: Sender<FrameBatch>,
    /// Sealed batches to the sink.
    pub sealed: Sender<SealedBatch>,
    /// The batch being built.
    pub builder: BatchBuilder,
    /// Classifier for captured frames.
    pub filter: Arc<PortFilter>,
    /// Where this worker's counters are published.
    pub counters: Arc<StageCounters>,
}

impl Worker {
    /// Runs until every frame sender is gone, then seals the open batch.
    pub fn run(mut self) {
        let mut local = LocalCounters::default();
        loop {
            let wait = self
                .builder
                .deadline()
                .map_or(Duration::from_secs(3600), |d| {
                    d.saturating_duration_since(Instant::now())
                });
            match self.frames.recv_timeout(wait) {
                Ok(mut batch) => {
                    self.process(&batch, &mut local);
                    batch.clear();
                    // The receiver may have gone (shutdown); the buffer is then just freed.
                    let _ = self.recycle.try_send(batch);
                }
                Err(RecvTimeoutError::Timeout) => self.seal(&mut local),
                Err(RecvTimeoutError::Disconnected) => {
                    self.seal(&mut local);
                    self.counters.publish(&local);
                    return;
                }
            }
            if self.builder.deadline().is_some_and(|d| d <= Instant::now()) {
                self.seal(&mut local);
            }
            self.counters.publish(&local);
        }
    }

    fn process(&mut self, batch: &FrameBatch, local: &mut LocalCounters) {
        for (entry, bytes) in batch.iter() {
            let parsed = match entry.origin {
                FrameOrigin::Stripped(meta) => decap::tunnel_from_meta(&meta)
                    .and_then(|tunnel| decap::parse_stripped(bytes, tunnel))
                    .map_err(Rejected::Dropped),
                FrameOrigin::Captured => decap::parse_captured(bytes, &self.filter),
                FrameOrigin::Socket { src, dst } => Ok(Datagram {
                    tunnel: None,
                    src: src.ip(),
                    dst: dst.ip(),
                    src_port: src.port(),
                    dst_port: dst.port(),
                    payload: bytes,
                }),
            };
            match parsed {
                Ok(datagram) => {
                    local.encoded += 1;
                    let full = self.builder.add(&PacketRecord {
                        received_at: entry.received_at,
                        datagram,
                    });
                    if full {
                        self.seal(local);
                    }
                }
                Err(Rejected::NotSteered(verdict)) => local.pass(verdict),
                Err(Rejected::Dropped(reason)) => local.drop_n(reason, 1),
            }
        }
    }

    fn seal(&mut self, local: &mut LocalCounters) {
        match self.builder.seal() {
            Ok(Some(batch)) => {
                let records = batch.records;
                if self.sealed.send(batch).is_err() {
                    // Only when the sink thread died: the records are lost, and counted.
                    local.drop_n(DropReason::SinkError, records);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "dropping a batch that could not be compressed");
                local.drop_n(DropReason::SinkError, e.records);
            }
        }
    }
}
