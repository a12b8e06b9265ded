//! The settings of a [`RedisStore`](crate::RedisStore).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// How to reach Redis and how long to wait for it.
///
/// A call gives up after `max(wait_timeout_ms, connect_timeout_ms) +
/// command_timeout_ms` in all (2 s with the defaults), so a Redis outage
/// turns into a quick `StoreError::Unavailable`, never a hung request.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// The standalone server, `redis://[user:password@]host:port[/db]`.
    /// Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// Seed nodes of a Redis Cluster, in the same URL form; used by
    /// [`RedisStore::cluster`](crate::RedisStore::cluster) only.
    /// Default empty.
    pub nodes: Vec<String>,
    /// Connections to Redis per otpd process (for a cluster: connections
    /// to every node), used in turn. Each carries any number of
    /// concurrent calls, pipelined: one is usually best (fewer, fuller
    /// batches cost otpd and Redis less CPU per call). Default 1.
    pub pool_size: usize,
    /// Longest wait for a new TCP connection. Default 1000.
    pub connect_timeout_ms: u64,
    /// Longest wait for a reply to one command. Default 1000.
    pub command_timeout_ms: u64,
    /// Longest wait for a connection when none is open: while this call
    /// or a concurrent one opens it (each attempt is bounded by
    /// `connect_timeout_ms`). Default 1000.
    pub wait_timeout_ms: u64,
    /// Starts every key, so several deployments can share one Redis.
    /// No `{` or `}` (they would break the cluster hash tags). Default
    /// `otpd`.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".to_owned(),
            nodes: Vec::new(),
            pool_size: 1,
            connect_timeout_ms: 1000,
            command_timeout_ms: 1000,
            wait_timeout_ms: 1000,
            key_prefix: "otpd".to_owned(),
        }
    }
}

impl RedisConfig {
    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    pub(crate) fn wait_timeout(&self) -> Duration {
        Duration::from_millis(self.wait_timeout_ms)
    }

    /// The longest a call waits for an open connection.
    pub(crate) fn connection_wait(&self) -> Duration {
        self.wait_timeout().max(self.connect_timeout())
    }

    /// The budget of one whole call: get an open connection (opening one,
    /// or waiting for one being opened), then run one command.
    pub(crate) fn call_deadline(&self) -> Duration {
        self.connection_wait() + self.command_timeout()
    }
}

// URLs may carry a password, and config is logged at start.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|n| redact_url(n)).collect();
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("nodes", &nodes)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("wait_timeout_ms", &self.wait_timeout_ms)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// `scheme://user:secret@host` → `scheme://***@host`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_passwords_in_urls() {
        let config = RedisConfig {
            url: "redis://app:s3cret@db:6379/2".to_owned(),
            nodes: vec!["redis://:hunter2@n1:7000".to_owned()],
            ..RedisConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://***@db:6379/2"), "{shown}");
        assert!(shown.contains("redis://***@n1:7000"), "{shown}");
    }

    #[test]
    fn urls_without_credentials_show_unchanged() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("redis://h/0?x=a@b"), "redis://h/0?x=a@b");
    }

    #[test]
    fn defaults_give_a_two_second_budget_per_call() {
        let config = RedisConfig::default();
        assert_eq!(config.call_deadline(), Duration::from_secs(2));
        assert_eq!(config.key_prefix, "otpd");
        assert_eq!(config.pool_size, 1);
    }
}
