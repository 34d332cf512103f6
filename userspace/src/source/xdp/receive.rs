//! One receive loop per AF_XDP socket: as little work as possible per frame — copy it into
//! a frame batch (the workers strip and parse it), hand the UMEM frame back to the fill
//! ring — so one queue carrying one tunnel can feed every worker.
//!
//! The loop's one duty that cannot wait is keeping the fill ring stocked: while it does
//! not run, the kernel draws on the frames already posted, and once they are gone it drops
//! packets (`xsk_rx_dropped`). So it does nothing else per iteration: kernel statistics are
//! read and counters published every 100 ms, not per empty poll; while traffic flows it
//! pauses a fixed 500 µs between reads instead of being woken per frame; and the workers
//! and sink run in a lower scheduling class (`pipeline::scheduling`) so that it wins the
//! CPU whenever it wakes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sluice_xsk::XskSocket;

use crate::{
    accounting::{DropReason, LocalCounters, StageCounters},
    detail::{self, DetailCounters, DetailSlot, QueueTotals},
    pipeline::{FRAMES_PER_BATCH, FrameSender, frames::FrameOrigin},
    record::timestamp::now_micros,
};

/// Descriptors read from the RX ring (and returned to the fill ring) at a time.
const RING_READ: usize = 64;

/// How long a partial batch may wait for more frames once the ring is drained.
const BATCH_HOLD: Duration = Duration::from_micros(500);

/// How long the loop sleeps after draining the ring while traffic flows. Waiting on the
/// socket instead wakes the thread for nearly every frame (the kernel signals the socket
/// per packet): at 1 Mpps that measured ~7 000 wakeups a second, each a chance to queue
/// behind another thread and ~10 µs of switching. Measured at 1 Mpps (raw → Parquet), the
/// receive thread's CPU per packet was 0.16 µs waiting on the socket, 0.11 with a 200 µs
/// pause, 0.080 with 500 µs and 0.074 with 1 ms. 500 µs is 750 frames at 1.5 Mpps, a
/// twentieth of what the fill ring holds (16 384 frames by default: 11 ms).
const COALESCE_PAUSE: Duration = Duration::from_micros(500);

/// After this long without a frame the loop stops pausing and waits on the socket, so an
/// idle queue costs no timer wakeups.
const IDLE_AFTER: Duration = Duration::from_millis(20);

/// How often the socket's kernel statistics are read and the counters published.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Receives until `draining` is set and the ring stays empty; returns the socket so its
/// final statistics can be read. With `spin` (busy polling) it never sleeps while
/// running.
pub fn receive_loop(
    mut socket: XskSocket,
    spin: bool,
    frames: FrameSender,
    draining: Arc<AtomicBool>,
    counters: Arc<StageCounters>,
    details: DetailSlot,
    mut detail: DetailCounters,
) -> XskSocket {
    let mut local = LocalCounters::default();
    let queue = socket.queue_id().to_string();
    let mut totals = QueueTotals::default();
    let mut batch = frames.empty_batch();
    let mut last_stats = Instant::now();
    let mut idle_polls = 0;
    let mut batch_started: Option<Instant> = None;
    let mut last_frame = Instant::now();
    loop {
        let now = now_micros();
        // Fill the batch while the ring has frames; hand it over when it is full, or when
        // the ring is drained, the batch is older than BATCH_HOLD and the workers are not
        // behind. Fewer, fuller batches mean fewer worker wakeups, which cost more than
        // the frames themselves at a million packets per second; the hold adds at most
        // ~1 ms to a record's age while the workers keep up.
        let mut received = 0;
        loop {
            let room = FRAMES_PER_BATCH.saturating_sub(batch.len());
            let n = socket.receive(room.min(RING_READ), |frame| {
                totals.bytes += frame.data.len() as u64;
                batch.push(frame.data, now, FrameOrigin::Steered);
            });
            received += n;
            if n == 0 || batch.len() >= FRAMES_PER_BATCH {
                break;
            }
        }
        let full = batch.len() >= FRAMES_PER_BATCH;
        if received > 0 {
            last_frame = Instant::now();
            if batch_started.is_none() {
                batch_started = Some(last_frame);
            }
        }
        local.received += received as u64;
        totals.packets += received as u64;
        let stopping = draining.load(Ordering::Acquire);
        // While the workers are behind, a partial batch waits until it is full
        // (`FrameSender::backlogged`): the queue then holds more frames, not more batches.
        let due = full
            || stopping
            || (batch_started.is_some_and(|t| t.elapsed() >= BATCH_HOLD) && !frames.backlogged());
        if !batch.is_empty() && due {
            batch = if stopping {
                frames.send_blocking(batch, &mut local)
            } else {
                frames.send_or_drop(batch, &mut local)
            };
            batch_started = None;
        }
        if last_stats.elapsed() >= PUBLISH_EVERY {
            read_kernel_stats(&socket, &mut local, &mut totals);
            counters.publish(&local);
            detail.queues.insert(queue.clone(), totals);
            detail::publish(&details, &detail);
            last_stats = Instant::now();
        }
        if full {
            // The ring may hold more: read on without waiting.
            idle_polls = 0;
            continue;
        }
        if stopping {
            if received > 0 {
                idle_polls = 0;
                continue;
            }
            idle_polls += 1;
            if idle_polls >= 3 {
                break;
            }
        } else if spin {
            // Busy polling: `receive` kicked the kernel to run the queue; look again.
            std::hint::spin_loop();
            continue;
        }
        if !stopping && last_frame.elapsed() < IDLE_AFTER {
            // Traffic is flowing: let frames gather in the ring instead of waking per frame.
            std::thread::sleep(COALESCE_PAUSE);
            continue;
        }
        let timeout = if stopping || batch_started.is_some() {
            // Stopping, or holding a partial batch: look again soon.
            Duration::from_millis(1)
        } else {
            PUBLISH_EVERY
        };
        if let Err(e) = socket.wait_readable(timeout) {
            tracing::error!(queue = socket.queue_id(), error = %e, "poll on AF_XDP socket failed");
            std::thread::sleep(timeout);
        }
    }
    read_kernel_stats(&socket, &mut local, &mut totals);
    counters.publish(&local);
    detail.queues.insert(queue, totals);
    detail::publish(&details, &detail);
    socket
}

/// Copies the socket's cumulative kernel counters: its drops into the local counters,
/// all of them into the queue's totals.
fn read_kernel_stats(socket: &XskSocket, local: &mut LocalCounters, totals: &mut QueueTotals) {
    match socket.statistics() {
        Ok(stats) => {
            local.dropped[DropReason::RingFull as usize] = stats.rx_ring_full;
            local.dropped[DropReason::XskRxDropped as usize] = stats.rx_dropped;
            totals.rx_dropped = stats.rx_dropped;
            totals.rx_invalid_descs = stats.rx_invalid_descs;
            totals.rx_ring_full = stats.rx_ring_full;
            totals.fill_ring_empty = stats.rx_fill_ring_empty_descs;
        }
        Err(e) => tracing::warn!(queue = socket.queue_id(), error = %e, "XDP_STATISTICS failed"),
    }
}
