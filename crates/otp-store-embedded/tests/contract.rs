//! The store contract against a real redb file, and what the contract
//! cannot reach: persistence across a reopen and a `kill -9`, retention,
//! the sweep's bounds, and files written by the version before
//! verifications.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use otp_domain::digest::CodeDigest;
use otp_domain::fraud::{Block, FraudMode, Prefix};
use otp_domain::ports::{CheckOutcome, CodeRecord, CodeStore, FraudLedger, FraudTally, PutOutcome};
use otp_domain::ports::{
    IdempotencyAnswer, IdempotencyClaim, IdempotencyStore, Outbox, VerificationStore,
};
use otp_domain::verification::{
    AttemptOutcome, DeliveryAttempt, EventData, EventType, IdempotencyBegin, Status, StoredEvent,
    Verification, VerificationId,
};
use otp_domain::{Channel, Destination};
use otp_store_embedded::EmbeddedStore;

const RETENTION_MS: u64 = 86_400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_meets_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("otpd.redb")).expect("open");
    otp_domain::contract::run_services(&store).await;
    otp_domain::contract::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_survive_a_restart() {
    use otp_domain::ports::ServiceStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("otpd.redb");
    let store = EmbeddedStore::open(&path).expect("open");
    store.put_service("VA01", b"acme").await.expect("put");
    drop(store);
    let store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(
        store.service("VA01").await.expect("get").as_deref(),
        Some(&b"acme"[..])
    );
    assert_eq!(store.services().await.expect("list").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_meets_the_fraud_ledger_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("otpd.redb")).expect("open");
    otp_domain::contract::run_fraud(Arc::new(store)).await;
}

fn id(n: u32) -> VerificationId {
    let mut bytes = [0x42u8; 16];
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    VerificationId::from_bytes(bytes)
}

/// The key of the email destination `user{n}@store.example`.
fn key(n: u32) -> String {
    format!("email:user{n}@store.example")
}

fn record(n: u32, expires_at: u64) -> CodeRecord {
    CodeRecord {
        digest: CodeDigest::from_bytes([1; 32]),
        expires_at,
        attempts: 0,
        max_attempts: 5,
        verification: id(n),
    }
}

/// The pending verification of `record`, sent at `now` to destination `n`.
fn verification(n: u32, record: &CodeRecord, now: u64) -> Verification {
    let to = Destination::parse(Channel::Email, &format!("user{n}@store.example")).expect("email");
    Verification::new(
        record.verification,
        &to,
        now,
        record.expires_at,
        record.max_attempts,
        RETENTION_MS,
    )
}

async fn send(store: &EmbeddedStore, n: u32, now: u64, expires_at: u64) -> CodeRecord {
    let r = record(n, expires_at);
    let put = store
        .put_code(&key(n), r, &verification(n, &r, now), &[], now)
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Stored);
    r
}

fn delivered(at: u64) -> DeliveryAttempt {
    DeliveryAttempt::new("test", AttemptOutcome::Delivered, at)
}

async fn status(store: &EmbeddedStore, n: u32) -> Option<Status> {
    let v = store.verification(&id(n)).await.expect("verification");
    v.map(|v| v.status)
}

/// Every event due at `now`, per verification id, in order.
async fn events(store: &EmbeddedStore, now: u64) -> Vec<StoredEvent> {
    let mut all = store.claim_events(now, 1, 100_000).await.expect("claim");
    all.sort_by_key(|e| {
        let n = e.id.rsplit('_').next().and_then(|n| n.parse::<u32>().ok());
        (e.verification().map(|v| v.id), n)
    });
    all
}

fn kinds_of(events: &[StoredEvent], n: u32) -> Vec<EventType> {
    events
        .iter()
        .filter(|e| e.verification().is_some_and(|v| v.id == id(n)))
        .map(|e| e.kind)
        .collect()
}

#[tokio::test]
async fn codes_survive_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/otpd.redb");
    let record = {
        let store = EmbeddedStore::open(&path).expect("open");
        send(&store, 1, 1, 10_000).await
    };
    let store = EmbeddedStore::open(&path).expect("reopen");
    let got = store
        .check_code(&key(1), &record.digest, 2)
        .await
        .expect("check");
    assert_eq!(got, CheckOutcome::Approved);
}

