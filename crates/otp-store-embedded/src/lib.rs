//! The embedded, persistent [`CodeStore`] of otpd, on redb: one file,
//! no server, survives restarts. The default store on a single machine.
//!
//! # Layout
//! - [`EmbeddedStore`]: opens the file and implements the port. Every
//!   port call is a function of one write transaction, so every rule of
//!   the port is atomic.
//! - `writer`: group commit. One writer thread runs the calls; those that
//!   queue up while it commits share the next transaction and its fsync.
//! - `codec`: the fixed-size binary records kept in the tables.
//!
//! Commits are durable (fsync) by default, and no call is answered before
//! the commit holding its writes returns, so a crash after an answer never
//! loses the code (or the counted attempt) that answer promised.

mod codec;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use otp_domain::digest::CodeDigest;
use otp_domain::ports::{
    CheckOutcome, CodeRecord, CodeStore, HitOutcome, PairingOutcome, PutOutcome, RateBucket,
    TakeOutcome, Timestamp,
};
use otp_domain::state::{self, CheckStep};
use otp_domain::verification::{
    CancelOutcome, DeliveryAttempt, EventSettle, IdempotencyBegin, StoredEvent, Verification,
    VerificationId,
};
use otp_domain::{ChatId, StoreError};
use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};

use codec::{BucketValue, PairingValue};
use writer::{Call, Queue};

const CODES: TableDefinition<&str, &[u8]> = TableDefinition::new("codes");
const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
const PAIRINGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pairings");
const CHAT_PAIRING: TableDefinition<i64, &[u8]> = TableDefinition::new("chat_pairing");

/// Errors of this adapter, converted to [`StoreError`] at the port.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot open the store file {path}")]
    Open {
        path: String,
        #[source]
        source: redb::DatabaseError,
    },
    /// Shared: one failed commit fails every call of its batch.
    #[error("store transaction failed")]
    Redb(#[source] Arc<redb::Error>),
    #[error("store worker failed")]
    Join(#[source] tokio::task::JoinError),
    #[error("cannot start the store writer thread")]
    Spawn(#[source] std::io::Error),
    #[error("the store writer stopped")]
    Stopped,
    #[error("a store call panicked")]
    Panicked,
    #[error("unreadable record: {0}")]
    Corrupt(&'static str),
}

impl<E: Into<redb::Error>> From<E> for EmbeddedError {
    fn from(e: E) -> Self {
        EmbeddedError::Redb(Arc::new(e.into()))
    }
}

impl From<EmbeddedError> for StoreError {
    fn from(e: EmbeddedError) -> Self {
        match e {
            EmbeddedError::Corrupt(what) => StoreError::Corrupt(what.to_owned()),
            other => StoreError::Unavailable(Box::new(other)),
        }
    }
}

/// How to open the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Most bytes redb keeps in its page cache (redb's own default is
    /// 1 GiB, which a busy store slowly fills). Pages beyond it are read
    /// from the OS page cache again when needed.
    pub cache_size_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            cache_size_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A redb file holding codes, rate buckets and pairings.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    /// `None` only while dropping, so the writer sees the queue close.
    queue: Option<Queue>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    /// Closes the queue and waits for the writer to finish what it holds,
    /// so that the file is closed (and may be opened again) on return.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store file with the default options.
    ///
    /// # Errors
    /// As [`Self::open_with`].
    pub fn open(path: &Path) -> Result<Self, EmbeddedError> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    /// Opens (or creates) the store file, creating its folder, and starts
    /// its writer thread.
    ///
    /// # Errors
    /// When the folder cannot be made, the file is unreadable or already
    /// open in another process, or the thread cannot start.
    pub fn open_with(path: &Path, options: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let open_err = |source| EmbeddedError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(redb::DatabaseError::Storage(e.into())))?;
        }
        let db = Database::builder()
            .set_cache_size(options.cache_size_bytes)
            .create(path)
            .map_err(open_err)?;
        // Create the tables up front, so readers never meet a missing one.
        let txn = db.begin_write()?;
        txn.open_table(CODES)?;
        txn.open_table(BUCKETS)?;
        txn.open_table(PAIRINGS)?;
        txn.open_table(CHAT_PAIRING)?;
        txn.commit()?;
        let db = Arc::new(db);
        let (queue, writer) = writer::spawn(db.clone()).map_err(EmbeddedError::Spawn)?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                queue: Some(queue),
                writer: Some(writer),
            }),
        })
    }

    /// Runs `f` in a write transaction of the writer thread and answers
    /// once that transaction is committed (or aborted, when nothing in it
    /// changed). `f` returns its answer and whether it wrote anything; it
    /// may run twice (see `writer`), so it must not consume what it holds.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction) -> Result<(T, bool), EmbeddedError> + Send + 'static,
    {
        let (call, answer) = Call::new(Box::new(f));
        let queue = self.inner.queue.as_ref().ok_or(EmbeddedError::Stopped)?;
        queue
            .send(Box::new(call))
            .await
            .map_err(|_| EmbeddedError::Stopped)?;
        let answer = answer.await.map_err(|_| EmbeddedError::Stopped)?;
        Ok(answer?)
    }

    /// Deletes every expired code, bucket and pairing. The server calls it
    /// periodically; correctness never depends on it, only file size.
    ///
    /// # Errors
    /// When the transaction fails.
    pub async fn sweep_expired(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut removed = 0;
            {
                let mut codes = txn.open_table(CODES)?;
                removed += codes
                    .extract_if(|_, v| {
                        codec::decode_record(v).map_or(true, |r| r.expires_at <= now)
                    })?
                    .count();
            }
            {
                let mut buckets = txn.open_table(BUCKETS)?;
                removed += buckets
                    .extract_if(|_, v| {
                        BucketValue::decode(v).map_or(true, |b| b.expires_at <= now)
                    })?
                    .count();
            }
            let mut pairings = txn.open_table(PAIRINGS)?;
            let mut chats = txn.open_table(CHAT_PAIRING)?;
            let expired: Vec<(Vec<u8>, i64)> = pairings
                .iter()?
                .filter_map(Result::ok)
                .filter_map(|(k, v)| {
                    let p = PairingValue::decode(v.value()).ok()?;
                    (p.expires_at <= now).then(|| (k.value().to_vec(), p.chat))
                })
                .collect();
            for (digest, chat) in expired {
                remove_pairing(&mut pairings, &mut chats, &digest, chat)?;
                removed += 1;
            }
            Ok((removed, removed > 0))
        })
        .await
    }
}

