//! `TestApp`: the real app on port 0 with mocked adapters swapped in
//! through `Ports`: mockall senders that record what they were asked to
//! deliver, a fixed-code generator, a clock the test moves, and the
//! in-memory store (or a mocked one for failure cases).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use figment::providers::{Format, Toml};
use figment::Figment;
use otp_domain::memory::InMemoryStore;
use otp_domain::ports::{
    Clock, CodeGenerator, CodeStore, DeliveryError, MockCodeGenerator, MockSender, OutgoingMessage,
};
use otp_domain::{Code, Senders};
use otp_server::config::{Config, DEFAULT_TOML};
use otp_server::startup::{app_state, Application, Ports};
use otp_telemetry::metrics::Metrics;
use reqwest::Method;
use serde_json::{json, Value};

pub const START: u64 = 1_800_000_000_000;
pub const GENERATED: &str = "482910";
pub const PAIRING: &str = "K7Q2M9XD";

/// A clock that moves only when the test says so.
pub struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub type Outbox = Arc<Mutex<Vec<OutgoingMessage>>>;

/// A mocked sender that records every message; fails when `fail` is set.
fn recording_sender(outbox: Outbox, fail: bool) -> Arc<MockSender> {
    let mut s = MockSender::new();
    s.expect_send().returning(move |m| {
        outbox.lock().expect("outbox lock").push(m.clone());
        if fail {
            Err(provider_outage())
        } else {
            Ok(otp_domain::Delivered::by("mock"))
        }
    });
    Arc::new(s)
}

/// What a failing sender answers: a transient provider error.
fn provider_outage() -> DeliveryError {
    DeliveryError {
        provider: "mock".into(),
        reason: "HTTP 503 from mock".into(),
        transient: true,
        retry_after: None,
        source: None,
    }
}

pub struct TestApp {
    pub base: String,
    /// `http://addr` of the scrape listener, when metrics are on.
    pub metrics_base: Option<String>,
    pub client: reqwest::Client,
    pub outbox: Outbox,
    pub clock: Arc<TestClock>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub struct Options {
    /// TOML layered over the defaults.
    pub toml: &'static str,
    /// Senders fail every delivery.
    pub failing_senders: bool,
    /// Replaces the in-memory store's code store.
    pub store: Option<Arc<dyn CodeStore>>,
    /// Records metrics and serves them on a port of their own.
    pub metrics: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // No cooldown by default, so tests can send twice in a row;
            // tests of the limits turn it back on.
            toml: "[limits]\ncooldown_secs = 0\n",
            failing_senders: false,
            store: None,
            metrics: false,
        }
    }
}

impl Options {
    /// The defaults with `toml` layered over the built-in config instead
    /// of the no-cooldown default.
    pub fn toml(toml: &'static str) -> Options {
        Options {
            toml,
            ..Options::default()
        }
    }

    /// The defaults with senders that fail every delivery.
    pub fn failing_senders() -> Options {
        Options {
            failing_senders: true,
            ..Options::default()
        }
    }

    /// These options with metrics recorded and served.
    pub fn with_metrics(self) -> Options {
        Options {
            metrics: true,
            ..self
        }
    }

