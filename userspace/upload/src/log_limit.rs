//! Log lines at a bounded rate: a condition that repeats for every batch (a full spool, a
//! bucket that refuses writes) is said once per interval, with the number of repeats
//! that were not printed, instead of flooding the journal.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one line through per interval and counts the rest.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    state: Mutex<LimiterState>,
}

#[derive(Debug)]
struct LimiterState {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter that allows one line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(LimiterState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be printed now (`n` lines were held back since the last
    /// one), `None` when this one is to be held back.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = state
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            state.last = Some(now);
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.allow_at(t0), Some(0));
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(9)), None);
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(30)), Some(1));
    }
}
