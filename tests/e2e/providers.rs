//! Providers end to end: the real `otpd` binary, configured by a TOML file
//! only, delivering to real wire peers on loopback (a recording HTTP
//! server for the gateway, Twilio, the Bot API and the notify relay,
//! aiosmtpd for SMTP, a real redis-server for the queue). Each test
//! asserts the exact request a provider got, what the API answered, and
//! that the delivered code then checks.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use otp_testkit::redis::RedisServer;
use otp_testkit::{closed_port, FakePeer, Recorded, Reply, SmtpPeer};
use serde_json::{json, Value};

use crate::support::{Otpd, OTPD};

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Quick retries, so the retry tests take milliseconds, not seconds.
const FAST_RETRIES: &str = "
[delivery]
attempts = 3
base_delay_ms = 50
max_delay_ms = 200
";

const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-auth-token-0042";
const BOT_TOKEN: &str = "123456:ABC-DEF1234ghIkl";
const WEBHOOK_SECRET: &str = "hook-secret_0042";

/// Writes `toml` as the test's config file and returns its path.
fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("otpd.toml");
    std::fs::write(&path, toml).expect("write the config file");
    path
}

/// Starts otpd with `toml` as its config file (`OTP_CONFIG`) plus `env`.
fn start_with(dir: &Path, toml: &str, env: &[(&str, &str)]) -> Otpd {
    let path = write_config(dir, toml);
    let path = path.to_str().expect("a UTF-8 temp path");
    let mut all = vec![("OTP_CONFIG", path)];
    all.extend_from_slice(env);
    Otpd::start(dir, &all)
}

/// A Twilio section for `channel` pointing at `base_url`.
fn twilio_section(channel: &str, base_url: &str) -> String {
    format!(
        "[{channel}.twilio]\naccount_sid = \"{TWILIO_SID}\"\nauth_token = \"{TWILIO_TOKEN}\"\n\
         from = \"+14155552671\"\nbase_url = \"{base_url}\"\n"
    )
}

/// A JSON gateway for `[sms.http]` at `url`.
pub(crate) fn gateway_section(url: &str) -> String {
    "[sms.http]\nname = \"acme-sms\"\nurl = \"URL\"\nencoding = \"json\"\n\
     body = '{\"to\": \"{phone}\", \"text\": \"{message}\", \"sender\": \"MyApp\"}'\n"
        .replace("URL", url)
}

/// What Twilio answers a created message or call.
fn twilio_created(sid: &str) -> Reply {
    Reply::json(
        201,
        &json!({"sid": sid, "status": "queued", "account_sid": TWILIO_SID}).to_string(),
    )
}

fn sms_send(phone: &str, password: &str) -> String {
    json!({"phone": phone, "password": password, "message": "Your code is {password}"}).to_string()
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The word after `marker` in `text`, without a trailing `.`.
fn word_after(text: &str, marker: &str) -> String {
    text.split(marker)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|w| w.trim_end_matches('.').to_owned())
        .unwrap_or_else(|| panic!("no {marker:?} in {text:?}"))
}

fn paths(requests: &[Recorded]) -> Vec<String> {
    requests.iter().map(|r| r.path.clone()).collect()
}

// --- 1. SMTP -------------------------------------------------------------

