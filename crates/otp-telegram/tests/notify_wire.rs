//! The http-telegram-notify sender against a loopback peer that answers
//! like the real relay (which says HTTP 500 even after a good send).

use otp_domain::{ChatId, Destination, OutgoingMessage, Sender};
use otp_telegram::{HttpNotifyConfig, HttpNotifySender};
use otp_testkit::{outgoing, FakePeer, Reply};
use secrecy::SecretString;

fn to_chat(body: &str) -> OutgoingMessage {
    outgoing(
        Destination::Telegram(ChatId::from_i64(1234567890).expect("valid")),
        body,
    )
}

fn config(base_url: &str) -> HttpNotifyConfig {
    let mut c = HttpNotifyConfig::new(format!("{base_url}/msg"));
    c.app_token = Some(SecretString::from("relay-app-token"));
    c
}

fn relay_reply(status: u16, body: &str) -> Reply {
    let mut r = Reply::json(status, body);
    r.headers = vec![("content-type".to_owned(), "text/plain".to_owned())];
    r
}

#[tokio::test]
async fn posts_to_chat_message_and_silent_with_the_auth_token() {
    // The real relay's answer to a good send: 500, "Sent message …".
    let peer = FakePeer::start(relay_reply(
        500,
        "Sent message \"Your code is 4829\" to 1234567890 (silent=false)\n",
    ))
    .await;
    let sender = HttpNotifySender::new(config(&peer.base_url)).expect("valid");

    sender
        .send(&to_chat("Your code is 4829 \"ok\""))
        .await
        .expect("the relay's 500 + 'Sent message' counts as delivered");

    let got = peer.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/msg");
    assert_eq!(got.header("x-auth-token"), Some("relay-app-token"));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got.body_text(),
        r#"{"to":1234567890,"message":"Your code is 4829 \"ok\"","silent":false}"#
    );
}

#[tokio::test]
async fn a_2xx_is_delivered_and_silent_is_passed_on() {
    let peer = FakePeer::start(relay_reply(200, "ok")).await;
    let mut c = config(&peer.base_url);
    c.silent = true;
    c.app_token = None;

    HttpNotifySender::new(c)
        .expect("valid")
        .send(&to_chat("x"))
        .await
        .expect("delivered");

    let got = peer.only_request();
    assert_eq!(got.header("x-auth-token"), None);
    assert_eq!(
        got.body_text(),
        r#"{"to":1234567890,"message":"x","silent":true}"#
    );
}

#[tokio::test]
async fn a_wrong_token_is_a_permanent_failure_and_other_500s_are_transient() {
    let denied = FakePeer::start(relay_reply(
        401,
        "401 - Missing or invalid auth token in header X-Auth-Token\n",
    ))
    .await;
    let broken = FakePeer::start(relay_reply(500, "panic: invalid character")).await;

    let err = HttpNotifySender::new(config(&denied.base_url))
        .expect("valid")
        .send(&to_chat("Your code is 1234"))
        .await
        .expect_err("401");
    assert_eq!(err.provider, "telegram-notify");
    assert!(!err.transient);
    assert_eq!(err.reason, "HTTP 401 from telegram-notify");

    let err = HttpNotifySender::new(config(&broken.base_url))
        .expect("valid")
        .send(&to_chat("Your code is 1234"))
        .await
        .expect_err("500 without 'Sent message'");
    assert!(err.transient);
    assert_eq!(err.reason, "HTTP 500 from telegram-notify");
}
