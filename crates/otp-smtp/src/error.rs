//! What can go wrong sending email, and how it maps to the domain.

use std::time::Duration;

use otp_domain::{Channel, DeliveryError, FieldError};

use crate::PROVIDER;

/// An SMTP delivery failure. Its `Display` never holds the subject, the
/// body or a password; the server's own reply text stays in the source.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// A setting failed [`crate::SmtpConfig::validate`]. The field error
    /// is the message, not a cause, so a printed chain says it once.
    #[error("invalid SMTP config: {0}")]
    Setting(FieldError),
    /// The config could not be put to use.
    #[error("invalid SMTP config: {0}")]
    Config(String),
    /// `smtp.from` is not an address lettre accepts.
    #[error("invalid SMTP config: smtp.from must be an email address")]
    From(#[source] lettre::address::AddressError),
    /// TLS could not be set up for `smtp.host` (the name is not one a
    /// certificate can be checked against, or the TLS backend failed).
    #[error("invalid SMTP config: smtp.host: cannot set up TLS for this host")]
    TlsSetup(#[source] lettre::transport::smtp::Error),
    /// The sender was handed a message for another channel.
    #[error("the SMTP sender cannot deliver to {0}")]
    WrongChannel(Channel),
    /// A header value held CR, LF or another control character; nothing
    /// was sent.
    #[error("the {0} contains a line break or control character")]
    HeaderInjection(&'static str),
    /// The recipient is not an address lettre accepts.
    #[error("the recipient address is invalid")]
    Address(#[source] lettre::address::AddressError),
    /// lettre could not build the message.
    #[error("could not build the email")]
    Build(#[source] lettre::error::Error),
    /// The SMTP exchange failed.
    #[error("{}", describe(.0))]
    Transport(#[source] lettre::transport::smtp::Error),
    /// The whole send took longer than `timeout_secs`.
    #[error("no answer from the SMTP server within {} s", .0.as_secs())]
    Timeout(Duration),
}

impl SmtpError {
    /// Worth retrying: connection failures, timeouts and 4xx replies.
    /// 5xx replies (a refused recipient, failed login), TLS failures and
    /// anything about the message itself are not.
    pub fn is_transient(&self) -> bool {
        match self {
            SmtpError::Timeout(_) => true,
            SmtpError::Transport(e) => {
                e.is_transient()
                    || e.is_timeout()
                    || !(e.is_permanent()
                        || e.is_client()
                        || e.is_tls()
                        || e.is_transport_shutdown())
            }
            SmtpError::Setting(_)
            | SmtpError::Config(_)
            | SmtpError::From(_)
            | SmtpError::TlsSetup(_)
            | SmtpError::WrongChannel(_)
            | SmtpError::HeaderInjection(_)
            | SmtpError::Address(_)
            | SmtpError::Build(_) => false,
        }
    }
}

fn describe(e: &lettre::transport::smtp::Error) -> String {
    if let Some(code) = e.status() {
        if e.is_permanent() {
            format!("the SMTP server refused the message ({code})")
        } else {
            format!("the SMTP server deferred the message ({code})")
        }
    } else if e.is_timeout() {
        "the SMTP connection timed out".to_owned()
    } else if e.is_tls() {
        "TLS with the SMTP server failed".to_owned()
    } else if e.is_response() {
        "the SMTP server sent an unreadable reply".to_owned()
    } else if e.is_client() {
        "the SMTP client failed".to_owned()
    } else if e.is_transport_shutdown() {
        "the SMTP transport is shut down".to_owned()
    } else {
        "could not reach the SMTP server".to_owned()
    }
}

impl From<SmtpError> for DeliveryError {
    fn from(e: SmtpError) -> Self {
        DeliveryError {
            provider: PROVIDER.to_owned(),
            reason: e.to_string(),
            transient: e.is_transient(),
            retry_after: None,
            source: Some(Box::new(e)),
        }
    }
}
