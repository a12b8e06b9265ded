//! [`MeteredStore`]: the `CodeStore` port with every call timed and every
//! error counted, by operation, whatever store is behind it.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use otp_domain::ports::{
    CheckOutcome, CodeRecord, CodeStore, HitOutcome, PairingOutcome, PutOutcome, RateBucket,
    TakeOutcome, Timestamp,
};
use otp_domain::verification::{
    CancelOutcome, DeliveryAttempt, EventSettle, IdempotencyBegin, StoredEvent, Verification,
    VerificationId,
};
use otp_domain::{ChatId, CodeDigest, StoreError};
use prometheus::{Histogram, IntCounter};

use super::Metrics;

/// The port's methods, as the `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    PutCode,
    DiscardCode,
    CheckCode,
    PutPairing,
    DiscardPairing,
    TakePairing,
    HitBucket,
    Ping,
    Delivered,
    GetVerification,
    LatestVerification,
    CancelVerification,
    Sweep,
    ClaimEvents,
    SettleEvent,
    IdempotencyBegin,
    IdempotencyEnd,
}

impl Operation {
    pub(super) const ALL: [Operation; 17] = [
        Operation::PutCode,
        Operation::DiscardCode,
        Operation::CheckCode,
        Operation::PutPairing,
        Operation::DiscardPairing,
        Operation::TakePairing,
        Operation::HitBucket,
        Operation::Ping,
        Operation::Delivered,
        Operation::GetVerification,
        Operation::LatestVerification,
        Operation::CancelVerification,
        Operation::Sweep,
        Operation::ClaimEvents,
        Operation::SettleEvent,
        Operation::IdempotencyBegin,
        Operation::IdempotencyEnd,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Operation::PutCode => "put_code",
            Operation::DiscardCode => "discard_code",
            Operation::CheckCode => "check_code",
            Operation::PutPairing => "put_pairing",
            Operation::DiscardPairing => "discard_pairing",
            Operation::TakePairing => "take_pairing",
            Operation::HitBucket => "hit_bucket",
            Operation::Ping => "ping",
            Operation::Delivered => "delivered",
            Operation::GetVerification => "verification",
            Operation::LatestVerification => "latest_verification",
            Operation::CancelVerification => "cancel_verification",
            Operation::Sweep => "sweep",
            Operation::ClaimEvents => "claim_events",
            Operation::SettleEvent => "settle_event",
            Operation::IdempotencyBegin => "idempotency_begin",
            Operation::IdempotencyEnd => "idempotency_end",
        }
    }
}

pub(super) struct OpMetrics {
    pub(super) seconds: Histogram,
    pub(super) errors: IntCounter,
}

/// Wraps a store; the handles of each operation are resolved once.
pub struct MeteredStore {
    inner: Arc<dyn CodeStore>,
    ops: Vec<OpMetrics>,
}

impl MeteredStore {
    /// `kind` is the store's label (`embedded`, `redis`, …).
    pub fn new(inner: Arc<dyn CodeStore>, metrics: &Metrics, kind: &str) -> Self {
        MeteredStore {
            inner,
            ops: Operation::ALL
                .iter()
                .map(|op| metrics.store_op(kind, *op))
                .collect(),
        }
    }

    async fn timed<T>(
        &self,
        op: Operation,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let result = call.await;
        if let Some(m) = self.ops.get(op as usize) {
            m.seconds.observe(start.elapsed().as_secs_f64());
            if result.is_err() {
                m.errors.inc();
            }
        }
        result
    }
}

#[async_trait]
impl CodeStore for MeteredStore {
    async fn put_code(
        &self,
        key: &str,
        record: CodeRecord,
        verification: &Verification,
        buckets: &[RateBucket],
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError> {
        self.timed(
            Operation::PutCode,
            self.inner.put_code(key, record, verification, buckets, now),
        )
        .await
    }

    async fn discard_code<'a>(
        &self,
        key: &str,
        digest: &CodeDigest,
        failure: Option<&'a [DeliveryAttempt]>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.timed(
            Operation::DiscardCode,
            self.inner.discard_code(key, digest, failure, now),
        )
        .await
    }

    async fn delivered(
        &self,
        id: &VerificationId,
        attempts: &[DeliveryAttempt],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.timed(
            Operation::Delivered,
            self.inner.delivered(id, attempts, now),
        )
        .await
    }

    async fn check_code(
        &self,
        key: &str,
        digest: &CodeDigest,
        now: Timestamp,
    ) -> Result<CheckOutcome, StoreError> {
        self.timed(
            Operation::CheckCode,
            self.inner.check_code(key, digest, now),
        )
        .await
    }

    async fn put_pairing(
        &self,
        chat: ChatId,
        digest: &CodeDigest,
        expires_at: Timestamp,
        buckets: &[RateBucket],
        now: Timestamp,
    ) -> Result<PairingOutcome, StoreError> {
        self.timed(
            Operation::PutPairing,
            self.inner
                .put_pairing(chat, digest, expires_at, buckets, now),
        )
        .await
    }

    async fn discard_pairing(&self, digest: &CodeDigest) -> Result<(), StoreError> {
        self.timed(
            Operation::DiscardPairing,
            self.inner.discard_pairing(digest),
        )
        .await
    }

    async fn take_pairing<'a>(
        &self,
        digest: &CodeDigest,
        failures: Option<&'a RateBucket>,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        self.timed(
            Operation::TakePairing,
            self.inner.take_pairing(digest, failures, now),
        )
        .await
    }

    async fn hit_bucket(
        &self,
        bucket: &RateBucket,
        now: Timestamp,
    ) -> Result<HitOutcome, StoreError> {
        self.timed(Operation::HitBucket, self.inner.hit_bucket(bucket, now))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(Operation::Ping, self.inner.ping()).await
    }

    async fn verification(&self, id: &VerificationId) -> Result<Option<Verification>, StoreError> {
        self.timed(Operation::GetVerification, self.inner.verification(id))
            .await
    }

    async fn latest_verification(&self, key: &str) -> Result<Option<Verification>, StoreError> {
        self.timed(
            Operation::LatestVerification,
            self.inner.latest_verification(key),
        )
        .await
    }

    async fn cancel_verification(
        &self,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        self.timed(
            Operation::CancelVerification,
            self.inner.cancel_verification(id, now),
        )
        .await
    }

    async fn sweep(&self, now: Timestamp, max: usize) -> Result<usize, StoreError> {
        self.timed(Operation::Sweep, self.inner.sweep(now, max))
            .await
    }

    async fn claim_events(
        &self,
        now: Timestamp,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.timed(
            Operation::ClaimEvents,
            self.inner.claim_events(now, lease_ms, max),
        )
        .await
    }

    async fn settle_event(&self, id: &str, settle: &EventSettle) -> Result<(), StoreError> {
        self.timed(Operation::SettleEvent, self.inner.settle_event(id, settle))
            .await
    }

    async fn idempotency_begin(
        &self,
        key: &str,
        fingerprint: &[u8; 32],
        lease_ms: u64,
        now: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError> {
        self.timed(
            Operation::IdempotencyBegin,
            self.inner
                .idempotency_begin(key, fingerprint, lease_ms, now),
        )
        .await
    }

    async fn idempotency_end<'a>(
        &self,
        key: &str,
        fingerprint: &[u8; 32],
        response: Option<&'a [u8]>,
        ttl_ms: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.timed(
            Operation::IdempotencyEnd,
            self.inner
                .idempotency_end(key, fingerprint, response, ttl_ms, now),
        )
        .await
    }
}
