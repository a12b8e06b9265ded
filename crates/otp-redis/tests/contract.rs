//! The store contract of otp-domain, against real Redis: one standalone
//! server, and a cluster of three masters.

use std::sync::Arc;

use otp_domain::ports::{CheckOutcome, CodeRecord, CodeStore, PutOutcome};
use otp_domain::CodeDigest;
use otp_redis::RedisStore;
use otp_testkit::redis::{RedisCluster, RedisServer};
use support::StoreConfig;

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_meets_the_contract() {
    let server = RedisServer::start();
    let store = RedisStore::standalone(&server.config("otpd")).expect("standalone store");
    let store = Arc::new(store);
    otp_domain::contract::run_all(store.clone()).await;
    otp_domain::contract::run_services(store.as_ref()).await;
    otp_domain::contract::run_fraud(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_meets_the_contract() {
    let cluster = RedisCluster::start();
    let store = Arc::new(RedisStore::cluster(&cluster.config("otpd")).expect("cluster store"));
    otp_domain::contract::run_all(store.clone()).await;
    otp_domain::contract::run_services(store.as_ref()).await;
    otp_domain::contract::run_fraud(store.clone()).await;

    // The codes really spread over the masters (a store that talked to one
    // node only would pass the contract too).
    let record = CodeRecord {
        digest: CodeDigest::from_bytes([5; 32]),
        expires_at: 60_000,
        attempts: 0,
        max_attempts: 5,
        verification: support::fresh_id(),
    };
    let keys: Vec<String> = (0..30).map(|i| format!("sms:+7701000{i:04}")).collect();
    for key in &keys {
        let put = support::put(&*store, key, record, 0).await;
        assert_eq!(put, PutOutcome::Stored);
    }
    let mut holding = 0;
    for url in cluster.node_urls() {
        let mut conn = redis::Client::open(url)
            .expect("node url")
            .get_multiplexed_async_connection()
            .await
            .expect("node connection");
        let size: u64 = redis::cmd("DBSIZE")
            .query_async(&mut conn)
            .await
            .expect("DBSIZE");
        holding += usize::from(size > 0);
    }
    assert_eq!(holding, 3, "every master should hold some codes");
    for key in &keys {
        let got = store
            .check_code(key, &record.digest, 1)
            .await
            .expect("check");
        assert_eq!(got, CheckOutcome::Approved);
    }
}
