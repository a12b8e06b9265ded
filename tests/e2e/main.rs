//! End-to-end: the real `otpd` binary, on the embedded store, with the
//! dev sink, spoken to over raw TCP.

mod browser;
mod events;
mod fraud;
mod load;
mod observability;
mod providers;
mod redis;
mod support;
mod twilio;
mod whatsapp_hook;

use std::process::Command;

use serde_json::json;
use support::{http_raw, Otpd, OTPD};

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn a_code_survives_a_restart_and_is_approved_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[]);
    let (status, body) = otpd.request(
        "POST",
        "/sms",
        &[JSON],
        r#"{"phone": "77011234567", "password": "12345", "lifetime": 300, "message": "Your OTP is 12345"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let exit = otpd.stop();
    assert!(exit.success(), "SIGTERM is a clean exit: {exit}");

    let otpd = Otpd::start(dir.path(), &[]);
    let check = r#"{"phone": "77011234567", "password": "12345"}"#;
    let (status, body) = otpd.request("GET", "/sms/check", &[], check);
    assert_eq!((status, body), (200, json!({"status": "approved"})));
    let (status, _) = otpd.request("GET", "/sms/check", &[], check);
    assert_eq!(status, 404);
}

#[test]
fn seed_get_checks_with_a_body_work_with_and_without_content_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[]);
    for (i, headers) in [
        vec![],
        vec![JSON],
        vec![("Content-Type", "application/x-www-form-urlencoded")],
    ]
    .into_iter()
    .enumerate()
    {
        let email = format!("user{i}@example.com");
        let send = format!(
            r#"{{"email": "{email}", "password": "12345", "lifetime": 300, "subject": "Hello", "text": "Your OTP is 12345"}}"#
        );
        let (status, body) = otpd.request("POST", "/email", &headers, &send);
        assert_eq!(status, 200, "{body}");
        let check = format!(r#"{{"email": "{email}", "password": "12345"}}"#);
        let (status, body) = otpd.request("GET", "/email/check", &headers, &check);
        assert_eq!(
            (status, body),
            (200, json!({"status": "approved"})),
            "headers {headers:?}"
        );
    }
    let sink = otpd.outbox_at_least(3);
    assert_eq!(sink.len(), 3);
    assert_eq!(sink[0]["to"], "user0@example.com");
    assert_eq!(sink[0]["subject"], "Hello");
    assert_eq!(sink[0]["body"], "Your OTP is 12345");
}

#[test]
fn the_bot_flow_works_through_the_dev_sink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[("TELEGRAM_WEBHOOK_SECRET", "0042-secret")]);
    let update = r#"{"update_id": 10, "message": {"message_id": 1, "date": 0, "chat": {"id": 5150, "type": "private"}, "from": {"id": 5150, "is_bot": false, "first_name": "A"}, "text": "hello"}}"#;
    let (status, _) = otpd.request("POST", "/telegram/webhook", &[JSON], update);
    assert_eq!(status, 401, "the secret is required when configured");
    let (status, _) = otpd.request(
        "POST",
        "/telegram/webhook",
        &[JSON, ("X-Telegram-Bot-Api-Secret-Token", "0042-secret")],
        update,
    );
    assert_eq!(status, 200);
    let sink = otpd.outbox_at_least(1);
    assert_eq!(sink.len(), 1, "one reply to the chat: {sink:?}");
    assert_eq!(sink[0]["to"], "5150");
    let text = sink[0]["body"].as_str().expect("body");
    let code = text
        .split_whitespace()
        .nth(3)
        .map(|w| w.trim_end_matches('.'))
        .expect("code in the reply");
    assert_eq!(code.len(), 8, "{text}");
    let (status, body) = otpd.request(
        "GET",
        "/target",
        &[],
        &format!(r#"{{"password": "{code}"}}"#),
    );
    assert_eq!((status, body), (200, json!({"chat_id": 5150})));
}

#[test]
fn seed_auth_env_vars_turn_basic_auth_on_and_keep_leading_zeros() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(
        dir.path(),
        &[
            ("HTTP_AUTH_USERNAME", "admin"),
            ("HTTP_AUTH_PASSWORD", "0123"),
        ],
    );
    let body = r#"{"phone": "77011234567", "password": "12345"}"#;
    let (status, _) = otpd.request("POST", "/sms", &[JSON], body);
    assert_eq!(status, 401);
    // admin:0123
    let (status, _) = otpd.request(
        "POST",
        "/sms",
        &[JSON, ("Authorization", "Basic YWRtaW46MDEyMw==")],
        body,
    );
    assert_eq!(status, 200);
    let (status, _) = otpd.request("GET", "/healthz", &[], "");
    assert_eq!(status, 200);
}