#[tokio::test]
async fn verifications_and_their_events_survive_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("otpd.redb");
    let claim = IdempotencyClaim {
        key: "idem:k",
        fingerprint: &[7; 32],
        lease_ms: 30_000,
    };
    {
        let store = EmbeddedStore::open(&path).expect("open");
        send(&store, 1, 1_000, 60_000).await;
        store
            .delivered(&id(1), &[delivered(1_001)], 1_001)
            .await
            .expect("delivered");
        let wrong = CodeDigest::from_bytes([9; 32]);
        let checked = store.check_code(&key(1), &wrong, 1_002).await;
        assert_eq!(
            checked.expect("check"),
            CheckOutcome::Mismatch { attempts_left: 4 }
        );
        // Replaced by a second send to the same destination: the first
        // ends as canceled.
        let second = record(2, 60_000);
        let v2 = verification(1, &second, 1_003);
        let put = store.put_code(&key(1), second, &v2, &[], 1_003).await;
        assert_eq!(put.expect("put"), PutOutcome::Stored);
        let idem = store.idempotency_begin(claim, 1_004).await;
        assert_eq!(idem.expect("begin"), IdempotencyBegin::Started);
        let answer = IdempotencyAnswer {
            key: claim.key,
            fingerprint: claim.fingerprint,
            response: Some(b"{\"id\":1}"),
            ttl_ms: 60_000,
        };
        store.idempotency_end(answer, 1_005).await.expect("end");
    }
    let store = EmbeddedStore::open(&path).expect("reopen");
    let first = store
        .verification(&id(1))
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        (first.status, first.attempts, first.deliveries.len()),
        (Status::Canceled, 1, 1)
    );
    let latest = store.latest_verification(&key(1)).await.expect("latest");
    assert_eq!(latest.map(|v| v.id), Some(id(2)));
    assert_eq!(status(&store, 2).await, Some(Status::Pending));
    let all = events(&store, 2_000).await;
    assert_eq!(kinds_of(&all, 1), [EventType::Pending, EventType::Canceled]);
    let replay = store.idempotency_begin(claim, 2_000).await;
    assert_eq!(
        replay.expect("begin"),
        IdempotencyBegin::Replay(b"{\"id\":1}".to_vec())
    );
}

fn fraud_block(prefix: &str, since: u64, until: u64) -> Block {
    Block {
        prefix: Prefix::parse(prefix).expect("prefix"),
        country: Some("KZ".into()),
        since,
        until,
        sends: 60.0,
        approvals: 2.0,
        mode: FraudMode::Block,
    }
}

