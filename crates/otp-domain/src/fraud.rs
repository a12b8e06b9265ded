//! The fraud guard: SMS pumping recognised by conversion, per number
//! prefix.
//!
//! Pumped numbers never enter their codes; real users do. So for SMS and
//! voice otpd counts, per prefix (the country calling code and the next
//! `prefix_digits` digits), the sends that reached a provider and the
//! approvals, in a sliding window held in the store (so several instances
//! share it). A prefix with at least `min_sends` sends in the window and a
//! conversion below `min_conversion` is blocked for `block_secs`: new sends
//! under it are refused (`mode = "block"`), or only recorded and announced
//! (`mode = "monitor"`).
//!
//! The window is the usual sliding-window counter: two fixed windows, the
//! previous one weighted by how much of it still overlaps the last
//! `window` milliseconds. It never under-counts a steady stream and needs
//! two numbers per prefix.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// What the guard does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FraudMode {
    /// Refuse sends under a blocked prefix (403 `fraud_suspected`).
    Block,
    /// Record blocks, announce them (events, metrics), refuse nothing.
    Monitor,
    /// Count nothing.
    Off,
}

impl FraudMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FraudMode::Block => "block",
            FraudMode::Monitor => "monitor",
            FraudMode::Off => "off",
        }
    }
}

/// The guard's settings (`[fraud]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FraudPolicy {
    pub mode: FraudMode,
    /// Digits after the calling code that make up a prefix.
    pub prefix_digits: usize,
    pub window_secs: u64,
    /// Sends in the window before the conversion is judged at all.
    pub min_sends: u32,
    /// Approvals per send below which a prefix is blocked (0 to 1).
    pub min_conversion: f64,
    pub block_secs: u64,
    /// Prefixes (digits, no `+`) that are never blocked; a number is
    /// exempt when its digits start with one of them.
    pub never_block: Vec<String>,
}

impl Default for FraudPolicy {
    fn default() -> Self {
        FraudPolicy {
            mode: FraudMode::Block,
            prefix_digits: 3,
            window_secs: 3600,
            min_sends: 50,
            min_conversion: 0.2,
            block_secs: 3600,
            never_block: Vec::new(),
        }
    }
}

/// A number prefix: the calling code and the next digits, as digits
/// without `+` (`7701` for `+7 701 …` with one more digit).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Prefix(String);

impl Prefix {
    /// The prefix of an E.164 number (`+` and digits), or `None` when its
    /// calling code is unknown or it is too short.
    pub fn of_e164(e164: &str, digits: usize) -> Option<Prefix> {
        let all = e164.strip_prefix('+')?;
        if !all.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let cc = calling_code_len(all)?;
        let len = cc + digits;
        (all.len() > len).then(|| Prefix(all[..len].to_owned()))
    }

    /// A prefix as given to the API or in `never_block`: 1 to 15 digits.
    pub fn parse(s: &str) -> Option<Prefix> {
        let s = s.strip_prefix('+').unwrap_or(s);
        (!s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Prefix(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many leading digits of `digits` are its calling code. ITU calling
/// codes are prefix-free, so at most one of the 1-, 2- and 3-digit
/// prefixes is assigned.
pub fn calling_code_len(digits: &str) -> Option<usize> {
    (1..=3).find(|&n| {
        digits
            .get(..n)
            .and_then(|p| p.parse::<u16>().ok())
            .is_some_and(|code| phonenumber::metadata::DATABASE.by_code(&code).is_some())
    })
}

/// A prefix's counters: sends and approvals of the current fixed window
/// (which started at `window_start`) and of the one before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub window_start: Timestamp,
    pub sends: u64,
    pub approvals: u64,
    pub prev_sends: u64,
    pub prev_approvals: u64,
}

/// Sends and approvals over the last window, estimated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    pub sends: f64,
    pub approvals: f64,
}

impl Conversion {
    /// Approvals per send (1 when there were no sends).
    pub fn rate(&self) -> f64 {
        if self.sends <= 0.0 {
            1.0
        } else {
            (self.approvals / self.sends).min(1.0)
        }
    }
}

impl Counters {
    /// The counters moved to the fixed window that holds `now`. A caller
    /// whose clock lags the instance that already moved them on counts
    /// into the stored window, so clock skew between instances never
    /// wipes the counts.
    pub fn at(self, now: Timestamp, window_ms: u64) -> Counters {
        let window_ms = window_ms.max(1);
        let start = now - now % window_ms;
        if start <= self.window_start {
            self
        } else if start == self.window_start + window_ms {
            Counters {
                window_start: start,
                sends: 0,
                approvals: 0,
                prev_sends: self.sends,
                prev_approvals: self.approvals,
            }
        } else {
            Counters {
                window_start: start,
                ..Counters::default()
            }
        }
    }

    /// Adds `sends` and `approvals` at `now`.
    pub fn add(self, sends: u64, approvals: u64, now: Timestamp, window_ms: u64) -> Counters {
        let c = self.at(now, window_ms);
        Counters {
            sends: c.sends + sends,
            approvals: c.approvals + approvals,
            ..c
        }
    }

    /// The estimate over the last `window_ms` before `now`.
    pub fn conversion(self, now: Timestamp, window_ms: u64) -> Conversion {
        let window_ms = window_ms.max(1);
        let c = self.at(now, window_ms);
        let elapsed = now.saturating_sub(c.window_start) as f64 / window_ms as f64;
        let weight = (1.0 - elapsed).clamp(0.0, 1.0);
        Conversion {
            sends: c.sends as f64 + c.prev_sends as f64 * weight,
            approvals: c.approvals as f64 + c.prev_approvals as f64 * weight,
        }
    }
}

/// An active block of a prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub prefix: Prefix,
    /// ISO region of the prefix, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    pub since: Timestamp,
    pub until: Timestamp,
    /// The window's estimate when it was blocked.
    pub sends: f64,
    pub approvals: f64,
    /// `monitor` blocks refuse nothing.
    pub mode: FraudMode,
}

impl Block {
    /// Whether this block refuses sends at `now`: active, in block mode.
    pub fn refuses(&self, now: Timestamp) -> bool {
        self.mode == FraudMode::Block && self.until > now
    }
}

impl FraudPolicy {
    /// Whether `conversion` calls for a block of `prefix`.
    pub fn judges_fraud(&self, prefix: &Prefix, conversion: Conversion) -> bool {
        self.mode != FraudMode::Off
            && conversion.sends >= f64::from(self.min_sends)
            && conversion.rate() < self.min_conversion
            && !self
                .never_block
                .iter()
                .any(|p| prefix.as_str().starts_with(p.as_str()))
    }

