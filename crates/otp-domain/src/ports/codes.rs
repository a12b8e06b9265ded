//! [`CodeStore`]: where codes and Telegram pairings live, with the rate
//! buckets a send is counted in. Every rule that needs atomicity is one
//! call, so that several otpd instances on one shared store stay correct.

use async_trait::async_trait;

use crate::digest::CodeDigest;
use crate::error::{CheckError, StoreError};
use crate::fraud::{Counters, Prefix};
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

impl CodeRecord {
    /// Whether this is verification `id`'s code and can still be checked
    /// at `now`: what a resend ([`SendLimits::resend`]) needs.
    pub fn is_live_for(&self, id: &VerificationId, now: Timestamp) -> bool {
        self.verification == *id && self.expires_at > now && self.attempts < self.max_attempts
    }
}

/// What the first step of a send must pass before its code is stored,
/// in this order (see [`CodeStore::stage_send`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendLimits {
    /// Refuse the send while this number prefix has an active block in
    /// block mode (the fraud guard, when it blocks).
    pub blocked: Option<Prefix>,
    /// The destination's own buckets (cooldown, sends per window): all or
    /// nothing, charged first.
    pub own: Vec<RateBucket>,
    /// Buckets across destinations (per end user, per channel), charged
    /// one after another only once `own` passed, so hammering one
    /// destination cannot drain them.
    pub shared: Vec<RateBucket>,
    /// A resend of a live code: the code under the key must still be
    /// the one of `record.verification` (unchecked, unexpired, not
    /// locked), else the step answers [`PutOutcome::Gone`] and changes
    /// nothing. The buckets count as for any send; the stored code and
    /// verification are kept as they are (`record` and `verification`
    /// are not written).
    pub resend: bool,
    /// Keep a pending verification of this service (a `/v2` service's
    /// repeated create, Twilio's reuse): when the code under the key is
    /// the live code of a pending verification whose `service` is this
    /// one, the step answers [`PutOutcome::Pending`] with its id and
    /// changes nothing (the caller resends it). Checked after the block,
    /// before any bucket (on Redis Cluster before the block too: the
    /// resend that follows meets it).
    pub reuse: Option<String>,
}

impl SendLimits {
    /// Only the destination's own buckets.
    pub fn own(buckets: &[RateBucket]) -> Self {
        SendLimits {
            own: buckets.to_vec(),
            ..SendLimits::default()
        }
    }
}

/// The fraud guard's count that rides along with a step of a send or a
/// check: one send (after a delivery) or one approval (after a check that
/// approved) under `prefix`, in windows of `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudTally {
    pub prefix: Prefix,
    pub window_ms: u64,
}

impl FraudTally {
    /// `sends` and `approvals` to add under this tally's prefix
    /// ([`super::FraudLedger::count`]).
    pub fn add(&self, sends: u64, approvals: u64) -> FraudCount<'_> {
        FraudCount {
            tally: self,
            sends,
            approvals,
        }
    }
}

/// What [`super::FraudLedger::count`] adds: `sends` and `approvals` under
/// the tally's prefix, in its windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FraudCount<'a> {
    pub tally: &'a FraudTally,
    pub sends: u64,
    pub approvals: u64,
}

/// The first step of a send ([`CodeStore::stage_send`]): `record` to
/// store under `key` with its pending `verification`, once the send
/// passed `limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedSend<'a> {
    pub key: &'a str,
    pub record: CodeRecord,
    /// Pending; `record.verification` is its id.
    pub verification: &'a Verification,
    pub limits: &'a SendLimits,
}

/// The second step of a send ([`CodeStore::record_delivery`]): the code
/// of verification `id` went out after `attempts`; with `tally`, one send
/// is counted under its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    pub id: &'a VerificationId,
    pub attempts: &'a [DeliveryAttempt],
    pub tally: Option<&'a FraudTally>,
}

/// A code to remove ([`CodeStore::discard_code`]): the one under `key`,
/// if its digest is still `digest`; `failure`, the attempts of a delivery
/// that failed (none: a limit refused the send).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeDiscard<'a> {
    pub key: &'a str,
    pub digest: &'a CodeDigest,
    pub failure: Option<&'a [DeliveryAttempt]>,
}

/// A check of the code under `key` against `digest`
/// ([`CodeStore::check_in`]): with `tally`, an approval is counted under
/// its prefix; with `scope`, only a code inside it is touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeCheck<'a> {
    pub key: &'a str,
    pub digest: &'a CodeDigest,
    pub tally: Option<&'a FraudTally>,
    pub scope: Option<&'a CheckScope>,
}

