//! The WhatsApp Cloud API sender against a loopback peer that records
//! what arrived and answers as the Graph API does.

use std::time::Duration;

use otp_domain::{DeliveryError, Destination, OutgoingMessage, Phone, Sender};
use otp_gateway::{MetaConfig, MetaSender, TwilioConfig, TwilioSender};
use otp_testkit::{outgoing, FakePeer, Reply};
use serde_json::json;

const TOKEN: &str = "EAAG-test-token";

fn whatsapp(code: &str) -> OutgoingMessage {
    OutgoingMessage {
        code: otp_domain::Code::parse(code).expect("code"),
        ..outgoing(
            Destination::WhatsApp(Phone::parse("+5511987654321").expect("valid phone")),
            &format!("Seu código é {code}."),
        )
    }
}

fn config(base_url: &str) -> MetaConfig {
    let mut c = MetaConfig::new("106540352242922", TOKEN, "otp_code");
    c.base_url = base_url.to_owned();
    c.language = "pt_BR".to_owned();
    c
}

async fn send(peer: &FakePeer) -> Result<(), DeliveryError> {
    MetaSender::new(config(&peer.base_url))
        .expect("valid config")
        .send(&whatsapp("482910"))
        .await
        .map(|d| assert_eq!(d.provider, "meta"))
}

fn graph_error(code: i64) -> Reply {
    Reply::json(
        400,
        &json!({"error": {"message": "(#131026) Message undeliverable to +5511987654321", "type": "OAuthException", "code": code, "fbtrace_id": "A1"}})
            .to_string(),
    )
}

#[tokio::test]
async fn a_send_posts_the_authentication_template_with_bearer_auth() {
    let peer = FakePeer::start(Reply::json(
        200,
        r#"{"messaging_product":"whatsapp","contacts":[{"input":"+5511987654321","wa_id":"5511987654321"}],"messages":[{"id":"wamid.HBgLNTUxMTk4NzY1NDMyMRUCABEYEjA="}]}"#,
    ))
    .await;
    let mut message = whatsapp("482910");
    let id = otp_domain::VerificationId::from_bytes([0xab; 16]);
    message.verification = Some(id);
    let delivered = MetaSender::new(config(&peer.base_url))
        .expect("valid config")
        .send(&message)
        .await
        .expect("delivered");
    assert_eq!(
        (delivered.provider.as_str(), delivered.message_id.as_deref()),
        ("meta", Some("wamid.HBgLNTUxMTk4NzY1NDMyMRUCABEYEjA="))
    );

    let got = peer.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/v21.0/106540352242922/messages");
    assert_eq!(got.authorization.as_deref(), Some("Bearer EAAG-test-token"));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got.json(),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+5511987654321",
            "type": "template",
            "template": {
                "name": "otp_code",
                "language": {"policy": "deterministic", "code": "pt_BR"},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": "482910"}]},
                    {"type": "button", "sub_type": "url", "index": "0",
                     "parameters": [{"type": "text", "text": "482910"}]}
                ]
            },
            "biz_opaque_callback_data": format!("vrf_{}", "ab".repeat(16)),
        })
    );
}

#[tokio::test]
async fn graph_api_errors_map_to_their_meaning_and_never_quote_the_number() {
    for (code, transient, reason) in [
        (131_026, false, "HTTP 400 from meta (error 131026: the number is not on WhatsApp or cannot receive it)"),
        (130_429, true, "HTTP 400 from meta (error 130429: WhatsApp throughput limit)"),
        (131_056, true, "HTTP 400 from meta (error 131056: WhatsApp throughput limit)"),
        (100, false, "HTTP 400 from meta (error 100: the template or its parameters do not match the config)"),
        (131_008, false, "HTTP 400 from meta (error 131008: the template or its parameters do not match the config)"),
        (190, false, "HTTP 400 from meta (error 190: the access token expired or was revoked)"),
    ] {
        let peer = FakePeer::start(graph_error(code)).await;
        let err = send(&peer).await.expect_err("refused");
        assert_eq!((err.transient, err.reason.as_str()), (transient, reason), "{code}");
        assert_eq!(err.provider, "meta");
        assert!(!err.reason.contains("5511987654321"), "{}", err.reason);
    }
}

