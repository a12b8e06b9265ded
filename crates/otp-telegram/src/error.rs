//! What can go wrong delivering to Telegram, and how it maps to the domain.

use std::time::Duration;

use otp_domain::{Channel, DeliveryError, FieldError};

/// The Bot API's provider name in errors. It lives here, not in `bot`, so
/// this module needs no other module of the crate.
pub const BOT_PROVIDER: &str = "telegram";

/// A Telegram delivery failure. `provider` is `telegram` (Bot API) or
/// `telegram-notify`. No variant holds a URL (the token is in it) or the
/// message.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// A setting failed its check. The field error is the message, not a
    /// cause, so a printed chain says it once.
    #[error("invalid config: {0}")]
    Setting(FieldError),
    /// An argument or the config could not be put to use.
    #[error("invalid config: {0}")]
    Config(String),
    /// The HTTP client could not be built (TLS backend, resolver).
    #[error("the HTTP client for {provider} could not be set up")]
    Client {
        provider: &'static str,
        #[source]
        source: otp_http::ClientError,
    },
    /// The sender was handed a message for another channel.
    #[error("the {provider} sender cannot deliver to {channel}")]
    WrongChannel {
        provider: &'static str,
        channel: Channel,
    },
    /// No answer: no connection, no reply within the timeout, a broken
    /// exchange, or a request that could not be built from the settings.
    #[error("{}", .source.message(provider))]
    Transport {
        provider: &'static str,
        #[source]
        source: otp_http::TransportError,
    },
    /// The Bot API answered `"ok": false` or a non-2xx status.
    /// `description` is Telegram's fixed explanation ("Forbidden: bot was
    /// blocked by the user"); it is shown in this error's `Display`, for
    /// logs, but kept out of the `DeliveryError` reason.
    #[error("Telegram Bot API error {code}{}{}",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default(),
        retry_after.map(|d| format!(", retry after {} s", d.as_secs())).unwrap_or_default())]
    Api {
        status: u16,
        /// `error_code` from the answer, else the HTTP status.
        code: i64,
        description: Option<String>,
        retry_after: Option<Duration>,
    },
    /// A 2xx answer that is not the Bot API's JSON.
    #[error("{provider} answered HTTP {status} with an unreadable body")]
    BadResponse { provider: &'static str, status: u16 },
    /// A non-2xx answer from an http-telegram-notify service.
    #[error("HTTP {status} from {provider}{}",
        retry_after.map(|d| format!(", retry after {} s", d.as_secs())).unwrap_or_default())]
    Status {
        provider: &'static str,
        status: u16,
        retry_after: Option<Duration>,
    },
}

impl TelegramError {
    /// Worth retrying: connect errors, timeouts, broken requests, 5xx and
    /// 429 (Telegram's flood control). Other API errors (chat not found,
    /// bot blocked) and config problems are not.
    pub fn is_transient(&self) -> bool {
        match self {
            TelegramError::Transport { source, .. } => source.is_transient(),
            TelegramError::Api { status, code, .. } => {
                *code == 429 || *status == 429 || *status >= 500 || (500..600).contains(code)
            }
            TelegramError::Status { status, .. } => *status >= 500 || *status == 429,
            TelegramError::Setting(_)
            | TelegramError::Config(_)
            | TelegramError::Client { .. }
            | TelegramError::WrongChannel { .. }
            | TelegramError::BadResponse { .. } => false,
        }
    }

    /// The wait Telegram asked for (`parameters.retry_after`, or a
    /// `Retry-After` header). The conversion into `DeliveryError` carries
    /// it as `retry_after`, where the server's retry/fallback logic reads
    /// it.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TelegramError::Api { retry_after, .. } | TelegramError::Status { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The `DeliveryError` reason: the `Display` text without Telegram's
    /// description.
    pub fn reason(&self) -> String {
        match self {
            TelegramError::Api {
                code, retry_after, ..
            } => format!(
                "Telegram Bot API error {code}{}",
                retry_after
                    .map(|d| format!(", retry after {} s", d.as_secs()))
                    .unwrap_or_default()
            ),
            other => other.to_string(),
        }
    }

    fn provider(&self) -> &'static str {
        match self {
            TelegramError::Setting(_) | TelegramError::Config(_) | TelegramError::Api { .. } => {
                BOT_PROVIDER
            }
            TelegramError::WrongChannel { provider, .. }
            | TelegramError::Client { provider, .. }
            | TelegramError::Transport { provider, .. }
            | TelegramError::BadResponse { provider, .. }
            | TelegramError::Status { provider, .. } => provider,
        }
    }
}

impl From<TelegramError> for DeliveryError {
    fn from(e: TelegramError) -> Self {
        DeliveryError {
            provider: e.provider().to_owned(),
            reason: e.reason(),
            transient: e.is_transient(),
            retry_after: e.retry_after(),
            source: Some(Box::new(e)),
        }
    }
}
