//! The Twilio sender against a loopback peer that speaks Twilio's REST
//! format (form-encoded request, Basic auth, JSON answer).

use std::time::Duration;

use otp_domain::{Destination, OutgoingMessage, Phone, Sender};
use otp_gateway::{TwilioConfig, TwilioSender};
use otp_testkit::{chain_text, outgoing, FakePeer, Reply};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-test-token";
/// base64("AC0123456789abcdef0123456789abcdef:twilio-test-token")
const BASIC: &str =
    "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjp0d2lsaW8tdGVzdC10b2tlbg==";
const CREATED: &str = r#"{"sid":"SM123","status":"queued"}"#;

fn config(base_url: &str) -> TwilioConfig {
    let mut c = TwilioConfig::new(SID, TOKEN, "+14155552671");
    c.base_url = base_url.to_owned();
    c
}

fn phone() -> Phone {
    Phone::parse("+77011234567").expect("valid phone")
}

fn sms(body: &str) -> OutgoingMessage {
    outgoing(Destination::Sms(phone()), body)
}

fn call(body: &str) -> OutgoingMessage {
    outgoing(Destination::Call(phone()), body)
}

#[tokio::test]
async fn sms_with_from_posts_the_documented_form_with_basic_auth() {
    let peer = FakePeer::start(Reply::json(201, CREATED)).await;
    let sender = TwilioSender::new(config(&peer.base_url)).expect("valid config");

    sender
        .send(&sms("Your code is 482910. Ваш код."))
        .await
        .expect("delivered");

    let got = peer.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(
        got.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(got.query, None);
    assert_eq!(got.authorization.as_deref(), Some(BASIC));
    assert_eq!(
        got.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        got.body_text(),
        "To=%2B77011234567&From=%2B14155552671\
         &Body=Your+code+is+482910.+%D0%92%D0%B0%D1%88+%D0%BA%D0%BE%D0%B4."
    );
}

#[tokio::test]
async fn sms_through_a_messaging_service_sends_its_sid_instead_of_from() {
    let peer = FakePeer::start(Reply::json(201, CREATED)).await;
    let mut c = config(&peer.base_url);
    c.from = None;
    c.messaging_service_sid = Some("MG0123456789abcdef0123456789abcdef".to_owned());
    let sender = TwilioSender::new(c).expect("valid config");

    sender
        .send(&sms("Your code is 1234"))
        .await
        .expect("delivered");

    let got = peer.only_request();
    assert_eq!(
        got.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(got.authorization.as_deref(), Some(BASIC));
    assert_eq!(
        got.body_text(),
        "To=%2B77011234567&MessagingServiceSid=MG0123456789abcdef0123456789abcdef\
         &Body=Your+code+is+1234"
    );
}

#[tokio::test]
async fn voice_posts_twiml_that_reads_the_code_digit_by_digit_twice() {
    let peer = FakePeer::start(Reply::json(201, r#"{"sid":"CA123"}"#)).await;
    let sender = TwilioSender::new(config(&peer.base_url)).expect("valid config");

    sender
        .send(&call("Your code is 482910 & it's \"fresh\"."))
        .await
        .expect("call started");

    let got = peer.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, format!("/2010-04-01/Accounts/{SID}/Calls.json"));
    assert_eq!(got.authorization.as_deref(), Some(BASIC));
    assert_eq!(
        got.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let say = "<Say language=\"en-US\" voice=\"alice\">\
               Your code is 4 8 2 9 1 0 &amp; it&apos;s &quot;fresh&quot;.</Say>";
    assert_eq!(
        got.form(),
        [
            ("To".to_owned(), "+77011234567".to_owned()),
            ("From".to_owned(), "+14155552671".to_owned()),
            (
                "Twiml".to_owned(),
                format!("<Response>{say}<Pause length=\"1\"/>{say}</Response>")
            ),
        ]
    );
}

#[tokio::test]
async fn a_call_in_a_locale_speaks_that_locales_language() {
    let peer = FakePeer::start(Reply::json(201, r#"{"sid":"CA123"}"#)).await;
    let sender = TwilioSender::new(config(&peer.base_url)).expect("valid config");
    let mut message = call("Ihr Code lautet 4829.");
    message.locale = Some(otp_domain::ports::MessageLocale {
        tag: "de".to_owned(),
        voice: Some("de-DE".to_owned()),
    });
    sender.send(&message).await.expect("call started");
    // The default locale (no voice of its own) keeps the configured one.
    message.locale = Some(otp_domain::ports::MessageLocale {
        tag: "en".to_owned(),
        voice: None,
    });
    message.body = "Your code is 4829.".to_owned();
    sender.send(&message).await.expect("call started");

    let twimls: Vec<String> = peer
        .received()
        .iter()
        .map(|r| {
            r.form()
                .into_iter()
                .find(|(k, _)| k == "Twiml")
                .expect("Twiml field")
                .1
        })
        .collect();
    let say_de = "<Say language=\"de-DE\" voice=\"alice\">Ihr Code lautet 4 8 2 9.</Say>";
    let say_en = "<Say language=\"en-US\" voice=\"alice\">Your code is 4 8 2 9.</Say>";
    assert_eq!(
        twimls,
        [
            format!("<Response>{say_de}<Pause length=\"1\"/>{say_de}</Response>"),
            format!("<Response>{say_en}<Pause length=\"1\"/>{say_en}</Response>"),
        ]
    );
}

#[tokio::test]
async fn voice_uses_the_configured_language_voice_and_repeat() {
    let peer = FakePeer::start(Reply::json(201, r#"{"sid":"CA123"}"#)).await;
    let mut c = config(&peer.base_url);
    c.language = "ru-RU".to_owned();
    c.voice = "Polly.Tatyana".to_owned();
    c.repeat = 3;
    let sender = TwilioSender::new(c).expect("valid config");

    sender
        .send(&call("Ваш код 5071"))
        .await
        .expect("call started");

    let form = peer.only_request().form();
    let twiml = &form
        .iter()
        .find(|(k, _)| k == "Twiml")
        .expect("Twiml field")
        .1;
    let say = "<Say language=\"ru-RU\" voice=\"Polly.Tatyana\">Ваш код 5 0 7 1</Say>";
    assert_eq!(
        twiml,
        &format!("<Response>{say}<Pause length=\"1\"/>{say}<Pause length=\"1\"/>{say}</Response>")
    );
}

#[tokio::test]
async fn a_twilio_error_reports_status_and_code_but_not_the_body() {
    let peer = FakePeer::start(Reply::json(
        400,
        r#"{"code":21211,"message":"The 'To' number +77011234567 is not valid.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#,
    ))
    .await;
    let sender = TwilioSender::new(config(&peer.base_url)).expect("valid config");

    let err = sender
        .send(&sms("Your code is 1234"))
        .await
        .expect_err("400");

    assert_eq!(err.provider, "twilio");
    assert!(!err.transient);
    assert_eq!(err.reason, "HTTP 400 from twilio (error 21211)");
    assert!(!chain_text(&err).contains("+77011234567"));
}

#[tokio::test]
async fn twilio_429_and_5xx_are_transient_and_429_carries_retry_after() {
    let limited = FakePeer::start(
        Reply::json(429, r#"{"code":20429,"message":"Too Many Requests"}"#)
            .with_header("Retry-After", "2"),
    )
    .await;
    let down = FakePeer::start(Reply::json(500, "{}")).await;

    let err = TwilioSender::new(config(&limited.base_url))
        .expect("valid")
        .send(&sms("Your code is 1234"))
        .await
        .expect_err("429");
    assert!(err.transient);
    assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(
        err.reason,
        "HTTP 429 from twilio (error 20429), retry after 2 s"
    );

    let err = TwilioSender::new(config(&down.base_url))
        .expect("valid")
        .send(&call("Your code is 1234"))
        .await
        .expect_err("500");
    assert!(err.transient);
    assert_eq!(err.reason, "HTTP 500 from twilio");
}

#[tokio::test]
async fn a_call_without_from_is_refused_before_any_request() {
    let peer = FakePeer::start(Reply::json(201, CREATED)).await;
    let mut c = config(&peer.base_url);
    c.from = None;
    c.messaging_service_sid = Some("MG1".to_owned());
    let sender = TwilioSender::new(c).expect("valid for SMS");

    let err = sender
        .send(&call("Your code is 1234"))
        .await
        .expect_err("no caller id");

    assert!(!err.transient);
    assert_eq!(err.reason, "twilio needs twilio.from for voice calls");
    assert!(peer.received().is_empty());
}
