//! What the store ports answer: the outcomes of counting, storing and
//! checking, and the rate buckets a send is counted in. Plain records
//! that every port and rule may use; this module uses only [`crate::types`].

use crate::types::{ChatId, VerificationId};

/// A fixed-window counter that a send must fit in: at most `limit` hits
/// per `window_ms`, the window starting at its first hit. A cooldown is a
/// bucket with `limit = 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateBucket {
    pub key: String,
    pub limit: u32,
    pub window_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    /// Some bucket of the destination's own was full; nothing was stored
    /// or counted.
    RateLimited {
        retry_after_ms: u64,
    },
    /// The shared bucket at `index` was full: no code was stored (the
    /// buckets charged before it stay counted).
    SharedLimited {
        index: usize,
        retry_after_ms: u64,
    },
    /// The number's prefix is blocked by the fraud guard; nothing changed.
    FraudBlocked,
    /// A resend ([`crate::ports::SendLimits::resend`]) whose code is no
    /// longer live under its key (checked, expired, locked or replaced);
    /// nothing changed.
    Gone,
    /// A send that keeps a service's pending verification
    /// ([`crate::ports::SendLimits::reuse`]) found one: the code under the
    /// key is the live code of this pending verification of that
    /// service. Nothing changed; the caller resends it.
    Pending(VerificationId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The digest matched; the code is gone now.
    Approved,
    /// Wrong code; the attempt was counted.
    Mismatch { attempts_left: u32 },
    /// The attempt limit was reached earlier; nothing was counted.
    Locked,
    /// No code, or it expired.
    NotFound,
}

/// The result of counting one hit in a single bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitOutcome {
    Counted,
    /// The bucket was full; nothing was counted.
    Full {
        retry_after_ms: u64,
    },
}

/// The result of trading a pairing digest for its chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeOutcome {
    Found(ChatId),
    /// Unknown, expired or used; counted in the failure bucket.
    NotFound,
    /// The failure bucket is full; nothing was looked up.
    RateLimited {
        retry_after_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingOutcome {
    Stored,
    /// Another chat holds an active pairing with the same digest.
    Collision,
    RateLimited {
        retry_after_ms: u64,
    },
}
