//! [`IdempotencyStore`]: requests under an app's `Idempotency-Key`, held
//! while they run and replayed once they answered, across instances.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::time::Timestamp;
use crate::verification::IdempotencyBegin;

/// Keys, their request fingerprints and the kept answers.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
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

    /// Ends a request started with [`IdempotencyStore::idempotency_begin`]:
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