#[test]
fn locales_and_whatsapp_are_behind_basic_auth_in_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(
        dir.path(),
        &[
            ("HTTP_AUTH_USERNAME", "admin"),
            ("HTTP_AUTH_PASSWORD", "0123"),
        ],
    );
    let auth = ("Authorization", "Basic YWRtaW46MDEyMw==");
    let send = r#"{"phone": "+5511987654321", "password": "12345"}"#;
    assert_eq!(otpd.request("GET", "/locales", &[], "").0, 401);
    assert_eq!(otpd.request("POST", "/whatsapp", &[JSON], send).0, 401);
    let (status, body) = otpd.request("GET", "/locales", &[auth], "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["default"], "en");
    assert!(
        body["locales"].as_array().is_some_and(|l| l.len() >= 44),
        "{body}"
    );
    let (status, body) = otpd.request("POST", "/whatsapp", &[JSON, auth], send);
    assert_eq!(
        (status, body["channel"].as_str()),
        (200, Some("whatsapp")),
        "{body}"
    );
}

#[test]
fn unknown_routes_and_bad_input_get_json_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[]);
    for (method, path, body, want) in [
        ("GET", "/nope", "", 404),
        ("PUT", "/sms", "", 405),
        ("POST", "/sms", "{not json", 400),
        ("POST", "/sms", r#"{"password": "1234"}"#, 400),
        ("POST", "/sms", r#"{"phone": "12"}"#, 400),
        (
            "POST",
            "/sms",
            r#"{"phone": "77011234567", "lifetime": 0}"#,
            400,
        ),
    ] {
        let (status, body) = otpd.request(method, path, &[JSON], body);
        assert_eq!(status, want, "{method} {path}: {body}");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{body}"
        );
    }
}

#[test]
fn store_holds_no_plaintext_code_and_the_secret_file_is_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[]);
    let (status, _) = otpd.request(
        "POST",
        "/sms",
        &[JSON],
        r#"{"phone": "77011234567", "password": "Zq7xK93w"}"#,
    );
    assert_eq!(status, 200);
    assert!(otpd.stop().success());
    let data = std::fs::read(dir.path().join("data/otpd.redb")).expect("store file");
    assert!(
        !data.windows(8).any(|w| w == b"Zq7xK93w"),
        "the code must not be in the store file"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/secret"))
            .expect("secret file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_bad_config_value_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(OTPD)
        .current_dir(dir.path())
        .env_clear()
        .env("OTP_OTP__MAX_ATTEMPTS", "lots")
        .output()
        .expect("run otpd");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_attempts"), "{stderr}");
}

#[test]
fn otpd_openapi_prints_the_committed_spec() {
    let out = Command::new(OTPD)
        .arg("openapi")
        .output()
        .expect("run otpd openapi");
    assert!(out.status.success());
    let committed = include_str!("../../openapi/openapi.yaml");
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "openapi/openapi.yaml is stale: run `cargo run -q -- openapi > openapi/openapi.yaml`"
    );
}

#[test]
fn docs_and_specs_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[]);
    let (status, html) = http_raw(otpd.addr, "GET", "/docs", &[], "");
    assert_eq!(status, 200);
    assert!(html.to_lowercase().contains("swagger"), "swagger ui page");
    let (status, spec) = otpd.request("GET", "/openapi.json", &[], "");
    assert_eq!(status, 200);
    assert!(spec["paths"]["/sms/check"]["get"].is_object());
    assert!(
        otpd.stderr_text().contains("dev sink"),
        "the log sink is announced loudly"
    );
}

#[test]
fn trace_logs_never_contain_codes_passwords_credentials_or_secrets() {
    no_secret_in_logs_or_scrape("text");
}

#[test]
fn json_trace_logs_and_the_scrape_never_contain_codes_passwords_credentials_or_secrets() {
    no_secret_in_logs_or_scrape("json");
}

