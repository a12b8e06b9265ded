//! The dispatcher against the reference store (`InMemoryStore`) and real
//! loopback receivers. Every webhook signature is
//! checked with the Standard Webhooks reference library (PyPI
//! `standardwebhooks`), not only with otpd's own code.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use otp_domain::memory::InMemoryStore;
use otp_domain::ports::{Clock, CodeRecord, CodeStore, Outbox, SystemClock, VerificationStore};
use otp_domain::ports::{EventMessage, EventSink, SinkError};
use otp_domain::Backoff;
use otp_domain::{
    Channel, CodeDigest, Destination, EventSettle, EventType, Status, Verification, VerificationId,
};
use otp_events::{sweeper, Dispatcher, Observer, Sink, Tuning, WebhookSink};
use otp_testkit::{FakePeer, Recorded, Reply};
use secrecy::{SecretBox, SecretString};

/// 32 bytes, base64: `whsec_` + this is the sinks' secret.
const SECRET_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn secret() -> String {
    format!("whsec_{SECRET_B64}")
}

fn key() -> Arc<SecretBox<Vec<u8>>> {
    Arc::new(SecretBox::new(Box::new(
        b"0123456789abcdef0123456789abcdef".to_vec(),
    )))
}

fn now() -> u64 {
    SystemClock.now()
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Fast retries for tests: 20 ms doubling, no jitter below the ceiling.
fn tuning() -> Tuning {
    Tuning {
        batch: 8,
        concurrency: 8,
        lease: Duration::from_secs(30),
        idle: Duration::from_millis(20),
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        },
    }
}

fn webhook(name: &str, url: &str, types: Option<Vec<EventType>>) -> Sink {
    let timeout = Duration::from_secs(2);
    Sink {
        name: name.to_owned(),
        types,
        max_age: Duration::from_secs(3600),
        timeout,
        deliver: Arc::new(
            WebhookSink::new(SecretString::from(url.to_owned()), key(), timeout, clock())
                .expect("client"),
        ),
    }
}

fn dispatcher(store: &Arc<InMemoryStore>, sinks: Vec<Sink>) -> Dispatcher {
    Dispatcher::new(store.clone(), clock(), "otpd-test".into(), sinks, tuning())
        .with_jitter(Arc::new(|| 1.0))
}

/// Sends to `n` fresh email destinations at `at`: each writes a
/// `pending` event. Returns the verifications' ids and their code digests.
async fn sends(
    store: &InMemoryStore,
    n: usize,
    at: u64,
) -> Vec<(VerificationId, String, CodeDigest)> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&at.to_be_bytes());
        id[8..].copy_from_slice(&(i as u64).to_be_bytes());
        let id = VerificationId::from_bytes(id);
        let mut digest = [0u8; 32];
        digest[..16].copy_from_slice(id.as_bytes());
        let digest = CodeDigest::from_bytes(digest);
        let dest = Destination::parse(Channel::Email, &format!("user{i}.{at}@example.com"))
            .expect("email");
        let record = CodeRecord {
            digest,
            expires_at: at + 300_000,
            attempts: 0,
            max_attempts: 3,
            verification: id,
        };
        let v = Verification::new(id, &dest, at, at + 300_000, 3, 86_400_000);
        store
            .put_code(&dest.key(), record, &v, &[], at)
            .await
            .expect("put");
        store.delivered(&id, &[], at).await.expect("delivered");
        out.push((id, dest.key(), digest));
    }
    out
}

/// How many events the outbox still holds, even not yet due. It leases
/// them far into the future: call it only at the end of a test.
async fn outbox_left(store: &InMemoryStore) -> usize {
    store
        .claim_events(u64::MAX / 2, 1, 1000)
        .await
        .expect("claim")
        .len()
}

/// Checks every request with the reference library, under the sinks'
/// secret.
fn verify_with_standardwebhooks(requests: &[Recorded]) {
    otp_testkit::webhooks::verify_all(&secret(), requests);
}

