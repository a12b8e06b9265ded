//! The SMTP sender against a real SMTP server on loopback: aiosmtpd,
//! through otp-testkit's `SmtpPeer`, which saves each received message.

use std::time::{Duration, Instant};

use otp_domain::{DeliveryError, Destination, Email, OutgoingMessage, Sender};
use otp_smtp::{SmtpConfig, SmtpSender, SmtpTls};
use otp_testkit::mail_parser::MimeHeaders;
use otp_testkit::{closed_port, SmtpPeer};

/// Plain SMTP to 127.0.0.1:`port`, as the peer speaks it.
fn smtp_config(port: u16) -> SmtpConfig {
    let mut c = SmtpConfig::new("127.0.0.1", "otp@example.com");
    c.port = Some(port);
    c.tls = SmtpTls::None;
    c.timeout_secs = 5;
    c
}

fn email(to: &str, subject: Option<&str>, body: &str) -> OutgoingMessage {
    OutgoingMessage {
        verification: None,
        destination: Destination::Email(Email::parse(to).expect("valid email")),
        subject: subject.map(str::to_owned),
        body: body.to_owned(),
        code: otp_domain::Code::parse("1234").expect("code"),
        locale: None,
    }
}

#[tokio::test]
async fn email_arrives_with_display_name_utf8_subject_and_the_code() {
    let peer = SmtpPeer::start().await;
    let mut config = smtp_config(peer.port);
    config.from_name = Some("Сервис «OTP»".to_owned());
    let sender = SmtpSender::new(config).expect("valid config");
    let body = "Ваш код: 482910. Он действует 5 минут.";

    sender
        .send(&email("user@example.org", Some("Ваш код"), body))
        .await
        .expect("sent");

    let got = peer.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, "otp@example.com");
    assert_eq!(got[0].rcpt_tos, vec!["user@example.org".to_owned()]);
    let parsed = got[0].parsed();
    let from = parsed.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.name(), Some("Сервис «OTP»"));
    assert_eq!(from.address(), Some("otp@example.com"));
    let to = parsed.to().and_then(|a| a.first()).expect("To");
    assert_eq!(to.address(), Some("user@example.org"));
    assert_eq!(parsed.subject(), Some("Ваш код"));
    assert_eq!(parsed.body_text(0).as_deref(), Some(body));
    assert!(parsed.body_html(0).is_some_and(|h| h.contains("482910")));
    assert_eq!(parsed.text_body.len(), 1);
    let content_type = parsed.content_type().expect("Content-Type");
    assert_eq!(content_type.ctype(), "text");
    assert_eq!(content_type.subtype(), Some("plain"));
    assert!(parsed.message_id().is_some(), "a Message-ID is set");
    assert!(parsed.date().is_some(), "a Date is set");
    // Nothing but encoded words in the raw header block: no raw UTF-8
    // that a 7-bit relay could mangle.
    let raw = got[0].raw_text();
    let headers = raw.split("\r\n\r\n").next().expect("header block");
    assert!(headers.is_ascii(), "{headers}");
}

#[tokio::test]
async fn html_template_sends_multipart_alternative_with_the_body_escaped() {
    let peer = SmtpPeer::start().await;
    let mut config = smtp_config(peer.port);
    config.html_template = Some("<html><body><p>{body}</p></body></html>".to_owned());
    let sender = SmtpSender::new(config).expect("valid config");
    let body = "Code <b>7391</b> & \"more\"";

    sender
        .send(&email("user@example.org", Some("Code"), body))
        .await
        .expect("sent");

    let got = peer.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let parsed = got[0].parsed();
    let ct = parsed.content_type().expect("Content-Type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative"))
    );
    assert_eq!(parsed.body_text(0).as_deref(), Some(body));
    assert_eq!(
        parsed.body_html(0).as_deref(),
        Some(
            "<html><body><p>Code &lt;b&gt;7391&lt;/b&gt; &amp; &quot;more&quot;</p></body></html>"
        )
    );
}

