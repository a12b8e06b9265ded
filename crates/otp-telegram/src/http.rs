//! Client settings and transport error mapping shared by the senders.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Client;

use crate::error::TelegramError;

/// One client per sender: the timeout covers connecting, sending and
/// reading the whole answer. Redirects are not followed.
pub(crate) fn client(timeout: Duration) -> Result<Client, TelegramError> {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("otpd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|_| TelegramError::Config("the HTTP client could not be set up".to_owned()))
}

/// Classifies a reqwest failure, dropping the URL: a Bot API URL holds
/// the token.
pub(crate) fn transport_error(
    provider: &'static str,
    timeout: Duration,
    e: reqwest::Error,
) -> TelegramError {
    let source = e.without_url();
    if source.is_timeout() {
        TelegramError::Timeout {
            provider,
            timeout,
            source,
        }
    } else if source.is_connect() {
        TelegramError::Connect { provider, source }
    } else if source.is_builder() {
        TelegramError::Config(format!("{provider}: the request could not be built"))
    } else {
        TelegramError::Request { provider, source }
    }
}

/// `Retry-After` as delta-seconds or as an HTTP date.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Whether `url` is an absolute http(s) URL with a host.
pub(crate) fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}