#[tokio::test]
async fn every_event_reaches_the_webhook_as_a_signed_cloud_event() {
    let store = Arc::new(InMemoryStore::new());
    let peer = FakePeer::start(Reply::json(204, "")).await;
    let sent = sends(&store, 3, now()).await;
    let d = dispatcher(&store, vec![webhook("app", &peer.base_url, None)]);

    assert_eq!(d.round().await.expect("round"), 3);

    let got = peer.wait_for(3).await;
    assert_eq!(got.len(), 3);
    verify_with_standardwebhooks(&got);
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
        let ce = r.json();
        assert_eq!(r.header("webhook-id"), ce["id"].as_str());
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["source"], "otpd-test");
        assert_eq!(ce["type"], "otpd.verification.pending");
        assert_eq!(ce["data"]["status"], "pending");
        assert!(sent
            .iter()
            .any(|(id, _, _)| ce["subject"] == id.to_string().as_str()));
        let ts: u64 = r
            .header("webhook-timestamp")
            .expect("timestamp")
            .parse()
            .expect("unix seconds");
        assert!(ts.abs_diff(now() / 1000) < 60);
    }
    assert_eq!(
        outbox_left(&store).await,
        0,
        "delivered events leave the outbox"
    );
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_again_with_the_same_webhook_id_until_it_takes_it() {
    let store = Arc::new(InMemoryStore::new());
    let peer = FakePeer::start_script(vec![
        Reply::json(503, ""),
        Reply::json(500, ""),
        Reply::json(404, ""),
        Reply::json(200, "{}"),
    ])
    .await;
    sends(&store, 1, now()).await;
    let counted = Arc::new(Counted::default());
    let d = dispatcher(&store, vec![webhook("app", &peer.base_url, None)])
        .with_observer(counted.clone());
    let running = tokio::spawn(d.run());

    let got = peer.wait_for(4).await;
    running.abort();

    assert_eq!(got.len(), 4, "three failures, then the delivery");
    let ids: Vec<_> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0] && id.is_some()),
        "{ids:?}"
    );
    let bodies: Vec<_> = got.iter().map(Recorded::body_text).collect();
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "the same event each time"
    );
    verify_with_standardwebhooks(&got);
    assert_eq!(outbox_left(&store).await, 0);
    assert_eq!(counted.times("failed", "app", EventType::Pending), 3);
    assert_eq!(counted.times("delivered", "app", EventType::Pending), 1);
}

/// `(webhook-id, body)` of each request a receiver took.
type Log = Arc<Mutex<Vec<(String, String)>>>;

/// A receiver that records requests and answers 204, on a port chosen
/// before it listens, so a test can have it down first.
async fn receiver_on(
    port: u16,
    log: Arc<Mutex<Vec<(String, String)>>>,
) -> tokio::task::JoinHandle<()> {
    use poem::{handler, http::HeaderMap, web::Data, EndpointExt, Route, Server};
    #[handler]
    fn take(headers: &HeaderMap, body: String, log: Data<&Log>) -> poem::http::StatusCode {
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        log.lock().expect("log").push((id, body));
        poem::http::StatusCode::NO_CONTENT
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the receiver's port again");
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("acceptor");
    tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor)
            .run(Route::new().at("/", poem::post(take)).data(log))
            .await;
    })
}

#[tokio::test]
async fn events_sent_while_the_receiver_is_down_all_arrive_once_it_is_back() {
    let store = Arc::new(InMemoryStore::new());
    let port = otp_testkit::closed_port();
    sends(&store, 5, now()).await;
    let counted = Arc::new(Counted::default());
    let d = dispatcher(
        &store,
        vec![webhook("app", &format!("http://127.0.0.1:{port}/"), None)],
    )
    .with_observer(counted.clone());
    let running = tokio::spawn(d.run());
    // Several failed rounds (connection refused) while it is down.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        counted.times("failed", "app", EventType::Pending) > 0,
        "failed attempts are reported"
    );

    let log = Arc::new(Mutex::new(Vec::new()));
    let server = receiver_on(port, log.clone()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while log.lock().expect("log").len() < 5 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The receiver logs a request before the dispatcher has its answer
    // and settles the event; rounds run one after another, so once a
    // round has begun after this point the last settle is done.
    let round = counted.rounds();
    while counted.rounds() < round + 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.abort();
    server.abort();

    let mut ids: Vec<String> = log
        .lock()
        .expect("log")
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every event arrived: {ids:?}");
    assert_eq!(outbox_left(&store).await, 0);
}

