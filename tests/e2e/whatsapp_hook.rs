//! WhatsApp's delivery-status webhook through the real binary: Meta's
//! signature and handshake, reports recorded once, and the SMS fallback a
//! `failed` report with 131026 triggers.

use hmac::{Hmac, KeyInit, Mac};
use otp_testkit::{FakePeer, Reply};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::events::{verify_all, wait_for, webhook_sink};
use crate::providers::{gateway_section, on_meta};
use crate::support::Otpd;

const JSON: (&str, &str) = ("Content-Type", "application/json");
const APP_SECRET: &str = "meta-app-secret-e2e";
const VERIFY_TOKEN: &str = "meta-verify-token-e2e";
const WAMID: &str = "wamid.HBgLNTUxMTk4NzY1NDMyMRUCABEYEjA=";

fn graph() -> FakePeer {
    FakePeer::start_blocking(Reply::json(
        200,
        &json!({"messaging_product": "whatsapp", "messages": [{"id": WAMID}]}).to_string(),
    ))
}

fn hook_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("OTP_WHATSAPP__META__APP_SECRET", APP_SECRET),
        ("OTP_WHATSAPP__META__VERIFY_TOKEN", VERIFY_TOKEN),
    ]
}

/// `sha256=` and the HMAC-SHA256 of `body` under `secret`, as Meta signs.
fn signature(secret: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// A notification with one status of message `wamid` of verification `id`.
fn notification(id: &str, wamid: &str, status: &str, error: Option<i64>) -> String {
    let mut s = json!({
        "id": wamid, "status": status, "timestamp": "1765000000",
        "recipient_id": "5511987654321", "biz_opaque_callback_data": id,
    });
    if let Some(code) = error {
        s["errors"] = json!([{"code": code, "title": "Message undeliverable to +5511987654321"}]);
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": [s]
        }}]}]
    })
    .to_string()
}

fn post_signed(otpd: &Otpd, body: &str, signature: Option<&str>) -> (u16, Value) {
    let mut headers = vec![JSON];
    if let Some(s) = signature {
        headers.push(("X-Hub-Signature-256", s));
    }
    otpd.request("POST", "/whatsapp/webhook", &headers, body)
}

fn send(otpd: &Otpd) -> String {
    let (status, body) = otpd.request(
        "POST",
        "/whatsapp",
        &[JSON],
        r#"{"phone":"+5511987654321"}"#,
    );
    assert_eq!(status, 200, "{body}");
    body["id"].as_str().expect("id").to_owned()
}

fn delivery(otpd: &Otpd, id: &str, n: usize) -> Value {
    let (status, v) = otpd.request("GET", &format!("/verifications/{id}"), &[], "");
    assert_eq!(status, 200, "{v}");
    v["deliveries"][n].clone()
}

#[test]
fn the_status_webhook_takes_only_signed_calls_records_each_report_once_and_answers_the_handshake() {
    let graph = graph();
    let receiver = FakePeer::start_blocking(Reply::json(204, ""));
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = on_meta(
        dir.path(),
        &webhook_sink(&format!("{}/hooks", receiver.base_url)),
        &graph,
        &hook_env(),
    );
    let id = send(&otpd);
    // otpd names the verification in the message, for Meta to echo.
    assert_eq!(
        graph.only_request().json()["biz_opaque_callback_data"],
        id.as_str()
    );
    assert_eq!(delivery(&otpd, &id, 0)["message_id"], WAMID);

    // The handshake echoes the challenge only with the right token.
    let handshake = |token: &str, mode: &str| {
        crate::support::http_raw(
            otpd.addr,
            "GET",
            &format!(
                "/whatsapp/webhook?hub.mode={mode}&hub.verify_token={token}&hub.challenge=1158201444"
            ),
            &[],
            "",
        )
    };
    assert_eq!(
        handshake(VERIFY_TOKEN, "subscribe"),
        (200, "1158201444".to_owned())
    );
    assert_eq!(handshake("wrong", "subscribe").0, 403);
    assert_eq!(handshake(VERIFY_TOKEN, "unsubscribe").0, 403);

    let delivered = notification(&id, WAMID, "delivered", None);
    let good = signature(APP_SECRET, &delivered);
    let refused = [
        ("no signature", delivered.clone(), None),
        (
            "another secret",
            delivered.clone(),
            Some(signature("not-the-secret", &delivered)),
        ),
        (
            "a body changed after signing",
            notification(&id, WAMID, "read", None),
            Some(good.clone()),
        ),
        (
            "not sha256=",
            delivered.clone(),
            Some(good.replace("sha256=", "")),
        ),
    ];
    for (what, body, sig) in refused {
        let (status, answer) = post_signed(&otpd, &body, sig.as_deref());
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("unauthorized")),
            "{what}: {answer}"
        );
    }
    assert_eq!(
        delivery(&otpd, &id, 0).get("report"),
        None,
        "a refused call changes nothing"
    );

    // Signed: recorded; replayed: 200 and nothing more.
    for _ in 0..2 {
        let (status, answer) = post_signed(&otpd, &delivered, Some(&good));
        assert_eq!((status, answer), (200, json!({"ok": true})));
    }
    assert_eq!(delivery(&otpd, &id, 0)["report"], "delivered");
    // A report on a message otpd does not know, or of no verification.
    for body in [
        notification(&id, "wamid.unknown", "read", None),
        notification(&format!("vrf_{}", "0".repeat(32)), WAMID, "read", None),
        notification("not-a-verification", WAMID, "read", None),
    ] {
        let (status, _) = post_signed(&otpd, &body, Some(&signature(APP_SECRET, &body)));
        assert_eq!(status, 200, "unknown messages are ignored with a 200");
    }
    assert_eq!(delivery(&otpd, &id, 0)["report"], "delivered");
    let junk = "{\"entry\": 5}";
    let (status, answer) = post_signed(&otpd, junk, Some(&signature(APP_SECRET, junk)));
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // The receiver got the send's `pending` and one `delivery.updated`.
    wait_for(&receiver, 2, 10);
    // Time for a wrong extra event (of the replay) to arrive too.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let events = receiver.received();
    verify_all(&events);
    let mut kinds: Vec<String> = events
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or("").to_owned())
        .collect();
    // Events are delivered at least once, not in order (the dispatcher
    // hands them out concurrently): compare them as a set.
    kinds.sort();
    assert_eq!(
        kinds,
        ["otpd.delivery.updated", "otpd.verification.pending"],
        "one event per change, none for the replay"
    );
    let updated = events
        .iter()
        .map(|r| r.json())
        .find(|e| e["type"] == "otpd.delivery.updated")
        .expect("the delivery.updated event");
    assert_eq!(updated["data"]["deliveries"][0]["report"], "delivered");
}