#[test]
fn smtp_delivers_a_utf8_email_from_the_configured_sender_and_its_code_checks() {
    let smtp = SmtpPeer::start_blocking();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[email]\nprovider = \"smtp\"\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\n\
         tls = \"none\"\nfrom = \"otp@example.com\"\nfrom_name = \"Example\"\n",
        smtp.port
    );
    let otpd = start_with(dir.path(), &config, &[]);
    let subject = "Ваш код подтверждения ✓ Grüße";
    let send = json!({
        "email": "user@example.com",
        "subject": subject,
        "text": "Здравствуйте! Ваш код: {password} (действует {lifetime} с).",
        "lifetime": 300,
    });
    let (status, body) = otpd.request("POST", "/email", &[JSON], &send.to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "sent");

    let mail = smtp.wait_for_blocking(1);
    assert_eq!(mail.len(), 1, "one email reached the SMTP server");
    let mail = &mail[0];
    assert_eq!(mail.mail_from, "otp@example.com");
    assert_eq!(mail.rcpt_tos, ["user@example.com"]);
    let parsed = mail.parsed();
    let from = parsed
        .from()
        .and_then(|a| a.first())
        .expect("a From header");
    assert_eq!(from.name(), Some("Example"));
    assert_eq!(from.address(), Some("otp@example.com"));
    let to = parsed.to().and_then(|a| a.first()).expect("a To header");
    assert_eq!(to.address(), Some("user@example.com"));
    assert_eq!(parsed.subject(), Some(subject));
    let text = parsed.body_text(0).expect("a text body").into_owned();
    assert!(text.contains("(действует 300 с)."), "{text}");
    let code = word_after(&text, "Ваш код: ");
    assert_eq!(code.len(), 6, "a generated 6-digit code in {text:?}");
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");

    let check = json!({"email": "user@example.com", "password": code}).to_string();
    let (status, body) = otpd.request("POST", "/email/check", &[JSON], &check);
    assert_eq!((status, body), (200, json!({"status": "approved"})));
}

// --- 2. HTTP gateway -----------------------------------------------------

