//! An in-memory store of every store port: the reference implementation of their
//! contract, used by tests. It forgets everything on restart, so the
//! server does not offer it as a store kind.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::digest::CodeDigest;
use crate::error::StoreError;
use crate::fraud::{Block, Counters, Prefix};
use crate::ports::{
    CheckOutcome, Checked, CodeCheck, CodeDiscard, CodeRecord, CodeStore, Delivery, FraudCount,
    HitOutcome, IdempotencyAnswer, IdempotencyClaim, NewPairing, PairingOutcome, PutOutcome,
    RateBucket, StagedSend, TakeOutcome, Timestamp,
};
use crate::ports::{FraudLedger, IdempotencyStore, Outbox, VerificationStore};
use crate::state::{self, BucketState, CheckStep};
use crate::types::ChatId;
use crate::verification::{
    CancelOutcome, CancelReason, EventSettle, IdempotencyBegin, ReportOutcome, ReportUpdate,
    Status, StoredEvent, Verification, VerificationId,
};

/// An outbox entry: when it is due next, and its order of arrival.
struct Queued {
    due: Timestamp,
    seq: u64,
    event: StoredEvent,
}

/// An idempotency key: its fingerprint, the response once there is one,
/// and until when it is held.
struct IdemEntry {
    fingerprint: [u8; 32],
    response: Option<Vec<u8>>,
    until: Timestamp,
}

#[derive(Default)]
struct Inner {
    /// The `/v2` services, by sid.
    services: std::collections::BTreeMap<String, Vec<u8>>,
    codes: HashMap<String, CodeRecord>,
    buckets: HashMap<String, BucketState>,
    pairings: HashMap<CodeDigest, (ChatId, Timestamp)>,
    chat_pairing: HashMap<ChatId, CodeDigest>,
    verifications: HashMap<VerificationId, Verification>,
    latest: HashMap<String, VerificationId>,
    outbox: HashMap<String, Queued>,
    seq: u64,
    idempotency: HashMap<String, IdemEntry>,
    fraud_counters: HashMap<Prefix, Counters>,
    fraud_blocks: HashMap<Prefix, Block>,
}

impl Inner {
    fn hit(&mut self, buckets: &[RateBucket], now: Timestamp) -> Result<(), u64> {
        let current: Vec<Option<BucketState>> = buckets
            .iter()
            .map(|b| self.buckets.get(&b.key).copied())
            .collect();
        let next = state::hit_buckets(buckets, &current, now)?;
        for (bucket, s) in buckets.iter().zip(next) {
            self.buckets.insert(bucket.key.clone(), s);
        }
        Ok(())
    }

    fn emit(&mut self, event: StoredEvent, now: Timestamp) {
        self.seq += 1;
        let seq = self.seq;
        self.outbox.insert(
            event.id.clone(),
            Queued {
                due: now,
                seq,
                event,
            },
        );
    }

    /// Applies `change` to the verification `id` and writes the event it
    /// returns.
    fn change(
        &mut self,
        id: &VerificationId,
        now: Timestamp,
        change: impl FnOnce(&mut Verification) -> Option<StoredEvent>,
    ) {
        if let Some(event) = self.verifications.get_mut(id).and_then(change) {
            self.emit(event, now);
        }
    }

    /// Adds to the fraud counters of the tally's prefix.
    fn tally(&mut self, add: FraudCount<'_>, now: Timestamp) -> Counters {
        let t = add.tally;
        let c = self
            .fraud_counters
            .get(&t.prefix)
            .copied()
            .unwrap_or_default()
            .add(add.sends, add.approvals, now, t.window_ms);
        self.fraud_counters.insert(t.prefix.clone(), c);
        c
    }

    /// The wait until `bucket` has room, if it is full now.
    fn full(&self, bucket: &RateBucket, now: Timestamp) -> Option<u64> {
        let state = self.buckets.get(&bucket.key).copied();
        state::hit_buckets(std::slice::from_ref(bucket), &[state], now).err()
    }
}

