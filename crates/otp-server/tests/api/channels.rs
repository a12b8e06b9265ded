use serde_json::json;

use crate::helpers::{
    assert_error, assert_error_for, error_code, header, read, Options, TestApp, GENERATED,
};

#[tokio::test]
async fn seed_requests_work_verbatim_on_all_four_channels() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "/sms",
            "/sms/check",
            json!({"phone": "77011234567", "password": "12345", "lifetime": 300, "message": "Your OTP is 12345"}),
            json!({"phone": "77011234567", "password": "12345"}),
            ("sms", "+77011234567", None),
        ),
        (
            "/call",
            "/call/check",
            json!({"phone": "77011234567", "password": "12345", "lifetime": 300, "message": "Your OTP is 12345"}),
            json!({"phone": "77011234567", "password": "12345"}),
            ("call", "+77011234567", None),
        ),
        (
            "/email",
            "/email/check",
            json!({"email": "foobar@example.com", "password": "12345", "lifetime": 300, "subject": "Hello", "text": "Your OTP is 12345"}),
            json!({"email": "foobar@example.com", "password": "12345"}),
            ("email", "foobar@example.com", Some("Hello".to_owned())),
        ),
        (
            "/telegram",
            "/telegram/check",
            json!({"chat_id": "1234567890", "password": "12345", "lifetime": 300, "message": "Your OTP is 12345"}),
            json!({"chat_id": "1234567890", "password": "12345"}),
            ("telegram", "1234567890", None),
        ),
    ];
    for (i, (send, check, body, check_body, (channel, address, subject))) in
        cases.into_iter().enumerate()
    {
        let (status, sent) = app.post(send, body).await;
        assert_eq!(status, 200, "{send}: {sent}");
        assert_eq!(sent["status"], "sent");
        assert_eq!(sent["channel"], channel);
        assert_eq!(sent["lifetime"], 300);
        assert!(
            sent["expires_at"]
                .as_str()
                .is_some_and(|s| s.ends_with('Z')),
            "{sent}"
        );
        assert!(
            !sent.to_string().contains("12345"),
            "the password is never echoed: {sent}"
        );
        assert_eq!(
            app.sent()[i],
            (
                channel.to_owned(),
                address.to_owned(),
                subject,
                "Your OTP is 12345".to_owned()
            )
        );
        // The seed's check: GET with a JSON body (here without a JSON
        // content type, as `curl -d` sends it).
        let (status, approved) = app.get_with_body(check, check_body.clone(), false).await;
        assert_eq!(status, 200, "{check}: {approved}");
        assert_eq!(approved, json!({"status": "approved"}));
        let again = app.get_with_body(check, check_body, true).await;
        assert_error_for(format!("{check} is single-use"), &again, 404, "not_found");
    }
}

