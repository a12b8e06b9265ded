//! What the suites share: a store config for a test Redis. The harness
//! in otp-testkit hands out URLs only, so it does not depend on this crate.

use otp_redis::RedisConfig;
use otp_testkit::redis::{RedisCluster, RedisServer};

/// A store config for a test Redis, with a key prefix the test picks.
pub trait StoreConfig {
    fn config(&self, key_prefix: &str) -> RedisConfig;
}

impl StoreConfig for RedisServer {
    fn config(&self, key_prefix: &str) -> RedisConfig {
        RedisConfig {
            url: self.url(),
            ..with_prefix(key_prefix)
        }
    }
}

impl StoreConfig for RedisCluster {
    fn config(&self, key_prefix: &str) -> RedisConfig {
        RedisConfig {
            nodes: self.node_urls(),
            ..with_prefix(key_prefix)
        }
    }
}

fn with_prefix(key_prefix: &str) -> RedisConfig {
    RedisConfig {
        key_prefix: key_prefix.to_owned(),
        ..RedisConfig::default()
    }
}
