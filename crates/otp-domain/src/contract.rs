//! The store contract: one suite of behaviour that every [`Store`] (all
//! the store ports at once) must show. Each store crate calls [`run_all`] from its own tests,
//! against a real backend. Keys are unique per run, so a shared backend
//! (one Redis for several test processes) is fine.
//!
//! Time is passed into every port call, so expiry is tested by moving
//! `now`, never by sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::digest::{CodeDigest, CodeHasher, SealedCode};
use crate::ports::{
    CheckOutcome, CodeCheck, CodeDiscard, CodeRecord, Delivery, FraudTally, HitOutcome,
    IdempotencyAnswer, IdempotencyClaim, NewPairing, PairingOutcome, PutOutcome, RateBucket,
    SendLimits, StagedSend, Store, TakeOutcome,
};
use crate::types::{Channel, ChatId, Code, Destination};
use crate::verification::{
    AttemptOutcome, CancelOutcome, CancelReason, DeliveryAttempt, DeliveryReport, EventSettle,
    EventType, IdempotencyBegin, ReportOutcome, ReportUpdate, Status, StoredEvent, Verification,
    VerificationId,
};

const NOW: u64 = 1_800_000_000_000;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A key nobody else uses.
fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // A real destination key (see `Destination::key`), as the service
    // writes them: a verification names its code by it.
    format!("email:{name}.{nanos}.{n}@contract.example")
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
        verification: fresh_id(),
    }
}

/// A verification id nobody else uses.
fn fresh_id() -> VerificationId {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(nanos as u64).to_be_bytes());
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    bytes[0] ^= 0x5a;
    VerificationId::from_bytes(bytes)
}

/// The pending verification a send of `record` to `key` stores.
fn verification_of(key: &str, record: &CodeRecord, created_at: u64) -> Verification {
    let address = key.split_once(':').map_or(key, |(_, a)| a);
    let destination = Destination::parse(Channel::Email, address)
        .unwrap_or_else(|e| panic!("contract keys are email destinations: {e}"));
    let mut v = Verification::new(
        record.verification,
        &destination,
        created_at,
        record.expires_at,
        record.max_attempts,
        86_400_000,
    );
    // Every store keeps the locale its message went out in.
    v.locale = Some("pt-BR".to_owned());
    v
}

fn chat(n: i64) -> ChatId {
    match ChatId::from_i64(n) {
        Ok(c) => c,
        Err(e) => panic!("bad test chat id: {e}"),
    }
}

async fn put(
    store: &dyn Store,
    key: &str,
    r: CodeRecord,
    b: &[RateBucket],
    now: u64,
) -> PutOutcome {
    match store
        .put_code(key, r, &verification_of(key, &r, now), b, now)
        .await
    {
        Ok(o) => o,
        Err(e) => panic!("put_code failed: {e:?}"),
    }
}

async fn check(store: &dyn Store, key: &str, d: CodeDigest, now: u64) -> CheckOutcome {
    match store.check_code(key, &d, now).await {
        Ok(o) => o,
        Err(e) => panic!("check_code failed: {e:?}"),
    }
}

async fn take(store: &dyn Store, d: &CodeDigest, now: u64) -> Option<ChatId> {
    match store.take_pairing(d, None, now).await {
        Ok(TakeOutcome::Found(chat)) => Some(chat),
        Ok(TakeOutcome::NotFound) => None,
        other => panic!("take_pairing without a bucket answered {other:?}"),
    }
}

/// Runs every contract test against `store`.
pub async fn run_all(store: Arc<dyn Store>) {
    let s = store.as_ref();
    a_code_is_single_use(s).await;
    a_code_expires(s).await;
    a_new_send_replaces_the_old_code(s).await;
    wrong_checks_lock_the_code(s).await;
    buckets_limit_sends_and_refusals_change_nothing(s).await;
    shared_buckets_are_charged_after_the_own_ones_and_refuse_without_a_code(s).await;
    discard_removes_only_the_same_code(s).await;
    pairing_is_traded_once_and_replaced_per_chat(s).await;
    pairing_digests_are_unique_among_active_pairings(s).await;
    a_chat_never_removes_a_pairing_another_chat_holds_now(s).await;
    failed_pairing_lookups_are_counted_and_limited(s).await;
    a_single_bucket_counts_until_full(s).await;
    concurrent_correct_checks_approve_exactly_once(store.clone()).await;
    ping_answers(s).await;
    a_send_records_a_pending_verification(s).await;
    approval_ends_the_verification_with_one_event(s).await;
    the_last_wrong_check_ends_it_as_max_attempts_reached(s).await;
    a_replacing_send_cancels_the_old_verification(s).await;
    a_failed_delivery_ends_it_as_failed(s).await;
    a_verification_is_canceled_once_and_its_code_dies(s).await;
    a_check_of_an_expired_code_ends_it_as_expired(s).await;
    concurrent_sweeps_expire_each_verification_once(store.clone()).await;
    claimed_events_are_leased_retried_and_settled(s).await;
    concurrent_claims_hand_each_event_out_once(store.clone()).await;
    idempotency_keys_start_once_and_replay(s).await;
    delivery_reports_are_recorded_once_and_take_the_sealed_code(s).await;
    the_sealed_code_lives_only_in_the_record_and_only_while_of_use(s).await;
    concurrent_replays_of_a_report_record_it_once(store.clone()).await;
    a_resend_counts_its_limits_and_keeps_the_live_code(s).await;
    a_service_s_verification_keeps_its_sealed_code_while_pending(s).await;
    a_service_s_send_finds_its_pending_verification_and_changes_nothing(s).await;
    a_scoped_check_touches_only_the_code_it_names(s).await;
}