#[tokio::test]
async fn a_5xx_is_transient_and_an_answer_without_a_message_id_is_a_failure() {
    let peer = FakePeer::start(Reply::json(503, "{}").with_header("Retry-After", "4")).await;
    let err = send(&peer).await.expect_err("5xx");
    assert!(err.transient);
    assert_eq!(err.retry_after, Some(Duration::from_secs(4)));

    let peer = FakePeer::start(Reply::json(200, r#"{"messages":[]}"#)).await;
    let err = send(&peer).await.expect_err("no id");
    assert!(!err.transient);
}

#[tokio::test]
async fn a_slow_graph_api_is_a_transient_timeout() {
    let peer = FakePeer::start(Reply::json(200, "{}").after(Duration::from_secs(3))).await;
    let mut c = config(&peer.base_url);
    c.timeout_secs = 1;
    let err = MetaSender::new(c)
        .expect("valid config")
        .send(&whatsapp("482910"))
        .await
        .expect_err("timed out");
    assert!(err.transient);
    assert_eq!(err.reason, "no answer from meta within 1 s");
}

#[test]
fn bad_settings_are_refused_naming_the_field() {
    for (spoil, field) in [
        (
            (|c: &mut MetaConfig| c.phone_number_id = "12/../x".into()) as fn(&mut MetaConfig),
            "phone_number_id",
        ),
        (
            |c: &mut MetaConfig| c.access_token = String::new().into(),
            "access_token",
        ),
        (|c: &mut MetaConfig| c.template = " ".into(), "template"),
        (
            |c: &mut MetaConfig| c.api_version = "21".into(),
            "api_version",
        ),
        (
            |c: &mut MetaConfig| c.base_url = "ftp://x".into(),
            "base_url",
        ),
        (|c: &mut MetaConfig| c.timeout_secs = 0, "timeout_secs"),
    ] {
        let mut c = MetaConfig::new("1", "t", "otp");
        spoil(&mut c);
        assert_eq!(c.validate().expect_err(field).field, field);
    }
}

#[tokio::test]
async fn twilio_sends_whatsapp_through_messages_with_its_content_template() {
    let peer = FakePeer::start(Reply::json(201, r#"{"sid":"SM1"}"#)).await;
    let mut c = TwilioConfig::new("AC0123", "twilio-token", "+14155552671");
    c.base_url = peer.base_url.clone();
    c.content_sid = Some("HX0123456789abcdef".into());
    c.validate_for(otp_domain::Channel::WhatsApp)
        .expect("valid for WhatsApp");
    TwilioSender::new(c)
        .expect("valid config")
        .send(&whatsapp("482910"))
        .await
        .expect("delivered");
    let got = peer.only_request();
    assert_eq!(got.path, "/2010-04-01/Accounts/AC0123/Messages.json");
    assert_eq!(
        got.form(),
        [
            ("To".to_owned(), "whatsapp:+5511987654321".to_owned()),
            ("From".to_owned(), "whatsapp:+14155552671".to_owned()),
            ("ContentSid".to_owned(), "HX0123456789abcdef".to_owned()),
            (
                "ContentVariables".to_owned(),
                r#"{"1":"482910"}"#.to_owned()
            ),
        ]
    );
    // Without a content template, WhatsApp is refused at start.
    let c = TwilioConfig::new("AC0123", "twilio-token", "+14155552671");
    assert_eq!(
        c.validate_for(otp_domain::Channel::WhatsApp)
            .expect_err("no content_sid")
            .field,
        "content_sid"
    );
}
