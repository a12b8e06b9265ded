//! otpd under load and abuse, through the real binary on loopback: a
//! SIGKILL under many concurrent writers (the embedded store's group
//! commit must not answer before it is durable), and clients that open
//! connections and never finish a request.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otp_listener::{default_max_connections, raise_open_file_limit};

use crate::support::{try_http, Otpd};

const JSON: (&str, &str) = ("Content-Type", "application/json");
const MAX_ATTEMPTS: u32 = 1000;

fn sms(phone: &str, password: &str) -> String {
    format!(r#"{{"phone": "{phone}", "password": "{password}"}}"#)
}

/// Limits off, so that the load is never refused.
const NO_LIMITS: [(&str, &str); 7] = [
    ("OTP_LIMITS__COOLDOWN_SECS", "0"),
    ("OTP_LIMITS__SENDS_PER_WINDOW", "0"),
    ("OTP_LIMITS__USER_SENDS_PER_WINDOW", "0"),
    ("OTP_LIMITS__SMS_PER_HOUR", "0"),
    ("OTP_LIMITS__TARGET_FAILURES_PER_WINDOW", "0"),
    ("OTP_OTP__MAX_ATTEMPTS", "1000"),
    // Load that never enters its codes is what the fraud guard blocks.
    ("OTP_FRAUD__MODE", "off"),
];

/// What one client saw acknowledged before otpd died.
#[derive(Default)]
struct Acked {
    /// Phones whose send was answered 200 (password "Sent123").
    sends: Vec<String>,
    /// Wrong checks answered 422, per phone.
    attempts: HashMap<String, u32>,
    /// Phones whose right check was answered 200 (approved).
    approvals: Vec<String>,
}

const THREADS: usize = 16;
/// Pre-sent codes per client: checked wrong (attempts) or right (approvals).
const PER_THREAD: usize = 20;

fn attempt_phone(t: usize, j: usize) -> String {
    format!("+7701{:02}{j:05}", 40 + t)
}

fn approve_phone(t: usize, j: usize) -> String {
    format!("+7701{:02}{j:05}", 70 + t)
}

/// One client: a send, a wrong check and (every third round) a right
/// check, in turn, until stopped or otpd dies.
fn client(addr: SocketAddr, t: usize, stop: &AtomicBool, acks: &AtomicUsize) -> Acked {
    let mut acked = Acked::default();
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let phone = format!("+7701{t:02}{i:05}");
        match try_http(addr, "POST", "/sms", &[JSON], &sms(&phone, "Sent123")) {
            Ok((200, _)) => acked.sends.push(phone),
            Ok((status, body)) => panic!("send answered {status}: {body}"),
            Err(_) => break, // otpd died mid-request: not acknowledged
        }
        let target = attempt_phone(t, i % PER_THREAD);
        match try_http(
            addr,
            "POST",
            "/sms/check",
            &[JSON],
            &sms(&target, "Wrong99"),
        ) {
            Ok((422, _)) => *acked.attempts.entry(target).or_default() += 1,
            Ok((status, body)) => panic!("wrong check answered {status}: {body}"),
            Err(_) => break,
        }
        if i % 3 == 0 && i / 3 < PER_THREAD {
            let target = approve_phone(t, i / 3);
            match try_http(
                addr,
                "POST",
                "/sms/check",
                &[JSON],
                &sms(&target, "Right12"),
            ) {
                Ok((200, _)) => acked.approvals.push(target),
                Ok((status, body)) => panic!("right check answered {status}: {body}"),
                Err(_) => break,
            }
        }
        acks.fetch_add(1, Ordering::SeqCst);
        i += 1;
    }
    acked
}

