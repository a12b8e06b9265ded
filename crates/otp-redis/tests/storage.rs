//! What the store leaves in Redis, and how stores sharing one Redis
//! behave: prefixes keep deployments apart, and two pools still approve a
//! code once.

use std::collections::HashMap;
use std::sync::Arc;

use otp_domain::ports::{
    CheckOutcome, CodeRecord, CodeStore, HitOutcome, PutOutcome, RateBucket, TakeOutcome,
};
use otp_domain::ports::{NewPairing, Outbox, Store};
use otp_domain::{ChatId, Code, CodeHasher, StoreError};
use otp_redis::RedisStore;
use otp_testkit::redis::RedisServer;
use redis::AsyncCommands;
use support::{connection, now_ms, StoreConfig};

mod support;

fn record(hasher: &CodeHasher, key: &str, code: &str, now: u64) -> CodeRecord {
    CodeRecord {
        digest: hasher.code(key, &Code::parse(code).expect("valid code")),
        expires_at: now + 60_000,
        attempts: 0,
        max_attempts: 5,
        verification: support::fresh_id(),
    }
}

#[tokio::test]
async fn redis_holds_the_digest_and_never_the_code() {
    let server = RedisServer::start();
    let store = RedisStore::standalone(&server.config("otpd")).expect("store");
    let hasher = CodeHasher::new(vec![9u8; 32]);
    let key = "sms:+77011234567";
    let now = now_ms();
    let rec = record(&hasher, key, "482913", now);
    let cooldown = RateBucket {
        key: format!("cooldown:{key}"),
        limit: 1,
        window_ms: 30_000,
    };
    let put = store
        .put_code(
            key,
            rec,
            &support::verification_for(key, &rec, now),
            &[cooldown],
            now,
        )
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Stored);

    let mut conn = connection(&server).await;
    let mut keys: Vec<String> = conn.keys("*").await.expect("KEYS");
    keys.sort();
    let hex = rec.verification.to_string()["vrf_".len()..].to_owned();
    let record_key = format!("otpd:{{sms:+77011234567}}:vrf:{hex}");
    let mut expected_keys = vec![
        "otpd:{outbox}:pending".to_owned(),
        "otpd:{sms:+77011234567}:bucket:cooldown:sms:+77011234567".to_owned(),
        "otpd:{sms:+77011234567}:code".to_owned(),
        "otpd:{sms:+77011234567}:latest".to_owned(),
        record_key.clone(),
        format!("otpd:vidx:{{{hex}}}"),
    ];
    expected_keys.sort();
    assert_eq!(keys, expected_keys);
    // The verification record is kept until its retention ends after its
    // expiry, and holds no code either.
    let record_ttl: i64 = conn.pttl(&record_key).await.expect("PTTL");
    assert!(
        (86_400_000..=86_460_000).contains(&record_ttl),
        "record TTL {record_ttl}"
    );
    let record_fields: HashMap<String, String> = conn.hgetall(&record_key).await.expect("HGETALL");
    assert_eq!(record_fields.get("s").map(String::as_str), Some("pending"));
    for value in record_fields.values() {
        assert!(!value.contains("482913"), "the code leaked: {value}");
    }

    let stored: HashMap<String, String> = conn
        .hgetall("otpd:{sms:+77011234567}:code")
        .await
        .expect("HGETALL");
    let expected: HashMap<String, String> = [
        ("d", rec.digest.to_hex()),
        ("e", rec.expires_at.to_string()),
        ("a", "0".to_owned()),
        ("m", "5".to_owned()),
        ("v", hex.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(stored, expected);
    let bucket: HashMap<String, String> = conn
        .hgetall("otpd:{sms:+77011234567}:bucket:cooldown:sms:+77011234567")
        .await
        .expect("HGETALL");
    assert_eq!(bucket.get("c").map(String::as_str), Some("1"));
    assert_eq!(bucket.get("s"), Some(&now.to_string()));
    for value in stored.values().chain(bucket.values()) {
        assert!(!value.contains("482913"), "the code leaked: {value}");
    }

    // Both keys expire on their own, no later than their records do.
    let code_ttl: i64 = conn
        .pttl("otpd:{sms:+77011234567}:code")
        .await
        .expect("PTTL");
    assert!((1..=60_000).contains(&code_ttl), "code TTL {code_ttl}");
    let bucket_ttl: i64 = conn
        .pttl("otpd:{sms:+77011234567}:bucket:cooldown:sms:+77011234567")
        .await
        .expect("PTTL");
    assert!(
        (1..=30_000).contains(&bucket_ttl),
        "bucket TTL {bucket_ttl}"
    );

    // A wrong guess counts an attempt and keeps the record's TTL.
    let wrong = hasher.code(key, &Code::parse("000000").expect("code"));
    let out = store.check_code(key, &wrong, now).await.expect("check");
    assert_eq!(out, CheckOutcome::Mismatch { attempts_left: 4 });
    let ttl_after: i64 = conn
        .pttl("otpd:{sms:+77011234567}:code")
        .await
        .expect("PTTL");
    assert!(ttl_after > 0, "the attempt dropped the TTL: {ttl_after}");
}

#[tokio::test]
async fn pairings_are_stored_by_digest_and_by_chat() {
    let server = RedisServer::start();
    let store = RedisStore::standalone(&server.config("otpd")).expect("store");
    let hasher = CodeHasher::new(vec![9u8; 32]);
    let digest = hasher.pairing(&Code::parse("K7QX2MPA").expect("code"));
    let chat = ChatId::from_i64(-1001234567890).expect("chat");
    let now = now_ms();
    store
        .put_pairing(
            NewPairing {
                chat,
                digest: &digest,
                expires_at: now + 600_000,
                buckets: &[],
            },
            now,
        )
        .await
        .expect("put_pairing");

    let mut conn = connection(&server).await;
    let pairing_key = format!("otpd:{{pairing}}:d:{}", digest.to_hex());
    let mut keys: Vec<String> = conn.keys("*").await.expect("KEYS");
    keys.sort();
    assert_eq!(
        keys,
        [
            "otpd:{pairing}:chat:-1001234567890".to_owned(),
            pairing_key.clone()
        ]
    );
    let stored: HashMap<String, String> = conn.hgetall(&pairing_key).await.expect("HGETALL");
    assert_eq!(stored.get("c").map(String::as_str), Some("-1001234567890"));
    let points_to: String = conn
        .get("otpd:{pairing}:chat:-1001234567890")
        .await
        .expect("GET");
    assert_eq!(points_to, pairing_key);

    let taken = store.take_pairing(&digest, None, now).await.expect("take");
    assert_eq!(taken, TakeOutcome::Found(chat));
    let left: Vec<String> = conn.keys("*").await.expect("KEYS");
    assert!(
        left.is_empty(),
        "a taken pairing left keys behind: {left:?}"
    );
}

#[tokio::test]
async fn unreadable_records_are_reported_as_corrupt() {
    let server = RedisServer::start();
    let store = RedisStore::standalone(&server.config("otpd")).expect("store");
    let mut conn = connection(&server).await;
    let digest = CodeHasher::new(vec![1u8; 32]).code("sms:+1", &Code::parse("1234").expect("code"));

    // A key of the wrong type.
    let () = conn.set("otpd:{sms:+1}:code", "x").await.expect("SET");
    let got = store.check_code("sms:+1", &digest, now_ms()).await;
    assert!(matches!(got, Err(StoreError::Corrupt(_))), "{got:?}");

    // A hash without the fields this store writes.
    let () = conn
        .hset("otpd:{sms:+2}:code", "d", "abc")
        .await
        .expect("HSET");
    let got = store.check_code("sms:+2", &digest, now_ms()).await;
    assert!(matches!(got, Err(StoreError::Corrupt(_))), "{got:?}");
}

#[tokio::test]
async fn stores_with_different_prefixes_do_not_see_each_other() {
    let server = RedisServer::start();
    let a = RedisStore::standalone(&server.config("tenant-a")).expect("store a");
    let b = RedisStore::standalone(&server.config("tenant-b")).expect("store b");
    let hasher = CodeHasher::new(vec![9u8; 32]);
    let key = "email:ann@example.kz";
    let now = now_ms();
    let rec = record(&hasher, key, "482913", now);
    let bucket = RateBucket {
        key: "user:ann".to_owned(),
        limit: 1,
        window_ms: 60_000,
    };

    assert_eq!(support::put(&a, key, rec, now).await, PutOutcome::Stored);
    assert_eq!(
        b.check_code(key, &rec.digest, now).await.expect("check"),
        CheckOutcome::NotFound
    );
    assert_eq!(
        a.hit_bucket(&bucket, now).await.expect("hit"),
        HitOutcome::Counted
    );
    assert_eq!(
        b.hit_bucket(&bucket, now).await.expect("hit"),
        HitOutcome::Counted
    );
    assert_eq!(
        a.check_code(key, &rec.digest, now).await.expect("check"),
        CheckOutcome::Approved
    );

    let mut conn = connection(&server).await;
    let keys: Vec<String> = conn.keys("*").await.expect("KEYS");
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(
            k.starts_with("tenant-a:") || k.starts_with("tenant-b:"),
            "{k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_racing_100_correct_checks_approve_exactly_one() {
    let server = RedisServer::start();
    let config = server.config("otpd");
    let stores: [Arc<dyn Store>; 2] = [
        Arc::new(RedisStore::standalone(&config).expect("store 1")),
        Arc::new(RedisStore::standalone(&config).expect("store 2")),
    ];
    let hasher = CodeHasher::new(vec![9u8; 32]);
    let key = "call:+77011234567";
    let now = now_ms();
    let rec = record(&hasher, key, "4829", now);
    support::put(&*stores[0], key, rec, now).await;

    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move { store.check_code(key, &rec.digest, now).await })
        })
        .collect();
    let mut approved = 0;
    for task in tasks {
        match task.await.expect("task").expect("check") {
            CheckOutcome::Approved => approved += 1,
            CheckOutcome::NotFound => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(approved, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_the_configured_connections_and_send_one_command_each() {
    let server = RedisServer::start();
    let config = server.config("otpd");
    let store = Arc::new(RedisStore::standalone(&config).expect("store"));
    let hasher = CodeHasher::new(vec![3u8; 32]);
    let now = now_ms();
    // Load the scripts first, so the counts below are of calls alone.
    let warm = record(&hasher, "sms:+1", "1111", now);
    support::put(&*store, "sms:+1", warm, now).await;
    store
        .check_code("sms:+1", &warm.digest, now)
        .await
        .expect("check");
    let mut conn = connection(&server).await;
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut conn)
        .await
        .expect("CONFIG RESETSTAT");

    let calls: Vec<_> = (0..200)
        .map(|i| {
            let store = Arc::clone(&store);
            let key = format!("sms:+7701{i:07}");
            let digest = hasher.code(&key, &Code::parse("123456").expect("code"));
            tokio::spawn(async move { store.check_code(&key, &digest, now).await })
        })
        .collect();
    for call in calls {
        let got = call.await.expect("task").expect("check");
        assert_eq!(got, CheckOutcome::NotFound);
    }

    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    let calls_of = |command: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    // One EVALSHA per call, and nothing else: no health check per call.
    assert_eq!(calls_of("evalsha"), 200, "{stats}");
    assert_eq!(calls_of("ping"), 0, "{stats}");
    assert_eq!(calls_of("unwatch"), 0, "{stats}");
    // The store's connections, and this test's own.
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .expect("CLIENT LIST");
    assert_eq!(clients.lines().count(), config.pool_size + 1, "{clients}");
}

#[tokio::test]
async fn a_code_stored_before_verifications_still_checks() {
    let server = RedisServer::start();
    let store = RedisStore::standalone(&server.config("otpd")).expect("store");
    let hasher = CodeHasher::new(vec![9u8; 32]);
    let key = "sms:+77011234568";
    let now = now_ms();
    let rec = record(&hasher, key, "123456", now);
    // The layout of the release before verifications: no `v`.
    let mut conn = connection(&server).await;
    let _: () = conn
        .hset_multiple(
            "otpd:{sms:+77011234568}:code",
            &[
                ("d", rec.digest.to_hex()),
                ("e", rec.expires_at.to_string()),
                ("a", "0".to_owned()),
                ("m", "2".to_owned()),
            ],
        )
        .await
        .expect("HSET");
    let wrong = hasher.code(key, &Code::parse("654321").expect("code"));
    assert_eq!(
        store.check_code(key, &wrong, now).await.expect("check"),
        CheckOutcome::Mismatch { attempts_left: 1 }
    );
    assert_eq!(
        store
            .check_code(key, &rec.digest, now)
            .await
            .expect("check"),
        CheckOutcome::Approved
    );
    assert!(store
        .claim_events(now, 1_000, 100)
        .await
        .expect("claim")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_redis_claim_disjoint_events() {
    let server = RedisServer::start();
    let a = Arc::new(RedisStore::standalone(&server.config("otpd")).expect("store"));
    let b = Arc::new(RedisStore::standalone(&server.config("otpd")).expect("store"));
    let hasher = CodeHasher::new(vec![9u8; 32]);
    let now = now_ms();
    let mut ids = Vec::new();
    for i in 0..40 {
        let key = format!("sms:+7701555{i:04}");
        let rec = record(&hasher, &key, "123456", now);
        let v = support::verification_for(&key, &rec, now);
        a.put_code(&key, rec, &v, &[], now).await.expect("put");
        a.delivered(&rec.verification, &[], now)
            .await
            .expect("delivered");
        ids.push(rec.verification);
    }
    let mut tasks = Vec::new();
    for store in [a, b] {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..20 {
                got.extend(store.claim_events(now, 60_000, 3).await.expect("claim"));
            }
            got
        }));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_store = Vec::new();
    for t in tasks {
        let got = t.await.expect("task");
        per_store.push(got.len());
        for e in got {
            *seen.entry(e.id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), ids.len(), "every event handed out");
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert_eq!(per_store.iter().sum::<usize>(), ids.len());
}

#[tokio::test]
async fn with_events_off_statuses_change_and_no_event_is_written() {
    let server = RedisServer::start();
    let store = RedisStore::standalone(&server.config("otpd"))
        .expect("store")
        .without_events();
    otp_domain::contract::without_events_statuses_change_and_no_event_is_written(&store).await;
    // Nothing in the outbox at all.
    let mut conn = connection(&server).await;
    let keys: Vec<String> = conn.keys("*:evt:*").await.expect("KEYS");
    assert!(keys.is_empty(), "{keys:?}");
}
