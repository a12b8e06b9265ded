//! The generic HTTP gateway against a loopback peer that records exactly
//! what arrived.

use std::time::{Duration, Instant};

use otp_domain::{DeliveryError, Destination, OutgoingMessage, Phone, Sender};
use otp_gateway::{BodyEncoding, HttpGatewayConfig, HttpGatewaySender, HttpMethod};
use otp_testkit::{chain_text, closed_port, outgoing, FakePeer, Reply};
use secrecy::SecretString;

fn sms(body: &str) -> OutgoingMessage {
    outgoing(
        Destination::Sms(Phone::parse("77011234567").expect("valid phone")),
        body,
    )
}

fn json_config(url: String) -> HttpGatewayConfig {
    let mut c = HttpGatewayConfig::new(url);
    c.body = Some(r#"{"to":"{phone}","text":"{message}","sender":"otpd"}"#.to_owned());
    c
}

async fn send_to(config: HttpGatewayConfig, body: &str) -> Result<(), DeliveryError> {
    HttpGatewaySender::new(config)
        .expect("valid config")
        .send(&sms(body))
        .await
        .map(|d| assert_eq!(d.provider, "gateway"))
}

#[tokio::test]
async fn json_gateway_escapes_quotes_backslash_newline_and_non_ascii() {
    let peer = FakePeer::start(Reply::json(200, r#"{"id":1}"#)).await;
    let mut config = json_config(format!("{}/api/v1/send?account=42", peer.base_url));
    config.headers.insert(
        "Authorization".to_owned(),
        SecretString::from("Bearer gw-secret"),
    );
    config
        .headers
        .insert("X-Client".to_owned(), SecretString::from("otpd"));
    let message = "Ваш код \"4829\" \\ path\nnext line ✓";

    send_to(config, message).await.expect("delivered");

    let got = peer.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/api/v1/send");
    assert_eq!(got.query.as_deref(), Some("account=42"));
    assert_eq!(got.authorization.as_deref(), Some("Bearer gw-secret"));
    assert_eq!(got.header("x-client"), Some("otpd"));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got.body_text(),
        "{\"to\":\"+77011234567\",\"text\":\"Ваш код \\\"4829\\\" \\\\ path\\nnext line ✓\",\"sender\":\"otpd\"}"
    );
    let parsed = got.json();
    assert_eq!(parsed["text"], message);
    assert_eq!(parsed["to"], "+77011234567");
}

#[tokio::test]
async fn form_gateway_percent_encodes_each_value() {
    let peer = FakePeer::start(Reply::json(200, "{}")).await;
    let mut config = HttpGatewayConfig::new(format!("{}/sms", peer.base_url));
    config.encoding = BodyEncoding::Form;
    config.body = Some("to={phone}&text={message}&from=otpd".to_owned());
    let message = "Code: 12 34 & more+1=2 ✓";

    send_to(config, message).await.expect("delivered");

    let got = peer.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/sms");
    assert_eq!(
        got.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        got.body_text(),
        "to=%2B77011234567&text=Code%3A+12+34+%26+more%2B1%3D2+%E2%9C%93&from=otpd"
    );
    assert_eq!(
        got.form(),
        [
            ("to".to_owned(), "+77011234567".to_owned()),
            ("text".to_owned(), message.to_owned()),
            ("from".to_owned(), "otpd".to_owned()),
        ]
    );
}

#[tokio::test]
async fn get_gateway_fills_the_url_percent_encoded_and_sends_no_body() {
    let peer = FakePeer::start(Reply::json(200, "OK")).await;
    let mut config = HttpGatewayConfig::new(format!(
        "{}/send/{{phone}}?msg={{message}}&key=k1",
        peer.base_url
    ));
    config.method = HttpMethod::Get;

    send_to(config, "Code 1234 & more/?")
        .await
        .expect("delivered");

    let got = peer.only_request();
    assert_eq!(got.method, "GET");
    assert_eq!(got.path, "/send/%2B77011234567");
    assert_eq!(
        got.query.as_deref(),
        Some("msg=Code%201234%20%26%20more%2F%3F&key=k1")
    );
    assert_eq!(got.content_type, None);
    assert!(got.body.is_empty());
}

#[tokio::test]
async fn success_pointer_match_is_success_and_mismatch_a_permanent_failure() {
    let ok_peer = FakePeer::start(Reply::json(200, r#"{"result":{"status":"ok"}}"#)).await;
    let bad_peer = FakePeer::start(Reply::json(
        200,
        r#"{"result":{"status":"error","detail":"1234"}}"#,
    ))
    .await;
    let checked = |base: &str| {
        let mut c = json_config(format!("{base}/send"));
        c.name = "smsc".to_owned();
        c.success_pointer = Some("/result/status".to_owned());
        c.success_value = Some(serde_json::json!("ok"));
        c
    };

    send_to(checked(&ok_peer.base_url), "Your code is 1234")
        .await
        .expect("status ok is success");
    let err = send_to(checked(&bad_peer.base_url), "Your code is 1234")
        .await
        .expect_err("status error is failure");

    assert_eq!(err.provider, "smsc");
    assert!(!err.transient);
    assert_eq!(
        err.reason,
        "smsc answered HTTP 200 but /result/status did not show success"
    );
    assert_eq!(bad_peer.received().len(), 1);
}

#[tokio::test]
async fn success_pointer_without_value_needs_a_truthy_field_and_json() {
    let missing = FakePeer::start(Reply::json(200, r#"{"other":true}"#)).await;
    let falsy = FakePeer::start(Reply::json(200, r#"{"sent":false}"#)).await;
    let not_json = FakePeer::start(Reply::json(200, "OK")).await;
    let truthy = FakePeer::start(Reply::json(200, r#"{"sent":"msg-1"}"#)).await;
    let checked = |base: &str| {
        let mut c = json_config(format!("{base}/send"));
        c.success_pointer = Some("/sent".to_owned());
        c
    };

    for peer in [&missing, &falsy, &not_json] {
        let err = send_to(checked(&peer.base_url), "x")
            .await
            .expect_err("no success shown");
        assert!(!err.transient);
    }
    send_to(checked(&truthy.base_url), "x")
        .await
        .expect("a present, non-false field is success");
}

#[tokio::test]
async fn http_503_is_transient_and_its_body_stays_out_of_the_reason() {
    let peer = FakePeer::start(Reply::json(503, r#"{"error":"down for 1234"}"#)).await;

    let err = send_to(json_config(peer.base_url.clone()), "Your code is 1234")
        .await
        .expect_err("503");

    assert_eq!(err.provider, "gateway");
    assert!(err.transient);
    assert_eq!(err.reason, "HTTP 503 from gateway");
    assert_eq!(err.retry_after, None);
    assert!(!chain_text(&err).contains("1234"));
}

#[tokio::test]
async fn http_400_is_permanent() {
    let peer = FakePeer::start(Reply::json(400, r#"{"error":"bad phone"}"#)).await;

    let err = send_to(json_config(peer.base_url.clone()), "Your code is 1234")
        .await
        .expect_err("400");

    assert!(!err.transient);
    assert_eq!(err.reason, "HTTP 400 from gateway");
}

#[tokio::test]
async fn http_429_is_transient_and_carries_retry_after() {
    let peer = FakePeer::start(
        Reply::json(429, r#"{"error":"slow down"}"#).with_header("Retry-After", "7"),
    )
    .await;

    let err = send_to(json_config(peer.base_url.clone()), "Your code is 1234")
        .await
        .expect_err("429");

    assert!(err.transient);
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(err.reason, "HTTP 429 from gateway, retry after 7 s");
}

#[tokio::test]
async fn a_gateway_slower_than_the_timeout_is_a_transient_failure() {
    let peer = FakePeer::start(Reply::json(200, "{}").after(Duration::from_secs(3))).await;
    let mut config = json_config(peer.base_url.clone());
    config.timeout_secs = 1;

    let started = Instant::now();
    let err = send_to(config, "Your code is 1234")
        .await
        .expect_err("timed out");

    assert!(err.transient);
    assert_eq!(err.reason, "no answer from gateway within 1 s");
    // The peer answers after 3 s; ending before that shows the timeout
    // fired (with room for a loaded machine).
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(peer.received().len(), 1, "the request did arrive");
}

#[tokio::test]
async fn a_closed_port_is_a_transient_connect_error_without_url_or_code() {
    let config = {
        let mut c = HttpGatewayConfig::new(format!(
            "http://127.0.0.1:{}/send?apikey=url-secret&text={{message}}",
            closed_port()
        ));
        c.method = HttpMethod::Get;
        c
    };

    let err = send_to(config, "Your code is 918273")
        .await
        .expect_err("nobody listens");

    assert!(err.transient);
    assert_eq!(err.reason, "could not connect to gateway");
    let chain = chain_text(&err);
    assert!(!chain.contains("url-secret"), "{chain}");
    assert!(!chain.contains("918273"), "{chain}");
}

#[tokio::test]
async fn a_telegram_destination_is_refused_without_a_request() {
    let peer = FakePeer::start(Reply::json(200, "{}")).await;
    let sender = HttpGatewaySender::new(json_config(peer.base_url.clone())).expect("valid");
    let message = outgoing(
        Destination::Telegram(otp_domain::ChatId::from_i64(42).expect("valid")),
        "x",
    );

    let err = sender.send(&message).await.expect_err("wrong channel");

    assert!(!err.transient);
    assert_eq!(err.reason, "the gateway sender cannot deliver to telegram");
    assert!(peer.received().is_empty());
}

#[tokio::test]
async fn the_locale_placeholder_carries_the_messages_locale() {
    let peer = FakePeer::start(Reply::json(200, r#"{"id":1}"#)).await;
    let mut config = HttpGatewayConfig::new(format!("{}/send?lang={{locale}}", peer.base_url));
    config.body = Some(r#"{"to":"{phone}","text":"{message}","lang":"{locale}"}"#.to_owned());
    let mut message = sms("Ihr Code lautet 4829.");
    message.locale = Some(otp_domain::ports::MessageLocale {
        tag: "pt-BR".to_owned(),
        voice: Some("pt-BR".to_owned()),
    });
    HttpGatewaySender::new(config)
        .expect("valid config")
        .send(&message)
        .await
        .expect("delivered");
    let got = peer.only_request();
    assert_eq!(got.query.as_deref(), Some("lang=pt-BR"));
    assert_eq!(
        got.body_text(),
        r#"{"to":"+77011234567","text":"Ihr Code lautet 4829.","lang":"pt-BR"}"#
    );
}