#[tokio::test]
async fn generated_code_fills_the_default_template() {
    let app = TestApp::spawn().await;
    // A US number gets otpd's English text, byte for byte as before
    // locales; the seed's Kazakh number gets its country's locale.
    let (status, _) = app.send_sms("+1 650 253 0000").await;
    assert_eq!(status, 200);
    let (status, _) = app.send_sms("+7 701 123 45 67").await;
    assert_eq!(status, 200);
    assert_eq!(
        app.sent(),
        vec![
            (
                "sms".to_owned(),
                "+16502530000".to_owned(),
                None,
                format!("Your code is {GENERATED}. It expires in 300 seconds.")
            ),
            (
                "sms".to_owned(),
                "+77011234567".to_owned(),
                None,
                format!("Ваш код: {GENERATED}. Действует 5 мин.")
            )
        ]
    );
    // Digits-only and E.164 are the same number.
    let (status, body) = app.check_sms("77011234567", GENERATED).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn email_defaults_and_placeholders_are_rendered() {
    let app = TestApp::spawn().await;
    let email = json!({"email": "Foo@Example.com", "subject": "Code {password}", "lifetime": 600});
    let (status, _) = app.post("/email", email).await;
    assert_eq!(status, 200);
    assert_eq!(
        app.sent(),
        vec![(
            "email".to_owned(),
            "foo@example.com".to_owned(),
            Some(format!("Code {GENERATED}")),
            format!("Your code is {GENERATED}. It expires in 600 seconds.")
        )]
    );
}

#[tokio::test]
async fn five_wrong_checks_lock_the_code_even_for_the_right_password() {
    let app = TestApp::spawn().await;
    app.send_sms("77011234567").await;
    for left in (0..5).rev() {
        let (status, body) = app.check_sms("77011234567", "000000").await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(error_code(&body), "wrong_password");
        assert_eq!(body["attempts_left"], left);
    }
    let locked = app.check_sms("77011234567", GENERATED).await;
    assert_error(&locked, 429, "too_many_attempts");
}

#[tokio::test]
async fn right_password_is_approved_once_then_not_found() {
    let app = TestApp::spawn().await;
    app.send_sms("77011234567").await;
    let (status, _) = app.check_sms("77011234567", GENERATED).await;
    assert_eq!(status, 200);
    let again = app.check_sms("77011234567", GENERATED).await;
    assert_error(&again, 404, "not_found");
}

#[tokio::test]
async fn a_code_expires_after_its_lifetime() {
    let app = TestApp::spawn().await;
    let send = json!({"phone": "77011234567", "password": "5555", "lifetime": 60});
    let (status, _) = app.post("/sms", send).await;
    assert_eq!(status, 200);
    app.advance_secs(59);
    let (status, _) = app.check_sms("77011234567", "0000").await;
    assert_eq!(status, 422, "still alive one second before its end");
    app.advance_secs(1);
    let (status, body) = app.check_sms("77011234567", "5555").await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_new_send_replaces_the_old_code() {
    let app = TestApp::spawn().await;
    app.send_sms_code("77011234567", "1111").await;
    app.send_sms_code("77011234567", "2222").await;
    let (status, _) = app.check_sms("77011234567", "1111").await;
    assert_eq!(status, 422);
    let (status, _) = app.check_sms("77011234567", "2222").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sms_and_call_codes_are_separate() {
    let app = TestApp::spawn().await;
    let (status, _) = app.send_sms_code("77011234567", "1111").await;
    assert_eq!(status, 200);
    let (status, _) = app.check_call("77011234567", "1111").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn checks_accept_query_parameters() {
    let app = TestApp::spawn().await;
    app.post(
        "/email",
        json!({"email": "a@example.com", "password": "9876"}),
    )
    .await;
    let (status, body) = app
        .get("/email/check?email=a%40example.com&password=9876")
        .await;
    assert_eq!(status, 200, "{body}");
    app.post("/telegram", json!({"chat_id": -100200, "password": "9876"}))
        .await;
    let (status, body) = app
        .get("/telegram/check?chat_id=-100200&password=9876")
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn cooldown_refuses_a_quick_resend_with_retry_after() {
    let app = TestApp::spawn_with(Options::toml("")).await;
    let (status, _) = app.send_sms("77011234567").await;
    assert_eq!(status, 200);
    app.advance_secs(10);
    let r = app
        .post_text("/sms", None, r#"{"phone": "77011234567"}"#)
        .await;
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(header(r.headers(), "retry-after"), Some("20"));
    let (_, body) = read(r).await;
    assert_eq!(error_code(&body), "rate_limited");
    assert_eq!(body["retry_after"], 20);
    assert_eq!(app.sent().len(), 1, "a refused send delivers nothing");
    app.advance_secs(20);
    let (status, _) = app.send_sms("77011234567").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn at_most_five_sends_per_window_to_one_destination() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        let (status, _) = app.send_sms("77011234567").await;
        assert_eq!(status, 200);
    }
    let (status, body) = app.send_sms("77011234567").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["retry_after"], 600);
    // Another destination is not affected.
    let (status, _) = app.send_sms("77011234568").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn digits_sent_as_json_numbers_are_accepted() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post("/sms", json!({"phone": 77011234567u64, "password": 48291}))
        .await;
    assert_eq!(status, 200, "{body}");
    let check = json!({"phone": 77011234567u64, "password": 48291});
    let (status, body) = app.post("/sms/check", check).await;
    assert_eq!((status, body), (200, json!({"status": "approved"})));
    // A non-integer is refused without echoing it.
    let check = json!({"phone": "77011234567", "password": 4829.5});
    let (status, body) = app.post("/sms/check", check).await;
    assert_eq!(status, 400);
    assert!(!body.to_string().contains("4829"), "{body}");
}

#[tokio::test]
async fn a_check_finds_the_code_however_the_same_number_was_typed() {
    let app = TestApp::spawn().await;
    // Sent with the national prefix after the country code; libphonenumber
    // stores it as +442079460958.
    let (status, body) = app.send_sms_code("+44 (0)20 7946 0958", "1111").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.check_sms("+44 (0)20 7946 0958", "0000").await;
    assert_eq!(status, 422, "the same input finds it: {body}");
    let (status, body) = app.check_sms("+442079460958", "1111").await;
    assert_eq!(status, 200, "the E.164 form finds it: {body}");
    // And the other way round.
    app.send_sms_code("442079460958", "2222").await;
    let (status, body) = app.check_sms("+44 (0) 20-7946-0958", "2222").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_check_for_a_number_no_send_accepts_is_404_and_a_malformed_one_400() {
    let app = TestApp::spawn().await;
    for invalid in ["+0123456789", "+78001234567", "1234"] {
        let (status, body) = app.send_sms(invalid).await;
        assert_eq!(status, 400, "send to {invalid}: {body}");
        let check = app.check_sms(invalid, "1234").await;
        assert_error_for(format!("check of {invalid}"), &check, 404, "not_found");
    }
    for malformed in ["abc", "+", "123", "7701123456789012", "7701x234567"] {
        let check = app.check_sms(malformed, "1234").await;
        let what = format!("check of {malformed:?}");
        assert_error_for(what, &check, 400, "invalid_request");
    }
}

#[tokio::test]
async fn with_a_default_region_a_check_of_a_national_number_finds_its_code() {
    let app = TestApp::spawn_with(Options::toml(
        "[limits]\ncooldown_secs = 0\n[otp]\ndefault_region = \"KZ\"\n",
    ))
    .await;
    let (status, body) = app.send_sms_code("8 701 123 45 67", "1111").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.check_sms("87011234567", "1111").await;
    assert_eq!(status, 200, "{body}");
    app.send_sms_code("+77011234567", "2222").await;
    let (status, body) = app.check_sms("8 (701) 123-45-67", "2222").await;
    assert_eq!(status, 200, "{body}");
    // Ambiguous without +: refused on check as on send.
    let app = TestApp::spawn_with(Options::toml(
        "[limits]\ncooldown_secs = 0\n[otp]\ndefault_region = \"DE\"\n",
    ))
    .await;
    let ambiguous = app.check_sms("15123456789", "1111").await;
    assert_error(&ambiguous, 400, "invalid_request");
}
