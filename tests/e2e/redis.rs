//! Many stateless otpd instances on one Redis (or Redis Cluster): the
//! binaries, real redis-server processes the harness starts on free
//! ports, and faults made on purpose (Redis stopped, otpd killed -9).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otp_testkit::redis::{RedisCluster, RedisServer};
use serde_json::json;

use crate::support::{http, try_http, Otpd};

const JSON: (&str, &str) = ("Content-Type", "application/json");
const SECRET: &str = "e2e-shared-secret-0123456789abcdef";

fn on_redis(dir: &std::path::Path, url: &str, extra: &[(&str, &str)]) -> Otpd {
    let mut env = vec![
        ("OTP_STORE__KIND", "redis"),
        ("OTP_STORE__URL", url),
        ("OTP_SECURITY__SECRET", SECRET),
    ];
    env.extend_from_slice(extra);
    Otpd::start(dir, &env)
}

/// Two otpd instances on one fresh Redis; all of it stops on drop.
struct Pair {
    a: Otpd,
    b: Otpd,
    _redis: RedisServer,
    _dir: tempfile::TempDir,
}

fn two_instances() -> Pair {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let a = on_redis(dir.path(), &redis.url(), &[]);
    let b = on_redis(dir.path(), &redis.url(), &[]);
    Pair {
        a,
        b,
        _redis: redis,
        _dir: dir,
    }
}

fn sms(phone: &str, password: &str) -> String {
    format!(r#"{{"phone": "{phone}", "password": "{password}"}}"#)
}

#[test]
fn a_code_sent_on_one_instance_is_checked_on_another() {
    let Pair { a, b, .. } = &two_instances();
    assert_eq!(
        a.request("POST", "/sms", &[JSON], &sms("77011234567", "12345"))
            .0,
        200
    );
    let (status, body) = b.request("GET", "/sms/check", &[], &sms("77011234567", "12345"));
    assert_eq!((status, body), (200, json!({"status": "approved"})));
    assert_eq!(
        a.request("GET", "/sms/check", &[], &sms("77011234567", "12345"))
            .0,
        404
    );
}

#[test]
fn send_caps_and_lockout_hold_across_instances() {
    let Pair { a, b, .. } = &two_instances();
    assert_eq!(
        a.request("POST", "/sms", &[JSON], &sms("77011234567", "12345"))
            .0,
        200
    );
    let (status, body) = b.request("POST", "/sms", &[JSON], &sms("77011234567", "67890"));
    assert_eq!(
        status, 429,
        "the cooldown holds on the other instance: {body}"
    );
    // Five wrong guesses, alternating instances, lock the code for both.
    for i in 0..5 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (status, body) =
            node.request("POST", "/sms/check", &[JSON], &sms("77011234567", "00000"));
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["attempts_left"], 4 - i);
    }
    for node in [&a, &b] {
        let (status, body) =
            node.request("POST", "/sms/check", &[JSON], &sms("77011234567", "12345"));
        assert_eq!(
            (status, body["error"].as_str()),
            (429, Some("too_many_attempts"))
        );
    }
}

#[test]
fn of_100_concurrent_correct_checks_over_two_instances_exactly_one_is_approved() {
    let Pair { a, b, .. } = &two_instances();
    assert_eq!(
        a.request("POST", "/sms", &[JSON], &sms("77011234567", "12345"))
            .0,
        200
    );
    let addrs = [a.addr, b.addr];
    let approved = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let (addr, approved, statuses) = (addrs[i % 2], approved.clone(), statuses.clone());
            std::thread::spawn(move || {
                let (status, body) =
                    http(addr, "GET", "/sms/check", &[], &sms("77011234567", "12345"));
                if status == 200 {
                    approved.fetch_add(1, Ordering::SeqCst);
                }
                // The body too, so a failure says what went wrong.
                let error = (status != 200 && status != 404).then_some(body);
                statuses.lock().expect("lock").push((status, error));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let statuses = statuses.lock().expect("lock");
    assert_eq!(approved.load(Ordering::SeqCst), 1, "{statuses:?}");
    let odd: Vec<_> = statuses.iter().filter(|(_, e)| e.is_some()).collect();
    assert!(odd.is_empty(), "answers other than 200 and 404: {odd:?}");
}

#[test]
fn redis_down_is_a_quick_503_and_otpd_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = on_redis(dir.path(), &redis.url(), &[]);
    assert_eq!(otpd.request("GET", "/readyz", &[], "").0, 200);
    redis.kill();
    for (method, path, body) in [
        ("GET", "/readyz", String::new()),
        ("POST", "/sms", sms("77011234567", "12345")),
        ("POST", "/sms/check", sms("77011234567", "12345")),
    ] {
        let started = Instant::now();
        let (status, answer) = otpd.request(method, path, &[JSON], &body);
        let took = started.elapsed();
        assert_eq!(status, 503, "{path}: {answer}");
        assert_eq!(answer["error"], "store_unavailable");
        assert!(took <= Duration::from_millis(2500), "{path} took {took:?}");
    }
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = otpd.request("POST", "/sms", &[JSON], &sms("77011234567", "12345"));
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "otpd did not recover after Redis returned"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(otpd.request("GET", "/readyz", &[], "").0, 200);
    assert_eq!(
        otpd.request("GET", "/sms/check", &[], &sms("77011234567", "12345"))
            .0,
        200
    );
}

#[test]
fn with_aof_a_code_survives_a_redis_restart() {
    let mut redis = RedisServer::start_with_aof();
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = on_redis(dir.path(), &redis.url(), &[]);
    assert_eq!(
        otpd.request("POST", "/sms", &[JSON], &sms("77011234567", "12345"))
            .0,
        200
    );
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = otpd.request("GET", "/sms/check", &[], &sms("77011234567", "12345"));
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "only an outage may delay it: {body}");
        assert!(
            Instant::now() < deadline,
            "the code was not checkable after the restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends codes from 4 threads until stopped; returns the phones whose
/// send was acknowledged.
fn load(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..4)
        .map(|t| {
            let (stop, acks) = (stop.clone(), acks.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let phone = format!("+7701{t}{i:06}");
                    i += 1;
                    match try_http(addr, "POST", "/sms", &[JSON], &sms(&phone, "Kill9Pw")) {
                        Ok((200, _)) => {
                            acked.push(phone);
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(_) => break, // the server died mid-request
                    }
                }
                acked
            })
        })
        .collect()
}

