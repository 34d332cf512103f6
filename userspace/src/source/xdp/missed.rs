//! Packets that were ours but went to the kernel because of a failure on our side — today
//! only `pass_no_socket`: steered traffic on a queue that has no AF_XDP socket. They are
//! counted by the program (a verdict counter); this watch turns a rise of that counter
//! into an error in the log, at most once per [`LOG_EVERY`] with the number since the last
//! line, so an operator reading the journal learns it as surely as one reading alerts
//! (`SluiceSteeredPacketsPassed`).

use std::time::{Duration, Instant};

use sluice_common::Verdict;

/// The least time between two log lines.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Tracks the missed-packet counters between readings.
#[derive(Debug, Default)]
pub struct MissedWatch {
    logged_total: u64,
    last_log: Option<Instant>,
}

/// What to log: packets missed since the last line, and the total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missed {
    /// Since the last log line.
    pub new: u64,
    /// Since start.
    pub total: u64,
}

impl MissedWatch {
    /// Reads the verdict counters; `Some` when a line is due.
    pub fn check(&mut self, verdicts: &[u64], now: Instant) -> Option<Missed> {
        let total: u64 = Verdict::ALL
            .iter()
            .filter(|v| v.is_missed())
            .filter_map(|v| verdicts.get(*v as usize))
            .sum();
        if total <= self.logged_total || self.last_log.is_some_and(|t| now - t < LOG_EVERY) {
            return None;
        }
        let missed = Missed {
            new: total - self.logged_total,
            total,
        };
        self.logged_total = total;
        self.last_log = Some(now);
        Some(missed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rise_is_reported_at_most_every_ten_seconds_with_the_count_since() {
        let mut watch = MissedWatch::default();
        let t0 = Instant::now();
        let mut v = vec![0u64; Verdict::ALL.len()];
        v[Verdict::PassNotIp as usize] = 100;
        assert_eq!(watch.check(&v, t0), None);
        v[Verdict::PassNoSocket as usize] = 3;
        assert_eq!(watch.check(&v, t0), Some(Missed { new: 3, total: 3 }));
        v[Verdict::PassNoSocket as usize] = 5;
        assert_eq!(watch.check(&v, t0 + Duration::from_secs(9)), None);
        assert_eq!(
            watch.check(&v, t0 + Duration::from_secs(10)),
            Some(Missed { new: 2, total: 5 })
        );
        assert_eq!(watch.check(&v, t0 + Duration::from_secs(30)), None);
    }
}
