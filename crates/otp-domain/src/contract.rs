//! The store contract: one suite of behaviour that every [`CodeStore`]
//! must show. Each store crate calls [`run_all`] from its own tests,
//! against a real backend. Keys are unique per run, so a shared backend
//! (one Redis for several test processes) is fine.
//!
//! Time is passed into every port call, so expiry is tested by moving
//! `now`, never by sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::digest::CodeDigest;
use crate::ports::{
    CheckOutcome, CodeRecord, CodeStore, HitOutcome, PairingOutcome, PutOutcome, RateBucket,
    TakeOutcome,
};
use crate::types::ChatId;

const NOW: u64 = 1_800_000_000_000;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A key nobody else uses.
fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("contract:{name}:{nanos}:{n}")
}

fn digest(byte: u8) -> CodeDigest {
    CodeDigest::from_bytes([byte; 32])
}

/// A digest unique to this run, for pairings (which are keyed by digest).
fn unique_digest() -> CodeDigest {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [7u8; 32];
    bytes[..16].copy_from_slice(&nanos.to_be_bytes());
    bytes[16..24].copy_from_slice(&n.to_be_bytes());
    CodeDigest::from_bytes(bytes)
}

fn record(d: CodeDigest, max_attempts: u32) -> CodeRecord {
    CodeRecord {
        digest: d,
        expires_at: NOW + 60_000,
        attempts: 0,
        max_attempts,
    }
}

fn chat(n: i64) -> ChatId {
    match ChatId::from_i64(n) {
        Ok(c) => c,
        Err(e) => panic!("bad test chat id: {e}"),
    }
}

async fn put(
    store: &dyn CodeStore,
    key: &str,
    r: CodeRecord,
    b: &[RateBucket],
    now: u64,
) -> PutOutcome {
    match store.put_code(key, r, b, now).await {
        Ok(o) => o,
        Err(e) => panic!("put_code failed: {e:?}"),
    }
}

async fn check(store: &dyn CodeStore, key: &str, d: CodeDigest, now: u64) -> CheckOutcome {
    match store.check_code(key, &d, now).await {
        Ok(o) => o,
        Err(e) => panic!("check_code failed: {e:?}"),
    }
}

async fn take(store: &dyn CodeStore, d: &CodeDigest, now: u64) -> Option<ChatId> {
    match store.take_pairing(d, None, now).await {
        Ok(TakeOutcome::Found(chat)) => Some(chat),
        Ok(TakeOutcome::NotFound) => None,
        other => panic!("take_pairing without a bucket answered {other:?}"),
    }
}

/// Runs every contract test against `store`.
pub async fn run_all(store: Arc<dyn CodeStore>) {
    let s = store.as_ref();
    a_code_is_single_use(s).await;
    a_code_expires(s).await;
    a_new_send_replaces_the_old_code(s).await;
    wrong_checks_lock_the_code(s).await;
    buckets_limit_sends_and_refusals_change_nothing(s).await;
    discard_removes_only_the_same_code(s).await;
    pairing_is_traded_once_and_replaced_per_chat(s).await;
    pairing_digests_are_unique_among_active_pairings(s).await;
    a_chat_never_removes_a_pairing_another_chat_holds_now(s).await;
    failed_pairing_lookups_are_counted_and_limited(s).await;
    a_single_bucket_counts_until_full(s).await;
    concurrent_correct_checks_approve_exactly_once(store.clone()).await;
    ping_answers(s).await;
}

pub async fn a_code_is_single_use(s: &dyn CodeStore) {
    let key = unique("single");
    assert_eq!(
        put(s, &key, record(digest(1), 5), &[], NOW).await,
        PutOutcome::Stored
    );
    assert_eq!(
        check(s, &key, digest(1), NOW + 1).await,
        CheckOutcome::Approved
    );
    assert_eq!(
        check(s, &key, digest(1), NOW + 2).await,
        CheckOutcome::NotFound
    );
}

pub async fn a_code_expires(s: &dyn CodeStore) {
    let key = unique("expiry");
    put(s, &key, record(digest(1), 5), &[], NOW).await;
    assert_eq!(
        check(s, &key, digest(1), NOW + 60_000).await,
        CheckOutcome::NotFound
    );
    // An expired code stays dead.
    assert_eq!(
        check(s, &key, digest(1), NOW + 1).await,
        CheckOutcome::NotFound
    );
    assert_eq!(
        check(s, &unique("never"), digest(1), NOW).await,
        CheckOutcome::NotFound
    );
}

pub async fn a_new_send_replaces_the_old_code(s: &dyn CodeStore) {
    let key = unique("replace");
    put(s, &key, record(digest(1), 5), &[], NOW).await;
    // Lock up some attempts on the old code; the new one starts fresh.
    assert_eq!(
        check(s, &key, digest(9), NOW).await,
        CheckOutcome::Mismatch { attempts_left: 4 }
    );
    put(s, &key, record(digest(2), 5), &[], NOW).await;
    assert_eq!(
        check(s, &key, digest(1), NOW).await,
        CheckOutcome::Mismatch { attempts_left: 4 }
    );
    assert_eq!(check(s, &key, digest(2), NOW).await, CheckOutcome::Approved);
}

