//! [`FraudLedger`]: the fraud guard's counters and blocks, per number
//! prefix (see [`crate::fraud`]).

use async_trait::async_trait;

use crate::error::StoreError;
use crate::fraud::{Block, Counters, Prefix};
use crate::ports::FraudCount;
use crate::time::Timestamp;

/// The fraud guard's counters and blocks, per number prefix (see
/// [`crate::fraud`]). Several instances on one store share them.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait FraudLedger: Send + Sync {
    /// Adds `add.sends` and `add.approvals` to the counters of the
    /// tally's prefix, in windows of its `window_ms`, at `now`, in one
    /// atomic step, and returns them after the add.
    async fn count<'a>(&self, add: FraudCount<'a>, now: Timestamp) -> Result<Counters, StoreError>;

    /// The prefix's active block (`until > now`), if any.
    async fn block_of(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError>;

    /// Stores `block` unless the prefix has an active block already, and
    /// then writes its `otpd.fraud.prefix_blocked` event, in one step. A
    /// block of the prefix that expired but was not ended yet ends first,
    /// with its `otpd.fraud.prefix_unblocked` event.
    /// Returns whether it was stored: of several instances that judge a
    /// prefix at once, exactly one blocks it.
    async fn block(&self, block: &Block, now: Timestamp) -> Result<bool, StoreError>;

    /// Every active block.
    async fn blocks(&self, now: Timestamp) -> Result<Vec<Block>, StoreError>;

    /// Lifts the prefix's active block now, with its
    /// `otpd.fraud.prefix_unblocked` event, and forgets the prefix's
    /// counters, so it is judged afresh (an operator said it is fine);
    /// `None`, changing nothing, when it had no active block.
    async fn unblock(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError>;

    /// Ends at most `max` blocks whose `until` is at or before `now`, each
    /// exactly once (even with several instances sweeping), with its
    /// `otpd.fraud.prefix_unblocked` event. Returns them.
    async fn expire_blocks(&self, now: Timestamp, max: usize) -> Result<Vec<Block>, StoreError>;
}
