//! A worker: frames in, compressed batches out.
//!
//! Workers share one frame queue (so one busy tunnel on one queue still spreads over every
//! worker), parse each frame, hand the payload to its stream's decoder, which writes rows
//! into the stream's open batch, and seal batches at their size or age limit. Counters are
//! kept locally and published once per frame batch.
//!
//! With `SCHED_IDLE` workers one more worker, the *reserve*, keeps the default class and
//! takes frames only when the queue backs up: `SCHED_IDLE` threads get almost no CPU while
//! any ordinary program on the machine is busy (a compression job, another daemon), and
//! without it such a program would starve every worker and drop every packet as
//! `worker_queue_full`. The receive thread wakes the reserve when the queue passes its
//! watermark (see [`super::FrameSender::send_or_drop`]); it then shares the CPU with that
//! program as any ordinary thread does, until the queue is back under the watermark.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use sluice_decode::{DecodeErrorKind, Decoder};

use super::{
    batch::{BatchBuilder, SealedBatch},
    frames::{FrameBatch, FrameOrigin},
};
use crate::{
    accounting::{DropReason, LocalCounters, StageCounters},
    decap::{self, Datagram, PortFilter, Rejected},
    detail::{self, DetailCounters, DetailSlot},
    record::{packet_context, timestamp::now_micros},
    streams::Router,
};

/// How often held packets (NetFlow data waiting for its template) are re-examined when
/// no traffic arrives.
const IDLE_TICK: Duration = Duration::from_millis(200);

/// How a worker takes frames from the shared queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intake {
    /// Whenever there are any (every worker of the configured count).
    Always,
    /// Only while at least `watermark` frame batches wait, and when woken (the reserve
    /// worker: between backlogs it takes at most one batch per [`IDLE_TICK`], enough to
    /// see the queue close at shutdown).
    Backlog {
        /// Queue length from which the reserve works.
        watermark: usize,
    },
}

/// One stream as a worker sees it: its own decoder and open batch.
pub struct WorkerStream {
    /// Stream name, for logs.
    pub name: String,
    /// This worker's decoder.
    pub decoder: Box<dyn Decoder>,
    /// This worker's open batch of the stream.
    pub builder: BatchBuilder,
    last_error_log: Option<Instant>,
    suppressed_errors: u64,
    /// Decode errors by kind since the last publish: counted here without allocating
    /// (a flood of malformed payloads costs no more than good ones), folded into
    /// [`DetailCounters::decode_errors`] once per frame batch.
    decode_errors: Vec<(DecodeErrorKind, u64)>,
}

impl WorkerStream {
    /// A stream with a fresh decoder and batch.
    pub fn new(name: String, decoder: Box<dyn Decoder>, builder: BatchBuilder) -> Self {
        Self {
            name,
            decoder,
            builder,
            last_error_log: None,
            suppressed_errors: 0,
            decode_errors: Vec::new(),
        }
    }

    /// Counts `n` decode errors of `kind` (a short linear list: a decoder has a handful
    /// of kinds; it grows only the first time a kind is seen).
    fn count_decode_errors(&mut self, kind: DecodeErrorKind, n: u64) {
        match self.decode_errors.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, count)) => *count += n,
            None => self.decode_errors.push((kind, n)),
        }
    }
}

/// Adds every stream's decode errors since the last call to `detail` (keyed by stream
/// name and kind, as the metrics read them) and zeroes them. Once per frame batch; a
/// key's name is copied only the first time it is counted.
fn fold_decode_errors(streams: &mut [WorkerStream], detail: &mut DetailCounters) {
    for stream in streams {
        for (kind, pending) in &mut stream.decode_errors {
            if *pending == 0 {
                continue;
            }
            let n = std::mem::take(pending);
            let existing = detail
                .decode_errors
                .iter_mut()
                .find(|((name, k), _)| *name == stream.name && k == kind);
            match existing {
                Some((_, total)) => *total += n,
                None => {
                    detail.decode_errors.insert((stream.name.clone(), *kind), n);
                }
            }
        }
    }
}

