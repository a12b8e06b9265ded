use std::sync::Arc;

use otp_domain::ports::MockCodeStore;
use otp_domain::StoreError;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{assert_error, error_code, header, read, Options, TestApp, GENERATED};

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_never_a_500() {
    let app = TestApp::spawn().await;
    let app = &app;
    let raw = |path: &'static str, body: &'static str| async move {
        read(app.post_text(path, None, body).await).await
    };
    let cases = [
        raw("/sms", "{bad json").await,
        raw("/sms", "{}").await,
        raw("/sms", r#"{"phone": "abc"}"#).await,
        raw("/sms", r#"{"phone": "77011234567", "lifetime": 0}"#).await,
        raw("/sms", r#"{"phone": "77011234567", "lifetime": "soon"}"#).await,
        raw("/sms", r#"{"phone": "77011234567", "password": "12"}"#).await,
        raw(
            "/sms",
            r#"{"phone": "77011234567", "message": "no placeholder"}"#,
        )
        .await,
        raw("/email", r#"{"email": "not-an-email"}"#).await,
        raw(
            "/email",
            r#"{"email": "a@example.com", "subject": "a\r\nBcc: b@example.com"}"#,
        )
        .await,
        raw("/telegram", r#"{"chat_id": "abc"}"#).await,
        raw("/telegram", r#"{"chat_id": 1.5}"#).await,
        raw("/sms/check", r#"{"phone": "77011234567"}"#).await,
        raw("/sms/check", r#"[1, 2]"#).await,
    ];
    for (status, body) in cases {
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_code(&body), "invalid_request");
    }
    let (status, body) = app.get("/no/such/route").await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let r = app.raw(Method::DELETE, "/sms").await;
    assert_eq!(
        header(r.headers(), "allow"),
        Some("POST"),
        "RFC 9110: a 405 names the methods the route takes"
    );
    assert_error(&read(r).await, 405, "method_not_allowed");
    for (path, allow) in [("/sms/check", "GET, HEAD, POST"), ("/healthz", "GET, HEAD")] {
        let r = app.raw(Method::TRACE, path).await;
        assert_eq!(r.status().as_u16(), 405, "{path}");
        assert_eq!(header(r.headers(), "allow"), Some(allow), "{path}");
        let query = format!("{path}?phone=77011234567&password=1234");
        let head = app.raw(Method::HEAD, &query).await;
        assert_ne!(head.status().as_u16(), 405, "HEAD is allowed on {path}");
    }
    let (status, body) = app.get("/sms/check?phone=77011234567").await;
    assert_eq!((status, error_code(&body)), (400, "invalid_request"));
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let app = TestApp::spawn().await;
    let huge = "x".repeat(140_000);
    let (status, body) = app
        .post("/sms", json!({"phone": "77011234567", "message": huge}))
        .await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));
}

#[tokio::test]
async fn failed_delivery_is_502_and_leaves_no_checkable_code() {
    let app = TestApp::spawn_with(Options::failing_senders()).await;
    let (status, body) = app.send_sms("77011234567").await;
    assert_eq!((status, error_code(&body)), (502, "delivery_failed"));
    assert!(
        !body.to_string().contains("mock"),
        "no provider internals: {body}"
    );
    let (status, _) = app.check_sms("77011234567", GENERATED).await;
    assert_eq!(status, 404);
}

fn broken_store() -> Arc<MockCodeStore> {
    let mut store = MockCodeStore::new();
    store
        .expect_ping()
        .returning(|| Err(StoreError::Unavailable("connection refused".into())));
    store
        .expect_check_in()
        .returning(|_, _| Err(StoreError::Unavailable("connection refused".into())));
    store
        .expect_stage_send()
        .returning(|_, _| Err(StoreError::Unavailable("connection refused".into())));
    Arc::new(store)
}

#[tokio::test]
async fn store_outage_is_503_and_readyz_says_so() {
    let app = TestApp::spawn_with(Options::default().with_store(broken_store())).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!((status, error_code(&body)), (503, "store_unavailable"));
    let (status, body) = app.send_sms("77011234567").await;
    assert_eq!((status, error_code(&body)), (503, "store_unavailable"));
    let (status, body) = app.check_sms("77011234567", "1234").await;
    assert_eq!((status, error_code(&body)), (503, "store_unavailable"));
    assert!(app.sent().is_empty());
    let (status, body) = app.get("/healthz").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn healthy_store_is_ready() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
}
