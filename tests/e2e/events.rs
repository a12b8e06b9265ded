//! Events through the real binary: each terminal status reaches a
//! loopback receiver as a signed CloudEvent (every signature checked with
//! the Standard Webhooks reference library, PyPI `standardwebhooks`);
//! events survive `kill -9`; the redis-stream sink is read back with a
//! consumer group.

use std::path::Path;
use std::time::{Duration, Instant};

use otp_testkit::{FakePeer, Recorded, Reply};
use serde_json::{json, Value};

use super::support::{try_http, Otpd};

const JSON: (&str, &str) = ("Content-Type", "application/json");
/// `whsec_` + base64 of 32 bytes.
const SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

pub(crate) fn webhook_sink(url: &str) -> String {
    format!("[[events.sinks]]\nkind = \"webhook\"\nname = \"app\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n")
}

pub(crate) fn start_with(dir: &Path, toml: &str, env: &[(&str, &str)]) -> Otpd {
    let path = dir.join("otpd.toml");
    std::fs::write(&path, toml).expect("write the config file");
    let path = path.to_str().expect("a UTF-8 temp path").to_owned();
    let mut all = vec![("OTP_CONFIG", path.as_str())];
    all.extend_from_slice(env);
    Otpd::start(dir, &all)
}

/// Waits up to `secs` for `n` requests at `peer`.
pub(crate) fn wait_for(peer: &FakePeer, n: usize, secs: u64) -> Vec<Recorded> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = peer.received();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks every request with the reference library's `Webhook.verify`.
pub(crate) fn verify_all(requests: &[Recorded]) {
    otp_testkit::webhooks::verify_all(SECRET, requests);
}

/// The CloudEvents received, by verification id: `[(type, data)]` in
/// arrival order.
fn events_of(requests: &[Recorded], id: &str) -> Vec<(String, Value)> {
    requests
        .iter()
        .map(Recorded::json)
        .filter(|ce| ce["subject"] == id)
        .map(|ce| {
            (
                ce["type"].as_str().unwrap_or_default().to_owned(),
                ce["data"].clone(),
            )
        })
        .collect()
}

/// Whether any value of `event`, its random ids aside, holds one of
/// `codes`.
fn leaks_code(event: &Value, codes: &[&str]) -> bool {
    match event {
        Value::String(s) => codes.iter().any(|c| s.contains(c)),
        Value::Number(n) => codes.iter().any(|c| n.to_string().contains(c)),
        Value::Array(items) => items.iter().any(|v| leaks_code(v, codes)),
        Value::Object(fields) => fields.iter().any(|(key, v)| {
            let random_id = matches!(key.as_str(), "id" | "subject") && v.is_string();
            (!random_id && leaks_code(v, codes)) || codes.iter().any(|c| key.contains(c))
        }),
        Value::Bool(_) | Value::Null => false,
    }
}

#[test]
fn leaks_code_sees_a_code_anywhere_but_in_random_ids() {
    let clean = json!({"id": "evt_a1234b", "subject": "vrf_9912345", "data": {"id": "vrf_5678"}});
    assert!(!leaks_code(&clean, &["1234", "5678"]));
    let leaked = json!({"id": "evt_1", "data": {"deliveries": [{"message": "Code 1234"}]}});
    assert!(leaks_code(&leaked, &["1234"]));
    assert!(leaks_code(&json!({"data": {"code": 5678}}), &["5678"]));
}

fn send_sms(otpd: &Otpd, phone: &str, password: &str, lifetime: u32) -> String {
    let body = json!({"phone": phone, "password": password, "lifetime": lifetime, "message": "Your code is {password}"});
    let (status, answer) = otpd.request("POST", "/sms", &[JSON], &body.to_string());
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_str().expect("the send's id").to_owned()
}

fn check_sms(otpd: &Otpd, phone: &str, password: &str) -> u16 {
    let body = json!({"phone": phone, "password": password});
    otpd.request("POST", "/sms/check", &[JSON], &body.to_string())
        .0
}