#[test]
fn kill_9_under_concurrent_sends_and_checks_loses_no_acknowledged_write_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &NO_LIMITS);
    for t in 0..THREADS {
        for j in 0..PER_THREAD {
            for (phone, password) in [
                (attempt_phone(t, j), "Right12"),
                (approve_phone(t, j), "Right12"),
            ] {
                let (status, body) = otpd.request("POST", "/sms", &[JSON], &sms(&phone, password));
                assert_eq!(status, 200, "{body}");
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let addr = otpd.addr;
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stop, acks) = (stop.clone(), acks.clone());
            std::thread::spawn(move || client(addr, t, &stop, &acks))
        })
        .collect();
    // Kill it mid-stream, once every client has had a few rounds (a busy
    // CI machine may need longer than a quiet one).
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.load(Ordering::SeqCst) < THREADS * 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    otpd.kill_9();
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<Acked> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let sends: Vec<&String> = acked.iter().flat_map(|a| &a.sends).collect();
    let approvals: Vec<&String> = acked.iter().flat_map(|a| &a.approvals).collect();
    let attempts: Vec<(&String, u32)> = acked
        .iter()
        .flat_map(|a| a.attempts.iter().map(|(p, n)| (p, *n)))
        .collect();
    let counted: u32 = attempts.iter().map(|(_, n)| n).sum();
    assert!(
        sends.len() >= 100 && counted >= 100 && approvals.len() >= 30,
        "too little load to mean anything: {} sends, {counted} attempts, {} approvals",
        sends.len(),
        approvals.len()
    );

    let otpd = Otpd::start(dir.path(), &NO_LIMITS);
    for phone in &sends {
        let (status, body) = otpd.request("POST", "/sms/check", &[JSON], &sms(phone, "Sent123"));
        assert_eq!(
            status, 200,
            "the send to {phone} was acknowledged, then lost: {body}"
        );
    }
    for phone in &approvals {
        let (status, body) = otpd.request("POST", "/sms/check", &[JSON], &sms(phone, "Right12"));
        assert_eq!(
            status, 404,
            "{phone} was approved, yet its code came back after the crash: {body}"
        );
    }
    for (phone, n) in &attempts {
        let (status, body) = otpd.request("POST", "/sms/check", &[JSON], &sms(phone, "Wrong99"));
        assert_eq!(status, 422, "{body}");
        let left = body["attempts_left"].as_u64().expect("attempts_left");
        // This check counts one more; an attempt in flight at the kill,
        // never answered, may have been counted too.
        let acked_left = u64::from(MAX_ATTEMPTS - n - 1);
        assert!(
            left == acked_left || left + 1 == acked_left,
            "{phone}: {n} wrong checks were acknowledged, yet {left} attempts are left (want {acked_left})"
        );
    }
    eprintln!(
        "survived the kill: {} sends, {counted} counted attempts on {} codes, {} approvals",
        sends.len(),
        attempts.len(),
        approvals.len()
    );
}

/// How many file descriptors this test process may use: its soft limit,
/// raised to the hard one.
fn open_files_here() -> u64 {
    raise_open_file_limit().expect("rlimit").soft
}

/// Opens `n` connections that each send half of a request's headers.
fn half_open(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    half_open_each(addr, n).collect()
}

/// As [`half_open`], one at a time.
fn half_open_each(addr: SocketAddr, n: usize) -> impl Iterator<Item = TcpStream> {
    (0..n).map(move |i| {
        let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: otpd\r\nX-Slow: ")
            .expect("half a request");
        s
    })
}

/// Whether the server has closed `s` (end of stream or reset), without
/// waiting.
fn closed_now(s: &TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 512];
    let closed = match (&mut &*s).read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false, // an answer (e.g. 408) on a still open connection
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    s.set_nonblocking(false).expect("blocking");
    closed
}