pub async fn a_code_is_single_use(s: &dyn Store) {
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

pub async fn a_code_expires(s: &dyn Store) {
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

pub async fn a_new_send_replaces_the_old_code(s: &dyn Store) {
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

pub async fn wrong_checks_lock_the_code(s: &dyn Store) {
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

pub async fn buckets_limit_sends_and_refusals_change_nothing(s: &dyn Store) {
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

fn bucket(name: &str, limit: u32) -> RateBucket {
    RateBucket {
        key: unique(name),
        limit,
        window_ms: 60_000,
    }
}

async fn stage(
    s: &dyn Store,
    key: &str,
    r: CodeRecord,
    limits: &SendLimits,
    now: u64,
) -> PutOutcome {
    let verification = verification_of(key, &r, now);
    let send = StagedSend {
        key,
        record: r,
        verification: &verification,
        limits,
    };
    match s.stage_send(send, now).await {
        Ok(o) => o,
        Err(e) => panic!("stage_send failed: {e:?}"),
    }
}

async fn hit(s: &dyn Store, b: &RateBucket, now: u64) -> HitOutcome {
    s.hit_bucket(b, now).await.expect("hit_bucket")
}

/// Nothing checkable and nothing pending under `key`, and no record of
/// the refused send `r`.
async fn nothing_left(s: &dyn Store, key: &str, r: &CodeRecord, now: u64) {
    assert_eq!(check(s, key, r.digest, now).await, CheckOutcome::NotFound);
    assert_eq!(s.verification(&r.verification).await.expect("get"), None);
    let latest = s.latest_verification(key).await.expect("latest");
    assert!(
        latest
            .as_ref()
            .is_none_or(|v| v.id != r.verification && !v.is_pending()),
        "{latest:?}"
    );
}

pub async fn shared_buckets_are_charged_after_the_own_ones_and_refuse_without_a_code(
    s: &dyn Store,
) {
    let (user, channel) = (bucket("user", 2), bucket("channel", 1));
    let limits = |own: &RateBucket| SendLimits {
        blocked: None,
        own: vec![own.clone()],
        shared: vec![user.clone(), channel.clone()],
        resend: false,
        reuse: None,
    };
    let (first, second) = (unique("shared-a"), unique("shared-b"));
    let own_a = bucket("own-a", 1);
    let own_b = bucket("own-b", 5);
    let r = record(digest(1), 5);
    assert_eq!(
        stage(s, &first, r, &limits(&own_a), NOW).await,
        PutOutcome::Stored
    );
    assert_eq!(
        check(s, &first, digest(1), NOW + 1).await,
        CheckOutcome::Approved
    );

    // `channel` (limit 1) is full now: a send to another destination is
    // refused by it, naming it, and leaves nothing behind.
    let r = record(digest(2), 5);
    assert!(matches!(
        stage(s, &second, r, &limits(&own_b), NOW + 2).await,
        PutOutcome::SharedLimited { index: 1, retry_after_ms } if retry_after_ms > 0
    ));
    nothing_left(s, &second, &r, NOW + 3).await;
    // The buckets before the full one were charged: `user` (limit 2) has
    // both hits and is full.
    assert!(matches!(
        hit(s, &user, NOW + 4).await,
        HitOutcome::Full { .. }
    ));

    // A refusal by the destination's own bucket charges no shared bucket.
    let fresh = bucket("fresh", 1);
    let r = record(digest(3), 5);
    let own_full = SendLimits {
        blocked: None,
        own: vec![own_a.clone()],
        shared: vec![fresh.clone()],
        resend: false,
        reuse: None,
    };
    assert!(matches!(
        stage(s, &first, r, &own_full, NOW + 5).await,
        PutOutcome::RateLimited { .. }
    ));
    nothing_left(s, &first, &r, NOW + 6).await;
    assert_eq!(hit(s, &fresh, NOW + 7).await, HitOutcome::Counted);

    // A send whose delivery then failed leaves nothing checkable and no
    // pending verification either.
    let third = unique("shared-c");
    let r = record(digest(4), 5);
    let open = SendLimits {
        blocked: None,
        own: vec![bucket("own-c", 1)],
        shared: vec![bucket("open", 10)],
        resend: false,
        reuse: None,
    };
    assert_eq!(stage(s, &third, r, &open, NOW).await, PutOutcome::Stored);
    let failed = DeliveryAttempt {
        provider: "contract".into(),
        outcome: AttemptOutcome::Failed,
        at: NOW + 1,
        error: Some("HTTP 503".into()),
        message_id: None,
        report: None,
    };
    let discard = CodeDiscard {
        key: &third,
        digest: &digest(4),
        failure: Some(std::slice::from_ref(&failed)),
    };
    s.discard_code(discard, NOW + 1).await.expect("discard");
    assert_eq!(
        check(s, &third, digest(4), NOW + 2).await,
        CheckOutcome::NotFound
    );
    assert_eq!(get(s, &r.verification).await.status, Status::Failed);

    // A refused resend leaves the destination's earlier code as it was:
    // still checkable, its verification still pending and the latest.
    let fourth = unique("shared-d");
    let gate = bucket("gate", 1);
    let gated = SendLimits {
        blocked: None,
        own: vec![bucket("own-d", 5)],
        shared: vec![gate.clone()],
        resend: false,
        reuse: None,
    };
    let earlier = record(digest(5), 5);
    assert_eq!(
        stage(s, &fourth, earlier, &gated, NOW).await,
        PutOutcome::Stored
    );
    let resend = record(digest(6), 5);
    assert!(matches!(
        stage(s, &fourth, resend, &gated, NOW + 1).await,
        PutOutcome::SharedLimited { index: 0, .. }
    ));
    let v = get(s, &earlier.verification).await;
    assert!(v.is_pending(), "{v:?}");
    assert_eq!(
        s.latest_verification(&fourth)
            .await
            .expect("latest")
            .map(|v| v.id),
        Some(earlier.verification)
    );
    assert_eq!(
        check(s, &fourth, digest(5), NOW + 2).await,
        CheckOutcome::Approved
    );
}

pub async fn discard_removes_only_the_same_code(s: &dyn Store) {
    let key = unique("discard");
    put(s, &key, record(digest(1), 5), &[], NOW).await;
    s.discard_code(refused(&key, &digest(2)), NOW)
        .await
        .expect("discard");
    assert_eq!(check(s, &key, digest(1), NOW).await, CheckOutcome::Approved);
    put(s, &key, record(digest(1), 5), &[], NOW).await;
    s.discard_code(refused(&key, &digest(1)), NOW)
        .await
        .expect("discard");
    assert_eq!(check(s, &key, digest(1), NOW).await, CheckOutcome::NotFound);
}

/// The code under `key` with `digest`, discarded after a limit refused
/// its send.
fn refused<'a>(key: &'a str, digest: &'a CodeDigest) -> CodeDiscard<'a> {
    CodeDiscard {
        key,
        digest,
        failure: None,
    }
}

/// A pairing of `chat` to `digest` until `expires_at`, with no bucket.
fn pairing(chat: ChatId, digest: &CodeDigest, expires_at: u64) -> NewPairing<'_> {
    NewPairing {
        chat,
        digest,
        expires_at,
        buckets: &[],
    }
}

pub async fn pairing_is_traded_once_and_replaced_per_chat(s: &dyn Store) {
    let (d1, d2, d3) = (unique_digest(), unique_digest(), unique_digest());
    let c = chat(4242);
    let put = |d: CodeDigest, exp: u64| async move {
        s.put_pairing(pairing(c, &d, exp), NOW)
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
        .put_pairing(
            NewPairing {
                buckets: &b,
                ..pairing(c, &d5, NOW + 1_000)
            },
            NOW,
        )
        .await
        .expect("put");
    assert_eq!(first, PairingOutcome::Stored);
    let second = s
        .put_pairing(
            NewPairing {
                buckets: &b,
                ..pairing(c, &unique_digest(), NOW + 1_000)
            },
            NOW + 10,
        )
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

pub async fn pairing_digests_are_unique_among_active_pairings(s: &dyn Store) {
    let d = unique_digest();
    let (a, b) = (chat(1001), chat(-1002));
    assert_eq!(
        s.put_pairing(pairing(a, &d, NOW + 1_000), NOW)
            .await
            .expect("put"),
        PairingOutcome::Stored
    );
    assert_eq!(
        s.put_pairing(pairing(b, &d, NOW + 1_000), NOW)
            .await
            .expect("put"),
        PairingOutcome::Collision
    );
    assert_eq!(take(s, &d, NOW).await, Some(a));
}

pub async fn a_chat_never_removes_a_pairing_another_chat_holds_now(s: &dyn Store) {
    let (d, d2) = (unique_digest(), unique_digest());
    let (a, b) = (chat(7001), chat(7002));
    let put =
        |c, d, exp, now| async move { s.put_pairing(pairing(c, &d, exp), now).await.expect("put") };
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

pub async fn failed_pairing_lookups_are_counted_and_limited(s: &dyn Store) {
    let bucket = RateBucket {
        key: unique("lookup-failures"),
        limit: 2,
        window_ms: 1_000,
    };
    let d = unique_digest();
    let c = chat(31337);
    assert_eq!(
        s.put_pairing(pairing(c, &d, NOW + 60_000), NOW)
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

pub async fn a_single_bucket_counts_until_full(s: &dyn Store) {
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

pub async fn concurrent_correct_checks_approve_exactly_once(store: Arc<dyn Store>) {
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

pub async fn ping_answers(s: &dyn Store) {
    s.ping().await.expect("ping");
}

// ---- verifications and events ------------------------------------------

/// Puts a fresh code under a fresh key and returns the key, its record and
/// verification id.
async fn send(s: &dyn Store, name: &str, max_attempts: u32, now: u64) -> (String, CodeRecord) {
    let key = unique(name);
    let r = record(digest(1), max_attempts);
    assert_eq!(put(s, &key, r, &[], now).await, PutOutcome::Stored);
    (key, r)
}

async fn get(s: &dyn Store, id: &VerificationId) -> Verification {
    match s.verification(id).await {
        Ok(Some(v)) => v,
        other => panic!("verification {id} is not there: {other:?}"),
    }
}

fn delivered_attempt(at: u64) -> DeliveryAttempt {
    DeliveryAttempt::new("contract", AttemptOutcome::Delivered, at)
}

/// Every outbox event of verification `id` that is due at `now`, leasing
/// them for 1 ms only, so that other tests on a shared backend barely
/// notice.
async fn events_of(s: &dyn Store, id: &VerificationId, now: u64) -> Vec<StoredEvent> {
    let all = s.claim_events(now, 1, 100_000).await.expect("claim_events");
    let mut ours: Vec<StoredEvent> = all
        .into_iter()
        .filter(|e| e.verification().is_some_and(|v| v.id == *id))
        .collect();
    ours.sort_by_key(|e| e.id.rsplit('_').next().and_then(|n| n.parse::<u32>().ok()));
    ours
}

fn kinds(events: &[StoredEvent]) -> Vec<EventType> {
    events.iter().map(|e| e.kind).collect()
}

pub async fn a_send_records_a_pending_verification(s: &dyn Store) {
    let (key, r) = send(s, "vrf-pending", 5, NOW).await;
    let id = r.verification;
    let v = get(s, &id).await;
    assert_eq!(v.status, Status::Pending);
    assert_eq!(v.expires_at, r.expires_at);
    assert_eq!(v.created_at, NOW);
    assert_eq!(v.code_key(), key);
    let latest = s.latest_verification(&key).await.expect("latest");
    assert_eq!(latest.map(|v| v.id), Some(id));
    // No event before the delivery.
    assert!(events_of(s, &id, NOW + 10).await.is_empty());
    s.delivered(&id, &[delivered_attempt(NOW + 5)], NOW + 5)
        .await
        .expect("delivered");
    let events = events_of(s, &id, NOW + 10).await;
    assert_eq!(kinds(&events), [EventType::Pending]);
    assert_eq!(
        events[0].verification().map(|v| v.deliveries.clone()),
        Some(vec![delivered_attempt(NOW + 5)])
    );
    assert_eq!(events[0].time, NOW + 5);
    assert_eq!(get(s, &id).await.deliveries, [delivered_attempt(NOW + 5)]);
    assert_eq!(
        s.latest_verification(&unique("vrf-none"))
            .await
            .expect("latest"),
        None
    );
    assert_eq!(s.verification(&fresh_id()).await.expect("get"), None);
}

pub async fn approval_ends_the_verification_with_one_event(s: &dyn Store) {
    let (key, r) = send(s, "vrf-approve", 5, NOW).await;
    let id = r.verification;
    assert_eq!(
        check(s, &key, digest(2), NOW + 1).await,
        CheckOutcome::Mismatch { attempts_left: 4 }
    );
    assert_eq!(get(s, &id).await.attempts, 1);
    assert_eq!(
        check(s, &key, digest(1), NOW + 2).await,
        CheckOutcome::Approved
    );
    let v = get(s, &id).await;
    assert_eq!(
        (v.status, v.ended_at, v.attempts),
        (Status::Approved, Some(NOW + 2), 1)
    );
    assert_eq!(
        check(s, &key, digest(1), NOW + 3).await,
        CheckOutcome::NotFound
    );
    let events = events_of(s, &id, NOW + 10).await;
    assert_eq!(kinds(&events), [EventType::Approved]);
    assert_eq!(
        events[0].verification().map(|v| v.status),
        Some(Status::Approved)
    );
}

pub async fn the_last_wrong_check_ends_it_as_max_attempts_reached(s: &dyn Store) {
    let (key, r) = send(s, "vrf-max", 2, NOW).await;
    let id = r.verification;
    check(s, &key, digest(2), NOW + 1).await;
    assert_eq!(get(s, &id).await.status, Status::Pending);
    assert_eq!(
        check(s, &key, digest(2), NOW + 2).await,
        CheckOutcome::Mismatch { attempts_left: 0 }
    );
    assert_eq!(
        check(s, &key, digest(1), NOW + 3).await,
        CheckOutcome::Locked
    );
    let v = get(s, &id).await;
    assert_eq!(
        (v.status, v.attempts, v.ended_at),
        (Status::MaxAttemptsReached, 2, Some(NOW + 2))
    );
    assert_eq!(
        kinds(&events_of(s, &id, NOW + 10).await),
        [EventType::MaxAttemptsReached]
    );
}

pub async fn a_replacing_send_cancels_the_old_verification(s: &dyn Store) {
    let (key, first) = send(s, "vrf-replace", 5, NOW).await;
    let second = record(digest(2), 5);
    assert_eq!(put(s, &key, second, &[], NOW + 1).await, PutOutcome::Stored);
    let old = get(s, &first.verification).await;
    assert_eq!(
        (old.status, old.reason, old.ended_at),
        (
            Status::Canceled,
            Some(CancelReason::Replaced),
            Some(NOW + 1)
        )
    );
    assert_eq!(get(s, &second.verification).await.status, Status::Pending);
    let latest = s.latest_verification(&key).await.expect("latest");
    assert_eq!(latest.map(|v| v.id), Some(second.verification));
    assert_eq!(
        kinds(&events_of(s, &first.verification, NOW + 10).await),
        [EventType::Canceled]
    );
    // An approved code replaced later: its verification stays approved.
    assert_eq!(
        check(s, &key, digest(2), NOW + 2).await,
        CheckOutcome::Approved
    );
    put(s, &key, record(digest(3), 5), &[], NOW + 3).await;
    assert_eq!(get(s, &second.verification).await.status, Status::Approved);
}

pub async fn a_failed_delivery_ends_it_as_failed(s: &dyn Store) {
    let (key, r) = send(s, "vrf-failed", 5, NOW).await;
    let id = r.verification;
    let attempt = DeliveryAttempt {
        provider: "contract".into(),
        outcome: AttemptOutcome::Failed,
        at: NOW + 1,
        error: Some("HTTP 503".into()),
        message_id: None,
        report: None,
    };
    let discard = CodeDiscard {
        key: &key,
        digest: &digest(1),
        failure: Some(std::slice::from_ref(&attempt)),
    };
    s.discard_code(discard, NOW + 1).await.expect("discard");
    assert_eq!(
        check(s, &key, digest(1), NOW + 2).await,
        CheckOutcome::NotFound
    );
    let v = get(s, &id).await;
    assert_eq!((v.status, v.ended_at), (Status::Failed, Some(NOW + 1)));
    assert_eq!(v.deliveries, [attempt]);
    assert_eq!(
        kinds(&events_of(s, &id, NOW + 10).await),
        [EventType::DeliveryFailed, EventType::Failed]
    );
    // A send that a limit refused after its code was stored never existed.
    let (key, r) = send(s, "vrf-refused", 5, NOW).await;
    s.discard_code(refused(&key, &digest(1)), NOW + 1)
        .await
        .expect("discard");
    assert_eq!(s.verification(&r.verification).await.expect("get"), None);
    assert!(events_of(s, &r.verification, NOW + 10).await.is_empty());
}

pub async fn a_verification_is_canceled_once_and_its_code_dies(s: &dyn Store) {
    let (key, r) = send(s, "vrf-cancel", 5, NOW).await;
    let id = r.verification;
    let canceled = match s.cancel_verification(&id, NOW + 1).await.expect("cancel") {
        CancelOutcome::Canceled(v) => v,
        other => panic!("expected Canceled, got {other:?}"),
    };
    assert_eq!(
        (canceled.status, canceled.reason, canceled.ended_at),
        (Status::Canceled, Some(CancelReason::Api), Some(NOW + 1))
    );
    assert_eq!(
        check(s, &key, digest(1), NOW + 2).await,
        CheckOutcome::NotFound
    );
    match s.cancel_verification(&id, NOW + 3).await.expect("cancel") {
        CancelOutcome::AlreadyEnded(v) => assert_eq!(v.status, Status::Canceled),
        other => panic!("expected AlreadyEnded, got {other:?}"),
    }
    assert_eq!(
        s.cancel_verification(&fresh_id(), NOW)
            .await
            .expect("cancel"),
        CancelOutcome::NotFound
    );
    assert_eq!(
        kinds(&events_of(s, &id, NOW + 10).await),
        [EventType::Canceled]
    );
    // Past its expiry, a pending verification ends as expired instead.
    let (_, r) = send(s, "vrf-cancel-late", 5, NOW).await;
    match s
        .cancel_verification(&r.verification, r.expires_at)
        .await
        .expect("cancel")
    {
        CancelOutcome::AlreadyEnded(v) => assert_eq!(v.status, Status::Expired),
        other => panic!("expected AlreadyEnded, got {other:?}"),
    }
    assert_eq!(
        kinds(&events_of(s, &r.verification, r.expires_at + 10).await),
        [EventType::Expired]
    );
}

pub async fn a_check_of_an_expired_code_ends_it_as_expired(s: &dyn Store) {
    // Times before every other contract test's, so that a sweep here
    // touches no other test's verifications on a shared backend.
    let t0 = NOW - 5_000_000;
    let (key, r) = send_at(s, "vrf-expired-check", t0).await;
    assert_eq!(
        check(s, &key, digest(1), r.expires_at).await,
        CheckOutcome::NotFound
    );
    let v = get(s, &r.verification).await;
    assert_eq!(
        (v.status, v.ended_at),
        (Status::Expired, Some(r.expires_at))
    );
    // A sweep later writes no second event.
    s.sweep(r.expires_at + 1, 100_000).await.expect("sweep");
    assert_eq!(
        kinds(&events_of(s, &r.verification, r.expires_at + 10).await),
        [EventType::Expired]
    );
}

/// A send at `t0` whose code lives 1 s.
async fn send_at(s: &dyn Store, name: &str, t0: u64) -> (String, CodeRecord) {
    let key = unique(name);
    let r = CodeRecord {
        expires_at: t0 + 1_000,
        ..record(digest(1), 5)
    };
    assert_eq!(put(s, &key, r, &[], t0).await, PutOutcome::Stored);
    (key, r)
}

pub async fn concurrent_sweeps_expire_each_verification_once(store: Arc<dyn Store>) {
    let t0 = NOW - 4_000_000;
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(send_at(store.as_ref(), &format!("vrf-sweep{i}"), t0).await);
    }
    // One of them was approved before it ran out: never expired.
    let (approved_key, approved) = sent.pop().expect("twenty");
    assert_eq!(
        check(store.as_ref(), &approved_key, digest(1), t0 + 10).await,
        CheckOutcome::Approved
    );
    // Not due yet: nothing of ours expires.
    store.sweep(t0 + 999, 100_000).await.expect("sweep");
    for (_, r) in &sent {
        assert_eq!(
            get(store.as_ref(), &r.verification).await.status,
            Status::Pending
        );
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.sweep(t0 + 1_000, 100_000).await.expect("sweep")
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // One claim for all of them: a claim leases what it hands out.
    let events = store
        .claim_events(t0 + 2_000, 1, 100_000)
        .await
        .expect("claim_events");
    for (key, r) in &sent {
        let v = get(store.as_ref(), &r.verification).await;
        assert_eq!((v.status, v.ended_at), (Status::Expired, Some(t0 + 1_000)));
        let ours: Vec<StoredEvent> = events
            .iter()
            .filter(|e| e.verification().is_some_and(|v| v.id == r.verification))
            .cloned()
            .collect();
        assert_eq!(kinds(&ours), [EventType::Expired]);
        // Its code is gone too.
        assert_eq!(
            check(store.as_ref(), key, digest(1), t0 + 500).await,
            CheckOutcome::NotFound
        );
    }
    assert_eq!(
        get(store.as_ref(), &approved.verification).await.status,
        Status::Approved
    );
}

pub async fn claimed_events_are_leased_retried_and_settled(s: &dyn Store) {
    let (_, r) = send(s, "vrf-lease", 5, NOW).await;
    let id = r.verification;
    s.delivered(&id, &[], NOW).await.expect("delivered");
    let claim = |now: u64, lease: u64| async move {
        s.claim_events(now, lease, 100_000)
            .await
            .expect("claim")
            .into_iter()
            .filter(|e| e.verification().is_some_and(|v| v.id == id))
            .collect::<Vec<_>>()
    };
    let first = claim(NOW + 100, 10_000).await;
    assert_eq!(kinds(&first), [EventType::Pending]);
    assert_eq!((first[0].tries, first[0].delivered.len()), (0, 0));
    // Leased: not handed out again until the lease ends.
    assert!(claim(NOW + 200, 10_000).await.is_empty());
    assert_eq!(claim(NOW + 10_100, 10_000).await.len(), 1);
    let event_id = first[0].id.clone();
    s.settle_event(
        &event_id,
        &EventSettle::Retry {
            at: NOW + 50_000,
            delivered: vec!["hook-a".into()],
        },
    )
    .await
    .expect("settle");
    assert!(claim(NOW + 49_999, 10_000).await.is_empty());
    let again = claim(NOW + 50_000, 10_000).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, event_id);
    assert_eq!(again[0].tries, 1);
    assert_eq!(again[0].delivered, ["hook-a".to_owned()]);
    s.settle_event(&event_id, &EventSettle::Done)
        .await
        .expect("settle");
    assert!(claim(NOW + 1_000_000, 10_000).await.is_empty());
}

pub async fn concurrent_claims_hand_each_event_out_once(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..30 {
        let (_, r) = send(store.as_ref(), &format!("vrf-claims{i}"), 5, NOW).await;
        store
            .delivered(&r.verification, &[], NOW)
            .await
            .expect("delivered");
        ids.push(r.verification);
    }
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..10 {
                got.extend(
                    store
                        .claim_events(NOW + 100, 60_000, 7)
                        .await
                        .expect("claim"),
                );
            }
            got
        }));
    }
    let mut seen = std::collections::HashMap::new();
    for t in tasks {
        for e in t.await.expect("task") {
            if let Some(v) = e.verification() {
                *seen.entry(v.id).or_insert(0) += 1;
            }
        }
    }
    for id in &ids {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "event of {id} handed out {:?} times",
            seen.get(id)
        );
    }
}

/// A start under `key` held for 30 s.
fn claim<'a>(key: &'a str, fingerprint: &'a [u8; 32]) -> IdempotencyClaim<'a> {
    IdempotencyClaim {
        key,
        fingerprint,
        lease_ms: 30_000,
    }
}

/// An end under `key`, its response kept for 60 s.
fn answer<'a>(
    key: &'a str,
    fingerprint: &'a [u8; 32],
    response: Option<&'a [u8]>,
) -> IdempotencyAnswer<'a> {
    IdempotencyAnswer {
        key,
        fingerprint,
        response,
        ttl_ms: 60_000,
    }
}

pub async fn idempotency_keys_start_once_and_replay(s: &dyn Store) {
    let key = unique("idem");
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let begin = |fp: [u8; 32], now: u64| {
        let key = key.clone();
        async move {
            s.idempotency_begin(claim(&key, &fp), now)
                .await
                .expect("begin")
        }
    };
    assert_eq!(begin(a, NOW).await, IdempotencyBegin::Started);
    assert_eq!(begin(a, NOW + 1).await, IdempotencyBegin::InProgress);
    assert_eq!(begin(b, NOW + 1).await, IdempotencyBegin::Mismatch);
    // Another fingerprint cannot end it.
    s.idempotency_end(answer(&key, &b, Some(b"nope")), NOW + 2)
        .await
        .expect("end");
    s.idempotency_end(answer(&key, &a, Some(b"{\"ok\":1}")), NOW + 2)
        .await
        .expect("end");
    assert_eq!(
        begin(a, NOW + 3).await,
        IdempotencyBegin::Replay(b"{\"ok\":1}".to_vec())
    );
    assert_eq!(begin(b, NOW + 3).await, IdempotencyBegin::Mismatch);
    // A request that ended without a response frees its key.
    let key2 = unique("idem-free");
    assert_eq!(
        s.idempotency_begin(claim(&key2, &a), NOW)
            .await
            .expect("begin"),
        IdempotencyBegin::Started
    );
    s.idempotency_end(answer(&key2, &a, None), NOW + 1)
        .await
        .expect("end");
    assert_eq!(
        s.idempotency_begin(claim(&key2, &b), NOW + 2)
            .await
            .expect("begin"),
        IdempotencyBegin::Started
    );
    // A start whose request never ended frees its key after the lease.
    assert_eq!(
        s.idempotency_begin(claim(&key2, &a), NOW + 30_002)
            .await
            .expect("begin"),
        IdempotencyBegin::Started
    );
}

// ---- the fraud guard's ledger ------------------------------------------

/// A prefix nobody else uses: 15 digits from the clock and the counter.
fn unique_prefix() -> crate::fraud::Prefix {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let digits = format!("9{:09}{:05}", nanos % 1_000_000_000, n % 100_000);
    crate::fraud::Prefix::parse(&digits).unwrap_or_else(|| panic!("bad prefix {digits}"))
}

fn block_of(prefix: &crate::fraud::Prefix, since: u64, until: u64) -> crate::fraud::Block {
    crate::fraud::Block {
        prefix: prefix.clone(),
        country: Some("KZ".into()),
        since,
        until,
        sends: 50.0,
        approvals: 1.0,
        mode: crate::fraud::FraudMode::Block,
    }
}

/// The fraud events of `prefix` due at `now` (leased for 1 ms).
async fn fraud_events(s: &dyn Store, prefix: &crate::fraud::Prefix, now: u64) -> Vec<StoredEvent> {
    s.claim_events(now, 1, 100_000)
        .await
        .expect("claim_events")
        .into_iter()
        .filter(
            |e| matches!(&e.data, crate::verification::EventData::Block(b) if b.prefix == *prefix),
        )
        .collect()
}

/// Runs every fraud-ledger contract test against `store`, which must be
/// both the code store (its outbox carries the fraud events) and the
/// ledger.
pub async fn run_fraud<S>(store: Arc<S>)
where
    S: Store + 'static,
{
    counters_add_up_in_a_sliding_window(store.as_ref()).await;
    a_blocked_prefix_refuses_the_first_step_and_changes_nothing(store.as_ref()).await;
    the_fraud_tally_rides_with_the_delivery_and_the_approval(store.as_ref()).await;
    a_prefix_is_blocked_once_with_one_event(store.clone()).await;
    unblock_lifts_a_block_at_once_with_its_event(store.as_ref()).await;
    concurrent_expiries_end_each_block_once(store.clone()).await;
    an_ended_block_is_dated_when_it_ended(store.as_ref()).await;
}

pub async fn a_blocked_prefix_refuses_the_first_step_and_changes_nothing(s: &dyn Store) {
    let p = unique_prefix();
    let key = unique("blocked");
    let own = bucket("blocked-own", 1);
    let limits = SendLimits {
        blocked: Some(p.clone()),
        own: vec![own.clone()],
        shared: Vec::new(),
        resend: false,
        reuse: None,
    };
    assert!(s
        .block(&block_of(&p, NOW, NOW + 60_000), NOW)
        .await
        .expect("block"));
    let r = record(digest(1), 5);
    assert_eq!(
        stage(s, &key, r, &limits, NOW + 1).await,
        PutOutcome::FraudBlocked
    );
    nothing_left(s, &key, &r, NOW + 2).await;
    assert_eq!(
        hit(s, &own, NOW + 3).await,
        HitOutcome::Counted,
        "nothing was charged"
    );

    // A monitor-mode block refuses nothing, nor does an ended one.
    let q = unique_prefix();
    let mut observed = block_of(&q, NOW, NOW + 60_000);
    observed.mode = crate::fraud::FraudMode::Monitor;
    assert!(s.block(&observed, NOW).await.expect("block"));
    let observing = SendLimits {
        blocked: Some(q),
        ..SendLimits::default()
    };
    assert_eq!(
        stage(
            s,
            &unique("observed"),
            record(digest(2), 5),
            &observing,
            NOW + 1
        )
        .await,
        PutOutcome::Stored
    );
    let limits = SendLimits {
        blocked: Some(p),
        ..SendLimits::default()
    };
    assert_eq!(
        stage(
            s,
            &unique("after-block"),
            record(digest(3), 5),
            &limits,
            NOW + 60_000
        )
        .await,
        PutOutcome::Stored
    );
}

pub async fn the_fraud_tally_rides_with_the_delivery_and_the_approval(s: &dyn Store) {
    let p = unique_prefix();
    let w = 60_000;
    let tally = FraudTally {
        prefix: p.clone(),
        window_ms: w,
    };
    let key = unique("tally");
    let r = record(digest(1), 5);
    assert_eq!(put(s, &key, r, &[], NOW).await, PutOutcome::Stored);
    let delivery = Delivery {
        id: &r.verification,
        attempts: &[delivered_attempt(NOW + 1)],
        tally: Some(&tally),
    };
    let counted = s
        .record_delivery(delivery, NOW + 1)
        .await
        .expect("record_delivery");
    assert_eq!(counted.map(|c| (c.sends, c.approvals)), Some((1, 0)));
    assert_eq!(get(s, &r.verification).await.deliveries.len(), 1);
    assert_eq!(
        s.record_delivery(
            Delivery {
                attempts: &[],
                tally: None,
                ..delivery
            },
            NOW + 1
        )
        .await
        .expect("record_delivery"),
        None,
        "no tally, no counters"
    );
    // A wrong check counts no approval; the approving one does.
    let wrong = s
        .check_tallied(&key, &digest(2), Some(&tally), NOW + 2)
        .await
        .expect("check");
    assert_eq!(wrong, CheckOutcome::Mismatch { attempts_left: 4 });
    let right = s
        .check_tallied(&key, &digest(1), Some(&tally), NOW + 3)
        .await
        .expect("check");
    assert_eq!(right, CheckOutcome::Approved);
    let gone = s
        .check_tallied(&key, &digest(1), Some(&tally), NOW + 4)
        .await
        .expect("check");
    assert_eq!(gone, CheckOutcome::NotFound);
    let c = s.count(tally.add(0, 0), NOW + 5).await.expect("count");
    assert_eq!((c.sends, c.approvals), (1, 1));
}

pub async fn counters_add_up_in_a_sliding_window<S: crate::ports::FraudLedger + ?Sized>(s: &S) {
    let p = unique_prefix();
    let w = 60_000;
    let t = NOW - NOW % w;
    let tally = FraudTally {
        prefix: p,
        window_ms: w,
    };
    s.count(tally.add(3, 0), t + 10).await.expect("count");
    let c = s.count(tally.add(0, 1), t + 20).await.expect("count");
    assert_eq!((c.sends, c.approvals, c.window_start), (3, 1, t));
    // The next window starts from zero and remembers the last one.
    let c = s.count(tally.add(1, 0), t + w + 5).await.expect("count");
    assert_eq!((c.sends, c.prev_sends, c.prev_approvals), (1, 3, 1));
    let conversion = c.conversion(t + w + w / 2, w);
    assert!((conversion.sends - 2.5).abs() < 1e-9, "{conversion:?}");
    // Prefixes count apart.
    let other = FraudTally {
        prefix: unique_prefix(),
        window_ms: w,
    };
    let other = s.count(other.add(1, 0), t + 10).await.expect("count");
    assert_eq!(other.sends, 1);
}

pub async fn a_prefix_is_blocked_once_with_one_event<S>(store: Arc<S>)
where
    S: Store + 'static,
{
    let p = unique_prefix();
    let block = block_of(&p, NOW, NOW + 60_000);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, block) = (store.clone(), block.clone());
        tasks.push(tokio::spawn(async move {
            store.block(&block, NOW).await.expect("block")
        }));
    }
    let mut stored = 0;
    for t in tasks {
        if t.await.expect("task") {
            stored += 1;
        }
    }
    assert_eq!(stored, 1, "exactly one of several instances blocks");
    assert_eq!(
        store.block_of(&p, NOW + 1).await.expect("block_of"),
        Some(block.clone())
    );
    assert_eq!(
        store.block_of(&p, NOW + 60_000).await.expect("block_of"),
        None
    );
    assert!(store
        .blocks(NOW + 1)
        .await
        .expect("blocks")
        .iter()
        .any(|b| b.prefix == p));
    let events = fraud_events(store.as_ref(), &p, NOW + 10).await;
    assert_eq!(kinds(&events), [EventType::PrefixBlocked]);
}

pub async fn unblock_lifts_a_block_at_once_with_its_event<S>(s: &S)
where
    S: Store,
{
    let p = unique_prefix();
    assert!(s
        .block(&block_of(&p, NOW, NOW + 60_000), NOW)
        .await
        .expect("block"));
    let lifted = s.unblock(&p, NOW + 5).await.expect("unblock");
    assert_eq!(lifted.map(|b| b.prefix), Some(p.clone()));
    assert_eq!(s.block_of(&p, NOW + 6).await.expect("block_of"), None);
    assert_eq!(s.unblock(&p, NOW + 7).await.expect("unblock"), None);
    // The prefix starts afresh: its counters are gone.
    let tally = FraudTally {
        prefix: p.clone(),
        window_ms: 60_000,
    };
    let fresh = s.count(tally.add(0, 0), NOW + 7).await.expect("count");
    assert_eq!((fresh.sends, fresh.prev_sends), (0, 0));
    // A new block of the same prefix is possible at once.
    assert!(s
        .block(&block_of(&p, NOW + 8, NOW + 60_000), NOW + 8)
        .await
        .expect("block"));
    let events = fraud_events(s, &p, NOW + 10).await;
    let mut kinds = kinds(&events);
    kinds.sort_by_key(|k| k.as_str());
    assert_eq!(
        kinds,
        [
            EventType::PrefixBlocked,
            EventType::PrefixBlocked,
            EventType::PrefixUnblocked
        ]
    );
}

pub async fn concurrent_expiries_end_each_block_once<S>(store: Arc<S>)
where
    S: Store + 'static,
{
    // Times before every other fraud test's, so these sweeps end none of
    // theirs on a shared backend.
    let t0 = NOW - 3_000_000;
    let prefixes: Vec<_> = (0..5).map(|_| unique_prefix()).collect();
    for p in &prefixes {
        assert!(store
            .block(&block_of(p, t0, t0 + 1_000), t0)
            .await
            .expect("block"));
    }
    assert!(store
        .expire_blocks(t0 + 999, 1_000)
        .await
        .expect("expire")
        .iter()
        .all(|b| !prefixes.contains(&b.prefix)));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .expire_blocks(t0 + 1_000, 1_000)
                .await
                .expect("expire")
        }));
    }
    let mut ended = Vec::new();
    for t in tasks {
        ended.extend(t.await.expect("task"));
    }
    for p in &prefixes {
        assert_eq!(
            ended.iter().filter(|b| b.prefix == *p).count(),
            1,
            "{p} ended once"
        );
        assert_eq!(store.block_of(p, t0 + 500).await.expect("block_of"), None);
    }
    let events = store
        .claim_events(t0 + 2_000, 1, 100_000)
        .await
        .expect("claim_events");
    for p in &prefixes {
        let unblocked = events
            .iter()
            .filter(|e| e.kind == EventType::PrefixUnblocked)
            .filter(
                |e| matches!(&e.data, crate::verification::EventData::Block(b) if b.prefix == *p),
            )
            .count();
        assert_eq!(unblocked, 1, "one unblocked event for {p}");
    }
}

