//! [`CodeStore`]: where codes and Telegram pairings live, with the rate
//! buckets a send is counted in. Every rule that needs atomicity is one
//! call, so that several otpd instances on one shared store stay correct.

use async_trait::async_trait;

use crate::digest::CodeDigest;
use crate::error::StoreError;
use crate::outcome::{
    CheckOutcome, HitOutcome, PairingOutcome, PutOutcome, RateBucket, TakeOutcome,
};
use crate::time::Timestamp;
use crate::types::ChatId;
use crate::verification::{DeliveryAttempt, Verification, VerificationId};

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

/// Codes and pairings, and the buckets that limit sends.
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
}
