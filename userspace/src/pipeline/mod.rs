//! The stages behind every source: frames → workers (parse, record, batch, compress) →
//! sink thread (write). Sources hold a [`FrameSender`]; [`Pipeline::finish`] drains it all.

pub mod batch;
pub mod frames;
pub mod scheduling;
pub mod worker;

use std::{
    sync::Arc,
    thread::{JoinHandle, Thread},
};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::{
    accounting::{DropReason, LocalCounters, StageCounters},
    config::Config,
    decap::PortFilter,
    detail::DetailSet,
    sink::{self, Sink},
    streams::Streams,
};
use batch::{BatchBuilder, SealedBatch};
use frames::FrameBatch;
use worker::{Intake, Worker, WorkerStream};

/// Most frames per batch handed to the workers (a receive loop hands over what the ring
/// held when it drains first).
pub const FRAMES_PER_BATCH: usize = 256;

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The sink refused its configuration (e.g. an unwritable directory).
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    /// The configured format cannot write a stream's records.
    #[error("sink.format = \"{format}\" cannot write stream {stream:?}: {source}")]
    Format {
        /// The format.
        format: sluice_formats::Format,
        /// The stream.
        stream: String,
        /// Why.
        source: sluice_formats::FormatError,
    },
    /// A thread could not be started, or a compressor created.
    #[error("cannot start {what}: {source}")]
    Start {
        /// What failed to start.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// A source's handle on the frame queue.
#[derive(Clone, Debug)]
pub struct FrameSender {
    tx: Sender<FrameBatch>,
    recycled: Receiver<FrameBatch>,
    /// The reserve worker (with `SCHED_IDLE` workers), woken once the queue is backlogged.
    reserve: Option<Thread>,
    /// The queue length (batches) from which the workers are behind: the reserve is woken
    /// and only full batches are handed over ([`Self::backlogged`]).
    backlog: usize,
}

impl FrameSender {
    /// An empty batch, recycled when one is available.
    pub fn empty_batch(&self) -> FrameBatch {
        self.recycled
            .try_recv()
            .unwrap_or_else(|_| FrameBatch::with_capacity(FRAMES_PER_BATCH, FRAMES_PER_BATCH * 256))
    }

    /// Whether the workers are behind (the queue at or past a quarter of its depth, where
    /// the reserve worker joins in): a source then hands over only full batches
    /// ([`FRAMES_PER_BATCH`] frames) and keeps filling a partial one. The queue is bounded
    /// in batches, and a source hands one over per pause at low rates (the XDP receive
    /// loop every 0.5 ms, so ~150 frames at 0.3 Mpps, 10 at 20 000/s): left to partial
    /// batches, a backed-up queue of 256 would hold 128 ms of traffic at any rate below
    /// ~0.5 Mpps. Full batches past the watermark let it hold at least three quarters of
    /// `queue_depth` × 256 frames whatever the rate (the most it could ever hold, so no
    /// more memory than at high rates), while the workers' wait for frames is unchanged
    /// when they keep up.
    pub fn backlogged(&self) -> bool {
        self.tx.len() >= self.backlog
    }

    /// Hands a batch to the workers without waiting; when every worker is busy and the
    /// queue is full, its frames are counted as `worker_queue_full` drops.
    pub fn send_or_drop(&self, batch: FrameBatch, counters: &mut LocalCounters) -> FrameBatch {
        let sent = self.tx.try_send(batch);
        if let Some(reserve) = &self.reserve
            && self.backlogged()
        {
            reserve.unpark();
        }
        match sent {
            Ok(()) => self.empty_batch(),
            Err(TrySendError::Full(mut batch)) | Err(TrySendError::Disconnected(mut batch)) => {
                counters.drop_n(DropReason::WorkerQueueFull, batch.len() as u64);
                batch.clear();
                batch
            }
        }
    }

    /// Hands a batch to the workers, waiting for room (replay, shutdown drain).
    pub fn send_blocking(&self, batch: FrameBatch, counters: &mut LocalCounters) -> FrameBatch {
        match self.tx.send(batch) {
            Ok(()) => self.empty_batch(),
            Err(crossbeam_channel::SendError(mut batch)) => {
                counters.drop_n(DropReason::WorkerQueueFull, batch.len() as u64);
                batch.clear();
                batch
            }
        }
    }
}

/// Lock-free counter slots of every stage, summed on demand.
#[derive(Debug, Default, Clone)]
pub struct CounterSet {
    slots: Arc<std::sync::Mutex<Vec<Arc<StageCounters>>>>,
}

impl CounterSet {
    /// A new slot for one thread.
    pub fn register(&self) -> Arc<StageCounters> {
        let slot = Arc::new(StageCounters::default());
        if let Ok(mut slots) = self.slots.lock() {
            slots.push(Arc::clone(&slot));
        }
        slot
    }

    /// The sum over every slot.
    pub fn total(&self) -> LocalCounters {
        let mut total = LocalCounters::default();
        if let Ok(slots) = self.slots.lock() {
            for slot in slots.iter() {
                total.add(&slot.snapshot());
            }
        }
        total
    }
}

/// The queue length (frame batches) from which the reserve worker works: a quarter of
/// the queue, so that it starts well before the queue is full even at low rates (a batch
/// per receive-loop pause: 64 of the default 256 are 32 ms of traffic).
fn reserve_watermark(depth: usize) -> usize {
    (depth / 4).max(1)
}

/// Puts a bulk thread in its configured class; a refusal is logged and the thread runs on
/// in the default class (slower to yield to the receive threads, nothing lost).
fn lower_class(thread: &'static str, policy: crate::config::WorkerScheduling) {
    if let Err(e) = scheduling::apply_to_current_thread(policy) {
        tracing::warn!(thread, ?policy, error = %e, "cannot change the thread's scheduling class");
    }
}

/// Running workers and sink.
#[derive(Debug)]
pub struct Pipeline {
    frames: FrameSender,
    workers: Vec<JoinHandle<()>>,
    sink: JoinHandle<()>,
    counters: CounterSet,
}

impl Pipeline {
    /// Starts the sink thread on `sink` and the workers, each with its own decoder per
    /// stream.
    pub fn start(
        config: &Config,
        filter: PortFilter,
        streams: &Streams,
        details: &DetailSet,
        sink: Sink,
    ) -> Result<Self, PipelineError> {
        let counters = CounterSet::default();
        let format = config.sink.format_config();
        let router = Arc::new(streams.router.clone());
        let workers = config.worker_count();
        let depth = config.pipeline.queue_depth as usize;
        let (frame_tx, frame_rx) = crossbeam_channel::bounded::<FrameBatch>(depth);
        let (recycle_tx, recycle_rx) = crossbeam_channel::bounded::<FrameBatch>(depth + workers);
        let (sealed_tx, sealed_rx) = crossbeam_channel::bounded::<SealedBatch>(workers * 2);
        let filter = Arc::new(filter);

        let scheduling = config.pipeline.worker_scheduling;
        let sink_counters = counters.register();
        let sink_details = details.register();
        let sink_local = details.local();
        // The sink keeps the default class whatever the workers': it takes little CPU
        // (writing and syncing compressed batches), and workers that cannot hand over
        // their batches stall, the reserve worker too.
        let sink = std::thread::Builder::new()
            .name("sluice-sink".into())
            .spawn(move || {
                sink::run_sink(sink, sealed_rx, &sink_counters, &sink_details, sink_local)
            })
            .map_err(|source| PipelineError::Start {
                what: "sink thread",
                source,
            })?;

        // With `SCHED_IDLE` workers, one more in the default class for backlogs
        // (`worker` module).
        let reserve = usize::from(scheduling == crate::config::WorkerScheduling::Idle);
        let watermark = reserve_watermark(depth);
        let mut handles = Vec::with_capacity(workers + reserve);
        let mut reserve_thread = None;
        for id in 0..workers + reserve {
            let is_reserve = id >= workers;
            let mut worker_streams = Vec::with_capacity(streams.streams.len());
            for (index, stream) in streams.streams.iter().enumerate() {
                let builder =
                    BatchBuilder::new(index, id, stream.factory.schema(), &format, &config.batch)
                        .map_err(|source| PipelineError::Format {
                        format: format.format,
                        stream: stream.name.clone(),
                        source,
                    })?;
                worker_streams.push(WorkerStream::new(
                    stream.name.clone(),
                    stream.factory.build(),
                    builder,
                ));
            }
            let worker = Worker {
                frames: frame_rx.clone(),
                recycle: recycle_tx.clone(),
                sealed: sealed_tx.clone(),
                streams: worker_streams,
                router: Arc::clone(&router),
                filter: Arc::clone(&filter),
                counters: counters.register(),
                details: details.register(),
                detail: details.local(),
                packet_clock: config.pipeline.packet_clock,
                latest_received_at: 0,
                intake: if is_reserve {
                    Intake::Backlog { watermark }
                } else {
                    Intake::Always
                },
            };
            let name = if is_reserve {
                "sluice-reserve".to_owned()
            } else {
                format!("sluice-worker-{id}")
            };
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    if !is_reserve {
                        lower_class("sluice-worker", scheduling);
                    }
                    worker.run();
                })
                .map_err(|source| PipelineError::Start {
                    what: "worker thread",
                    source,
                })?;
            if is_reserve {
                reserve_thread = Some(handle.thread().clone());
            }
            handles.push(handle);
        }
        tracing::info!(
            workers,
            reserve_workers = reserve,
            scheduling = ?scheduling,
            "workers and sink started"
        );
        Ok(Self {
            frames: FrameSender {
                tx: frame_tx,
                recycled: recycle_rx,
                reserve: reserve_thread,
                backlog: watermark,
            },
            workers: handles,
            sink,
            counters,
        })
    }

    /// A handle for a source thread.
    pub fn frame_sender(&self) -> FrameSender {
        self.frames.clone()
    }

    /// The counter slots (sources register theirs here too).
    pub fn counters(&self) -> &CounterSet {
        &self.counters
    }

    /// Waits until every frame is processed and every batch written; returns the totals.
    /// Every other [`FrameSender`] must have been dropped first.
    pub fn finish(self) -> LocalCounters {
        let Self {
            frames,
            workers,
            sink,
            counters,
        } = self;
        drop(frames);
        for handle in workers {
            if handle.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
        if sink.join().is_err() {
            tracing::error!("the sink thread panicked");
        }
        counters.total()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        sync::atomic::{AtomicBool, Ordering},
        time::{Duration, Instant},
    };

    use super::{Pipeline, frames::FrameOrigin};
    use crate::{
        accounting::{DropReason, LocalCounters},
        config::{Config, FilterConfig, WorkerScheduling},
        decap::PortFilter,
        detail::DetailSet,
        record::timestamp::now_micros,
        streams::Streams,
    };

    /// Busy loops in the default class on every CPU for `limit` or until `stop`.
    fn occupy_every_cpu(
        stop: &'static AtomicBool,
        limit: Duration,
    ) -> Vec<std::thread::JoinHandle<()>> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..cpus)
            .map(|_| {
                std::thread::spawn(move || {
                    let start = Instant::now();
                    while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect()
    }

    /// With `SCHED_IDLE` workers, another program busy on every CPU must not starve the
    /// pipeline: the reserve worker takes the backlog. 400 batches of 50 KB in about a
    /// second are more than the queue holds (256): without the reserve, thousands of
    /// frames were dropped here as `worker_queue_full`.
    #[test]
    fn busy_programs_on_every_cpu_do_not_starve_idle_workers()
    -> Result<(), Box<dyn std::error::Error>> {
        static STOP: AtomicBool = AtomicBool::new(false);
        let dir = sluice_testkit::scratch::tempdir("pipeline-starve")?;
        let mut config = Config::default();
        config.sink.path = dir.path().join("records");
        config.pipeline.workers = 2;
        config.pipeline.worker_scheduling = WorkerScheduling::Idle;
        let streams = Streams::build(&[], &[], dir.path())?;
        let names = streams.streams.iter().map(|s| s.name.clone()).collect();
        let (sink, _) = crate::upload::open_sink(&config, names)?;
        let filter = PortFilter::new(&FilterConfig::default());
        let details = DetailSet::default();
        let pipeline = Pipeline::start(&config, filter, &streams, &details, sink)?;
        let sender = pipeline.frame_sender();
        let src: SocketAddr = "192.0.2.7:4000".parse()?;
        let dst: SocketAddr = "192.0.2.1:9000".parse()?;

        const FRAMES: usize = 50;
        let payload = vec![0x5a_u8; 1000];
        let hogs = occupy_every_cpu(&STOP, Duration::from_secs(10));
        let mut sent = LocalCounters::default();
        let mut batch = sender.empty_batch();
        for _ in 0..400 {
            for _ in 0..FRAMES {
                batch.push(&payload, now_micros(), FrameOrigin::Socket { src, dst });
            }
            batch = sender.send_or_drop(batch, &mut sent);
            std::thread::sleep(Duration::from_micros(2500));
        }
        STOP.store(true, Ordering::Relaxed);
        for hog in hogs {
            let _ = hog.join();
        }
        drop(sender);
        let totals = pipeline.finish();
        assert_eq!(sent.dropped[DropReason::WorkerQueueFull as usize], 0);
        assert_eq!(
            (totals.recorded, totals.dropped_total()),
            (400 * FRAMES as u64, 0)
        );
        Ok(())
    }
}
