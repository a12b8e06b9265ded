//! Telegram delivery for otpd: the Bot API's `sendMessage`, the
//! 1flx/http-telegram-notify relay the seed image used, and `setWebhook`
//! for the bot flow.
//!
//! The bot token sits in every Bot API URL, so no error here carries a
//! URL, and `Debug` never shows the token.
//!
//! # Layout
//! - [`bot`]: [`TelegramConfig`], [`TelegramSender`] (`sendMessage` to
//!   `Destination::Telegram`) and [`set_webhook`].
//! - [`notify`]: [`HttpNotifyConfig`] and [`HttpNotifySender`], for an
//!   http-telegram-notify service that holds the bot token itself.
//! - [`error`]: [`TelegramError`], the transient/permanent split and the
//!   `DeliveryError` conversion, which carries Telegram's requested wait
//!   as `DeliveryError::retry_after`. It imports no other module (the
//!   Bot API's provider name lives here), so `bot` and `notify` can use it
//!   without a cycle.
//!
//! Settings checks (`validate`) report an `otp_domain::FieldError` naming
//! the field within its section; the server adds the section.
//! - `http` (private): transport error mapping. The client settings,
//!   `Retry-After` and the URL checks come from `otp_http`.

pub mod bot;
pub mod error;
mod http;
pub mod notify;

pub use bot::{set_webhook, TelegramConfig, TelegramSender};
pub use error::TelegramError;
pub use notify::{HttpNotifyConfig, HttpNotifySender};

/// Seconds a request may take when the config says nothing.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
