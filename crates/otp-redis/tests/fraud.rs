//! The fraud ledger on Redis beyond the contract: its counters follow the
//! domain's sliding-window math step for step, its keys are as the crate
//! docs say, a block's end is announced even when a new block replaces
//! it unswept, and on a cluster any instance settles a fraud event (and
//! still a verification's).

use otp_domain::fraud::{Block, Counters, FraudMode, Prefix};
use otp_domain::ports::{CodeRecord, FraudLedger, FraudTally, PutOutcome};
use otp_domain::ports::{Outbox, VerificationStore};
use otp_domain::verification::{EventData, EventSettle, EventType, StoredEvent};
use otp_domain::CodeDigest;
use otp_redis::RedisStore;
use otp_testkit::redis::{RedisCluster, RedisServer};
use support::{connection, StoreConfig};

mod support;

const T0: u64 = 1_800_000_000_000;

fn prefix(s: &str) -> Prefix {
    Prefix::parse(s).expect("prefix")
}

fn tally(p: &Prefix, window_ms: u64) -> FraudTally {
    FraudTally {
        prefix: p.clone(),
        window_ms,
    }
}

fn block(p: &Prefix, since: u64, until: u64) -> Block {
    Block {
        prefix: p.clone(),
        country: Some("KZ".into()),
        since,
        until,
        sends: 61.5,
        approvals: 0.25,
        mode: FraudMode::Monitor,
    }
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Steps(u64);

impl Steps {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test]
async fn counters_follow_the_domains_sliding_window_step_for_step() {
    let server = RedisServer::start();
    let store = RedisStore::standalone(&server.config("otpd")).expect("store");
    let mut steps = Steps(0x9e37_79b9_7f4a_7c15);
    for window in [1, 7, 1_000, 60_000] {
        let p = prefix(&format!("7701{window}"));
        let mut expected = Counters::default();
        let mut now = T0 + 3;
        for i in 0..300 {
            // Mostly small moves; sometimes a window or more, sometimes
            // backwards (a clock that stepped back), which restarts.
            now = match steps.below(10) {
                0 => now + window * (1 + steps.below(3)),
                1 => now.saturating_sub(steps.below(window * 2 + 1)),
                _ => now + steps.below(window / 2 + 1),
            };
            let (sends, approvals) = (steps.below(4), steps.below(2));
            expected = expected.add(sends, approvals, now, window);
            let got = store
                .count(tally(&p, window).add(sends, approvals), now)
                .await
                .expect("count");
            assert_eq!(got, expected, "window {window}, step {i}, now {now}");
        }
    }
    // A window of 0 is taken as 1 ms, as the domain does.
    let p = prefix("77020");
    let got = store
        .count(tally(&p, 0).add(2, 1), T0 + 5)
        .await
        .expect("count");
    assert_eq!(got, Counters::default().add(2, 1, T0 + 5, 0));
}

#[tokio::test]
async fn fraud_keys_are_as_documented_and_counters_live_two_windows_and_a_minute() {
    let server = RedisServer::start();
    let store = RedisStore::standalone(&server.config("otpd")).expect("store");
    let mut conn = connection(&server).await;
    let p = prefix("7701");
    store
        .count(tally(&p, 60_000).add(3, 1), T0)
        .await
        .expect("count");
    let counters: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg("otpd:{fraud}:c:7701")
        .query_async(&mut conn)
        .await
        .expect("HGETALL");
    assert_eq!(counters.get("s").map(String::as_str), Some("3"));
    assert_eq!(counters.get("a").map(String::as_str), Some("1"));
    let ttl: i64 = redis::cmd("PTTL")
        .arg("otpd:{fraud}:c:7701")
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!((179_000..=180_000).contains(&ttl), "ttl {ttl}");

    let b = block(&p, T0, T0 + 60_000);
    assert!(store.block(&b, T0).await.expect("block"));
    let json: String = redis::cmd("HGET")
        .arg("otpd:{fraud}:b:7701")
        .arg("j")
        .query_async(&mut conn)
        .await
        .expect("HGET");
    assert_eq!(serde_json::from_str::<Block>(&json).expect("block JSON"), b);
    let until: Option<u64> = redis::cmd("ZSCORE")
        .arg("otpd:{fraud}:blocks")
        .arg("7701")
        .query_async(&mut conn)
        .await
        .expect("ZSCORE");
    assert_eq!(until, Some(T0 + 60_000));
    // The event is in the one outbox, with the block and the domain's id.
    let event: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("otpd:{{outbox}}:evt:evt_fraud_7701_{T0}_blocked"))
        .query_async(&mut conn)
        .await
        .expect("HGETALL");
    assert_eq!(
        event.get("@kind").map(String::as_str),
        Some("otpd.fraud.prefix_blocked")
    );
    assert_eq!(event.get("@block"), Some(&json));
    let claimed = store.claim_events(T0 + 1, 1_000, 10).await.expect("claim");
    assert_eq!(claimed, vec![StoredEvent::fraud(&b, false, T0)]);

    // Lifted, nothing of it is left but its event.
    assert_eq!(store.unblock(&p, T0 + 2).await.expect("unblock"), Some(b));
    let left: (bool, Option<u64>) = redis::pipe()
        .cmd("EXISTS")
        .arg("otpd:{fraud}:b:7701")
        .cmd("ZSCORE")
        .arg("otpd:{fraud}:blocks")
        .arg("7701")
        .query_async(&mut conn)
        .await
        .expect("EXISTS, ZSCORE");
    assert_eq!(left, (false, None));
}