pub async fn wrong_checks_lock_the_code(s: &dyn CodeStore) {
    let key = unique("lock");
    put(s, &key, record(digest(1), 3), &[], NOW).await;
    for left in [2, 1, 0] {
        assert_eq!(
            check(s, &key, digest(2), NOW).await,
            CheckOutcome::Mismatch {
                attempts_left: left
            }
        );
    }
    assert_eq!(check(s, &key, digest(1), NOW).await, CheckOutcome::Locked);
    assert_eq!(check(s, &key, digest(2), NOW).await, CheckOutcome::Locked);
    // Locked until it expires, then simply gone.
    assert_eq!(
        check(s, &key, digest(1), NOW + 60_000).await,
        CheckOutcome::NotFound
    );
}

pub async fn buckets_limit_sends_and_refusals_change_nothing(s: &dyn CodeStore) {
    let key = unique("rate");
    let wide = RateBucket {
        key: unique("bucket-wide"),
        limit: 3,
        window_ms: 10_000,
    };
    let cooldown = RateBucket {
        key: unique("bucket-cooldown"),
        limit: 1,
        window_ms: 1_000,
    };
    let both = [wide.clone(), cooldown.clone()];
    assert_eq!(
        put(s, &key, record(digest(1), 5), &both, NOW).await,
        PutOutcome::Stored
    );
    assert_eq!(
        put(s, &key, record(digest(2), 5), &both, NOW + 400).await,
        PutOutcome::RateLimited {
            retry_after_ms: 600
        }
    );
    // The refused send neither replaced the code nor counted in `wide`.
    assert_eq!(
        check(s, &key, digest(1), NOW + 500).await,
        CheckOutcome::Approved
    );
    assert_eq!(
        put(s, &key, record(digest(3), 5), &both, NOW + 1_000).await,
        PutOutcome::Stored
    );
    assert_eq!(
        put(s, &key, record(digest(4), 5), &both, NOW + 2_000).await,
        PutOutcome::Stored
    );
    // Three hits in `wide` now: its window (from NOW) ends at NOW + 10 s.
    assert_eq!(
        put(s, &key, record(digest(5), 5), &both, NOW + 3_000).await,
        PutOutcome::RateLimited {
            retry_after_ms: 7_000
        }
    );
    assert_eq!(
        put(s, &key, record(digest(6), 5), &both, NOW + 10_000).await,
        PutOutcome::Stored
    );
}

pub async fn discard_removes_only_the_same_code(s: &dyn CodeStore) {
    let key = unique("discard");
    put(s, &key, record(digest(1), 5), &[], NOW).await;
    s.discard_code(&key, &digest(2)).await.expect("discard");
    assert_eq!(check(s, &key, digest(1), NOW).await, CheckOutcome::Approved);
    put(s, &key, record(digest(1), 5), &[], NOW).await;
    s.discard_code(&key, &digest(1)).await.expect("discard");
    assert_eq!(check(s, &key, digest(1), NOW).await, CheckOutcome::NotFound);
}

pub async fn pairing_is_traded_once_and_replaced_per_chat(s: &dyn CodeStore) {
    let (d1, d2, d3) = (unique_digest(), unique_digest(), unique_digest());
    let c = chat(4242);
    let put = |d: CodeDigest, exp: u64| async move {
        s.put_pairing(c, &d, exp, &[], NOW)
            .await
            .expect("put_pairing")
    };
    assert_eq!(put(d1, NOW + 1_000).await, PairingOutcome::Stored);
    assert_eq!(put(d2, NOW + 1_000).await, PairingOutcome::Stored);
    // The chat's newer pairing replaced the older one.
    assert_eq!(take(s, &d1, NOW).await, None);
    assert_eq!(take(s, &d2, NOW).await, Some(c));
    assert_eq!(take(s, &d2, NOW).await, None);
    // Expired pairings are gone.
    assert_eq!(put(d3, NOW + 1_000).await, PairingOutcome::Stored);
    assert_eq!(take(s, &d3, NOW + 1_000).await, None);
    // A discarded pairing cannot be taken.
    let d4 = unique_digest();
    assert_eq!(put(d4, NOW + 1_000).await, PairingOutcome::Stored);
    s.discard_pairing(&d4).await.expect("discard");
    assert_eq!(take(s, &d4, NOW).await, None);
    // Pairings count in buckets like sends.
    let b = [RateBucket {
        key: unique("pair-bucket"),
        limit: 1,
        window_ms: 1_000,
    }];
    let d5 = unique_digest();
    let first = s
        .put_pairing(c, &d5, NOW + 1_000, &b, NOW)
        .await
        .expect("put");
    assert_eq!(first, PairingOutcome::Stored);
    let second = s
        .put_pairing(c, &unique_digest(), NOW + 1_000, &b, NOW + 10)
        .await
        .expect("put");
    assert_eq!(
        second,
        PairingOutcome::RateLimited {
            retry_after_ms: 990
        }
    );
    assert_eq!(take(s, &d5, NOW).await, Some(c));
}