/// A block's end is dated when it ended: an expired block at its `until`,
/// whether a late sweep or the prefix's next block ends it (so a reader
/// ordering by time sees the end before the next block); a lifted one
/// at the lift.
pub async fn an_ended_block_is_dated_when_it_ended<S>(s: &S)
where
    S: Store,
{
    // After the concurrent expiries' times (their blocks are ended) and
    // before every other fraud test's, so the sweep below ends none of
    // theirs on a shared backend.
    let t = NOW - 2_000_000;
    let (swept, reblocked, lifted) = (unique_prefix(), unique_prefix(), unique_prefix());
    for p in [&swept, &reblocked] {
        assert!(s.block(&block_of(p, t, t + 1_000), t).await.expect("block"));
    }
    assert!(s
        .block(&block_of(&lifted, t, t + 60_000), t)
        .await
        .expect("block"));
    // The next block comes 2 s after the first one expired, the sweep 3 s.
    assert!(s
        .block(&block_of(&reblocked, t + 3_000, t + 60_000), t + 3_000)
        .await
        .expect("block"));
    let ended = s.expire_blocks(t + 4_000, 1_000).await.expect("expire");
    assert!(ended.iter().any(|b| b.prefix == swept), "{ended:?}");
    assert!(ended
        .iter()
        .all(|b| b.prefix != reblocked && b.prefix != lifted));
    assert!(s
        .unblock(&lifted, t + 5_000)
        .await
        .expect("unblock")
        .is_some());
    // Each read claims every due event for 1 ms: the next reads later.
    let dated = |events: Vec<StoredEvent>| {
        let mut out: Vec<(u64, EventType)> = events.iter().map(|e| (e.time, e.kind)).collect();
        out.sort_by_key(|(time, _)| *time);
        out
    };
    assert_eq!(
        dated(fraud_events(s, &swept, t + 6_000).await),
        [
            (t, EventType::PrefixBlocked),
            (t + 1_000, EventType::PrefixUnblocked)
        ]
    );
    assert_eq!(
        dated(fraud_events(s, &reblocked, t + 7_000).await),
        [
            (t, EventType::PrefixBlocked),
            (t + 1_000, EventType::PrefixUnblocked),
            (t + 3_000, EventType::PrefixBlocked)
        ]
    );
    assert_eq!(
        dated(fraud_events(s, &lifted, t + 8_000).await),
        [
            (t, EventType::PrefixBlocked),
            (t + 5_000, EventType::PrefixUnblocked)
        ]
    );
}

