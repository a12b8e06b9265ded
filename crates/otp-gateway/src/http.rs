//! Client settings and status handling shared by the senders.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, Response};

use crate::error::{from_reqwest, GatewayError};

/// One client per sender: the timeout covers connecting, sending and
/// reading the whole answer. Redirects are not followed, so credentials
/// and the message never travel to a host the config did not name.
pub(crate) fn client(timeout: Duration) -> Result<Client, GatewayError> {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("otpd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|_| GatewayError::Config("the HTTP client could not be set up".to_owned()))
}

/// Reads a provider's documented numeric error code from an error body.
pub(crate) type CodeExtractor = fn(&[u8]) -> Option<i64>;

/// Sends `request` and turns a failed exchange or a non-2xx status into
/// an error. `provider_code` extracts a documented numeric error code from
/// an error body, when the provider has one.
pub(crate) async fn send(
    provider: &str,
    timeout: Duration,
    request: reqwest::RequestBuilder,
    provider_code: Option<CodeExtractor>,
) -> Result<Response, GatewayError> {
    let response = request
        .send()
        .await
        .map_err(|e| from_reqwest(provider, timeout, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = if status.as_u16() == 429 || status.is_server_error() {
        parse_retry_after(response.headers())
    } else {
        None
    };
    let code = match provider_code {
        Some(extract) => response.bytes().await.ok().and_then(|b| extract(&b)),
        None => None,
    };
    Err(GatewayError::Status {
        provider: provider.to_owned(),
        status: status.as_u16(),
        provider_code: code,
        retry_after,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).expect("header value"));
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(
            parse_retry_after(&headers("30")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(&headers(" 5 ")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO),
            "a date in the past means: now"
        );
        let later = SystemTime::now() + Duration::from_secs(120);
        let d =
            parse_retry_after(&headers(&httpdate::fmt_http_date(later))).expect("a future date");
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(parse_retry_after(&headers("soon")), None);
        assert_eq!(parse_retry_after(&HeaderMap::new()), None);
    }
}
