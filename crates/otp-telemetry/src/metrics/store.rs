//! [`MeteredStore`]: the `CodeStore` port with every call timed and every
//! error counted, by operation, whatever store is behind it.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use otp_domain::fraud::{Block, Counters, Prefix};
use otp_domain::ports::{
    CheckScope, Checked, CodeRecord, CodeStore, FraudLedger, FraudTally, HitOutcome,
    IdempotencyStore, Outbox, PairingOutcome, PutOutcome, RateBucket, SendLimits, TakeOutcome,
    Timestamp, VerificationStore,
};
use otp_domain::verification::{
    CancelOutcome, DeliveryAttempt, EventSettle, IdempotencyBegin, ReportOutcome, ReportUpdate,
    StoredEvent, Verification, VerificationId,
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
    ReportDelivery,
    Sweep,
    ClaimEvents,
    SettleEvent,
    IdempotencyBegin,
    IdempotencyEnd,
    FraudCount,
    FraudBlockOf,
    FraudBlock,
    FraudBlocks,
    FraudUnblock,
    FraudExpireBlocks,
}

impl Operation {
    pub(super) const ALL: [Operation; 24] = [
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
        Operation::ReportDelivery,
        Operation::Sweep,
        Operation::ClaimEvents,
        Operation::SettleEvent,
        Operation::IdempotencyBegin,
        Operation::IdempotencyEnd,
        Operation::FraudCount,
        Operation::FraudBlockOf,
        Operation::FraudBlock,
        Operation::FraudBlocks,
        Operation::FraudUnblock,
        Operation::FraudExpireBlocks,
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
            Operation::ReportDelivery => "report_delivery",
            Operation::Sweep => "sweep",
            Operation::ClaimEvents => "claim_events",
            Operation::SettleEvent => "settle_event",
            Operation::IdempotencyBegin => "idempotency_begin",
            Operation::IdempotencyEnd => "idempotency_end",
            Operation::FraudCount => "fraud_count",
            Operation::FraudBlockOf => "fraud_block_of",
            Operation::FraudBlock => "fraud_block",
            Operation::FraudBlocks => "fraud_blocks",
            Operation::FraudUnblock => "fraud_unblock",
            Operation::FraudExpireBlocks => "fraud_expire_blocks",
        }
    }
}

pub(super) struct OpMetrics {
    pub(super) seconds: Histogram,
    pub(super) errors: IntCounter,
}

/// Wraps one store port (`S` is `dyn CodeStore`, `dyn Outbox`, … or a
/// whole store); the handles of each operation are resolved once. It
/// implements every port `S` does.
pub struct MeteredStore<S: ?Sized> {
    inner: Arc<S>,
    ops: Vec<OpMetrics>,
}

impl<S: ?Sized> MeteredStore<S> {
    /// `kind` is the store's label (`embedded`, `redis`, …).
    pub fn new(inner: Arc<S>, metrics: &Metrics, kind: &str) -> Self {
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
impl<S: CodeStore + ?Sized> CodeStore for MeteredStore<S> {
    // The send's first step keeps the `put_code` label: it is the same
    // operation, with the limits across destinations and the fraud block
    // read folded in.
    async fn stage_send(
        &self,
        key: &str,
        record: CodeRecord,
        verification: &Verification,
        limits: &SendLimits,
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError> {
        self.timed(
            Operation::PutCode,
            self.inner
                .stage_send(key, record, verification, limits, now),
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

    async fn record_delivery<'a>(
        &self,
        id: &VerificationId,
        attempts: &[DeliveryAttempt],
        tally: Option<&'a FraudTally>,
        now: Timestamp,
    ) -> Result<Option<Counters>, StoreError> {
        self.timed(
            Operation::Delivered,
            self.inner.record_delivery(id, attempts, tally, now),
        )
        .await
    }

    async fn check_in<'a>(
        &self,
        key: &str,
        digest: &CodeDigest,
        tally: Option<&'a FraudTally>,
        scope: Option<&'a CheckScope>,
        now: Timestamp,
    ) -> Result<Checked, StoreError> {
        self.timed(
            Operation::CheckCode,
            self.inner.check_in(key, digest, tally, scope, now),
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
}

#[async_trait]
impl<S: VerificationStore + ?Sized> VerificationStore for MeteredStore<S> {
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

    async fn report_delivery(
        &self,
        id: &VerificationId,
        update: &ReportUpdate,
        now: Timestamp,
    ) -> Result<ReportOutcome, StoreError> {
        self.timed(
            Operation::ReportDelivery,
            self.inner.report_delivery(id, update, now),
        )
        .await
    }

    async fn sweep(&self, now: Timestamp, max: usize) -> Result<usize, StoreError> {
        self.timed(Operation::Sweep, self.inner.sweep(now, max))
            .await
    }
}

#[async_trait]
impl<S: Outbox + ?Sized> Outbox for MeteredStore<S> {
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
}

#[async_trait]
impl<S: IdempotencyStore + ?Sized> IdempotencyStore for MeteredStore<S> {
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

#[async_trait]
impl<S: FraudLedger + ?Sized> FraudLedger for MeteredStore<S> {
    async fn count(
        &self,
        prefix: &Prefix,
        sends: u64,
        approvals: u64,
        window_ms: u64,
        now: Timestamp,
    ) -> Result<Counters, StoreError> {
        self.timed(
            Operation::FraudCount,
            self.inner.count(prefix, sends, approvals, window_ms, now),
        )
        .await
    }

    async fn block_of(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError> {
        self.timed(Operation::FraudBlockOf, self.inner.block_of(prefix, now))
            .await
    }

    async fn block(&self, block: &Block, now: Timestamp) -> Result<bool, StoreError> {
        self.timed(Operation::FraudBlock, self.inner.block(block, now))
            .await
    }

    async fn blocks(&self, now: Timestamp) -> Result<Vec<Block>, StoreError> {
        self.timed(Operation::FraudBlocks, self.inner.blocks(now))
            .await
    }

    async fn unblock(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError> {
        self.timed(Operation::FraudUnblock, self.inner.unblock(prefix, now))
            .await
    }

    async fn expire_blocks(&self, now: Timestamp, max: usize) -> Result<Vec<Block>, StoreError> {
        self.timed(
            Operation::FraudExpireBlocks,
            self.inner.expire_blocks(now, max),
        )
        .await
    }
}
