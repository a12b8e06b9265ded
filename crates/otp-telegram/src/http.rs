//! Transport error mapping shared by the senders; the client settings,
//! `Retry-After` and the URL check come from `otp_http`.

use std::time::Duration;

use crate::error::TelegramError;

/// Wraps a failure to build the client for `provider`.
pub(crate) fn client_error(
    provider: &'static str,
) -> impl FnOnce(otp_http::ClientError) -> TelegramError {
    move |source| TelegramError::Client { provider, source }
}

/// Classifies a reqwest failure, dropping the URL: a Bot API URL holds
/// the token.
pub(crate) fn transport_error(
    provider: &'static str,
    timeout: Duration,
    e: reqwest::Error,
) -> TelegramError {
    TelegramError::Transport {
        provider,
        source: otp_http::TransportError::new(timeout, e),
    }
}
