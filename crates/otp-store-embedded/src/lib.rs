//! The embedded, persistent [`CodeStore`] of otpd, on redb: one file,
//! no server, survives restarts. The default store on a single machine.
//!
//! # Layout
//! - [`EmbeddedStore`]: opens the file and implements the port. Every
//!   port call is a function of one write transaction, so every rule of
//!   the port is atomic.
//! - `writer`: group commit. One writer thread runs the calls; those that
//!   queue up while it commits share the next transaction and its fsync.
//! - `tx`: the verification side of a transaction (verifications, their
//!   expiry and retention indexes, the latest per destination, the event
//!   outbox), applying the domain's transitions.
//! - `fraud`: the fraud guard's ledger ([`otp_domain::ports::FraudLedger`]):
//!   per-prefix counters and blocks, whose events go to the same outbox.
//! - `codec`: the binary records kept in the tables.
//!
//! A code and its verification change in the same transaction, with the
//! events the change writes to the outbox, so an answered call never
//! leaves one without the other.
//!
//! Commits are durable (fsync) by default, and no call is answered before
//! the commit holding its writes returns, so a crash after an answer never
//! loses the code (or the counted attempt) that answer promised.

mod codec;
mod fraud;
mod tx;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use otp_domain::digest::CodeDigest;
use otp_domain::fraud::Counters;
use otp_domain::ports::{
    CheckOutcome, Checked, CodeCheck, CodeDiscard, CodeStore, Delivery, HitOutcome,
    IdempotencyAnswer, IdempotencyClaim, IdempotencyStore, NewPairing, Outbox, PairingOutcome,
    PutOutcome, RateBucket, SendLimits, StagedSend, TakeOutcome, Timestamp, VerificationStore,
};
use otp_domain::state::{self, CheckStep};
use otp_domain::verification::{
    CancelOutcome, CancelReason, DeliveryAttempt, EventSettle, IdempotencyBegin, ReportOutcome,
    ReportUpdate, Status, StoredEvent, Verification, VerificationId,
};
use otp_domain::{ChatId, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};

use codec::{BucketValue, IdemValue, OutboxHead, PairingValue};
use tx::{Change, Tx, CODES};
use writer::{Call, Queue};

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
    #[error("unreadable verification, event or fraud record")]
    Json(#[source] serde_json::Error),
}

impl<E: Into<redb::Error>> From<E> for EmbeddedError {
    fn from(e: E) -> Self {
        EmbeddedError::Redb(Arc::new(e.into()))
    }
}

