//! The fraud guard through the service, on the in-memory store (the
//! reference of the ports) with a clock the test moves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::codes::RandomCodes;
use crate::digest::CodeHasher;
use crate::error::SendError;
use crate::fraud::{FraudMode, FraudPolicy, Prefix};
use crate::memory::InMemoryStore;
use crate::policy::tests::policy;
use crate::ports::{Clock, Delivered, MockSender};
use crate::service::{CheckRequest, FraudGuard, OtpService, SendRequest, Senders};
use crate::types::{Code, Destination, Phone};

struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const T0: u64 = 1_700_000_000_000;

struct Harness {
    otp: OtpService,
    clock: Arc<TestClock>,
    sent: Arc<AtomicU64>,
}

fn harness(mode: FraudMode) -> Harness {
    let store = Arc::new(InMemoryStore::new());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let mut sender = MockSender::new();
    sender.expect_send().returning(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(Delivered::by("mock"))
    });
    let sender = Arc::new(sender);
    let clock = Arc::new(TestClock(AtomicU64::new(T0)));
    let mut p = policy();
    p.cooldown_secs = 0;
    p.sends_per_window = 0;
    p.user_sends_per_window = 0;
    let otp = OtpService::new(
        crate::service::Stores::of(store.clone()),
        Senders {
            sms: sender.clone(),
            call: sender.clone(),
            email: sender.clone(),
            telegram: sender.clone(),
            whatsapp: sender,
        },
        clock.clone(),
        Arc::new(RandomCodes),
        CodeHasher::new(b"fraud-test".to_vec()),
        p,
    )
    .with_fraud(FraudGuard {
        policy: FraudPolicy {
            mode,
            prefix_digits: 3,
            window_secs: 3600,
            min_sends: 10,
            min_conversion: 0.3,
            block_secs: 600,
            never_block: vec!["4930".into()],
        },
        ledger: store,
    });
    Harness { otp, clock, sent }
}

fn sms(number: &str, password: &str) -> SendRequest {
    SendRequest {
        destination: Destination::Sms(Phone::parse(number).expect("phone")),
        password: Some(Code::parse(password).expect("code")),
        lifetime: None,
        message: None,
        subject: None,
        user_key: None,
        locale: None,
        app: None,
    }
}

impl Harness {
    async fn send(&self, number: &str) -> Result<Option<crate::fraud::Block>, SendError> {
        self.otp
            .send(sms(number, "1234"))
            .await
            .map(|r| r.fraud_block)
    }

    async fn send_and_check(&self, number: &str) {
        self.send(number).await.expect("send");
        self.otp
            .check(CheckRequest {
                destination: Destination::Sms(Phone::parse(number).expect("phone")),
                password: Code::parse("1234").expect("code"),
            })
            .await
            .expect("approved");
    }
}

fn kz(i: u32) -> String {
    format!("+7701{:07}", 1_000_000 + i)
}

#[tokio::test]
async fn unconverted_sends_to_one_prefix_block_it_and_converted_ones_do_not() {
    let h = harness(FraudMode::Block);
    // Legitimate traffic to another prefix: every code entered.
    for i in 0..30 {
        h.send_and_check(&format!("+49151{:08}", 10_000_000 + i))
            .await;
    }
    // Pumping +7 701: nobody enters a code. The 10th send reaches the
    // threshold and blocks the prefix.
    for i in 0..9 {
        assert_eq!(h.send(&kz(i)).await.expect("send"), None);
    }
    let block = h.send(&kz(9)).await.expect("send").expect("blocked now");
    assert_eq!(block.prefix, Prefix::parse("7701").expect("prefix"));
    assert_eq!(block.country.as_deref(), Some("KZ"));
    assert_eq!(h.sent.load(Ordering::SeqCst), 40);
    let err = h.send(&kz(10)).await.expect_err("refused");
    assert!(matches!(err, SendError::FraudSuspected), "{err:?}");
    assert_eq!(
        h.sent.load(Ordering::SeqCst),
        40,
        "nothing reached the provider"
    );
    // Other prefixes and channels are untouched.
    h.send_and_check("+4915112345678").await;
    h.send("+77021234567").await.expect("another KZ prefix");
    assert_eq!(h.otp.fraud_blocks().await.expect("blocks").len(), 1);
}

#[tokio::test]
async fn a_block_lifts_after_block_secs_or_at_once_by_unblock() {
    let h = harness(FraudMode::Block);
    for i in 0..10 {
        h.send(&kz(i)).await.expect("send");
    }
    assert!(h.send(&kz(11)).await.is_err());
    h.clock.0.fetch_add(600_000, Ordering::SeqCst);
    let ended = h.otp.fraud_expire(10).await.expect("expire");
    assert_eq!(ended.len(), 1);
    assert!(
        h.otp.fraud_expire(10).await.expect("expire").is_empty(),
        "once"
    );
    // The window still remembers the pumping, so the next unconverted
    // send blocks again at once; unblock lets sends through now.
    assert!(h.send(&kz(12)).await.expect("send").is_some());
    let prefix = Prefix::parse("7701").expect("prefix");
    assert!(h
        .otp
        .fraud_unblock(&prefix)
        .await
        .expect("unblock")
        .is_some());
    assert!(h
        .otp
        .fraud_unblock(&prefix)
        .await
        .expect("unblock")
        .is_none());
    assert!(h.send(&kz(13)).await.is_ok());
}

#[tokio::test]
async fn monitor_mode_records_the_block_and_refuses_nothing() {
    let h = harness(FraudMode::Monitor);
    let mut blocks = 0;
    for i in 0..20 {
        if h.send(&kz(i))
            .await
            .expect("monitor refuses nothing")
            .is_some()
        {
            blocks += 1;
        }
    }
    assert_eq!(blocks, 1);
    assert_eq!(h.sent.load(Ordering::SeqCst), 20);
    let active = h.otp.fraud_blocks().await.expect("blocks");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].mode, FraudMode::Monitor);
}

#[tokio::test]
async fn never_block_prefixes_and_off_mode_never_block() {
    let h = harness(FraudMode::Block);
    for i in 0..30 {
        assert_eq!(
            h.send(&format!("+4930{:08}", 10_000_000 + i))
                .await
                .expect("send"),
            None
        );
    }
    let off = harness(FraudMode::Off);
    for i in 0..30 {
        assert_eq!(off.send(&kz(i)).await.expect("send"), None);
    }
    assert!(off.otp.fraud_blocks().await.expect("blocks").is_empty());
}
