//! The Twilio Verify compatible API through the real binary, on the
//! embedded store and on Redis: the verification's states (reuse,
//! approval, max attempts, cancel, approve), Twilio's error codes, and
//! services that survive a restart.

use serde_json::Value;

use crate::support::Otpd;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "e2e-twilio-token";
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("OTP_TWILIO_API__ACCOUNT_SID", SID),
        ("OTP_TWILIO_API__AUTH_TOKEN", TOKEN),
        ("OTP_LIMITS__COOLDOWN_SECS", "0"),
    ];
    env.extend_from_slice(extra);
    env
}

fn basic() -> String {
    use base64::Engine;
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    format!("Basic {pair}")
}

/// A `/v2` call with the account's credentials and a form body.
fn call(otpd: &Otpd, method: &str, path: &str, form: &str) -> (u16, Value) {
    let auth = basic();
    otpd.request(
        method,
        path,
        &[FORM, ("Authorization", auth.as_str())],
        form,
    )
}

/// The code in the latest message to `to`, and that message's body.
fn code_to(otpd: &Otpd, to: &str, n: usize) -> (String, String) {
    // The dev sink's lines reach the test through a reader thread: wait
    // for one to `to`, not only for `n` lines in all (an earlier send's
    // lines may already make up `n`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut sink = otpd.outbox_at_least(n);
    while !sink.iter().any(|m| m["to"] == to) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        sink = otpd.outbox();
    }
    let body = sink
        .iter()
        .rev()
        .find(|m| m["to"] == to)
        .and_then(|m| m["body"].as_str())
        .unwrap_or_else(|| panic!("no message to {to}: {sink:?}"))
        .to_owned();
    let code = body
        .split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() >= 4)
        .expect("a code in the body")
        .to_owned();
    (code, body)
}

fn send(otpd: &Otpd, va: &str, to: &str, channel: &str) -> (u16, Value) {
    let to = to.replace('+', "%2B").replace('@', "%40");
    call(
        otpd,
        "POST",
        &format!("/v2/Services/{va}/Verifications"),
        &format!("To={to}&Channel={channel}"),
    )
}

fn check(otpd: &Otpd, va: &str, by: &str, code: &str) -> (u16, Value) {
    call(
        otpd,
        "POST",
        &format!("/v2/Services/{va}/VerificationCheck"),
        &format!("{by}&Code={code}"),
    )
}

fn assert_twilio_error(status: u16, body: &Value, want_status: u16, want_code: u64) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert_eq!(body["status"], want_status, "{body}");
    assert_eq!(
        body["more_info"],
        format!("https://www.twilio.com/docs/errors/{want_code}"),
        "{body}"
    );
}