impl From<EmbeddedError> for StoreError {
    fn from(e: EmbeddedError) -> Self {
        match e {
            e @ (EmbeddedError::Corrupt(_) | EmbeddedError::Json(_)) => {
                StoreError::Corrupt(Box::new(e))
            }
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
    /// Whether status changes write events to the outbox (off when no
    /// event sink is configured: nobody would read them). The records
    /// change as ever.
    pub record_events: bool,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            cache_size_bytes: 4 * 1024 * 1024,
            record_events: true,
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
        txn.open_table(tx::VERIFICATIONS)?;
        txn.open_table(tx::LATEST)?;
        txn.open_table(tx::PENDING)?;
        txn.open_table(tx::PURGE)?;
        txn.open_table(tx::OUTBOX)?;
        txn.open_table(tx::OUTBOX_DUE)?;
        txn.open_table(tx::META)?;
        txn.open_table(tx::IDEMPOTENCY)?;
        txn.open_table(tx::SERVICES)?;
        txn.open_table(tx::IDEMPOTENCY_EXPIRY)?;
        txn.open_table(fraud::COUNTERS)?;
        txn.open_table(fraud::BLOCKS)?;
        txn.open_table(fraud::BLOCK_UNTIL)?;
        txn.commit()?;
        let db = Arc::new(db);
        let (queue, writer) =
            writer::spawn(db.clone(), options.record_events).map_err(EmbeddedError::Spawn)?;
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

    /// Runs `f` in a read transaction off the async threads. Reads see
    /// every answered write: answers wait for their commit.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, EmbeddedError> + Send + 'static,
    {
        let db = self.inner.db.clone();
        let answer = tokio::task::spawn_blocking(move || f(&db.begin_read()?))
            .await
            .map_err(EmbeddedError::Join)??;
        Ok(answer)
    }

    /// Deletes every expired code, bucket and pairing. The server calls it
    /// periodically; correctness never depends on it, only file size.
    ///
    /// Verifications, events and idempotency keys are
    /// [`CodeStore::sweep`]'s: a code deleted here leaves its pending
    /// verification to that sweep, which expires it with its event.
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

/// The buckets of a send's first step, in their order
/// ([`state::stage_limits`]): writes what it charged, and returns the
/// refusal, if any.
fn stage_buckets(
    txn: &WriteTransaction,
    limits: &SendLimits,
    now: Timestamp,
) -> Result<Option<PutOutcome>, EmbeddedError> {
    if limits.own.is_empty() && limits.shared.is_empty() {
        return Ok(None);
    }
    let mut table = txn.open_table(BUCKETS)?;
    let read = |buckets: &[RateBucket]| -> Result<Vec<_>, EmbeddedError> {
        buckets
            .iter()
            .map(|b| match table.get(b.key.as_str())? {
                Some(v) => Ok(Some(BucketValue::decode(v.value())?.state)),
                None => Ok(None),
            })
            .collect()
    };
    let (own, shared) = (read(&limits.own)?, read(&limits.shared)?);
    let (writes, refused) = state::stage_limits(limits, &own, &shared, now);
    for (b, s) in limits.own.iter().chain(&limits.shared).zip(writes) {
        let value = BucketValue {
            state: s,
            expires_at: s.expires_at(b),
        };
        table.insert(b.key.as_str(), value.encode().as_slice())?;
    }
    Ok(refused)
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
    async fn stage_send<'a>(
        &self,
        send: StagedSend<'a>,
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError> {
        let key = send.key.to_owned();
        let record = send.record;
        let limits = send.limits.clone();
        let verification = send.verification.clone();
        self.write(move |txn| {
            if let Some(prefix) = &limits.blocked {
                if fraud::refuses(txn, prefix, now)? {
                    return Ok((PutOutcome::FraudBlocked, false));
                }
            }
            if let Some(service) = &limits.reuse {
                let mut tx = Tx::new(txn);
                if let Some(code) = tx.code(&key)? {
                    if let Some(v) = tx.load(&code.verification)? {
                        if state::reusable(service, &code, &v, now) {
                            return Ok((PutOutcome::Pending(v.id), false));
                        }
                    }
                }
            }
            if limits.resend {
                let live = txn
                    .open_table(CODES)?
                    .get(key.as_str())?
                    .and_then(|c| codec::decode_record(c.value()).ok())
                    .is_some_and(|c| c.is_live_for(&verification.id, now));
                if !live {
                    return Ok((PutOutcome::Gone, false));
                }
            }
            let charged = stage_buckets(txn, &limits, now)?;
            if let Some(refused) = charged {
                let wrote = matches!(refused, PutOutcome::SharedLimited { .. });
                return Ok((refused, wrote));
            }
            if limits.resend {
                // The live code and its verification stay as they are.
                return Ok((PutOutcome::Stored, true));
            }
            let mut tx = Tx::new(txn);
            let encoded = codec::encode_record(&record);
            // An unreadable old code is replaced all the same; it names
            // no verification this version could end.
            let old = tx
                .codes()?
                .insert(key.as_str(), encoded.as_slice())?
                .and_then(|old| codec::decode_record(old.value()).ok());
            if let Some(old) = old.filter(|o| o.verification != verification.id) {
                tx.change(&old.verification, now, |v| Change::event(v.replaced(now)))?;
            }
            tx.save(&verification, None)?;
            tx.latest()?
                .insert(key.as_str(), verification.id.as_bytes())?;
            Ok((PutOutcome::Stored, true))
        })
        .await
    }

    async fn record_delivery<'a>(
        &self,
        delivery: Delivery<'a>,
        now: Timestamp,
    ) -> Result<Option<Counters>, StoreError> {
        let id = *delivery.id;
        let attempts = delivery.attempts.to_vec();
        let tally = delivery.tally.cloned();
        self.write(move |txn| {
            let (_, changed) = Tx::new(txn).change(&id, now, |v| {
                Change::event(v.is_pending().then(|| v.delivered(&attempts, now)))
            })?;
            let Some(t) = &tally else {
                return Ok((None, changed));
            };
            let (counters, counted) = fraud::tally(txn, &t.prefix, 1, 0, t.window_ms, now)?;
            Ok((Some(counters), changed || counted))
        })
        .await
    }

    async fn discard_code<'a>(
        &self,
        discard: CodeDiscard<'a>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let key = discard.key.to_owned();
        let digest = *discard.digest;
        let failure = discard.failure.map(<[DeliveryAttempt]>::to_vec);
        self.write(move |txn| {
            let mut tx = Tx::new(txn);
            let Some(record) = tx.code(&key)? else {
                return Ok(((), false));
            };
            if !record.digest.ct_eq(&digest) {
                return Ok(((), false));
            }
            tx.codes()?.remove(key.as_str())?;
            let id = record.verification;
            match &failure {
                Some(attempts) => {
                    tx.change(&id, now, |v| {
                        if v.is_pending() {
                            Change {
                                changed: true,
                                events: v.failed(attempts, now).map(Some),
                            }
                        } else {
                            Change {
                                changed: false,
                                events: [None, None],
                            }
                        }
                    })?;
                }
                None => {
                    if let Some(v) = tx.load(&id)? {
                        tx.forget(&v)?;
                    }
                }
            }
            Ok(((), true))
        })
        .await
    }

    async fn check_in<'a>(
        &self,
        check: CodeCheck<'a>,
        now: Timestamp,
    ) -> Result<Checked, StoreError> {
        let key = check.key.to_owned();
        let digest = *check.digest;
        let tally = check.tally.cloned();
        let scope = check.scope.cloned();
        self.write(move |txn| {
            let mut tx = Tx::new(txn);
            let record = tx.code(&key)?;
            let owner = match &record {
                Some(r) => tx.load(&r.verification)?,
                None => None,
            };
            if let (Some(scope), Some(r)) = (&scope, &record) {
                if !scope.admits(r, owner.as_ref().and_then(|v| v.service.as_deref())) {
                    return Ok((Checked::NOT_FOUND, false));
                }
            }
            let (outcome, step) = state::check(record.as_ref(), &digest, now);
            let checked = Checked {
                outcome,
                verification: owner
                    .as_ref()
                    .filter(|_| outcome != CheckOutcome::NotFound)
                    .map(|v| (v.id, v.created_at)),
            };
            match step {
                CheckStep::Delete => {
                    tx.codes()?.remove(key.as_str())?;
                }
                CheckStep::Update(r) => {
                    let encoded = codec::encode_record(&r);
                    tx.codes()?.insert(key.as_str(), encoded.as_slice())?;
                }
                // A locked code, or none: the verification cannot change
                // either (`after_check` counts nothing when locked), so
                // the check stays a read and commits nothing.
                CheckStep::Keep => return Ok((checked, false)),
            }
            if let Some(r) = record {
                let expired = now >= r.expires_at;
                tx.change(&r.verification, now, |v| {
                    let was_pending = v.is_pending();
                    let event = v.after_check(outcome, expired, now);
                    let counted = matches!(outcome, CheckOutcome::Mismatch { .. });
                    Change {
                        changed: was_pending && (event.is_some() || counted),
                        events: [event],
                    }
                })?;
            }
            if let (CheckOutcome::Approved, Some(t)) = (outcome, &tally) {
                fraud::tally(txn, &t.prefix, 0, 1, t.window_ms, now)?;
            }
            Ok((checked, true))
        })
        .await
    }

