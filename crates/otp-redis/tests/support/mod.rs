//! What the suites share: a store config for a test Redis, the clock,
//! a plain connection for reading what the crate wrote, and ids and
//! records. The harness in otp-testkit hands out URLs only, so it does
//! not depend on this crate.
// Each suite uses a part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use otp_domain::ports::{CodeRecord, CodeStore, PutOutcome};
use otp_domain::verification::{Status, Verification, VerificationId};
use otp_domain::{Channel, StoreError};
use otp_redis::RedisConfig;
use otp_testkit::redis::{RedisCluster, RedisServer};

/// A store config for a test Redis, with a key prefix the test picks.
pub trait StoreConfig {
    fn config(&self, key_prefix: &str) -> RedisConfig;
}

impl StoreConfig for RedisServer {
    fn config(&self, key_prefix: &str) -> RedisConfig {
        RedisConfig {
            url: self.url(),
            ..with_prefix(key_prefix)
        }
    }
}

impl StoreConfig for RedisCluster {
    fn config(&self, key_prefix: &str) -> RedisConfig {
        RedisConfig {
            nodes: self.node_urls(),
            ..with_prefix(key_prefix)
        }
    }
}

fn with_prefix(key_prefix: &str) -> RedisConfig {
    RedisConfig {
        key_prefix: key_prefix.to_owned(),
        ..RedisConfig::default()
    }
}

/// The wall clock in Unix milliseconds, as the store's callers pass `now`.
pub fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since.as_millis()).expect("millis fit in u64")
}

/// A plain connection to `server`, to read or change what the crate wrote.
pub async fn connection(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("plain connection")
}

/// Creates consumer group `group` on `stream` (making the stream), to
/// read the entries after `from` (`0`: all of them; `$`: the new ones).
pub async fn create_group(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
    from: &str,
) {
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(from)
        .arg("MKSTREAM")
        .query_async(conn)
        .await
        .expect("XGROUP CREATE");
}

/// Stores `record` under `key` as a send does, without buckets, with the
/// pending verification it makes.
pub async fn try_put<S: CodeStore + ?Sized>(
    store: &S,
    key: &str,
    record: CodeRecord,
    now: u64,
) -> Result<PutOutcome, StoreError> {
    store
        .put_code(key, record, &verification_for(key, &record, now), &[], now)
        .await
}

/// [`try_put`], which must reach the store.
pub async fn put<S: CodeStore + ?Sized>(
    store: &S,
    key: &str,
    record: CodeRecord,
    now: u64,
) -> PutOutcome {
    try_put(store, key, record, now).await.expect("put")
}

/// A verification id nobody else uses in this test process.
pub fn fresh_id() -> VerificationId {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(nanos as u64).to_be_bytes());
    bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    VerificationId::from_bytes(bytes)
}

/// The pending verification a send of `record` to `key` (`channel:address`)
/// stores, created at `now`.
pub fn verification_for(key: &str, record: &CodeRecord, now: u64) -> Verification {
    let (channel, address) = key.split_once(':').expect("a channel:address key");
    Verification {
        id: record.verification,
        channel: Channel::parse(channel).expect("a known channel"),
        destination: address.to_owned(),
        country: None,
        locale: None,
        status: Status::Pending,
        reason: None,
        created_at: now,
        expires_at: record.expires_at,
        attempts: 0,
        max_attempts: record.max_attempts,
        deliveries: Vec::new(),
        ended_at: None,
        retention_ms: 86_400_000,
        events: 0,
        sealed: None,
        service: None,
    }
}