fn kill_9_under_load_loses_no_code(env: &[(&str, &str)], dir: &std::path::Path) {
    let otpd = Otpd::start(dir, env);
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let workers = load(otpd.addr, stop.clone(), acks.clone());
    // Kill it mid-stream, once it has acknowledged enough to mean
    // something (a busy CI machine may need longer than a quiet one).
    let deadline = Instant::now() + Duration::from_secs(20);
    while acks.load(Ordering::SeqCst) < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    otpd.kill_9();
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    assert!(
        acked.len() >= 20,
        "too little load to mean anything: {}",
        acked.len()
    );
    let otpd = Otpd::start(dir, env);
    for phone in &acked {
        let (status, body) = otpd.request("POST", "/sms/check", &[JSON], &sms(phone, "Kill9Pw"));
        assert_eq!(status, 200, "{phone} was acknowledged, then lost: {body}");
    }
}

#[test]
fn kill_9_of_otpd_under_load_loses_no_acknowledged_code_on_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = redis.url();
    let env = [
        ("OTP_STORE__KIND", "redis"),
        ("OTP_STORE__URL", url.as_str()),
        ("OTP_SECURITY__SECRET", SECRET),
        ("OTP_LIMITS__SMS_PER_HOUR", "0"),
    ];
    kill_9_under_load_loses_no_code(&env, dir.path());
}

#[test]
fn kill_9_of_otpd_under_load_loses_no_acknowledged_code_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("OTP_LIMITS__SMS_PER_HOUR", "0")];
    kill_9_under_load_loses_no_code(&env, dir.path());
}

#[test]
fn two_instances_share_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let nodes = cluster.node_urls().join(",");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("OTP_STORE__KIND", "redis-cluster"),
        ("OTP_STORE__NODES", nodes.as_str()),
        ("OTP_SECURITY__SECRET", SECRET),
    ];
    let a = Otpd::start(dir.path(), &env);
    let b = Otpd::start(dir.path(), &env);
    for i in 0..20 {
        let phone = format!("+770112345{i:02}");
        assert_eq!(
            a.request("POST", "/sms", &[JSON], &sms(&phone, "12345")).0,
            200
        );
        assert_eq!(
            b.request("GET", "/sms/check", &[], &sms(&phone, "12345")).0,
            200,
            "{phone}"
        );
    }
    assert_eq!(b.request("GET", "/readyz", &[], "").0, 200);
}

#[test]
fn one_idempotency_key_sends_once_across_two_instances() {
    let pair = Arc::new(two_instances());
    let body = r#"{"phone": "77011234567"}"#;
    let mut threads = Vec::new();
    for i in 0..10 {
        let pair = pair.clone();
        threads.push(std::thread::spawn(move || {
            let otpd = if i % 2 == 0 { &pair.a } else { &pair.b };
            otpd.request(
                "POST",
                "/sms",
                &[JSON, ("Idempotency-Key", "e2e-signup-1")],
                body,
            )
        }));
    }
    let mut answers = Vec::new();
    for t in threads {
        let (status, answer) = t.join().expect("thread");
        match status {
            200 => answers.push(answer),
            409 => assert_eq!(answer["error"], "idempotency_in_progress", "{answer}"),
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert!(!answers.is_empty());
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    // One delivery in all: the dev sinks of both instances together.
    std::thread::sleep(Duration::from_millis(300));
    let delivered = pair.a.outbox().len() + pair.b.outbox().len();
    assert_eq!(delivered, 1, "one code, one delivery");
    // The verification is one record, visible from either instance, and
    // a cancel on one is seen by the other.
    let id = answers[0]["id"].as_str().expect("id").to_owned();
    let (status, record) = pair
        .b
        .request("GET", &format!("/verifications/{id}"), &[], "");
    assert_eq!(
        (status, &record["status"]),
        (200, &json!("pending")),
        "{record}"
    );
    let (status, _) = pair
        .a
        .request("POST", &format!("/verifications/{id}/cancel"), &[], "");
    assert_eq!(status, 200);
    let (_, record) = pair
        .b
        .request("GET", &format!("/verifications/{id}"), &[], "");
    assert_eq!(record["status"], "canceled", "{record}");
    assert_eq!(record["reason"], "api", "{record}");
}