/// Everything one worker thread owns.
pub struct Worker {
    /// Frames from the receivers.
    pub frames: Receiver<FrameBatch>,
    /// Empty frame batches back to the receivers.
    pub recycle: Sender<FrameBatch>,
    /// Sealed batches to the sink.
    pub sealed: Sender<SealedBatch>,
    /// The streams, `raw` first.
    pub streams: Vec<WorkerStream>,
    /// Packet → stream.
    pub router: Arc<Router>,
    /// Classifier for captured frames.
    pub filter: Arc<PortFilter>,
    /// Where this worker's counters are published.
    pub counters: Arc<StageCounters>,
    /// Where this worker's labelled counters are published.
    pub details: DetailSlot,
    /// This worker's labelled counters.
    pub detail: DetailCounters,
    /// Expire held packets by the packets' own clock (replay: capture time) instead of
    /// the wall clock; hold times are measured against `received_at`.
    pub packet_clock: bool,
    /// The latest `received_at` this worker saw.
    pub latest_received_at: i64,
    /// When this worker takes frames.
    pub intake: Intake,
}

impl Worker {
    /// Runs until every frame sender is gone, then finishes held packets and seals every
    /// open batch.
    pub fn run(mut self) {
        let mut local = LocalCounters::default();
        loop {
            let wait = self
                .streams
                .iter()
                .filter_map(|s| s.builder.deadline())
                .min()
                .map_or(IDLE_TICK, |d| {
                    d.saturating_duration_since(Instant::now()).min(IDLE_TICK)
                });
            let closed = match self.intake {
                Intake::Always => match self.frames.recv_timeout(wait) {
                    Ok(batch) => {
                        self.take(batch, &mut local);
                        false
                    }
                    Err(RecvTimeoutError::Timeout) => false,
                    Err(RecvTimeoutError::Disconnected) => true,
                },
                Intake::Backlog { watermark } => self.work_backlog(wait, watermark, &mut local),
            };
            if closed {
                self.settle_held(&mut local, true);
                for i in 0..self.streams.len() {
                    self.seal(i, &mut local);
                }
                self.publish(&local);
                return;
            }
            self.settle_held(&mut local, false);
            let now = Instant::now();
            for i in 0..self.streams.len() {
                if self.streams[i].builder.deadline().is_some_and(|d| d <= now) {
                    self.seal(i, &mut local);
                }
            }
            self.publish(&local);
        }
    }

    /// Processes one frame batch and gives its buffer back to the receivers.
    fn take(&mut self, mut batch: FrameBatch, local: &mut LocalCounters) {
        self.process(&batch, local);
        batch.clear();
        // The receiver may have gone (shutdown); the buffer is then just freed.
        let _ = self.recycle.try_send(batch);
    }

    /// The reserve's turn: unless `watermark` batches or more wait, sleeps until woken
    /// (the queue passed the watermark) or `wait` is over; then takes one batch, if any.
    /// Returns whether the queue is closed and empty.
    fn work_backlog(
        &mut self,
        wait: Duration,
        watermark: usize,
        local: &mut LocalCounters,
    ) -> bool {
        if self.frames.len() < watermark {
            std::thread::park_timeout(wait);
        }
        match self.frames.try_recv() {
            Ok(batch) => {
                self.take(batch, local);
                false
            }
            Err(crossbeam_channel::TryRecvError::Empty) => false,
            Err(crossbeam_channel::TryRecvError::Disconnected) => true,
        }
    }

    /// Publishes this worker's counters.
    fn publish(&mut self, local: &LocalCounters) {
        self.counters.publish(local);
        fold_decode_errors(&mut self.streams, &mut self.detail);
        detail::publish(&self.details, &self.detail);
    }