/// A Telegram pairing to store ([`CodeStore::put_pairing`]): `digest` →
/// `chat` until `expires_at`, once a hit in every bucket passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewPairing<'a> {
    pub chat: ChatId,
    pub digest: &'a CodeDigest,
    pub expires_at: Timestamp,
    pub buckets: &'a [RateBucket],
}

/// Which code a check may touch, beyond its key: a caller that names a
/// verification (or a service) must never spend another's code, even one
/// a concurrent send just stored under the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckScope {
    /// Only the code of this verification.
    Verification(VerificationId),
    /// Only a code whose verification was sent for this service
    /// ([`Verification::service`]).
    Service(String),
}

impl CheckScope {
    /// Whether a check in this scope may touch `record`, whose
    /// verification's service is `service` (`None`: sent natively, or
    /// its verification is gone).
    pub fn admits(&self, record: &CodeRecord, service: Option<&str>) -> bool {
        match self {
            CheckScope::Verification(id) => record.verification == *id,
            CheckScope::Service(s) => service == Some(s.as_str()),
        }
    }
}

/// What a check found: its outcome, and for a code it found (every
/// outcome but `NotFound`), the code's verification and when that was
/// created, so a caller can answer without reading the record back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub outcome: CheckOutcome,
    pub verification: Option<(VerificationId, Timestamp)>,
}

impl Checked {
    /// No code (or an expired one, or one outside the scope).
    pub const NOT_FOUND: Checked = Checked {
        outcome: CheckOutcome::NotFound,
        verification: None,
    };

    /// The outcome as a check's answer: `Ok` when it approved.
    ///
    /// # Errors
    /// `Mismatch`, `Locked` or `NotFound`, as [`CheckError`].
    pub fn result(&self) -> Result<(), CheckError> {
        match self.outcome {
            CheckOutcome::Approved => Ok(()),
            CheckOutcome::Mismatch { attempts_left } => Err(CheckError::Mismatch { attempts_left }),
            CheckOutcome::Locked => Err(CheckError::Locked),
            CheckOutcome::NotFound => Err(CheckError::NotFound),
        }
    }
}

