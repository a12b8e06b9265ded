//! This adapter's errors, converted to [`StoreError`] at the port.

use std::time::Duration;

use deadpool_redis::redis::{self, ErrorKind};
use otp_domain::StoreError;

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    /// A setting is unusable.
    #[error("invalid redis config: {0}")]
    Config(&'static str),
    /// A URL in the config does not parse.
    #[error("invalid redis url")]
    Url(#[source] redis::RedisError),
    /// The pool could not be built from the config.
    #[error("cannot build the redis pool")]
    Build(#[source] deadpool_redis::BuildError),
    /// No connection: Redis is down, refused us, or every connection was
    /// busy for too long.
    #[error("no redis connection")]
    Pool(#[source] deadpool_redis::PoolError),
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
}

impl From<RedisStoreError> for StoreError {
    fn from(e: RedisStoreError) -> Self {
        match e {
            RedisStoreError::Corrupt(what) => StoreError::Corrupt(what),
            RedisStoreError::Command(ref inner) if RedisStoreError::is_corrupt_data(inner) => {
                StoreError::Corrupt(inner.to_string())
            }
            // Everything else may pass: a restart, a failover, a full
            // pool. Callers answer 503 and the client retries.
            other => StoreError::Unavailable(Box::new(other)),
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
        assert!(matches!(
            StoreError::from(RedisStoreError::Command(parse)),
            StoreError::Corrupt(_)
        ));
    }

    #[test]
    fn a_refused_connection_is_unavailable() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = RedisStoreError::Command(redis::RedisError::from(io));
        assert!(matches!(StoreError::from(e), StoreError::Unavailable(_)));
    }
}