    fn process(&mut self, batch: &FrameBatch, local: &mut LocalCounters) {
        for (entry, bytes) in batch.iter() {
            let parsed = match entry.origin {
                FrameOrigin::Steered => {
                    decap::parse_steered(bytes, &self.filter).map_err(Rejected::Dropped)
                }
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
            let datagram = match parsed {
                Ok(datagram) => datagram,
                Err(Rejected::NotSteered(verdict)) => {
                    local.pass(verdict);
                    continue;
                }
                Err(Rejected::Dropped(reason)) => {
                    local.drop_n(reason, 1);
                    continue;
                }
            };
            let ctx = packet_context(entry.received_at, &datagram);
            self.latest_received_at = self.latest_received_at.max(ctx.received_at);
            self.detail.tunnels.add(ctx.tunnel_src, 1);
            let index = self.router.route(ctx.dst_port, ctx.tunnel_src);
            let Some(stream) = self.streams.get_mut(index) else {
                local.drop_n(DropReason::DecodeError, 1);
                continue;
            };
            match stream
                .decoder
                .decode(&ctx, datagram.payload, &mut stream.builder)
            {
                Ok(outcome) if outcome.held => {}
                Ok(outcome) if outcome.rows == 0 => local.recorded += 1,
                Ok(_) => {
                    local.encoded += 1;
                    stream.builder.add_packets(1);
                    if stream.builder.is_full() {
                        self.seal(index, local);
                    }
                }
                Err(e) => {
                    local.drop_n(DropReason::DecodeError, 1);
                    stream.count_decode_errors(e.kind, 1);
                    let now = Instant::now();
                    if stream
                        .last_error_log
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                    {
                        tracing::warn!(
                            stream = %stream.name,
                            src = %ctx.src_ip,
                            error = %e,
                            suppressed = stream.suppressed_errors,
                            "payload not decoded"
                        );
                        stream.last_error_log = Some(now);
                        stream.suppressed_errors = 0;
                    } else {
                        stream.suppressed_errors += 1;
                    }
                }
            }
        }
    }

    /// Finishes held packets whose wait is over: decoded ones join the batch, expired ones
    /// (all of them at shutdown) are dropped.
    fn settle_held(&mut self, local: &mut LocalCounters, shutting_down: bool) {
        for i in 0..self.streams.len() {
            let stream = &mut self.streams[i];
            let released = stream.decoder.release(&mut stream.builder);
            if released > 0 {
                local.encoded += released;
                stream.builder.add_packets(released);
            }
            let now = if self.packet_clock {
                self.latest_received_at
            } else {
                now_micros()
            };
            let expired = stream.decoder.expire(now, shutting_down);
            // Counted here; the decoder logs them (at a bounded rate, with the counts), as
            // a flood of template-less data may expire thousands per batch.
            if expired > 0 {
                local.drop_n(DropReason::DecodeError, expired);
                stream.count_decode_errors("no_template", expired);
            }
            if self.streams[i].builder.is_full() {
                self.seal(i, local);
            }
        }
    }

    fn seal(&mut self, index: usize, local: &mut LocalCounters) {
        let builder = &mut self.streams[index].builder;
        // Packets that decoded to no row at all are complete without a file.
        local.recorded += builder.take_rowless_packets();
        match builder.seal() {
            Ok(Some(batch)) => {
                let packets = batch.packets;
                if self.sealed.send(batch).is_err() {
                    // Only when the sink thread died: the packets are lost, and counted.
                    local.drop_n(DropReason::SinkError, packets);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "dropping a batch that could not be compressed");
                local.drop_n(DropReason::SinkError, e.packets);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_decode::{DecoderFactory as _, raw::RawFactory};
    use sluice_formats::FormatConfig;

    use super::{WorkerStream, fold_decode_errors};
    use crate::{config::BatchConfig, detail::DetailCounters, pipeline::batch::BatchBuilder};

    fn stream(name: &str) -> Result<WorkerStream, Box<dyn std::error::Error>> {
        let factory = RawFactory::default();
        let format = FormatConfig::new(sluice_formats::Format::NdjsonZstd);
        let builder = BatchBuilder::new(0, 0, factory.schema(), &format, &BatchConfig::default())?;
        Ok(WorkerStream::new(name.to_owned(), factory.build(), builder))
    }

    #[test]
    fn decode_errors_are_counted_per_stream_and_published_by_name_and_kind()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut streams = vec![stream("flows")?, stream("logs")?];
        let mut detail = DetailCounters::default();
        for _ in 0..3 {
            streams[0].count_decode_errors("truncated", 1);
        }
        streams[0].count_decode_errors("no_template", 5);
        streams[1].count_decode_errors("truncated", 1);
        fold_decode_errors(&mut streams, &mut detail);
        // A second batch: only what happened since the last publish is added.
        streams[0].count_decode_errors("truncated", 2);
        fold_decode_errors(&mut streams, &mut detail);
        fold_decode_errors(&mut streams, &mut detail);
        let published: Vec<_> = detail
            .decode_errors
            .iter()
            .map(|((name, kind), n)| (name.as_str(), *kind, *n))
            .collect();
        assert_eq!(
            published,
            [
                ("flows", "no_template", 5),
                ("flows", "truncated", 5),
                ("logs", "truncated", 1),
            ]
        );
        Ok(())
    }
}
