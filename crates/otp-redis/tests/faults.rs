//! Redis going away and coming back: calls fail fast with `Unavailable`
//! instead of hanging, the same store heals by itself, and an fsynced AOF
//! keeps codes across a crash.

use std::time::{Duration, Instant};

use otp_domain::ports::{CheckOutcome, CodeRecord, CodeStore, PutOutcome};
use otp_domain::{CodeDigest, StoreError};
use otp_redis::RedisStore;
use otp_testkit::redis::RedisServer;
use support::{now_ms, StoreConfig};

mod support;

fn record(byte: u8, now: u64) -> CodeRecord {
    CodeRecord {
        digest: CodeDigest::from_bytes([byte; 32]),
        expires_at: now + 60_000,
        attempts: 0,
        max_attempts: 5,
        verification: support::fresh_id(),
    }
}

/// A pending verification for a put whose record is not looked at.
fn pending(key: &str) -> otp_domain::verification::Verification {
    let now = now_ms();
    support::verification_for(key, &record(0, now), now)
}

/// Retries `put_code` until it succeeds, for up to 5 s.
async fn put_when_back(store: &RedisStore, key: &str, rec: CodeRecord) -> Duration {
    let started = Instant::now();
    loop {
        match support::try_put(store, key, rec, now_ms()).await {
            Ok(out) => {
                assert_eq!(out, PutOutcome::Stored);
                return started.elapsed();
            }
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(5),
                "the store did not recover within 5 s: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_while_redis_is_down_fails_fast_and_the_store_heals() {
    let mut server = RedisServer::start();
    let store = RedisStore::standalone(&server.config("otpd")).expect("store");
    let key = "sms:+77011234567";
    let rec = record(1, now_ms());
    // Warm the pool, so the outage meets open connections.
    support::put(&store, key, rec, now_ms()).await;
    store.ping().await.expect("ping");

    server.kill();
    for _ in 0..2 {
        let started = Instant::now();
        let got = store.check_code(key, &rec.digest, now_ms()).await;
        let took = started.elapsed();
        assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
        assert!(took < Duration::from_millis(2_500), "took {took:?}");
    }
    let started = Instant::now();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_millis(2_500));

    // Same port, empty data; the same store object, not a rebuilt one.
    server.restart();
    put_when_back(&store, key, rec).await;
    store.ping().await.expect("ping after restart");
    assert_eq!(
        store
            .check_code(key, &rec.digest, now_ms())
            .await
            .expect("check"),
        CheckOutcome::Approved
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_server_that_never_answers_gives_up_within_the_budget() {
    // A peer that accepts connections and never replies: the worst
    // case, where only timeouts end the wait.
    let port = otp_testkit::silent_port();
    let config = otp_redis::RedisConfig {
        url: format!("redis://127.0.0.1:{port}"),
        ..otp_redis::RedisConfig::default()
    };
    let store = RedisStore::standalone(&config).expect("store");
    let started = Instant::now();
    let got = store
        .check_code("sms:+1", &CodeDigest::from_bytes([1; 32]), now_ms())
        .await;
    let took = started.elapsed();
    assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
    assert!(took < Duration::from_millis(2_500), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_survives_a_redis_crash_with_an_fsynced_aof() {
    let mut server = RedisServer::start_with_aof();
    let store = RedisStore::standalone(&server.config("otpd")).expect("store");
    let key = "email:ann@example.kz";
    let now = now_ms();
    let rec = record(7, now);
    let put = support::put(&store, key, rec, now).await;
    assert_eq!(put, PutOutcome::Stored);

    // SIGKILL: no chance to flush anything not already fsynced.
    server.restart();
    let started = Instant::now();
    let got = loop {
        match store.check_code(key, &rec.digest, now_ms()).await {
            Ok(out) => break out,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(5),
                "the store did not recover within 5 s: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(got, CheckOutcome::Approved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_while_idle_readiness_holds_and_each_connection_fails_at_most_once() {
    // The default single connection, and several.
    for pool_size in [1, 3] {
        let mut server = RedisServer::start();
        let config = otp_redis::RedisConfig {
            pool_size,
            ..server.config("otpd")
        };
        let store = RedisStore::standalone(&config).expect("store");
        let key = "sms:+77011234567";
        // Open every connection.
        for _ in 0..2 * pool_size {
            store
                .put_code(key, record(1, now_ms()), &pending(key), &[], now_ms())
                .await
                .expect("put");
        }

        // Redis goes away and comes back while otpd sends nothing, so
        // every connection otpd holds is dead when it next uses it.
        server.restart();
        store.ping().await.expect("ready right after the restart");
        let mut failed = 0;
        for _ in 0..2 * pool_size {
            match store
                .put_code(key, record(2, now_ms()), &pending(key), &[], now_ms())
                .await
            {
                Ok(out) => assert_eq!(out, PutOutcome::Stored),
                Err(StoreError::Unavailable(_)) => failed += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        // The ping replaced one connection; each other one failed once.
        assert_eq!(failed, pool_size - 1, "with {pool_size} connections");
        for _ in 0..2 * pool_size {
            let out = store
                .put_code(key, record(3, now_ms()), &pending(key), &[], now_ms())
                .await
                .expect("every connection was replaced");
            assert_eq!(out, PutOutcome::Stored);
        }
    }
}
