//! `rediss://`: the store refuses a server whose certificate it cannot
//! verify, and works once the CA is trusted (here through SSL_CERT_FILE,
//! which the system root store honours).
//!
//! Alone in its own test binary because it sets a process environment
//! variable.

use otp_domain::ports::{CheckOutcome, CodeRecord, CodeStore, PutOutcome};
use otp_domain::{CodeDigest, StoreError};
use otp_redis::{RedisConfig, RedisStore};
use otp_testkit::redis::RedisServer;
use support::now_ms;

mod support;

#[tokio::test]
async fn rediss_urls_verify_the_server_certificate() {
    let server = RedisServer::start_with_tls();
    let (url, ca_cert) = server.tls_url();
    let config = RedisConfig {
        url,
        ..RedisConfig::default()
    };
    let now = now_ms();
    let record = CodeRecord {
        digest: CodeDigest::from_bytes([3; 32]),
        expires_at: now + 60_000,
        attempts: 0,
        max_attempts: 5,
        verification: support::fresh_id(),
    };

    let untrusting = RedisStore::standalone(&config).expect("store");
    let refused = support::try_put(&untrusting, "sms:+1", record, now).await;
    let Err(StoreError::Unavailable(cause)) = refused else {
        panic!("expected Unavailable, got {refused:?}");
    };
    let chain = otp_testkit::chain(cause.as_ref());
    assert!(
        chain.contains("certificate"),
        "refused for another reason: {chain}"
    );

    // Certificates are loaded per connection, so a new store sees this.
    std::env::set_var("SSL_CERT_FILE", &ca_cert);
    let store = RedisStore::standalone(&config).expect("store");
    let put = support::try_put(&store, "sms:+1", record, now)
        .await
        .expect("put over TLS");
    assert_eq!(put, PutOutcome::Stored);
    let got = store
        .check_code("sms:+1", &record.digest, now)
        .await
        .expect("check");
    assert_eq!(got, CheckOutcome::Approved);
}