#[tokio::test]
async fn a_sink_takes_only_the_types_it_names_and_unwanted_events_leave_the_outbox() {
    let store = Arc::new(InMemoryStore::new());
    let peer = FakePeer::start(Reply::json(200, "")).await;
    let at = now();
    let sent = sends(&store, 2, at).await;
    // One approved, one locked after three wrong checks.
    let (_, key0, digest0) = &sent[0];
    store
        .check_code(key0, digest0, at + 1)
        .await
        .expect("check");
    let (_, key1, _) = &sent[1];
    for _ in 0..3 {
        store
            .check_code(key1, &CodeDigest::from_bytes([0xee; 32]), at + 2)
            .await
            .expect("check");
    }
    let d = dispatcher(
        &store,
        vec![webhook(
            "approvals",
            &peer.base_url,
            Some(vec![EventType::Approved]),
        )],
    );

    while d.round().await.expect("round") > 0 {}

    let got = peer.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].json()["type"], "otpd.verification.approved");
    assert_eq!(
        outbox_left(&store).await,
        0,
        "pending and max_attempts_reached went nowhere, and are gone"
    );
}

#[tokio::test]
async fn a_down_webhook_does_not_hold_back_another_sink_and_that_one_gets_each_event_once() {
    let store = Arc::new(InMemoryStore::new());
    let down = FakePeer::start(Reply::json(503, "")).await;
    let up = FakePeer::start(Reply::json(204, "")).await;
    sends(&store, 3, now()).await;
    let d = dispatcher(
        &store,
        vec![
            webhook("down", &down.base_url, None),
            webhook("up", &up.base_url, None),
        ],
    );
    let running = tokio::spawn(d.run());
    // Several rounds: the down webhook fails each time.
    let tries = down.wait_for(9).await;
    running.abort();
    assert!(tries.len() >= 9, "the webhook was retried: {}", tries.len());

    let got = up.received();
    verify_with_standardwebhooks(&got);
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| r.header("webhook-id").expect("webhook-id").to_owned())
        .collect();
    assert_eq!(
        ids.len(),
        3,
        "each event once, however often the other sink failed"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        outbox_left(&store).await,
        3,
        "the down webhook still owes them"
    );
}

/// Counts what the dispatcher reports.
#[derive(Default)]
struct Counted(
    Mutex<Vec<(String, String, EventType)>>,
    std::sync::atomic::AtomicUsize,
);

impl Observer for Counted {
    fn claimed(&self, _size: usize) {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn delivered(&self, sink: &str, kind: EventType) {
        self.push("delivered", sink, kind);
    }
    fn failed(&self, sink: &str, kind: EventType) {
        self.push("failed", sink, kind);
    }
    fn given_up(&self, sink: &str, kind: EventType) {
        self.push("given_up", sink, kind);
    }
}

impl Counted {
    /// Rounds begun so far.
    fn rounds(&self) -> usize {
        self.1.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn times(&self, what: &str, sink: &str, kind: EventType) -> usize {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|(w, s, k)| w == what && s == sink && *k == kind)
            .count()
    }

