//! The verification side of a write transaction: the tables of codes,
//! verifications, their indexes and the outbox, opened lazily (a check of
//! a locked code opens only `codes`), and the steps the port calls share.
//!
//! The rules themselves are the domain's pure transitions
//! ([`Verification::after_check`], [`Verification::replaced`], …); this
//! module only reads the record, hands it to them and writes back what
//! they changed, with the events they return, in the caller's transaction.
//!
//! Index invariants, kept by [`Tx::save`] and [`Tx::forget`]:
//! - `pending` holds `(expires_at, id)` exactly for pending verifications;
//! - `purge` holds `(purge_at, id)` exactly for ended ones (an ended
//!   verification never changes again, so its key never moves);
//! - `outbox_due` holds `(due, seq) -> event id` exactly for the outbox's
//!   entries, with the `due` and `seq` in the entry's head.

use otp_domain::ports::{CodeRecord, Timestamp};
use otp_domain::verification::{StoredEvent, Verification, VerificationId};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::codec::{self, OutboxHead};
use crate::EmbeddedError;

thread_local! {
    /// Whether writes on this thread record events: set once by each
    /// store's writer thread, from `EmbeddedOptions::record_events` (off
    /// when no event sink is configured). Fraud events are written the
    /// same way.
    pub(crate) static RECORD_EVENTS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

pub const CODES: TableDefinition<&str, &[u8]> = TableDefinition::new("codes");
/// Verification id -> its JSON.
pub const VERIFICATIONS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("verifications");
/// Destination key -> the id of its latest verification.
pub const LATEST: TableDefinition<&str, &[u8; 16]> = TableDefinition::new("latest");
/// `(expires_at, id)` of every pending verification, for the sweep.
pub const PENDING: TableDefinition<(u64, &[u8; 16]), ()> = TableDefinition::new("pending_expiry");
/// `(purge_at, id)` of every ended verification, for retention.
pub const PURGE: TableDefinition<(u64, &[u8; 16]), ()> = TableDefinition::new("purge");
/// Event id -> [`OutboxHead`] and the event's JSON.
pub const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
/// `(due, seq)` -> event id: claims take the oldest due first.
pub const OUTBOX_DUE: TableDefinition<(u64, u64), &str> = TableDefinition::new("outbox_due");
/// Counters; `outbox_seq` numbers the outbox's entries in arrival order.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Namespaced idempotency key -> [`codec::IdemValue`].
pub const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
/// `/v2` service sid -> its record (the API's bytes).
pub const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
/// `(until, key)` of every idempotency entry, for the sweep.
pub const IDEMPOTENCY_EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("idempotency_expiry");

const OUTBOX_SEQ: &str = "outbox_seq";

type Bytes = &'static [u8];
type Id = &'static [u8; 16];

macro_rules! lazy_table {
    ($name:ident, $def:expr, $k:ty, $v:ty) => {
        pub fn $name(&mut self) -> Result<&mut Table<'t, $k, $v>, EmbeddedError> {
            let table = match self.$name.take() {
                Some(t) => t,
                None => self.txn.open_table($def)?,
            };
            Ok(self.$name.insert(table))
        }
    };
}

/// Tables of one write transaction, each opened at its first use. Drop it
/// before the transaction ends (it borrows it).
pub struct Tx<'t> {
    txn: &'t WriteTransaction,
    codes: Option<Table<'t, &'static str, Bytes>>,
    verifications: Option<Table<'t, Id, Bytes>>,
    latest: Option<Table<'t, &'static str, Id>>,
    pending: Option<Table<'t, (u64, Id), ()>>,
    purge: Option<Table<'t, (u64, Id), ()>>,
    outbox: Option<Table<'t, &'static str, Bytes>>,
    outbox_due: Option<Table<'t, (u64, u64), &'static str>>,
    meta: Option<Table<'t, &'static str, u64>>,
    idempotency: Option<Table<'t, &'static str, Bytes>>,
    idempotency_expiry: Option<Table<'t, (u64, &'static str), ()>>,
}

impl<'t> Tx<'t> {
    pub fn new(txn: &'t WriteTransaction) -> Self {
        Tx {
            txn,
            codes: None,
            verifications: None,
            latest: None,
            pending: None,
            purge: None,
            outbox: None,
            outbox_due: None,
            meta: None,
            idempotency: None,
            idempotency_expiry: None,
        }
    }

