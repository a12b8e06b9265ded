//! The Redis [`CodeStore`] and [`FraudLedger`] of otpd, for several otpd instances sharing one
//! store: standalone Redis or Redis Cluster, over a few shared connections
//! that pipeline concurrent calls (one round trip per operation).
//!
//! Every rule of the port that reads and then writes is one Lua script,
//! so it runs atomically inside Redis however many instances call it. The
//! scripts decide with the `now` the caller passes, never Redis time, so
//! tests can move time; instances sharing a Redis therefore need NTP, as a
//! clock running ahead ends cooldowns and windows early.
//! Every key also gets a TTL that ends with its record; only pending
//! verifications need the sweeper (their `expired` event) and outbox
//! events live until settled.
//!
//! # Layout
//! - [`RedisStore`]: implements the port; each call sends one script on a
//!   shared connection, and gives up after the config's time budget with
//!   `StoreError::Unavailable`.
//! - `link`: the shared connections (redis-rs multiplexed connections, or
//!   one async cluster connection each), opened on first use and replaced
//!   when a call finds one broken; why not a pool is in its doc.
//! - [`RedisConfig`]: URLs, connection count, timeouts and the key prefix
//!   (serde, unknown keys refused).
//! - [`RedisStoreError`]: this adapter's errors, converted to
//!   [`StoreError`] at the port.
//! - [`queue`]: [`RedisQueueSender`] and [`QueueConfig`], the Redis Stream
//!   queue sender and its settings; its failures become `DeliveryError`s.
//! - `keys`: the key layout below; `scripts` and `src/scripts/*.lua`: the
//!   rules, one script each.
//! - `tests/`: suites against real redis-server processes and a Redis
//!   Cluster, started by `otp_testkit::redis` (the harness lives there,
//!   so this crate ships none); `tests/contract.rs` runs the store
//!   contract suite on both.
//!
//! Keys, with the default prefix `otpd` (the part in braces is the Redis
//! Cluster hash tag, so all keys of one script share a slot):
//! - `otpd:{sms:+77011234567}:code`: the code record, a hash of
//!   `d` (digest, hex), `e` (expires_at, unix ms), `a` (failed attempts),
//!   `m` (max attempts), `v` (its verification id, hex; codes stored
//!   before verifications lack it and simply have none). Never the code.
//! - `otpd:{sms:+77011234567}:vrf:<id hex>`: a verification record, in
//!   its code's slot so one script changes both; flat fields, listed in
//!   `scripts/vrf.lua`; TTL until its `purge_at`.
//! - `otpd:{sms:+77011234567}:latest`: the destination's latest
//!   verification id.
//! - `otpd:vidx:{<id hex>}`: the destination tag of a verification, so a
//!   look-up by id finds the record's slot. On a single Redis `stage_send`
//!   writes it in its script (and `record_delivery` reads it there); on a
//!   cluster (another slot) they are steps of their own.
//! - `otpd:{<outbox>}:due`, `otpd:{<outbox>}:evt:<event id>`,
//!   `otpd:{<outbox>}:pending`: the outbox (event ids by due time, one
//!   hash per event) and the pending verifications by expiry. `<outbox>`
//!   is `outbox` on a single Redis; on a cluster it is a tag of the code's
//!   slot (`ob<n>`, see `keys::SLOT_TAGS`), so the event is written in the
//!   same script as the change.
//! - `otpd:{outbox-slots}` (cluster only): the slots whose outbox may
//!   have work, by when to look next. A call whose script wrote to a slot's
//!   outbox lowers its score right after (a second command, only then);
//!   claims and sweeps run one script per listed due slot and reschedule
//!   it (at most 5 s ahead while it has work, 60 s when empty).
//! - `otpd:idem:{<key>}`: an idempotency key: fingerprint, deadline and
//!   the response.
//! - `otpd:{sms:+77011234567}:bucket:<bucket key>`: a send rate bucket, a
//!   hash of `s` (window start) and `c` (hits).
//! - `otpd:{pairing}:d:<hex digest>`: a Telegram pairing, a hash of `c`
//!   (chat id) and `e` (expires_at).
//! - `otpd:{pairing}:chat:<chat id>`: the name of the chat's pairing key.
//! - `otpd:{pairing}:bucket:<bucket key>`: a pairing rate bucket, or the
//!   bucket of failed pairing lookups.
//! - `otpd:{fraud}:c:<number prefix>`: the fraud guard's sliding-window
//!   counters of a prefix, a hash of `w` (window start), `s`, `a` (sends,
//!   approvals), `ps`, `pa` (of the window before); TTL two windows and a
//!   minute. Counted by `counters.lua` with the window starts computed in
//!   Rust, so it is `Counters::add` exactly: on a single Redis inside the
//!   delivery's and the approving check's scripts, on a cluster (another
//!   slot) in `fraud_count.lua` right after them.
//! - `otpd:{fraud}:b:<number prefix>`: a block, a hash of `j` (the Block
//!   as JSON) and `ue` (the id of the event its end writes); and
//!   `otpd:{fraud}:blocks`, the blocked prefixes scored by `until`. No
//!   TTL: unblock or the expiry sweep ends a block, with its event, in the
//!   script that removes it. Fraud events are in the outbox of the
//!   `{fraud}` slot (the single outbox on one Redis), with the Block as
//!   JSON in `@block` instead of a record's fields; their ids start with
//!   `evt_fraud_`, which is how a settle finds that outbox on a cluster.
//! - `otpd:bucket:{<bucket key>}`: a bucket that spans destinations (per
//!   end user, per channel, a webhook update), tagged with its own key so
//!   these spread over a cluster: charged by the first step of a send
//!   (`put_code.lua`) on a single Redis, and by `hit_bucket` before the
//!   code's script on a cluster (and for a webhook update).
//!
//! A `{` or `}` (or `%`) inside a destination is percent-escaped within
//! its tag, so no destination can split its keys across slots.
//!
//! The same crate has otpd's queue provider: [`RedisQueueSender`], a
//! `Sender` that appends each message as a JSON job to a Redis Stream for
//! an external service to deliver (the job format is in [`queue`]).
//!
//! `rediss://` URLs use TLS (rustls on aws-lc-rs, trusting the system
//! roots, which honour `SSL_CERT_FILE` and `SSL_CERT_DIR`).

mod config;
mod error;
mod keys;
mod link;
pub mod queue;
mod record;
mod scripts;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::fraud::{Block, Counters, Prefix};
use otp_domain::ports::{
    CheckOutcome, CheckScope, Checked, CodeCheck, CodeStore, Delivery, FraudCount, HitOutcome,
    IdempotencyAnswer, IdempotencyClaim, IdempotencyStore, Outbox, PairingOutcome, PutOutcome,
    RateBucket, SendLimits, StagedSend, TakeOutcome, Timestamp, VerificationStore,
};
use otp_domain::ports::{CodeDiscard, FraudLedger, NewPairing};
use otp_domain::verification::{
    CancelOutcome, EventSettle, EventType, IdempotencyBegin, ReportOutcome, ReportUpdate, Status,
    StoredEvent, Verification, VerificationId,
};
use otp_domain::{ChatId, CodeDigest, StoreError};
use redis::cluster::ClusterClient;
use redis::{AsyncConnectionConfig, Client, FromRedisValue};

