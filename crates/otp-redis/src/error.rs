//! This adapter's errors, converted to [`StoreError`] at the store port
//! and to [`DeliveryError`] at the sender port (the queue).

use std::time::Duration;

use redis::{ErrorKind, ServerErrorKind};

use otp_domain::{DeliveryError, FieldError, StoreError};

/// The provider name of the queue sender in a [`DeliveryError`].
pub(crate) const QUEUE_PROVIDER: &str = "redis-queue";

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    /// A setting is unusable.
    #[error("invalid redis config: {0}")]
    Config(&'static str),
    /// A queue setting failed [`crate::QueueConfig::validate`]. The field
    /// error is the message, not a cause, so a printed chain says it once.
    #[error("invalid redis config: {0}")]
    Setting(FieldError),
    /// A URL in the config does not parse.
    #[error("invalid redis url")]
    Url(#[source] redis::RedisError),
    /// No connection: Redis is down, refused us, or did not complete the
    /// handshake (a wrong password, TLS).
    #[error("no redis connection")]
    Connect(#[source] redis::RedisError),
    /// A command failed on the wire or on the server.
    #[error("redis command failed")]
    Command(#[source] redis::RedisError),
    /// The whole call ran out of time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with something this version cannot read.
    #[error("unreadable redis data: {0}")]
    Corrupt(String),
}

impl RedisStoreError {
    /// Whether Redis itself said the data is not what this crate wrote:
    /// a reply of the wrong shape, a key of the wrong type, or a record a
    /// script found unreadable (its `CORRUPT` error).
    fn is_corrupt_data(e: &redis::RedisError) -> bool {
        matches!(e.kind(), ErrorKind::Parse | ErrorKind::UnexpectedReturnType)
            || matches!(e.code(), Some("CORRUPT" | "WRONGTYPE"))
    }

    /// Whether the same call may succeed later: Redis was unreachable,
    /// slow, restarting, or failing over. A refusal such as WRONGTYPE,
    /// OOM or a bad password is not.
    pub(crate) fn is_transient(&self) -> bool {
        fn passing(e: &redis::RedisError) -> bool {
            e.is_io_error()
                || matches!(
                    e.kind(),
                    ErrorKind::Server(
                        ServerErrorKind::BusyLoading
                            | ServerErrorKind::TryAgain
                            | ServerErrorKind::ClusterDown
                            | ServerErrorKind::MasterDown
                            | ServerErrorKind::ReadOnly
                    )
                )
        }
        match self {
            RedisStoreError::Timeout(_) => true,
            RedisStoreError::Connect(e) | RedisStoreError::Command(e) => passing(e),
            _ => false,
        }
    }
}

/// The queue sender's failures. The reason is this error's own message,
/// plus Redis's error code (`WRONGTYPE`) when there is one: never the
/// job, so never the code.
impl From<RedisStoreError> for DeliveryError {
    fn from(e: RedisStoreError) -> Self {
        let code = match &e {
            RedisStoreError::Connect(inner) | RedisStoreError::Command(inner) => inner.code(),
            _ => None,
        };
        DeliveryError {
            provider: QUEUE_PROVIDER.to_owned(),
            reason: match code {
                Some(code) => format!("{e} ({code})"),
                None => e.to_string(),
            },
            transient: e.is_transient(),
            retry_after: None,
            source: Some(Box::new(e)),
        }
    }
}

impl From<RedisStoreError> for StoreError {
    fn from(e: RedisStoreError) -> Self {
        let corrupt = match &e {
            RedisStoreError::Corrupt(_) => true,
            RedisStoreError::Command(inner) => RedisStoreError::is_corrupt_data(inner),
            // Everything else may pass: a restart, a failover, a slow
            // Redis. Callers answer 503 and the client retries.
            _ => false,
        };
        if corrupt {
            StoreError::Corrupt(Box::new(e))
        } else {
            StoreError::Unavailable(Box::new(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_unavailable_with_its_cause() {
        let e = StoreError::from(RedisStoreError::Timeout(Duration::from_secs(2)));
        let StoreError::Unavailable(source) = e else {
            panic!("expected Unavailable, got {e:?}");
        };
        assert!(source.to_string().contains("2s"), "{source}");
    }

    #[test]
    fn a_reply_of_the_wrong_shape_is_corrupt() {
        let parse = redis::RedisError::from((ErrorKind::UnexpectedReturnType, "bad reply"));
        let e = StoreError::from(RedisStoreError::Command(parse));
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        // The cause stays: Redis's own words are in the chain.
        let chain = otp_domain::error::chain(&e);
        assert!(chain.contains("bad reply"), "{chain}");
    }

    #[test]
    fn outages_are_transient_deliveries_and_refusals_are_not() {
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = DeliveryError::from(RedisStoreError::Connect(refused));
        assert!(e.transient, "{e:?}");
        assert_eq!(e.provider, "redis-queue");
        let e = DeliveryError::from(RedisStoreError::Timeout(Duration::from_secs(2)));
        assert!(e.transient, "{e:?}");
        let loading =
            redis::RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading"));
        assert!(DeliveryError::from(RedisStoreError::Command(loading)).transient);
        let e = DeliveryError::from(RedisStoreError::Config("bad"));
        assert!(!e.transient, "{e:?}");
    }

    #[test]
    fn a_refused_connection_is_unavailable() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = RedisStoreError::Command(redis::RedisError::from(io));
        assert!(matches!(StoreError::from(e), StoreError::Unavailable(_)));
    }
}