/// Everything behind one mutex: each port call is one critical section.
#[derive(Default)]
pub struct InMemoryStore {
    inner: Mutex<Inner>,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written state
        // (each step writes whole values), so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl crate::ports::ServiceStore for InMemoryStore {
    async fn put_service(&self, sid: &str, record: &[u8]) -> Result<(), StoreError> {
        self.lock().services.insert(sid.to_owned(), record.to_vec());
        Ok(())
    }

    async fn service(&self, sid: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().services.get(sid).cloned())
    }

    async fn delete_service(&self, sid: &str) -> Result<bool, StoreError> {
        Ok(self.lock().services.remove(sid).is_some())
    }

    async fn services(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .lock()
            .services
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[async_trait]
impl CodeStore for InMemoryStore {
    async fn stage_send<'a>(
        &self,
        send: StagedSend<'a>,
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError> {
        let mut inner = self.lock();
        if let Some(prefix) = &send.limits.blocked {
            if inner
                .fraud_blocks
                .get(prefix)
                .is_some_and(|b| b.refuses(now))
            {
                return Ok(PutOutcome::FraudBlocked);
            }
        }
        if let Some(service) = &send.limits.reuse {
            let pending = inner.codes.get(send.key).and_then(|c| {
                let v = inner.verifications.get(&c.verification)?;
                state::reusable(service, c, v, now).then_some(v.id)
            });
            if let Some(id) = pending {
                return Ok(PutOutcome::Pending(id));
            }
        }
        if send.limits.resend
            && !inner
                .codes
                .get(send.key)
                .is_some_and(|c| c.is_live_for(&send.record.verification, now))
        {
            return Ok(PutOutcome::Gone);
        }
        let states = |inner: &Inner, buckets: &[RateBucket]| -> Vec<Option<BucketState>> {
            buckets
                .iter()
                .map(|b| inner.buckets.get(&b.key).copied())
                .collect()
        };
        let (own, shared) = (
            states(&inner, &send.limits.own),
            states(&inner, &send.limits.shared),
        );
        let (writes, refused) = state::stage_limits(send.limits, &own, &shared, now);
        for (bucket, s) in send
            .limits
            .own
            .iter()
            .chain(&send.limits.shared)
            .zip(writes)
        {
            inner.buckets.insert(bucket.key.clone(), s);
        }
        if let Some(refused) = refused {
            return Ok(refused);
        }
        if send.limits.resend {
            return Ok(PutOutcome::Stored);
        }
        if let Some(old) = inner.codes.insert(send.key.to_owned(), send.record) {
            if old.verification != send.verification.id {
                inner.change(&old.verification, now, |v| v.replaced(now));
            }
        }
        inner
            .verifications
            .insert(send.verification.id, send.verification.clone());
        inner
            .latest
            .insert(send.key.to_owned(), send.verification.id);
        Ok(PutOutcome::Stored)
    }

    async fn record_delivery<'a>(
        &self,
        delivery: Delivery<'a>,
        now: Timestamp,
    ) -> Result<Option<Counters>, StoreError> {
        let mut inner = self.lock();
        inner.change(delivery.id, now, |v| {
            v.is_pending().then(|| v.delivered(delivery.attempts, now))
        });
        Ok(delivery.tally.map(|t| inner.tally(t.add(1, 0), now)))
    }

    async fn discard_code<'a>(
        &self,
        discard: CodeDiscard<'a>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let Some(record) = inner.codes.get(discard.key).copied() else {
            return Ok(());
        };
        if !record.digest.ct_eq(discard.digest) {
            return Ok(());
        }
        inner.codes.remove(discard.key);
        let id = record.verification;
        match discard.failure {
            Some(attempts) => {
                let events = inner
                    .verifications
                    .get_mut(&id)
                    .filter(|v| v.is_pending())
                    .map(|v| v.failed(attempts, now));
                for event in events.into_iter().flatten() {
                    inner.emit(event, now);
                }
            }
            None => {
                inner.verifications.remove(&id);
                if inner.latest.get(discard.key) == Some(&id) {
                    inner.latest.remove(discard.key);
                }
            }
        }
        Ok(())
    }

    async fn check_in<'a>(
        &self,
        check: CodeCheck<'a>,
        now: Timestamp,
    ) -> Result<Checked, StoreError> {
        let mut inner = self.lock();
        let found = inner.codes.get(check.key).copied();
        let owner = found
            .as_ref()
            .and_then(|r| inner.verifications.get(&r.verification));
        if let (Some(scope), Some(r)) = (check.scope, &found) {
            if !scope.admits(r, owner.and_then(|v| v.service.as_deref())) {
                return Ok(Checked::NOT_FOUND);
            }
        }
        let created = owner.map(|v| v.created_at);
        let (outcome, step) = state::check(found.as_ref(), check.digest, now);
        match step {
            CheckStep::Delete => {
                inner.codes.remove(check.key);
            }
            CheckStep::Update(record) => {
                inner.codes.insert(check.key.to_owned(), record);
            }
            CheckStep::Keep => {}
        }
        if let Some(record) = found {
            let expired = now >= record.expires_at;
            inner.change(&record.verification, now, |v| {
                v.after_check(outcome, expired, now)
            });
        }
        if let (CheckOutcome::Approved, Some(t)) = (outcome, check.tally) {
            inner.tally(t.add(0, 1), now);
        }
        Ok(Checked {
            outcome,
            verification: found
                .filter(|_| outcome != CheckOutcome::NotFound)
                .and_then(|r| Some((r.verification, created?))),
        })
    }

    async fn put_pairing<'a>(
        &self,
        pairing: NewPairing<'a>,
        now: Timestamp,
    ) -> Result<PairingOutcome, StoreError> {
        let mut inner = self.lock();
        if let Some((owner, exp)) = inner.pairings.get(pairing.digest) {
            if *owner != pairing.chat && now < *exp {
                return Ok(PairingOutcome::Collision);
            }
        }
        if let Err(retry_after_ms) = inner.hit(pairing.buckets, now) {
            return Ok(PairingOutcome::RateLimited { retry_after_ms });
        }
        if let Some(old) = inner.chat_pairing.insert(pairing.chat, *pairing.digest) {
            // Only if that digest still belongs to this chat: after expiry
            // another chat may hold the same digest now.
            if inner
                .pairings
                .get(&old)
                .is_some_and(|(owner, _)| *owner == pairing.chat)
            {
                inner.pairings.remove(&old);
            }
        }
        inner
            .pairings
            .insert(*pairing.digest, (pairing.chat, pairing.expires_at));
        Ok(PairingOutcome::Stored)
    }

    async fn discard_pairing(&self, digest: &CodeDigest) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some((chat, _)) = inner.pairings.remove(digest) {
            if inner.chat_pairing.get(&chat) == Some(digest) {
                inner.chat_pairing.remove(&chat);
            }
        }
        Ok(())
    }

    async fn take_pairing<'a>(
        &self,
        digest: &CodeDigest,
        failures: Option<&'a RateBucket>,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        let mut inner = self.lock();
        if let Some(bucket) = failures {
            if let Some(retry_after_ms) = inner.full(bucket, now) {
                return Ok(TakeOutcome::RateLimited { retry_after_ms });
            }
        }
        let found = match inner.pairings.remove(digest) {
            Some((chat, expires_at)) => {
                if inner.chat_pairing.get(&chat) == Some(digest) {
                    inner.chat_pairing.remove(&chat);
                }
                (now < expires_at).then_some(chat)
            }
            None => None,
        };
        match found {
            Some(chat) => Ok(TakeOutcome::Found(chat)),
            None => {
                if let Some(bucket) = failures {
                    // Cannot be full: checked above under the same lock.
                    let _ = inner.hit(std::slice::from_ref(bucket), now);
                }
                Ok(TakeOutcome::NotFound)
            }
        }
    }

    async fn hit_bucket(
        &self,
        bucket: &RateBucket,
        now: Timestamp,
    ) -> Result<HitOutcome, StoreError> {
        let mut inner = self.lock();
        Ok(match inner.hit(std::slice::from_ref(bucket), now) {
            Ok(()) => HitOutcome::Counted,
            Err(retry_after_ms) => HitOutcome::Full { retry_after_ms },
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl VerificationStore for InMemoryStore {
    async fn verification(&self, id: &VerificationId) -> Result<Option<Verification>, StoreError> {
        Ok(self.lock().verifications.get(id).cloned())
    }

    async fn latest_verification(&self, key: &str) -> Result<Option<Verification>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .latest
            .get(key)
            .and_then(|id| inner.verifications.get(id))
            .cloned())
    }

    async fn cancel_verification(
        &self,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(v) = inner.verifications.get(id).cloned() else {
            return Ok(CancelOutcome::NotFound);
        };
        if !v.is_pending() {
            return Ok(CancelOutcome::AlreadyEnded(v));
        }
        let key = v.code_key();
        if inner.codes.get(&key).is_some_and(|r| r.verification == *id) {
            inner.codes.remove(&key);
        }
        let expired = now >= v.expires_at;
        let mut out = v;
        inner.change(id, now, |v| {
            let event = if expired {
                v.end(Status::Expired, None, now)
            } else {
                v.end(Status::Canceled, Some(CancelReason::Api), now)
            };
            out = v.clone();
            Some(event)
        });
        Ok(if expired {
            CancelOutcome::AlreadyEnded(out)
        } else {
            CancelOutcome::Canceled(out)
        })
    }

    async fn report_delivery(
        &self,
        id: &VerificationId,
        update: &ReportUpdate,
        now: Timestamp,
    ) -> Result<ReportOutcome, StoreError> {
        let mut inner = self.lock();
        let mut outcome = ReportOutcome::Unknown;
        inner.change(id, now, |v| {
            let (answer, event) = v.reported(update, now);
            outcome = answer;
            event
        });
        Ok(outcome)
    }

    async fn sweep(&self, now: Timestamp, max: usize) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let mut due: Vec<(Timestamp, VerificationId)> = inner
            .verifications
            .values()
            .filter(|v| v.is_pending() && v.expires_at <= now)
            .map(|v| (v.expires_at, v.id))
            .collect();
        due.sort();
        due.truncate(max);
        for (_, id) in &due {
            if let Some(key) = inner.verifications.get(id).map(Verification::code_key) {
                if inner.codes.get(&key).is_some_and(|r| r.verification == *id) {
                    inner.codes.remove(&key);
                }
            }
            inner.change(id, now, |v| Some(v.end(Status::Expired, None, now)));
        }
        inner.verifications.retain(|_, v| v.purge_at() > now);
        let Inner {
            latest,
            verifications,
            idempotency,
            ..
        } = &mut *inner;
        latest.retain(|_, id| verifications.contains_key(id));
        idempotency.retain(|_, e| e.until > now);
        Ok(due.len())
    }
}