/// Counts one hit in each bucket, all or nothing, inside `txn`.
fn hit_buckets(
    txn: &WriteTransaction,
    buckets: &[RateBucket],
    now: Timestamp,
) -> Result<Result<(), u64>, EmbeddedError> {
    if buckets.is_empty() {
        return Ok(Ok(()));
    }
    let mut table = txn.open_table(BUCKETS)?;
    let mut current = Vec::with_capacity(buckets.len());
    for b in buckets {
        let state = match table.get(b.key.as_str())? {
            Some(v) => Some(BucketValue::decode(v.value())?.state),
            None => None,
        };
        current.push(state);
    }
    let next = match state::hit_buckets(buckets, &current, now) {
        Ok(next) => next,
        Err(retry_after) => return Ok(Err(retry_after)),
    };
    for (b, s) in buckets.iter().zip(next) {
        let value = BucketValue {
            state: s,
            expires_at: s.expires_at(b),
        };
        table.insert(b.key.as_str(), value.encode().as_slice())?;
    }
    Ok(Ok(()))
}

/// The wait until `bucket` has room, if it is full at `now`.
fn bucket_full(
    txn: &WriteTransaction,
    bucket: &RateBucket,
    now: Timestamp,
) -> Result<Option<u64>, EmbeddedError> {
    let table = txn.open_table(BUCKETS)?;
    let state = match table.get(bucket.key.as_str())? {
        Some(v) => Some(BucketValue::decode(v.value())?.state),
        None => None,
    };
    Ok(state::hit_buckets(std::slice::from_ref(bucket), &[state], now).err())
}

fn remove_pairing(
    pairings: &mut Table<&[u8], &[u8]>,
    chats: &mut Table<i64, &[u8]>,
    digest: &[u8],
    chat: i64,
) -> Result<(), EmbeddedError> {
    pairings.remove(digest)?;
    let owned = chats.get(chat)?.is_some_and(|v| v.value() == digest);
    if owned {
        chats.remove(chat)?;
    }
    Ok(())
}