    async fn put_pairing<'a>(
        &self,
        pairing: NewPairing<'a>,
        now: Timestamp,
    ) -> Result<PairingOutcome, StoreError> {
        let NewPairing {
            chat, expires_at, ..
        } = pairing;
        let digest = *pairing.digest;
        let buckets = pairing.buckets.to_vec();
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
            let txn = db.begin_read()?;
            txn.open_table(CODES)?;
            Ok::<(), EmbeddedError>(())
        })
        .await
        .map_err(EmbeddedError::Join)??;
        Ok(())
    }
}

#[async_trait]
impl VerificationStore for EmbeddedStore {
    async fn verification(&self, id: &VerificationId) -> Result<Option<Verification>, StoreError> {
        let id = *id;
        self.read(move |txn| {
            let table = txn.open_table(tx::VERIFICATIONS)?;
            let found = table.get(id.as_bytes())?;
            found
                .map(|v| tx::decode_verification(v.value()))
                .transpose()
        })
        .await
    }

    async fn latest_verification(&self, key: &str) -> Result<Option<Verification>, StoreError> {
        let key = key.to_owned();
        self.read(move |txn| {
            let latest = txn.open_table(tx::LATEST)?;
            let Some(id) = latest.get(key.as_str())?.map(|g| *g.value()) else {
                return Ok(None);
            };
            let table = txn.open_table(tx::VERIFICATIONS)?;
            let found = table.get(&id)?;
            found
                .map(|v| tx::decode_verification(v.value()))
                .transpose()
        })
        .await
    }

