//! One error enum per operation. Adapters convert their own errors into
//! [`StoreError`] or [`DeliveryError`] at their boundary and keep the
//! cause as `#[source]`. This module depends on no other module of the
//! crate, so the ports can use its errors without a cycle.

/// A value from a request did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid phone: {0}")]
    Phone(&'static str),
    #[error("invalid email: {0}")]
    Email(&'static str),
    #[error("invalid chat_id: {0}")]
    ChatId(&'static str),
    #[error("invalid password: {0}")]
    Code(&'static str),
    #[error("lifetime must be between {min} and {max} seconds")]
    Lifetime { min: u32, max: u32 },
    #[error("invalid locale: {0}")]
    Locale(&'static str),
}

/// The store could not be reached or answered something unreadable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend is down or timed out; the request may succeed later.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend answered, but with data this version cannot read; the
    /// source says what and why (the store's own error, with the parser's
    /// reason below it or in its message). Log it with [`chain`].
    #[error("store data corrupt")]
    Corrupt(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why a send was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error("the message must contain {{password}} when no password is given")]
    MessageWithoutCode,
    #[error("the {field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("the subject must be a single line")]
    MultilineSubject,
    /// The channel's provider sends an approved template whose text it
    /// fixes (the WhatsApp Cloud API), so a request cannot bring its own.
    #[error("{channel} messages are the approved template of the provider; leave out `message`")]
    FixedTemplate { channel: &'static str },
    #[error("sending to this country is not allowed")]
    DestinationNotAllowed,
    /// A well-formed locale that no served locale matches, even after
    /// fallback.
    #[error("locale {0} is not supported (GET /locales lists those that are)")]
    UnsupportedLocale(String),
    /// The number's prefix is blocked by the fraud guard. The message
    /// says nothing about thresholds.
    #[error("sending to this number is refused for now")]
    FraudSuspected,
    #[error("too many sends; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64, limit: Limit },
    #[error("delivery failed")]
    Delivery(#[source] DeliveryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What kind of refusal a [`SendError`] is: the one classification that
/// the HTTP status and error code, the metric outcome and the log level
/// are all read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// The request broke a rule of its fields (400).
    Invalid,
    /// The request asked for a locale otpd does not serve (400).
    UnsupportedLocale,
    /// The destination's country is not allowed on the channel (403).
    CountryRefused,
    /// The fraud guard blocks the number's prefix (403).
    FraudRefused,
    /// A limit refused it (429).
    RateLimited,
    /// Every provider failed (502); the code was discarded.
    DeliveryFailed,
    /// The store failed (503).
    StoreError,
}

impl SendErrorKind {
    /// The `outcome` label of `otpd_sends_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            SendErrorKind::Invalid | SendErrorKind::UnsupportedLocale => "invalid",
            SendErrorKind::CountryRefused => "country_refused",
            SendErrorKind::FraudRefused => "fraud_refused",
            SendErrorKind::RateLimited => "rate_limited",
            SendErrorKind::DeliveryFailed => "delivery_failed",
            SendErrorKind::StoreError => "store_error",
        }
    }
}

impl SendError {
    /// Its kind; see [`SendErrorKind`].
    pub fn kind(&self) -> SendErrorKind {
        match self {
            SendError::Invalid(_)
            | SendError::MessageWithoutCode
            | SendError::TooLong { .. }
            | SendError::MultilineSubject
            | SendError::FixedTemplate { .. } => SendErrorKind::Invalid,
            SendError::UnsupportedLocale(_) => SendErrorKind::UnsupportedLocale,
            SendError::DestinationNotAllowed => SendErrorKind::CountryRefused,
            SendError::FraudSuspected => SendErrorKind::FraudRefused,
            SendError::RateLimited { .. } => SendErrorKind::RateLimited,
            SendError::Delivery(_) => SendErrorKind::DeliveryFailed,
            SendError::Store(_) => SendErrorKind::StoreError,
        }
    }
}

/// Which limit refused a send, for operators (metrics, logs); clients
/// are told only when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The destination's own limits (cooldown and per-window cap; for the
    /// bot, the chat's), counted in one atomic store step, so which of
    /// them was full is not known.
    Destination,
    /// The end user's cap (the app's `X-OTP-User-Key`).
    User,
    /// The channel's hourly budget across all destinations.
    Channel,
}

impl Limit {
    pub const ALL: [Limit; 3] = [Limit::Destination, Limit::User, Limit::Channel];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Destination => "destination",
            Limit::User => "user",
            Limit::Channel => "channel",
        }
    }
}

/// Why a check did not approve.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("wrong password; {attempts_left} attempts left")]
    Mismatch { attempts_left: u32 },
    #[error("no active password for this destination")]
    NotFound,
    #[error("too many failed attempts; request a new password")]
    Locked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the Telegram bot could not hand a pairing code to a chat.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("too many codes requested by this chat; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64, limit: Limit },
    #[error("could not find a free pairing code")]
    Exhausted,
    #[error("delivery failed")]
    Delivery(#[source] DeliveryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a pairing code could not be traded for a chat id.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no active pairing for this password")]
    NotFound,
    #[error("too many failed lookups; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A provider refused or could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("{provider}: {reason}")]
pub struct DeliveryError {
    pub provider: String,
    /// What went wrong, with no secret or code in it.
    pub reason: String,
    /// Worth retrying (timeout, connect error, 5xx, 429).
    pub transient: bool,
    /// How long the provider asked to wait before a retry (`Retry-After`).
    pub retry_after: Option<std::time::Duration>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// An error and its sources, joined with `: ` for one log field, so a
/// log line keeps the whole cause chain.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
