//! [`IdempotencyStore`]: requests under an app's `Idempotency-Key`, held
//! while they run and replayed once they answered, across instances.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::time::Timestamp;
use crate::verification::IdempotencyBegin;

/// A request starting under an idempotency key
/// ([`IdempotencyStore::idempotency_begin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyClaim<'a> {
    /// Already namespaced by the caller.
    pub key: &'a str,
    /// Identifies the request's body and route.
    pub fingerprint: &'a [u8; 32],
    /// How long the key is held; then it is free again if its request
    /// never ended (its instance died).
    pub lease_ms: u64,
}

/// How a request started with [`IdempotencyStore::idempotency_begin`]
/// ends ([`IdempotencyStore::idempotency_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyAnswer<'a> {
    /// The key and fingerprint the request was started with.
    pub key: &'a str,
    pub fingerprint: &'a [u8; 32],
    /// Kept for `ttl_ms` and replayed to the same request; `None` frees
    /// the key.
    pub response: Option<&'a [u8]>,
    pub ttl_ms: u64,
}

/// Keys, their request fingerprints and the kept answers.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Starts a request under an idempotency key: `claim.key`, held for
    /// `claim.lease_ms` for the request `claim.fingerprint` identifies.
    async fn idempotency_begin(
        &self,
        claim: IdempotencyClaim<'_>,
        now: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError>;

    /// Ends a request started with [`IdempotencyStore::idempotency_begin`]:
    /// with `answer.response`, it is kept for `answer.ttl_ms` and replayed
    /// to the same request; without one, the key is free again.
    async fn idempotency_end(
        &self,
        answer: IdempotencyAnswer<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError>;
}