/// For a store made with events off (no sink configured): statuses
/// change as ever, and no verification event is written.
pub async fn without_events_statuses_change_and_no_event_is_written(s: &dyn Store) {
    let (key, r) = send(s, "vrf-quiet", 2, NOW).await;
    let id = r.verification;
    s.delivered(&id, &[delivered_attempt(NOW + 1)], NOW + 1)
        .await
        .expect("delivered");
    assert_eq!(
        check(s, &key, digest(1), NOW + 2).await,
        CheckOutcome::Approved
    );
    let v = get(s, &id).await;
    assert_eq!((v.status, v.deliveries.len()), (Status::Approved, 1));
    let (_, other) = send(s, "vrf-quiet-cancel", 2, NOW).await;
    assert!(matches!(
        s.cancel_verification(&other.verification, NOW + 3)
            .await
            .expect("cancel"),
        CancelOutcome::Canceled(_)
    ));
    for id in [id, other.verification] {
        assert!(events_of(s, &id, NOW + 10).await.is_empty(), "{id}");
    }
}

// ---- delivery reports ----------------------------------------------------

/// A send whose verification holds a sealed code and whose delivery has
/// the message id `wamid`, delivered at `NOW + 1`.
async fn sealed_send(s: &dyn Store, name: &str, wamid: &str) -> (VerificationId, SealedCode) {
    let (id, sealed, _) = sealed_send_to(s, name, Some(wamid)).await;
    (id, sealed)
}

