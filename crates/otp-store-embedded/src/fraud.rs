//! The fraud guard's ledger in the file: per-prefix counters and blocks.
//!
//! Every change is one call of the group-commit writer, so one write
//! transaction: a block and its `otpd.fraud.prefix_blocked` event (in the
//! same outbox as the verifications' events), an unblock or an expiry and
//! its `otpd.fraud.prefix_unblocked` event, commit together or not at
//! all. The writer runs the calls one after another, so of several
//! callers that block a prefix at once exactly one finds it free, and an
//! expired block is ended by exactly one sweep.
//!
//! `block_of` runs on every SMS and voice send, so it is a read
//! transaction and commits nothing.
//!
//! Tables (created when the file is opened):
//! - [`COUNTERS`]: prefix -> [`Counters`] as JSON;
//! - [`BLOCKS`]: prefix -> [`Block`] as JSON, the prefix's latest block
//!   until it is lifted or expired (an expired one stays until
//!   [`FraudLedger::expire_blocks`] ends it with its event);
//! - [`BLOCK_UNTIL`]: `(until, prefix)` of every entry of [`BLOCKS`], so
//!   expiries read only what is due. Kept in step with [`BLOCKS`] by
//!   [`put_block`] and [`remove_block`].

use async_trait::async_trait;
use otp_domain::fraud::{Block, Counters, Prefix};
use otp_domain::ports::{FraudCount, FraudLedger, Timestamp};
use otp_domain::verification::StoredEvent;
use otp_domain::StoreError;
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::tx::Tx;
use crate::{EmbeddedError, EmbeddedStore};

/// Prefix -> its [`Counters`] (JSON).
pub const COUNTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("fraud_counters");
/// Prefix -> its [`Block`] (JSON).
pub const BLOCKS: TableDefinition<&str, &[u8]> = TableDefinition::new("fraud_blocks");
/// `(until, prefix)` of every stored block, for expiries.
pub const BLOCK_UNTIL: TableDefinition<(u64, &str), ()> = TableDefinition::new("fraud_block_until");