    /// These options with `store` as the code store.
    pub fn with_store(self, store: Arc<dyn CodeStore>) -> Options {
        Options {
            store: Some(store),
            ..self
        }
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        let figment = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::string(
                "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            ))
            .merge(Toml::string(options.toml));
        let config = Config::from_figment(figment).expect("test config");
        let outbox: Outbox = Arc::default();
        let sender = recording_sender(outbox.clone(), options.failing_senders);
        let mut codes = MockCodeGenerator::new();
        codes
            .expect_numeric()
            .returning(|_| Code::parse(GENERATED).expect("valid"));
        codes
            .expect_pairing()
            .returning(|| Code::parse(PAIRING).expect("valid"));
        // Ids stay random: tests tell verifications apart by them.
        codes
            .expect_verification_id()
            .returning(|| otp_domain::RandomCodes.verification_id());
        let clock = Arc::new(TestClock(AtomicU64::new(START)));
        let memory = Arc::new(InMemoryStore::new());
        let ports = Ports {
            services: memory.clone(),
            fraud: Some(memory.clone()),
            stores: otp_domain::Stores {
                codes: options.store.unwrap_or(memory.clone()),
                verifications: memory.clone(),
                idempotency: memory,
            },
            senders: Senders {
                sms: sender.clone(),
                call: sender.clone(),
                email: sender.clone(),
                telegram: sender.clone(),
                whatsapp: sender,
            },
            clock: clock.clone(),
            codes: Arc::new(codes),
            embedded: None,
            // The mocked senders are behind no retry layer, so delivery
            // attempts are counted only with the real binary (e2e).
            metrics: options
                .metrics
                .then(|| Arc::new(Metrics::new().expect("metrics"))),
            outbox: None,
        };
        let state = app_state(&config, &ports, b"api-test-secret-0123456789".to_vec());
        let app = Application::bind(&config, state).await.expect("bind");
        let base = format!("http://{}", app.local_addr());
        let metrics_base = app.metrics_addr().map(|a| format!("http://{a}"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        TestApp {
            base,
            metrics_base,
            client: reqwest::Client::new(),
            outbox,
            clock,
            _shutdown: tx,
        }
    }

    /// The scrape listener's answer to `GET /metrics`, as it came.
    pub async fn scrape_response(&self) -> reqwest::Response {
        let base = self.metrics_base.as_ref().expect("metrics are on");
        send(self.client.get(format!("{base}/metrics"))).await
    }

    /// The scrape's text, after asserting it answered 200.
    pub async fn scrape(&self) -> String {
        let r = self.scrape_response().await;
        assert_eq!(r.status().as_u16(), 200);
        r.text().await.expect("scrape body")
    }

    pub fn advance_secs(&self, secs: u64) {
        self.clock.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }

    /// The messages the senders were asked to deliver, as
    /// (channel, address, subject, body).
    pub fn sent(&self) -> Vec<(String, String, Option<String>, String)> {
        self.outbox
            .lock()
            .expect("outbox lock")
            .iter()
            .map(|m| {
                (
                    m.destination.channel().to_string(),
                    m.destination.address(),
                    m.subject.clone(),
                    m.body.clone(),
                )
            })
            .collect()
    }

    /// `path` on the API listener.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// `method path` without body or credentials: the answer as it came.
    pub async fn raw(&self, method: Method, path: &str) -> reqwest::Response {
        self.raw_with(method, path, &[]).await
    }

    /// `method path` with extra headers and no body: the answer as it came.
    pub async fn raw_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        send(with_headers(self.request(method, path), headers)).await
    }

    /// `method path` with basic-auth credentials `(user, password)` and no
    /// body: the answer as it came.
    pub async fn raw_as(
        &self,
        method: Method,
        path: &str,
        auth: (&str, &str),
    ) -> reqwest::Response {
        send(self.request(method, path).basic_auth(auth.0, Some(auth.1))).await
    }

    /// POST `json` as it is written (it may be malformed or oversized)
    /// with a JSON content type, with basic-auth credentials when given:
    /// the answer as it came.
    pub async fn post_text(
        &self,
        path: &str,
        auth: Option<(&str, &str)>,
        json: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = self
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .body(json);
        if let Some((user, password)) = auth {
            req = req.basic_auth(user, Some(password));
        }
        send(req).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        read(send(self.request(Method::POST, path).json(&body)).await).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        read(self.raw(Method::DELETE, path).await).await
    }

    /// GET a page: its status and its text (HTML, not JSON).
    pub async fn page(&self, path: &str) -> (u16, String) {
        let r = self.raw(Method::GET, path).await;
        let status = r.status().as_u16();
        (status, r.text().await.expect("page text"))
    }

    /// The seed's form: GET with a JSON body, with or without a JSON
    /// content type.
    pub async fn get_with_body(&self, path: &str, body: Value, json_type: bool) -> (u16, Value) {
        let mut req = self.request(Method::GET, path).body(body.to_string());
        if json_type {
            req = req.header("content-type", "application/json");
        }
        read(send(req).await).await
    }

    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        read(self.raw(Method::GET, path_and_query).await).await
    }

    pub async fn send_sms(&self, phone: &str) -> (u16, Value) {
        self.post("/sms", json!({ "phone": phone })).await
    }

    /// An SMS send that names its own code.
    pub async fn send_sms_code(&self, phone: &str, password: &str) -> (u16, Value) {
        self.post("/sms", json!({ "phone": phone, "password": password }))
            .await
    }

    /// An SMS send that asks for `locale`.
    pub async fn send_sms_in(&self, phone: &str, locale: &str) -> (u16, Value) {
        self.post("/sms", json!({ "phone": phone, "locale": locale }))
            .await
    }

    pub async fn check_sms(&self, phone: &str, password: &str) -> (u16, Value) {
        self.check("sms", "phone", phone, password).await
    }

    pub async fn check_call(&self, phone: &str, password: &str) -> (u16, Value) {
        self.check("call", "phone", phone, password).await
    }

    pub async fn check_email(&self, email: &str, password: &str) -> (u16, Value) {
        self.check("email", "email", email, password).await
    }

    /// `POST /{channel}/check` with the address under `field`.
    async fn check(&self, channel: &str, field: &str, to: &str, password: &str) -> (u16, Value) {
        let mut body = json!({ "password": password });
        body[field] = json!(to);
        self.post(&format!("/{channel}/check"), body).await
    }

    /// A Telegram update, with the webhook secret header when given.
    pub async fn telegram_webhook(&self, secret: Option<&str>, update: Value) -> (u16, Value) {
        let headers: Vec<_> = secret
            .map(|s| ("X-Telegram-Bot-Api-Secret-Token", s))
            .into_iter()
            .collect();
        let (status, _, body) = self.post_with("/telegram/webhook", &headers, update).await;
        (status, body)
    }
}

async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    req.send().await.expect("request")
}

