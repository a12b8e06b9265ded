//! `/verifications` and `Idempotency-Key`: every send's record, its
//! status after each way a code ends, cancel, and safe retries.

use serde_json::{json, Value};

use crate::helpers::{
    assert_error, assert_error_for, error_code, header, Options, TestApp, GENERATED,
};

/// Sends an SMS and returns the verification id from the answer.
async fn send(app: &TestApp, phone: &str) -> String {
    let (status, body) = app.send_sms(phone).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"]
        .as_str()
        .expect("the send answers an id")
        .to_owned();
    assert!(
        id.starts_with("vrf_") && id.len() == 36,
        "id is vrf_ and 32 hex digits: {id}"
    );
    id
}

async fn record(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("/verifications/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.to_string().contains(GENERATED),
        "a record never holds the code: {body}"
    );
    body
}

#[tokio::test]
async fn a_send_creates_a_pending_verification_with_its_delivery() {
    let app = TestApp::spawn().await;
    let id = send(&app, "77011234567").await;
    let v = record(&app, &id).await;
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["status"], "pending");
    assert_eq!(v["channel"], "sms");
    assert_eq!(v["destination"], "+77011234567");
    assert_eq!(v["country"], "KZ");
    assert_eq!(v["attempts"], 0);
    assert_eq!(v["max_attempts"], 5);
    assert_eq!(v["deliveries"][0]["provider"], "mock");
    assert_eq!(v["deliveries"][0]["outcome"], "delivered");
    assert!(v.get("ended_at").is_none(), "{v}");
    assert!(
        v["created_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{v}"
    );
}

#[tokio::test]
async fn the_right_code_ends_it_as_approved() {
    let app = TestApp::spawn().await;
    let id = send(&app, "77011234567").await;
    assert_eq!(app.check_sms("77011234567", "000000").await.0, 422);
    assert_eq!(app.check_sms("77011234567", GENERATED).await.0, 200);
    let v = record(&app, &id).await;
    assert_eq!(v["status"], "approved");
    assert_eq!(v["attempts"], 1);
    assert!(v["ended_at"].is_string(), "{v}");
}

#[tokio::test]
async fn too_many_wrong_codes_end_it_as_max_attempts_reached() {
    let app = TestApp::spawn_with(Options::toml(
        "[limits]\ncooldown_secs = 0\n[otp]\nmax_attempts = 2\n",
    ))
    .await;
    let id = send(&app, "77011234567").await;
    app.check_sms("77011234567", "000000").await;
    assert_eq!(record(&app, &id).await["status"], "pending");
    app.check_sms("77011234567", "000000").await;
    let v = record(&app, &id).await;
    assert_eq!(v["status"], "max_attempts_reached");
    assert_eq!(v["attempts"], 2);
}

#[tokio::test]
async fn an_unused_code_reads_as_expired_once_it_runs_out() {
    let app = TestApp::spawn().await;
    let id = send(&app, "77011234567").await;
    app.advance_secs(299);
    assert_eq!(record(&app, &id).await["status"], "pending");
    app.advance_secs(1);
    let v = record(&app, &id).await;
    assert_eq!(v["status"], "expired");
    assert_eq!(v["ended_at"], v["expires_at"]);
}

#[tokio::test]
async fn a_new_send_cancels_the_old_verification_as_replaced() {
    let app = TestApp::spawn().await;
    let first = send(&app, "77011234567").await;
    let second = send(&app, "+7 701 123 45 67").await;
    let old = record(&app, &first).await;
    assert_eq!(old["status"], "canceled");
    assert_eq!(old["reason"], "replaced");
    assert_eq!(record(&app, &second).await["status"], "pending");
    // The latest of the destination is the new one, however it is typed.
    let (status, latest) = app
        .get("/verifications?channel=sms&phone=%2B77011234567")
        .await;
    assert_eq!(status, 200, "{latest}");
    assert_eq!(latest["id"], second.as_str());
}

#[tokio::test]
async fn a_failed_delivery_ends_it_as_failed_with_the_providers_reason() {
    let app = TestApp::spawn_with(Options::failing_senders()).await;
    let (status, body) = app.send_sms("77011234567").await;
    assert_eq!(status, 502, "{body}");
    let (status, latest) = app
        .get("/verifications?channel=sms&phone=77011234567")
        .await;
    assert_eq!(status, 200, "{latest}");
    assert_eq!(latest["status"], "failed");
    assert_eq!(latest["deliveries"][0]["outcome"], "failed");
    assert_eq!(latest["deliveries"][0]["error"], "HTTP 503 from mock");
}