#[test]
fn without_an_app_secret_the_webhook_is_off() {
    let graph = graph();
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = on_meta(dir.path(), "", &graph, &[]);
    let body = notification("vrf_x", WAMID, "read", None);
    let (status, answer) = post_signed(&otpd, &body, Some(&signature("", &body)));
    assert_eq!((status, answer["error"].as_str()), (404, Some("not_found")));
}

#[test]
fn a_failed_report_with_131026_sends_the_same_code_by_sms_once() {
    let graph = graph();
    let gateway = FakePeer::start_blocking(Reply::json(200, r#"{"status":"queued"}"#));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[sms]\nprovider = \"http\"\n{}",
        gateway_section(&format!("{}/send", gateway.base_url))
    );
    let mut env = hook_env();
    env.push(("OTP_WHATSAPP__FALLBACK", "sms"));
    let otpd = on_meta(dir.path(), &config, &graph, &env);
    let id = send(&otpd);
    let code = graph.only_request().json()["template"]["components"][0]["parameters"][0]["text"]
        .as_str()
        .expect("the code parameter")
        .to_owned();
    assert!(gateway.received().is_empty(), "WhatsApp took it at first");

    // `sent` first changes nothing for the fallback.
    let sent = notification(&id, WAMID, "sent", None);
    assert_eq!(
        post_signed(&otpd, &sent, Some(&signature(APP_SECRET, &sent))).0,
        200
    );
    assert!(gateway.received().is_empty());

    let failed = notification(&id, WAMID, "failed", Some(131_026));
    let sig = signature(APP_SECRET, &failed);
    for _ in 0..2 {
        let (status, answer) = post_signed(&otpd, &failed, Some(&sig));
        assert_eq!((status, answer), (200, json!({"ok": true})));
    }
    let sms = gateway.only_request().json();
    assert_eq!(sms["to"], "+5511987654321");
    let text = sms["text"].as_str().expect("text");
    assert!(
        text.starts_with(&format!("Seu código é {code}.")),
        "the same code, in the number's locale: {text}"
    );

    let (_, v) = otpd.request("GET", &format!("/verifications/{id}"), &[], "");
    let deliveries: Vec<(&str, &str, Option<&str>)> = v["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| {
            (
                d["provider"].as_str().unwrap_or(""),
                d["outcome"].as_str().unwrap_or(""),
                d["report"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        deliveries,
        [
            ("meta", "delivered", Some("failed")),
            ("http", "delivered", None)
        ],
        "{v}"
    );
    assert_eq!(
        v["deliveries"][0]["error"],
        "error 131026: the number is not on WhatsApp or cannot receive it"
    );
    let check = json!({"phone": "+5511987654321", "password": code}).to_string();
    let (status, body) = otpd.request("POST", "/whatsapp/check", &[JSON], &check);
    assert_eq!((status, body), (200, json!({"status": "approved"})));
    let (status, _) = otpd.request("POST", "/whatsapp/check", &[JSON], &check);
    assert_eq!(status, 404, "single use");
    assert!(
        !otpd.stderr_text().contains(&code),
        "the code never reaches a log line"
    );
}

#[test]
fn the_dev_outbox_filters_by_every_channel_whatsapp_included() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[]);
    let (status, html) = crate::support::http_raw(otpd.addr, "GET", "/outbox", &[], "");
    assert_eq!(status, 200, "{html}");
    for channel in ["sms", "call", "email", "telegram", "whatsapp"] {
        assert!(
            html.contains(&format!("<option value=\"{channel}\"")),
            "the channel filter lacks {channel}"
        );
    }
}
