//! The SMTP `Sender`.

use otp_domain::ports::Delivered;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use otp_domain::{DeliveryError, Destination, OutgoingMessage, Sender};

use crate::config::{has_control, SmtpConfig, SmtpTls, DEFAULT_SUBJECT};
use crate::error::SmtpError;

/// Sends each message as one email through a pooled SMTP connection.
/// Cheap to share: hold it as `Arc<dyn Sender>`.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    html_template: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSender")
            .field("from", &self.from.email)
            .field("html", &self.html_template.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// Validates `config` and sets up the pool. No connection is made
    /// until the first send (see [`SmtpSender::test_connection`]).
    ///
    /// # Errors
    /// [`SmtpError::Setting`] naming the bad field.
    ///
    /// # Panics
    /// Outside a Tokio runtime: lettre's pool spawns its idle-connection
    /// reaper here, so call it from async start-up code.
    pub fn new(config: SmtpConfig) -> Result<Self, SmtpError> {
        config.validate().map_err(SmtpError::Setting)?;
        let from_address: Address = config.from.trim().parse().map_err(SmtpError::From)?;
        let from = Mailbox::new(config.display_name().map(str::to_owned), from_address);
        let timeout = Duration::from_secs(config.timeout_secs);

        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters(&config.host)?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters(&config.host)?),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.trim())
                .port(config.effective_port())
                .tls(tls)
                .timeout(Some(timeout))
                .pool_config(PoolConfig::new().max_size(config.pool_max_size));
        if let (Some(user), Some(password)) = (config.username(), config.password()) {
            builder = builder.credentials(Credentials::new(user.to_owned(), password.to_owned()));
        }
        Ok(SmtpSender {
            transport: builder.build(),
            from,
            html_template: config.html_template().map(str::to_owned),
            timeout,
        })
    }

    /// Opens a connection and says EHLO, for a readiness check.
    ///
    /// # Errors
    /// The [`SmtpError`] of the failed exchange.
    pub async fn test_connection(&self) -> Result<(), SmtpError> {
        match tokio::time::timeout(self.timeout, self.transport.test_connection()).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(SmtpError::Config(
                "the SMTP server did not answer NOOP".to_owned(),
            )),
            Ok(Err(e)) => Err(SmtpError::Transport(e)),
            Err(_) => Err(SmtpError::Timeout(self.timeout)),
        }
    }

    /// Sends one message, with this crate's own error type.
    ///
    /// # Errors
    /// - [`SmtpError::HeaderInjection`] when the subject or address holds a
    ///   line break; nothing is sent.
    /// - [`SmtpError::WrongChannel`] for a destination that is not email.
    /// - [`SmtpError::Transport`] / [`SmtpError::Timeout`] from the exchange.
    pub async fn deliver(&self, message: &OutgoingMessage) -> Result<(), SmtpError> {
        let email = self.build(message)?;
        match tokio::time::timeout(self.timeout, self.transport.send(email)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SmtpError::Transport(e)),
            Err(_) => Err(SmtpError::Timeout(self.timeout)),
        }
    }

    fn build(&self, message: &OutgoingMessage) -> Result<Message, SmtpError> {
        let Destination::Email(to) = &message.destination else {
            return Err(SmtpError::WrongChannel(message.destination.channel()));
        };
        let subject = message.subject.as_deref().unwrap_or(DEFAULT_SUBJECT);
        if has_control(subject) {
            return Err(SmtpError::HeaderInjection("subject"));
        }
        if has_control(to.as_str()) {
            return Err(SmtpError::HeaderInjection("recipient address"));
        }
        let to: Address = to.as_str().parse().map_err(SmtpError::Address)?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(subject)
            .message_id(None);
        let built = match &self.html_template {
            None => builder.singlepart(SinglePart::plain(message.body.clone())),
            Some(template) => builder.multipart(MultiPart::alternative_plain_html(
                message.body.clone(),
                render_html(template, &message.body),
            )),
        };
        built.map_err(SmtpError::Build)
    }
}

#[async_trait]
impl Sender for SmtpSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let sent: Result<(), DeliveryError> =
            async { self.deliver(message).await.map_err(DeliveryError::from) }.await;
        sent.map(|()| Delivered::by("smtp"))
    }
}

fn tls_parameters(host: &str) -> Result<TlsParameters, SmtpError> {
    TlsParameters::new(host.trim().to_owned()).map_err(SmtpError::TlsSetup)
}

/// The template with every `{body}` replaced by the HTML-escaped body.
/// Line breaks stay line breaks: style the element with
/// `white-space: pre-line` to show them.
pub(crate) fn render_html(template: &str, body: &str) -> String {
    template.replace("{body}", &escape_html(body))
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use otp_domain::{Email, Phone};

    fn sender(html: Option<&str>) -> SmtpSender {
        let mut c = SmtpConfig::new("127.0.0.1", "otp@example.com");
        c.tls = SmtpTls::None;
        c.html_template = html.map(str::to_owned);
        SmtpSender::new(c).expect("valid config")
    }

    fn email_to(addr: &str, subject: Option<&str>) -> OutgoingMessage {
        OutgoingMessage {
            verification: None,
            destination: Destination::Email(Email::parse(addr).expect("valid email")),
            subject: subject.map(str::to_owned),
            body: "Your code is 123456".to_owned(),
            code: otp_domain::Code::parse("1234").expect("code"),
            locale: None,
        }
    }

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(
            render_html("<p>{body}</p>", r#"<b>1&2</b> "x" 'y'"#),
            "<p>&lt;b&gt;1&amp;2&lt;/b&gt; &quot;x&quot; &#39;y&#39;</p>"
        );
    }

    #[tokio::test]
    async fn header_breaking_subjects_are_refused_before_sending() {
        let s = sender(None);
        for subject in ["a\r\nBcc: x@y.z", "a\nb", "a\rb", "a\u{0}b"] {
            let err = s
                .build(&email_to("user@example.com", Some(subject)))
                .expect_err("subject must be refused");
            assert!(
                matches!(err, SmtpError::HeaderInjection("subject")),
                "{err:?}"
            );
            assert!(!err.is_transient());
        }
    }

    #[tokio::test]
    async fn non_email_destinations_are_refused() {
        let s = sender(None);
        let msg = OutgoingMessage {
            verification: None,
            destination: Destination::Sms(Phone::parse("+77011234567").expect("valid")),
            subject: None,
            body: "x".to_owned(),
            code: otp_domain::Code::parse("1234").expect("code"),
            locale: None,
        };
        let err: DeliveryError = s.build(&msg).expect_err("wrong channel").into();
        assert_eq!(err.provider, "smtp");
        assert!(!err.transient);
        assert_eq!(err.reason, "the SMTP sender cannot deliver to sms");
    }

    #[test]
    fn a_bad_config_is_refused_by_new() {
        let err =
            SmtpSender::new(SmtpConfig::new("", "otp@example.com")).expect_err("host is required");
        assert_eq!(err.to_string(), "invalid SMTP config: host is required");
    }
}