/// [`sealed_send`], with or without a message id; also the code's key.
async fn sealed_send_to(
    s: &dyn Store,
    name: &str,
    wamid: Option<&str>,
) -> (VerificationId, SealedCode, String) {
    let key = unique(name);
    let r = record(digest(1), 5);
    let mut v = verification_of(&key, &r, NOW);
    let sealed = CodeHasher::new(b"contract".to_vec()).seal(
        r.verification.as_bytes(),
        &Code::parse("123456").expect("code"),
    );
    v.sealed = Some(sealed.clone());
    let put = s.put_code(&key, r, &v, &[], NOW).await.expect("put_code");
    assert_eq!(put, PutOutcome::Stored);
    let attempt = DeliveryAttempt {
        message_id: wamid.map(str::to_owned),
        ..delivered_attempt(NOW + 1)
    };
    s.delivered(&r.verification, &[attempt], NOW + 1)
        .await
        .expect("delivered");
    (r.verification, sealed, key)
}

pub async fn the_sealed_code_lives_only_in_the_record_and_only_while_of_use(s: &dyn Store) {
    // Kept while a report may come, and never in an event's snapshot.
    let (id, sealed, key) = sealed_send_to(s, "sealed-kept", Some("wamid.contract-k")).await;
    assert_eq!(get(s, &id).await.sealed, Some(sealed));
    let events = events_of(s, &id, NOW + 10).await;
    assert_eq!(kinds(&events), [EventType::Pending]);
    assert_eq!(
        events[0].verification().map(|v| v.sealed.clone()),
        Some(None)
    );
    // The verification ends: its code is dead, and so is the sealed copy.
    assert_eq!(
        check(s, &key, digest(1), NOW + 2).await,
        CheckOutcome::Approved
    );
    assert_eq!(get(s, &id).await.sealed, None, "dropped when it ends");
    let events = events_of(s, &id, NOW + 10).await;
    assert_eq!(events.last().map(|e| e.kind), Some(EventType::Approved));
    assert!(events
        .iter()
        .all(|e| e.verification().is_some_and(|v| v.sealed.is_none())));
    // A delivery no report can name (no message id): dropped at once.
    let (id, _, _) = sealed_send_to(s, "sealed-no-id", None).await;
    assert_eq!(get(s, &id).await.sealed, None, "no message id, no report");
}

