//! Request ids and the metrics listener, through the real app.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{header, Options, TestApp};

const AUTH: &str =
    "[auth]\nusername = \"admin\"\npassword = \"0123\"\n[limits]\ncooldown_secs = 0\n";

async fn request_id(app: &TestApp, sent: Option<&str>) -> String {
    let headers: Vec<_> = sent.map(|id| ("X-Request-Id", id)).into_iter().collect();
    let r = app.raw_with(Method::GET, "/healthz", &headers).await;
    assert_eq!(r.status().as_u16(), 200);
    header(r.headers(), "x-request-id")
        .expect("every answer carries an X-Request-Id")
        .to_owned()
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_any_other_is_replaced() {
    let app = TestApp::spawn().await;
    assert_eq!(request_id(&app, Some("abc-123")).await, "abc-123");
    for insane in ["has space", "x\"y", &"a".repeat(65)] {
        let got = request_id(&app, Some(insane)).await;
        assert_ne!(got, insane);
        assert_eq!(got.len(), 32, "a generated id: {got}");
    }
    let (a, b) = (request_id(&app, None).await, request_id(&app, None).await);
    assert_ne!(a, b, "each request gets its own");
    // Errors built outside the operations carry it too.
    let r = app
        .raw_with(Method::GET, "/no-such-route", &[("X-Request-Id", "err-1")])
        .await;
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(header(r.headers(), "x-request-id"), Some("err-1"));
}

#[tokio::test]
async fn metrics_have_a_listener_of_their_own_outside_the_api_and_its_auth() {
    let app = TestApp::spawn_with(Options::toml(AUTH).with_metrics()).await;
    let metrics = app.metrics_base.clone().expect("metrics listener");
    assert_ne!(metrics, app.base);
    let r = app.scrape_response().await;
    assert_eq!(r.status().as_u16(), 200, "no API credentials needed");
    assert_eq!(
        header(r.headers(), "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(r.text().await.expect("body").contains("otpd_build_info"));
    // The API port has no /metrics; the scrape port has nothing else.
    let on_api = app.raw_as(Method::GET, "/metrics", ("admin", "0123")).await;
    assert_eq!(on_api.status().as_u16(), 404);
    let sms_on_metrics = app
        .client
        .post(format!("{metrics}/sms"))
        .json(&json!({"phone": "77011234567"}))
        .send()
        .await
        .expect("request");
    assert_eq!(sms_on_metrics.status().as_u16(), 404);
    assert!(app.sent().is_empty());
}

#[tokio::test]
async fn metrics_are_off_with_an_empty_listen() {
    let app = TestApp::spawn_with(Options::toml("[metrics]\nlisten = \"\"\n").with_metrics()).await;
    assert_eq!(app.metrics_base, None);
}

#[tokio::test]
async fn requests_are_counted_by_route_template_never_by_raw_path() {
    let app = TestApp::spawn_with(Options::default().with_metrics()).await;
    let (status, _) = app.send_sms("77011234567").await;
    assert_eq!(status, 200);
    let (status, _) = app.check_sms("77011234567", "000000").await;
    assert_eq!(status, 422);
    let (status, _) = app.get("/sms/+77011234567").await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get("/sms/check?phone=77011234567&password=482910")
        .await;
    assert_eq!(status, 200);
    let scrape = app.scrape().await;
    for line in [
        r#"otpd_http_requests_total{method="POST",route="/sms",status="2xx"} 1"#,
        r#"otpd_http_requests_total{method="POST",route="/sms/check",status="4xx"} 1"#,
        r#"otpd_http_requests_total{method="GET",route="/sms/check",status="2xx"} 1"#,
        r#"otpd_http_requests_total{method="GET",route="unmatched",status="4xx"} 1"#,
        r#"otpd_checks_total{channel="sms",outcome="wrong_password"} 1"#,
        r#"otpd_checks_total{channel="sms",outcome="approved"} 1"#,
        r#"otpd_verifications_started_total{channel="sms",country="KZ"} 1"#,
        r#"otpd_verifications_ended_total{channel="sms",country="KZ",status="approved"} 1"#,
    ] {
        assert!(scrape.lines().any(|l| l == line), "no {line} in:\n{scrape}");
    }
    // Only series names and labels can leak (values are numbers).
    let series: Vec<&str> = scrape
        .lines()
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s))
        .collect();
    for leak in ["7701", "482910", "000000"] {
        assert!(
            !series.iter().any(|s| s.contains(leak)),
            "{leak} in the scrape"
        );
    }
}
