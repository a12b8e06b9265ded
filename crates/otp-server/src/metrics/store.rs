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
}

impl Operation {
    pub(super) const ALL: [Operation; 8] = [
        Operation::PutCode,
        Operation::DiscardCode,
        Operation::CheckCode,
        Operation::PutPairing,
        Operation::DiscardPairing,
        Operation::TakePairing,
        Operation::HitBucket,
        Operation::Ping,
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
        buckets: &[RateBucket],
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError> {
        self.timed(
            Operation::PutCode,
            self.inner.put_code(key, record, buckets, now),
        )
        .await
    }

    async fn discard_code(&self, key: &str, digest: &CodeDigest) -> Result<(), StoreError> {
        self.timed(Operation::DiscardCode, self.inner.discard_code(key, digest))
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
}
