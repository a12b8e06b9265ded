//! The Bot API sender and `set_webhook` against a loopback fake Bot API
//! that records the path (token included), content type and JSON body.

use std::time::{Duration, Instant};

use otp_domain::{ChatId, DeliveryError, Destination, OutgoingMessage, Phone, Sender};
use otp_telegram::{set_webhook, TelegramConfig, TelegramError, TelegramSender};
use otp_testkit::{chain_text, closed_port, outgoing, FakePeer, Reply};
use secrecy::SecretString;

const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const SENT: &str = r#"{"ok":true,"result":{"message_id":7,"chat":{"id":-1001234567890,"type":"supergroup"},"date":1700000000,"text":"x"}}"#;

fn config(api_url: &str) -> TelegramConfig {
    let mut c = TelegramConfig::new(TOKEN);
    c.api_url = api_url.to_owned();
    c
}

fn to_chat(chat: i64, body: &str) -> OutgoingMessage {
    outgoing(
        Destination::Telegram(ChatId::from_i64(chat).expect("valid chat id")),
        body,
    )
}

async fn send(api_url: &str, chat: i64, body: &str) -> Result<(), DeliveryError> {
    TelegramSender::new(config(api_url))
        .expect("valid config")
        .send(&to_chat(chat, body))
        .await
        .map(|d| assert_eq!(d.provider, "telegram"))
}

#[tokio::test]
async fn send_message_posts_chat_id_and_text_as_json_to_the_token_path() {
    let peer = FakePeer::start(Reply::json(200, SENT)).await;
    let text = "Ваш код: 4829 \"quoted\" \\ ✓\nline 2";

    send(&peer.base_url, -1001234567890, text)
        .await
        .expect("delivered");

    let got = peer.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got.body_text(),
        "{\"chat_id\":-1001234567890,\"text\":\"Ваш код: 4829 \\\"quoted\\\" \\\\ ✓\\nline 2\"}"
    );
    let body = got.json();
    assert_eq!(
        body,
        serde_json::json!({"chat_id": -1001234567890_i64, "text": text})
    );
}

#[tokio::test]
async fn ok_false_is_a_permanent_failure_whose_reason_hides_the_description() {
    let peer = FakePeer::start(Reply::json(
        400,
        r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
    ))
    .await;

    let err = send(&peer.base_url, 42, "Your code is 1234")
        .await
        .expect_err("chat not found");

    assert_eq!(err.provider, "telegram");
    assert!(!err.transient);
    assert_eq!(err.reason, "Telegram Bot API error 400");
    let source = err
        .source
        .as_deref()
        .and_then(|s| s.downcast_ref::<TelegramError>())
        .expect("typed source");
    assert_eq!(
        source.to_string(),
        "Telegram Bot API error 400: Bad Request: chat not found"
    );
}

#[tokio::test]
async fn ok_false_with_http_200_is_still_a_failure() {
    let peer = FakePeer::start(Reply::json(
        200,
        r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#,
    ))
    .await;

    let err = send(&peer.base_url, 42, "Your code is 1234")
        .await
        .expect_err("blocked");

    assert!(!err.transient);
    assert_eq!(err.reason, "Telegram Bot API error 403");
}

#[tokio::test]
async fn flood_control_429_is_transient_with_parameters_retry_after() {
    let peer = FakePeer::start(Reply::json(
        429,
        r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 17","parameters":{"retry_after":17}}"#,
    ))
    .await;

    let err = send(&peer.base_url, 42, "Your code is 1234")
        .await
        .expect_err("429");

    assert!(err.transient);
    assert_eq!(err.retry_after, Some(Duration::from_secs(17)));
    assert_eq!(err.reason, "Telegram Bot API error 429, retry after 17 s");
}