pub use config::RedisConfig;
pub use error::RedisStoreError;
pub use queue::{QueueConfig, RedisQueueSender};
pub use stream::RedisStreamSink;

use keys::Keys;
use link::{Conn, Connector, Link};

/// A [`CodeStore`] on Redis. Cheap to clone: clones share the
/// connections.
#[derive(Clone)]
pub struct RedisStore {
    link: Arc<Link>,
    mode: &'static str,
    /// Whether this is a Redis Cluster: outboxes are per slot then.
    cluster: bool,
    keys: Keys,
    /// The outbox of each event this process claimed and has not settled
    /// yet (cluster only), so a settle needs no look-up.
    claims: Arc<Mutex<HashMap<String, &'static str>>>,
    deadline: Duration,
    /// Whether status changes write events to the outbox (off when no
    /// event sink is configured: nobody would read them).
    record_events: bool,
}

impl RedisStore {
    /// A store on the standalone server at `config.url`. Connects lazily:
    /// a server that is down now makes calls fail, not this.
    ///
    /// # Errors
    /// When the URL does not parse or a setting is unusable.
    pub fn standalone(config: &RedisConfig) -> Result<Self, RedisStoreError> {
        let keys = Keys::new(&config.key_prefix)?;
        prepare_tls([config.url.as_str()]);
        let client = Client::open(config.url.as_str()).map_err(RedisStoreError::Url)?;
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout()))
            .set_response_timeout(Some(config.command_timeout()));
        let connector = Connector::Standalone {
            client,
            config: connection,
        };
        Ok(RedisStore {
            link: Arc::new(Link::new(
                connector,
                pool_size(config)?,
                config.connection_wait(),
            )),
            mode: "standalone",
            cluster: false,
            keys,
            claims: Arc::default(),
            deadline: config.call_deadline(),
            record_events: true,
        })
    }

    /// A store on the Redis Cluster seeded by `config.nodes`. Connects
    /// lazily, like [`RedisStore::standalone`].
    ///
    /// # Errors
    /// When `nodes` is empty, a URL does not parse or a setting is
    /// unusable.
    pub fn cluster(config: &RedisConfig) -> Result<Self, RedisStoreError> {
        let keys = Keys::new(&config.key_prefix)?;
        if config.nodes.is_empty() {
            return Err(RedisStoreError::Config(
                "a cluster store needs at least one node in `nodes`",
            ));
        }
        let nodes: Vec<&str> = config.nodes.iter().map(String::as_str).collect();
        prepare_tls(nodes.iter().copied());
        let client = ClusterClient::builder(nodes)
            .connection_timeout(config.connect_timeout())
            .response_timeout(config.command_timeout())
            .build()
            .map_err(RedisStoreError::Url)?;
        Ok(RedisStore {
            link: Arc::new(Link::new(
                Connector::Cluster(client),
                pool_size(config)?,
                config.connection_wait(),
            )),
            mode: "cluster",
            cluster: true,
            keys,
            claims: Arc::default(),
            deadline: config.call_deadline(),
            record_events: true,
        })
    }

    /// Runs `work` on a shared connection within the call's time budget.
    /// When the budget runs out mid-script, the script may or may not have
    /// run; the caller sees `Unavailable` either way, as with any lost
    /// reply.
    async fn run<T, F, Fut>(&self, work: F) -> Result<T, RedisStoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        tokio::time::timeout(self.deadline, self.link.run(work))
            .await
            .map_err(|_| RedisStoreError::Timeout(self.deadline))?
    }

    /// Runs one script invocation and reads its reply as `T`.
    async fn eval<T>(
        &self,
        invocation: redis::ScriptInvocation<'static>,
    ) -> Result<T, RedisStoreError>
    where
        T: FromRedisValue + Send,
    {
        self.run(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await
    }
}