#[test]
fn the_http_gateway_gets_the_templated_json_with_its_auth_header_and_escaped_quotes() {
    let peer = FakePeer::start_blocking(Reply::json(200, r#"{"status":"queued","id":"m-1"}"#));
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("{}/api/v2/send?sender=MyApp", peer.base_url);
    let config = format!(
        "[sms]\nprovider = \"http\"\n{}method = \"POST\"\n\
         headers = {{ Authorization = \"Bearer gw-token-0042\", X-Api-Version = \"2\" }}\n\
         success_pointer = \"/status\"\nsuccess_value = \"queued\"\n",
        gateway_section(&url)
    );
    let otpd = start_with(dir.path(), &config, &[]);
    let send = json!({
        "phone": "77011234567",
        "password": "480915",
        "message": "He said \"hi\" \\ your code is {password}",
    });
    let (status, body) = otpd.request("POST", "/sms", &[JSON], &send.to_string());
    assert_eq!(status, 200, "{body}");

    let got = peer.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/api/v2/send");
    assert_eq!(got.query.as_deref(), Some("sender=MyApp"));
    assert_eq!(got.authorization.as_deref(), Some("Bearer gw-token-0042"));
    assert_eq!(got.header("x-api-version"), Some("2"));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got.body_text(),
        r#"{"to": "+77011234567", "text": "He said \"hi\" \\ your code is 480915", "sender": "MyApp"}"#
    );
    assert_eq!(got.json()["text"], "He said \"hi\" \\ your code is 480915");

    let check = json!({"phone": "77011234567", "password": "480915"}).to_string();
    let (status, body) = otpd.request("POST", "/sms/check", &[JSON], &check);
    assert_eq!((status, body), (200, json!({"status": "approved"})));
}

// --- 3. Twilio -----------------------------------------------------------

#[test]
fn twilio_gets_form_encoded_messages_and_calls_with_basic_auth() {
    let peer = FakePeer::start_blocking(twilio_created("SM0123456789abcdef0123456789abcdef"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[sms]\nprovider = \"twilio\"\n{}[call]\nprovider = \"twilio\"\n{}",
        twilio_section("sms", &peer.base_url),
        twilio_section("call", &peer.base_url),
    );
    let otpd = start_with(dir.path(), &config, &[]);

    let (status, body) = otpd.request("POST", "/sms", &[JSON], &sms_send("77011234567", "123456"));
    assert_eq!(status, 200, "{body}");
    let call = json!({"phone": "+4915112345678", "password": "482910"}).to_string();
    let (status, body) = otpd.request("POST", "/call", &[JSON], &call);
    assert_eq!(status, 200, "{body}");

    let got = peer.wait_for_blocking(2);
    assert_eq!(
        paths(&got),
        [
            format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"),
            format!("/2010-04-01/Accounts/{TWILIO_SID}/Calls.json"),
        ]
    );
    let auth = basic(TWILIO_SID, TWILIO_TOKEN);
    for request in &got {
        assert_eq!(request.method, "POST");
        assert_eq!(request.authorization.as_deref(), Some(auth.as_str()));
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
    }
    assert_eq!(
        got[0].form(),
        form(&[
            ("To", "+77011234567"),
            ("From", "+14155552671"),
            ("Body", "Your code is 123456"),
        ])
    );
    // A German number: the call speaks German, in Twilio's de-DE voice.
    let say = r#"<Say language="de-DE" voice="alice">Ihr Code lautet 4 8 2 9 1 0.</Say>"#;
    assert_eq!(
        got[1].form(),
        form(&[
            ("To", "+4915112345678"),
            ("From", "+14155552671"),
            (
                "Twiml",
                &format!(r#"<Response>{say}<Pause length="1"/>{say}</Response>"#)
            ),
        ])
    );

    for (path, check) in [
        (
            "/sms/check",
            json!({"phone": "77011234567", "password": "123456"}),
        ),
        (
            "/call/check",
            json!({"phone": "+4915112345678", "password": "482910"}),
        ),
    ] {
        let (status, body) = otpd.request("POST", path, &[JSON], &check.to_string());
        assert_eq!(
            (status, body),
            (200, json!({"status": "approved"})),
            "{path}"
        );
    }
}

// --- 4. Telegram Bot API -------------------------------------------------

/// otpd on the Bot API at `peer`, with the token and webhook secret from
/// the seed's plain env vars.
fn on_bot_api(dir: &Path, peer: &FakePeer) -> Otpd {
    start_with(
        dir,
        "[telegram]\nprovider = \"telegram\"\n",
        &[
            ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
            ("TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("TELEGRAM_API_URL", &peer.base_url),
        ],
    )
}

fn bot_api_ok(chat_id: i64) -> Reply {
    Reply::json(
        200,
        &json!({"ok": true, "result": {
            "message_id": 7, "date": 1767225600,
            "chat": {"id": chat_id, "type": "private"}, "text": "…"
        }})
        .to_string(),
    )
}

#[test]
fn the_bot_api_gets_send_message_with_an_integer_chat_id() {
    let peer = FakePeer::start_blocking(bot_api_ok(123456789));
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = on_bot_api(dir.path(), &peer);
    let send = json!({"chat_id": "123456789", "password": "735102", "message": "Code {password}"});
    let (status, body) = otpd.request("POST", "/telegram", &[JSON], &send.to_string());
    assert_eq!(status, 200, "{body}");

    let got = peer.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, format!("/bot{BOT_TOKEN}/sendMessage"));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got.json(),
        json!({"chat_id": 123456789, "text": "Code 735102"})
    );

    let check = json!({"chat_id": "123456789", "password": "735102"}).to_string();
    let (status, body) = otpd.request("POST", "/telegram/check", &[JSON], &check);
    assert_eq!((status, body), (200, json!({"status": "approved"})));
}

#[test]
fn a_message_to_the_bot_gets_a_pairing_code_over_the_bot_api_that_redeems_for_the_chat() {
    let peer = FakePeer::start_blocking(bot_api_ok(5150));
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = on_bot_api(dir.path(), &peer);
    let update = json!({"update_id": 900, "message": {
        "message_id": 1, "date": 0,
        "chat": {"id": 5150, "type": "private"},
        "from": {"id": 5150, "is_bot": false, "first_name": "Ann"},
        "text": "/start"
    }})
    .to_string();
    let hook = [JSON, ("X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET)];
    let (status, body) = otpd.request("POST", "/telegram/webhook", &hook, &update);
    assert_eq!(status, 200, "{body}");

    let got = peer.wait_for_blocking(1);
    assert_eq!(got.len(), 1, "one reply to the chat: {got:#?}");
    assert_eq!(got[0].path, format!("/bot{BOT_TOKEN}/sendMessage"));
    let sent = got[0].json();
    assert_eq!(sent["chat_id"], 5150, "{sent}");
    let text = sent["text"].as_str().expect("text");
    let code = word_after(text, "Your code is ");
    assert_eq!(code.len(), 8, "{text}");

    let (status, body) = otpd.request(
        "GET",
        "/target",
        &[],
        &json!({"password": code}).to_string(),
    );
    assert_eq!((status, body), (200, json!({"chat_id": 5150})));
}

// --- 5. http-telegram-notify ---------------------------------------------

#[test]
fn the_notify_relay_gets_its_json_and_its_500_sent_message_quirk_counts_as_one_delivery() {
    let quirk = Reply {
        status: 500,
        headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
        body: "Sent message 42 to 123456789".to_owned(),
        delay: Duration::ZERO,
    };
    let peer = FakePeer::start_blocking(quirk);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[telegram]\nprovider = \"notify\"\n[telegram.notify]\nurl = \"{}/msg\"\n\
         app_token = \"relay-token-0042\"\n{FAST_RETRIES}",
        peer.base_url
    );
    // A delivering Telegram provider requires the webhook secret.
    let otpd = start_with(
        dir.path(),
        &config,
        &[("TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET)],
    );
    let send = json!({"chat_id": 123456789, "password": "551177", "message": "Code: {password}"});
    let (status, body) = otpd.request("POST", "/telegram", &[JSON], &send.to_string());
    assert_eq!(
        status, 200,
        "the relay's 500 'Sent message' is a delivery: {body}"
    );

    std::thread::sleep(Duration::from_millis(300));
    let got = peer.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/msg");
    assert_eq!(got.header("x-auth-token"), Some("relay-token-0042"));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got.json(),
        json!({"to": 123456789, "message": "Code: 551177", "silent": false})
    );

    let check = json!({"chat_id": "123456789", "password": "551177"}).to_string();
    let (status, body) = otpd.request("POST", "/telegram/check", &[JSON], &check);
    assert_eq!((status, body), (200, json!({"status": "approved"})));
}

// --- 6. Queue hand-off ---------------------------------------------------

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 from redis-cli")
}

#[test]
fn the_queue_provider_hands_a_json_job_to_a_consumer_group() {
    let redis = RedisServer::start();
    let port = redis.port();
    let created = redis_cli(
        port,
        &["XGROUP", "CREATE", "otpd:outbox", "g", "$", "MKSTREAM"],
    );
    assert_eq!(created.trim(), "OK");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[sms]\nprovider = \"queue\"\n[sms.queue]\nurl = \"{}\"\n",
        redis.url()
    );
    let otpd = start_with(dir.path(), &config, &[]);
    let (status, body) = otpd.request("POST", "/sms", &[JSON], &sms_send("77011234567", "908172"));
    assert_eq!(status, 200, "{body}");

    // Raw output: the stream name, then per entry its id and field/value.
    let read = redis_cli(
        port,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "10",
            "STREAMS",
            "otpd:outbox",
            ">",
        ],
    );
    let lines: Vec<&str> = read.lines().collect();
    assert_eq!(lines.len(), 4, "one entry with one field: {read}");
    assert_eq!(lines[0], "otpd:outbox");
    assert_eq!(lines[2], "job");
    let entry_id = lines[1];
    let job: Value = serde_json::from_str(lines[3]).expect("the job is JSON");
    assert_eq!(job["channel"], "sms", "{job}");
    assert_eq!(job["to"], "+77011234567", "{job}");
    assert_eq!(job["subject"], Value::Null, "{job}");
    assert_eq!(job["body"], "Your code is 908172", "{job}");
    let acked = redis_cli(port, &["XACK", "otpd:outbox", "g", entry_id]);
    assert_eq!(acked.trim(), "1");
    let pending = redis_cli(port, &["XPENDING", "otpd:outbox", "g"]);
    assert_eq!(pending.lines().next(), Some("0"), "nothing left pending");

    let check = json!({"phone": "77011234567", "password": "908172"}).to_string();
    let (status, body) = otpd.request("POST", "/sms/check", &[JSON], &check);
    assert_eq!((status, body), (200, json!({"status": "approved"})));
}

// --- 7. Retry and fallback -----------------------------------------------

fn gateway_only(url: &str) -> String {
    format!(
        "[sms]\nprovider = \"http\"\n{}{FAST_RETRIES}",
        gateway_section(url)
    )
}

#[test]
fn a_gateway_failing_twice_with_503_is_retried_until_it_accepts() {
    let peer = FakePeer::start_script_blocking(vec![
        Reply::json(503, r#"{"error":"busy"}"#),
        Reply::json(503, r#"{"error":"busy"}"#),
        Reply::json(200, r#"{"status":"queued"}"#),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = start_with(
        dir.path(),
        &gateway_only(&format!("{}/send", peer.base_url)),
        &[],
    );
    let (status, body) = otpd.request("POST", "/sms", &[JSON], &sms_send("77011234567", "246810"));
    assert_eq!(status, 200, "{body}");
    let got = peer.received();
    assert_eq!(got.len(), 3, "two failures and the success: {got:#?}");
    assert!(
        got.iter()
            .all(|r| r.json()["text"] == "Your code is 246810"),
        "every try carries the same message"
    );
    let check = json!({"phone": "77011234567", "password": "246810"}).to_string();
    assert_eq!(otpd.request("POST", "/sms/check", &[JSON], &check).0, 200);
}

#[test]
fn a_gateway_failing_with_500_falls_back_to_twilio_after_its_attempts() {
    let gateway = FakePeer::start_blocking(Reply::json(500, r#"{"error":"down"}"#));
    let twilio = FakePeer::start_blocking(twilio_created("SMfallback0000000000000000000000"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[sms]\nprovider = [\"http\", \"twilio\"]\n{}{}{FAST_RETRIES}",
        gateway_section(&format!("{}/send", gateway.base_url)),
        twilio_section("sms", &twilio.base_url),
    );
    let otpd = start_with(dir.path(), &config, &[]);
    let (status, body) = otpd.request("POST", "/sms", &[JSON], &sms_send("77011234567", "135790"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(gateway.received().len(), 3, "delivery.attempts tries");
    let sent = twilio.only_request();
    assert_eq!(
        sent.path,
        format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")
    );
    assert_eq!(
        sent.form(),
        form(&[
            ("To", "+77011234567"),
            ("From", "+14155552671"),
            ("Body", "Your code is 135790"),
        ])
    );
    let check = json!({"phone": "77011234567", "password": "135790"}).to_string();
    assert_eq!(otpd.request("POST", "/sms/check", &[JSON], &check).0, 200);
}

#[test]
fn a_400_from_the_gateway_is_not_retried_and_the_api_answers_502() {
    let peer = FakePeer::start_blocking(Reply::json(400, r#"{"error":"invalid number"}"#));
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = start_with(
        dir.path(),
        &gateway_only(&format!("{}/send", peer.base_url)),
        &[],
    );
    let (status, body) = otpd.request("POST", "/sms", &[JSON], &sms_send("77011234567", "112233"));
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "delivery_failed", "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(peer.received().len(), 1, "a 4xx is final");
    let check = json!({"phone": "77011234567", "password": "112233"}).to_string();
    assert_eq!(
        otpd.request("POST", "/sms/check", &[JSON], &check).0,
        404,
        "no code was issued"
    );
}

#[test]
fn when_every_provider_is_down_the_api_answers_502_without_secrets_and_no_code_stays() {
    let secrets = [
        "gw-key-SECRET-0042",
        "gw-bearer-SECRET-0042",
        "twilio-token-SECRET-0042",
    ];
    let gateway_port = closed_port();
    let twilio_port = closed_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[sms]\nprovider = [\"http\", \"twilio\"]\n{}\
         headers = {{ Authorization = \"Bearer gw-bearer-SECRET-0042\" }}\n\
         [sms.twilio]\naccount_sid = \"{TWILIO_SID}\"\nauth_token = \"twilio-token-SECRET-0042\"\n\
         from = \"+14155552671\"\nbase_url = \"http://127.0.0.1:{twilio_port}\"\n{FAST_RETRIES}",
        gateway_section(&format!(
            "http://127.0.0.1:{gateway_port}/send?api_key=gw-key-SECRET-0042"
        )),
    );
    let otpd = start_with(dir.path(), &config, &[]);
    let (status, text) = crate::support::http_raw(
        otpd.addr,
        "POST",
        "/sms",
        &[JSON],
        &sms_send("77011234567", "424242"),
    );
    assert_eq!(status, 502, "{text}");
    let body: Value = serde_json::from_str(&text).expect("a JSON error body");
    assert_eq!(body["error"], "delivery_failed", "{body}");
    assert!(body["message"].is_string(), "{body}");
    for leak in secrets.iter().copied().chain([
        "api_key",
        "Bearer",
        &gateway_port.to_string(),
        &twilio_port.to_string(),
    ]) {
        assert!(
            !text.contains(leak),
            "the API answer holds {leak:?}: {text}"
        );
    }
    let check = json!({"phone": "77011234567", "password": "424242"}).to_string();
    let (status, body) = otpd.request("POST", "/sms/check", &[JSON], &check);
    assert_eq!(status, 404, "the undelivered code was discarded: {body}");

    let logs = otpd.stderr_once("delivery failed");
    assert!(logs.contains("delivery failed"), "{logs}");
    for secret in secrets {
        assert!(!logs.contains(secret), "a log line holds {secret:?}");
    }
}

#[test]
fn a_429_with_retry_after_is_waited_out_then_delivered() {
    let peer = FakePeer::start_script_blocking(vec![
        Reply::json(429, r#"{"error":"slow down"}"#).with_header("Retry-After", "1"),
        Reply::json(200, r#"{"status":"queued"}"#),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = start_with(
        dir.path(),
        &gateway_only(&format!("{}/send", peer.base_url)),
        &[],
    );
    let started = Instant::now();
    let (status, body) = otpd.request("POST", "/sms", &[JSON], &sms_send("77011234567", "777123"));
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(peer.received().len(), 2);
    assert!(
        took >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured (took {took:?}; backoff alone is ≤ 200 ms)"
    );
}

// --- 8. Startup validation -----------------------------------------------

/// Runs otpd with `toml` and `env` until it exits (at most 10 s) and
/// returns its status and stderr.
fn run_until_exit(toml: &str, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), toml);
    let mut child = Command::new(OTPD)
        .current_dir(dir.path())
        .env_clear()
        .env("OTP_CONFIG", &path)
        .env("OTP_SERVER__LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn otpd");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("otpd started instead of refusing the config:\n{toml}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped stderr"), &mut stderr)
        .expect("read stderr");
    (status, stderr)
}

/// Asserts that otpd refuses `toml` (with `env`) and names every key.
fn refused_naming(toml: &str, env: &[(&str, &str)], keys: &[&str]) {
    let (status, stderr) = run_until_exit(toml, env);
    assert!(!status.success(), "otpd accepted:\n{toml}");
    for key in keys {
        assert!(stderr.contains(key), "no {key:?} in:\n{stderr}");
    }
}

#[test]
fn a_provider_missing_its_from_address_or_token_stops_otpd_naming_the_key() {
    let smtp = "[email]\nprovider = \"smtp\"\n[email.smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n";
    // A missing field is named in full, like every other bad key.
    refused_naming(smtp, &[], &["email.smtp", "email.smtp.from"]);
    refused_naming(&format!("{smtp}from = \"\"\n"), &[], &["email.smtp.from"]);
    refused_naming(
        "[sms]\nprovider = \"twilio\"\n[sms.twilio]\naccount_sid = \"AC1\"\n\
         auth_token = \"\"\nfrom = \"+14155552671\"\n",
        &[],
        &["sms.twilio.auth_token"],
    );
    refused_naming(
        "[telegram]\nprovider = \"telegram\"\n",
        &[("TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET)],
        &["telegram.bot_token"],
    );
}

// The user wrote [sms.http] and [telegram.notify]: the message must name
// those keys, not the adapters' internal names (`gateway.url`,
// `telegram_notify.url`), which appear in no config file.

#[test]
fn a_gateway_without_a_url_stops_otpd_naming_sms_http_url() {
    refused_naming(
        "[sms]\nprovider = \"http\"\n[sms.http]\nurl = \"\"\n",
        &[],
        &["sms.http.url"],
    );
}

#[test]
fn a_notify_relay_without_a_url_stops_otpd_naming_telegram_notify_url() {
    refused_naming(
        "[telegram]\nprovider = \"notify\"\n[telegram.notify]\nurl = \"\"\n",
        &[],
        &["telegram.notify.url"],
    );
}

// --- Locales ---------------------------------------------------------------

#[test]
fn locale_de_reaches_the_gateway_smtp_and_the_bot_api_in_german() {
    let gateway = FakePeer::start_blocking(Reply::json(200, r#"{"status":"queued"}"#));
    let bot = FakePeer::start_blocking(bot_api_ok(123456789));
    let smtp = SmtpPeer::start_blocking();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("{}/send?lang={{locale}}", gateway.base_url);
    let config = format!(
        "[sms]\nprovider = \"http\"\n{}\
         [email]\nprovider = \"smtp\"\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\n\
         tls = \"none\"\nfrom = \"otp@example.com\"\n\
         [telegram]\nprovider = \"telegram\"\n",
        gateway_section(&url),
        smtp.port
    );
    let otpd = start_with(
        dir.path(),
        &config,
        &[
            ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
            ("TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("TELEGRAM_API_URL", &bot.base_url),
        ],
    );
    let german = "Ihr Code lautet 480915. Er ist 5 Min. gültig.";
    for (path, body) in [
        (
            "/sms",
            json!({"phone": "+16502530000", "password": "480915", "locale": "de"}),
        ),
        (
            "/email",
            json!({"email": "user@example.com", "password": "480915", "locale": "de"}),
        ),
        (
            "/telegram",
            json!({"chat_id": 123456789, "password": "480915", "locale": "de"}),
        ),
    ] {
        let (status, answer) = otpd.request("POST", path, &[JSON], &body.to_string());
        assert_eq!(status, 200, "{path}: {answer}");
        let id = answer["id"].as_str().expect("id");
        let (_, v) = otpd.request("GET", &format!("/verifications/{id}"), &[], "");
        assert_eq!(v["locale"], "de", "{path}: {v}");
    }

    let sms = gateway.only_request();
    assert_eq!(sms.query.as_deref(), Some("lang=de"));
    assert_eq!(sms.json()["text"], german);
    let mail = smtp.wait_for_blocking(1);
    let parsed = mail[0].parsed();
    assert_eq!(parsed.subject(), Some("Ihr Bestätigungscode"));
    assert_eq!(parsed.body_text(0).expect("a text body").trim_end(), german);
    let sent = bot.only_request();
    assert_eq!(sent.json()["text"], german);
}

// --- WhatsApp ------------------------------------------------------------

/// otpd with `whatsapp.provider = "meta"` at the Graph API fake `graph`.
pub(crate) fn on_meta(dir: &Path, toml: &str, graph: &FakePeer, extra: &[(&str, &str)]) -> Otpd {
    let mut env = vec![
        ("OTP_WHATSAPP__PROVIDER", "meta"),
        ("OTP_WHATSAPP__META__PHONE_NUMBER_ID", "106540352242922"),
        ("OTP_WHATSAPP__META__ACCESS_TOKEN", "EAAG-e2e-token"),
        ("OTP_WHATSAPP__META__TEMPLATE", "otp_code"),
        ("OTP_WHATSAPP__META__BASE_URL", graph.base_url.as_str()),
    ];
    env.extend_from_slice(extra);
    start_with(dir, toml, &env)
}

#[test]
fn whatsapp_through_the_cloud_api_sends_the_template_and_its_code_checks() {
    let graph = FakePeer::start_blocking(Reply::json(
        200,
        r#"{"messaging_product":"whatsapp","messages":[{"id":"wamid.HBgL"}]}"#,
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = on_meta(dir.path(), "", &graph, &[]);
    let (status, body) = otpd.request(
        "POST",
        "/whatsapp",
        &[JSON],
        r#"{"phone":"+5511987654321"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["channel"], "whatsapp");

    // The code, as the user's WhatsApp shows it: from the request Meta got.
    let got = graph.only_request();
    assert_eq!(got.path, "/v21.0/106540352242922/messages");
    assert_eq!(got.authorization.as_deref(), Some("Bearer EAAG-e2e-token"));
    let sent = got.json();
    assert_eq!(sent["to"], "+5511987654321");
    assert_eq!(sent["template"]["name"], "otp_code");
    let code = sent["template"]["components"][0]["parameters"][0]["text"]
        .as_str()
        .expect("the code parameter")
        .to_owned();
    assert_eq!(
        sent["template"]["components"][1]["parameters"][0]["text"],
        code.as_str()
    );
    assert_eq!(code.len(), 6, "{code}");

    // WhatsApp fixes the template's text: a message of one's own is refused.
    let (status, refused) = otpd.request(
        "POST",
        "/whatsapp",
        &[JSON],
        r#"{"phone":"+5511987654322","message":"Code {password}"}"#,
    );
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_request")),
        "{refused}"
    );

    let check = json!({"phone": "+5511987654321", "password": code}).to_string();
    let (status, body) = otpd.request("POST", "/whatsapp/check", &[JSON], &check);
    assert_eq!((status, body), (200, json!({"status": "approved"})));
    // The code belongs to WhatsApp: the SMS check of the same number has none.
    let (status, _) = otpd.request("POST", "/sms/check", &[JSON], &check);
    assert_eq!(status, 404);
    let (status, v) = otpd.request(
        "GET",
        "/verifications?channel=whatsapp&phone=%2B5511987654321",
        &[],
        "",
    );
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("approved")),
        "{v}"
    );
    assert_eq!(v["deliveries"][0]["provider"], "meta", "{v}");
}

#[test]
fn a_number_not_on_whatsapp_gets_the_same_code_by_sms_with_the_fallback() {
    let graph = FakePeer::start_blocking(Reply::json(
        400,
        r#"{"error":{"message":"(#131026) Message undeliverable","type":"OAuthException","code":131026}}"#,
    ));
    let gateway = FakePeer::start_blocking(Reply::json(200, r#"{"status":"queued"}"#));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[sms]\nprovider = \"http\"\n{}",
        gateway_section(&format!("{}/send", gateway.base_url))
    );
    let otpd = on_meta(
        dir.path(),
        &config,
        &graph,
        &[
            ("OTP_WHATSAPP__FALLBACK", "sms"),
            ("OTP_DELIVERY__ATTEMPTS", "1"),
        ],
    );
    let (status, body) = otpd.request(
        "POST",
        "/whatsapp",
        &[JSON],
        r#"{"phone":"+5511987654321"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["channel"], "whatsapp");
    let id = body["id"].as_str().expect("id").to_owned();

    // WhatsApp got the template; the SMS gateway got the same code.
    let wa = graph.only_request().json();
    let code = wa["template"]["components"][0]["parameters"][0]["text"]
        .as_str()
        .expect("code parameter")
        .to_owned();
    let sms = gateway.only_request().json();
    assert_eq!(sms["to"], "+5511987654321");
    assert_eq!(
        sms["text"],
        format!("Seu código é {code}. Ele expira em 5 min.").as_str()
    );

    // One verification, both deliveries in order; the code checks once, on
    // the WhatsApp channel.
    let (_, v) = otpd.request("GET", &format!("/verifications/{id}"), &[], "");
    let deliveries: Vec<(&str, &str)> = v["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| {
            (
                d["provider"].as_str().unwrap_or(""),
                d["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        deliveries,
        [("meta", "failed"), ("http", "delivered")],
        "{v}"
    );
    let check = json!({"phone": "+5511987654321", "password": code}).to_string();
    let (status, _) = otpd.request("POST", "/sms/check", &[JSON], &check);
    assert_eq!(status, 404, "the code is the WhatsApp channel's");
    let (status, body) = otpd.request("POST", "/whatsapp/check", &[JSON], &check);
    assert_eq!((status, body), (200, json!({"status": "approved"})));
    let (status, _) = otpd.request("POST", "/whatsapp/check", &[JSON], &check);
    assert_eq!(status, 404, "single use");
}

#[test]
fn without_the_fallback_a_number_not_on_whatsapp_is_a_502_and_no_code_stays() {
    let graph = FakePeer::start_blocking(Reply::json(
        400,
        r#"{"error":{"message":"(#131026) Message undeliverable","code":131026}}"#,
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = on_meta(dir.path(), "", &graph, &[]);
    let (status, body) = otpd.request(
        "POST",
        "/whatsapp",
        &[JSON],
        r#"{"phone":"+5511987654321","password":"482910"}"#,
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("delivery_failed")),
        "{body}"
    );
    let check = json!({"phone": "+5511987654321", "password": "482910"}).to_string();
    let (status, _) = otpd.request("POST", "/whatsapp/check", &[JSON], &check);
    assert_eq!(status, 404);
}
