//! [`VerificationStore`]: the records of sends, to read, cancel and
//! expire. The store changes a record in the same step as the code change
//! that causes it (see [`super::CodeStore`]); these are the changes that
//! no code step makes.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::time::Timestamp;
use crate::verification::{CancelOutcome, Verification, VerificationId};

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

    /// Housekeeping, run every second or so by every instance: ends at
    /// most `max` pending verifications whose `expires_at` is at or before
    /// `now` as `expired` (each with exactly one event, even when several
    /// instances sweep at once; their codes are deleted), and forgets
    /// records and idempotency keys past their time. Returns how many
    /// verifications it expired.
    async fn sweep(&self, now: Timestamp, max: usize) -> Result<usize, StoreError>;
}