    lazy_table!(codes, CODES, &'static str, Bytes);
    lazy_table!(verifications, VERIFICATIONS, Id, Bytes);
    lazy_table!(latest, LATEST, &'static str, Id);
    lazy_table!(pending, PENDING, (u64, Id), ());
    lazy_table!(purge, PURGE, (u64, Id), ());
    lazy_table!(outbox, OUTBOX, &'static str, Bytes);
    lazy_table!(outbox_due, OUTBOX_DUE, (u64, u64), &'static str);
    lazy_table!(meta, META, &'static str, u64);
    lazy_table!(idempotency, IDEMPOTENCY, &'static str, Bytes);
    lazy_table!(
        idempotency_expiry,
        IDEMPOTENCY_EXPIRY,
        (u64, &'static str),
        ()
    );

    /// The code under `key`.
    pub fn code(&mut self, key: &str) -> Result<Option<CodeRecord>, EmbeddedError> {
        match self.codes()?.get(key)? {
            Some(v) => Ok(Some(codec::decode_record(v.value())?)),
            None => Ok(None),
        }
    }

    /// Deletes the code under `key` if it belongs to verification `id`
    /// (a newer send may have replaced it).
    pub fn remove_code_of(&mut self, key: &str, id: &VerificationId) -> Result<(), EmbeddedError> {
        let owned = self.code(key)?.is_some_and(|r| r.verification == *id);
        if owned {
            self.codes()?.remove(key)?;
        }
        Ok(())
    }

    /// The verification `id`; `None` when there is none, or `id` is the
    /// blank id of a code written before verifications.
    pub fn load(&mut self, id: &VerificationId) -> Result<Option<Verification>, EmbeddedError> {
        if !codec::names_verification(id) {
            return Ok(None);
        }
        match self.verifications()?.get(id.as_bytes())? {
            Some(v) => Ok(Some(decode_verification(v.value())?)),
            None => Ok(None),
        }
    }

    /// Writes `v` and moves its index entries. `was_pending` is whether
    /// the stored record was pending before (`None`: there was none).
    pub fn save(
        &mut self,
        v: &Verification,
        was_pending: Option<bool>,
    ) -> Result<(), EmbeddedError> {
        let json = serde_json::to_vec(v).map_err(EmbeddedError::Json)?;
        let id = v.id.as_bytes();
        self.verifications()?.insert(id, json.as_slice())?;
        match (was_pending, v.is_pending()) {
            // Attempts or deliveries changed: the index keys did not.
            (Some(true), true) | (Some(false), false) => {}
            (Some(true), false) => {
                self.pending()?.remove((v.expires_at, id))?;
                self.purge()?.insert((v.purge_at(), id), ())?;
            }
            (None, true) => {
                self.pending()?.insert((v.expires_at, id), ())?;
            }
            (None, false) => {
                self.purge()?.insert((v.purge_at(), id), ())?;
            }
            // Ended verifications never become pending again.
            (Some(false), true) => {
                return Err(EmbeddedError::Corrupt("an ended verification reopened"));
            }
        }
        Ok(())
    }

    /// Deletes `v` with its index entries, and the latest pointer of its
    /// destination when that still names it.
    pub fn forget(&mut self, v: &Verification) -> Result<(), EmbeddedError> {
        let id = v.id.as_bytes();
        self.verifications()?.remove(id)?;
        if v.is_pending() {
            self.pending()?.remove((v.expires_at, id))?;
        } else {
            self.purge()?.remove((v.purge_at(), id))?;
        }
        let key = v.code_key();
        let latest = self.latest()?.get(key.as_str())?.map(|g| *g.value());
        if latest.as_ref() == Some(id) {
            self.latest()?.remove(key.as_str())?;
        }
        Ok(())
    }

    /// Writes `event` to the outbox, due at `now`, after every entry
    /// written before it.
    pub fn emit(&mut self, event: &StoredEvent, now: Timestamp) -> Result<(), EmbeddedError> {
        if !RECORD_EVENTS.with(std::cell::Cell::get) {
            return Ok(());
        }
        let seq = {
            let meta = self.meta()?;
            let seq = meta.get(OUTBOX_SEQ)?.map_or(0, |v| v.value()) + 1;
            meta.insert(OUTBOX_SEQ, seq)?;
            seq
        };
        let json = serde_json::to_vec(event).map_err(EmbeddedError::Json)?;
        let value = OutboxHead { due: now, seq }.encode_with(&json);
        let replaced = self
            .outbox()?
            .insert(event.id.as_str(), value.as_slice())?
            .map(|old| OutboxHead::decode(old.value()).map(|(h, _)| (h.due, h.seq)))
            .transpose()?;
        // Event ids are unique per verification; if one is ever written
        // again, keep the index in step with the entry.
        if let Some(old) = replaced {
            self.outbox_due()?.remove(old)?;
        }
        self.outbox_due()?.insert((now, seq), event.id.as_str())?;
        Ok(())
    }

    /// Loads verification `id`, applies `change` and, when it reports a
    /// change, writes the record and the events it returns. Does nothing
    /// when there is no such verification. Returns the record as it is
    /// after the change, and whether anything was written.
    pub fn change<const N: usize>(
        &mut self,
        id: &VerificationId,
        now: Timestamp,
        change: impl FnOnce(&mut Verification) -> Change<N>,
    ) -> Result<(Option<Verification>, bool), EmbeddedError> {
        let Some(mut v) = self.load(id)? else {
            return Ok((None, false));
        };
        let was_pending = v.is_pending();
        let Change { changed, events } = change(&mut v);
        if changed {
            self.save(&v, Some(was_pending))?;
            for event in events.iter().flatten() {
                self.emit(event, now)?;
            }
        }
        Ok((Some(v), changed))
    }
}

/// What a transition did to a verification: whether it changed, and the
/// events it produced (at most `N`).
pub struct Change<const N: usize> {
    pub changed: bool,
    pub events: [Option<StoredEvent>; N],
}

impl Change<1> {
    /// A change that happened exactly when it produced an event.
    pub fn event(event: Option<StoredEvent>) -> Self {
        Change {
            changed: event.is_some(),
            events: [event],
        }
    }
}

pub fn decode_verification(b: &[u8]) -> Result<Verification, EmbeddedError> {
    serde_json::from_slice(b).map_err(EmbeddedError::Json)
}

pub fn decode_event(b: &[u8]) -> Result<StoredEvent, EmbeddedError> {
    serde_json::from_slice(b).map_err(EmbeddedError::Json)
}
