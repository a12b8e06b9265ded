//! The sweeper: every instance asks the store, every second, to expire
//! pending verifications past their `expires_at` and to forget records
//! and idempotency keys past their time. The store makes each expiry
//! happen once (one `expired` event) however many instances sweep, so an
//! expiry is seen within about a second plus the dispatcher's pace.

use std::sync::Arc;
use std::time::Duration;

use otp_domain::ports::{Clock, Store};

/// Verifications one sweep call may expire; a full call is followed by
/// another at once.
pub const SWEEP_BATCH: usize = 500;

/// Sweeps `store` every `every` until the task is dropped.
pub fn spawn_sweeper(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sweep_all(store.as_ref(), clock.as_ref()).await;
        }
    })
}

/// Sweeps until a call expires less than a full batch (or fails).
/// Returns how many verifications it expired.
pub async fn sweep_all(store: &dyn Store, clock: &dyn Clock) -> usize {
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
                tracing::warn!(error = %crate::error::chain(&e), "the verification sweep failed");
                return total;
            }
        }
    }
}
