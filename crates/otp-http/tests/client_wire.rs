//! The client's settings, seen from real loopback peers: what arrives on
//! the wire, and what the client does when a peer redirects or stalls.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use otp_testkit::{chain, FakePeer, Reply};

/// Long enough for loopback, short enough for a test.
const TIMEOUT: Duration = Duration::from_millis(300);

/// Far past [`TIMEOUT`]: a request still running then was never bounded.
const NEVER: Duration = Duration::from_secs(10);

#[tokio::test]
async fn requests_carry_the_otpd_user_agent() {
    let peer = FakePeer::start(Reply::json(200, "{}")).await;
    let client = otp_http::client(NEVER).expect("client");

    let answer = client
        .get(format!("{}/ping", peer.base_url))
        .send()
        .await
        .expect("answer");

    assert_eq!(answer.status(), 200);
    let got = peer.only_request();
    assert_eq!(
        got.header("user-agent"),
        Some(concat!("otpd/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        otp_http::USER_AGENT,
        format!("otpd/{}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn a_redirect_is_returned_not_followed() {
    let elsewhere = FakePeer::start(Reply::json(200, "{}")).await;
    let peer = FakePeer::start(
        Reply::json(302, "").with_header("Location", &format!("{}/stolen", elsewhere.base_url)),
    )
    .await;
    let client = otp_http::client(NEVER).expect("client");

    let answer = client
        .post(format!("{}/send", peer.base_url))
        .header("Authorization", "Bearer secret")
        .body("to=+1&text=1234")
        .send()
        .await
        .expect("answer");

    assert_eq!(answer.status(), 302, "the redirect itself is the answer");
    assert_eq!(peer.received().len(), 1);
    assert!(
        elsewhere.received().is_empty(),
        "nothing, least of all the credentials, reaches the redirect's target: {:?}",
        elsewhere.received()
    );
}

#[tokio::test]
async fn a_peer_that_never_answers_times_out() {
    // Accepted by the kernel (the handshake completes), never read, never
    // answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = silent.local_addr().expect("local addr");

    let (err, took) = get_with_timeout(&format!("http://{addr}/")).await;

    assert!(err.is_timeout(), "{err:?}");
    assert!(took >= TIMEOUT, "{took:?}");
}

#[tokio::test]
async fn a_peer_that_answers_too_slowly_times_out() {
    let peer = FakePeer::start(Reply::json(200, "{}").after(NEVER)).await;

    let (err, took) = get_with_timeout(&format!("{}/slow", peer.base_url)).await;

    assert!(err.is_timeout(), "{err:?}");
    assert!(took >= TIMEOUT, "{took:?}");
    assert_eq!(peer.wait_for(1).await.len(), 1, "the request did arrive");
}

#[tokio::test]
async fn a_connection_that_is_never_accepted_times_out() {
    let (_listener, addr, _queued) = full_listener();

    let (err, took) = get_with_timeout(&format!("http://{addr}/")).await;

    assert!(err.is_timeout(), "{err:?}");
    assert!(took >= TIMEOUT, "{took:?}");
}

/// A GET through a client with [`TIMEOUT`], which must fail by itself well
/// before [`NEVER`]: the error and how long it took.
async fn get_with_timeout(url: &str) -> (reqwest::Error, Duration) {
    let client = otp_http::client(TIMEOUT).expect("client");
    let started = Instant::now();
    let result = tokio::time::timeout(NEVER, client.get(url).send()).await;
    let took = started.elapsed();
    let err = result
        .expect("the client gave up by itself")
        .expect_err("no answer in time");
    assert!(took < NEVER / 2, "{took:?}");
    (err, took)
}

/// A listener whose accept queue is full, so the kernel drops every new
/// SYN and a connect hangs in the handshake. Returns the connections that
/// fill the queue; keep them open.
fn full_listener() -> (tokio::net::TcpListener, SocketAddr, Vec<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind loopback");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("local addr");
    let mut queued = Vec::new();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => queued.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("filling the accept queue: {e}"),
        }
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    (listener, addr, queued)
}

#[tokio::test]
async fn transport_errors_are_classified_and_keep_no_url() {
    use otp_http::{Transport, TransportError};

    // Timeout: a peer that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = silent.local_addr().expect("local addr");
    let (err, _) = get_with_timeout(&format!("http://{addr}/send?key=SECRETKEY")).await;
    let timeout = TransportError::new(TIMEOUT, err);
    assert_eq!(timeout.kind(), Transport::Timeout);
    assert!(timeout.is_transient());
    assert_eq!(
        timeout.message("twilio"),
        "no answer from twilio within 0 s"
    );

    // Connect: a port nobody listens on (bound, then closed).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let closed_addr = closed.local_addr().expect("local addr");
    drop(closed);
    let (err, _) = get_with_timeout(&format!("http://{closed_addr}/send?key=SECRETKEY")).await;
    let refused = TransportError::new(TIMEOUT, err);
    assert_eq!(refused.kind(), Transport::Connect, "{refused:?}");
    assert!(refused.is_transient());
    assert_eq!(refused.message("gw"), "could not connect to gw");

    // Build: a header value reqwest refuses to put on the wire.
    let client = otp_http::client(TIMEOUT).expect("client");
    let err = client
        .get(format!("http://{addr}/"))
        .header("x-token", "bad\nvalue")
        .send()
        .await
        .expect_err("an invalid header value cannot be sent");
    let unbuildable = TransportError::new(TIMEOUT, err);
    assert_eq!(unbuildable.kind(), Transport::Build, "{unbuildable:?}");
    assert!(
        !unbuildable.is_transient(),
        "a config problem is not retried"
    );
    assert_eq!(
        unbuildable.message("gw"),
        "invalid config: gw: the request could not be built"
    );

    for e in [&timeout, &refused, &unbuildable] {
        let line = chain(e);
        assert!(
            !line.contains("SECRETKEY") && !line.contains("127.0.0.1"),
            "{line}"
        );
    }
}