fn report(wamid: &str, report: DeliveryReport, error: Option<&str>) -> ReportUpdate {
    ReportUpdate {
        message_id: wamid.to_owned(),
        report,
        error: error.map(str::to_owned),
    }
}

async fn report_on(
    s: &dyn Store,
    id: &VerificationId,
    update: &ReportUpdate,
    now: u64,
) -> ReportOutcome {
    match s.report_delivery(id, update, now).await {
        Ok(o) => o,
        Err(e) => panic!("report_delivery failed: {e:?}"),
    }
}

pub async fn delivery_reports_are_recorded_once_and_take_the_sealed_code(s: &dyn Store) {
    let (id, sealed) = sealed_send(s, "report", "wamid.contract-1").await;
    // The store keeps the sealed code as it was given.
    assert_eq!(get(s, &id).await.sealed, Some(sealed.clone()));
    let sent = report("wamid.contract-1", DeliveryReport::Sent, None);
    assert_eq!(
        report_on(
            s,
            &id,
            &report("wamid.other", DeliveryReport::Sent, None),
            NOW + 2
        )
        .await,
        ReportOutcome::Unknown,
        "no delivery has that message id"
    );
    assert_eq!(
        report_on(s, &fresh_id(), &sent, NOW + 2).await,
        ReportOutcome::Unknown,
        "no such verification"
    );
    let ReportOutcome::Recorded {
        verification,
        sealed: taken,
    } = report_on(s, &id, &sent, NOW + 2).await
    else {
        panic!("a first `sent` report is recorded");
    };
    assert_eq!(taken, None, "`sent` leaves the sealed code in place");
    assert_eq!(
        verification.deliveries[0].report,
        Some(DeliveryReport::Sent)
    );
    assert_eq!(get(s, &id).await.sealed, Some(sealed.clone()));
    assert_eq!(
        report_on(s, &id, &sent, NOW + 3).await,
        ReportOutcome::Unchanged
    );
    let failed = report(
        "wamid.contract-1",
        DeliveryReport::Failed,
        Some("131026: not on WhatsApp"),
    );
    let ReportOutcome::Recorded {
        verification,
        sealed: taken,
    } = report_on(s, &id, &failed, NOW + 4).await
    else {
        panic!("`failed` after `sent` is recorded");
    };
    assert_eq!(taken, Some(sealed), "`failed` hands the sealed code out");
    let stored = get(s, &id).await;
    assert_eq!(stored.sealed, None, "and the store no longer has it");
    assert_eq!(stored.deliveries, verification.deliveries);
    assert_eq!(
        (
            stored.deliveries[0].report,
            stored.deliveries[0].error.as_deref(),
            stored.deliveries[0].message_id.as_deref(),
        ),
        (
            Some(DeliveryReport::Failed),
            Some("131026: not on WhatsApp"),
            Some("wamid.contract-1")
        )
    );
    assert_eq!(stored.status, Status::Pending, "a report ends nothing");
    assert_eq!(
        report_on(s, &id, &failed, NOW + 5).await,
        ReportOutcome::Unchanged
    );
    assert_eq!(
        report_on(
            s,
            &id,
            &report("wamid.contract-1", DeliveryReport::Read, None),
            NOW + 5
        )
        .await,
        ReportOutcome::Unchanged,
        "nothing comes after `failed`"
    );
    let events = events_of(s, &id, NOW + 10).await;
    assert_eq!(
        kinds(&events),
        [
            EventType::Pending,
            EventType::DeliveryUpdated,
            EventType::DeliveryUpdated
        ]
    );
    assert_eq!(
        events[2].verification().map(|v| v.deliveries[0].report),
        Some(Some(DeliveryReport::Failed))
    );

    // `delivered` drops the sealed code and hands nothing out.
    let (id, _) = sealed_send(s, "report-reached", "wamid.contract-2").await;
    let ReportOutcome::Recorded { sealed: taken, .. } = report_on(
        s,
        &id,
        &report("wamid.contract-2", DeliveryReport::Delivered, None),
        NOW + 2,
    )
    .await
    else {
        panic!("`delivered` is recorded");
    };
    assert_eq!(taken, None);
    assert_eq!(get(s, &id).await.sealed, None);
}

