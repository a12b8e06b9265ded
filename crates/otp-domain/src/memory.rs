//! An in-memory [`CodeStore`]: the reference implementation of the port's
//! contract, used by tests. It forgets everything on restart, so the
//! server does not offer it as a store kind.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::digest::CodeDigest;
use crate::error::StoreError;
use crate::ports::{
    CheckOutcome, CodeRecord, CodeStore, HitOutcome, PairingOutcome, PutOutcome, RateBucket,
    TakeOutcome, Timestamp,
};
use crate::state::{self, BucketState, CheckStep};
use crate::types::ChatId;

#[derive(Default)]
struct Inner {
    codes: HashMap<String, CodeRecord>,
    buckets: HashMap<String, BucketState>,
    pairings: HashMap<CodeDigest, (ChatId, Timestamp)>,
    chat_pairing: HashMap<ChatId, CodeDigest>,
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
impl CodeStore for InMemoryStore {
    async fn put_code(
        &self,
        key: &str,
        record: CodeRecord,
        buckets: &[RateBucket],
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError> {
        let mut inner = self.lock();
        if let Err(retry_after_ms) = inner.hit(buckets, now) {
            return Ok(PutOutcome::RateLimited { retry_after_ms });
        }
        inner.codes.insert(key.to_owned(), record);
        Ok(PutOutcome::Stored)
    }

    async fn discard_code(&self, key: &str, digest: &CodeDigest) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.codes.get(key).is_some_and(|r| r.digest.ct_eq(digest)) {
            inner.codes.remove(key);
        }
        Ok(())
    }

    async fn check_code(
        &self,
        key: &str,
        digest: &CodeDigest,
        now: Timestamp,
    ) -> Result<CheckOutcome, StoreError> {
        let mut inner = self.lock();
        let (outcome, step) = state::check(inner.codes.get(key), digest, now);
        match step {
            CheckStep::Delete => {
                inner.codes.remove(key);
            }
            CheckStep::Update(record) => {
                inner.codes.insert(key.to_owned(), record);
            }
            CheckStep::Keep => {}
        }
        Ok(outcome)
    }

    async fn put_pairing(
        &self,
        chat: ChatId,
        digest: &CodeDigest,
        expires_at: Timestamp,
        buckets: &[RateBucket],
        now: Timestamp,
    ) -> Result<PairingOutcome, StoreError> {
        let mut inner = self.lock();
        if let Some((owner, exp)) = inner.pairings.get(digest) {
            if *owner != chat && now < *exp {
                return Ok(PairingOutcome::Collision);
            }
        }
        if let Err(retry_after_ms) = inner.hit(buckets, now) {
            return Ok(PairingOutcome::RateLimited { retry_after_ms });
        }
        if let Some(old) = inner.chat_pairing.insert(chat, *digest) {
            // Only if that digest still belongs to this chat: after expiry
            // another chat may hold the same digest now.
            if inner
                .pairings
                .get(&old)
                .is_some_and(|(owner, _)| *owner == chat)
            {
                inner.pairings.remove(&old);
            }
        }
        inner.pairings.insert(*digest, (chat, expires_at));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_meets_the_contract() {
        crate::contract::run_all(std::sync::Arc::new(InMemoryStore::new())).await;
    }
}
