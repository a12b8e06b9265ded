//! `/fraud/blocks` and `403 fraud_suspected`, with the in-memory ledger.

use serde_json::json;

use crate::helpers::{assert_error, error_code, Options, TestApp};

const GUARD: &str =
    "[limits]\ncooldown_secs = 0\nsends_per_window = 0\nuser_sends_per_window = 0\n\
[fraud]\nmin_sends = 5\nmin_conversion = 0.5\nblock_secs = 60\n";

#[tokio::test]
async fn a_pumped_prefix_is_listed_refused_and_can_be_lifted() {
    let app = TestApp::spawn_with(Options::toml(GUARD).with_metrics()).await;
    for i in 0..5 {
        let (status, body) = app.send_sms(&format!("+7701{:07}", 1_000_000 + i)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = app.send_sms("+77011999999").await;
    assert_eq!((status, error_code(&body)), (403, "fraud_suspected"));
    // Another prefix of the same country is untouched.
    assert_eq!(app.send_sms("+77021234567").await.0, 200);
    let (status, blocks) = app.get("/fraud/blocks").await;
    assert_eq!(status, 200, "{blocks}");
    assert_eq!(blocks.as_array().map(Vec::len), Some(1), "{blocks}");
    assert_eq!(blocks[0]["prefix"], "7701");
    assert_eq!(blocks[0]["country"], "KZ");
    assert_eq!(blocks[0]["mode"], "block");
    assert_eq!(blocks[0]["sends"], 5.0);
    let scrape = app.scrape().await;
    for line in [
        r#"otpd_fraud_blocks_total{country="KZ",mode="block"} 1"#,
        r#"otpd_fraud_refused_sends_total{channel="sms",country="KZ"} 1"#,
        r#"otpd_sends_total{channel="sms",outcome="fraud_refused"} 1"#,
    ] {
        assert!(scrape.lines().any(|l| l == line), "no {line} in\n{scrape}");
    }
    // The console lists it.
    let (status, data) = app.get("/console/data").await;
    assert_eq!(status, 200, "{data}");
    assert_eq!(data["fraud_blocks"][0]["prefix"], "7701", "{data}");
    let (status, page) = app.page("/console").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"data-prefix="7701""#), "{page}");
    let (status, lifted) = app.delete("/fraud/blocks/7701").await;
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(app.send_sms("+77011999999").await.0, 200, "through at once");
    assert_error(&app.delete("/fraud/blocks/7701").await, 404, "not_found");
}

#[tokio::test]
async fn approved_codes_keep_a_prefix_open_and_test_destinations_never_count() {
    let app = TestApp::spawn_with(Options::toml(
        "[limits]\ncooldown_secs = 0\nsends_per_window = 0\nuser_sends_per_window = 0\n\
         [fraud]\nmin_sends = 5\nmin_conversion = 0.5\n\
         [[security.test_destinations]]\nchannel = \"sms\"\nto = \"+77010000000\"\ncode = \"111111\"\n",
    ))
    .await;
    for i in 0..12 {
        let phone = format!("+7701{:07}", 1_000_000 + i);
        let (status, body) = app
            .post("/sms", json!({ "phone": phone, "password": "4321" }))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(app.check_sms(&phone, "4321").await.0, 200);
    }
    for _ in 0..10 {
        assert_eq!(app.send_sms("+77010000000").await.0, 200);
    }
    let (_, blocks) = app.get("/fraud/blocks").await;
    assert_eq!(blocks, json!([]));
}

#[tokio::test]
async fn a_prefix_to_lift_must_be_digits() {
    let app = TestApp::spawn().await;
    let answer = app.delete("/fraud/blocks/77a1").await;
    assert_error(&answer, 400, "invalid_request");
}
