//! One receive loop per AF_XDP socket: as little work as possible per frame — copy it into
//! a frame batch (the workers strip and parse it), hand the UMEM frame back to the fill ring — so one
//! queue carrying one tunnel can feed every worker.

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
    loop {
        let now = now_micros();
        // Fill the batch while the ring has frames; hand it over when it is full, or when
        // the ring is drained and the batch is older than BATCH_HOLD. Fewer, fuller
        // batches mean fewer worker wakeups, which cost more than the frames themselves
        // at a million packets per second; the hold adds at most ~1 ms to a record's age.
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
        if received > 0 && batch_started.is_none() {
            batch_started = Some(Instant::now());
        }
        local.received += received as u64;
        totals.packets += received as u64;
        let stopping = draining.load(Ordering::Acquire);
        let due = batch.len() >= FRAMES_PER_BATCH
            || stopping
            || batch_started.is_some_and(|t| t.elapsed() >= BATCH_HOLD);
        if !batch.is_empty() && due {
            batch = if stopping {
                frames.send_blocking(batch, &mut local)
            } else {
                frames.send_or_drop(batch, &mut local)
            };
            batch_started = None;
        }
        if received == 0 || last_stats.elapsed() >= Duration::from_millis(200) {
            read_kernel_stats(&socket, &mut local, &mut totals);
            counters.publish(&local);
            detail.queues.insert(queue.clone(), totals);
            detail::publish(&details, &detail);
            last_stats = Instant::now();
        }
        if received > 0 {
            idle_polls = 0;
            continue;
        }
        if stopping {
            idle_polls += 1;
            if idle_polls >= 3 {
                break;
            }
        } else if spin {
            // Busy polling: `receive` kicked the kernel to run the queue; look again.
            std::hint::spin_loop();
            continue;
        }
        let timeout = if stopping || batch_started.is_some() {
            // Stopping, or holding a partial batch: look again soon.
            Duration::from_millis(1)
        } else {
            Duration::from_millis(100)
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
