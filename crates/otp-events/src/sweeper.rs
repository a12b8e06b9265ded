//! The sweepers every instance runs each second: the verification sweep
//! (pending verifications past their `expires_at` end as `expired`, with
//! their event; records and idempotency keys past their time are
//! forgotten) and the fraud guard's block sweep (blocks past their
//! `until` end, with their event). The store makes each ending happen
//! once however many instances sweep, so an expiry is seen within about
//! a second plus the dispatcher's pace.

use std::time::Duration;

use otp_domain::error::chain;
use otp_domain::ports::{Clock, FraudLedger, VerificationStore};

/// Verifications one sweep call may expire; a full call is followed by
/// another at once.
pub const SWEEP_BATCH: usize = 500;
/// Blocks one block sweep may end.
pub const BLOCK_BATCH: usize = 100;

/// Sweeps until a call expires less than a full batch (or fails).
/// Returns how many verifications it expired.
pub async fn sweep_verifications(store: &dyn VerificationStore, clock: &dyn Clock) -> usize {
    let mut total = 0;
    loop {
        match store.sweep(clock.now(), SWEEP_BATCH).await {
            Ok(n) => {
                total += n;
                if n < SWEEP_BATCH {
                    if total > 0 {
                        tracing::debug!(expired = total, "expired verifications");
                    }
                    return total;
                }
            }
            Err(e) => {
                tracing::warn!(error = %chain(&e), "the verification sweep failed");
                return total;
            }
        }
    }
}

/// Ends the fraud guard's blocks whose time is up. Sends are let through
/// from `until` on either way; this writes the end down. Returns how
/// many it ended.
pub async fn expire_blocks(ledger: &dyn FraudLedger, clock: &dyn Clock) -> usize {
    match ledger.expire_blocks(clock.now(), BLOCK_BATCH).await {
        Ok(ended) => {
            for block in &ended {
                tracing::warn!(prefix = %block.prefix, "fraud guard: block ended");
            }
            ended.len()
        }
        Err(e) => {
            tracing::warn!(error = %chain(&e), "the fraud block sweep failed");
            0
        }
    }
}

/// Runs `sweep` every `every` (missed ticks are not caught up), forever:
/// spawn it under a guard that aborts it.
pub async fn every<F, Fut>(every: Duration, mut sweep: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep().await;
    }
}
