//! The fraud guard through the real binary: legitimate traffic to several
//! countries, most of whose codes are checked, alongside a pumping attack
//! on one prefix whose codes never are. On the embedded store, and on two
//! instances sharing one Redis (every other request goes to the other
//! instance, so the counts and the block must be shared).

use std::time::{Duration, Instant};

use otp_testkit::redis::RedisServer;
use otp_testkit::{FakePeer, Recorded, Reply};
use serde_json::Value;

use crate::events::{start_with, verify_all, wait_for, webhook_sink};
use crate::support::Otpd;

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Small numbers so the run is quick: judged from 20 sends in a minute,
/// blocked below 20% conversion, for 3 s; no other limit in the way.
fn guard_env(mode: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("OTP_FRAUD__MODE", mode),
        ("OTP_FRAUD__MIN_SENDS", "20"),
        ("OTP_FRAUD__MIN_CONVERSION", "0.2"),
        ("OTP_FRAUD__WINDOW_SECS", "60"),
        ("OTP_FRAUD__BLOCK_SECS", "3"),
        ("OTP_LIMITS__COOLDOWN_SECS", "0"),
        ("OTP_LIMITS__SENDS_PER_WINDOW", "0"),
        ("OTP_LIMITS__USER_SENDS_PER_WINDOW", "0"),
        ("OTP_LIMITS__SMS_PER_HOUR", "0"),
    ]
}

