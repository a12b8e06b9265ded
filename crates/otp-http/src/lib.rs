//! HTTP plumbing shared by otpd's HTTP adapters (otp-gateway,
//! otp-telegram): how a client is set up, how `Retry-After` is read, and
//! which URLs a config may name.
//!
//! It is plumbing, not an adapter: it depends on no other otp-* crate and
//! knows no provider. Each adapter maps [`ClientError`] into its own error
//! enum at its boundary, keeping it as the `#[source]`.
//!
//! # Layout
//! - [`client`]: the one way to build a `reqwest::Client` (one timeout for
//!   the whole exchange, connecting included; redirects not followed;
//!   `otpd/<version>` user agent), and [`ClientError`].
//! - [`TransportError`]: a request that got no answer, classified once
//!   (connect, timeout, not buildable, broken), its URL dropped.
//! - [`parse_retry_after`] / [`parse_retry_after_at`]: `Retry-After` as
//!   delta-seconds or an HTTP date.
//! - [`is_http_url`] / [`is_https_url`]: an absolute URL of that scheme
//!   with a host, for config checks.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Client;

/// The `User-Agent` of every request otpd sends.
pub const USER_AGENT: &str = concat!("otpd/", env!("CARGO_PKG_VERSION"));

/// The HTTP client could not be built (the TLS backend or the system's
/// resolver failed to initialise). The cause is kept as the source.
#[derive(Debug, thiserror::Error)]
#[error("the HTTP client could not be built")]
pub struct ClientError(#[source] reqwest::Error);

/// What kind of failure a [`TransportError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// No connection could be made (refused, DNS, TLS handshake).
    Connect,
    /// No complete answer within the client's timeout.
    Timeout,
    /// The request could not be built from the settings (a config
    /// problem, not worth retrying).
    Build,
    /// The request failed after connecting (reset, broken body).
    Broken,
}

/// A request that got no answer, classified once for every HTTP adapter.
/// The URL is dropped from the cause: it may hold an API key, a bot token
/// or the message. `Display` is reqwest's own text, so an adapter's variant
/// that names its provider and keeps this as its `#[source]` prints every
/// cause once.
#[derive(Debug)]
pub struct TransportError {
    kind: Transport,
    timeout: Duration,
    source: reqwest::Error,
}

impl TransportError {
    /// Classifies `e`, a failure of a request sent with `timeout`.
    pub fn new(timeout: Duration, e: reqwest::Error) -> Self {
        let source = e.without_url();
        let kind = if source.is_timeout() {
            Transport::Timeout
        } else if source.is_connect() {
            Transport::Connect
        } else if source.is_builder() {
            Transport::Build
        } else {
            Transport::Broken
        };
        TransportError {
            kind,
            timeout,
            source,
        }
    }

    pub fn kind(&self) -> Transport {
        self.kind
    }

    /// Worth retrying: everything but a request that cannot be built.
    pub fn is_transient(&self) -> bool {
        self.kind != Transport::Build
    }

    /// The adapter's message for this failure of `provider`
    /// (`no answer from twilio within 5 s`).
    pub fn message(&self, provider: &str) -> String {
        match self.kind {
            Transport::Connect => format!("could not connect to {provider}"),
            Transport::Timeout => {
                format!(
                    "no answer from {provider} within {} s",
                    self.timeout.as_secs()
                )
            }
            Transport::Build => {
                format!("invalid config: {provider}: the request could not be built")
            }
            Transport::Broken => format!("the request to {provider} failed"),
        }
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.source)
    }
}

/// One client per sender. `timeout` bounds the whole exchange: connecting
/// (a handshake that never completes), sending, and reading the full
/// answer. Redirects are not
/// followed, so credentials and the message never travel to a host the
/// config did not name.
///
/// # Errors
/// [`ClientError`] when reqwest cannot build the client.
pub fn client(timeout: Duration) -> Result<Client, ClientError> {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .build()
        .map_err(ClientError)
}

/// How long a provider asked to wait: `Retry-After` as delta-seconds or as
/// an HTTP date, measured from the wall clock. `None` when the header is
/// missing or unreadable; a date in the past is a wait of zero.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after_at(headers, SystemTime::now())
}