fn to_chat(n: i64) -> Result<ChatId, EmbeddedError> {
    ChatId::from_i64(n).map_err(|_| EmbeddedError::Corrupt("chat id 0 in a pairing"))
}

#[async_trait]
impl CodeStore for EmbeddedStore {
    async fn put_code(
        &self,
        key: &str,
        record: CodeRecord,
        _verification: &Verification,
        buckets: &[RateBucket],
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError> {
        let key = key.to_owned();
        let buckets = buckets.to_vec();
        self.write(move |txn| {
            if let Err(retry_after_ms) = hit_buckets(txn, &buckets, now)? {
                return Ok((PutOutcome::RateLimited { retry_after_ms }, false));
            }
            let mut codes = txn.open_table(CODES)?;
            codes.insert(key.as_str(), codec::encode_record(&record).as_slice())?;
            Ok((PutOutcome::Stored, true))
        })
        .await
    }

    async fn discard_code<'a>(
        &self,
        key: &str,
        digest: &CodeDigest,
        _failure: Option<&'a [DeliveryAttempt]>,
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        let key = key.to_owned();
        let digest = *digest;
        self.write(move |txn| {
            let mut codes = txn.open_table(CODES)?;
            let same = match codes.get(key.as_str())? {
                Some(v) => codec::decode_record(v.value())?.digest.ct_eq(&digest),
                None => false,
            };
            if same {
                codes.remove(key.as_str())?;
            }
            Ok(((), same))
        })
        .await
    }

    async fn check_code(
        &self,
        key: &str,
        digest: &CodeDigest,
        now: Timestamp,
    ) -> Result<CheckOutcome, StoreError> {
        let key = key.to_owned();
        let digest = *digest;
        self.write(move |txn| {
            let mut codes = txn.open_table(CODES)?;
            let record = match codes.get(key.as_str())? {
                Some(v) => Some(codec::decode_record(v.value())?),
                None => None,
            };
            let (outcome, step) = state::check(record.as_ref(), &digest, now);
            let changed = match step {
                CheckStep::Delete => {
                    codes.remove(key.as_str())?;
                    true
                }
                CheckStep::Update(r) => {
                    codes.insert(key.as_str(), codec::encode_record(&r).as_slice())?;
                    true
                }
                CheckStep::Keep => false,
            };
            Ok((outcome, changed))
        })
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
        let digest = *digest;
        let buckets = buckets.to_vec();
        self.write(move |txn| {
            let mut pairings = txn.open_table(PAIRINGS)?;
            let mut chats = txn.open_table(CHAT_PAIRING)?;
            let key = digest.as_bytes().as_slice();
            if let Some(v) = pairings.get(key)? {
                let p = PairingValue::decode(v.value())?;
                if p.chat != chat.get() && now < p.expires_at {
                    return Ok((PairingOutcome::Collision, false));
                }
            }
            if let Err(retry_after_ms) = hit_buckets(txn, &buckets, now)? {
                return Ok((PairingOutcome::RateLimited { retry_after_ms }, false));
            }
            let old = chats.get(chat.get())?.map(|v| v.value().to_vec());
            if let Some(old) = old {
                // Only if that digest still belongs to this chat: after
                // expiry another chat may hold the same digest now.
                let owned = match pairings.get(old.as_slice())? {
                    Some(v) => PairingValue::decode(v.value())?.chat == chat.get(),
                    None => false,
                };
                if owned {
                    pairings.remove(old.as_slice())?;
                }
            }
            let value = PairingValue {
                chat: chat.get(),
                expires_at,
            };
            pairings.insert(key, value.encode().as_slice())?;
            chats.insert(chat.get(), key)?;
            Ok((PairingOutcome::Stored, true))
        })
        .await
    }

