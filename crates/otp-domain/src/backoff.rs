//! The one retry schedule: exponential backoff with full jitter. The
//! ceiling doubles with every failed try (`base`, `2·base`, `4·base`, …)
//! up to `cap`, and the wait is uniform between zero and the ceiling, so
//! calls that failed together do not retry together. Provider deliveries
//! (`delivery.base_delay_ms`, `max_delay_ms`) and event sinks (1 s up to
//! 10 min) use it with their own numbers; the jitter draw comes from the
//! caller, so tests pass fixed values.

use std::time::Duration;

/// The schedule: `base · 2^tries`, at most `cap`, times a jitter draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
}

impl Backoff {
    /// The ceiling of the wait after `tries` earlier failures (0 for the
    /// first failure).
    pub fn ceiling(&self, tries: u32) -> Duration {
        let factor = 1u32.checked_shl(tries.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The wait after `tries` earlier failures, with `jitter` in `[0, 1)`
    /// (a random draw).
    pub fn delay(&self, tries: u32, jitter: f64) -> Duration {
        self.ceiling(tries).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
        }
    }

    #[test]
    fn the_ceiling_doubles_from_the_base_up_to_the_cap() {
        let b = events();
        let secs: Vec<u64> = (0..12).map(|t| b.ceiling(t).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(b.ceiling(40), b.cap);
        assert_eq!(b.ceiling(u32::MAX), b.cap);
    }

    #[test]
    fn the_wait_is_the_jitter_share_of_the_ceiling() {
        let b = events();
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(20, 0.25), Duration::from_secs(150));
        assert_eq!(
            b.delay(0, 7.0),
            Duration::from_secs(1),
            "out-of-range jitter is clamped"
        );
    }

    #[test]
    fn a_huge_base_saturates_at_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(u64::MAX / 2),
            cap: Duration::from_secs(2),
        };
        assert_eq!(b.ceiling(5), Duration::from_secs(2));
    }
}
