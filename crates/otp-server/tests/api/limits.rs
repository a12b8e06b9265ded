//! Abuse limits: per end user, per channel, by country, test
//! destinations, failed pairing lookups and repeated webhook updates.

use serde_json::{json, Value};

use crate::helpers::{assert_error, assert_error_for, error_code, Options, TestApp, PAIRING};

/// No cooldown, and two (or one) sends per end user in a window.
const TWO_PER_USER: &str = "[limits]\ncooldown_secs = 0\nuser_sends_per_window = 2\n";
const ONE_PER_USER: &str = "[limits]\ncooldown_secs = 0\nuser_sends_per_window = 1\n";

async fn send_as(app: &TestApp, phone: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let (status, _, body) = app
        .post_with("/sms", headers, json!({ "phone": phone }))
        .await;
    (status, body)
}

#[tokio::test]
async fn per_user_limit_follows_the_user_key_header_not_the_caller() {
    let app = TestApp::spawn_with(Options::toml(TWO_PER_USER)).await;
    let alice = [("X-OTP-User-Key", "203.0.113.5")];
    assert_eq!(send_as(&app, "77011234567", &alice).await.0, 200);
    assert_eq!(send_as(&app, "77011234568", &alice).await.0, 200);
    let (status, body) = send_as(&app, "77011234569", &alice).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"), "{body}");
    assert_eq!(body["retry_after"], 3600);
    // Another user, and requests without a key, are not affected.
    assert_eq!(
        send_as(&app, "77011234569", &[("X-OTP-User-Key", "bob")])
            .await
            .0,
        200
    );
    assert_eq!(send_as(&app, "77011234560", &[]).await.0, 200);
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let app = TestApp::spawn_with(Options::toml(
        "[limits]\ncooldown_secs = 0\nuser_sends_per_window = 1\n[security]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    ))
    .await;
    // The client forged the left-most entry; the proxy appended the real one.
    let xff = [("X-Forwarded-For", "6.6.6.6, 198.51.100.7")];
    assert_eq!(send_as(&app, "77011234567", &xff).await.0, 200);
    let (status, _) = send_as(
        &app,
        "77011234568",
        &[("X-Forwarded-For", "1.1.1.1, 198.51.100.7")],
    )
    .await;
    assert_eq!(status, 429, "same client behind the proxy");
    assert_eq!(
        send_as(&app, "77011234568", &[("X-Forwarded-For", "198.51.100.8")])
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = TestApp::spawn_with(Options::toml(ONE_PER_USER)).await;
    let xff = [("X-Forwarded-For", "198.51.100.7")];
    assert_eq!(send_as(&app, "77011234567", &xff).await.0, 200);
    assert_eq!(send_as(&app, "77011234568", &xff).await.0, 200);
}

#[tokio::test]
async fn a_channel_budget_caps_sends_across_destinations() {
    let app = TestApp::spawn_with(Options::toml(
        "[limits]\ncooldown_secs = 0\nsms_per_hour = 3\n",
    ))
    .await;
    for phone in ["77011234561", "77011234562", "77011234563"] {
        assert_eq!(app.send_sms(phone).await.0, 200);
    }
    assert_error(&app.send_sms("77011234564").await, 429, "rate_limited");
    // Email has its own budget.
    let (status, _) = app.post("/email", json!({"email": "a@example.com"})).await;
    assert_eq!(status, 200);
    app.advance_secs(3600);
    assert_eq!(app.send_sms("77011234564").await.0, 200);
}

#[tokio::test]
async fn country_rules_refuse_with_403() {
    let app = TestApp::spawn_with(Options::toml(
        "[limits]\ncooldown_secs = 0\n[sms]\nallow_countries = [49]\n[call]\ndeny_countries = [49]\n",
    ))
    .await;
    let refused = app.send_sms("77011234567").await;
    assert_error(&refused, 403, "destination_not_allowed");
    assert_eq!(app.send_sms("+49 30 1234567").await.0, 200);
    let (status, _) = app.post("/call", json!({"phone": "+49 30 1234567"})).await;
    assert_eq!(status, 403);
    let (status, _) = app.post("/call", json!({"phone": "77011234567"})).await;
    assert_eq!(status, 200);
    assert_eq!(app.sent().len(), 2, "refused sends deliver nothing");
}

#[tokio::test]
async fn test_destinations_get_their_fixed_code_and_nothing_is_sent() {
    let app = TestApp::spawn_with(Options::toml(
        "[security]\ntest_destinations = [{ channel = \"email\", to = \"review@example.com\", code = \"424242\" }]\n",
    ))
    .await;
    let (status, _) = app
        .post("/email", json!({"email": "review@example.com"}))
        .await;
    assert_eq!(status, 200);
    assert!(app.sent().is_empty());
    let (status, _) = app.check_email("review@example.com", "424242").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn failed_target_lookups_are_limited_per_user() {
    let app =
        TestApp::spawn_with(Options::toml("[limits]\ntarget_failures_per_window = 3\n")).await;
    let update = json!({"update_id": 1, "message": {"message_id": 1, "date": 0,
        "chat": {"id": 99, "type": "private"}, "from": {"id": 99, "is_bot": false, "first_name": "A"}, "text": "hi"}});
    let (status, _) = app.post("/telegram/webhook", update).await;
    assert_eq!(status, 200);
    let mallory = [("X-OTP-User-Key", "mallory")];
    let lookup = |password: &str| {
        let (app, body) = (&app, json!({ "password": password }));
        async move {
            let (status, _, body) = app.post_with("/telegram/target", &mallory, body).await;
            (status, body)
        }
    };
    for guess in ["AAAAAAAA", "BBBBBBBB", "nonsense"] {
        assert_eq!(lookup(guess).await.0, 404);
    }
    let right = lookup(PAIRING).await;
    assert_error_for("even the right code", &right, 429, "rate_limited");
    // Another user is not blocked.
    let (status, body) = app
        .post("/telegram/target", json!({ "password": PAIRING }))
        .await;
    assert_eq!((status, body), (200, json!({"chat_id": 99})));
}

#[tokio::test]
async fn a_repeated_webhook_update_starts_no_second_pairing() {
    let app = TestApp::spawn_with(Options::toml("[limits]\ncooldown_secs = 0\n")).await;
    let update = json!({"update_id": 5, "message": {"message_id": 1, "date": 0,
        "chat": {"id": 7, "type": "private"}, "from": {"id": 7, "is_bot": false, "first_name": "A"}, "text": "hi"}});
    assert_eq!(app.post("/telegram/webhook", update.clone()).await.0, 200);
    assert_eq!(app.post("/telegram/webhook", update).await.0, 200);
    assert_eq!(app.sent().len(), 1);
}
