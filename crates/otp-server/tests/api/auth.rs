use serde_json::json;

use reqwest::Method;

use crate::helpers::{assert_error_for, error_code, header, read, Options, TestApp};

const AUTH: &str =
    "[auth]\nusername = \"admin\"\npassword = \"0123\"\n[limits]\ncooldown_secs = 0\n";
/// The credentials `AUTH` configures.
const ADMIN: (&str, &str) = ("admin", "0123");

#[tokio::test]
async fn basic_auth_guards_the_api_when_configured() {
    let app = TestApp::spawn_with(Options::toml(AUTH)).await;
    let body = json!({"phone": "77011234567", "password": "12345"}).to_string();

    let r = app.post_text("/sms", None, body.clone()).await;
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        header(r.headers(), "www-authenticate"),
        Some("Basic realm=\"otpd\"")
    );
    let (_, err) = read(r).await;
    assert_eq!(error_code(&err), "unauthorized");

    let r = app
        .post_text("/sms", Some(("admin", "123")), body.clone())
        .await;
    assert_eq!(r.status().as_u16(), 401, "the leading zero matters");

    let r = app.post_text("/sms", Some(ADMIN), body.clone()).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(app.sent().len(), 1, "only the authorised send went out");

    // Checks without credentials are refused before anything is counted:
    // after as many of them as the attempt limit, the right code still works.
    for _ in 0..5 {
        let (status, _) = app.check_sms("77011234567", "99999").await;
        assert_eq!(status, 401);
    }
    let status = app
        .post_text("/sms/check", Some(ADMIN), body)
        .await
        .status();
    assert_eq!(status, 200, "no attempt was counted by the 401");
}