fn status_of(otpd: &Otpd, id: &str) -> Value {
    let (status, v) = otpd.request("GET", &format!("/verifications/{id}"), &[], "");
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn each_terminal_status_shows_in_the_api_and_reaches_the_receiver_as_a_signed_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = FakePeer::start_blocking(Reply::json(204, ""));
    let gateway = FakePeer::start_blocking(Reply::json(400, r#"{"error": "no route"}"#));
    let toml = format!(
        "{}[otp]\nmax_attempts = 2\nlifetime_min = 1\n[limits]\ncooldown_secs = 0\n\
         [sms]\nprovider = \"log\"\n\
         [call]\nprovider = \"http\"\n[call.http]\nname = \"acme-voice\"\nurl = \"{}/call\"\nencoding = \"json\"\nbody = '{{\"to\": \"{{phone}}\"}}'\n",
        webhook_sink(&receiver.base_url),
        gateway.base_url
    );
    let otpd = start_with(dir.path(), &toml, &[]);

    let approved = send_sms(&otpd, "77011110001", "1234", 300);
    assert_eq!(check_sms(&otpd, "77011110001", "1234"), 200);

    let locked = send_sms(&otpd, "77011110002", "1234", 300);
    check_sms(&otpd, "77011110002", "0000");
    check_sms(&otpd, "77011110002", "0000");

    let expired = send_sms(&otpd, "77011110003", "1234", 1);

    let canceled = send_sms(&otpd, "77011110004", "1234", 300);
    let (status, body) = otpd.request(
        "POST",
        &format!("/verifications/{canceled}/cancel"),
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");

    let replaced = send_sms(&otpd, "77011110005", "1234", 300);
    let replacement = send_sms(&otpd, "77011110005", "5678", 300);

    let body = json!({"phone": "77011110006", "password": "1234", "lifetime": 300, "message": "Code {password}"});
    let (status, answer) = otpd.request("POST", "/call", &[JSON], &body.to_string());
    assert_eq!(status, 502, "the gateway refuses: {answer}");
    let failed = answer["id"].as_str().map(str::to_owned);

    // pending+approved, pending+max_attempts_reached, pending+expired,
    // pending+canceled, pending+canceled (replaced), pending (the
    // replacement), and for the failed call delivery.failed+failed.
    let expected = 2 + 2 + 2 + 2 + 2 + 1 + 2;
    let got = wait_for(&receiver, expected, 30);
    verify_all(&got);
    for r in &got {
        assert_eq!(r.header("webhook-id"), r.json()["id"].as_str());
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
        // Ids are random hex and may hold "1234" by chance; every other
        // value must not (a leak would be a value or a message text).
        assert!(
            !leaks_code(&r.json(), &["1234", "5678"]),
            "a code leaked: {}",
            r.body_text()
        );
    }

    for (id, status, last) in [
        (&approved, "approved", "otpd.verification.approved"),
        (
            &locked,
            "max_attempts_reached",
            "otpd.verification.max_attempts_reached",
        ),
        (&expired, "expired", "otpd.verification.expired"),
        (&canceled, "canceled", "otpd.verification.canceled"),
        (&replaced, "canceled", "otpd.verification.canceled"),
    ] {
        assert_eq!(status_of(&otpd, id)["status"], status, "{id}");
        let events = events_of(&got, id);
        let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
        let mut sorted = types.clone();
        sorted.sort();
        let mut want = vec!["otpd.verification.pending", last];
        want.sort();
        assert_eq!(sorted, want, "{id}: {types:?}");
        let final_data = &events.iter().find(|(t, _)| t == last).expect("final").1;
        assert_eq!(final_data["status"], status);
        assert_eq!(final_data["id"], id.as_str());
    }
    assert_eq!(status_of(&otpd, &canceled)["reason"], "api");
    assert_eq!(status_of(&otpd, &replaced)["reason"], "replaced");
    assert_eq!(
        events_of(&got, &replacement).len(),
        1,
        "the replacement is pending"
    );

    match failed {
        Some(id) => {
            assert_eq!(status_of(&otpd, &id)["status"], "failed");
            let mut types: Vec<String> = events_of(&got, &id).into_iter().map(|(t, _)| t).collect();
            types.sort();
            assert_eq!(types, ["otpd.delivery.failed", "otpd.verification.failed"]);
        }
        None => {
            // A 502 without an id: find the failed call's events instead.
            let failed: Vec<_> = got
                .iter()
                .map(Recorded::json)
                .filter(|ce| ce["data"]["channel"] == "call")
                .collect();
            let mut types: Vec<&str> = failed.iter().filter_map(|ce| ce["type"].as_str()).collect();
            types.sort();
            assert_eq!(types, ["otpd.delivery.failed", "otpd.verification.failed"]);
            let id = failed[0]["subject"].as_str().expect("subject");
            assert_eq!(status_of(&otpd, id)["status"], "failed");
        }
    }
    assert_eq!(got.len(), expected, "nothing more, nothing twice");
}

/// `kill -9` of otpd under load (four clients sending and approving),
/// with the receiver down; a restart with the receiver up delivers the
/// event of every transition the API acknowledged before the kill.
/// `env` picks the store.
fn events_survive_a_kill_9(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let down = format!("http://127.0.0.1:{}/", otp_testkit::closed_port());
    let otpd = start_with(dir.path(), &webhook_sink(&down), env);
    let addr = otpd.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let stop = stop.clone();
            let sent = sent.clone();
            std::thread::spawn(move || {
                // (id, approval acknowledged) of every acknowledged send.
                let mut acked: Vec<(String, bool)> = Vec::new();
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let phone = format!("77012{c}{i:05}");
                    let send = json!({"phone": phone, "password": "4321", "lifetime": 300, "message": "Code {password}"});
                    let Ok((200, body)) = try_http(addr, "POST", "/sms", &[JSON], &send.to_string()) else {
                        break;
                    };
                    let id = serde_json::from_str::<Value>(&body).expect("JSON")["id"]
                        .as_str()
                        .expect("id")
                        .to_owned();
                    acked.push((id, false));
                    sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let check = json!({"phone": phone, "password": "4321"});
                    match try_http(addr, "POST", "/sms/check", &[JSON], &check.to_string()) {
                        Ok((200, _)) => {
                            if let Some(last) = acked.last_mut() {
                                last.1 = true;
                            }
                        }
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    // Killed mid-flight, once there is something to lose.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sent.load(std::sync::atomic::Ordering::SeqCst) < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    otpd.kill_9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked: Vec<(String, bool)> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    assert!(
        acked.len() >= 20,
        "only {} sends before the kill",
        acked.len()
    );
    let receiver = FakePeer::start_blocking(Reply::json(200, "{}"));
    let otpd = start_with(dir.path(), &webhook_sink(&receiver.base_url), env);
    // The events owed: each acknowledged send's `pending`, and each
    // acknowledged approval's `approved`. Others may arrive too (a send
    // the kill cut off after its commit), so wait for these, not for a
    // count. Events leased by the killed instance wait out their 30 s
    // lease.
    let missing = |got: &[Recorded]| -> Vec<String> {
        let mut missing = Vec::new();
        for (id, approved) in &acked {
            let types: Vec<String> = events_of(got, id).into_iter().map(|(t, _)| t).collect();
            if !types.iter().any(|t| t == "otpd.verification.pending") {
                missing.push(format!("{id}: pending (has {types:?})"));
            }
            if *approved && !types.iter().any(|t| t == "otpd.verification.approved") {
                missing.push(format!("{id}: approved (has {types:?})"));
            }
        }
        missing
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let got = loop {
        let got = receiver.received();
        if missing(&got).is_empty() || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    verify_all(&got);
    let missing = missing(&got);
    assert!(missing.is_empty(), "events never arrived: {missing:?}");
    drop(otpd);
}

#[test]
fn events_of_acknowledged_transitions_survive_a_kill_9_on_the_embedded_store() {
    events_survive_a_kill_9(&[]);
}

#[test]
fn events_of_acknowledged_transitions_survive_a_kill_9_on_redis() {
    let redis = otp_testkit::redis::RedisServer::start_with_aof();
    let url = redis.url();
    events_survive_a_kill_9(&[
        ("OTP_STORE__KIND", "redis"),
        ("OTP_STORE__URL", url.as_str()),
        ("OTP_SECURITY__SECRET", REDIS_SECRET),
    ]);
}

const REDIS_SECRET: &str = "e2e-events-secret-0123456789abcdef";

#[test]
fn two_instances_on_one_redis_deliver_every_event_exactly_once_and_one_expiry_each() {
    let redis = otp_testkit::redis::RedisServer::start();
    let url = redis.url();
    let receiver = FakePeer::start_blocking(Reply::json(204, ""));
    let toml = format!(
        "{}[otp]\nlifetime_min = 1\n[fraud]\nmode = \"off\"\n",
        webhook_sink(&receiver.base_url)
    );
    let env = [
        ("OTP_STORE__KIND", "redis"),
        ("OTP_STORE__URL", url.as_str()),
        ("OTP_SECURITY__SECRET", REDIS_SECRET),
    ];
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let a = start_with(dir_a.path(), &toml, &env);
    let b = start_with(dir_b.path(), &toml, &env);

    // Even ones are approved on the other instance; odd ones expire.
    let mut approved = Vec::new();
    let mut expiring = Vec::new();
    for i in 0..200 {
        let (sender, checker) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let phone = format!("7701333{i:04}");
        let id = send_sms(sender, &phone, "2468", 4);
        if i % 2 == 0 {
            assert_eq!(check_sms(checker, &phone, "2468"), 200);
            approved.push(id);
        } else {
            expiring.push(id);
        }
    }

    let got = wait_for(&receiver, 400, 60);
    // Anything sent twice would arrive within a few more rounds.
    std::thread::sleep(Duration::from_secs(3));
    let got_all = receiver.received();
    assert_eq!(
        got.len(),
        400,
        "pending + one terminal event per verification"
    );
    assert_eq!(got_all.len(), 400, "and nothing twice");
    let mut ids: Vec<String> = got_all
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 400);
    verify_all(&got_all);
    for id in &approved {
        let mut types: Vec<String> = events_of(&got_all, id)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        types.sort();
        assert_eq!(
            types,
            ["otpd.verification.approved", "otpd.verification.pending"],
            "{id}"
        );
    }
    for id in &expiring {
        let mut types: Vec<String> = events_of(&got_all, id)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        types.sort();
        assert_eq!(
            types,
            ["otpd.verification.expired", "otpd.verification.pending"],
            "{id}"
        );
        assert_eq!(status_of(&a, id)["status"], "expired");
    }
    drop((a, b));
}

#[test]
fn the_redis_stream_sink_carries_the_events_for_a_consumer_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = otp_testkit::redis::RedisServer::start();
    let toml = format!(
        "[[events.sinks]]\nkind = \"redis-stream\"\nurl = \"{}\"\nstream = \"otpd:events\"\ntypes = [\"otpd.verification.approved\", \"otpd.verification.pending\"]\n",
        redis.url()
    );
    let otpd = start_with(dir.path(), &toml, &[]);
    let id = send_sms(&otpd, "77013330001", "9876", 300);
    assert_eq!(check_sms(&otpd, "77013330001", "9876"), 200);

    let cli = |args: &[&str]| -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string(), "--raw"])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while cli(&["XLEN", "otpd:events"]).trim() != "2" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        cli(&["XGROUP", "CREATE", "otpd:events", "app", "0"]).trim(),
        "OK"
    );
    let read = cli(&[
        "XREADGROUP",
        "GROUP",
        "app",
        "c1",
        "COUNT",
        "10",
        "STREAMS",
        "otpd:events",
        ">",
    ]);
    let events: Vec<Value> = read
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.is_object())
        .collect();
    assert_eq!(events.len(), 2, "{read}");
    let mut types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    types.sort();
    assert_eq!(
        types,
        ["otpd.verification.approved", "otpd.verification.pending"]
    );
    for e in &events {
        assert_eq!(e["subject"], id.as_str());
        assert_eq!(e["specversion"], "1.0");
        assert!(read.contains(e["id"].as_str().expect("id")), "the id field");
    }
    drop(otpd);
}

#[test]
fn trace_logs_of_failing_deliveries_name_the_sink_but_never_its_secret_url_or_a_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = FakePeer::start_blocking(Reply::json(503, ""));
    let url = format!("{}/hook?token=url-token-SECRET-0042", receiver.base_url);
    let otpd = start_with(dir.path(), &webhook_sink(&url), &[("RUST_LOG", "trace")]);
    send_sms(&otpd, "77014440001", "864209", 300);

    let got = wait_for(&receiver, 3, 20);
    assert!(got.len() >= 3, "retried: {}", got.len());
    let logs = otpd.stderr_once("event delivery failed");
    assert!(logs.contains("event delivery failed"), "{logs}");
    assert!(logs.contains("app"), "the sink is named");
    for secret in [
        SECRET,
        SECRET.trim_start_matches("whsec_"),
        "url-token-SECRET-0042",
        "864209",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
    for r in &got {
        assert!(!r.body_text().contains("864209"), "the code is in an event");
    }
}

/// The receiver is down (connection refused) for 10 s while verifications
/// change, then comes back on the same address: every event arrives.
#[test]
fn a_receiver_down_for_10_s_gets_every_event_once_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = otp_testkit::closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let otpd = start_with(dir.path(), &webhook_sink(&url), &[]);
    let mut owed = Vec::new();
    for i in 0..5 {
        let phone = format!("7701555{i:04}");
        let id = send_sms(&otpd, &phone, "1234", 300);
        assert_eq!(check_sms(&otpd, &phone, "1234"), 200);
        owed.push(id);
    }
    std::thread::sleep(Duration::from_secs(10));
    let receiver = FakePeer::start_blocking_on(port, Reply::json(204, ""));
    // Retries back off (1 s, 2 s, 4 s, 8 s, ... with jitter), so the
    // last failed try may have been scheduled up to ~16 s out; on a
    // loaded 2-core CI box (the whole workspace's tests at once) the first
    // event's next try came later than 40 s once: 60 s of patience.
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = receiver.received();
        let done = owed.iter().all(|id| {
            let types: Vec<String> = events_of(&got, id).into_iter().map(|(t, _)| t).collect();
            types.iter().any(|t| t == "otpd.verification.pending")
                && types.iter().any(|t| t == "otpd.verification.approved")
        });
        if done || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    verify_all(&got);
    for id in &owed {
        let types: Vec<String> = events_of(&got, id).into_iter().map(|(t, _)| t).collect();
        assert!(
            types.contains(&"otpd.verification.pending".to_owned())
                && types.contains(&"otpd.verification.approved".to_owned()),
            "{id}: {types:?}"
        );
    }
    drop(otpd);
}