/// The whole state machine on one running otpd.
fn states(otpd: &Otpd) -> String {
    let (status, svc) = call(
        otpd,
        "POST",
        "/v2/Services",
        "FriendlyName=Acme&CodeLength=7",
    );
    assert_eq!(status, 201, "{svc}");
    let va = svc["sid"].as_str().expect("sid").to_owned();
    assert!(va.starts_with("VA") && va.len() == 34, "{va}");
    assert_eq!(
        (svc["code_length"].as_u64(), svc["account_sid"].as_str()),
        (Some(7), Some(SID))
    );

    // Send, then reuse: same sid, same code, one more attempt.
    let phone = "+4915112345678";
    let (status, first) = send(otpd, &va, phone, "sms");
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (first["status"].as_str(), first["valid"].as_bool()),
        (Some("pending"), Some(false))
    );
    let ve = first["sid"].as_str().expect("sid").to_owned();
    let (code, body) = code_to(otpd, phone, 1);
    assert_eq!(code.len(), 7, "CodeLength: {body}");
    assert!(body.starts_with("Acme: "), "FriendlyName starts it: {body}");
    let (status, again) = send(otpd, &va, phone, "sms");
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["sid"], ve.as_str(), "reused");
    assert_eq!(
        again["send_code_attempts"].as_array().map(Vec::len),
        Some(2),
        "{again}"
    );
    let (resent, _) = code_to(otpd, phone, 2);
    assert_eq!(resent, code, "the same code");

    // Wrong code: 200 pending; the native API sees the same verification.
    let wrong = if code == "0000000" {
        "1111111"
    } else {
        "0000000"
    };
    let (status, c) = check(otpd, &va, "To=%2B4915112345678", wrong);
    assert_eq!(
        (status, c["status"].as_str(), c["valid"].as_bool()),
        (200, Some("pending"), Some(false)),
        "{c}"
    );
    let native = format!("/verifications/vrf_{}", &ve[2..]);
    let (status, v) = otpd.request("GET", &native, &[], "");
    assert_eq!(
        (status, v["status"].as_str(), v["attempts"].as_u64()),
        (200, Some("pending"), Some(1)),
        "{v}"
    );

    // Right code by sid: approved; then gone (20404) for fetch and check.
    let (status, c) = check(otpd, &va, &format!("VerificationSid={ve}"), &code);
    assert_eq!(
        (status, c["status"].as_str(), c["valid"].as_bool()),
        (200, Some("approved"), Some(true)),
        "{c}"
    );
    let (status, gone) = call(
        otpd,
        "GET",
        &format!("/v2/Services/{va}/Verifications/{ve}"),
        "",
    );
    assert_twilio_error(status, &gone, 404, 20404);
    let (status, gone) = check(otpd, &va, &format!("VerificationSid={ve}"), &code);
    assert_twilio_error(status, &gone, 404, 20404);

    // Five wrong checks end it; the sixth is 429 60202, a fetch 404.
    let (_, v) = send(otpd, &va, "+4915112345679", "call");
    let ve2 = v["sid"].as_str().expect("sid").to_owned();
    let by = format!("VerificationSid={ve2}");
    for n in 1..=5 {
        let (status, c) = check(otpd, &va, &by, "0000000");
        let want = if n == 5 {
            "max_attempts_reached"
        } else {
            "pending"
        };
        assert_eq!(
            (status, c["status"].as_str()),
            (200, Some(want)),
            "try {n}: {c}"
        );
    }
    let (status, locked) = check(otpd, &va, &by, "0000000");
    assert_twilio_error(status, &locked, 429, 60202);
    let (status, gone) = call(
        otpd,
        "GET",
        &format!("/v2/Services/{va}/Verifications/{ve2}"),
        "",
    );
    assert_twilio_error(status, &gone, 404, 20404);

    // Cancel, and approve without the code.
    let (_, v) = send(otpd, &va, "user@example.com", "email");
    let ve3 = v["sid"].as_str().expect("sid").to_owned();
    let path = format!("/v2/Services/{va}/Verifications/{ve3}");
    let (status, v) = call(otpd, "POST", &path, "Status=canceled");
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("canceled")),
        "{v}"
    );
    let (status, gone) = call(otpd, "GET", &path, "");
    assert_twilio_error(status, &gone, 404, 20404);
    let (_, v) = send(otpd, &va, "+4915112345670", "sms");
    let ve4 = v["sid"].as_str().expect("sid").to_owned();
    let (code4, _) = code_to(otpd, "+4915112345670", 1);
    let (status, v) = call(
        otpd,
        "POST",
        &format!("/v2/Services/{va}/Verifications/{ve4}"),
        "Status=approved",
    );
    assert_eq!(
        (status, v["status"].as_str(), v["valid"].as_bool()),
        (200, Some("approved"), Some(true)),
        "{v}"
    );
    let (status, gone) = check(otpd, &va, &format!("VerificationSid={ve4}"), &code4);
    assert_twilio_error(status, &gone, 404, 20404);

    // The destination's own limit (5 sends in 10 minutes): the 6th is
    // 429 60203, with Retry-After.
    for n in 1..=5 {
        let (status, v) = send(otpd, &va, "+4915112345671", "sms");
        assert_eq!(status, 201, "send {n}: {v}");
    }
    let (status, limited) = send(otpd, &va, "+4915112345671", "sms");
    assert_twilio_error(status, &limited, 429, 60203);

    // Refusals in Twilio's words.
    let (status, e) = send(otpd, &va, phone, "sna");
    assert_twilio_error(status, &e, 400, 60200);
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("sna")),
        "{e}"
    );
    let (status, e) = call(
        otpd,
        "POST",
        &format!("/v2/Services/{va}/Verifications"),
        "To=%2B4915112345672&Channel=sms&CustomCode=1234",
    );
    assert_twilio_error(status, &e, 400, 60200);
    let (status, e) = call(
        otpd,
        "POST",
        &format!("/v2/Services/{va}/Verifications"),
        "To=%2B4915112345672&Channel=sms&Locale=xx",
    );
    assert_twilio_error(status, &e, 400, 60200);
    let (status, e) = call(otpd, "POST", "/v2/Services", "CodeLength=6");
    assert_twilio_error(status, &e, 400, 60200);
    let (status, e) = otpd.request("GET", &format!("/v2/Services/{va}"), &[], "");
    assert_twilio_error(status, &e, 401, 20003);
    va
}

#[test]
fn the_twilio_api_s_states_on_the_embedded_store_and_its_services_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &env(&[]));
    let va = states(&otpd);
    assert!(otpd.stop().success());
    let otpd = Otpd::start(dir.path(), &env(&[]));
    let (status, svc) = call(&otpd, "GET", &format!("/v2/Services/{va}"), "");
    assert_eq!(
        (status, svc["friendly_name"].as_str()),
        (200, Some("Acme")),
        "{svc}"
    );
    let auth = basic();
    let (status, body) = crate::support::http_raw(
        otpd.addr,
        "DELETE",
        &format!("/v2/Services/{va}"),
        &[("Authorization", auth.as_str())],
        "",
    );
    assert_eq!((status, body.as_str()), (204, ""));
    let (status, gone) = call(&otpd, "GET", &format!("/v2/Services/{va}"), "");
    assert_twilio_error(status, &gone, 404, 20404);
}

#[test]
fn the_twilio_api_s_states_on_redis_and_its_services_survive_a_restart() {
    let redis = otp_testkit::redis::RedisServer::start();
    let url = redis.url();
    let extra = [
        ("OTP_STORE__KIND", "redis"),
        ("OTP_STORE__URL", url.as_str()),
        ("OTP_SECURITY__SECRET", "e2e-twilio-secret-0123456789abcdef"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &env(&extra));
    let va = states(&otpd);
    assert!(otpd.stop().success());
    let otpd = Otpd::start(dir.path(), &env(&extra));
    let (status, svc) = call(&otpd, "GET", &format!("/v2/Services/{va}"), "");
    assert_eq!(
        (status, svc["code_length"].as_u64()),
        (200, Some(7)),
        "{svc}"
    );
}

#[test]
fn the_twilio_api_is_404_in_twilio_s_words_when_it_is_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[]);
    let (status, e) = call(&otpd, "GET", "/v2/Services", "");
    assert_twilio_error(status, &e, 404, 20404);
}
