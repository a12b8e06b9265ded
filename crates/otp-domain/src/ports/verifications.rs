//! [`VerificationStore`]: the records of sends, to read, cancel and
//! expire. The store changes a record in the same step as the code change
//! that causes it (see [`super::CodeStore`]); these are the changes that
//! no code step makes.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::time::Timestamp;
use crate::verification::{
    CancelOutcome, ReportOutcome, ReportUpdate, Verification, VerificationId,
};

/// Verifications, as the API and the sweeper see them.
#[async_trait]
pub trait VerificationStore: Send + Sync {
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

    /// Records a provider's report on the delivery of verification `id`
    /// with `update.message_id`, with its `otpd.delivery.updated` event,
    /// in one step ([`Verification::reported`]). It records on an ended
    /// verification too: the report is a fact about the message.
    ///
    /// # Errors
    /// - MUST return `Unknown` and change nothing when the verification is
    ///   gone or no delivery of it has that message id.
    /// - MUST return `Unchanged`, and write no event, for a report the
    ///   delivery has had already (or a later one), so a replayed webhook
    ///   call changes nothing, even when two instances receive it at once.
    /// - `StoreError::Unavailable` when the backend cannot be reached.
    async fn report_delivery(
        &self,
        id: &VerificationId,
        update: &ReportUpdate,
        now: Timestamp,
    ) -> Result<ReportOutcome, StoreError>;

    /// Housekeeping, run every second or so by every instance: ends at
    /// most `max` pending verifications whose `expires_at` is at or before
    /// `now` as `expired` (each with exactly one event, even when several
    /// instances sweep at once; their codes are deleted), and forgets
    /// records and idempotency keys past their time. Returns how many
    /// verifications it expired.
    async fn sweep(&self, now: Timestamp, max: usize) -> Result<usize, StoreError>;
}
