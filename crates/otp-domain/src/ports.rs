//! The ports: traits the domain needs from the outside world, and the
//! records that cross them. Adapters implement these; the server picks
//! the implementations from config and holds them as `Arc<dyn …>`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::digest::CodeDigest;
// The Sender port's error lives with the other errors; it is re-exported
// here because it is part of this port's contract.
pub use crate::error::DeliveryError;
use crate::error::StoreError;
use crate::types::{ChatId, Code, Destination};

/// Milliseconds since the Unix epoch.
pub type Timestamp = u64;

/// The current time. Rules never read the wall clock themselves.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// Randomness for codes. Implementations MUST use a CSPRNG.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait CodeGenerator: Send + Sync {
    /// A numeric code of `len` digits (4 to 10).
    fn numeric(&self, len: usize) -> Code;
    /// A Telegram pairing code: 8 symbols from an unambiguous 32-symbol
    /// alphabet, 40 bits of entropy.
    fn pairing(&self) -> Code;
}

/// One stored code. The code itself is never stored, only its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRecord {
    pub digest: CodeDigest,
    pub expires_at: Timestamp,
    /// Failed checks so far.
    pub attempts: u32,
    /// Failed checks that lock the code.
    pub max_attempts: u32,
}

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
    /// Some bucket was full; nothing was stored or counted.
    RateLimited {
        retry_after_ms: u64,
    },
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

/// Where codes live. Every rule that needs atomicity is one call, so that
/// several otpd instances on one shared store stay correct.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Replace-on-send: counts one hit in every bucket and stores `record`
    /// under `key`, replacing any earlier code there.
    ///
    /// # Errors
    /// - MUST return `Ok(PutOutcome::RateLimited)` and change nothing when
    ///   any bucket is full at `now`; `retry_after_ms` is the longest wait.
    /// - MUST make the hits and the write one atomic step.
    /// - `StoreError::Unavailable` when the backend cannot be reached.
    async fn put_code(
        &self,
        key: &str,
        record: CodeRecord,
        buckets: &[RateBucket],
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError>;

    /// Removes the code under `key` only if its digest is `digest`, so a
    /// failed delivery never removes a newer code sent meanwhile.
    ///
    /// # Errors
    /// `StoreError::Unavailable` when the backend cannot be reached.
    async fn discard_code(&self, key: &str, digest: &CodeDigest) -> Result<(), StoreError>;

    /// Check-and-consume, in one atomic step.
    ///
    /// # Errors
    /// - MUST return `NotFound` when there is no code or it expired at `now`.
    /// - MUST return `Locked`, and count nothing, once attempts reached
    ///   `max_attempts`, even for the right digest.
    /// - MUST return `Approved` and delete the code on a match, so exactly
    ///   one of many concurrent correct checks is approved.
    /// - MUST count a mismatch and return the attempts left.
    async fn check_code(
        &self,
        key: &str,
        digest: &CodeDigest,
        now: Timestamp,
    ) -> Result<CheckOutcome, StoreError>;

    /// Stores a Telegram pairing: `digest` → `chat`, replacing the chat's
    /// earlier pairing, after counting one hit in every bucket.
    ///
    /// # Errors
    /// - MUST return `Collision` and change nothing when another active
    ///   pairing has the same digest.
    /// - MUST return `RateLimited` and change nothing when a bucket is full.
    async fn put_pairing(
        &self,
        chat: ChatId,
        digest: &CodeDigest,
        expires_at: Timestamp,
        buckets: &[RateBucket],
        now: Timestamp,
    ) -> Result<PairingOutcome, StoreError>;

    /// Removes the pairing with `digest`, after a failed delivery.
    async fn discard_pairing(&self, digest: &CodeDigest) -> Result<(), StoreError>;

    /// Trades a pairing digest for its chat, once, in one atomic step.
    ///
    /// # Errors
    /// - MUST return `RateLimited`, and look nothing up, when `failures`
    ///   is given and full.
    /// - MUST return `NotFound` for an unknown, expired or used pairing,
    ///   and then count one hit in `failures` (when given).
    /// - MUST delete the pairing when it returns `Found`.
    async fn take_pairing<'a>(
        &self,
        digest: &CodeDigest,
        failures: Option<&'a RateBucket>,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError>;

    /// Counts one hit in a single bucket, atomically. Used for limits that
    /// span destinations (per end user, per channel), which on Redis
    /// Cluster live in their own slot, and to drop repeated webhook
    /// updates.
    ///
    /// # Errors
    /// MUST return `Full` and count nothing when the bucket is full.
    async fn hit_bucket(
        &self,
        bucket: &RateBucket,
        now: Timestamp,
    ) -> Result<HitOutcome, StoreError>;

    /// Whether the backend answers, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A message ready for a provider. `Debug` hides the body and subject,
/// which carry the code.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub destination: Destination,
    pub subject: Option<String>,
    pub body: String,
    /// The code the body carries. Providers send the body; the dev
    /// outbox shows the code apart, so a developer can copy it.
    pub code: Code,
}

impl fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMessage")
            .field("destination", &self.destination)
            .field("body", &"***")
            .finish()
    }
}

/// Delivers a message on one channel.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Sender: Send + Sync {
    /// # Errors
    /// A `DeliveryError` whose reason holds no code or secret.
    async fn send(&self, message: &OutgoingMessage) -> Result<(), DeliveryError>;
}
