//! WhatsApp: the fifth channel on the same generic path as SMS.

use serde_json::json;

use crate::helpers::{assert_error, error_code, TestApp, GENERATED};

#[tokio::test]
async fn whatsapp_sends_checks_once_and_has_its_own_codes() {
    let app = TestApp::spawn().await;
    let (status, sent) = app
        .post("/whatsapp", json!({"phone": "+5511987654321"}))
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["channel"], "whatsapp");
    // The dev sink's text is the SMS text of the number's locale.
    assert_eq!(
        app.sent(),
        vec![(
            "whatsapp".to_owned(),
            "+5511987654321".to_owned(),
            None,
            format!("Seu código é {GENERATED}. Ele expira em 5 min.")
        )]
    );
    // The same number's SMS code is another code.
    let (status, _) = app.check_sms("+5511987654321", GENERATED).await;
    assert_eq!(status, 404);
    let check = json!({"phone": "5511987654321", "password": GENERATED});
    let (status, body) = app.post("/whatsapp/check", check.clone()).await;
    assert_eq!((status, body), (200, json!({"status": "approved"})));
    let (status, body) = app.post("/whatsapp/check", check).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    let (status, v) = app
        .get("/verifications?channel=whatsapp&phone=%2B5511987654321")
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["channel"].as_str(), v["status"].as_str()),
        (Some("whatsapp"), Some("approved"))
    );
}

#[tokio::test]
async fn whatsapp_follows_the_phone_rules() {
    let app = TestApp::spawn().await;
    let (status, body) = app.post("/whatsapp", json!({"phone": "12"})).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_request"));
    let short = json!({"phone": "+5511987654321", "lifetime": 5});
    assert_error(&app.post("/whatsapp", short).await, 400, "invalid_request");
    let no_code = json!({"phone": "+5511987654321", "message": "no code"});
    let answer = app.post("/whatsapp", no_code).await;
    assert_error(&answer, 400, "invalid_request");
}