#[async_trait]
impl Outbox for InMemoryStore {
    async fn claim_events(
        &self,
        now: Timestamp,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut inner = self.lock();
        let mut due: Vec<(Timestamp, u64, String)> = inner
            .outbox
            .iter()
            .filter(|(_, q)| q.due <= now)
            .map(|(id, q)| (q.due, q.seq, id.clone()))
            .collect();
        due.sort();
        due.truncate(max);
        let mut out = Vec::with_capacity(due.len());
        for (_, _, id) in due {
            if let Some(q) = inner.outbox.get_mut(&id) {
                q.due = now.saturating_add(lease_ms);
                out.push(q.event.clone());
            }
        }
        Ok(out)
    }

    async fn settle_event(&self, id: &str, settle: &EventSettle) -> Result<(), StoreError> {
        let mut inner = self.lock();
        match settle {
            EventSettle::Done => {
                inner.outbox.remove(id);
            }
            EventSettle::Retry { at, delivered } => {
                if let Some(q) = inner.outbox.get_mut(id) {
                    q.due = *at;
                    q.event.tries += 1;
                    q.event.delivered.clone_from(delivered);
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl IdempotencyStore for InMemoryStore {
    async fn idempotency_begin(
        &self,
        claim: IdempotencyClaim<'_>,
        now: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError> {
        let mut inner = self.lock();
        if let Some(e) = inner.idempotency.get(claim.key).filter(|e| e.until > now) {
            return Ok(if e.fingerprint != *claim.fingerprint {
                IdempotencyBegin::Mismatch
            } else {
                match &e.response {
                    Some(r) => IdempotencyBegin::Replay(r.clone()),
                    None => IdempotencyBegin::InProgress,
                }
            });
        }
        inner.idempotency.insert(
            claim.key.to_owned(),
            IdemEntry {
                fingerprint: *claim.fingerprint,
                response: None,
                until: now.saturating_add(claim.lease_ms),
            },
        );
        Ok(IdempotencyBegin::Started)
    }

    async fn idempotency_end(
        &self,
        answer: IdempotencyAnswer<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let ours = inner
            .idempotency
            .get(answer.key)
            .is_some_and(|e| e.fingerprint == *answer.fingerprint && e.response.is_none());
        if !ours {
            return Ok(());
        }
        match answer.response {
            Some(r) => {
                inner.idempotency.insert(
                    answer.key.to_owned(),
                    IdemEntry {
                        fingerprint: *answer.fingerprint,
                        response: Some(r.to_vec()),
                        until: now.saturating_add(answer.ttl_ms),
                    },
                );
            }
            None => {
                inner.idempotency.remove(answer.key);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl FraudLedger for InMemoryStore {
    async fn count<'a>(&self, add: FraudCount<'a>, now: Timestamp) -> Result<Counters, StoreError> {
        Ok(self.lock().tally(add, now))
    }

    async fn block_of(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError> {
        Ok(self
            .lock()
            .fraud_blocks
            .get(prefix)
            .filter(|b| b.until > now)
            .cloned())
    }

    async fn block(&self, block: &Block, now: Timestamp) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner
            .fraud_blocks
            .get(&block.prefix)
            .is_some_and(|b| b.until > now)
        {
            return Ok(false);
        }
        // An expired block that no sweep ended yet ends now, with its
        // event, so every block gets its `prefix_unblocked`.
        if let Some(old) = inner.fraud_blocks.remove(&block.prefix) {
            inner.emit(StoredEvent::fraud(&old, true, now), now);
        }
        inner
            .fraud_blocks
            .insert(block.prefix.clone(), block.clone());
        inner.emit(StoredEvent::fraud(block, false, now), now);
        Ok(true)
    }

    async fn blocks(&self, now: Timestamp) -> Result<Vec<Block>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<Block> = inner
            .fraud_blocks
            .values()
            .filter(|b| b.until > now)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        Ok(out)
    }

    async fn unblock(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError> {
        let mut inner = self.lock();
        let Some(block) = inner
            .fraud_blocks
            .get(prefix)
            .filter(|b| b.until > now)
            .cloned()
        else {
            return Ok(None);
        };
        inner.fraud_blocks.remove(prefix);
        inner.fraud_counters.remove(prefix);
        inner.emit(StoredEvent::fraud(&block, true, now), now);
        Ok(Some(block))
    }

    async fn expire_blocks(&self, now: Timestamp, max: usize) -> Result<Vec<Block>, StoreError> {
        let mut inner = self.lock();
        let mut due: Vec<Prefix> = inner
            .fraud_blocks
            .values()
            .filter(|b| b.until <= now)
            .map(|b| b.prefix.clone())
            .collect();
        due.sort();
        due.truncate(max);
        let ended: Vec<Block> = due
            .iter()
            .filter_map(|p| inner.fraud_blocks.remove(p))
            .collect();
        for block in &ended {
            inner.emit(StoredEvent::fraud(block, true, now), now);
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_meets_the_contract() {
        crate::contract::run_services(&InMemoryStore::new()).await;
        crate::contract::run_all(std::sync::Arc::new(InMemoryStore::new())).await;
        crate::contract::run_fraud(std::sync::Arc::new(InMemoryStore::new())).await;
    }
}
