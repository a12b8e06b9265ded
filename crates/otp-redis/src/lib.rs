//! The Redis [`CodeStore`] of otpd, for several otpd instances sharing one
//! store: standalone Redis or Redis Cluster, over a few shared connections
//! that pipeline concurrent calls (one round trip per operation).
//!
//! Every rule of the port that reads and then writes is one Lua script,
//! so it runs atomically inside Redis however many instances call it. The
//! scripts decide with the `now` the caller passes, never Redis time, so
//! tests can move time; instances sharing a Redis therefore need NTP, as a
//! clock running ahead ends cooldowns and windows early.
//! Every key also gets a TTL that ends with its record, so nothing needs
//! a sweeper.
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
//!   `m` (max attempts). Never the code itself.
//! - `otpd:{sms:+77011234567}:bucket:<bucket key>`: a send rate bucket, a
//!   hash of `s` (window start) and `c` (hits).
//! - `otpd:{pairing}:d:<hex digest>`: a Telegram pairing, a hash of `c`
//!   (chat id) and `e` (expires_at).
//! - `otpd:{pairing}:chat:<chat id>`: the name of the chat's pairing key.
//! - `otpd:{pairing}:bucket:<bucket key>`: a pairing rate bucket, or the
//!   bucket of failed pairing lookups.
//! - `otpd:bucket:{<bucket key>}`: a bucket that spans destinations (per
//!   end user, per channel, a webhook update), hit on its own by
//!   `hit_bucket`, so these spread over the cluster.
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
mod scripts;

use std::sync::Arc;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::ports::{
    CheckOutcome, CodeRecord, CodeStore, HitOutcome, PairingOutcome, PutOutcome, RateBucket,
    TakeOutcome, Timestamp,
};
use otp_domain::verification::{
    CancelOutcome, DeliveryAttempt, EventSettle, IdempotencyBegin, StoredEvent, Verification,
    VerificationId,
};
use otp_domain::{ChatId, CodeDigest, StoreError};
use redis::cluster::ClusterClient;
use redis::{AsyncConnectionConfig, Client, FromRedisValue};

pub use config::RedisConfig;
pub use error::RedisStoreError;
pub use queue::{QueueConfig, RedisQueueSender};

use keys::Keys;
use link::{Conn, Connector, Link};

/// A [`CodeStore`] on Redis. Cheap to clone: clones share the
/// connections.
#[derive(Clone)]
pub struct RedisStore {
    link: Arc<Link>,
    mode: &'static str,
    keys: Keys,
    deadline: Duration,
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
            keys,
            deadline: config.call_deadline(),
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
            keys,
            deadline: config.call_deadline(),
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

#[async_trait]
impl CodeStore for RedisStore {
    async fn put_code(
        &self,
        key: &str,
        record: CodeRecord,
        _verification: &Verification,
        buckets: &[RateBucket],
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError> {
        let mut inv = scripts::PUT_CODE.key(self.keys.code(key));
        for b in buckets {
            inv.key(self.keys.code_bucket(key, &b.key));
        }
        inv.arg(now)
            .arg(record.digest.to_hex())
            .arg(record.expires_at)
            .arg(record.attempts)
            .arg(record.max_attempts);
        bucket_args(&mut inv, buckets);
        let wait: i64 = self.eval(inv).await?;
        if wait == 0 {
            return Ok(PutOutcome::Stored);
        }
        Ok(PutOutcome::RateLimited {
            retry_after_ms: wait_ms(wait)?,
        })
    }

    async fn discard_code<'a>(
        &self,
        key: &str,
        digest: &CodeDigest,
        _failure: Option<&'a [DeliveryAttempt]>,
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut inv = scripts::DISCARD_CODE.key(self.keys.code(key));
        inv.arg(digest.to_hex());
        let _removed: i64 = self.eval(inv).await?;
        Ok(())
    }

    async fn check_code(
        &self,
        key: &str,
        digest: &CodeDigest,
        now: Timestamp,
    ) -> Result<CheckOutcome, StoreError> {
        let mut inv = scripts::CHECK_CODE.key(self.keys.code(key));
        inv.arg(now).arg(digest.to_hex());
        let (status, left): (i64, i64) = self.eval(inv).await?;
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
        let mut inv = scripts::PUT_PAIRING.key(self.keys.pairing(digest));
        inv.key(self.keys.pairing_chat(chat));
        for b in buckets {
            inv.key(self.keys.pairing_bucket(&b.key));
        }
        inv.arg(now).arg(chat.get()).arg(expires_at);
        bucket_args(&mut inv, buckets);
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