#[tokio::test]
async fn health_docs_and_spec_stay_open_with_auth_on() {
    let app = TestApp::spawn_with(Options::toml(AUTH)).await;
    for path in ["/healthz", "/readyz"] {
        let (status, _) = app.get(path).await;
        assert_eq!(status, 200, "{path}");
    }
    for path in ["/openapi.json", "/openapi.yaml", "/docs"] {
        let r = app.raw(Method::GET, path).await;
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
}

const AUTH_AND_WEBHOOK: &str = "[auth]\nusername = \"admin\"\npassword = \"0123\"\n[telegram]\nwebhook_secret = \"hook-secret\"\n[twilio_api]\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"twilio-token\"\n";

/// Walks every operation of the spec the server runs. Each one that the
/// gate's table does not exempt answers 401 without credentials and with
/// wrong ones, before its body is looked at; the spec and the table agree
/// on which operations are exempt. A new route can never ship open.
#[tokio::test]
async fn every_operation_in_the_spec_needs_credentials_unless_exempt() {
    use otp_server::api::auth::{exemption, Access};

    let app = TestApp::spawn_with(Options::toml(AUTH_AND_WEBHOOK)).await;
    let spec: serde_json::Value =
        serde_json::from_str(&otp_server::api::api_service().spec()).expect("spec is JSON");
    let paths = spec["paths"].as_object().expect("paths");
    let (mut closed, mut webhook, mut signed, mut open, mut twilio) = (0, 0, 0, 0, 0);
    for (path, operations) in paths {
        // Path parameters get a placeholder value.
        let concrete: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for (method, operation) in operations.as_object().expect("operations") {
            let schemes: Vec<&str> = operation["security"]
                .as_array()
                .map(|alternatives| {
                    alternatives
                        .iter()
                        .filter_map(|a| a.as_object())
                        .flat_map(|a| a.keys().map(String::as_str))
                        .collect()
                })
                .unwrap_or_default();
            let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .expect("method");
            let request = |auth: Option<(&str, &str)>, secret: Option<&str>| {
                let mut r = app
                    .client
                    .request(method.clone(), format!("{}{concrete}", app.base));
                if method != reqwest::Method::GET {
                    // A body that would be a 400 if anything parsed it.
                    r = r.header("content-type", "application/json").body("{\"x\":");
                }
                if let Some((user, pass)) = auth {
                    r = r.basic_auth(user, Some(pass));
                }
                if let Some(secret) = secret {
                    r = r.header("X-Telegram-Bot-Api-Secret-Token", secret);
                }
                r.send()
            };
            let what = format!("{method} {path}");
            match exemption(&concrete) {
                None => {
                    assert!(
                        schemes.contains(&"BasicAuth"),
                        "{what}: spec lacks BasicAuth"
                    );
                    for auth in [None, Some(("admin", "wrong")), Some(("", ""))] {
                        let r = request(auth, None).await.expect("request");
                        assert_eq!(r.status().as_u16(), 401, "{what} with {auth:?}");
                        assert!(r.headers().contains_key("www-authenticate"), "{what}");
                        let (_, body) = read(r).await;
                        assert_eq!(error_code(&body), "unauthorized", "{what}");
                    }
                    closed += 1;
                }
                Some(Access::WebhookSecret) => {
                    assert!(schemes.contains(&"WebhookSecret"), "{what}: spec lacks it");
                    for secret in [None, Some("wrong")] {
                        let r = request(Some(("admin", "0123")), secret)
                            .await
                            .expect("request");
                        assert_eq!(r.status().as_u16(), 401, "{what} with {secret:?}");
                    }
                    webhook += 1;
                }
                Some(Access::Signed) => {
                    // The route checks Meta's signature itself; without
                    // `whatsapp.meta.app_secret` (as here) it is off.
                    let expected: &[&str] = if method == reqwest::Method::POST {
                        &["HubSignature"]
                    } else {
                        &[]
                    };
                    assert_eq!(schemes, expected, "{what}");
                    let r = request(None, None).await.expect("request");
                    assert_eq!(r.status().as_u16(), 404, "{what}");
                    let (_, body) = read(r).await;
                    assert_eq!(error_code(&body), "not_found", "{what}");
                    signed += 1;
                }
                Some(Access::Twilio) => {
                    // Its own pair, answered in Twilio's words: the
                    // native credentials do not open it.
                    assert_eq!(schemes, ["TwilioAuth"], "{what}");
                    let sid = "AC0123456789abcdef0123456789abcdef";
                    for auth in [None, Some(("admin", "0123")), Some((sid, "wrong"))] {
                        let r = request(auth, None).await.expect("request");
                        assert_eq!(r.status().as_u16(), 401, "{what} with {auth:?}");
                        assert!(r.headers().contains_key("www-authenticate"), "{what}");
                        let (_, body) = read(r).await;
                        assert_eq!(body["code"], 20003, "{what}: {body}");
                        assert_eq!(body["status"], 401, "{what}: {body}");
                    }
                    twilio += 1;
                }
                Some(Access::Open) => {
                    assert!(
                        schemes.is_empty(),
                        "{what}: exempt but the spec asks {schemes:?}"
                    );
                    let r = request(None, None).await.expect("request");
                    assert_ne!(r.status().as_u16(), 401, "{what}");
                    open += 1;
                }
            }
        }
    }
    assert!(closed >= 16, "only {closed} closed operations walked");
    assert_eq!((webhook, signed, open, twilio), (1, 2, 2, 9));
    assert!(app.sent().is_empty(), "nothing was delivered");
}

/// The gate runs before the body is read: a body over the size limit
/// without credentials is a 401, not a 413, and nothing is buffered.
#[tokio::test]
async fn an_unauthenticated_oversized_body_is_refused_before_it_is_read() {
    let app = TestApp::spawn_with(Options::toml(AUTH)).await;
    let huge = format!(
        "{{\"phone\": \"77011234567\", \"message\": \"{}\"}}",
        "x".repeat(200_000)
    );
    let r = app.post_text("/sms", None, huge.clone()).await;
    assert_eq!(r.status().as_u16(), 401);
    let status = app.post_text("/sms", Some(ADMIN), huge).await.status();
    assert_eq!(status, 413, "with credentials the size limit answers");
}

/// The dev outbox's page, live feed and clear form are not in the spec;
/// the gate closes them all the same, and without the dev sink they do
/// not exist.
#[tokio::test]
async fn the_outbox_pages_are_closed_with_auth_and_absent_without_the_dev_sink() {
    let with_auth = TestApp::spawn_with(Options::toml(AUTH)).await;
    let open = TestApp::spawn().await;
    for (method, path) in [
        ("GET", "/outbox"),
        ("GET", "/outbox/events"),
        ("POST", "/outbox/clear"),
        ("GET", "/outbox/messages"),
        ("DELETE", "/outbox/messages"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        for (app, want) in [(&with_auth, 401), (&open, 404)] {
            let answer = read(app.raw(method.clone(), path).await).await;
            let code = if want == 401 {
                "unauthorized"
            } else {
                "not_found"
            };
            assert_error_for(format!("{method} {path}"), &answer, want, code);
        }
    }
}