pub async fn concurrent_replays_of_a_report_record_it_once(store: Arc<dyn Store>) {
    let (id, _) = sealed_send(store.as_ref(), "report-race", "wamid.contract-race").await;
    let update = report(
        "wamid.contract-race",
        DeliveryReport::Failed,
        Some("131026"),
    );
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let update = update.clone();
            tokio::spawn(async move { store.report_delivery(&id, &update, NOW + 2).await })
        })
        .collect();
    let mut recorded = 0;
    let mut handed_out = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(ReportOutcome::Recorded { sealed, .. }) => {
                recorded += 1;
                handed_out += usize::from(sealed.is_some());
            }
            Ok(ReportOutcome::Unchanged) => {}
            other => panic!("a replayed report answered {other:?}"),
        }
    }
    assert_eq!(
        (recorded, handed_out),
        (1, 1),
        "one instance records it and gets the code"
    );
    let events = events_of(store.as_ref(), &id, NOW + 10).await;
    assert_eq!(
        kinds(&events),
        [EventType::Pending, EventType::DeliveryUpdated]
    );
}

/// A resend's first step ([`SendLimits::resend`]) for the code of `r`.
async fn resend(
    s: &dyn Store,
    key: &str,
    r: CodeRecord,
    own: &[RateBucket],
    now: u64,
) -> PutOutcome {
    let limits = SendLimits {
        own: own.to_vec(),
        resend: true,
        ..SendLimits::default()
    };
    // What the service passes: the verification as it reads it.
    let v = get(s, &r.verification).await;
    let send = StagedSend {
        key,
        record: r,
        verification: &v,
        limits: &limits,
    };
    match s.stage_send(send, now).await {
        Ok(o) => o,
        Err(e) => panic!("stage_send (resend) failed: {e:?}"),
    }
}

pub async fn a_resend_counts_its_limits_and_keeps_the_live_code(s: &dyn Store) {
    let key = unique("resend");
    let cooldown = bucket("resend-cooldown", 2);
    let r = record(digest(3), 3);
    assert_eq!(
        put(s, &key, r, std::slice::from_ref(&cooldown), NOW).await,
        PutOutcome::Stored
    );
    s.delivered(&r.verification, &[delivered_attempt(NOW)], NOW)
        .await
        .expect("delivered");
    assert_eq!(
        check(s, &key, digest(9), NOW + 1).await,
        CheckOutcome::Mismatch { attempts_left: 2 }
    );
    // A resend passes its bucket and leaves the code and record as they
    // are: the counted attempt stays counted, the old code still works.
    let before = get(s, &r.verification).await;
    let live = CodeRecord { attempts: 1, ..r };
    assert_eq!(
        resend(s, &key, live, std::slice::from_ref(&cooldown), NOW + 2).await,
        PutOutcome::Stored
    );
    assert_eq!(get(s, &r.verification).await, before);
    // The bucket counted it: the next is refused, and changes nothing.
    assert!(matches!(
        resend(s, &key, live, std::slice::from_ref(&cooldown), NOW + 3).await,
        PutOutcome::RateLimited { .. }
    ));
    // Another verification's resend under the key finds no live code of
    // its own, and charges nothing.
    let other = record(digest(3), 3);
    let fresh = bucket("resend-fresh", 1);
    let mut v = get(s, &r.verification).await;
    v.id = other.verification;
    let limits = SendLimits {
        own: vec![fresh.clone()],
        resend: true,
        ..SendLimits::default()
    };
    assert_eq!(
        s.stage_send(
            StagedSend {
                key: &key,
                record: other,
                verification: &v,
                limits: &limits,
            },
            NOW + 4
        )
        .await
        .expect("stage"),
        PutOutcome::Gone
    );
    // Under the same key (where a store keeps a destination's own
    // buckets): the live verification's resend still gets the one hit.
    assert_eq!(
        resend(s, &key, live, std::slice::from_ref(&fresh), NOW + 4).await,
        PutOutcome::Stored,
        "the refused resend charged nothing"
    );
    assert_eq!(
        s.verification(&other.verification).await.expect("get"),
        None
    );
    // The code is right after all of it, once.
    assert_eq!(
        check(s, &key, digest(3), NOW + 5).await,
        CheckOutcome::Approved
    );
    // An approved code is not live: its resend is gone, and the record
    // stays approved.
    assert_eq!(
        resend(s, &key, live, &[bucket("resend-after", 5)], NOW + 6).await,
        PutOutcome::Gone
    );
    assert_eq!(get(s, &r.verification).await.status, Status::Approved);
    assert_eq!(
        check(s, &key, digest(3), NOW + 7).await,
        CheckOutcome::NotFound
    );
    // Nor is an expired one.
    let (key2, r2) = send(s, "resend-expired", 5, NOW).await;
    assert_eq!(
        resend(s, &key2, r2, &[], r2.expires_at + 1).await,
        PutOutcome::Gone
    );
    // Nor a locked one.
    let (key3, r3) = send(s, "resend-locked", 1, NOW).await;
    assert_eq!(
        check(s, &key3, digest(9), NOW + 1).await,
        CheckOutcome::Mismatch { attempts_left: 0 }
    );
    assert_eq!(resend(s, &key3, r3, &[], NOW + 2).await, PutOutcome::Gone);
}

pub async fn a_service_s_verification_keeps_its_sealed_code_while_pending(s: &dyn Store) {
    let key = unique("service-sealed");
    let r = record(digest(1), 5);
    let mut v = verification_of(&key, &r, NOW);
    let sealed = CodeHasher::new(b"contract".to_vec()).seal(
        r.verification.as_bytes(),
        &Code::parse("123456").expect("code"),
    );
    v.sealed = Some(sealed.clone());
    v.service = Some("VA0123456789abcdef0123456789abcdef".to_owned());
    assert_eq!(
        s.put_code(&key, r, &v, &[], NOW).await.expect("put"),
        PutOutcome::Stored
    );
    // A delivery without a message id keeps it: a resend needs it.
    s.delivered(&r.verification, &[delivered_attempt(NOW + 1)], NOW + 1)
        .await
        .expect("delivered");
    let stored = get(s, &r.verification).await;
    assert_eq!(stored.sealed, Some(sealed));
    assert_eq!(stored.service, v.service, "the service is kept");
    let events = events_of(s, &r.verification, NOW + 10).await;
    assert!(events
        .iter()
        .all(|e| e.verification().is_some_and(|v| v.sealed.is_none())));
    // It ends: the sealed copy goes with the code.
    assert_eq!(
        check(s, &key, digest(1), NOW + 2).await,
        CheckOutcome::Approved
    );
    assert_eq!(get(s, &r.verification).await.sealed, None);
}

const SERVICE_A: &str = "VA0123456789abcdef0123456789abcdef";
const SERVICE_B: &str = "VAfedcba9876543210fedcba9876543210";

/// Stores `r` under `key` as a send of `service` (or a native send).
async fn send_for(s: &dyn Store, key: &str, r: CodeRecord, service: Option<&str>, now: u64) {
    let mut v = verification_of(key, &r, now);
    v.service = service.map(str::to_owned);
    assert_eq!(
        s.put_code(key, r, &v, &[], now).await.expect("put"),
        PutOutcome::Stored
    );
}

