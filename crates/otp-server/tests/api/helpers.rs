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
use serde_json::Value;

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
            Err(DeliveryError {
                provider: "mock".into(),
                reason: "HTTP 503 from mock".into(),
                transient: true,
                retry_after: None,
                source: None,
            })
        } else {
            Ok(otp_domain::Delivered::by("mock"))
        }
    });
    Arc::new(s)
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

    /// The scrape, as `name{labels} value` lines (comments dropped).
    pub async fn scrape(&self) -> String {
        let base = self.metrics_base.as_ref().expect("metrics are on");
        let r = self
            .client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("scrape");
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

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request");
        read(r).await
    }

    /// The seed's form: GET with a JSON body, with or without a JSON
    /// content type.
    pub async fn get_with_body(&self, path: &str, body: Value, json_type: bool) -> (u16, Value) {
        let mut req = self
            .client
            .get(format!("{}{path}", self.base))
            .body(body.to_string());
        if json_type {
            req = req.header("content-type", "application/json");
        }
        read(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .expect("request");
        read(r).await
    }

    pub async fn send_sms(&self, phone: &str) -> (u16, Value) {
        self.post("/sms", serde_json::json!({ "phone": phone }))
            .await
    }

    pub async fn check_sms(&self, phone: &str, password: &str) -> (u16, Value) {
        self.post(
            "/sms/check",
            serde_json::json!({ "phone": phone, "password": password }),
        )
        .await
    }
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
        let mut req = self.client.post(format!("{}{path}", self.base)).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.expect("request");
        let headers = r.headers().clone();
        let (status, value) = read(r).await;
        (status, headers, value)
    }
}