/// Codes and pairings, and the buckets that limit sends.
///
/// A send is two steps, [`CodeStore::stage_send`] before the delivery and
/// [`CodeStore::record_delivery`] after it, and an approving check is one,
/// [`CodeStore::check_tallied`]: each carries the fraud guard's part, so
/// a single store does each in one atomic call (one transaction, one
/// script). `put_code`, `delivered` and `check_code` are those steps
/// without the limits across destinations and the fraud guard.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// The first step of a send, in one atomic step: refuses the send
    /// when `limits.blocked` has an active block in block mode; counts
    /// one hit in every bucket of `limits.own`, then of `limits.shared`;
    /// and stores `record` under `key`, replacing any earlier code there,
    /// with `verification` (pending, `record.verification` is its id),
    /// which becomes the latest verification of `key` (all of them the
    /// fields of `send`).
    ///
    /// When the replaced code's verification is still pending, it ends as
    /// `canceled` with reason `replaced`, and its event is written to the
    /// outbox. The new verification gets no event yet: that comes with
    /// [`CodeStore::record_delivery`].
    ///
    /// # Errors
    /// - MUST return `Ok(PutOutcome::FraudBlocked)` and change nothing
    ///   when the prefix is blocked.
    /// - With `limits.reuse`, MUST return `Ok(PutOutcome::Pending(id))`
    ///   and change nothing when the code under `key` is the live code
    ///   of the pending verification `id` of that service.
    /// - With `limits.resend`, MUST return `Ok(PutOutcome::Gone)` and
    ///   change nothing when the code under `key` is not the live code
    ///   of `record.verification`; when it is, count the buckets as above
    ///   and write nothing else.
    /// - MUST return `Ok(PutOutcome::RateLimited)` and change nothing when
    ///   any bucket of `limits.own` is full at `now`; `retry_after_ms` is
    ///   the longest wait.
    /// - MUST return `Ok(PutOutcome::SharedLimited)` naming the first full
    ///   bucket of `limits.shared` and store no code and no verification;
    ///   the hits of `limits.own` and of the shared buckets before it stay
    ///   counted.
    /// - MUST make the hits, the writes and the event one atomic step on
    ///   one node; a store whose buckets live apart (Redis Cluster) takes
    ///   one step per place, and undoes the code when a later one refuses.
    /// - `StoreError::Unavailable` when the backend cannot be reached.
    async fn stage_send<'a>(
        &self,
        send: StagedSend<'a>,
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError>;

    /// [`CodeStore::stage_send`] with only the destination's own
    /// `buckets`.
    ///
    /// # Errors
    /// As [`CodeStore::stage_send`].
    async fn put_code(
        &self,
        key: &str,
        record: CodeRecord,
        verification: &Verification,
        buckets: &[RateBucket],
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError> {
        let limits = SendLimits::own(buckets);
        let send = StagedSend {
            key,
            record,
            verification,
            limits: &limits,
        };
        self.stage_send(send, now).await
    }

    /// The second step of a send: the code of verification
    /// `delivery.id` went out. Records `delivery.attempts` and writes its
    /// `pending` event ([`Verification::delivered`]), and with
    /// `delivery.tally` counts one send under its prefix
    /// ([`super::FraudLedger::count`]), returning the counters after the
    /// add; in one step. The verification part does nothing when it is
    /// gone or has ended; the tally counts all the same.
    ///
    /// # Errors
    /// `StoreError::Unavailable` when the backend cannot be reached.
    async fn record_delivery<'a>(
        &self,
        delivery: Delivery<'a>,
        now: Timestamp,
    ) -> Result<Option<Counters>, StoreError>;

    /// [`CodeStore::record_delivery`] without a tally.
    ///
    /// # Errors
    /// As [`CodeStore::record_delivery`].
    async fn delivered(
        &self,
        id: &VerificationId,
        attempts: &[DeliveryAttempt],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let delivery = Delivery {
            id,
            attempts,
            tally: None,
        };
        self.record_delivery(delivery, now).await.map(|_| ())
    }

    /// Removes the code under `discard.key` only if its digest is
    /// `discard.digest`, so a failed delivery never removes a newer code
    /// sent meanwhile. In the same step, its verification:
    /// - with `discard.failure` (the delivery failed): ends as `failed` with the
    ///   attempts recorded, writing `otpd.delivery.failed` and
    ///   `otpd.verification.failed` ([`Verification::failed`]);
    /// - without (a limit refused the send after the code was stored, and
    ///   nobody ever saw its id): is deleted, with no event.
    ///
    /// # Errors
    /// `StoreError::Unavailable` when the backend cannot be reached.
    async fn discard_code<'a>(
        &self,
        discard: CodeDiscard<'a>,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Check-and-consume of the code under `check.key` against
    /// `check.digest`, in one atomic step with the verification's change
    /// and its event, and, when it approves and `check.tally` is given,
    /// one approval counted under the tally's prefix
    /// ([`super::FraudLedger::count`]).
    ///
    /// # Errors
    /// - MUST return `NotFound` when there is no code or it expired at `now`;
    ///   a pending verification of an expired code ends as `expired`.
    /// - With `check.scope`, MUST return `NotFound` and change nothing when
    ///   the code under the key is outside it ([`CheckScope::admits`]).
    /// - MUST return `Locked`, and count nothing, once attempts reached
    ///   `max_attempts`, even for the right digest.
    /// - MUST return `Approved` and delete the code on a match, so exactly
    ///   one of many concurrent correct checks is approved; the
    ///   verification ends as `approved`.
    /// - MUST count a mismatch (in the code and in its verification) and
    ///   return the attempts left; the mismatch that uses the last attempt
    ///   ends the verification as `max_attempts_reached`
    ///   ([`Verification::mismatch`]).
    /// - MUST count the tally only with `Approved`.
    /// - MUST name the code's verification and its `created_at` with every
    ///   outcome but `NotFound` (with `NotFound`, none).
    async fn check_in<'a>(
        &self,
        check: CodeCheck<'a>,
        now: Timestamp,
    ) -> Result<Checked, StoreError>;

    /// [`CodeStore::check_in`] without a scope, answering the outcome.
    ///
    /// # Errors
    /// As [`CodeStore::check_in`].
    async fn check_tallied<'a>(
        &self,
        key: &str,
        digest: &CodeDigest,
        tally: Option<&'a FraudTally>,
        now: Timestamp,
    ) -> Result<CheckOutcome, StoreError> {
        let check = CodeCheck {
            key,
            digest,
            tally,
            scope: None,
        };
        self.check_in(check, now).await.map(|c| c.outcome)
    }

    /// [`CodeStore::check_tallied`] without a tally.
    ///
    /// # Errors
    /// As [`CodeStore::check_tallied`].
    async fn check_code(
        &self,
        key: &str,
        digest: &CodeDigest,
        now: Timestamp,
    ) -> Result<CheckOutcome, StoreError> {
        self.check_tallied(key, digest, None, now).await
    }

    /// Stores a Telegram pairing: `pairing.digest` → `pairing.chat`
    /// until `pairing.expires_at`, replacing the chat's earlier pairing,
    /// after counting one hit in every bucket of `pairing.buckets`.
    ///
    /// # Errors
    /// - MUST return `Collision` and change nothing when another active
    ///   pairing has the same digest.
    /// - MUST return `RateLimited` and change nothing when a bucket is full.
    async fn put_pairing<'a>(
        &self,
        pairing: NewPairing<'a>,
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