    async fn cancel_verification(
        &self,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        let id = *id;
        self.write(move |txn| {
            let mut tx = Tx::new(txn);
            let Some(mut v) = tx.load(&id)? else {
                return Ok((CancelOutcome::NotFound, false));
            };
            if !v.is_pending() {
                return Ok((CancelOutcome::AlreadyEnded(v), false));
            }
            tx.remove_code_of(&v.code_key(), &id)?;
            let expired = now >= v.expires_at;
            let event = if expired {
                v.end(Status::Expired, None, now)
            } else {
                v.end(Status::Canceled, Some(CancelReason::Api), now)
            };
            tx.save(&v, Some(true))?;
            tx.emit(&event, now)?;
            Ok((
                if expired {
                    CancelOutcome::AlreadyEnded(v)
                } else {
                    CancelOutcome::Canceled(v)
                },
                true,
            ))
        })
        .await
    }

    async fn report_delivery(
        &self,
        id: &VerificationId,
        update: &ReportUpdate,
        now: Timestamp,
    ) -> Result<ReportOutcome, StoreError> {
        let id = *id;
        let update = update.clone();
        self.write(move |txn| {
            let mut tx = Tx::new(txn);
            let Some(mut v) = tx.load(&id)? else {
                return Ok((ReportOutcome::Unknown, false));
            };
            let (outcome, event) = v.reported(&update, now);
            let Some(event) = event else {
                return Ok((outcome, false));
            };
            let pending = v.is_pending();
            tx.save(&v, Some(pending))?;
            tx.emit(&event, now)?;
            Ok((outcome, true))
        })
        .await
    }

    async fn sweep(&self, now: Timestamp, max: usize) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut tx = Tx::new(txn);
            let expired = expire_due(&mut tx, now, max)?;
            let purged = purge_ended(&mut tx, now, max)?;
            let dropped = drop_idempotency(&mut tx, now, max)?;
            Ok((expired, expired + purged + dropped > 0))
        })
        .await
    }
}

#[async_trait]
impl Outbox for EmbeddedStore {
    async fn claim_events(
        &self,
        now: Timestamp,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.write(move |txn| {
            let mut tx = Tx::new(txn);
            let due: Vec<((u64, u64), String)> = tx
                .outbox_due()?
                .range(..=(now, u64::MAX))?
                .take(max)
                .map(|e| e.map(|(k, v)| (k.value(), v.value().to_owned())))
                .collect::<Result<_, _>>()?;
            let until = now.saturating_add(lease_ms);
            let mut out = Vec::with_capacity(due.len());
            for ((at, seq), id) in due {
                tx.outbox_due()?.remove((at, seq))?;
                let value = tx.outbox()?.get(id.as_str())?.map(|g| g.value().to_vec());
                // An index entry without its event: nothing to hand out.
                let Some(value) = value else { continue };
                let (_, body) = OutboxHead::decode(&value)?;
                out.push(tx::decode_event(body)?);
                let leased = OutboxHead { due: until, seq }.encode_with(body);
                tx.outbox()?.insert(id.as_str(), leased.as_slice())?;
                tx.outbox_due()?.insert((until, seq), id.as_str())?;
            }
            let changed = !out.is_empty();
            Ok((out, changed))
        })
        .await
    }

