//! The store contract against a real redb file, and persistence across a
//! reopen.

use std::sync::Arc;

use otp_domain::digest::CodeDigest;
use otp_domain::ports::{CheckOutcome, CodeRecord, CodeStore, PutOutcome};
use otp_store_embedded::EmbeddedStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_meets_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("otpd.redb")).expect("open");
    otp_domain::contract::run_all(Arc::new(store)).await;
}

#[tokio::test]
async fn codes_survive_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/otpd.redb");
    let record = CodeRecord {
        digest: CodeDigest::from_bytes([3; 32]),
        expires_at: 10_000,
        attempts: 0,
        max_attempts: 5,
    };
    {
        let store = EmbeddedStore::open(&path).expect("open");
        let put = store.put_code("sms:+77011234567", record, &[], 1).await;
        assert_eq!(put.expect("put"), PutOutcome::Stored);
    }
    let store = EmbeddedStore::open(&path).expect("reopen");
    let got = store
        .check_code("sms:+77011234567", &record.digest, 2)
        .await
        .expect("check");
    assert_eq!(got, CheckOutcome::Approved);
}

#[tokio::test]
async fn sweep_removes_only_expired_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("s.redb")).expect("open");
    let rec = |exp| CodeRecord {
        digest: CodeDigest::from_bytes([1; 32]),
        expires_at: exp,
        attempts: 0,
        max_attempts: 5,
    };
    store.put_code("old", rec(100), &[], 0).await.expect("put");
    store
        .put_code("new", rec(10_000), &[], 0)
        .await
        .expect("put");
    assert_eq!(store.sweep_expired(500).await.expect("sweep"), 1);
    let digest = CodeDigest::from_bytes([1; 32]);
    assert_eq!(
        store.check_code("new", &digest, 600).await.expect("check"),
        CheckOutcome::Approved
    );
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let _first = EmbeddedStore::open(&path).expect("open");
    assert!(EmbeddedStore::open(&path).is_err());
}
