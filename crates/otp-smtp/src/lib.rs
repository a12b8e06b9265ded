//! Email delivery for otpd over SMTP, through lettre's async transport
//! with a connection pool.
//!
//! The sender refuses a subject or address that could inject a header
//! (CR, LF or another control character) before anything is sent, and it
//! never puts the subject, the body or a password into an error's reason.
//!
//! # Layout
//! - [`config`]: [`SmtpConfig`] (serde, `deny_unknown_fields`) and its
//!   start-up [`SmtpConfig::validate`], which names the bad key.
//! - [`sender`]: [`SmtpSender`], the `otp_domain::ports::Sender` for
//!   `Destination::Email`, and the optional HTML body from a template.
//! - [`error`]: [`SmtpError`], its transient/permanent split, and the
//!   conversion into the domain's `DeliveryError`.

pub mod config;
pub mod error;
pub mod sender;

pub use config::{SmtpConfig, SmtpTls, DEFAULT_SUBJECT};
pub use error::SmtpError;
pub use sender::SmtpSender;

/// The provider name in every `DeliveryError` of this crate.
pub const PROVIDER: &str = "smtp";