    async fn settle_event(&self, id: &str, settle: &EventSettle) -> Result<(), StoreError> {
        let id = id.to_owned();
        let settle = settle.clone();
        self.write(move |txn| {
            let mut tx = Tx::new(txn);
            let value = tx.outbox()?.get(id.as_str())?.map(|g| g.value().to_vec());
            let Some(value) = value else {
                return Ok(((), false));
            };
            let (head, body) = OutboxHead::decode(&value)?;
            tx.outbox_due()?.remove((head.due, head.seq))?;
            match &settle {
                EventSettle::Done => {
                    tx.outbox()?.remove(id.as_str())?;
                }
                EventSettle::Retry { at, delivered } => {
                    let mut event = tx::decode_event(body)?;
                    event.tries = event.tries.saturating_add(1);
                    event.delivered.clone_from(delivered);
                    let json = serde_json::to_vec(&event).map_err(EmbeddedError::Json)?;
                    let next = OutboxHead {
                        due: *at,
                        seq: head.seq,
                    };
                    tx.outbox()?
                        .insert(id.as_str(), next.encode_with(&json).as_slice())?;
                    tx.outbox_due()?.insert((*at, head.seq), id.as_str())?;
                }
            }
            Ok(((), true))
        })
        .await
    }
}

#[async_trait]
impl otp_domain::ports::ServiceStore for EmbeddedStore {
    async fn put_service(&self, sid: &str, record: &[u8]) -> Result<(), StoreError> {
        let (sid, record) = (sid.to_owned(), record.to_vec());
        self.write(move |txn| {
            txn.open_table(tx::SERVICES)?
                .insert(sid.as_str(), record.as_slice())?;
            Ok(((), true))
        })
        .await
    }

    async fn service(&self, sid: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sid = sid.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(tx::SERVICES)?;
            let found = table.get(sid.as_str())?;
            Ok(found.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn delete_service(&self, sid: &str) -> Result<bool, StoreError> {
        let sid = sid.to_owned();
        self.write(move |txn| {
            let had = txn
                .open_table(tx::SERVICES)?
                .remove(sid.as_str())?
                .is_some();
            Ok((had, had))
        })
        .await
    }

    async fn services(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(tx::SERVICES)?;
            let mut all = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                all.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(all)
        })
        .await
    }
}

