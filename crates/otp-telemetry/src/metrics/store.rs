//! [`MeteredStore`]: the `CodeStore` port with every call timed and every
//! error counted, by operation, whatever store is behind it.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use otp_domain::fraud::{Block, Counters, Prefix};
use otp_domain::ports::{
    Checked, CodeCheck, CodeDiscard, CodeStore, Delivery, FraudCount, FraudLedger, HitOutcome,
    IdempotencyAnswer, IdempotencyClaim, IdempotencyStore, NewPairing, Outbox, PairingOutcome,
    PutOutcome, RateBucket, StagedSend, TakeOutcome, Timestamp, VerificationStore,
};
use otp_domain::verification::{
    CancelOutcome, EventSettle, IdempotencyBegin, ReportOutcome, ReportUpdate, StoredEvent,
    Verification, VerificationId,
};
use otp_domain::{CodeDigest, StoreError};
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

/// Implements `port` for [`MeteredStore`]: each method calls the same
/// method of `inner`, timed under its [`Operation`]. The wrapper has no
/// other logic, so the methods are listed, not written out.
macro_rules! metered {
    ($port:ident {
        $( $op:ident: fn $name:ident $(<$lt:lifetime>)? ( $($arg:ident: $ty:ty),* ) -> $out:ty; )*
    }) => {
        #[async_trait]
        impl<S: $port + ?Sized> $port for MeteredStore<S> {
            $(
                async fn $name $(<$lt>)? (&self, $($arg: $ty),*) -> Result<$out, StoreError> {
                    self.timed(Operation::$op, self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

// The send's first step keeps the `put_code` label: it is the same
// operation, with the limits across destinations and the fraud block read
// folded in. The ports' provided methods (`put_code`, `delivered`,
// `check_code`, …) call these, so they are timed too.
metered!(CodeStore {
    PutCode: fn stage_send<'a>(send: StagedSend<'a>, now: Timestamp) -> PutOutcome;
    DiscardCode: fn discard_code<'a>(discard: CodeDiscard<'a>, now: Timestamp) -> ();
    Delivered: fn record_delivery<'a>(delivery: Delivery<'a>, now: Timestamp) -> Option<Counters>;
    CheckCode: fn check_in<'a>(check: CodeCheck<'a>, now: Timestamp) -> Checked;
    PutPairing: fn put_pairing<'a>(pairing: NewPairing<'a>, now: Timestamp) -> PairingOutcome;
    DiscardPairing: fn discard_pairing(digest: &CodeDigest) -> ();
    TakePairing: fn take_pairing<'a>(digest: &CodeDigest, failures: Option<&'a RateBucket>, now: Timestamp) -> TakeOutcome;
    HitBucket: fn hit_bucket(bucket: &RateBucket, now: Timestamp) -> HitOutcome;
    Ping: fn ping() -> ();
});

metered!(VerificationStore {
    GetVerification: fn verification(id: &VerificationId) -> Option<Verification>;
    LatestVerification: fn latest_verification(key: &str) -> Option<Verification>;
    CancelVerification: fn cancel_verification(id: &VerificationId, now: Timestamp) -> CancelOutcome;
    ReportDelivery: fn report_delivery(id: &VerificationId, update: &ReportUpdate, now: Timestamp) -> ReportOutcome;
    Sweep: fn sweep(now: Timestamp, max: usize) -> usize;
});

metered!(Outbox {
    ClaimEvents: fn claim_events(now: Timestamp, lease_ms: u64, max: usize) -> Vec<StoredEvent>;
    SettleEvent: fn settle_event(id: &str, settle: &EventSettle) -> ();
});

metered!(IdempotencyStore {
    IdempotencyBegin: fn idempotency_begin(claim: IdempotencyClaim<'_>, now: Timestamp) -> IdempotencyBegin;
    IdempotencyEnd: fn idempotency_end(answer: IdempotencyAnswer<'_>, now: Timestamp) -> ();
});

metered!(FraudLedger {
    FraudCount: fn count<'a>(add: FraudCount<'a>, now: Timestamp) -> Counters;
    FraudBlockOf: fn block_of(prefix: &Prefix, now: Timestamp) -> Option<Block>;
    FraudBlock: fn block(block: &Block, now: Timestamp) -> bool;
    FraudBlocks: fn blocks(now: Timestamp) -> Vec<Block>;
    FraudUnblock: fn unblock(prefix: &Prefix, now: Timestamp) -> Option<Block>;
    FraudExpireBlocks: fn expire_blocks(now: Timestamp, max: usize) -> Vec<Block>;
});