/// The fraud events due at `now`: their kind and block.
async fn fraud_events(store: &EmbeddedStore, now: u64) -> Vec<(EventType, Block)> {
    let all = store.claim_events(now, 1, 100_000).await.expect("claim");
    all.into_iter()
        .filter_map(|e| match e.data {
            EventData::Block(b) => Some((e.kind, b)),
            EventData::Verification(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn fraud_blocks_counters_and_their_events_survive_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("otpd.redb");
    let w = 60_000;
    let kz = Prefix::parse("7701").expect("prefix");
    let tally = FraudTally {
        prefix: kz.clone(),
        window_ms: w,
    };
    let block = fraud_block("7701", 1_000, 61_000);
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store.count(tally.add(50, 1), 900).await.expect("count");
        assert!(store.block(&block, 1_000).await.expect("block"));
    }
    let store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(
        store.block_of(&kz, 1_001).await.expect("block_of"),
        Some(block.clone())
    );
    assert_eq!(
        store.blocks(1_001).await.expect("blocks"),
        std::slice::from_ref(&block)
    );
    // The counters go on from what was stored.
    let c = store.count(tally.add(1, 0), 1_002).await.expect("count");
    assert_eq!((c.window_start, c.sends, c.approvals), (0, 51, 1));
    assert!(
        !store.block(&block, 1_003).await.expect("block"),
        "the stored block is still active"
    );
    // Its expiry index survived too: the sweep ends it once, with its event.
    assert_eq!(
        store.expire_blocks(61_000, 100).await.expect("expire"),
        std::slice::from_ref(&block)
    );
    assert_eq!(store.expire_blocks(61_000, 100).await.expect("expire"), []);
    assert_eq!(
        fraud_events(&store, 62_000).await,
        [
            (EventType::PrefixBlocked, block.clone()),
            (EventType::PrefixUnblocked, block)
        ]
    );
}

#[tokio::test]
async fn a_block_after_an_unswept_expired_one_ends_that_one_with_its_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("otpd.redb")).expect("open");
    let first = fraud_block("7701", 1_000, 2_000);
    let second = fraud_block("7701", 5_000, 9_000);
    assert!(store.block(&first, 1_000).await.expect("block"));
    assert_eq!(
        store.block_of(&first.prefix, 2_000).await.expect("of"),
        None
    );
    assert!(store.block(&second, 5_000).await.expect("block"));
    assert_eq!(
        store.block_of(&first.prefix, 5_001).await.expect("of"),
        Some(second.clone())
    );
    // The first block's index entry went with it: nothing is due now.
    assert_eq!(store.expire_blocks(8_999, 100).await.expect("expire"), []);
    let kinds: Vec<(EventType, u64)> = fraud_events(&store, 6_000)
        .await
        .into_iter()
        .map(|(kind, b)| (kind, b.since))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventType::PrefixBlocked, 1_000),
            (EventType::PrefixUnblocked, 1_000),
            (EventType::PrefixBlocked, 5_000)
        ]
    );
    assert_eq!(
        store.expire_blocks(9_000, 100).await.expect("expire"),
        [second]
    );
}

#[tokio::test]
async fn an_expiry_sweep_ends_at_most_max_blocks_earliest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("otpd.redb")).expect("open");
    for (prefix, until) in [("7701", 3_000), ("7702", 1_000), ("7705", 2_000)] {
        let b = fraud_block(prefix, 500, until);
        assert!(store.block(&b, 500).await.expect("block"));
    }
    let ended = |bs: Vec<Block>| bs.into_iter().map(|b| b.until).collect::<Vec<_>>();
    assert_eq!(
        ended(store.expire_blocks(5_000, 2).await.expect("expire")),
        [1_000, 2_000]
    );
    assert_eq!(ended(store.blocks(2_500).await.expect("blocks")), [3_000]);
    assert_eq!(
        ended(store.expire_blocks(5_000, 2).await.expect("expire")),
        [3_000]
    );
}

#[tokio::test]
async fn an_ended_verification_is_kept_for_its_retention_then_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("r.redb")).expect("open");
    let r = send(&store, 1, 1_000, 60_000).await;
    assert_eq!(
        store
            .check_code(&key(1), &r.digest, 2_000)
            .await
            .expect("check"),
        CheckOutcome::Approved
    );
    let ended = 2_000;
    store
        .sweep(ended + RETENTION_MS - 1, 1_000)
        .await
        .expect("sweep");
    assert_eq!(status(&store, 1).await, Some(Status::Approved));
    store
        .sweep(ended + RETENTION_MS, 1_000)
        .await
        .expect("sweep");
    assert_eq!(status(&store, 1).await, None);
    let latest = store.latest_verification(&key(1)).await.expect("latest");
    assert_eq!(latest, None, "no latest pointer to a forgotten record");
    // The event outlives the record: it is the outbox's until delivered.
    assert_eq!(
        kinds_of(&events(&store, ended + RETENTION_MS).await, 1),
        [EventType::Approved]
    );
}

#[tokio::test]
async fn a_purge_keeps_the_latest_pointer_of_a_newer_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("r.redb")).expect("open");
    let first = record(1, 60_000);
    let put = store
        .put_code(&key(1), first, &verification(1, &first, 1_000), &[], 1_000)
        .await;
    assert_eq!(put.expect("put"), PutOutcome::Stored);
    // A second send to the same destination, under the same key.
    let second = record(2, 60_000 + RETENTION_MS);
    let v2 = verification(1, &second, 2_000);
    let put = store.put_code(&key(1), second, &v2, &[], 2_000).await;
    assert_eq!(put.expect("put"), PutOutcome::Stored);
    store
        .sweep(2_000 + RETENTION_MS, 1_000)
        .await
        .expect("sweep");
    assert_eq!(status(&store, 1).await, None, "the replaced one is gone");
    let latest = store.latest_verification(&key(1)).await.expect("latest");
    assert_eq!(latest.map(|v| v.id), Some(id(2)));
}

