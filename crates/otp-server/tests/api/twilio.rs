//! The Twilio-compatible API with mocked adapters and a test clock:
//! expiry (by moving the clock), the metrics of its sends and checks,
//! and the paging links.

use crate::helpers::{read, Options, TestApp, GENERATED};
use serde_json::Value;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO: &str = "[limits]\ncooldown_secs = 0\n[twilio_api]\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"t0ken\"\npublic_url = \"https://otp.example.com/\"\n";

async fn call(app: &TestApp, method: reqwest::Method, path: &str, form: &str) -> (u16, Value) {
    let r = app
        .client
        .request(method, format!("{}{path}", app.base))
        .basic_auth(SID, Some("t0ken"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .expect("request");
    read(r).await
}

/// A GET of `path` with the account's credentials.
async fn fetch(app: &TestApp, path: &str) -> (u16, Value) {
    call(app, reqwest::Method::GET, path, "").await
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(Options::toml(TWILIO).with_metrics()).await
}

async fn service(app: &TestApp, name: &str) -> String {
    let (status, svc) = call(
        app,
        reqwest::Method::POST,
        "/v2/Services",
        &format!("FriendlyName={name}"),
    )
    .await;
    assert_eq!(status, 201, "{svc}");
    svc["sid"].as_str().expect("sid").to_owned()
}

/// Creates a verification of service `va` with `form`: 201, its body.
async fn send(app: &TestApp, va: &str, form: &str) -> Value {
    let (status, v) = call(
        app,
        reqwest::Method::POST,
        &format!("/v2/Services/{va}/Verifications"),
        form,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v
}

/// A VerificationCheck of service `va` with `form`.
async fn check(app: &TestApp, va: &str, form: &str) -> (u16, Value) {
    call(
        app,
        reqwest::Method::POST,
        &format!("/v2/Services/{va}/VerificationCheck"),
        form,
    )
    .await
}

/// Checks the right code by `To` +4915112345678: 200 approved, on voice,
/// for verification `v`; the answer.
async fn approves_by_voice(app: &TestApp, va: &str, v: &Value) -> Value {
    let (status, c) = check(app, va, &format!("To=%2B4915112345678&Code={GENERATED}")).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (
            c["status"].as_str(),
            c["channel"].as_str(),
            c["sid"].as_str()
        ),
        (Some("approved"), Some("call"), v["sid"].as_str()),
        "{c}"
    );
    c
}

/// The sum of the scraped samples whose line starts with `prefix`.
fn metric_sum(scrape: &str, prefix: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test]
async fn an_expired_verification_is_gone_for_fetch_and_check() {
    let app = spawn().await;
    let va = service(&app, "Acme").await;
    let v = send(&app, &va, "To=%2B4915112345678&Channel=sms").await;
    let ve = v["sid"].as_str().expect("sid");
    assert_eq!(
        v["url"],
        format!("https://otp.example.com/v2/Services/{va}/Verifications/{ve}"),
        "public_url makes the links"
    );
    app.advance_secs(301);
    let (status, gone) = fetch(&app, &format!("/v2/Services/{va}/Verifications/{ve}")).await;
    assert_eq!(
        (status, gone["code"].as_u64()),
        (404, Some(20404)),
        "{gone}"
    );
    let (status, gone) = check(&app, &va, &format!("VerificationSid={ve}&Code={GENERATED}")).await;
    assert_eq!(
        (status, gone["code"].as_u64()),
        (404, Some(20404)),
        "{gone}"
    );
    // A verification of another service is not this one's.
    let other = service(&app, "Other").await;
    let v = send(&app, &va, "To=%2B4915112345679&Channel=sms").await;
    let ve = v["sid"].as_str().expect("sid");
    let (status, _) = fetch(&app, &format!("/v2/Services/{other}/Verifications/{ve}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_twilio_shaped_send_and_check_count_as_otpd_sends_and_checks() {
    let app = spawn().await;
    let va = service(&app, "Acme").await;
    send(&app, &va, "To=%2B4915112345678&Channel=sms").await;
    let (status, c) = check(&app, &va, &format!("To=%2B4915112345678&Code={GENERATED}")).await;
    assert_eq!(
        (status, c["status"].as_str()),
        (200, Some("approved")),
        "{c}"
    );
    let scrape = app.scrape().await;
    assert_eq!(metric_sum(&scrape, "otpd_sends_total{"), 1.0, "{scrape}");
    assert_eq!(metric_sum(&scrape, "otpd_checks_total{"), 1.0, "{scrape}");
    let sent = app.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].3.starts_with("Acme: "), "{:?}", sent[0]);
}

#[tokio::test]
async fn a_check_by_to_finds_the_voice_code_and_never_spends_a_native_one() {
    let app = spawn().await;
    let va = service(&app, "Acme").await;
    let v = send(&app, &va, "To=%2B4915112345678&Channel=call").await;
    // A native SMS to the same number: its code is no service's.
    let (status, _) = app.send_sms("+4915112345678").await;
    assert_eq!(status, 200);
    let c = approves_by_voice(&app, &va, &v).await;
    assert_eq!(c["to"], "+4915112345678");
    assert_eq!(c["date_created"], v["date_created"], "{c}");
    // The native code is untouched: no attempt was counted on it.
    let (status, body) = app.check_sms("+4915112345678", GENERATED).await;
    assert_eq!(status, 200, "{body}");
    // Only the checks that found a code are counted: the SMS miss of the
    // /v2 check is not.
    let scrape = app.scrape().await;
    assert_eq!(metric_sum(&scrape, "otpd_checks_total{"), 2.0, "{scrape}");
}

#[tokio::test]
async fn a_check_by_to_passes_a_used_up_sms_code_for_a_voice_code_sent_since() {
    let app = spawn().await;
    let va = service(&app, "Acme").await;
    send(&app, &va, "To=%2B4915112345678&Channel=sms").await;
    let mut last = Value::Null;
    for _ in 0..5 {
        let (status, c) = check(&app, &va, "To=%2B4915112345678&Code=000000").await;
        assert_eq!(status, 200, "{c}");
        last = c;
    }
    assert_eq!(last["status"], "max_attempts_reached", "{last}");
    // Only the used-up SMS code: 429 (60202).
    let (status, c) = check(&app, &va, &format!("To=%2B4915112345678&Code={GENERATED}")).await;
    assert_eq!((status, c["code"].as_u64()), (429, Some(60202)), "{c}");
    // A voice code sent since is the one checked.
    let v = send(&app, &va, "To=%2B4915112345678&Channel=call").await;
    approves_by_voice(&app, &va, &v).await;
}

#[tokio::test]
async fn services_page_with_absolute_links_in_twilio_s_meta_block() {
    let app = spawn().await;
    for name in ["A", "B", "C"] {
        service(&app, name).await;
        // Created a second apart: the order is by creation, not by sid.
        app.advance_secs(1);
    }
    let (status, page) = fetch(&app, "/v2/Services?PageSize=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["services"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["meta"]["key"], "services");
    let next = page["meta"]["next_page_url"].as_str().expect("a next page");
    assert_eq!(
        next,
        "https://otp.example.com/v2/Services?PageSize=2&Page=1"
    );
    let (_, last) = fetch(&app, "/v2/Services?PageSize=2&Page=1").await;
    assert_eq!(last["services"].as_array().map(Vec::len), Some(1));
    assert!(last["meta"]["next_page_url"].is_null(), "{last}");
    assert_eq!(
        last["meta"]["previous_page_url"],
        "https://otp.example.com/v2/Services?PageSize=2&Page=0"
    );
    let names: Vec<&str> = page["services"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(last["services"].as_array().into_iter().flatten())
        .filter_map(|s| s["friendly_name"].as_str())
        .collect();
    assert_eq!(names, ["A", "B", "C"], "oldest first");
}