/// Runs every flow with secrets set and TRACE logs in `format`, then
/// looks for each secret and code in the logs and in the metrics scrape.
fn no_secret_in_logs_or_scrape(format: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = [
        ("HTTP_AUTH_USERNAME", "admin"),
        ("HTTP_AUTH_PASSWORD", "S3cretPass0123"),
        ("TELEGRAM_WEBHOOK_SECRET", "hook-secret-xyz"),
        ("OTP_SECURITY__SECRET", "server-secret-0123456789abcdef"),
        ("RUST_LOG", "trace"),
        ("OTP_LOG__FORMAT", format),
    ];
    let otpd = Otpd::start(dir.path(), &secrets);
    // admin:S3cretPass0123
    let basic = "Basic YWRtaW46UzNjcmV0UGFzczAxMjM=";
    let auth = [JSON, ("Authorization", basic)];
    let sends = [
        (
            "/sms",
            "/sms/check",
            r#""phone": "77011234567""#,
            "Pw4Leak1",
        ),
        (
            "/call",
            "/call/check",
            r#""phone": "77011234567""#,
            "Pw4Leak2",
        ),
        (
            "/email",
            "/email/check",
            r#""email": "leak@example.com""#,
            "Pw4Leak3",
        ),
        (
            "/telegram",
            "/telegram/check",
            r#""chat_id": "4242""#,
            "Pw4Leak4",
        ),
    ];
    for (send, check, to, code) in sends {
        let (status, _) = otpd.request(
            "POST",
            send,
            &auth,
            &format!(r#"{{{to}, "password": "{code}"}}"#),
        );
        assert_eq!(status, 200, "{send}");
        let (status, _) = otpd.request(
            "POST",
            check,
            &auth,
            &format!(r#"{{{to}, "password": "Wrong999"}}"#),
        );
        assert_eq!(status, 422);
        let (status, _) = otpd.request(
            "GET",
            check,
            &auth,
            &format!(r#"{{{to}, "password": "{code}"}}"#),
        );
        assert_eq!(status, 200);
    }
    // A generated code, a query-string check and the bot flow.
    let (status, _) = otpd.request("POST", "/sms", &auth, r#"{"phone": "77011234599"}"#);
    assert_eq!(status, 200);
    let update = r#"{"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 777, "type": "private"}, "from": {"id": 777, "is_bot": false, "first_name": "A"}, "text": "hi"}}"#;
    let hook = [JSON, ("X-Telegram-Bot-Api-Secret-Token", "hook-secret-xyz")];
    assert_eq!(
        otpd.request("POST", "/telegram/webhook", &hook, update).0,
        200
    );
    let sink = otpd.outbox_at_least(6);
    let body = |to: &str| {
        sink.iter()
            .find(|m| m["to"] == to)
            .and_then(|m| m["body"].as_str())
            .map(str::to_owned)
            .expect("message in the sink")
    };
    // The number is in Kazakhstan: the text is Russian ("Ваш код:
    // 482910. …"), so take the code as the first run of 4+ digits.
    let generated = body("+77011234599")
        .split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() >= 4)
        .map(str::to_owned)
        .expect("code");
    let pairing = body("777")
        .split_whitespace()
        .nth(3)
        .map(|w| w.trim_end_matches('.').to_owned())
        .expect("code");
    let (status, _) = otpd.request(
        "GET",
        &format!("/sms/check?phone=77011234599&password={generated}"),
        &auth,
        "",
    );
    assert_eq!(status, 200);
    let (status, _) = otpd.request(
        "GET",
        "/target",
        &auth,
        &format!(r#"{{"password": "{pairing}"}}"#),
    );
    assert_eq!(status, 200);
    let (status, _) = otpd.request(
        "POST",
        "/sms",
        &[JSON, ("Authorization", "Basic d3Jvbmc6V3JvbmdQYXNzOTk=")],
        "{}",
    );
    assert_eq!(status, 401);
    // Names, labels and help texts; values are numbers, in which a
    // 6-digit code could turn up by chance.
    let scrape: String = otpd
        .scrape()
        .lines()
        .map(|l| l.rsplit_once(' ').map_or(l, |(series, _)| series))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(scrape.contains("otpd_checks_total"), "{scrape}");
    let stderr = otpd.stderr.clone();
    assert!(otpd.stop().success());
    // Let the reader thread drain the closed pipe.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let logs = stderr.lock().expect("lock").join("\n");
    if format == "json" {
        for line in logs.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "not JSON: {line}"
            );
        }
    }
    // The flows were logged (masked), so the check below has lines to read.
    for expected in [
        "code sent",
        "check approved",
        "check refused",
        "pairing code sent",
        "pairing redeemed",
        "+7701***4567",
    ] {
        assert!(
            logs.contains(expected),
            "no {expected:?} in the logs:\n{logs}"
        );
    }
    let forbidden = [
        "Pw4Leak1",
        "Pw4Leak2",
        "Pw4Leak3",
        "Pw4Leak4",
        "Wrong999",
        generated.as_str(),
        pairing.as_str(),
        "S3cretPass0123",
        "YWRtaW46UzNjcmV0UGFzczAxMjM=",
        "d3Jvbmc6V3JvbmdQYXNzOTk=",
        "WrongPass99",
        "hook-secret-xyz",
        "server-secret-0123456789abcdef",
    ];
    for s in forbidden {
        assert!(!logs.contains(s), "a log line contains {s:?}");
        assert!(!scrape.contains(s), "the scrape contains {s:?}");
    }
    // Nor a full destination, in any label.
    for s in [
        "77011234567",
        "77011234599",
        "leak@example.com",
        "\"4242\"",
        "\"777\"",
    ] {
        assert!(!scrape.contains(s), "the scrape contains {s:?}");
    }
}