#[async_trait]
impl IdempotencyStore for EmbeddedStore {
    async fn idempotency_begin(
        &self,
        claim: IdempotencyClaim<'_>,
        now: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError> {
        let key = claim.key.to_owned();
        let fingerprint = *claim.fingerprint;
        let lease_ms = claim.lease_ms;
        self.write(move |txn| {
            let mut tx = Tx::new(txn);
            let held = idem_entry(&mut tx, &key)?;
            if let Some(e) = held.as_ref().filter(|e| e.until > now) {
                let answer = if e.fingerprint != fingerprint {
                    IdempotencyBegin::Mismatch
                } else {
                    match &e.response {
                        Some(r) => IdempotencyBegin::Replay(r.clone()),
                        None => IdempotencyBegin::InProgress,
                    }
                };
                return Ok((answer, false));
            }
            let entry = IdemValue {
                fingerprint,
                until: now.saturating_add(lease_ms),
                response: None,
            };
            put_idem(&mut tx, &key, held.as_ref(), &entry)?;
            Ok((IdempotencyBegin::Started, true))
        })
        .await
    }

    async fn idempotency_end(
        &self,
        answer: IdempotencyAnswer<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let key = answer.key.to_owned();
        let fingerprint = *answer.fingerprint;
        let response = answer.response.map(<[u8]>::to_vec);
        let ttl_ms = answer.ttl_ms;
        self.write(move |txn| {
            let mut tx = Tx::new(txn);
            let held = idem_entry(&mut tx, &key)?;
            let Some(held) = held.filter(|e| e.fingerprint == fingerprint && e.response.is_none())
            else {
                return Ok(((), false));
            };
            match &response {
                Some(r) => {
                    let entry = IdemValue {
                        fingerprint,
                        until: now.saturating_add(ttl_ms),
                        response: Some(r.clone()),
                    };
                    put_idem(&mut tx, &key, Some(&held), &entry)?;
                }
                None => {
                    tx.idempotency()?.remove(key.as_str())?;
                    tx.idempotency_expiry()?
                        .remove((held.until, key.as_str()))?;
                }
            }
            Ok(((), true))
        })
        .await
    }
}

/// Ends at most `max` pending verifications due at `now` as `expired`,
/// oldest expiry first, each with its event, deleting their codes (when
/// still theirs). Returns how many it ended.
fn expire_due(tx: &mut Tx<'_>, now: Timestamp, max: usize) -> Result<usize, EmbeddedError> {
    let due: Vec<(u64, [u8; 16])> = tx
        .pending()?
        .range(..=(now, &[u8::MAX; 16]))?
        .take(max)
        .map(|e| e.map(|(k, _)| (k.value().0, *k.value().1)))
        .collect::<Result<_, _>>()?;
    let mut expired = 0;
    for (at, id) in due {
        let id = VerificationId::from_bytes(id);
        match tx.load(&id)? {
            Some(mut v) if v.is_pending() => {
                tx.remove_code_of(&v.code_key(), &id)?;
                let event = v.end(Status::Expired, None, now);
                tx.save(&v, Some(true))?;
                tx.emit(&event, now)?;
                expired += 1;
            }
            // An index entry without a pending record: drop it.
            _ => {
                tx.pending()?.remove((at, id.as_bytes()))?;
            }
        }
    }
    Ok(expired)
}

/// Forgets at most `max` ended verifications past their retention, with
/// the latest pointers that still name them.
fn purge_ended(tx: &mut Tx<'_>, now: Timestamp, max: usize) -> Result<usize, EmbeddedError> {
    let due: Vec<(u64, [u8; 16])> = tx
        .purge()?
        .range(..=(now, &[u8::MAX; 16]))?
        .take(max)
        .map(|e| e.map(|(k, _)| (k.value().0, *k.value().1)))
        .collect::<Result<_, _>>()?;
    let purged = due.len();
    for (at, id) in due {
        tx.purge()?.remove((at, &id))?;
        if let Some(v) = tx.load(&VerificationId::from_bytes(id))? {
            tx.forget(&v)?;
        }
    }
    Ok(purged)
}

/// Drops at most `max` idempotency keys held until `now` or before.
fn drop_idempotency(tx: &mut Tx<'_>, now: Timestamp, max: usize) -> Result<usize, EmbeddedError> {
    let due: Vec<(u64, String)> = tx
        .idempotency_expiry()?
        .iter()?
        .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
        .take_while(|e| e.as_ref().map_or(true, |(until, _)| *until <= now))
        .take(max)
        .collect::<Result<_, _>>()?;
    let dropped = due.len();
    for (until, key) in due {
        tx.idempotency_expiry()?.remove((until, key.as_str()))?;
        // Only the entry this index key was written for.
        if idem_entry(tx, &key)?.is_some_and(|e| e.until == until) {
            tx.idempotency()?.remove(key.as_str())?;
        }
    }
    Ok(dropped)
}

fn idem_entry(tx: &mut Tx<'_>, key: &str) -> Result<Option<IdemValue>, EmbeddedError> {
    match tx.idempotency()?.get(key)? {
        Some(v) => Ok(Some(IdemValue::decode(v.value())?)),
        None => Ok(None),
    }
}

/// Writes `entry` under `key` in place of `held`, moving its expiry index
/// entry.
fn put_idem(
    tx: &mut Tx<'_>,
    key: &str,
    held: Option<&IdemValue>,
    entry: &IdemValue,
) -> Result<(), EmbeddedError> {
    if let Some(held) = held {
        tx.idempotency_expiry()?.remove((held.until, key))?;
    }
    tx.idempotency()?.insert(key, entry.encode().as_slice())?;
    tx.idempotency_expiry()?.insert((entry.until, key), ())?;
    Ok(())
}