#[tokio::test]
async fn a_new_block_over_an_unswept_expired_one_announces_its_end_first() {
    let server = RedisServer::start();
    let store = RedisStore::standalone(&server.config("otpd")).expect("store");
    let p = prefix("99512");
    let old = block(&p, T0, T0 + 1_000);
    let new = block(&p, T0 + 5_000, T0 + 60_000);
    assert!(store.block(&old, T0).await.expect("block"));
    assert!(
        !store.block(&new, T0 + 999).await.expect("block"),
        "the old block is still active"
    );
    assert!(store.block(&new, T0 + 5_000).await.expect("block"));
    assert_eq!(
        store.block_of(&p, T0 + 5_001).await.expect("block_of"),
        Some(new.clone())
    );
    // Nothing is left for the sweep: the old block ended with its event.
    assert_eq!(
        store.expire_blocks(T0 + 5_001, 100).await.expect("expire"),
        []
    );
    let mut claimed = store
        .claim_events(T0 + 5_001, 1_000, 10)
        .await
        .expect("claim");
    claimed.sort_by_key(|e| e.time);
    assert_eq!(
        claimed,
        vec![
            StoredEvent::fraud(&old, false, T0),
            StoredEvent::fraud(&old, true, T0 + 5_000),
            StoredEvent::fraud(&new, false, T0 + 5_000),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_any_instance_settles_fraud_and_verification_events() {
    let cluster = RedisCluster::start();
    let first = RedisStore::cluster(&cluster.config("otpd")).expect("store");
    let second = RedisStore::cluster(&cluster.config("otpd")).expect("store");
    let p = prefix("7701");
    let b = block(&p, T0, T0 + 1_000);
    assert!(first.block(&b, T0).await.expect("block"));
    assert_eq!(
        second.expire_blocks(T0 + 1_000, 10).await.expect("expire"),
        vec![b.clone()]
    );
    // A verification's event, in its own slot's outbox, goes along.
    let key = "sms:+77011234567";
    let record = CodeRecord {
        digest: CodeDigest::from_bytes([3; 32]),
        expires_at: T0 + 60_000,
        attempts: 0,
        max_attempts: 5,
        verification: support::fresh_id(),
    };
    let put = support::put(&first, key, record, T0).await;
    assert_eq!(put, PutOutcome::Stored);
    first
        .cancel_verification(&record.verification, T0 + 1)
        .await
        .expect("cancel");
    let mut claimed = first.claim_events(T0 + 1_000, 1, 10).await.expect("claim");
    claimed.sort_by_key(|e| e.kind.as_str());
    let kinds: Vec<EventType> = claimed.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventType::PrefixBlocked,
            EventType::PrefixUnblocked,
            EventType::Canceled
        ]
    );
    assert!(claimed[..2]
        .iter()
        .all(|e| matches!(&e.data, EventData::Block(got) if *got == b)));
    // The second store never claimed them, so it finds their outboxes
    // from the ids alone.
    for e in &claimed {
        second
            .settle_event(&e.id, &EventSettle::Done)
            .await
            .expect("settle");
    }
    assert_eq!(
        first.claim_events(T0 + 10_000, 1, 10).await.expect("claim"),
        []
    );
}