#[tokio::test]
async fn cancel_kills_the_code_once() {
    let app = TestApp::spawn().await;
    let id = send(&app, "77011234567").await;
    let (status, v) = app
        .post(&format!("/verifications/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "canceled");
    assert_eq!(v["reason"], "api");
    let (status, body) = app.check_sms("77011234567", GENERATED).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = app
        .post(&format!("/verifications/{id}/cancel"), json!({}))
        .await;
    assert_eq!((status, error_code(&body)), (409, "already_ended"));
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("canceled")),
        "{body}"
    );
    let unknown = format!("vrf_{}", "0".repeat(32));
    for path in [
        format!("/verifications/{unknown}/cancel"),
        "/verifications/nonsense/cancel".to_owned(),
    ] {
        assert_error_for(&path, &app.post(&path, json!({})).await, 404, "not_found");
    }
    let (status, body) = app.get(&format!("/verifications/{unknown}")).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
}

#[tokio::test]
async fn looking_up_the_latest_needs_the_channels_own_address_field() {
    let app = TestApp::spawn().await;
    for query in [
        "/verifications?channel=sms",
        "/verifications?channel=sms&email=a%40example.com",
        "/verifications?channel=sms&phone=77011234567&email=a%40example.com",
        "/verifications?channel=sms&phone=12",
        "/verifications?channel=fax&phone=77011234567",
    ] {
        assert_error_for(query, &app.get(query).await, 400, "invalid_request");
    }
    let nobody = app
        .get("/verifications?channel=email&email=nobody%40example.com")
        .await;
    assert_error(&nobody, 404, "not_found");
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_answer_the_first_answer_and_send_once() {
    let app = TestApp::spawn().await;
    let body = json!({ "phone": "77011234567" });
    let key = [("Idempotency-Key", "order-42")];
    let (s1, h1, first) = app.post_with("/sms", &key, body.clone()).await;
    assert_eq!(s1, 200, "{first}");
    assert!(h1.get("idempotent-replayed").is_none());
    let (s2, h2, second) = app.post_with("/sms", &key, body.clone()).await;
    assert_eq!(s2, 200, "{second}");
    assert_eq!(second, first);
    assert_eq!(header(&h2, "idempotent-replayed"), Some("true"));
    assert_eq!(app.sent().len(), 1, "one delivery");
    // The first code is still the live one.
    assert_eq!(app.check_sms("77011234567", GENERATED).await.0, 200);
    // The same key with another body is refused.
    let (s3, _, other) = app
        .post_with("/sms", &key, json!({ "phone": "77011234568" }))
        .await;
    assert_eq!((s3, error_code(&other)), (422, "idempotency_key_reused"));
    // So is the same key on another operation.
    let id = first["id"].as_str().expect("id");
    let (s4, _, other) = app
        .post_with(&format!("/verifications/{id}/cancel"), &key, json!({}))
        .await;
    assert_eq!((s4, error_code(&other)), (422, "idempotency_key_reused"));
}

#[tokio::test]
async fn concurrent_sends_with_one_key_deliver_once() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.post_with(
                "/email",
                &[("Idempotency-Key", "signup-7")],
                json!({ "email": "a@example.com" }),
            )
            .await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        let (status, _, body) = t.await.expect("task");
        match status {
            200 => answers.push(body),
            409 => assert_eq!(error_code(&body), "idempotency_in_progress"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(!answers.is_empty());
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(app.sent().len(), 1, "one delivery, one code");
}

#[tokio::test]
async fn a_failed_send_frees_its_idempotency_key_for_a_retry() {
    let app = TestApp::spawn_with(Options::failing_senders()).await;
    let key = [("Idempotency-Key", "retry-me")];
    let body = json!({ "phone": "77011234567" });
    let (s1, _, _) = app.post_with("/sms", &key, body.clone()).await;
    let (s2, h2, _) = app.post_with("/sms", &key, body).await;
    assert_eq!((s1, s2), (502, 502));
    assert!(h2.get("idempotent-replayed").is_none());
    assert_eq!(app.sent().len(), 2, "the retry tried again");
}

#[tokio::test]
async fn an_idempotency_key_must_be_visible_ascii_of_at_most_255() {
    let app = TestApp::spawn().await;
    let long = "k".repeat(256);
    let phone = json!({ "phone": "77011234567" });
    for key in [long.as_str(), "with space", "é"] {
        let idempotency = [("Idempotency-Key", key)];
        let (status, _, body) = app.post_with("/sms", &idempotency, phone.clone()).await;
        assert_error_for(format!("{key:?}"), &(status, body), 400, "invalid_request");
    }
    assert!(app.sent().is_empty());
}

#[tokio::test]
async fn a_repeated_cancel_with_its_key_answers_the_first_cancel() {
    let app = TestApp::spawn().await;
    let id = send(&app, "77011234567").await;
    let path = format!("/verifications/{id}/cancel");
    let key = [("Idempotency-Key", "cancel-1")];
    let (s1, _, first) = app.post_with(&path, &key, json!({})).await;
    let (s2, h2, second) = app.post_with(&path, &key, json!({})).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first, second);
    assert_eq!(header(&h2, "idempotent-replayed"), Some("true"));
}
