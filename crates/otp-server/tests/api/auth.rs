use serde_json::json;

use crate::helpers::{error_code, Options, TestApp};

const AUTH: &str =
    "[auth]\nusername = \"admin\"\npassword = \"0123\"\n[limits]\ncooldown_secs = 0\n";

#[tokio::test]
async fn basic_auth_guards_the_api_when_configured() {
    let app = TestApp::spawn_with(Options {
        toml: AUTH,
        ..Default::default()
    })
    .await;
    let url = format!("{}/sms", app.base);
    let body = json!({"phone": "77011234567", "password": "12345"});

    let r = app
        .client
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"otpd\"")
    );
    let (_, err) = crate::helpers::read(r).await;
    assert_eq!(error_code(&err), "unauthorized");

    let r = app
        .client
        .post(&url)
        .basic_auth("admin", Some("123"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401, "the leading zero matters");

    let r = app
        .client
        .post(&url)
        .basic_auth("admin", Some("0123"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(app.sent().len(), 1, "only the authorised send went out");

    // Checks without credentials are refused before anything is counted:
    // after as many of them as the attempt limit, the right code still works.
    for _ in 0..5 {
        let (status, _) = app.check_sms("77011234567", "99999").await;
        assert_eq!(status, 401);
    }
    let r = app
        .client
        .post(format!("{}/sms/check", app.base))
        .basic_auth("admin", Some("0123"))
        .json(&json!({"phone": "77011234567", "password": "12345"}))
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status().as_u16(),
        200,
        "no attempt was counted by the 401"
    );
}

#[tokio::test]
async fn health_docs_and_spec_stay_open_with_auth_on() {
    let app = TestApp::spawn_with(Options {
        toml: AUTH,
        ..Default::default()
    })
    .await;
    for path in ["/healthz", "/readyz"] {
        let (status, _) = app.get(path).await;
        assert_eq!(status, 200, "{path}");
    }
    for path in ["/openapi.json", "/openapi.yaml", "/docs"] {
        let r = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
}
