//! When a sink that did not take an event is tried again: exponential
//! backoff with full jitter. The ceiling doubles with every failed round
//! (1 s, 2 s, 4 s, …) up to 10 minutes, and the wait is uniform between
//! zero and the ceiling, so events and instances that failed together do
//! not retry together.

use std::time::Duration;

/// The schedule: `base · 2^tries`, at most `cap`, times a jitter draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first round's ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 1 s doubling up to 10 min.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The ceiling of the wait after `tries` earlier failed rounds (0 for
    /// the first failure).
    pub fn ceiling(&self, tries: u32) -> Duration {
        let factor = 1u32.checked_shl(tries.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The wait after `tries` earlier failed rounds, with `jitter` in
    /// `[0, 1)` (a random draw; tests pass fixed values).
    pub fn delay(&self, tries: u32, jitter: f64) -> Duration {
        self.ceiling(tries).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_from_one_second_up_to_ten_minutes() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..12).map(|t| b.ceiling(t).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(b.ceiling(40), b.cap);
        assert_eq!(b.ceiling(u32::MAX), b.cap);
    }

    #[test]
    fn the_wait_is_the_jitter_share_of_the_ceiling() {
        let b = Backoff::default();
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(20, 0.25), Duration::from_secs(150));
        assert_eq!(
            b.delay(0, 7.0),
            Duration::from_secs(1),
            "out-of-range jitter is clamped"
        );
    }
}