#[tokio::test]
async fn a_sweep_expires_at_most_max_verifications_oldest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("m.redb")).expect("open");
    for n in 0..5 {
        send(&store, n, 0, 10_000 + u64::from(n)).await;
    }
    assert_eq!(store.sweep(20_000, 2).await.expect("sweep"), 2);
    assert_eq!(status(&store, 0).await, Some(Status::Expired));
    assert_eq!(status(&store, 1).await, Some(Status::Expired));
    assert_eq!(status(&store, 2).await, Some(Status::Pending));
    assert_eq!(store.sweep(20_000, 2).await.expect("sweep"), 2);
    assert_eq!(store.sweep(20_000, 2).await.expect("sweep"), 1);
    assert_eq!(store.sweep(20_000, 2).await.expect("sweep"), 0);
    let all = events(&store, 20_000).await;
    for n in 0..5 {
        assert_eq!(kinds_of(&all, n), [EventType::Expired], "verification {n}");
    }
}

#[tokio::test]
async fn a_sweep_drops_idempotency_keys_whose_time_is_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("i.redb")).expect("open");
    let claim = IdempotencyClaim {
        key: "idem:a",
        fingerprint: &[1; 32],
        lease_ms: 30_000,
    };
    let begin = store.idempotency_begin(claim, 0).await;
    assert_eq!(begin.expect("begin"), IdempotencyBegin::Started);
    store.sweep(30_000, 1_000).await.expect("sweep");
    // The entry is gone, so a late end of that request stores nothing.
    let late = IdempotencyAnswer {
        key: "idem:a",
        fingerprint: &[1; 32],
        response: Some(b"late"),
        ttl_ms: 60_000,
    };
    store.idempotency_end(late, 30_001).await.expect("end");
    let again = store.idempotency_begin(claim, 30_002).await;
    assert_eq!(again.expect("begin"), IdempotencyBegin::Started);
}

#[tokio::test]
async fn sweep_removes_only_expired_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("s.redb")).expect("open");
    send(&store, 1, 0, 100).await;
    let new = send(&store, 2, 0, 10_000).await;
    assert_eq!(store.sweep_expired(500).await.expect("sweep"), 1);
    assert_eq!(
        store
            .check_code(&key(2), &new.digest, 600)
            .await
            .expect("check"),
        CheckOutcome::Approved
    );
    // The swept code's verification is the other sweep's to expire.
    assert_eq!(status(&store, 1).await, Some(Status::Pending));
    assert_eq!(store.sweep(600, 1_000).await.expect("sweep"), 1);
    assert_eq!(status(&store, 1).await, Some(Status::Expired));
}

