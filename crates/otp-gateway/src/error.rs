//! What can go wrong delivering over HTTP, and how it maps to the domain.

use std::time::Duration;

use otp_domain::{Channel, DeliveryError, FieldError};

/// An HTTP delivery failure. `provider` is the name in the error (the
/// generic gateway's `name`, or `twilio`). No variant holds a URL, a
/// header, the message or the provider's reply text.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A setting failed its check. The field error is the message, not a
    /// cause, so a printed chain says it once.
    #[error("invalid config: {0}")]
    Setting(FieldError),
    /// The config could not be turned into a request.
    #[error("invalid config: {0}")]
    Config(String),
    /// The sender was handed a message for a channel it does not serve.
    #[error("the {provider} sender cannot deliver to {channel}")]
    WrongChannel { provider: String, channel: Channel },
    /// The HTTP client could not be built (TLS backend, resolver).
    #[error("the HTTP client for {provider} could not be set up")]
    Client {
        provider: String,
        #[source]
        source: otp_http::ClientError,
    },
    /// A voice call needs a caller id (WhatsApp also a template), and the
    /// config has none.
    #[error("{provider} needs {key}")]
    NotConfigured { provider: String, key: &'static str },
    /// No answer: no connection, no reply within the timeout, a broken
    /// exchange, or a request that could not be built from the settings.
    #[error("{}", .source.message(provider))]
    Transport {
        provider: String,
        #[source]
        source: otp_http::TransportError,
    },
    /// A non-2xx answer. `provider_code` is the provider's numeric error
    /// code when it documents one (Twilio's `code`).
    #[error("HTTP {status} from {provider}{}{}",
        provider_code.map(|c| format!(" (error {c})")).unwrap_or_default(),
        retry_after.map(|d| format!(", retry after {} s", d.as_secs())).unwrap_or_default())]
    Status {
        provider: String,
        status: u16,
        provider_code: Option<i64>,
        retry_after: Option<Duration>,
    },
    /// The WhatsApp Cloud API refused, with its error code.
    #[error("HTTP {status} from meta (error {code}: {})", kind.reason())]
    Meta {
        status: u16,
        code: i64,
        kind: MetaError,
        retry_after: Option<Duration>,
    },
    /// A 2xx answer whose JSON did not show success (`success_pointer`).
    #[error("{provider} answered HTTP {status} but {pointer} did not show success")]
    Unsuccessful {
        provider: String,
        status: u16,
        pointer: String,
    },
}

impl GatewayError {
    /// Worth retrying: connect errors, timeouts, broken requests, HTTP 5xx,
    /// 429 and 408. Other 4xx, a failed success check and config problems
    /// are not.
    pub fn is_transient(&self) -> bool {
        match self {
            GatewayError::Transport { source, .. } => source.is_transient(),
            GatewayError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            GatewayError::Meta { status, kind, .. } => {
                *status >= 500 || *status == 429 || *status == 408 || *kind == MetaError::Throttled
            }
            GatewayError::Setting(_)
            | GatewayError::Config(_)
            | GatewayError::Client { .. }
            | GatewayError::WrongChannel { .. }
            | GatewayError::NotConfigured { .. }
            | GatewayError::Unsuccessful { .. } => false,
        }
    }

    /// How long the provider asked to wait (`Retry-After` on a 429 or 5xx).
    /// The conversion into `DeliveryError` carries it as `retry_after`, where
    /// the server's retry/fallback logic reads it.
    ///
    /// ```
    /// # use otp_gateway::GatewayError;
    /// # use std::time::Duration;
    /// let err: otp_domain::DeliveryError = GatewayError::Status {
    ///     provider: "twilio".into(),
    ///     status: 429,
    ///     provider_code: None,
    ///     retry_after: Some(Duration::from_secs(3)),
    /// }
    /// .into();
    /// assert_eq!(err.retry_after, Some(Duration::from_secs(3)));
    /// assert_eq!(err.reason, "HTTP 429 from twilio, retry after 3 s");
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::Status { retry_after, .. } | GatewayError::Meta { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    fn provider(&self) -> &str {
        match self {
            GatewayError::Setting(_) | GatewayError::Config(_) => "gateway",
            GatewayError::Meta { .. } => META,
            GatewayError::WrongChannel { provider, .. }
            | GatewayError::Client { provider, .. }
            | GatewayError::NotConfigured { provider, .. }
            | GatewayError::Transport { provider, .. }
            | GatewayError::Status { provider, .. }
            | GatewayError::Unsuccessful { provider, .. } => provider,
        }
    }
}

impl From<GatewayError> for DeliveryError {
    fn from(e: GatewayError) -> Self {
        DeliveryError {
            provider: e.provider().to_owned(),
            reason: e.to_string(),
            transient: e.is_transient(),
            retry_after: e.retry_after(),
            source: Some(Box::new(e)),
        }
    }
}

/// Wraps a failure to build the client for `provider`.
pub(crate) fn client_error(provider: &str) -> impl FnOnce(otp_http::ClientError) -> GatewayError {
    let provider = provider.to_owned();
    move |source| GatewayError::Client { provider, source }
}

/// Classifies a reqwest failure (the URL dropped: it may hold an API key
/// or the message).
pub(crate) fn from_reqwest(provider: &str, timeout: Duration, e: reqwest::Error) -> GatewayError {
    GatewayError::Transport {
        provider: provider.to_owned(),
        source: otp_http::TransportError::new(timeout, e),
    }
}

/// The WhatsApp Cloud API's provider name (see `meta`).
pub const META: &str = "meta";

/// What a Graph API error code means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaError {
    /// 131026: the number is not on WhatsApp, or cannot receive the
    /// message (an old app, terms not accepted).
    Undeliverable,
    /// 130429 (the number's throughput) and 131056 (too many messages to
    /// one user): retried with backoff, like any 429.
    Throttled,
    /// 100 (a bad parameter) and 131008 (a required parameter missing):
    /// the template or its language does not fit the config.
    Config,
    /// 190: the access token expired or was revoked.
    ExpiredToken,
    /// Any other code.
    Other,
}

impl MetaError {
    pub fn of(code: i64) -> Self {
        match code {
            131_026 => MetaError::Undeliverable,
            130_429 | 131_056 => MetaError::Throttled,
            100 | 131_008 => MetaError::Config,
            190 => MetaError::ExpiredToken,
            _ => MetaError::Other,
        }
    }

    /// The reason, for the delivery record and logs.
    pub fn reason(self) -> &'static str {
        match self {
            MetaError::Undeliverable => "the number is not on WhatsApp or cannot receive it",
            MetaError::Throttled => "WhatsApp throughput limit",
            MetaError::Config => "the template or its parameters do not match the config",
            MetaError::ExpiredToken => "the access token expired or was revoked",
            MetaError::Other => "refused",
        }
    }
}