#[tokio::test]
async fn a_5xx_with_an_html_body_is_transient() {
    let peer = FakePeer::start(
        Reply::json(502, "<html>Bad Gateway</html>").with_header("Retry-After", "3"),
    )
    .await;

    let err = send(&peer.base_url, 42, "Your code is 1234")
        .await
        .expect_err("502");

    assert!(err.transient);
    assert_eq!(err.reason, "Telegram Bot API error 502, retry after 3 s");
    assert_eq!(err.retry_after, Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn a_2xx_that_is_not_the_bot_api_is_a_permanent_failure() {
    let peer = FakePeer::start(Reply::json(200, "<html>captive portal</html>")).await;

    let err = send(&peer.base_url, 42, "Your code is 1234")
        .await
        .expect_err("not JSON");

    assert!(!err.transient);
    assert_eq!(
        err.reason,
        "telegram answered HTTP 200 with an unreadable body"
    );
}

#[tokio::test]
async fn a_slow_api_times_out_as_transient() {
    let peer = FakePeer::start(Reply::json(200, SENT).after(Duration::from_secs(3))).await;
    let mut c = config(&peer.base_url);
    c.timeout_secs = 1;
    let sender = TelegramSender::new(c).expect("valid");

    let started = Instant::now();
    let err = sender
        .send(&to_chat(42, "Your code is 1234"))
        .await
        .expect_err("timeout");

    assert!(err.transient);
    assert_eq!(err.reason, "no answer from telegram within 1 s");
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert!(
        !chain_text(&err).contains(TOKEN),
        "the token is not in the error"
    );
}

#[tokio::test]
async fn a_closed_port_is_transient_and_the_token_stays_out_of_the_error() {
    let err = send(
        &format!("http://127.0.0.1:{}", closed_port()),
        42,
        "Your code is 1234",
    )
    .await
    .expect_err("nobody listens");

    assert!(err.transient);
    assert_eq!(err.reason, "could not connect to telegram");
    let chain = chain_text(&err);
    assert!(!chain.contains(TOKEN), "{chain}");
    assert!(!chain.contains("AAHdqTcv"), "{chain}");
}

#[tokio::test]
async fn set_webhook_posts_url_secret_and_message_updates_only() {
    let peer = FakePeer::start(Reply::json(
        200,
        r#"{"ok":true,"result":true,"description":"Webhook was set"}"#,
    ))
    .await;

    set_webhook(
        &peer.base_url,
        &SecretString::from(TOKEN),
        "https://otp.example.com/telegram/webhook",
        Some(&SecretString::from("s3cr3t_-Token")),
    )
    .await
    .expect("webhook set");

    let got = peer.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, format!("/bot{TOKEN}/setWebhook"));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got.body_text(),
        r#"{"url":"https://otp.example.com/telegram/webhook","secret_token":"s3cr3t_-Token","allowed_updates":["message"]}"#
    );
}

#[tokio::test]
async fn set_webhook_without_secret_omits_the_field_and_reports_refusals() {
    let peer = FakePeer::start(Reply::json(
        400,
        r#"{"ok":false,"error_code":400,"description":"Bad Request: bad webhook: HTTPS url must be provided for webhook"}"#,
    ))
    .await;

    let err = set_webhook(
        &peer.base_url,
        &SecretString::from(TOKEN),
        "https://otp.example.com/telegram/webhook",
        None,
    )
    .await
    .expect_err("refused");

    assert!(
        matches!(err, TelegramError::Api { code: 400, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let got = peer.only_request();
    assert_eq!(
        got.body_text(),
        r#"{"url":"https://otp.example.com/telegram/webhook","allowed_updates":["message"]}"#
    );
}

#[tokio::test]
async fn set_webhook_checks_its_arguments_before_sending() {
    let peer = FakePeer::start(Reply::json(200, r#"{"ok":true,"result":true}"#)).await;
    let token = SecretString::from(TOKEN);

    let bad_secret = set_webhook(
        &peer.base_url,
        &token,
        "https://otp.example.com/telegram/webhook",
        Some(&SecretString::from("+4912345678")),
    )
    .await
    .expect_err("a + is not allowed in secret_token");
    assert!(
        bad_secret
            .to_string()
            .contains("webhook secret must be 1 to 256"),
        "{bad_secret}"
    );

    let plain_http = set_webhook(
        &peer.base_url,
        &token,
        "http://otp.example.com/telegram/webhook",
        None,
    )
    .await
    .expect_err("Telegram calls only HTTPS");
    assert!(plain_http.to_string().contains("https://"), "{plain_http}");

    assert!(peer.received().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_message_for_another_channel_is_refused_without_a_call() {
    let peer = FakePeer::start(Reply::json(200, SENT)).await;
    let sms = outgoing(
        Destination::Sms(Phone::parse("77011234567").expect("valid phone")),
        "Your code is 1234",
    );
    let err = TelegramSender::new(config(&peer.base_url))
        .expect("valid config")
        .send(&sms)
        .await
        .expect_err("not a chat");
    assert!(!err.transient);
    assert_eq!(err.reason, "the telegram sender cannot deliver to sms");
    assert!(peer.received().is_empty(), "nothing was sent");
}