pub async fn pairing_digests_are_unique_among_active_pairings(s: &dyn CodeStore) {
    let d = unique_digest();
    let (a, b) = (chat(1001), chat(-1002));
    assert_eq!(
        s.put_pairing(a, &d, NOW + 1_000, &[], NOW)
            .await
            .expect("put"),
        PairingOutcome::Stored
    );
    assert_eq!(
        s.put_pairing(b, &d, NOW + 1_000, &[], NOW)
            .await
            .expect("put"),
        PairingOutcome::Collision
    );
    assert_eq!(take(s, &d, NOW).await, Some(a));
}

pub async fn a_chat_never_removes_a_pairing_another_chat_holds_now(s: &dyn CodeStore) {
    let (d, d2) = (unique_digest(), unique_digest());
    let (a, b) = (chat(7001), chat(7002));
    let put =
        |c, d, exp, now| async move { s.put_pairing(c, &d, exp, &[], now).await.expect("put") };
    assert_eq!(put(a, d, NOW + 1_000, NOW).await, PairingOutcome::Stored);
    // A's pairing expired; B happens to get the same digest.
    assert_eq!(
        put(b, d, NOW + 5_000, NOW + 2_000).await,
        PairingOutcome::Stored
    );
    // A pairs again: its old digest now belongs to B and must stay.
    assert_eq!(
        put(a, d2, NOW + 5_000, NOW + 2_100).await,
        PairingOutcome::Stored
    );
    assert_eq!(take(s, &d, NOW + 2_200).await, Some(b));
    assert_eq!(take(s, &d2, NOW + 2_200).await, Some(a));
}

pub async fn failed_pairing_lookups_are_counted_and_limited(s: &dyn CodeStore) {
    let bucket = RateBucket {
        key: unique("lookup-failures"),
        limit: 2,
        window_ms: 1_000,
    };
    let d = unique_digest();
    let c = chat(31337);
    assert_eq!(
        s.put_pairing(c, &d, NOW + 60_000, &[], NOW)
            .await
            .expect("put"),
        PairingOutcome::Stored
    );
    for _ in 0..2 {
        let miss = s
            .take_pairing(&unique_digest(), Some(&bucket), NOW)
            .await
            .expect("take");
        assert_eq!(miss, TakeOutcome::NotFound);
    }
    // Two failures filled the bucket: even the right code is not looked up.
    let limited = s
        .take_pairing(&d, Some(&bucket), NOW + 100)
        .await
        .expect("take");
    assert_eq!(
        limited,
        TakeOutcome::RateLimited {
            retry_after_ms: 900
        }
    );
    // A success does not count; after the window the code still works.
    let found = s
        .take_pairing(&d, Some(&bucket), NOW + 1_000)
        .await
        .expect("take");
    assert_eq!(found, TakeOutcome::Found(c));
    let after_window = s
        .take_pairing(&unique_digest(), Some(&bucket), NOW + 1_001)
        .await;
    assert_eq!(after_window.expect("take"), TakeOutcome::NotFound);
}

pub async fn a_single_bucket_counts_until_full(s: &dyn CodeStore) {
    let b = RateBucket {
        key: unique("single-bucket"),
        limit: 2,
        window_ms: 1_000,
    };
    assert_eq!(
        s.hit_bucket(&b, NOW).await.expect("hit"),
        HitOutcome::Counted
    );
    assert_eq!(
        s.hit_bucket(&b, NOW + 10).await.expect("hit"),
        HitOutcome::Counted
    );
    assert_eq!(
        s.hit_bucket(&b, NOW + 250).await.expect("hit"),
        HitOutcome::Full {
            retry_after_ms: 750
        }
    );
    assert_eq!(
        s.hit_bucket(&b, NOW + 1_000).await.expect("hit"),
        HitOutcome::Counted
    );
}

pub async fn concurrent_correct_checks_approve_exactly_once(store: Arc<dyn CodeStore>) {
    let key = unique("race");
    put(store.as_ref(), &key, record(digest(1), 5), &[], NOW).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (store, key) = (store.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            store
                .check_code(&key, &digest(1), NOW)
                .await
                .expect("check")
        }));
    }
    let mut approved = 0;
    for t in tasks {
        match t.await.expect("task") {
            CheckOutcome::Approved => approved += 1,
            CheckOutcome::NotFound => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(approved, 1);
}

pub async fn ping_answers(s: &dyn CodeStore) {
    s.ping().await.expect("ping");
}
