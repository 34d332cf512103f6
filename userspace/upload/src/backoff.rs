//! Retry delays: exponential from `backoff_min_ms` to `backoff_max_ms`, with jitter so
//! that uploads that failed together (an outage) do not all retry in the same instant.

use std::time::Duration;

/// Exponential backoff with "equal jitter": retry `n` (0 = the first retry) waits a
/// uniformly random time in `[d/2, d]`, where `d = min(max, min · 2ⁿ)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Delays between `min` and `max` (`max` is raised to `min` if smaller).
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
        }
    }

    /// The upper bound of retry `retry`'s delay (before jitter).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry `retry`.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(fastrand::u64(0..=spread))
    }

    /// The largest delay (also used after a permanent error).
    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_maximum() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let ceilings: Vec<u128> = (0..7).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_millis(1000));
        assert_eq!(b.max(), Duration::from_millis(1000));
    }

    #[test]
    fn delays_stay_within_half_and_full_ceiling() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(60));
        for retry in 0..12 {
            let ceiling = b.ceiling(retry);
            for _ in 0..200 {
                let d = b.delay(retry);
                assert!(d >= ceiling / 2 && d <= ceiling, "retry {retry}: {d:?}");
            }
        }
    }

    #[test]
    fn max_below_min_is_raised() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.ceiling(5), Duration::from_secs(2));
    }
}