/// Writes a code the way the version before verifications did: 48 bytes,
/// no verification id.
fn write_old_code(path: &Path, key: &str, digest: [u8; 32], expires_at: u64) {
    let codes: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("codes");
    let db = redb::Database::create(path).expect("create");
    let txn = db.begin_write().expect("begin");
    {
        let mut table = txn.open_table(codes).expect("table");
        let mut value = Vec::new();
        value.extend_from_slice(&digest);
        value.extend_from_slice(&expires_at.to_be_bytes());
        value.extend_from_slice(&0u32.to_be_bytes());
        value.extend_from_slice(&5u32.to_be_bytes());
        table.insert(key, value.as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
}

#[tokio::test]
async fn codes_written_before_verifications_still_check_and_get_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.redb");
    write_old_code(&path, &key(1), [5; 32], 60_000);
    write_old_code(&path, &key(2), [5; 32], 60_000);
    let store = EmbeddedStore::open(&path).expect("open a file of the old version");
    let right = CodeDigest::from_bytes([5; 32]);
    let wrong = CodeDigest::from_bytes([6; 32]);
    assert_eq!(
        store
            .check_code(&key(1), &wrong, 1_000)
            .await
            .expect("check"),
        CheckOutcome::Mismatch { attempts_left: 4 }
    );
    assert_eq!(
        store
            .check_code(&key(1), &right, 1_001)
            .await
            .expect("check"),
        CheckOutcome::Approved
    );
    // A new send replaces an old code; there is no verification to end.
    let r = send(&store, 2, 1_002, 60_000).await;
    assert_eq!(status(&store, 2).await, Some(Status::Pending));
    assert_eq!(
        store
            .check_code(&key(2), &r.digest, 1_003)
            .await
            .expect("check"),
        CheckOutcome::Approved
    );
    assert_eq!(
        kinds_of(&events(&store, 2_000).await, 2),
        [EventType::Approved]
    );
    assert!(
        events(&store, 2_000)
            .await
            .iter()
            .all(|e| e.verification().is_some_and(|v| v.id == id(2))),
        "old codes write no events"
    );
}

/// Set for the child process of the `kill -9` test: the file it writes.
const KILL_CHILD_DB: &str = "OTPD_EMBEDDED_KILL_CHILD_DB";

/// The child of the `kill -9` test: runs send, delivery and approval flows
/// until it is killed, printing `acked N` once every call of flow N was
/// answered. Without `KILL_CHILD_DB` it does nothing.
#[tokio::test]
#[ignore = "the child process of the kill -9 test"]
async fn kill_child_runs_flows_until_killed() {
    let Ok(path) = std::env::var(KILL_CHILD_DB) else {
        return;
    };
    let store = EmbeddedStore::open(Path::new(&path)).expect("open");
    for n in 0.. {
        let now = 1_000 + u64::from(n);
        let r = send(&store, n, now, now + 600_000).await;
        store
            .delivered(&id(n), &[delivered(now)], now)
            .await
            .expect("delivered");
        let approved = store.check_code(&key(n), &r.digest, now).await;
        assert_eq!(approved.expect("check"), CheckOutcome::Approved);
        println!("acked {n}");
    }
}

#[tokio::test]
async fn every_acknowledged_change_and_its_events_survive_a_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kill.redb");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "kill_child_runs_flows_until_killed",
            "--nocapture",
        ])
        .env(KILL_CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let acked = |line: &str| {
        line.strip_prefix("acked ")
            .and_then(|n| n.parse::<u32>().ok())
    };
    let mut last = None;
    for line in lines.by_ref() {
        let line = line.expect("read the child");
        if let Some(n) = acked(&line) {
            last = Some(n);
            if n >= 30 {
                break;
            }
        }
    }
    // SIGKILL, mid-flow: no destructor, no clean close.
    child.kill().expect("kill -9");
    // Acks printed before it died count too.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = acked(&line) {
            last = Some(n);
        }
    }
    child.wait().expect("reap");
    let last = last.expect("the child acknowledged flows before it was killed");
    let store = EmbeddedStore::open(&path).expect("reopen after kill -9");
    let all = events(&store, 10_000_000).await;
    for n in 0..=last {
        assert_eq!(status(&store, n).await, Some(Status::Approved), "flow {n}");
        assert_eq!(
            kinds_of(&all, n),
            [EventType::Pending, EventType::Approved],
            "flow {n}"
        );
    }
    // The flow cut short is all or nothing per call: its record and its
    // events agree.
    let cut = last + 1;
    let got = kinds_of(&all, cut);
    let agree = match status(&store, cut).await {
        None => got.is_empty(),
        Some(Status::Pending) => got.is_empty() || got == [EventType::Pending],
        Some(Status::Approved) => got == [EventType::Pending, EventType::Approved],
        Some(_) => false,
    };
    assert!(agree, "flow {cut}: events {got:?} disagree with its record");
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let _first = EmbeddedStore::open(&path).expect("open");
    assert!(EmbeddedStore::open(&path).is_err());
}

#[tokio::test]
async fn with_events_off_statuses_change_and_no_event_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open_with(
        &dir.path().join("otpd.redb"),
        otp_store_embedded::EmbeddedOptions {
            record_events: false,
            ..otp_store_embedded::EmbeddedOptions::default()
        },
    )
    .expect("open");
    otp_domain::contract::without_events_statuses_change_and_no_event_is_written(&store).await;
}