/// A send's first step for `service` that keeps its pending verification.
async fn stage_reusing(
    s: &dyn Store,
    key: &str,
    service: &str,
    own: &[RateBucket],
    now: u64,
) -> (PutOutcome, CodeRecord) {
    let r = record(digest(7), 5);
    let mut v = verification_of(key, &r, now);
    v.service = Some(service.to_owned());
    let limits = SendLimits {
        own: own.to_vec(),
        reuse: Some(service.to_owned()),
        ..SendLimits::default()
    };
    let send = StagedSend {
        key,
        record: r,
        verification: &v,
        limits: &limits,
    };
    let outcome = s.stage_send(send, now).await.expect("stage_send (reuse)");
    (outcome, r)
}

pub async fn a_service_s_send_finds_its_pending_verification_and_changes_nothing(s: &dyn Store) {
    let key = unique("reuse");
    let cooldown = bucket("reuse-cooldown", 1);
    let r = record(digest(1), 2);
    send_for(s, &key, r, Some(SERVICE_A), NOW).await;
    // The same service finds it: nothing stored, nothing charged.
    let (outcome, unused) =
        stage_reusing(s, &key, SERVICE_A, std::slice::from_ref(&cooldown), NOW + 1).await;
    assert_eq!(outcome, PutOutcome::Pending(r.verification));
    assert_eq!(
        s.verification(&unused.verification).await.expect("get"),
        None,
        "no new verification was stored"
    );
    assert_eq!(
        hit(s, &cooldown, NOW + 1).await,
        HitOutcome::Counted,
        "a reused send charges nothing"
    );
    assert_eq!(
        check(s, &key, digest(7), NOW + 2).await,
        CheckOutcome::Mismatch { attempts_left: 1 },
        "the new code was not stored"
    );
    // Another service's send replaces it, as any send does.
    let (outcome, other) = stage_reusing(s, &key, SERVICE_B, &[], NOW + 3).await;
    assert_eq!(outcome, PutOutcome::Stored);
    assert_eq!(get(s, &r.verification).await.status, Status::Canceled);
    assert_eq!(get(s, &other.verification).await.status, Status::Pending);
    // The replacing code is the one under the key now.
    assert_eq!(
        check(s, &key, digest(7), NOW + 4).await,
        CheckOutcome::Approved
    );
    // A locked code is not reused: a new one replaces it.
    let key2 = unique("reuse-locked");
    let r2 = record(digest(1), 1);
    send_for(s, &key2, r2, Some(SERVICE_A), NOW).await;
    assert_eq!(
        check(s, &key2, digest(9), NOW + 1).await,
        CheckOutcome::Mismatch { attempts_left: 0 }
    );
    let (outcome, _) = stage_reusing(s, &key2, SERVICE_A, &[], NOW + 2).await;
    assert_eq!(outcome, PutOutcome::Stored);
    // Nor an expired one, nor a native send's.
    let key3 = unique("reuse-expired");
    let r3 = record(digest(1), 5);
    send_for(s, &key3, r3, Some(SERVICE_A), NOW).await;
    let (outcome, _) = stage_reusing(s, &key3, SERVICE_A, &[], r3.expires_at).await;
    assert_eq!(outcome, PutOutcome::Stored);
    let key4 = unique("reuse-native");
    send_for(s, &key4, record(digest(1), 5), None, NOW).await;
    let (outcome, _) = stage_reusing(s, &key4, SERVICE_A, &[], NOW + 1).await;
    assert_eq!(outcome, PutOutcome::Stored);
}

async fn check_in(
    s: &dyn Store,
    key: &str,
    d: CodeDigest,
    scope: &crate::ports::CheckScope,
    now: u64,
) -> crate::ports::Checked {
    let check = CodeCheck {
        key,
        digest: &d,
        tally: None,
        scope: Some(scope),
    };
    s.check_in(check, now).await.expect("check_in")
}

pub async fn a_scoped_check_touches_only_the_code_it_names(s: &dyn Store) {
    use crate::ports::{CheckScope, Checked};
    let key = unique("scoped");
    let r = record(digest(1), 5);
    send_for(s, &key, r, Some(SERVICE_A), NOW).await;
    let named = Some((r.verification, NOW));
    // Another service, or another verification: not found, nothing counted.
    // The right code and a wrong one alike: neither approves nor counts.
    for scope in [
        CheckScope::Service(SERVICE_B.to_owned()),
        CheckScope::Verification(fresh_id()),
    ] {
        for d in [digest(1), digest(9)] {
            assert_eq!(
                check_in(s, &key, d, &scope, NOW + 1).await,
                Checked::NOT_FOUND,
                "{scope:?}"
            );
        }
    }
    let v = get(s, &r.verification).await;
    assert_eq!(
        (v.status, v.attempts),
        (Status::Pending, 0),
        "nothing was counted"
    );
    // Nor does an out-of-scope check of an expired code end it.
    let other = CheckScope::Service(SERVICE_B.to_owned());
    assert_eq!(
        check_in(s, &key, digest(1), &other, r.expires_at + 1).await,
        Checked::NOT_FOUND
    );
    assert_eq!(get(s, &r.verification).await.status, Status::Pending);
    // Its own scope: counted, and the answer names the verification.
    let own = CheckScope::Service(SERVICE_A.to_owned());
    assert_eq!(
        check_in(s, &key, digest(9), &own, NOW + 2).await,
        Checked {
            outcome: CheckOutcome::Mismatch { attempts_left: 4 },
            verification: named
        }
    );
    let by_id = CheckScope::Verification(r.verification);
    assert_eq!(
        check_in(s, &key, digest(1), &by_id, NOW + 3).await,
        Checked {
            outcome: CheckOutcome::Approved,
            verification: named
        }
    );
    assert_eq!(
        check_in(s, &key, digest(1), &by_id, NOW + 4).await,
        Checked::NOT_FOUND
    );
    // A native send's code is outside every service's scope, and a check
    // without a scope names its verification too.
    let key2 = unique("scoped-native");
    let r2 = record(digest(1), 1);
    send_for(s, &key2, r2, None, NOW).await;
    assert_eq!(
        check_in(s, &key2, digest(1), &own, NOW + 1).await,
        Checked::NOT_FOUND
    );
    let check = CodeCheck {
        key: &key2,
        digest: &digest(9),
        tally: None,
        scope: None,
    };
    let unscoped = s.check_in(check, NOW + 2).await.expect("check_in");
    assert_eq!(
        unscoped,
        Checked {
            outcome: CheckOutcome::Mismatch { attempts_left: 0 },
            verification: Some((r2.verification, NOW))
        }
    );
    assert_eq!(
        check_in(
            s,
            &key2,
            digest(1),
            &CheckScope::Verification(r2.verification),
            NOW + 3
        )
        .await,
        Checked {
            outcome: CheckOutcome::Locked,
            verification: Some((r2.verification, NOW))
        }
    );
}

/// The [`crate::ports::ServiceStore`] contract: records are kept whole,
/// replaced, listed in sid order and deleted once. Sids are unique per
/// run, so other runs' services on a shared backend are left alone.
pub async fn run_services(s: &dyn crate::ports::ServiceStore) {
    let base = unique("svc").replace(['@', '.', ':'], "");
    let (a, b) = (format!("VA{base}a"), format!("VA{base}b"));
    assert_eq!(s.service(&a).await.expect("get"), None);
    s.put_service(&b, b"{\"n\":2}").await.expect("put b");
    s.put_service(&a, b"{\"n\":1}").await.expect("put a");
    assert_eq!(
        s.service(&a).await.expect("get").as_deref(),
        Some(&b"{\"n\":1}"[..])
    );
    // Replaced whole, bytes as given.
    s.put_service(&a, &[0, 255, 1]).await.expect("replace a");
    assert_eq!(
        s.service(&a).await.expect("get").as_deref(),
        Some(&[0u8, 255, 1][..])
    );
    let ours: Vec<(String, Vec<u8>)> = s
        .services()
        .await
        .expect("list")
        .into_iter()
        .filter(|(sid, _)| sid.contains(&base))
        .collect();
    assert_eq!(
        ours,
        vec![
            (a.clone(), vec![0, 255, 1]),
            (b.clone(), b"{\"n\":2}".to_vec())
        ],
        "in sid order"
    );
    assert!(s.delete_service(&a).await.expect("delete"));
    assert!(
        !s.delete_service(&a).await.expect("delete again"),
        "deleted once"
    );
    assert_eq!(s.service(&a).await.expect("get"), None);
    assert!(s.delete_service(&b).await.expect("delete b"));
}