/// Whether the server closes `s` within `within`.
fn closed_within(s: &TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if closed_now(s) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/healthz` on a new connection answers within a second of its
/// request. The connect is not timed: loopback here admits only a few
/// hundred new connections a second, so under the flood a connect may
/// wait for a SYN retransmission, before otpd sees anything.
fn healthz_answers_quickly(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).expect("connect for /healthz");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: otpd\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("/healthz answers");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "/healthz took {:?}",
        started.elapsed()
    );
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// A half-sent request, and what the client saw of it.
struct Slow {
    stream: TcpStream,
    opened: Instant,
    closed: Option<Instant>,
}

#[test]
fn half_sent_requests_are_dropped_after_the_header_timeout_while_healthz_answers() {
    // Thousands, as many as this machine's open-file limit allows.
    let n = usize::try_from(open_files_here().saturating_sub(200).min(2000)).expect("count");
    assert!(
        n >= 500,
        "the open-file limit is too low for this test: {n}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // The default server.header_timeout_secs.
    let timeout = Duration::from_secs(10);
    let otpd = Otpd::start(dir.path(), &[]);
    let rss_before = rss_kb(otpd.pid());
    // Several openers: loopback here accepts only a few hundred new
    // connections a second, so opening them takes longer than the
    // timeout. Each connection is judged by its own age.
    let slow = Arc::new(std::sync::Mutex::new(Vec::<Slow>::new()));
    let addr = otpd.addr;
    let openers: Vec<_> = (0..8)
        .map(|_| {
            let slow = slow.clone();
            std::thread::spawn(move || {
                for stream in half_open_each(addr, n / 8) {
                    let opened = Instant::now();
                    slow.lock().expect("lock").push(Slow {
                        stream,
                        opened,
                        closed: None,
                    });
                }
            })
        })
        .collect();
    let (mut most_held, mut rss_held, mut answered) = (0, 0, 0);
    let mut last_healthz = Instant::now();
    loop {
        let now = Instant::now();
        let (held, all_closed) = {
            let mut slow = slow.lock().expect("lock");
            for s in slow.iter_mut().filter(|s| s.closed.is_none()) {
                if closed_now(&s.stream) {
                    s.closed = Some(now);
                }
            }
            let held = slow.iter().filter(|s| s.closed.is_none()).count();
            (held, slow.len() == n / 8 * 8 && held == 0)
        };
        if held > most_held {
            most_held = held;
            rss_held = rss_kb(otpd.pid());
        }
        if now - last_healthz > Duration::from_millis(500) && held > 0 {
            healthz_answers_quickly(otpd.addr);
            answered += 1;
            last_healthz = Instant::now();
        }
        if all_closed {
            break;
        }
        let newest = slow.lock().expect("lock").iter().map(|s| s.opened).max();
        assert!(
            newest.is_none_or(|t| t.elapsed() < timeout + Duration::from_secs(5)),
            "{held} half-sent requests still hold a connection past the timeout"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for o in openers {
        o.join().expect("opener");
    }
    let slow = slow.lock().expect("lock");
    for s in slow.iter() {
        let age = s.closed.expect("closed") - s.opened;
        assert!(
            age >= timeout - Duration::from_millis(300),
            "a connection was closed after {age:?}, before the {timeout:?} timeout"
        );
    }
    assert!(
        most_held >= n / 4,
        "too few held at once to mean anything: {most_held}"
    );
    assert!(answered >= 3, "/healthz was asked only {answered} times");
    eprintln!(
        "{n} half-sent requests, up to {most_held} held at once: otpd RSS {} MB before, {} MB holding them; /healthz answered {answered} times meanwhile",
        rss_before / 1024,
        rss_held / 1024
    );
    healthz_answers_quickly(otpd.addr);
}

#[test]
fn at_the_connection_cap_half_sent_requests_make_room_for_new_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(
        dir.path(),
        &[
            ("OTP_SERVER__MAX_CONNECTIONS", "100"),
            ("OTP_SERVER__HEADER_TIMEOUT_SECS", "60"),
        ],
    );
    let mut slow = Vec::new();
    for _ in 0..5 {
        slow.extend(half_open(otpd.addr, 100));
        // Each new client past the cap displaces the oldest half-sent one.
        healthz_answers_quickly(otpd.addr);
    }
    std::thread::sleep(Duration::from_millis(300));
    let closed: Vec<bool> = slow.iter().map(closed_now).collect();
    let open = closed.iter().filter(|c| !**c).count();
    assert!(open <= 100, "{open} connections open past a cap of 100");
    assert!(
        closed[..300].iter().all(|c| *c),
        "the oldest half-sent requests were not the ones shed"
    );
    assert!(
        !closed[450..].iter().all(|c| *c),
        "the newest connections were shed too: the cap closes more than it must"
    );
    assert!(
        otpd.stderr_text().contains("at server.max_connections"),
        "the cap is logged:\n{}",
        otpd.stderr_text()
    );
}

#[test]
fn a_request_whose_body_stops_midway_is_dropped_like_a_slow_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[("OTP_SERVER__HEADER_TIMEOUT_SECS", "2")]);
    let mut trickle = TcpStream::connect(otpd.addr).expect("connect");
    trickle
        .write_all(b"POST /sms HTTP/1.1\r\nHost: otpd\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"phone\": ")
        .expect("headers and part of the body");
    let sent = Instant::now();
    // A byte a second does not buy time: the body has its own deadline.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        if trickle.write_all(b" ").is_err() {
            break;
        }
    }
    assert!(
        closed_within(&trickle, Duration::from_secs(3)),
        "a trickled body held its connection"
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(1800),
        "closed too early"
    );
    healthz_answers_quickly(otpd.addr);
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[("OTP_SERVER__IDLE_TIMEOUT_SECS", "1")]);
    let request = b"GET /healthz HTTP/1.1\r\nHost: otpd\r\n\r\n";
    let answer = |s: &mut TcpStream| {
        s.write_all(request).expect("request");
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    };
    let mut busy = TcpStream::connect(otpd.addr).expect("connect");
    let mut idle = TcpStream::connect(otpd.addr).expect("connect");
    answer(&mut idle);
    // A request every 400 ms keeps a connection open past the timeout.
    for _ in 0..5 {
        answer(&mut busy);
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(!closed_now(&busy), "a connection in use was closed");
    assert!(
        closed_within(&idle, Duration::from_secs(2)),
        "an idle keep-alive connection outlived server.idle_timeout_secs"
    );
}

#[test]
fn otpd_raises_its_soft_open_file_limit_to_the_hard_one_and_caps_connections_below_it() {
    let hard = open_files_here();
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start_with_soft_open_files(dir.path(), &[], 256);
    let log = otpd.stderr_text();
    let line = log
        .lines()
        .find(|l| l.contains("open-file limit"))
        .unwrap_or_else(|| panic!("no open-file limit line:\n{log}"));
    assert!(line.contains("soft_before=256"), "{line}");
    assert!(line.contains(&format!("soft={hard} ")), "{line}");
    let cap = default_max_connections(hard);
    assert!(
        log.contains(&format!("max_connections={cap} ")),
        "the cap is derived from the raised limit ({cap}):\n{log}"
    );
    healthz_answers_quickly(otpd.addr);
}