    pub fn window_ms(&self) -> u64 {
        self.window_secs.saturating_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_the_calling_code_and_the_next_digits() {
        assert_eq!(
            Prefix::of_e164("+77011234567", 3).map(|p| p.0),
            Some("7701".into())
        );
        assert_eq!(
            Prefix::of_e164("+4930123456", 3).map(|p| p.0),
            Some("49301".into())
        );
        assert_eq!(
            Prefix::of_e164("+3725123456", 2).map(|p| p.0),
            Some("37251".into())
        );
        assert_eq!(
            Prefix::of_e164("+12025550123", 3).map(|p| p.0),
            Some("1202".into())
        );
        assert_eq!(Prefix::of_e164("77011234567", 3), None);
        assert_eq!(Prefix::of_e164("+7701", 3), None);
    }

    #[test]
    fn calling_codes_of_one_two_and_three_digits_are_told_apart() {
        assert_eq!(calling_code_len("77011234567"), Some(1));
        assert_eq!(calling_code_len("4930123456"), Some(2));
        assert_eq!(calling_code_len("3725123456"), Some(3));
        assert_eq!(calling_code_len("999"), None);
    }

    #[test]
    fn the_previous_window_fades_out_linearly() {
        let w = 1000;
        let c = Counters::default().add(100, 10, 500, w).add(0, 0, 1000, w);
        assert_eq!(c.prev_sends, 100);
        let half = c.conversion(1500, w);
        assert!((half.sends - 50.0).abs() < 1e-9, "{half:?}");
        assert!((half.approvals - 5.0).abs() < 1e-9, "{half:?}");
        // Two windows later everything is gone.
        assert_eq!(c.conversion(3000, w).sends, 0.0);
    }

    #[test]
    fn a_lagging_clock_counts_into_the_newer_window_and_wipes_nothing() {
        let w = 1000;
        // Another instance moved the counters to the window at 2000.
        let c = Counters::default().add(10, 1, 1500, w).add(4, 0, 2100, w);
        assert_eq!((c.window_start, c.sends, c.prev_sends), (2000, 4, 10));
        // This instance's clock still says 1990.
        let lagging = c.add(1, 1, 1990, w);
        assert_eq!(
            (
                lagging.window_start,
                lagging.sends,
                lagging.approvals,
                lagging.prev_sends
            ),
            (2000, 5, 1, 10)
        );
        let seen = lagging.conversion(1990, w);
        assert!(seen.sends >= 15.0, "{seen:?}");
    }

    #[test]
    fn only_enough_unconverted_sends_make_a_block_and_never_block_wins() {
        let p = FraudPolicy {
            min_sends: 10,
            min_conversion: 0.2,
            never_block: vec!["4930".into()],
            ..FraudPolicy::default()
        };
        let conv = |sends: f64, approvals: f64| Conversion { sends, approvals };
        let kz = Prefix::parse("7701").expect("prefix");
        assert!(p.judges_fraud(&kz, conv(10.0, 1.0)));
        assert!(!p.judges_fraud(&kz, conv(9.0, 0.0)), "too few sends");
        assert!(
            !p.judges_fraud(&kz, conv(10.0, 2.0)),
            "converts well enough"
        );
        let berlin = Prefix::parse("49301").expect("prefix");
        assert!(!p.judges_fraud(&berlin, conv(100.0, 0.0)), "never_block");
        let off = FraudPolicy {
            mode: FraudMode::Off,
            ..p
        };
        assert!(!off.judges_fraud(&kz, conv(100.0, 0.0)));
    }

    #[test]
    fn prefixes_from_the_api_are_digits() {
        assert_eq!(Prefix::parse("+7701").map(|p| p.0), Some("7701".into()));
        assert_eq!(Prefix::parse("77a"), None);
        assert_eq!(Prefix::parse(""), None);
    }
}
