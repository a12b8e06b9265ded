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
use crate::fraud::{Block, Counters, Prefix};
use crate::types::{ChatId, Code, Destination};
use crate::verification::{
    CancelOutcome, DeliveryAttempt, EventSettle, IdempotencyBegin, StoredEvent, Verification,
    VerificationId,
};

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
    /// The verification this code belongs to.
    pub verification: VerificationId,
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
    /// under `key`, replacing any earlier code there, with `verification`
    /// (pending, `record.verification` is its id), which becomes the
    /// latest verification of `key`.
    ///
    /// When the replaced code's verification is still pending, it ends as
    /// `canceled` with reason `replaced`, and its event is written to the
    /// outbox. The new verification gets no event yet: that comes with
    /// [`CodeStore::delivered`].
    ///
    /// # Errors
    /// - MUST return `Ok(PutOutcome::RateLimited)` and change nothing when
    ///   any bucket is full at `now`; `retry_after_ms` is the longest wait.
    /// - MUST make the hits, the writes and the event one atomic step.
    /// - `StoreError::Unavailable` when the backend cannot be reached.
    async fn put_code(
        &self,
        key: &str,
        record: CodeRecord,
        verification: &Verification,
        buckets: &[RateBucket],
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError>;

    /// The code of verification `id` went out: records `attempts` and
    /// writes its `pending` event ([`Verification::delivered`]), in one
    /// step. Does nothing when the verification is gone or has ended.
    async fn delivered(
        &self,
        id: &VerificationId,
        attempts: &[DeliveryAttempt],
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Removes the code under `key` only if its digest is `digest`, so a
    /// failed delivery never removes a newer code sent meanwhile. In the
    /// same step, its verification:
    /// - with `failure` (the delivery failed): ends as `failed` with the
    ///   attempts recorded, writing `otpd.delivery.failed` and
    ///   `otpd.verification.failed` ([`Verification::failed`]);
    /// - without (a limit refused the send after the code was stored, and
    ///   nobody ever saw its id): is deleted, with no event.
    ///
    /// # Errors
    /// `StoreError::Unavailable` when the backend cannot be reached.
    async fn discard_code<'a>(
        &self,
        key: &str,
        digest: &CodeDigest,
        failure: Option<&'a [DeliveryAttempt]>,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Check-and-consume, in one atomic step with the verification's
    /// change and its event.
    ///
    /// # Errors
    /// - MUST return `NotFound` when there is no code or it expired at `now`;
    ///   a pending verification of an expired code ends as `expired`.
    /// - MUST return `Locked`, and count nothing, once attempts reached
    ///   `max_attempts`, even for the right digest.
    /// - MUST return `Approved` and delete the code on a match, so exactly
    ///   one of many concurrent correct checks is approved; the
    ///   verification ends as `approved`.
    /// - MUST count a mismatch (in the code and in its verification) and
    ///   return the attempts left; the mismatch that uses the last attempt
    ///   ends the verification as `max_attempts_reached`
    ///   ([`Verification::mismatch`]).
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

    /// The verification with `id`, while it is kept (until
    /// [`Verification::purge_at`]).
    async fn verification(&self, id: &VerificationId) -> Result<Option<Verification>, StoreError>;

    /// The latest verification of the destination `key` (the last
    /// `put_code` under it), while it is kept.
    async fn latest_verification(&self, key: &str) -> Result<Option<Verification>, StoreError>;

    /// Cancels a pending verification: its code dies, it ends as
    /// `canceled` with reason `api`, and its event is written, in one step.
    /// A pending verification already past its `expires_at` ends as
    /// `expired` instead (with its event), and the answer is
    /// `AlreadyEnded`.
    async fn cancel_verification(
        &self,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<CancelOutcome, StoreError>;

    /// Housekeeping, run every second or so by every instance: ends at
    /// most `max` pending verifications whose `expires_at` is at or before
    /// `now` as `expired` (each with exactly one event, even when several
    /// instances sweep at once; their codes are deleted), and forgets
    /// records and idempotency keys past their time. Returns how many
    /// verifications it expired.
    async fn sweep(&self, now: Timestamp, max: usize) -> Result<usize, StoreError>;

    /// Leases up to `max` outbox events that are due at `now`, oldest
    /// first: they are not handed out again before `now + lease_ms`, so
    /// with several instances each event goes to one of them unless that
    /// one dies or overruns its lease.
    async fn claim_events(
        &self,
        now: Timestamp,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Reports how a claimed event went: removes it, or schedules its next
    /// round (counting `tries`).
    async fn settle_event(&self, id: &str, settle: &EventSettle) -> Result<(), StoreError>;

    /// Starts a request under an idempotency key (already namespaced by
    /// the caller). `fingerprint` identifies the request's body and route.
    /// A started key is held for `lease_ms`, then free again if its
    /// request never ended (its instance died).
    async fn idempotency_begin(
        &self,
        key: &str,
        fingerprint: &[u8; 32],
        lease_ms: u64,
        now: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError>;

    /// Ends a request started with [`CodeStore::idempotency_begin`]:
    /// with a response, it is kept for `ttl_ms` and replayed to the same
    /// request; without one, the key is free again.
    async fn idempotency_end<'a>(
        &self,
        key: &str,
        fingerprint: &[u8; 32],
        response: Option<&'a [u8]>,
        ttl_ms: u64,
        now: Timestamp,
    ) -> Result<(), StoreError>;
}

/// The fraud guard's counters and blocks, per number prefix (see
/// [`crate::fraud`]). Several instances on one store share them.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait FraudLedger: Send + Sync {
    /// Adds `sends` and `approvals` to the prefix's counters at `now`, in
    /// one atomic step, and returns them after the add.
    async fn count(
        &self,
        prefix: &Prefix,
        sends: u64,
        approvals: u64,
        window_ms: u64,
        now: Timestamp,
    ) -> Result<Counters, StoreError>;

    /// The prefix's active block (`until > now`), if any.
    async fn block_of(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError>;

    /// Stores `block` unless the prefix has an active block already, and
    /// then writes its `otpd.fraud.prefix_blocked` event, in one step.
    /// Returns whether it was stored: of several instances that judge a
    /// prefix at once, exactly one blocks it.
    async fn block(&self, block: &Block, now: Timestamp) -> Result<bool, StoreError>;

    /// Every active block.
    async fn blocks(&self, now: Timestamp) -> Result<Vec<Block>, StoreError>;

    /// Lifts the prefix's active block now, with its
    /// `otpd.fraud.prefix_unblocked` event; `None` when it had none.
    async fn unblock(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError>;

    /// Ends at most `max` blocks whose `until` is at or before `now`, each
    /// exactly once (even with several instances sweeping), with its
    /// `otpd.fraud.prefix_unblocked` event. Returns them.
    async fn expire_blocks(&self, now: Timestamp, max: usize) -> Result<Vec<Block>, StoreError>;
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

/// A message went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The provider that took it.
    pub provider: String,
    /// Providers that failed before it, with their reasons (no secret).
    pub failures: Vec<(String, String)>,
}

impl Delivered {
    /// Taken by `provider` at the first try.
    pub fn by(provider: impl Into<String>) -> Self {
        Delivered {
            provider: provider.into(),
            failures: Vec::new(),
        }
    }
}

/// Delivers a message on one channel.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Sender: Send + Sync {
    /// # Errors
    /// A `DeliveryError` whose reason holds no code or secret.
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError>;
}