    fn push(&self, what: &str, sink: &str, kind: EventType) {
        self.0
            .lock()
            .expect("lock")
            .push((what.to_owned(), sink.to_owned(), kind));
    }
}

#[tokio::test]
async fn an_event_older_than_the_sinks_max_age_is_given_up_and_counted() {
    let store = Arc::new(InMemoryStore::new());
    let peer = FakePeer::start(Reply::json(200, "")).await;
    let counted = Arc::new(Counted::default());
    sends(&store, 1, now() - 7_200_000).await;
    let d = dispatcher(&store, vec![webhook("app", &peer.base_url, None)])
        .with_observer(counted.clone());

    assert_eq!(d.round().await.expect("round"), 1);

    assert!(
        peer.received().is_empty(),
        "an event past max_age is not sent"
    );
    assert_eq!(outbox_left(&store).await, 0);
    assert_eq!(
        *counted.0.lock().expect("lock"),
        vec![("given_up".to_owned(), "app".to_owned(), EventType::Pending)]
    );
}

/// A sink that records what it is given and fails while told to.
struct Flaky {
    fail: std::sync::atomic::AtomicBool,
    got: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl EventSink for Flaky {
    async fn deliver(&self, m: &EventMessage) -> Result<(), SinkError> {
        self.got.lock().expect("got").push(m.id.clone());
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            Err(SinkError::Status(500))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_failed_round_is_retried_after_the_backoff_and_records_which_sinks_have_it() {
    let store = Arc::new(InMemoryStore::new());
    let flaky = Arc::new(Flaky {
        fail: std::sync::atomic::AtomicBool::new(true),
        got: Mutex::new(Vec::new()),
    });
    let ok = Arc::new(Flaky {
        fail: std::sync::atomic::AtomicBool::new(false),
        got: Mutex::new(Vec::new()),
    });
    let sink = |name: &str, d: Arc<Flaky>| Sink {
        name: name.into(),
        types: None,
        max_age: Duration::from_secs(3600),
        timeout: Duration::from_secs(1),
        deliver: d,
    };
    let at = now();
    sends(&store, 1, at).await;
    let mut t = tuning();
    t.backoff = Backoff {
        base: Duration::from_secs(60),
        cap: Duration::from_secs(600),
    };
    let d = Dispatcher::new(
        store.clone(),
        clock(),
        "s".into(),
        vec![sink("flaky", flaky.clone()), sink("ok", ok.clone())],
        t,
    )
    .with_jitter(Arc::new(|| 0.5));

    assert_eq!(d.round().await.expect("round"), 1);
    assert_eq!(
        d.round().await.expect("round"),
        0,
        "not due before its backoff"
    );

    let due = store
        .claim_events(at + 60_000, 1000, 10)
        .await
        .expect("claim");
    assert_eq!(
        due.len(),
        1,
        "due after about half a minute (1 min ceiling, jitter 0.5)"
    );
    assert_eq!(due[0].delivered, vec!["ok".to_owned()]);
    assert_eq!(due[0].tries, 1);
    store
        .settle_event(
            &due[0].id,
            &EventSettle::Retry {
                at: 0,
                delivered: due[0].delivered.clone(),
            },
        )
        .await
        .expect("settle");
    flaky.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(d.round().await.expect("round"), 1);

    assert_eq!(flaky.got.lock().expect("got").len(), 2);
    assert_eq!(
        ok.got.lock().expect("got").len(),
        1,
        "the sink that had it is skipped"
    );
    assert_eq!(outbox_left(&store).await, 0);
}

#[tokio::test]
async fn the_sweeper_expires_overdue_verifications_once_and_their_event_is_delivered() {
    let store = Arc::new(InMemoryStore::new());
    let peer = FakePeer::start(Reply::json(200, "")).await;
    let at = now() - 600_000;
    let sent = sends(&store, 2, at).await;

    assert_eq!(
        sweeper::sweep_verifications(store.as_ref(), &SystemClock).await,
        2
    );
    assert_eq!(
        sweeper::sweep_verifications(store.as_ref(), &SystemClock).await,
        0,
        "once"
    );
    let d = dispatcher(
        &store,
        vec![webhook(
            "app",
            &peer.base_url,
            Some(vec![EventType::Expired]),
        )],
    );
    while d.round().await.expect("round") > 0 {}

    let got = peer.wait_for(2).await;
    assert_eq!(got.len(), 2);
    for r in &got {
        let ce = r.json();
        assert_eq!(ce["type"], "otpd.verification.expired");
        assert_eq!(ce["data"]["status"], Status::Expired.as_str());
    }
    for (id, _, _) in sent {
        let v = store.verification(&id).await.expect("get").expect("kept");
        assert_eq!(v.status, Status::Expired);
    }
}