/// [`parse_retry_after`] with the current time given, so a date reads the
/// same in every test.
pub fn parse_retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether `url` is an absolute `http://` or `https://` URL with a host.
pub fn is_http_url(url: &str) -> bool {
    has_scheme_and_host(url, &["http", "https"])
}

/// Whether `url` is an absolute `https://` URL with a host.
pub fn is_https_url(url: &str) -> bool {
    has_scheme_and_host(url, &["https"])
}

fn has_scheme_and_host(url: &str, schemes: &[&str]) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| schemes.contains(&u.scheme()) && u.host().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn retry_after(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(value).expect("header value"),
        );
        h
    }

    /// 2015-10-21 07:28:00 UTC, the date in RFC 9110's example.
    fn example_now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    #[test]
    fn retry_after_reads_delta_seconds() {
        assert_eq!(
            parse_retry_after(&retry_after("30")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(&retry_after(" 5 ")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(parse_retry_after(&retry_after("0")), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(&retry_after("18446744073709551615")),
            Some(Duration::from_secs(u64::MAX)),
            "a huge wait is read as it is; the caller caps it"
        );
    }

    #[test]
    fn retry_after_reads_a_future_http_date_as_the_time_until_it() {
        assert_eq!(
            parse_retry_after_at(&retry_after("Wed, 21 Oct 2015 07:30:00 GMT"), example_now()),
            Some(Duration::from_secs(120))
        );
        // The obsolete RFC 850 and asctime forms, which RFC 9110 says a
        // recipient must accept.
        assert_eq!(
            parse_retry_after_at(
                &retry_after("Wednesday, 21-Oct-15 07:29:00 GMT"),
                example_now()
            ),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after_at(&retry_after("Wed Oct 21 07:28:09 2015"), example_now()),
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn retry_after_reads_a_future_http_date_against_the_wall_clock() {
        let later = SystemTime::now() + Duration::from_secs(120);
        let wait = parse_retry_after(&retry_after(&httpdate::fmt_http_date(later)))
            .expect("a future date");
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
    }

    #[test]
    fn retry_after_reads_a_past_http_date_as_no_wait() {
        assert_eq!(
            parse_retry_after_at(&retry_after("Wed, 21 Oct 2015 07:27:59 GMT"), example_now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(&retry_after("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO),
            "a date in the past means: now"
        );
    }

    #[test]
    fn retry_after_ignores_garbage_and_a_missing_header() {
        for garbage in [
            "soon",
            "",
            "-1",
            "1.5",
            "30s",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "2015-10-21T07:28:00Z",
        ] {
            assert_eq!(
                parse_retry_after(&retry_after(garbage)),
                None,
                "{garbage:?}"
            );
        }
        let mut not_text = HeaderMap::new();
        not_text.insert(
            RETRY_AFTER,
            HeaderValue::from_bytes(b"3\xff").expect("opaque header value"),
        );
        assert_eq!(parse_retry_after(&not_text), None);
        assert_eq!(parse_retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn http_urls_with_a_host_are_accepted() {
        for url in [
            "http://example.com",
            "https://api.telegram.org",
            "https://sms.example.com/api/send?key=abc",
            "http://127.0.0.1:8080/msg",
            "http://[::1]:8080/",
            "HTTPS://API.TWILIO.COM",
            "http://telegram-notify:8080/msg",
        ] {
            assert!(is_http_url(url), "{url}");
        }
    }

    #[test]
    fn other_schemes_relative_urls_and_urls_without_a_host_are_refused() {
        for url in [
            "",
            " ",
            "api.telegram.org",
            "example.com/send",
            "/relative/path",
            "//example.com/no-scheme",
            "http://",
            "https://",
            "http:",
            "ftp://example.com/file",
            "file:///etc/passwd",
            "mailto:ops@example.com",
            "unix:/run/otpd.sock",
            "ws://example.com/socket",
            "data:text/plain,hi",
            "http://exa mple.com",
        ] {
            assert!(!is_http_url(url), "{url:?}");
            assert!(!is_https_url(url), "{url:?}");
        }
    }

    #[test]
    fn the_https_check_refuses_plain_http() {
        assert!(is_https_url("https://otp.example.com/telegram/webhook"));
        assert!(!is_https_url("http://otp.example.com/telegram/webhook"));
    }
}