type Blocks<'t> = Table<'t, &'static str, &'static [u8]>;
type BlockUntil<'t> = Table<'t, (u64, &'static str), ()>;

fn decode_block(b: &[u8]) -> Result<Block, EmbeddedError> {
    serde_json::from_slice(b).map_err(EmbeddedError::Json)
}

fn decode_counters(b: &[u8]) -> Result<Counters, EmbeddedError> {
    serde_json::from_slice(b).map_err(EmbeddedError::Json)
}

/// The block stored for `prefix`, active or not.
fn stored_block(
    blocks: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Option<Block>, EmbeddedError> {
    blocks
        .get(prefix)?
        .map(|v| decode_block(v.value()))
        .transpose()
}

/// Stores `block` in place of `old` (the prefix's stored block, if any),
/// moving its index entry.
fn put_block(
    blocks: &mut Blocks<'_>,
    until: &mut BlockUntil<'_>,
    old: Option<&Block>,
    block: &Block,
) -> Result<(), EmbeddedError> {
    let prefix = block.prefix.as_str();
    if let Some(old) = old {
        until.remove((old.until, prefix))?;
    }
    let json = serde_json::to_vec(block).map_err(EmbeddedError::Json)?;
    blocks.insert(prefix, json.as_slice())?;
    until.insert((block.until, prefix), ())?;
    Ok(())
}

/// Deletes `block` with its index entry.
fn remove_block(
    blocks: &mut Blocks<'_>,
    until: &mut BlockUntil<'_>,
    block: &Block,
) -> Result<(), EmbeddedError> {
    let prefix = block.prefix.as_str();
    blocks.remove(prefix)?;
    until.remove((block.until, prefix))?;
    Ok(())
}

/// Adds `sends` and `approvals` to the prefix's counters in `txn`;
/// returns them after the add, and whether anything was written.
pub(crate) fn tally(
    txn: &WriteTransaction,
    prefix: &Prefix,
    sends: u64,
    approvals: u64,
    window_ms: u64,
    now: Timestamp,
) -> Result<(Counters, bool), EmbeddedError> {
    let mut table = txn.open_table(COUNTERS)?;
    let old = table
        .get(prefix.as_str())?
        .map(|v| decode_counters(v.value()))
        .transpose()?;
    let next = old
        .unwrap_or_default()
        .add(sends, approvals, now, window_ms);
    if old == Some(next) {
        return Ok((next, false));
    }
    let json = serde_json::to_vec(&next).map_err(EmbeddedError::Json)?;
    table.insert(prefix.as_str(), json.as_slice())?;
    Ok((next, true))
}

/// Whether the prefix's stored block refuses sends at `now`.
pub(crate) fn refuses(
    txn: &WriteTransaction,
    prefix: &Prefix,
    now: Timestamp,
) -> Result<bool, EmbeddedError> {
    let blocks = txn.open_table(BLOCKS)?;
    Ok(stored_block(&blocks, prefix.as_str())?.is_some_and(|b| b.refuses(now)))
}

#[async_trait]
impl FraudLedger for EmbeddedStore {
    async fn count<'a>(&self, add: FraudCount<'a>, now: Timestamp) -> Result<Counters, StoreError> {
        let (sends, approvals) = (add.sends, add.approvals);
        let t = add.tally.clone();
        self.write(move |txn: &WriteTransaction| {
            tally(txn, &t.prefix, sends, approvals, t.window_ms, now)
        })
        .await
    }

    async fn block_of(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError> {
        let prefix = prefix.clone();
        self.read(move |txn| {
            let blocks = txn.open_table(BLOCKS)?;
            Ok(stored_block(&blocks, prefix.as_str())?.filter(|b| b.until > now))
        })
        .await
    }

    /// An expired block the sweep has not ended yet is ended here, with
    /// its `prefix_unblocked` event, before the new one is stored: every
    /// block gets its unblocked event exactly once.
    async fn block(&self, block: &Block, now: Timestamp) -> Result<bool, StoreError> {
        let block = block.clone();
        self.write(move |txn| {
            let mut blocks = txn.open_table(BLOCKS)?;
            let mut until = txn.open_table(BLOCK_UNTIL)?;
            let old = stored_block(&blocks, block.prefix.as_str())?;
            if old.as_ref().is_some_and(|b| b.until > now) {
                return Ok((false, false));
            }
            let mut tx = Tx::new(txn);
            if let Some(old) = &old {
                tx.emit(&StoredEvent::fraud(old, true, now), now)?;
            }
            put_block(&mut blocks, &mut until, old.as_ref(), &block)?;
            tx.emit(&StoredEvent::fraud(&block, false, now), now)?;
            Ok((true, true))
        })
        .await
    }

    async fn blocks(&self, now: Timestamp) -> Result<Vec<Block>, StoreError> {
        self.read(move |txn| {
            let blocks = txn.open_table(BLOCKS)?;
            // Keys are the prefixes' digits: the table's order is the
            // prefixes' order.
            let mut out = Vec::new();
            for entry in blocks.iter()? {
                let (_, v) = entry?;
                let block = decode_block(v.value())?;
                if block.until > now {
                    out.push(block);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn unblock(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError> {
        let prefix = prefix.clone();
        self.write(move |txn| {
            let mut blocks = txn.open_table(BLOCKS)?;
            let mut until = txn.open_table(BLOCK_UNTIL)?;
            // An expired block is the sweep's to end, with its event.
            let Some(block) = stored_block(&blocks, prefix.as_str())?.filter(|b| b.until > now)
            else {
                return Ok((None, false));
            };
            remove_block(&mut blocks, &mut until, &block)?;
            // Judged afresh from now on: an operator's unblock says the
            // prefix is fine.
            txn.open_table(COUNTERS)?.remove(prefix.as_str())?;
            Tx::new(txn).emit(&StoredEvent::fraud(&block, true, now), now)?;
            Ok((Some(block), true))
        })
        .await
    }

    async fn expire_blocks(&self, now: Timestamp, max: usize) -> Result<Vec<Block>, StoreError> {
        self.write(move |txn| {
            let mut blocks = txn.open_table(BLOCKS)?;
            let mut until = txn.open_table(BLOCK_UNTIL)?;
            let due: Vec<(u64, String)> = until
                // Prefixes are ASCII digits, so every key due at `now` sorts
                // before `(now, "\u{10FFFF}")`.
                .range(..=(now, "\u{10FFFF}"))?
                .take(max)
                .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
                .collect::<Result<_, _>>()?;
            let mut tx = Tx::new(txn);
            let mut ended = Vec::with_capacity(due.len());
            let mut changed = false;
            for (at, prefix) in due {
                match stored_block(&blocks, &prefix)? {
                    Some(block) if block.until == at => {
                        remove_block(&mut blocks, &mut until, &block)?;
                        tx.emit(&StoredEvent::fraud(&block, true, now), now)?;
                        ended.push(block);
                    }
                    // An index entry without its block: drop it.
                    _ => {
                        until.remove((at, prefix.as_str()))?;
                    }
                }
                changed = true;
            }
            Ok((ended, changed))
        })
        .await
    }
}