    async fn discard_pairing(&self, digest: &CodeDigest) -> Result<(), StoreError> {
        let digest = *digest;
        self.write(move |txn| {
            let mut pairings = txn.open_table(PAIRINGS)?;
            let mut chats = txn.open_table(CHAT_PAIRING)?;
            let key = digest.as_bytes().as_slice();
            let chat = match pairings.get(key)? {
                Some(v) => PairingValue::decode(v.value())?.chat,
                None => return Ok(((), false)),
            };
            remove_pairing(&mut pairings, &mut chats, key, chat)?;
            Ok(((), true))
        })
        .await
    }

    async fn take_pairing<'a>(
        &self,
        digest: &CodeDigest,
        failures: Option<&'a RateBucket>,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        let digest = *digest;
        let failures = failures.cloned();
        self.write(move |txn| {
            if let Some(bucket) = &failures {
                if let Some(retry_after_ms) = bucket_full(txn, bucket, now)? {
                    return Ok((TakeOutcome::RateLimited { retry_after_ms }, false));
                }
            }
            let (found, removed) = {
                let mut pairings = txn.open_table(PAIRINGS)?;
                let mut chats = txn.open_table(CHAT_PAIRING)?;
                let key = digest.as_bytes().as_slice();
                let value = match pairings.get(key)? {
                    Some(v) => Some(PairingValue::decode(v.value())?),
                    None => None,
                };
                match value {
                    Some(p) => {
                        remove_pairing(&mut pairings, &mut chats, key, p.chat)?;
                        if now < p.expires_at {
                            (Some(to_chat(p.chat)?), true)
                        } else {
                            (None, true)
                        }
                    }
                    None => (None, false),
                }
            };
            match found {
                Some(chat) => Ok((TakeOutcome::Found(chat), true)),
                None => {
                    if let Some(bucket) = &failures {
                        // Cannot be full: checked above in this transaction.
                        let _ = hit_buckets(txn, std::slice::from_ref(bucket), now)?;
                    }
                    Ok((TakeOutcome::NotFound, removed || failures.is_some()))
                }
            }
        })
        .await
    }

    async fn hit_bucket(
        &self,
        bucket: &RateBucket,
        now: Timestamp,
    ) -> Result<HitOutcome, StoreError> {
        let bucket = bucket.clone();
        self.write(move |txn| {
            Ok(
                match hit_buckets(txn, std::slice::from_ref(&bucket), now)? {
                    Ok(()) => (HitOutcome::Counted, true),
                    Err(retry_after_ms) => (HitOutcome::Full { retry_after_ms }, false),
                },
            )
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || {
            use redb::ReadableDatabase;
            let txn = db.begin_read()?;
            txn.open_table(CODES)?;
            Ok::<(), EmbeddedError>(())
        })
        .await
        .map_err(EmbeddedError::Join)??;
        Ok(())
    }

    async fn delivered(
        &self,
        _id: &VerificationId,
        _attempts: &[DeliveryAttempt],
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        unimplemented!("issue 9: delivered")
    }

    async fn verification(&self, _id: &VerificationId) -> Result<Option<Verification>, StoreError> {
        unimplemented!("issue 9: verification")
    }

    async fn latest_verification(&self, _key: &str) -> Result<Option<Verification>, StoreError> {
        unimplemented!("issue 9: latest_verification")
    }

    async fn cancel_verification(
        &self,
        _id: &VerificationId,
        _now: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        unimplemented!("issue 9: cancel_verification")
    }

    async fn sweep(&self, _now: Timestamp, _max: usize) -> Result<usize, StoreError> {
        unimplemented!("issue 9: sweep")
    }

    async fn claim_events(
        &self,
        _now: Timestamp,
        _lease_ms: u64,
        _max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        unimplemented!("issue 9: claim_events")
    }

    async fn settle_event(&self, _id: &str, _settle: &EventSettle) -> Result<(), StoreError> {
        unimplemented!("issue 9: settle_event")
    }

    async fn idempotency_begin(
        &self,
        _key: &str,
        _fingerprint: &[u8; 32],
        _lease_ms: u64,
        _now: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError> {
        unimplemented!("issue 9: idempotency_begin")
    }

    async fn idempotency_end<'a>(
        &self,
        _key: &str,
        _fingerprint: &[u8; 32],
        _response: Option<&'a [u8]>,
        _ttl_ms: u64,
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        unimplemented!("issue 9: idempotency_end")
    }
}