fn with_headers(
    mut req: reqwest::RequestBuilder,
    headers: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req
}

pub async fn read(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    (status, value)
}

/// Asserts the stable error body and returns its `error` code.
pub fn error_code(body: &Value) -> &str {
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error body without message: {body}"
    );
    let code = body["error"].as_str().expect("error code");
    assert!(
        spec_error_codes().iter().any(|c| c == code),
        "{code} is not in the spec's ErrorCode enum"
    );
    code
}

/// The value of header `name`, when it is there and visible ASCII.
pub fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Asserts that `answer` is the stable error body (see `error_code`)
/// with this status and code.
#[track_caller]
pub fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_error_for("", answer, status, code);
}

/// `assert_error`, with `what` naming the case when it fails.
#[track_caller]
pub fn assert_error_for(
    what: impl std::fmt::Display,
    (got, body): &(u16, Value),
    status: u16,
    code: &str,
) {
    assert_eq!(*got, status, "{what}: {body}");
    assert_eq!(error_code(body), code, "{what}: {body}");
}

/// The `ErrorCode` enum of the spec the server runs.
fn spec_error_codes() -> &'static Vec<String> {
    static CODES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    CODES.get_or_init(|| {
        let spec: Value =
            serde_json::from_str(&otp_server::api::api_service().spec()).expect("spec is JSON");
        spec["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("ErrorCode enum in the spec")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    })
}

impl TestApp {
    /// POST with extra headers; also returns the response headers.
    pub async fn post_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let req = self.request(Method::POST, path).json(&body);
        let r = send(with_headers(req, headers)).await;
        let headers = r.headers().clone();
        let (status, value) = read(r).await;
        (status, headers, value)
    }
}
