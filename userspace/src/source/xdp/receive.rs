//! One receive loop per AF_XDP socket: as little work as possible per frame — copy it and
//! its metadata into a frame batch, hand the UMEM frame back to the fill ring — so one
//! queue carrying one tunnel can feed every worker.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sluice_common::TunnelMeta;
use sluice_xsk::XskSocket;

use crate::{
    accounting::{DropReason, LocalCounters, StageCounters},
    detail::{self, DetailCounters, DetailSlot, QueueTotals},
    pipeline::{FRAMES_PER_BATCH, FrameSender, frames::FrameOrigin},
    record::timestamp::now_micros,
};

const META_LEN: usize = size_of::<TunnelMeta>();

/// Reads the metadata the XDP program put in front of the frame (zeroed, and so invalid,
/// when the headroom is too short to hold it).
pub fn read_meta(headroom: &[u8]) -> TunnelMeta {
    let Some(start) = headroom.len().checked_sub(META_LEN) else {
        return TunnelMeta {
            flags: 0,
            gre_key: 0,
            outer_src: [0; 16],
            outer_dst: [0; 16],
        };
    };
    let m = &headroom[start..];
    let word = |at: usize| u32::from_ne_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
    let mut outer_src = [0u8; 16];
    let mut outer_dst = [0u8; 16];
    outer_src.copy_from_slice(&m[8..24]);
    outer_dst.copy_from_slice(&m[24..40]);
    TunnelMeta {
        flags: word(0),
        gre_key: word(4),
        outer_src,
        outer_dst,
    }
}

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
                batch.push(
                    frame.data,
                    now,
                    FrameOrigin::Stripped(read_meta(frame.headroom)),
                );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metadata_from_the_end_of_the_headroom() {
        let meta = TunnelMeta {
            flags: sluice_common::META_MAGIC | sluice_common::META_TUNNELLED,
            gre_key: 0xdead_beef,
            outer_src: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            outer_dst: [192, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        let mut headroom = vec![0xAAu8; 256];
        let start = headroom.len() - META_LEN;
        headroom[start..start + 4].copy_from_slice(&meta.flags.to_ne_bytes());
        headroom[start + 4..start + 8].copy_from_slice(&meta.gre_key.to_ne_bytes());
        headroom[start + 8..start + 24].copy_from_slice(&meta.outer_src);
        headroom[start + 24..].copy_from_slice(&meta.outer_dst);
        assert_eq!(read_meta(&headroom), meta);
        assert!(!read_meta(&headroom[..10]).is_valid());
    }
}