/// redis-rs builds its TLS config on rustls's process-wide default crypto
/// provider. rustls picks one by itself only when exactly one is compiled
/// in; install aws-lc-rs (otpd's only one) so a feature another crate
/// enables later cannot turn `rediss://` into a panic. A provider someone
/// installed first stays.
fn prepare_tls<'a>(urls: impl IntoIterator<Item = &'a str>) {
    if urls.into_iter().any(|u| u.starts_with("rediss://")) {
        let _already_installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

fn pool_size(config: &RedisConfig) -> Result<usize, RedisStoreError> {
    if config.pool_size == 0 {
        return Err(RedisStoreError::Config("pool_size must be at least 1"));
    }
    Ok(config.pool_size)
}

/// Adds each bucket's limit and window, in the order of its key.
fn bucket_args(invocation: &mut redis::ScriptInvocation<'_>, buckets: &[RateBucket]) {
    for b in buckets {
        invocation.arg(b.limit).arg(b.window_ms);
    }
}

fn parse_i64(s: &str) -> Result<i64, RedisStoreError> {
    s.parse()
        .map_err(|_| RedisStoreError::Corrupt(format!("not a number: {s:?}")))
}

fn parse_chat(s: &str) -> Result<ChatId, RedisStoreError> {
    parse_i64(s)
        .ok()
        .and_then(|n| ChatId::from_i64(n).ok())
        .ok_or_else(|| RedisStoreError::Corrupt("pairing with an invalid chat id".to_owned()))
}

fn wait_ms(n: i64) -> Result<u64, RedisStoreError> {
    u64::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| RedisStoreError::Corrupt(format!("rate limit wait of {n} ms")))
}

/// The outbox tag of a single Redis: one outbox for every destination.
const SINGLE_OUTBOX: &str = "outbox";

/// How often a report is read and written again when another instance
/// changed the same record in between.
const REPORT_TRIES: usize = 5;

/// Cluster only: the longest a slot with work waits for its next look
/// (see [`RedisStore::reschedule`]).
const RECHECK_MS: u64 = 5_000;

/// Cluster only: how often an empty slot that once had work is looked at
/// again: slots stay in the schedule, so a mark lost to a race (or to a
/// crash between a script and its mark) costs a delay, not an event.
const IDLE_RECHECK_MS: u64 = 60_000;

/// Claimed events whose outbox this process remembers for their settle;
/// past this many unsettled ones it forgets them all (a settle then finds
/// the outbox through the id index).
const MAX_REMEMBERED_CLAIMS: usize = 100_000;

/// How much longer than two windows a prefix's counters live. After two
/// windows without a count they are zero anyway; the TTL runs on Redis's
/// clock while windows run on the callers' `now`, so the margin keeps a
/// caller whose clock lags (or a test's fixed clock) from losing counts
/// the domain's math still holds.
const COUNTER_TTL_MARGIN_MS: u64 = 60_000;

/// The longest TTL set (PEXPIRE refuses huge values; a century is
/// forever here).
const MAX_TTL_MS: u64 = 3_153_600_000_000;

/// How much longer than its record the id index and the latest pointer
/// live: a verification may end (and start its retention) a little after
/// its expiry, when the sweeper gets to it.
const INDEX_MARGIN_MS: u64 = 3_600_000;

/// What the id of every fraud event starts with (see
/// `StoredEvent::fraud`); a verification's event id is `evt_` and 32 hex
/// digits, never `fraud`.
const FRAUD_EVENT_PREFIX: &str = "evt_fraud_";

/// A block as the fraud scripts store it and its events carry it.
fn block_json(block: &Block) -> Result<String, RedisStoreError> {
    serde_json::to_string(block)
        .map_err(|e| RedisStoreError::Corrupt(format!("fraud block as JSON: {e}")))
}

/// A block the fraud scripts stored.
fn block_of_json(json: &str) -> Result<Block, RedisStoreError> {
    serde_json::from_str(json).map_err(|e| RedisStoreError::Corrupt(format!("fraud block: {e}")))
}

fn parse_u64(s: &str) -> Result<u64, RedisStoreError> {
    s.parse()
        .map_err(|_| RedisStoreError::Corrupt(format!("not a count: {s:?}")))
}

/// The arguments of `counters_add` (see `scripts/counters.lua`): the
/// window arithmetic of `Counters::at`, done here on integers, so the
/// script only compares the stored start with these strings.
struct CounterArgs {
    start: u64,
    before: String,
    ttl: u64,
}

impl CounterArgs {
    fn new(window_ms: u64, now: Timestamp) -> Self {
        let window_ms = window_ms.max(1);
        let start = now - now % window_ms;
        CounterArgs {
            start,
            before: start
                .checked_sub(window_ms)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            ttl: window_ms
                .saturating_mul(2)
                .saturating_add(COUNTER_TTL_MARGIN_MS)
                .min(MAX_TTL_MS),
        }
    }

    /// Appends start, before and TTL, as the scripts that count inline
    /// take them after their own arguments.
    fn push(self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(self.start).arg(self.before).arg(self.ttl);
    }
}

/// `{w, s, a, ps, pa}` as `counters_add` returns them.
fn parse_counters(got: &[String]) -> Result<Counters, RedisStoreError> {
    let [w, s, a, ps, pa] = got else {
        return Err(RedisStoreError::Corrupt(format!(
            "fraud counters of {} fields",
            got.len()
        )));
    };
    Ok(Counters {
        window_start: parse_u64(w)?,
        sends: parse_u64(s)?,
        approvals: parse_u64(a)?,
        prev_sends: parse_u64(ps)?,
        prev_approvals: parse_u64(pa)?,
    })
}

impl RedisStore {
    /// Stops writing verification events (status changes still happen as
    /// ever): for a deployment with no event sink, where each event would
    /// be written only to be dropped.
    #[must_use]
    pub fn without_events(mut self) -> Self {
        self.record_events = false;
        self
    }

    /// The outbox argument of a script: empty when events are off.
    fn event_outbox(&self, outbox: &'static str) -> &'static str {
        if self.record_events {
            outbox
        } else {
            ""
        }
    }

    /// The outbox tag of a destination tag: the single outbox, or on a
    /// cluster the tag of the destination's slot, so a script that changes
    /// a code writes its events in the same slot.
    fn outbox_of(&self, tag: &str) -> &'static str {
        if self.cluster {
            let tags: &'static [String] = &keys::SLOT_TAGS;
            tags[usize::from(keys::slot(tag))].as_str()
        } else {
            SINGLE_OUTBOX
        }
    }

    /// The escaped destination tag of verification `hex`, from the index.
    async fn locate(&self, hex: &str) -> Result<Option<String>, RedisStoreError> {
        let index = self.keys.index(hex);
        self.run(
            |mut conn| async move { redis::cmd("GET").arg(index).query_async(&mut conn).await },
        )
        .await
    }

    /// The outboxes that may have work due at `now`: the single one, or
    /// on a cluster the slots the schedule lists as due.
    async fn busy_outboxes(&self, now: Timestamp) -> Result<Vec<&'static str>, RedisStoreError> {
        if !self.cluster {
            return Ok(vec![SINGLE_OUTBOX]);
        }
        let schedule = self.keys.schedule();
        let due: Vec<String> = self
            .run(|mut conn| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(schedule)
                    .arg("-inf")
                    .arg(now)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let tags: &'static [String] = &keys::SLOT_TAGS;
        Ok(due
            .iter()
            .filter_map(|t| tags.get(usize::from(keys::slot(t))).filter(|own| *own == t))
            .map(String::as_str)
            .collect())
    }

    /// Cluster only: a script wrote to `outbox` something due at `at`, so
    /// claims and sweeps look at its slot from then on (`ZADD LT` keeps
    /// an earlier time).
    async fn mark(&self, outbox: &'static str, at: Timestamp) -> Result<(), RedisStoreError> {
        if !self.cluster {
            return Ok(());
        }
        let schedule = self.keys.schedule();
        self.run(|mut conn| async move {
            redis::cmd("ZADD")
                .arg(schedule)
                .arg("LT")
                .arg(at)
                .arg(outbox)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Cluster only: after a claim or sweep of `outbox` that found its
    /// next work at `next` (Redis's score string; empty for none), when
    /// to look again: then, but never later than `RECHECK_MS` from now
    /// (a writer's mark that raced with this update is late by that much
    /// at most), or after `IDLE_RECHECK_MS` when it is empty.
    async fn reschedule(
        &self,
        outbox: &'static str,
        next: &str,
        now: Timestamp,
    ) -> Result<(), RedisStoreError> {
        if !self.cluster {
            return Ok(());
        }
        let at = match next.parse::<u64>() {
            Ok(next) => next.min(now.saturating_add(RECHECK_MS)),
            Err(_) => now.saturating_add(IDLE_RECHECK_MS),
        };
        let schedule = self.keys.schedule();
        self.run(|mut conn| async move {
            redis::cmd("ZADD")
                .arg(schedule)
                .arg("XX")
                .arg(at)
                .arg(outbox)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    fn remember_claims(&self, outbox: &'static str, events: &[StoredEvent]) {
        if !self.cluster {
            return;
        }
        let mut claims = self
            .claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if claims.len() > MAX_REMEMBERED_CLAIMS {
            claims.clear();
        }
        for e in events {
            claims.insert(e.id.clone(), outbox);
        }
    }

    /// The outbox holding event `id`.
    async fn outbox_of_event(&self, id: &str) -> Result<Option<&'static str>, RedisStoreError> {
        if !self.cluster {
            return Ok(Some(SINGLE_OUTBOX));
        }
        let remembered = self
            .claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        if remembered.is_some() {
            return Ok(remembered);
        }
        // A fraud event (`evt_fraud_<prefix>_<since>_<what>`) is in the
        // fraud slot's outbox.
        if id.starts_with(FRAUD_EVENT_PREFIX) {
            return Ok(Some(self.outbox_of(keys::FRAUD_TAG)));
        }
        // `evt_<hex>_<n>`: the verification's index names the slot.
        let hex = id
            .strip_prefix("evt_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(hex, _)| hex)
            .ok_or_else(|| RedisStoreError::Corrupt(format!("event id {id:?}")))?;
        Ok(self.locate(hex).await?.map(|tag| self.outbox_of(&tag)))
    }
}

impl RedisStore {
    /// The verification id (hex) of the code under `key` while it can
    /// still be checked at `now` (unexpired, unlocked), in one read; a
    /// cluster's probe before the buckets, as the scripts ask it inside.
    async fn live_code(&self, key: &str, now: Timestamp) -> Result<Option<String>, StoreError> {
        let code_key = self.keys.code(key);
        let (v, e, a, m): (Option<String>, Option<u64>, Option<u32>, Option<u32>) = self
            .run(|mut conn| async move {
                redis::cmd("HMGET")
                    .arg(code_key)
                    .arg("v")
                    .arg("e")
                    .arg("a")
                    .arg("m")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let live = e.is_some_and(|e| e > now) && matches!((a, m), (Some(a), Some(m)) if a < m);
        Ok(v.filter(|_| live))
    }

    /// Cluster only: the pending verification of `service` whose live code
    /// is under `key` ([`otp_domain::state::reusable`]), as `put_code.lua`
    /// asks on a single Redis; two reads in the code's slot.
    async fn pending_of(
        &self,
        key: &str,
        service: &str,
        now: Timestamp,
    ) -> Result<Option<VerificationId>, StoreError> {
        let Some(hex) = self.live_code(key, now).await? else {
            return Ok(None);
        };
        let rec = self.keys.verification(key, &hex);
        let (status, sv): (Option<String>, Option<String>) = self
            .run(|mut conn| async move {
                redis::cmd("HMGET")
                    .arg(rec)
                    .arg("s")
                    .arg("sv")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if status.as_deref() == Some("pending") && sv.as_deref() == Some(service) {
            return Ok(record::id_of_hex(&hex));
        }
        Ok(None)
    }

    /// Cluster only: the limits of a send, before its code is stored: the
    /// block (the `{fraud}` slot), the destination's own buckets (its
    /// slot, all or nothing), then each shared bucket (a slot each).
    /// `Some` is the refusal; `None` means the code may be stored.
    async fn cluster_limits(
        &self,
        key: &str,
        limits: &SendLimits,
        now: Timestamp,
    ) -> Result<Option<PutOutcome>, StoreError> {
        if let Some(prefix) = &limits.blocked {
            if self
                .block_of(prefix, now)
                .await?
                .is_some_and(|b| b.refuses(now))
            {
                return Ok(Some(PutOutcome::FraudBlocked));
            }
        }
        if !limits.own.is_empty() {
            let mut inv = scripts::HIT_BUCKET.key(self.keys.code_bucket(key, &limits.own[0].key));
            for b in &limits.own[1..] {
                inv.key(self.keys.code_bucket(key, &b.key));
            }
            inv.arg(now);
            bucket_args(&mut inv, &limits.own);
            let wait: i64 = self.eval(inv).await?;
            if wait != 0 {
                return Ok(Some(PutOutcome::RateLimited {
                    retry_after_ms: wait_ms(wait)?,
                }));
            }
        }
        for (index, b) in limits.shared.iter().enumerate() {
            if let HitOutcome::Full { retry_after_ms } = self.hit_bucket(b, now).await? {
                return Ok(Some(PutOutcome::SharedLimited {
                    index,
                    retry_after_ms,
                }));
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl CodeStore for RedisStore {
    async fn stage_send<'a>(
        &self,
        send: StagedSend<'a>,
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError> {
        // On a cluster the block and the shared buckets live in other
        // slots: one step each, before the code's script, in the order of
        // `state::stage_limits` (block, own buckets, shared ones), so a
        // refusal leaves the destination's earlier code as it was.
        if self.cluster && send.limits.resend {
            // A resend charges nothing unless its code is still live: on a
            // cluster the buckets below are charged before the script
            // could tell, so ask first (the script asks again, atomically).
            let live = self.live_code(send.key, now).await?;
            if live.as_deref() != Some(record::hex(&send.record.verification).as_str()) {
                return Ok(PutOutcome::Gone);
            }
        }
        if let (true, Some(service)) = (self.cluster, &send.limits.reuse) {
            // As for a resend: on a cluster the buckets are charged before
            // the script, so ask first (the script is then not asked).
            if let Some(id) = self.pending_of(send.key, service, now).await? {
                return Ok(PutOutcome::Pending(id));
            }
        }
        if self.cluster {
            if let Some(outcome) = self.cluster_limits(send.key, send.limits, now).await? {
                return Ok(outcome);
            }
        }
        let tag = keys::tag(send.key);
        let outbox = self.outbox_of(&tag);
        let hex = record::hex(&send.record.verification);
        let index = self.keys.index(&hex);
        let index_ttl = send
            .verification
            .expires_at
            .saturating_add(send.verification.retention_ms)
            .saturating_add(INDEX_MARGIN_MS)
            .saturating_sub(now)
            .max(1);
        // On a cluster `cluster_limits` charged them already.
        let own: &[RateBucket] = if self.cluster { &[] } else { &send.limits.own };
        let shared: &[RateBucket] = if self.cluster {
            &[]
        } else {
            &send.limits.shared
        };
        let blocked = send.limits.blocked.as_ref().filter(|_| !self.cluster);
        let mut inv = scripts::PUT_CODE.key(self.keys.code(send.key));
        inv.key(self.keys.latest(send.key))
            .key(self.keys.due(outbox))
            .key(self.keys.pending(outbox));
        for b in own {
            inv.key(self.keys.code_bucket(send.key, &b.key));
        }
        for b in shared {
            inv.key(self.keys.bucket(&b.key));
        }
        if let Some(prefix) = blocked {
            inv.key(self.keys.fraud_block(prefix.as_str()));
        }
        inv.arg(now)
            .arg(send.record.digest.to_hex())
            .arg(send.record.expires_at)
            .arg(send.record.attempts)
            .arg(send.record.max_attempts)
            .arg(&hex)
            .arg(self.keys.prefix())
            .arg(&tag)
            .arg(self.event_outbox(outbox))
            // On a cluster the index is in another slot: written below.
            .arg(if self.cluster { "" } else { index.as_str() })
            .arg(index_ttl)
            .arg(own.len())
            .arg(shared.len())
            .arg(if blocked.is_some() { "1" } else { "0" })
            .arg(if send.limits.resend { "1" } else { "0" })
            .arg(match &send.limits.reuse {
                Some(service) if !self.cluster => service.as_str(),
                _ => "",
            });
        bucket_args(&mut inv, own);
        bucket_args(&mut inv, shared);
        inv.arg(record::fields(send.verification)?);
        let (status, wait, at, pending): (i64, i64, i64, String) = self.eval(inv).await?;
        match status {
            0 => {}
            1 => {
                return Ok(PutOutcome::RateLimited {
                    retry_after_ms: wait_ms(wait)?,
                })
            }
            2 => {
                return Ok(PutOutcome::SharedLimited {
                    index: usize::try_from(at)
                        .map_err(|_| RedisStoreError::Corrupt(format!("bucket index {at}")))?,
                    retry_after_ms: wait_ms(wait)?,
                })
            }
            3 => return Ok(PutOutcome::FraudBlocked),
            4 => return Ok(PutOutcome::Gone),
            5 => {
                return Ok(PutOutcome::Pending(
                    record::id_of_hex(&pending).ok_or_else(|| {
                        RedisStoreError::Corrupt(format!("pending verification {pending}"))
                    })?,
                ))
            }
            other => {
                return Err(RedisStoreError::Corrupt(format!("send status {other}")).into());
            }
        }
        if !self.cluster || send.limits.resend {
            return Ok(PutOutcome::Stored);
        }
        // Cluster: the id index lives in another slot, and the outbox
        // schedule too. The code is stored already: a failure now undoes
        // it, so no code that nobody will receive stays checkable.
        let after = async {
            // Before the caller learns the id: a look-up by id can only
            // come after this returned.
            self.run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(index)
                    .arg(tag)
                    .arg("PX")
                    .arg(index_ttl)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await?;
            self.mark(outbox, now).await
        };
        if let Err(e) = after.await {
            if let Err(undo) = self
                .discard_code(
                    CodeDiscard {
                        key: send.key,
                        digest: &send.record.digest,
                        failure: None,
                    },
                    now,
                )
                .await
            {
                tracing::error!(error = %otp_domain::error::chain(&undo), "could not undo a staged code after a failed step; it expires with its lifetime");
            }
            return Err(e.into());
        }
        Ok(PutOutcome::Stored)
    }

    async fn discard_code<'a>(
        &self,
        discard: CodeDiscard<'a>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let tag = keys::tag(discard.key);
        let outbox = self.outbox_of(&tag);
        let failure = discard.failure.map(record::attempts_json).transpose()?;
        let mut inv = scripts::DISCARD_CODE.key(self.keys.code(discard.key));
        inv.key(self.keys.due(outbox))
            .key(self.keys.pending(outbox))
            .key(self.keys.latest(discard.key))
            .arg(discard.digest.to_hex())
            .arg(now)
            .arg(self.keys.prefix())
            .arg(&tag)
            .arg(self.event_outbox(outbox))
            .arg(failure.clone().unwrap_or_default());
        let removed: i64 = self.eval(inv).await?;
        if removed == 1 && failure.is_some() {
            self.mark(outbox, now).await?;
        }
        Ok(())
    }

    async fn check_in<'a>(
        &self,
        check: CodeCheck<'a>,
        now: Timestamp,
    ) -> Result<Checked, StoreError> {
        let tag = keys::tag(check.key);
        let outbox = self.outbox_of(&tag);
        let mut inv = scripts::CHECK_CODE.key(self.keys.code(check.key));
        inv.key(self.keys.due(outbox))
            .key(self.keys.pending(outbox))
            .arg(now)
            .arg(check.digest.to_hex())
            .arg(self.keys.prefix())
            .arg(&tag)
            .arg(self.event_outbox(outbox));
        match check.scope {
            Some(CheckScope::Verification(id)) => inv.arg(record::hex(id)).arg(""),
            Some(CheckScope::Service(sid)) => inv.arg("").arg(sid),
            None => inv.arg("").arg(""),
        };
        // The counters are in the `{fraud}` slot: on a cluster, a second
        // step after an approval.
        let inline = check.tally.filter(|_| !self.cluster);
        if let Some(t) = inline {
            inv.key(self.keys.fraud_counters(t.prefix.as_str()));
            CounterArgs::new(t.window_ms, now).push(&mut inv);
        }
        let (status, left, events, hex, created): (i64, i64, i64, String, String) =
            self.eval(inv).await?;
        if events > 0 {
            // Cluster only, and only for a check that ended its
            // verification: a second round trip.
            self.mark(outbox, now).await?;
        }
        let outcome = match status {
            0 => CheckOutcome::NotFound,
            1 => CheckOutcome::Approved,
            2 => CheckOutcome::Mismatch {
                attempts_left: u32::try_from(left)
                    .map_err(|_| RedisStoreError::Corrupt(format!("{left} attempts left")))?,
            },
            3 => CheckOutcome::Locked,
            other => {
                return Err(RedisStoreError::Corrupt(format!("check status {other}")).into());
            }
        };
        if let (Some(t), CheckOutcome::Approved, true) = (check.tally, outcome, self.cluster) {
            // The code is used up already: a failed count must not turn
            // the approval into an error the user cannot retry.
            if let Err(e) = self.count(t.add(0, 1), now).await {
                tracing::error!(error = %otp_domain::error::chain(&e), prefix = %t.prefix, "fraud guard: could not count an approval; the check stands");
            }
        }
        // A code written before verifications names none.
        let verification = match (hex.as_str(), created.parse::<Timestamp>()) {
            ("", _) | (_, Err(_)) => None,
            (hex, Ok(created)) => Some((
                record::id_of_hex(hex)
                    .ok_or_else(|| RedisStoreError::Corrupt(format!("verification id {hex}")))?,
                created,
            )),
        };
        Ok(Checked {
            outcome,
            verification,
        })
    }

    async fn put_pairing<'a>(
        &self,
        pairing: NewPairing<'a>,
        now: Timestamp,
    ) -> Result<PairingOutcome, StoreError> {
        let mut inv = scripts::PUT_PAIRING.key(self.keys.pairing(pairing.digest));
        inv.key(self.keys.pairing_chat(pairing.chat));
        for b in pairing.buckets {
            inv.key(self.keys.pairing_bucket(&b.key));
        }
        inv.arg(now).arg(pairing.chat.get()).arg(pairing.expires_at);
        bucket_args(&mut inv, pairing.buckets);
        let (status, wait): (i64, i64) = self.eval(inv).await?;
        let outcome = match status {
            0 => PairingOutcome::Stored,
            1 => PairingOutcome::Collision,
            2 => PairingOutcome::RateLimited {
                retry_after_ms: wait_ms(wait)?,
            },
            other => {
                return Err(RedisStoreError::Corrupt(format!("pairing status {other}")).into());
            }
        };
        Ok(outcome)
    }

    async fn discard_pairing(&self, digest: &CodeDigest) -> Result<(), StoreError> {
        let mut inv = scripts::DISCARD_PAIRING.key(self.keys.pairing(digest));
        inv.arg(self.keys.pairing_chat_prefix());
        let _removed: i64 = self.eval(inv).await?;
        Ok(())
    }

    async fn take_pairing<'a>(
        &self,
        digest: &CodeDigest,
        failures: Option<&'a RateBucket>,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        let mut inv = scripts::TAKE_PAIRING.key(self.keys.pairing(digest));
        if let Some(b) = failures {
            inv.key(self.keys.pairing_bucket(&b.key));
        }
        inv.arg(now).arg(self.keys.pairing_chat_prefix());
        bucket_args(
            &mut inv,
            failures.map(std::slice::from_ref).unwrap_or_default(),
        );
        let (status, value): (i64, String) = self.eval(inv).await?;
        let outcome = match status {
            0 => TakeOutcome::NotFound,
            1 => TakeOutcome::Found(parse_chat(&value)?),
            2 => TakeOutcome::RateLimited {
                retry_after_ms: wait_ms(parse_i64(&value)?)?,
            },
            other => {
                return Err(RedisStoreError::Corrupt(format!("take status {other}")).into());
            }
        };
        Ok(outcome)
    }

    async fn hit_bucket(
        &self,
        bucket: &RateBucket,
        now: Timestamp,
    ) -> Result<HitOutcome, StoreError> {
        let mut inv = scripts::HIT_BUCKET.key(self.keys.bucket(&bucket.key));
        inv.arg(now);
        bucket_args(&mut inv, std::slice::from_ref(bucket));
        let wait: i64 = self.eval(inv).await?;
        if wait == 0 {
            return Ok(HitOutcome::Counted);
        }
        Ok(HitOutcome::Full {
            retry_after_ms: wait_ms(wait)?,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A PING may run twice, so one that meets a connection Redis closed
        // while otpd was idle (a Redis restart) tries again on a new one,
        // and readiness does not flap once Redis is back.
        let ping = self.link.run_idempotent(|mut conn| async move {
            redis::cmd("PING").query_async::<()>(&mut conn).await
        });
        tokio::time::timeout(self.deadline, ping)
            .await
            .map_err(|_| RedisStoreError::Timeout(self.deadline))??;
        Ok(())
    }

    async fn record_delivery<'a>(
        &self,
        delivery: Delivery<'a>,
        now: Timestamp,
    ) -> Result<Option<Counters>, StoreError> {
        let hex = record::hex(delivery.id);
        let attempts = record::attempts_json(delivery.attempts)?;
        if !self.cluster {
            // One script: it reads the index itself, and counts the send.
            let mut inv = scripts::DELIVERED.key(self.keys.index(&hex));
            inv.key(self.keys.due(SINGLE_OUTBOX))
                .arg(now)
                .arg(&hex)
                .arg(self.keys.prefix())
                .arg(self.event_outbox(SINGLE_OUTBOX))
                .arg(attempts)
                .arg("1");
            if let Some(t) = delivery.tally {
                inv.key(self.keys.fraud_counters(t.prefix.as_str()));
                CounterArgs::new(t.window_ms, now).push(&mut inv);
            }
            let got: Vec<String> = self.eval(inv).await?;
            return match got.split_first() {
                Some((_, [])) if delivery.tally.is_none() => Ok(None),
                // The script could not count (see delivered.lua): the
                // delivery is recorded, the fraud count is not.
                Some((_, [])) => Err(RedisStoreError::Corrupt(
                    "fraud counters unreadable; the delivery is recorded".to_owned(),
                )
                .into()),
                Some((_, counters)) if delivery.tally.is_some() => {
                    Ok(Some(parse_counters(counters)?))
                }
                _ => Err(RedisStoreError::Corrupt(format!(
                    "delivery reply of {} fields",
                    got.len()
                ))
                .into()),
            };
        }
        // Cluster: the index, the record's slot and the counters' slot are
        // three places, one step each.
        if let Some(tag) = self.locate(&hex).await? {
            let outbox = self.outbox_of(&tag);
            let mut inv = scripts::DELIVERED.key(self.keys.verification_in(&tag, &hex));
            inv.key(self.keys.due(outbox))
                .arg(now)
                .arg(&hex)
                .arg(self.keys.prefix())
                .arg(self.event_outbox(outbox))
                .arg(attempts)
                .arg("0");
            let got: Vec<String> = self.eval(inv).await?;
            if got.first().map(String::as_str) == Some("1") {
                self.mark(outbox, now).await?;
            }
        }
        match delivery.tally {
            Some(t) => Ok(Some(self.count(t.add(1, 0), now).await?)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl VerificationStore for RedisStore {
    async fn verification(&self, id: &VerificationId) -> Result<Option<Verification>, StoreError> {
        let hex = record::hex(id);
        let Some(tag) = self.locate(&hex).await? else {
            return Ok(None);
        };
        let key = self.keys.verification_in(&tag, &hex);
        let flat: Vec<String> =
            self.run(|mut conn| async move {
                redis::cmd("HGETALL").arg(key).query_async(&mut conn).await
            })
            .await?;
        Ok(record::verification_of(flat)?)
    }

    async fn latest_verification(&self, key: &str) -> Result<Option<Verification>, StoreError> {
        let mut inv = scripts::LATEST.key(self.keys.latest(key));
        inv.arg(self.keys.verification(key, ""));
        let flat: Vec<String> = self.eval(inv).await?;
        Ok(record::verification_of(flat)?)
    }

    async fn cancel_verification(
        &self,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        let hex = record::hex(id);
        let Some(tag) = self.locate(&hex).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        let outbox = self.outbox_of(&tag);
        let mut inv = scripts::CANCEL.key(self.keys.verification_in(&tag, &hex));
        inv.key(self.keys.code_in(&tag))
            .key(self.keys.due(outbox))
            .key(self.keys.pending(outbox))
            .arg(now)
            .arg(&hex)
            .arg(self.keys.prefix())
            .arg(&tag)
            .arg(self.event_outbox(outbox));
        let (status, flat): (i64, Vec<String>) = self.eval(inv).await?;
        if status != 0 {
            self.mark(outbox, now).await?;
        }
        let found = || {
            record::verification_of(flat.clone())?
                .ok_or_else(|| RedisStoreError::Corrupt("canceled an empty record".to_owned()))
        };
        Ok(match status {
            0 => CancelOutcome::NotFound,
            1 => CancelOutcome::Canceled(found()?),
            2 => CancelOutcome::AlreadyEnded(found()?),
            other => {
                return Err(RedisStoreError::Corrupt(format!("cancel status {other}")).into());
            }
        })
    }

    async fn report_delivery(
        &self,
        id: &VerificationId,
        update: &ReportUpdate,
        now: Timestamp,
    ) -> Result<ReportOutcome, StoreError> {
        let hex = record::hex(id);
        let Some(tag) = self.locate(&hex).await? else {
            return Ok(ReportOutcome::Unknown);
        };
        let key = self.keys.verification_in(&tag, &hex);
        let outbox = self.outbox_of(&tag);
        // Read, apply the rule, write if unchanged: a lost race reads
        // again and then sees the report as a replay.
        for _ in 0..REPORT_TRIES {
            let read = key.clone();
            let flat: Vec<String> = self
                .run(|mut conn| async move {
                    redis::cmd("HGETALL").arg(read).query_async(&mut conn).await
                })
                .await?;
            if flat.is_empty() {
                return Ok(ReportOutcome::Unknown);
            }
            let map = record::pairs(flat);
            let mut v = record::verification(&map)?;
            let had_sealed = v.sealed.is_some();
            let (outcome, _event) = v.reported(update, now);
            if !matches!(outcome, ReportOutcome::Recorded { .. }) {
                return Ok(outcome);
            }
            let mut inv = scripts::REPORT.key(&key);
            inv.key(self.keys.due(outbox))
                .arg(now)
                .arg(&hex)
                .arg(self.keys.prefix())
                .arg(self.event_outbox(outbox))
                .arg(map.get("dl").map_or("", String::as_str))
                .arg(record::attempts_json(&v.deliveries)?)
                .arg(if had_sealed && v.sealed.is_none() {
                    "1"
                } else {
                    "0"
                });
            let (written, status): (i64, String) = self.eval(inv).await?;
            if written == 1 {
                let outcome = match outcome {
                    // What the fallback reads: the status as it is now.
                    ReportOutcome::Recorded {
                        mut verification,
                        sealed,
                    } => {
                        if let Some(now_status) = Status::parse(&status) {
                            verification.status = now_status;
                        }
                        ReportOutcome::Recorded {
                            verification,
                            sealed,
                        }
                    }
                    other => other,
                };
                // Recorded: the caller must get the outcome (it may hold
                // the sealed code, which the store no longer has). The
                // schedule's periodic recheck finds the event if this
                // mark is lost.
                if let Err(e) = self.mark(outbox, now).await {
                    tracing::warn!(error = %e, "could not mark the outbox of a report's event; the recheck will find it");
                }
                return Ok(outcome);
            }
        }
        Err(RedisStoreError::Corrupt(format!(
            "the deliveries of {id} kept changing while a report was recorded"
        ))
        .into())
    }

    async fn sweep(&self, now: Timestamp, max: usize) -> Result<usize, StoreError> {
        let mut expired = 0usize;
        for outbox in self.busy_outboxes(now).await? {
            if expired >= max {
                break;
            }
            let mut inv = scripts::SWEEP.key(self.keys.pending(outbox));
            inv.key(self.keys.due(outbox))
                .arg(now)
                .arg(max - expired)
                .arg(self.keys.prefix())
                .arg(self.event_outbox(outbox));
            let (n, next): (usize, String) = self.eval(inv).await?;
            self.reschedule(outbox, &next, now).await?;
            expired += n;
        }
        Ok(expired)
    }
}

#[async_trait]
impl Outbox for RedisStore {
    async fn claim_events(
        &self,
        now: Timestamp,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        for outbox in self.busy_outboxes(now).await? {
            if out.len() >= max {
                break;
            }
            let mut inv = scripts::CLAIM_EVENTS.key(self.keys.due(outbox));
            inv.key(self.keys.pending(outbox))
                .arg(now)
                .arg(now.saturating_add(lease_ms))
                .arg(max - out.len())
                .arg(self.keys.event_prefix(outbox));
            let (claimed, next): (Vec<Vec<String>>, String) = self.eval(inv).await?;
            self.reschedule(outbox, &next, now).await?;
            let events = claimed
                .into_iter()
                .map(record::event)
                .collect::<Result<Vec<_>, _>>()?;
            self.remember_claims(outbox, &events);
            out.extend(events);
        }
        Ok(out)
    }

    async fn settle_event(&self, id: &str, settle: &EventSettle) -> Result<(), StoreError> {
        let Some(outbox) = self.outbox_of_event(id).await? else {
            return Err(RedisStoreError::Corrupt(format!(
                "event {id} of a verification no longer indexed"
            ))
            .into());
        };
        let mut inv = scripts::SETTLE_EVENT.key(self.keys.due(outbox));
        inv.key(format!("{}{id}", self.keys.event_prefix(outbox)))
            .arg(id);
        match settle {
            EventSettle::Done => {
                inv.arg("").arg("");
            }
            EventSettle::Retry { delivered, at } => {
                let sinks = serde_json::to_string(delivered)
                    .map_err(|e| RedisStoreError::Corrupt(format!("sink names as JSON: {e}")))?;
                inv.arg(*at).arg(sinks);
            }
        }
        let found: i64 = self.eval(inv).await?;
        if let (EventSettle::Retry { at, .. }, 1) = (settle, found) {
            self.mark(outbox, *at).await?;
        }
        Ok(())
    }
}

/// The `/v2` services, in one hash (a few records, read whole).
#[async_trait]
impl otp_domain::ports::ServiceStore for RedisStore {
    async fn put_service(&self, sid: &str, record: &[u8]) -> Result<(), StoreError> {
        let key = self.keys.services();
        self.run(|mut conn| async move {
            redis::cmd("HSET")
                .arg(key)
                .arg(sid)
                .arg(record)
                .query_async::<()>(&mut conn)
                .await
        })
        .await?;
        Ok(())
    }

    async fn service(&self, sid: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.keys.services();
        Ok(self
            .run(|mut conn| async move {
                redis::cmd("HGET")
                    .arg(key)
                    .arg(sid)
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
            })
            .await?)
    }

    async fn delete_service(&self, sid: &str) -> Result<bool, StoreError> {
        let key = self.keys.services();
        let removed: i64 = self
            .run(|mut conn| async move {
                redis::cmd("HDEL")
                    .arg(key)
                    .arg(sid)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(removed > 0)
    }

    async fn services(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let key = self.keys.services();
        let mut all: Vec<(String, Vec<u8>)> = self
            .run(|mut conn| async move {
                redis::cmd("HGETALL")
                    .arg(key)
                    .query_async::<Vec<(String, Vec<u8>)>>(&mut conn)
                    .await
            })
            .await?;
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }
}

#[async_trait]
impl IdempotencyStore for RedisStore {
    async fn idempotency_begin(
        &self,
        claim: IdempotencyClaim<'_>,
        now: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError> {
        let mut inv = scripts::IDEMPOTENCY_BEGIN.key(self.keys.idempotency(claim.key));
        inv.arg(now)
            .arg(otp_domain::hex::encode(claim.fingerprint))
            .arg(claim.lease_ms);
        let (status, response): (i64, Vec<u8>) = self.eval(inv).await?;
        Ok(match status {
            0 => IdempotencyBegin::Started,
            1 => IdempotencyBegin::InProgress,
            2 => IdempotencyBegin::Replay(response),
            3 => IdempotencyBegin::Mismatch,
            other => {
                return Err(RedisStoreError::Corrupt(format!("idempotency status {other}")).into());
            }
        })
    }

    async fn idempotency_end(
        &self,
        answer: IdempotencyAnswer<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut inv = scripts::IDEMPOTENCY_END.key(self.keys.idempotency(answer.key));
        inv.arg(now)
            .arg(otp_domain::hex::encode(answer.fingerprint))
            .arg(if answer.response.is_some() { "1" } else { "0" })
            .arg(answer.ttl_ms)
            .arg(answer.response.unwrap_or_default());
        let _ended: i64 = self.eval(inv).await?;
        Ok(())
    }
}

/// The fraud guard's ledger. Every key is in the `{fraud}` slot (see
/// `scripts/fraud.lua`), and the events go to that slot's outbox (the
/// single outbox on one Redis), written by the same script as the block
/// change.
#[async_trait]
impl FraudLedger for RedisStore {
    async fn count<'a>(&self, add: FraudCount<'a>, now: Timestamp) -> Result<Counters, StoreError> {
        let t = add.tally;
        let mut inv = scripts::FRAUD_COUNT.key(self.keys.fraud_counters(t.prefix.as_str()));
        let args = CounterArgs::new(t.window_ms, now);
        inv.arg(args.start)
            .arg(args.before)
            .arg(add.sends)
            .arg(add.approvals)
            .arg(args.ttl);
        let got: Vec<String> = self.eval(inv).await?;
        Ok(parse_counters(&got)?)
    }

    async fn block_of(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError> {
        let key = self.keys.fraud_block(prefix.as_str());
        let json: Option<String> = self
            .run(|mut conn| async move {
                redis::cmd("HGET")
                    .arg(key)
                    .arg("j")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        // An expired block stays until the sweep ends it; it blocks nothing.
        Ok(json
            .as_deref()
            .map(block_of_json)
            .transpose()?
            .filter(|b| b.until > now))
    }

    async fn block(&self, block: &Block, now: Timestamp) -> Result<bool, StoreError> {
        let outbox = self.outbox_of(keys::FRAUD_TAG);
        let prefix = block.prefix.as_str();
        let blocked = StoredEvent::fraud(block, false, now);
        let unblocked = StoredEvent::fraud(block, true, now);
        let mut inv = scripts::FRAUD_BLOCK.key(self.keys.fraud_block(prefix));
        inv.key(self.keys.fraud_blocks())
            .key(self.keys.due(outbox))
            .arg(now)
            .arg(prefix)
            .arg(block.until)
            .arg(block_json(block)?)
            .arg(&blocked.id)
            .arg(&unblocked.id)
            .arg(self.keys.event_prefix(outbox))
            .arg(blocked.kind.as_str())
            .arg(unblocked.kind.as_str());
        let stored: i64 = self.eval(inv).await?;
        if stored == 1 {
            self.mark(outbox, now).await?;
        }
        Ok(stored == 1)
    }

    async fn blocks(&self, now: Timestamp) -> Result<Vec<Block>, StoreError> {
        let mut inv = scripts::FRAUD_BLOCKS.key(self.keys.fraud_blocks());
        inv.arg(now).arg(self.keys.fraud_block_prefix());
        let found: Vec<String> = self.eval(inv).await?;
        let mut out = found
            .iter()
            .map(|j| block_of_json(j))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        Ok(out)
    }

    async fn unblock(&self, prefix: &Prefix, now: Timestamp) -> Result<Option<Block>, StoreError> {
        let outbox = self.outbox_of(keys::FRAUD_TAG);
        let mut inv = scripts::FRAUD_UNBLOCK.key(self.keys.fraud_block(prefix.as_str()));
        inv.key(self.keys.fraud_blocks())
            .key(self.keys.due(outbox))
            .key(self.keys.fraud_counters(prefix.as_str()))
            .arg(now)
            .arg(prefix.as_str())
            .arg(self.keys.event_prefix(outbox))
            .arg(EventType::PrefixUnblocked.as_str());
        let json: String = self.eval(inv).await?;
        if json.is_empty() {
            return Ok(None);
        }
        self.mark(outbox, now).await?;
        Ok(Some(block_of_json(&json)?))
    }

    async fn expire_blocks(&self, now: Timestamp, max: usize) -> Result<Vec<Block>, StoreError> {
        let outbox = self.outbox_of(keys::FRAUD_TAG);
        let mut inv = scripts::FRAUD_EXPIRE.key(self.keys.fraud_blocks());
        inv.key(self.keys.due(outbox))
            .arg(now)
            .arg(max)
            .arg(self.keys.fraud_block_prefix())
            .arg(self.keys.event_prefix(outbox))
            .arg(EventType::PrefixUnblocked.as_str());
        let ended: Vec<String> = self.eval(inv).await?;
        if !ended.is_empty() {
            self.mark(outbox, now).await?;
        }
        Ok(ended
            .iter()
            .map(|j| block_of_json(j))
            .collect::<Result<Vec<_>, _>>()?)
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("mode", &self.mode)
            .field("keys", &self.keys)
            .field("open_connections", &self.link.open())
            .field("deadline", &self.deadline)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_from(json: &str) -> Result<RedisConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn a_partial_config_takes_the_defaults_for_the_rest() {
        let config =
            config_from(r#"{"url": "redis://cache:6380", "pool_size": 4}"#).expect("valid config");
        assert_eq!(
            config,
            RedisConfig {
                url: "redis://cache:6380".to_owned(),
                pool_size: 4,
                ..RedisConfig::default()
            }
        );
    }

    #[test]
    fn a_misspelt_config_key_is_an_error() {
        let err = config_from(r#"{"uri": "redis://cache:6380"}"#).expect_err("unknown key");
        assert!(err.to_string().contains("uri"), "{err}");
    }

    #[test]
    fn construction_does_not_connect() {
        // Nothing listens on port 1; building the store must still work,
        // so otpd can start before Redis does.
        let config = RedisConfig {
            url: "redis://127.0.0.1:1".to_owned(),
            nodes: vec!["redis://127.0.0.1:1".to_owned()],
            ..RedisConfig::default()
        };
        RedisStore::standalone(&config).expect("standalone store");
        RedisStore::cluster(&config).expect("cluster store");
    }

    #[test]
    fn unusable_settings_are_refused_at_construction() {
        let bad = |config: RedisConfig| {
            let standalone = RedisStore::standalone(&config).map(|_| ());
            let cluster = RedisStore::cluster(&RedisConfig {
                nodes: vec![config.url.clone()],
                ..config
            })
            .map(|_| ());
            (standalone, cluster)
        };
        let (s, c) = bad(RedisConfig {
            url: "http://nope".to_owned(),
            ..RedisConfig::default()
        });
        assert!(matches!(s, Err(RedisStoreError::Url(_))), "{s:?}");
        assert!(matches!(c, Err(RedisStoreError::Url(_))), "{c:?}");
        let (s, c) = bad(RedisConfig {
            pool_size: 0,
            ..RedisConfig::default()
        });
        assert!(matches!(s, Err(RedisStoreError::Config(_))), "{s:?}");
        assert!(matches!(c, Err(RedisStoreError::Config(_))), "{c:?}");
        let (s, _) = bad(RedisConfig {
            key_prefix: "{otpd}".to_owned(),
            ..RedisConfig::default()
        });
        assert!(matches!(s, Err(RedisStoreError::Config(_))), "{s:?}");
        let no_nodes = RedisStore::cluster(&RedisConfig::default()).map(|_| ());
        assert!(
            matches!(no_nodes, Err(RedisStoreError::Config(_))),
            "{no_nodes:?}"
        );
    }
}
