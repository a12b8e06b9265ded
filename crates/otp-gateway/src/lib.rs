//! SMS, voice and WhatsApp delivery for otpd over HTTP: a generic gateway
//! driven by templates in config, Twilio (Messages for SMS and WhatsApp,
//! Calls with inline TwiML for voice) and the WhatsApp Cloud API.
//!
//! Errors keep the provider's reply out of their reason: a failure reads
//! "HTTP 503 from gateway", never the response body, the URL (which may
//! carry an API key or the message) or a header.
//!
//! # Layout
//! - [`generic`]: [`HttpGatewayConfig`] and [`HttpGatewaySender`], any
//!   HTTP SMS/voice API described by a method, a URL, headers and a body
//!   template with `{phone}` and `{message}`.
//! - [`twilio`]: [`TwilioConfig`] and [`TwilioSender`]; SMS through
//!   `Messages.json`, voice through `Calls.json` with [`twilio::twiml`].
//! - [`meta`]: [`MetaConfig`] and [`MetaSender`], WhatsApp codes as an
//!   approved authentication template through the Cloud API.
//! - [`meta_webhook`]: Meta's status webhook: the `X-Hub-Signature-256`
//!   check, the subscription handshake's token, and the status reports
//!   read as the domain's `ReportUpdate`s.
//! - [`template`]: placeholder filling, with each value escaped for where
//!   it lands (JSON string, form field, URL).
//! - [`error`]: [`GatewayError`], the transient/permanent split and the
//!   `DeliveryError` conversion, which carries a provider's `Retry-After`
//!   as `DeliveryError::retry_after`.
//! - `http` (private): status handling shared by the senders. The client
//!   settings, `Retry-After` and the URL check come from `otp_http`.

pub mod error;
pub mod generic;
mod http;
pub mod meta;
pub mod meta_webhook;
pub mod template;
pub mod twilio;

pub use error::GatewayError;
pub use generic::{BodyEncoding, HttpGatewayConfig, HttpGatewaySender, HttpMethod};
pub use meta::{MetaConfig, MetaSender};
pub use twilio::{TwilioConfig, TwilioSender};

/// Seconds a request may take when the config says nothing.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
