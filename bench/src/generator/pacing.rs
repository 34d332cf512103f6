//! The generator's schedule, the same for every engine: chunks of one frame of the mix,
//! picked by smooth weighted round-robin, sized to about 1 ms of traffic when paced; a run
//! that fell behind catches up in bounded bursts; every run stops at its duration or its
//! frame budget, whichever comes first.

use std::time::{Duration, Instant};

use super::GenError;

/// Frames per chunk when running flat out with one frame (about 5 ms at 3 Mpps).
const FLAT_OUT_CHUNK: u64 = 16_384;
/// Frames per chunk when a mix has several frames, so the mix is fine-grained.
const MIX_CHUNK: u64 = 1_024;
/// Smallest chunk of a paced run.
const MIN_CHUNK: u64 = 64;
/// A paced run that fell behind sends at most this many base chunks at once.
const CATCH_UP: u64 = 4;

/// What sending one chunk did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Sent {
    /// Frames offered.
    pub frames: u64,
    /// Syscalls issued.
    pub syscalls: u64,
}

/// An engine's way of sending `repeat` copies of one frame of the mix.
pub(super) trait ChunkSender {
    /// Sends `repeat` copies of frame `index`; may send fewer only when `deadline` passed.
    fn send(&mut self, index: usize, repeat: u64, deadline: Instant) -> Result<Sent, GenError>;
}

/// What a paced run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Paced {
    /// Frames the sender reported offered.
    pub frames: u64,
    /// Syscalls issued.
    pub syscalls: u64,
    /// Wall time from the first chunk to the end of the last.
    pub elapsed: Duration,
}

/// Offers `rate_pps` frames per second (0 = flat out) of the frames weighted by `weights`
/// until `duration` has passed or `max_packets` were offered.
pub(super) fn pace(
    sender: &mut impl ChunkSender,
    weights: Vec<u32>,
    rate_pps: u64,
    duration: Duration,
    max_packets: u64,
) -> Result<Paced, GenError> {
    let chunk = chunk_size(rate_pps, weights.len());
    let mut picker = WeightedRoundRobin::new(weights);
    let mut offered = 0u64;
    let mut syscalls = 0u64;
    let start = Instant::now();
    let deadline = start + duration;
    while offered < max_packets && start.elapsed() < duration {
        let index = picker.next();
        // Behind schedule (the thread was preempted or slept too long): catch up in
        // chunks of up to CATCH_UP × the base chunk, no bigger, to bound the burst.
        let behind = if rate_pps > 0 {
            let due = (start.elapsed().as_secs_f64() * rate_pps as f64) as u64;
            due.saturating_sub(offered)
        } else {
            0
        };
        let repeat = behind
            .clamp(chunk, chunk * CATCH_UP)
            .min(max_packets - offered);
        let sent = sender.send(index, repeat, deadline)?;
        offered += sent.frames;
        syscalls += sent.syscalls;
        if rate_pps > 0 {
            // Where the schedule says we should be; sleep off any lead.
            let due = Duration::from_secs_f64(offered as f64 / rate_pps as f64);
            let now = start.elapsed();
            if due > now {
                let remaining = duration.saturating_sub(now);
                std::thread::sleep((due - now).min(remaining));
            }
        }
    }
    Ok(Paced {
        frames: offered,
        syscalls,
        elapsed: start.elapsed(),
    })
}

/// Frames per chunk: about 1 ms of traffic when paced, larger when flat out.
fn chunk_size(rate_pps: u64, frames: usize) -> u64 {
    let cap = if frames > 1 {
        MIX_CHUNK
    } else {
        FLAT_OUT_CHUNK
    };
    if rate_pps == 0 {
        cap
    } else {
        (rate_pps / 1_000).clamp(MIN_CHUNK, cap)
    }
}

/// Smooth weighted round-robin (each pick adds every weight to its credit and takes the
/// largest credit, minus the total): picks follow the weights closely over short spans.
struct WeightedRoundRobin {
    weights: Vec<i64>,
    credit: Vec<i64>,
    total: i64,
}

impl WeightedRoundRobin {
    fn new(weights: Vec<u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let total = weights.iter().sum();
        Self {
            credit: vec![0; weights.len()],
            weights,
            total,
        }
    }

    fn next(&mut self) -> usize {
        let mut best = 0;
        for (i, weight) in self.weights.iter().enumerate() {
            self.credit[i] += weight;
            if self.credit[i] > self.credit[best] {
                best = i;
            }
        }
        self.credit[best] -= self.total;
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_round_robin_follows_weights() {
        let mut picker = WeightedRoundRobin::new(vec![1, 3, 0]);
        let picks: Vec<usize> = (0..8).map(|_| picker.next()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 2);
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 6);
        assert!(!picks.contains(&2));
    }

    #[test]
    fn chunks_are_about_a_millisecond() {
        assert_eq!(chunk_size(0, 1), FLAT_OUT_CHUNK);
        assert_eq!(chunk_size(0, 3), MIX_CHUNK);
        assert_eq!(chunk_size(1_000_000, 1), 1_000);
        assert_eq!(chunk_size(10_000, 1), MIN_CHUNK);
    }

    /// Records the chunks it is asked for and offers all of them.
    struct Recorder(Vec<(usize, u64)>);

    impl ChunkSender for Recorder {
        fn send(&mut self, index: usize, repeat: u64, _: Instant) -> Result<Sent, GenError> {
            self.0.push((index, repeat));
            Ok(Sent {
                frames: repeat,
                syscalls: 1,
            })
        }
    }

    #[test]
    fn a_flat_out_run_stops_at_its_frame_budget() {
        let mut recorder = Recorder(Vec::new());
        let paced =
            pace(&mut recorder, vec![1, 1], 0, Duration::from_secs(10), 2_500).expect("pace");
        assert_eq!((paced.frames, paced.syscalls), (2_500, 3));
        assert_eq!(recorder.0, [(0, 1_024), (1, 1_024), (0, 452)]);
    }
}