/// The fraud events at `receiver` (signatures checked with the reference
/// library), as `(type, prefix, mode)` in arrival order.
fn fraud_events(receiver: &FakePeer, at_least: usize) -> Vec<(String, String, String)> {
    let got: Vec<Recorded> = wait_for(receiver, at_least, 15)
        .into_iter()
        .filter(|r| {
            r.json()["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("otpd.fraud."))
        })
        .collect();
    verify_all(&got);
    // Delivery order is not guaranteed: order them by their time.
    let mut events: Vec<Value> = got.iter().map(Recorded::json).collect();
    events.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
    events
        .into_iter()
        .map(|ce| {
            (
                ce["type"].as_str().unwrap_or_default().to_owned(),
                ce["data"]["prefix"].as_str().unwrap_or_default().to_owned(),
                ce["data"]["mode"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A config file with a webhook sink for fraud events only.
fn fraud_sink(url: &str) -> String {
    format!(
        "{}types = [\"otpd.fraud.prefix_blocked\", \"otpd.fraud.prefix_unblocked\"]\n",
        webhook_sink(url)
    )
}

/// What a run saw.
#[derive(Debug, Default)]
struct Run {
    /// Attack sends that reached the provider before the first refusal.
    attack_delivered_before_block: usize,
    attack_refused: usize,
    legit_sent: usize,
    legit_refused: usize,
    legit_approved: usize,
}

/// A legitimate number of country `i % 3`: Germany, France, and a
/// Kazakh prefix other than the attacked one.
fn legit(i: usize) -> String {
    match i % 3 {
        0 => format!("+49151{:08}", 10_000_000 + i),
        1 => format!("+3361{:07}", 2_000_000 + i),
        _ => format!("+7702{:07}", 1_000_000 + i),
    }
}

fn attack(i: usize) -> String {
    format!("+7701{:07}", 1_000_000 + i)
}

fn send(otpd: &Otpd, phone: &str) -> (u16, Value) {
    otpd.request(
        "POST",
        "/sms",
        &[JSON],
        &format!(r#"{{"phone": "{phone}", "password": "4321"}}"#),
    )
}

/// 60 rounds of one legitimate send (4 in 5 of them checked right) and
/// one attack send, alternating over `instances`.
fn traffic(instances: &[&Otpd]) -> Run {
    let mut run = Run::default();
    let mut blocked = false;
    for i in 0..60 {
        let a = instances[i % instances.len()];
        let b = instances[(i + 1) % instances.len()];
        let (status, body) = send(a, &legit(i));
        match status {
            200 => run.legit_sent += 1,
            403 => run.legit_refused += 1,
            other => panic!("legit send: {other} {body}"),
        }
        if status == 200 && i % 5 != 0 {
            let (status, body) = b.request(
                "POST",
                "/sms/check",
                &[JSON],
                &format!(r#"{{"phone": "{}", "password": "4321"}}"#, legit(i)),
            );
            assert_eq!(status, 200, "{body}");
            run.legit_approved += 1;
        }
        let (status, body) = send(b, &attack(i));
        match status {
            200 if !blocked => run.attack_delivered_before_block += 1,
            200 => panic!("an attack send went through after the block: {body}"),
            403 => {
                assert_eq!(body["error"], "fraud_suspected", "{body}");
                let message = body["message"].as_str().unwrap_or_default();
                assert!(
                    !message.contains("20") && !message.contains('%'),
                    "the message must not teach the threshold: {message}"
                );
                blocked = true;
                run.attack_refused += 1;
            }
            other => panic!("attack send: {other} {body}"),
        }
    }
    run
}

fn blocks(otpd: &Otpd) -> Vec<Value> {
    let (status, body) = otpd.request("GET", "/fraud/blocks", &[], "");
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

/// Waits until `/fraud/blocks` is empty: the block lifted by itself.
fn wait_unblocked(otpd: &Otpd, within: Duration) -> Duration {
    let start = Instant::now();
    while !blocks(otpd).is_empty() {
        assert!(
            start.elapsed() < within,
            "the block did not lift: {:?}",
            blocks(otpd)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

fn blocking_run(instances: &[&Otpd], label: &str) {
    let run = traffic(instances);
    eprintln!("fraud guard, {label}: {run:?}");
    assert_eq!(run.legit_refused, 0, "no legitimate send is refused");
    assert_eq!(run.legit_sent, 60);
    // The 20th unconverted send reaches the threshold; with two
    // instances one more may slip through while the other blocks.
    assert!(
        (20..=21).contains(&run.attack_delivered_before_block),
        "{run:?}"
    );
    assert_eq!(run.attack_refused, 60 - run.attack_delivered_before_block);
    let active = blocks(instances[0]);
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0]["prefix"], "7701");
    assert_eq!(active[0]["country"], "KZ");
    assert_eq!(active[0]["mode"], "block");
    // Every instance sees the block.
    for otpd in instances {
        assert_eq!(send(otpd, &attack(100)).0, 403);
    }
    // It lifts after block_secs (3 s) by itself.
    let waited = wait_unblocked(instances[0], Duration::from_secs(10));
    eprintln!("fraud guard, {label}: the block lifted {waited:?} after the attack run");
    // The window still remembers the attack: the next unconverted send
    // goes out and blocks the prefix again at once ...
    assert_eq!(send(instances[0], &attack(101)).0, 200);
    assert_eq!(send(instances[0], &attack(102)).0, 403);
    // ... and DELETE lets sends through at once.
    let (status, body) =
        instances[1 % instances.len()].request("DELETE", "/fraud/blocks/7701", &[], "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prefix"], "7701");
    assert_eq!(send(instances[0], &attack(103)).0, 200);
    let (status, _) = instances[0].request("DELETE", "/fraud/blocks/7701", &[], "");
    assert!(status == 404 || status == 200);
}

#[test]
fn the_fraud_guard_blocks_a_pumped_prefix_and_no_legitimate_send_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = FakePeer::start_blocking(Reply::json(204, ""));
    let otpd = start_with(
        dir.path(),
        &fraud_sink(&receiver.base_url),
        &guard_env("block"),
    );
    blocking_run(&[&otpd], "embedded");
    // Blocked, ended by time, blocked again, lifted by DELETE.
    let events = fraud_events(&receiver, 4);
    let kinds: Vec<&str> = events.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "otpd.fraud.prefix_blocked",
            "otpd.fraud.prefix_unblocked",
            "otpd.fraud.prefix_blocked",
            "otpd.fraud.prefix_unblocked"
        ],
        "{events:?}"
    );
    assert!(
        events.iter().all(|(_, prefix, _)| prefix == "7701"),
        "{events:?}"
    );
}

#[test]
fn the_fraud_guard_blocks_across_two_instances_sharing_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = guard_env("block");
    let url = redis.url();
    env.extend([
        ("OTP_STORE__KIND", "redis"),
        ("OTP_STORE__URL", url.as_str()),
        ("OTP_SECURITY__SECRET", "e2e-shared-secret-0123456789abcdef"),
    ]);
    let a = Otpd::start(dir.path(), &env);
    let b = Otpd::start(dir.path(), &env);
    blocking_run(&[&a, &b], "two instances on Redis");
}

#[test]
fn monitor_mode_refuses_nothing_emits_the_events_and_counts_the_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = FakePeer::start_blocking(Reply::json(204, ""));
    let otpd = start_with(
        dir.path(),
        &fraud_sink(&receiver.base_url),
        &guard_env("monitor"),
    );
    let run = traffic(&[&otpd]);
    eprintln!("fraud guard, monitor: {run:?}");
    assert_eq!(run.attack_refused, 0);
    assert_eq!(run.legit_refused, 0);
    assert_eq!(run.attack_delivered_before_block, 60);
    let active = blocks(&otpd);
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0]["mode"], "monitor");
    let scrape = otpd.scrape();
    assert!(
        scrape
            .lines()
            .any(|l| l == r#"otpd_fraud_blocks_total{country="KZ",mode="monitor"} 1"#),
        "{scrape}"
    );
    let events = fraud_events(&receiver, 1);
    assert_eq!(
        events,
        [(
            "otpd.fraud.prefix_blocked".to_owned(),
            "7701".to_owned(),
            "monitor".to_owned()
        )]
    );
}
