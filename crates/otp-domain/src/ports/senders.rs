//! [`Sender`]: delivering a message on one channel, and what crosses it.

use std::fmt;

use async_trait::async_trait;

// The Sender port's error lives with the other errors; it is re-exported
// here because it is part of this port's contract.
pub use crate::error::DeliveryError;
use crate::types::{Code, Destination};
use crate::verification::VerificationId;

/// A message ready for a provider. `Debug` hides the body and subject,
/// which carry the code.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub destination: Destination,
    pub subject: Option<String>,
    pub body: String,
    /// The code the body carries. Providers send the body; the dev
    /// outbox shows the code apart, so a developer can copy it.
    pub code: Code,
    /// The locale the body is written in (every send has one; `None`
    /// only in messages built outside the service).
    pub locale: Option<MessageLocale>,
    /// The verification it belongs to, for providers that echo a
    /// reference in their status reports (WhatsApp's
    /// `biz_opaque_callback_data`).
    pub verification: Option<VerificationId>,
}

/// The locale of a message, for providers that speak it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageLocale {
    /// The BCP-47 tag (`de`, `pt-BR`), for templated gateways.
    pub tag: String,
    /// The text-to-speech language of a voice call (`de-DE`); `None` for
    /// `en` (the `[templates]` texts), which a provider speaks in its
    /// configured language.
    pub voice: Option<String>,
}

impl fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMessage")
            .field("destination", &self.destination)
            .field("locale", &self.locale)
            .field("body", &"***")
            .finish()
    }
}

/// A message went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The provider that took it.
    pub provider: String,
    /// Providers that failed before it, with their reasons (no secret).
    pub failures: Vec<(String, String)>,
    /// The provider's id of the message, when it gives one (WhatsApp's
    /// `wamid.…`), to match its later status reports.
    pub message_id: Option<String>,
}

impl Delivered {
    /// Taken by `provider` at the first try.
    pub fn by(provider: impl Into<String>) -> Self {
        Delivered {
            provider: provider.into(),
            failures: Vec::new(),
            message_id: None,
        }
    }

    /// With the provider's message id.
    pub fn message(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }
}

/// Delivers a message on one channel.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Sender: Send + Sync {
    /// # Errors
    /// A `DeliveryError` whose reason holds no code or secret.
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError>;
}