#[tokio::test]
async fn a_message_without_subject_gets_the_default_one() {
    let peer = SmtpPeer::start().await;
    let sender = SmtpSender::new(smtp_config(peer.port)).expect("valid config");

    sender
        .send(&email("user@example.org", None, "Your code is 1234"))
        .await
        .expect("sent");

    let got = peer.wait_for(1).await;
    let parsed = got[0].parsed();
    assert_eq!(parsed.subject(), Some("Your verification code"));
    let from = parsed.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.name(), None);
}

#[tokio::test]
async fn a_subject_with_cr_or_lf_is_refused_and_nothing_arrives() {
    let peer = SmtpPeer::start().await;
    let sender = SmtpSender::new(smtp_config(peer.port)).expect("valid config");

    for subject in [
        "Hi\r\nBcc: victim@example.net",
        "Hi\nBcc: victim@example.net",
    ] {
        let err = sender
            .send(&email(
                "user@example.org",
                Some(subject),
                "Your code is 5555",
            ))
            .await
            .expect_err("a header-injecting subject must be refused");
        assert_eq!(err.provider, "smtp");
        assert!(!err.transient);
        assert_eq!(
            err.reason,
            "the subject contains a line break or control character"
        );
        assert!(!err.reason.contains("5555"));
    }

    // The server is up and takes the next clean message, which is the
    // first it ever saw.
    sender
        .send(&email(
            "user@example.org",
            Some("Clean"),
            "Your code is 6666",
        ))
        .await
        .expect("sent");
    let got = peer.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let parsed = got[0].parsed();
    assert_eq!(parsed.subject(), Some("Clean"));
    assert!(!got[0].raw_text().contains("victim"));
}

#[tokio::test]
async fn several_sends_share_the_pool_and_all_arrive() {
    let peer = SmtpPeer::start().await;
    let sender = SmtpSender::new(smtp_config(peer.port)).expect("valid config");

    for i in 0..3 {
        sender
            .send(&email(
                &format!("user{i}@example.org"),
                Some("Code"),
                &format!("Your code is {i}{i}{i}{i}"),
            ))
            .await
            .expect("sent");
    }

    let got = peer.wait_for(3).await;
    let rcpts: Vec<String> = got.iter().flat_map(|r| r.rcpt_tos.clone()).collect();
    assert_eq!(
        rcpts,
        [
            "user0@example.org",
            "user1@example.org",
            "user2@example.org"
        ]
    );
}

#[tokio::test]
async fn a_5xx_reply_is_a_permanent_failure_and_a_4xx_reply_a_transient_one() {
    let peer = SmtpPeer::start().await;
    let sender = SmtpSender::new(smtp_config(peer.port)).expect("valid config");

    let err = sender
        .send(&email(
            "nobody@reject.example",
            Some("Code"),
            "Your code is 7777",
        ))
        .await
        .expect_err("550 at RCPT");
    assert!(!err.transient, "{err:?}");
    assert_eq!(err.reason, "the SMTP server refused the message (550)");

    let err = sender
        .send(&email(
            "someone@later.example",
            Some("Code"),
            "Your code is 7777",
        ))
        .await
        .expect_err("451 at RCPT");
    assert!(err.transient, "{err:?}");
    assert_eq!(err.reason, "the SMTP server deferred the message (451)");
    assert!(peer.received().is_empty());
}

#[tokio::test]
async fn a_closed_port_gives_a_transient_error() {
    let sender = SmtpSender::new(smtp_config(closed_port())).expect("valid config");

    let started = Instant::now();
    let err: DeliveryError = sender
        .send(&email(
            "user@example.org",
            Some("Code"),
            "Your code is 8888",
        ))
        .await
        .expect_err("nobody listens");

    assert!(err.transient, "{err:?}");
    assert_eq!(err.provider, "smtp");
    assert_eq!(err.reason, "could not reach the SMTP server");
    assert!(err.source.is_some(), "the cause chain is kept");
    assert!(started.elapsed() < Duration::from_secs(4));
}
