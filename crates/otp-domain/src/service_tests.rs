//! Unit tests of the rules, against mockall mocks of every port and a
//! fixed clock.

use std::sync::{Arc, Mutex};

use mockall::predicate::eq;

use super::*;
use crate::digest::CodeDigest;
use crate::error::StoreError;
use crate::policy::tests::{budget, no_country_rules, policy};
use crate::policy::{ChannelBudget, CountryRules, Policy};
use crate::ports::{
    DeliveryError, HitOutcome, MockClock, MockCodeGenerator, MockCodeStore, MockSender, TakeOutcome,
};
use crate::types::{Email, Phone};
use crate::verification::{ReportUpdate, Status};

const NOW: u64 = 1_700_000_000_000;
const SECRET: &[u8] = b"test-secret";

fn phone() -> Phone {
    Phone::parse("77011234567").expect("valid phone")
}

fn code(s: &str) -> Code {
    Code::parse(s).expect("valid code")
}

fn fixed_clock() -> Arc<MockClock> {
    let mut clock = MockClock::new();
    clock.expect_now().return_const(NOW);
    Arc::new(clock)
}

/// Fresh, distinct verification ids, as the CSPRNG would draw them.
fn with_ids(g: &mut MockCodeGenerator) {
    let next = std::sync::atomic::AtomicU8::new(1);
    g.expect_verification_id().returning(move || {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        crate::verification::VerificationId::from_bytes([n; 16])
    });
}

/// A generator that may only be asked for ids: a test that asks it for
/// a code panics.
fn ids_only() -> Arc<MockCodeGenerator> {
    let mut g = MockCodeGenerator::new();
    with_ids(&mut g);
    Arc::new(g)
}

/// The roles of a store, the code store mocked, the others in memory.
fn mocked(store: MockCodeStore) -> Stores {
    let memory = Arc::new(crate::memory::InMemoryStore::new());
    Stores {
        codes: Arc::new(store),
        verifications: memory.clone(),
        idempotency: memory,
    }
}

fn generator(numeric: &'static str, pairing: Vec<&'static str>) -> Arc<MockCodeGenerator> {
    let mut g = MockCodeGenerator::new();
    with_ids(&mut g);
    g.expect_numeric()
        .with(eq(6))
        .returning(move |_| code(numeric));
    let queue = Mutex::new(pairing.into_iter());
    g.expect_pairing().returning(move || {
        let next = queue
            .lock()
            .expect("lock")
            .next()
            .expect("no more pairing codes");
        code(next)
    });
    Arc::new(g)
}

/// A sender that records every message and answers with `fail`.
fn recording_sender(fail: bool) -> (Arc<MockSender>, Arc<Mutex<Vec<OutgoingMessage>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    let mut s = MockSender::new();
    s.expect_send().returning(move |m| {
        log.lock().expect("lock").push(m.clone());
        if fail {
            Err(DeliveryError {
                provider: "mock".into(),
                reason: "refused".into(),
                transient: false,
                retry_after: None,
                source: None,
            })
        } else {
            Ok(Delivered::by("mock"))
        }
    });
    (Arc::new(s), sent)
}

/// A sender that must never be called.
fn silent_sender() -> Arc<MockSender> {
    Arc::new(MockSender::new())
}

fn senders_with(channel: Channel, sender: Arc<MockSender>) -> Senders {
    let pick = |c: Channel| -> Arc<dyn Sender> {
        if c == channel {
            sender.clone()
        } else {
            silent_sender()
        }
    };
    Senders {
        sms: pick(Channel::Sms),
        call: pick(Channel::Call),
        email: pick(Channel::Email),
        telegram: pick(Channel::Telegram),
        whatsapp: pick(Channel::WhatsApp),
    }
}

fn service(store: MockCodeStore, senders: Senders, codes: Arc<MockCodeGenerator>) -> OtpService {
    service_with(store, senders, codes, policy())
}

/// `store` gets a catch-all `hit_bucket` answering `Counted` unless the
/// test set its own.
fn service_with(
    mut store: MockCodeStore,
    senders: Senders,
    codes: Arc<MockCodeGenerator>,
    policy: Policy,
) -> OtpService {
    store
        .expect_hit_bucket()
        .returning(|_, _| Ok(HitOutcome::Counted));
    OtpService::new(
        mocked(store),
        senders,
        fixed_clock(),
        codes,
        CodeHasher::new(SECRET.to_vec()),
        policy,
    )
}

fn sms_request(
    password: Option<&str>,
    lifetime: Option<i64>,
    message: Option<&str>,
) -> SendRequest {
    SendRequest {
        destination: Destination::Sms(phone()),
        password: password.map(code),
        lifetime,
        message: message.map(str::to_owned),
        subject: None,
        user_key: None,
        locale: None,
        app: None,
    }
}

#[tokio::test]
async fn send_stores_only_the_digest_and_delivers_the_rendered_message() {
    let hasher = CodeHasher::new(SECRET.to_vec());
    let digest = hasher.code("sms:+77011234567", &code("482910"));
    let mut store = MockCodeStore::new();
    store
        .expect_stage_send()
        .withf(move |send, now| {
            send.key == "sms:+77011234567"
                && send.record.digest == digest
                && send.record.expires_at == NOW + 300_000
                && (send.record.attempts, send.record.max_attempts) == (0, 5)
                && send.verification.id == send.record.verification
                && send.verification.status == Status::Pending
                && send.verification.destination == "+77011234567"
                && send.verification.country.as_deref() == Some("KZ")
                && (send.verification.created_at, send.verification.expires_at)
                    == (NOW, NOW + 300_000)
                && *now == NOW
                && send.limits.shared
                    == [RateBucket {
                        key: "channel:sms".into(),
                        limit: 1000,
                        window_ms: 3_600_000,
                    }]
                && send.limits.blocked.is_none()
                && send.limits.own
                    == [
                        RateBucket {
                            key: "cooldown:sms:+77011234567".into(),
                            limit: 1,
                            window_ms: 30_000,
                        },
                        RateBucket {
                            key: "sends:sms:+77011234567".into(),
                            limit: 5,
                            window_ms: 600_000,
                        },
                    ]
        })
        .times(1)
        .returning(|_, _| Ok(PutOutcome::Stored));
    store
        .expect_record_delivery()
        .times(1)
        .returning(|_, _| Ok(None));
    let (sender, sent) = recording_sender(false);
    let svc = service(
        store,
        senders_with(Channel::Sms, sender),
        generator("482910", vec![]),
    );

    let receipt = svc.send(sms_request(None, None, None)).await.expect("send");

    assert_eq!(receipt.channel, Channel::Sms);
    assert_eq!(receipt.lifetime.secs(), 300);
    assert_eq!(receipt.expires_at, NOW + 300_000);
    let sent = sent.lock().expect("lock");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].destination, Destination::Sms(phone()));
    assert_eq!(
        sent[0].body,
        "Your code is 482910. It expires in 300 seconds."
    );
}

#[tokio::test]
async fn send_uses_the_callers_password_and_message_verbatim() {
    let mut store = MockCodeStore::new();
    store
        .expect_stage_send()
        .times(1)
        .returning(|_, _| Ok(PutOutcome::Stored));
    store
        .expect_record_delivery()
        .times(1)
        .returning(|_, _| Ok(None));
    let (sender, sent) = recording_sender(false);
    // The generator must not be asked: the caller gave a password.
    let svc = service(store, senders_with(Channel::Sms, sender), ids_only());

    svc.send(sms_request(
        Some("12345"),
        Some(300),
        Some("Your OTP is 12345"),
    ))
    .await
    .expect("send");

    assert_eq!(sent.lock().expect("lock")[0].body, "Your OTP is 12345");
}

#[tokio::test]
async fn send_refuses_a_generated_code_that_the_message_would_not_show() {
    let svc = service(
        MockCodeStore::new(),
        senders_with(Channel::Sms, silent_sender()),
        generator("482910", vec![]),
    );
    let err = svc
        .send(sms_request(None, None, Some("Hello")))
        .await
        .expect_err("must refuse");
    assert!(matches!(err, SendError::MessageWithoutCode), "{err:?}");
}

#[tokio::test]
async fn send_refuses_a_lifetime_out_of_bounds_and_stores_nothing() {
    for lifetime in [0, 29, 86_401, -1] {
        let svc = service(
            MockCodeStore::new(),
            senders_with(Channel::Sms, silent_sender()),
            generator("482910", vec![]),
        );
        let err = svc
            .send(sms_request(Some("12345"), Some(lifetime), None))
            .await
            .expect_err("must refuse");
        assert!(matches!(err, SendError::Invalid(_)), "{lifetime}: {err:?}");
    }
}

#[tokio::test]
async fn rate_limited_send_delivers_nothing_and_says_when_to_retry() {
    let mut store = MockCodeStore::new();
    store.expect_stage_send().returning(|_, _| {
        Ok(PutOutcome::RateLimited {
            retry_after_ms: 12_001,
        })
    });
    let svc = service(
        store,
        senders_with(Channel::Sms, silent_sender()),
        generator("482910", vec![]),
    );
    let err = svc
        .send(sms_request(None, None, None))
        .await
        .expect_err("limited");
    assert!(
        matches!(
            err,
            SendError::RateLimited {
                retry_after_secs: 13,
                limit: Limit::Destination
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn failed_delivery_removes_the_new_code() {
    let hasher = CodeHasher::new(SECRET.to_vec());
    let digest = hasher.code("sms:+77011234567", &code("482910"));
    let mut store = MockCodeStore::new();
    store
        .expect_stage_send()
        .returning(|_, _| Ok(PutOutcome::Stored));
    store
        .expect_discard_code()
        .withf(move |d, _| d.key == "sms:+77011234567" && *d.digest == digest)
        .times(1)
        .returning(|_, _| Ok(()));
    let (sender, _) = recording_sender(true);
    let svc = service(
        store,
        senders_with(Channel::Sms, sender),
        generator("482910", vec![]),
    );
    let err = svc
        .send(sms_request(None, None, None))
        .await
        .expect_err("fails");
    assert!(matches!(err, SendError::Delivery(_)), "{err:?}");
}

#[tokio::test]
async fn email_subject_is_rendered_and_must_be_one_line() {
    let mut store = MockCodeStore::new();
    store
        .expect_stage_send()
        .times(1)
        .returning(|_, _| Ok(PutOutcome::Stored));
    store
        .expect_record_delivery()
        .times(1)
        .returning(|_, _| Ok(None));
    let (sender, sent) = recording_sender(false);
    let svc = service(
        store,
        senders_with(Channel::Email, sender),
        generator("482910", vec![]),
    );
    let email = Email::parse("foobar@example.com").expect("valid");
    let request = |subject: &str| SendRequest {
        destination: Destination::Email(email.clone()),
        password: None,
        lifetime: None,
        message: Some("Code: {password}".into()),
        subject: Some(subject.into()),
        user_key: None,
        locale: None,
        app: None,
    };

    let err = svc
        .send(request("Hi\r\nBcc: victim@example.com"))
        .await
        .expect_err("refused");
    assert!(matches!(err, SendError::MultilineSubject), "{err:?}");

    svc.send(request("Code {password} inside"))
        .await
        .expect("send");
    let sent = sent.lock().expect("lock");
    assert_eq!(sent[0].subject.as_deref(), Some("Code 482910 inside"));
    assert_eq!(sent[0].body, "Code: 482910");
}

#[tokio::test]
async fn check_maps_every_store_outcome() {
    let hasher = CodeHasher::new(SECRET.to_vec());
    let digest = hasher.code("call:+77011234567", &code("12345"));
    let cases = [
        (CheckOutcome::Approved, "approved"),
        (CheckOutcome::Mismatch { attempts_left: 3 }, "mismatch3"),
        (CheckOutcome::Locked, "locked"),
        (CheckOutcome::NotFound, "notfound"),
    ];
    for (outcome, name) in cases {
        let mut store = MockCodeStore::new();
        store
            .expect_check_in()
            .withf(move |check, now| {
                check.key == "call:+77011234567" && *check.digest == digest && *now == NOW
            })
            .times(1)
            .returning(move |_, _| Ok(outcome_only(outcome)));
        let svc = service(
            store,
            senders_with(Channel::Call, silent_sender()),
            generator("0000", vec![]),
        );
        let got = svc
            .check(CheckRequest {
                destination: Destination::Call(phone()),
                password: code("12345"),
            })
            .await;
        let label = match got {
            Ok(()) => "approved".to_owned(),
            Err(CheckError::Mismatch { attempts_left }) => format!("mismatch{attempts_left}"),
            Err(CheckError::Locked) => "locked".into(),
            Err(CheckError::NotFound) => "notfound".into(),
            Err(CheckError::Store(e)) => format!("store {e}"),
        };
        assert_eq!(label, name);
    }
}

/// What a mocked store's check answers: `outcome`, naming no verification.
fn outcome_only(outcome: CheckOutcome) -> crate::ports::Checked {
    crate::ports::Checked {
        outcome,
        verification: None,
    }
}

fn check_target(input: &str, region: Option<&str>) -> CheckTarget {
    let region = region.map(|r| crate::types::Region::parse(r).expect("region"));
    CheckTarget::parse_in(Channel::Sms, input, region).expect("well-shaped")
}

#[tokio::test]
async fn a_check_found_under_its_digits_looks_no_further() {
    let hasher = CodeHasher::new(SECRET.to_vec());
    let digest = hasher.code("sms:+77011234567", &code("12345"));
    let mut store = MockCodeStore::new();
    store
        .expect_check_in()
        .withf(move |check, now| {
            check.key == "sms:+77011234567" && *check.digest == digest && *now == NOW
        })
        .times(1)
        .returning(|_, _| Ok(outcome_only(CheckOutcome::Mismatch { attempts_left: 2 })));
    let svc = service(
        store,
        senders_with(Channel::Sms, silent_sender()),
        generator("0000", vec![]),
    );
    let got = svc
        .check_at(&check_target("+7 701 123 45 67", None), &code("12345"))
        .await;
    assert!(
        matches!(got, Err(CheckError::Mismatch { attempts_left: 2 })),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_check_typed_with_a_national_prefix_after_the_country_code_finds_the_sent_code() {
    let hasher = CodeHasher::new(SECRET.to_vec());
    let typed = hasher.code("sms:+4402079460958", &code("12345"));
    let e164 = hasher.code("sms:+442079460958", &code("12345"));
    let mut store = MockCodeStore::new();
    store
        .expect_check_in()
        .withf(move |check, now| {
            check.key == "sms:+4402079460958" && *check.digest == typed && *now == NOW
        })
        .times(1)
        .returning(|_, _| Ok(outcome_only(CheckOutcome::NotFound)));
    store
        .expect_check_in()
        .withf(move |check, now| {
            check.key == "sms:+442079460958" && *check.digest == e164 && *now == NOW
        })
        .times(1)
        .returning(|_, _| Ok(outcome_only(CheckOutcome::Approved)));
    let svc = service(
        store,
        senders_with(Channel::Sms, silent_sender()),
        generator("0000", vec![]),
    );
    let got = svc
        .check_at(&check_target("+44 (0)20 7946 0958", None), &code("12345"))
        .await;
    assert!(got.is_ok(), "{got:?}");
}

#[tokio::test]
async fn a_check_for_a_number_no_send_accepts_is_not_found() {
    // Well-shaped, not valid: one lookup under its digits, no second.
    let mut store = MockCodeStore::new();
    store
        .expect_check_in()
        .withf(move |check, now| check.key == "sms:+78001234567" && *now == NOW)
        .times(1)
        .returning(|_, _| Ok(outcome_only(CheckOutcome::NotFound)));
    let svc = service(
        store,
        senders_with(Channel::Sms, silent_sender()),
        generator("0000", vec![]),
    );
    let got = svc
        .check_at(&check_target("+78001234567", None), &code("12345"))
        .await;
    assert!(matches!(got, Err(CheckError::NotFound)), "{got:?}");
    // A national number with a default region is parsed in full: when it
    // is no valid number, the store is not asked at all.
    let svc = service(
        MockCodeStore::new(),
        senders_with(Channel::Sms, silent_sender()),
        generator("0000", vec![]),
    );
    let got = svc
        .check_at(&check_target("7011234567", Some("KZ")), &code("12345"))
        .await;
    assert!(matches!(got, Err(CheckError::NotFound)), "{got:?}");
}

#[tokio::test]
async fn store_outage_is_reported_not_swallowed() {
    let mut store = MockCodeStore::new();
    store
        .expect_check_in()
        .returning(|_, _| Err(StoreError::Unavailable("connection refused".into())));
    let svc = service(
        store,
        senders_with(Channel::Sms, silent_sender()),
        generator("0000", vec![]),
    );
    let got = svc
        .check(CheckRequest {
            destination: Destination::Sms(phone()),
            password: code("12345"),
        })
        .await;
    assert!(matches!(got, Err(CheckError::Store(_))), "{got:?}");
}

#[tokio::test]
async fn pairing_retries_a_colliding_code_and_sends_the_free_one() {
    let chat = ChatId::from_i64(555).expect("valid");
    let hasher = CodeHasher::new(SECRET.to_vec());
    let taken = hasher.pairing(&code("AAAAAAAA"));
    let free = hasher.pairing(&code("BBBBBBBB"));
    let mut store = MockCodeStore::new();
    store
        .expect_put_pairing()
        .withf(move |p, now| {
            (p.chat, *p.digest, p.expires_at, *now) == (chat, taken, NOW + 300_000, NOW)
        })
        .times(1)
        .returning(|_, _| Ok(PairingOutcome::Collision));
    store
        .expect_put_pairing()
        .withf(move |p, now| {
            (p.chat, *p.digest, p.expires_at, *now) == (chat, free, NOW + 300_000, NOW)
        })
        .times(1)
        .returning(|_, _| Ok(PairingOutcome::Stored));
    let (sender, sent) = recording_sender(false);
    let svc = service(
        store,
        senders_with(Channel::Telegram, sender),
        generator("0000", vec!["AAAAAAAA", "BBBBBBBB"]),
    );

    svc.start_pairing(chat).await.expect("pairing");

    let sent = sent.lock().expect("lock");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].destination, Destination::Telegram(chat));
    assert_eq!(
        sent[0].body,
        "Your code is BBBBBBBB. Enter it in the app within 300 seconds."
    );
}

#[tokio::test]
async fn failed_pairing_delivery_removes_the_pairing() {
    let chat = ChatId::from_i64(555).expect("valid");
    let digest = CodeHasher::new(SECRET.to_vec()).pairing(&code("CCCCCCCC"));
    let mut store = MockCodeStore::new();
    store
        .expect_put_pairing()
        .returning(|_, _| Ok(PairingOutcome::Stored));
    store
        .expect_discard_pairing()
        .with(eq(digest))
        .times(1)
        .returning(|_| Ok(()));
    let (sender, _) = recording_sender(true);
    let svc = service(
        store,
        senders_with(Channel::Telegram, sender),
        generator("0000", vec!["CCCCCCCC"]),
    );
    let got = svc.start_pairing(chat).await;
    assert!(matches!(got, Err(PairError::Delivery(_))), "{got:?}");
}

#[tokio::test]
async fn redeem_normalizes_what_the_user_typed() {
    let chat = ChatId::from_i64(777).expect("valid");
    let digest: CodeDigest = CodeHasher::new(SECRET.to_vec()).pairing(&code("AB0C1DEF"));
    let mut store = MockCodeStore::new();
    store
        .expect_take_pairing()
        .withf(move |d, failures, now| *d == digest && failures.is_none() && *now == NOW)
        .times(1)
        .returning(move |_, _, _| Ok(TakeOutcome::Found(chat)));
    store
        .expect_take_pairing()
        .withf(move |d, failures, _| {
            *d != digest
                && failures.is_some_and(|b| {
                    b.key == "target-failures:10.0.0.7" && b.limit == 10 && b.window_ms == 600_000
                })
        })
        .times(1)
        .returning(|_, _, _| Ok(TakeOutcome::NotFound));
    let svc = service(
        store,
        senders_with(Channel::Telegram, silent_sender()),
        generator("0000", vec![]),
    );
    assert_eq!(
        svc.redeem_pairing("ab-oc ldef", None)
            .await
            .expect("redeem"),
        chat
    );
    // Malformed input is a failed lookup, counted against the user key.
    let got = svc.redeem_pairing("short", Some("10.0.0.7")).await;
    assert!(matches!(got, Err(TargetError::NotFound)), "{got:?}");
}

#[tokio::test]
async fn a_full_shared_limit_refuses_in_the_first_step_and_sends_nothing() {
    let mut store = MockCodeStore::new();
    store
        .expect_stage_send()
        .withf(|send, _| {
            send.limits.own.len() == 2
                && send.limits.shared.len() == 2
                && send.limits.shared[0].key == "user:203.0.113.9"
                && send.limits.shared[0].limit == 10
                && send.limits.shared[1].key == "channel:sms"
                && send.limits.shared[1].limit == 1000
                && send.limits.shared[1].window_ms == 3_600_000
        })
        .times(1)
        .returning(|_, _| {
            Ok(PutOutcome::SharedLimited {
                index: 1,
                retry_after_ms: 1_500,
            })
        });
    // Nothing was stored, so nothing is discarded, and no bucket is hit
    // in a step of its own.
    store.expect_discard_code().never();
    store.expect_hit_bucket().never();
    // The sender is silent: a delivery would panic the mock.
    let svc = service(
        store,
        senders_with(Channel::Sms, silent_sender()),
        generator("482910", vec![]),
    );
    let mut req = sms_request(None, None, None);
    req.user_key = Some("203.0.113.9".into());
    let err = svc.send(req).await.expect_err("limited");
    assert!(
        matches!(
            err,
            SendError::RateLimited {
                retry_after_secs: 2,
                limit: Limit::Channel
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn one_store_step_gets_every_limit_in_order_and_a_destination_refusal_names_its_limit() {
    let mut store = MockCodeStore::new();
    store
        .expect_stage_send()
        .times(1)
        // Own buckets (cooldown, window) for the destination, then the
        // shared ones: the user's first, the channel's last.
        .withf(|send, _| {
            send.limits.blocked.is_none()
                && send.limits.own.len() == 2
                && send.limits.own.iter().all(|b| b.key.contains(send.key))
                && send.limits.shared.len() == 2
                && send.limits.shared[0].key.contains("203.0.113.9")
                && send.limits.shared[1].key.contains("sms")
        })
        .returning(|_, _| {
            Ok(PutOutcome::RateLimited {
                retry_after_ms: 30_000,
            })
        });
    store.expect_hit_bucket().never();
    let svc = OtpService::new(
        mocked(store),
        senders_with(Channel::Sms, silent_sender()),
        fixed_clock(),
        generator("482910", vec![]),
        CodeHasher::new(SECRET.to_vec()),
        policy(),
    );
    let mut req = sms_request(None, None, None);
    req.user_key = Some("203.0.113.9".into());
    let err = svc.send(req).await.expect_err("limited");
    assert!(
        matches!(
            err,
            SendError::RateLimited {
                retry_after_secs: 30,
                limit: Limit::Destination
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn denied_countries_are_refused_before_anything_happens() {
    let policy = Policy {
        sms_countries: CountryRules {
            allow: vec![49],
            deny: vec![],
        },
        call_countries: CountryRules {
            allow: vec![],
            deny: vec![7],
        },
        ..policy()
    };
    let svc = service_with(
        MockCodeStore::new(),
        senders_with(Channel::Sms, silent_sender()),
        generator("482910", vec![]),
        policy,
    );
    let err = svc
        .send(sms_request(None, None, None))
        .await
        .expect_err("denied");
    assert!(matches!(err, SendError::DestinationNotAllowed), "{err:?}");
    let mut call = sms_request(None, None, None);
    call.destination = Destination::Call(phone());
    let err = svc.send(call).await.expect_err("denied");
    assert!(matches!(err, SendError::DestinationNotAllowed), "{err:?}");
}

#[tokio::test]
async fn test_destinations_store_the_fixed_code_and_send_nothing() {
    let hasher = CodeHasher::new(SECRET.to_vec());
    let fixed = code("000000");
    let expected = hasher.code("sms:+77011234567", &fixed);
    let mut store = MockCodeStore::new();
    store
        .expect_stage_send()
        .withf(move |send, _| {
            send.key == "sms:+77011234567"
                && send.record.digest == expected
                && *send.limits == SendLimits::default()
        })
        .times(1)
        .returning(|_, _| Ok(PutOutcome::Stored));
    store
        .expect_record_delivery()
        .times(1)
        .returning(|_, _| Ok(None));
    let mut policy = policy();
    policy
        .test_destinations
        .insert("sms:+77011234567".into(), fixed);
    // The sender is silent: any delivery would panic the mock.
    let svc = service_with(
        store,
        senders_with(Channel::Sms, silent_sender()),
        ids_only(),
        policy,
    );
    svc.send(sms_request(None, None, None))
        .await
        .expect("test send");
    let phone = |p: &str| Destination::Sms(Phone::parse(p).expect("valid"));
    assert!(svc.is_test_destination(&phone("77011234567")));
    assert!(!svc.is_test_destination(&phone("77011234568")));
    assert!(!svc.is_test_destination(&Destination::Call(
        Phone::parse("77011234567").expect("valid")
    )));
}

#[test]
fn a_check_target_is_a_test_destination_however_its_number_was_typed() {
    let mut policy = policy();
    policy
        .test_destinations
        .insert("sms:+442079460958".into(), code("424242"));
    let svc = service_with(
        MockCodeStore::new(),
        senders_with(Channel::Sms, silent_sender()),
        ids_only(),
        policy,
    );
    assert!(svc.is_test_target(&check_target("+442079460958", None)));
    assert!(svc.is_test_target(&check_target("+44 (0)20 7946 0958", None)));
    assert!(!svc.is_test_target(&check_target("+442079460959", None)));
    let call = CheckTarget::parse_in(Channel::Call, "+442079460958", None).expect("valid");
    assert!(!svc.is_test_target(&call));
}

#[tokio::test]
async fn each_webhook_update_is_handled_once() {
    let seen = std::sync::atomic::AtomicBool::new(false);
    let mut store = MockCodeStore::new();
    store
        .expect_hit_bucket()
        .withf(|b, _| b.key == "telegram-update:77" && b.limit == 1 && b.window_ms == 86_400_000)
        .times(2)
        .returning(move |_, _| {
            if seen.swap(true, std::sync::atomic::Ordering::SeqCst) {
                Ok(HitOutcome::Full { retry_after_ms: 1 })
            } else {
                Ok(HitOutcome::Counted)
            }
        });
    let svc = service(
        store,
        senders_with(Channel::Telegram, silent_sender()),
        generator("0000", vec![]),
    );
    assert!(svc.first_delivery(77).await.expect("first"));
    assert!(!svc.first_delivery(77).await.expect("second"));
}

#[tokio::test]
async fn a_chat_refused_by_its_own_cooldown_charges_no_shared_budget() {
    // A real (in-memory) store, so every bucket really counts; the clock
    // stands still, so the chat stays inside its cooldown throughout.
    let policy = Policy {
        channel_budget: ChannelBudget {
            telegram: 3,
            ..budget()
        },
        ..policy()
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut codes = MockCodeGenerator::new();
    codes.expect_pairing().returning(move || {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        code(&format!("K7Q2M9{n:02}"))
    });
    let (sender, sent) = recording_sender(false);
    let svc = OtpService::new(
        Stores::of(Arc::new(crate::memory::InMemoryStore::new())),
        senders_with(Channel::Telegram, sender),
        fixed_clock(),
        Arc::new(codes),
        CodeHasher::new(SECRET.to_vec()),
        policy,
    );
    let looping = ChatId::from_i64(555).expect("valid");
    svc.start_pairing(looping).await.expect("first pairing");
    for _ in 0..9 {
        let got = svc.start_pairing(looping).await;
        assert!(
            matches!(
                got,
                Err(PairError::RateLimited {
                    retry_after_secs: 30,
                    limit: Limit::Destination
                })
            ),
            "refused by the chat's own 30 s cooldown: {got:?}"
        );
    }

    let other = ChatId::from_i64(777).expect("valid");
    svc.start_pairing(other)
        .await
        .expect("another chat still gets a code: the loop used 1 of 3");

    let sent = sent.lock().expect("lock");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].destination, Destination::Telegram(other));
}

/// A WhatsApp send with the SMS fallback on, whose WhatsApp delivery fails.
fn whatsapp_with_fallback(
    store: MockCodeStore,
    sms: Arc<MockSender>,
    sms_countries: CountryRules,
) -> OtpService {
    let (whatsapp, _) = recording_sender(true);
    let senders = Senders {
        sms,
        call: silent_sender(),
        email: silent_sender(),
        telegram: silent_sender(),
        whatsapp,
    };
    let policy = Policy {
        whatsapp_fallback_sms: true,
        sms_countries,
        ..policy()
    };
    service_with(store, senders, generator("482910", vec![]), policy)
}

/// SMS may go to Germany (+49) only: a Brazilian number's fallback is
/// refused.
fn germany_only() -> CountryRules {
    CountryRules {
        allow: vec![49],
        deny: vec![],
    }
}

/// A store whose first step stores the code.
fn staged_store() -> MockCodeStore {
    let mut store = MockCodeStore::new();
    store
        .expect_stage_send()
        .returning(|_, _| Ok(PutOutcome::Stored));
    store
}

fn whatsapp_request() -> SendRequest {
    SendRequest {
        destination: Destination::parse(Channel::WhatsApp, "+5511987654321").expect("phone"),
        password: None,
        lifetime: None,
        message: None,
        subject: None,
        user_key: None,
        locale: None,
        app: None,
    }
}

#[tokio::test]
async fn the_sms_fallback_sends_the_same_code_and_records_both_deliveries() {
    let mut store = staged_store();
    store
        .expect_record_delivery()
        .times(1)
        .withf(|delivery, _| {
            let attempts = delivery.attempts;
            attempts.len() == 2
                && attempts[0].outcome == AttemptOutcome::Failed
                && attempts[1].outcome == AttemptOutcome::Delivered
        })
        .returning(|_, _| Ok(None));
    store.expect_discard_code().never();
    let (sms, sent) = recording_sender(false);
    let svc = whatsapp_with_fallback(store, sms, no_country_rules());
    let receipt = svc.send(whatsapp_request()).await.expect("sent by SMS");
    assert_eq!(receipt.channel, Channel::WhatsApp);
    let sent = sent.lock().expect("lock");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].destination,
        Destination::Sms(Phone::parse("+5511987654321").expect("phone"))
    );
    assert_eq!(sent[0].code, code("482910"));
    assert!(sent[0].body.contains("482910"), "{}", sent[0].body);
}

#[tokio::test]
async fn the_sms_fallback_keeps_the_sms_country_rules_and_discards_when_they_refuse() {
    let mut store = staged_store();
    store
        .expect_discard_code()
        .times(1)
        .withf(|d, _| d.key == "whatsapp:+5511987654321" && d.failure.is_some_and(|a| a.len() == 1))
        .returning(|_, _| Ok(()));
    store.expect_record_delivery().never();
    // SMS may go to Germany only: the fallback to a Brazilian number is
    // refused, and the SMS sender is never called.
    let svc = whatsapp_with_fallback(store, silent_sender(), germany_only());
    let err = svc.send(whatsapp_request()).await.expect_err("refused");
    assert!(matches!(err, SendError::Delivery(_)), "{err:?}");
}

#[tokio::test]
async fn when_the_sms_fallback_fails_too_the_code_is_discarded_with_both_attempts() {
    let mut store = staged_store();
    store
        .expect_discard_code()
        .times(1)
        .withf(|d, _| d.failure.is_some_and(|a| a.len() == 2))
        .returning(|_, _| Ok(()));
    store.expect_record_delivery().never();
    let (sms, _) = recording_sender(true);
    let svc = whatsapp_with_fallback(store, sms, no_country_rules());
    let err = svc.send(whatsapp_request()).await.expect_err("both failed");
    assert!(matches!(err, SendError::Delivery(_)), "{err:?}");
}

// ---- status reports and the fallback they trigger ----------------------

/// A WhatsApp sender that takes every message as `wamid.1`.
fn meta_like() -> Arc<MockSender> {
    let mut s = MockSender::new();
    s.expect_send()
        .returning(|_| Ok(Delivered::by("meta").message("wamid.1")));
    Arc::new(s)
}

/// A service on a real in-memory store: WhatsApp takes the message, SMS
/// is `sms`; with the fallback on or off, SMS under `sms_countries`.
fn reporting(fallback: bool, sms: Arc<MockSender>, sms_countries: CountryRules) -> OtpService {
    reporting_on(
        Stores::of(Arc::new(crate::memory::InMemoryStore::new())),
        fallback,
        sms,
        sms_countries,
    )
}

/// [`reporting`] on the given store roles.
fn reporting_on(
    stores: Stores,
    fallback: bool,
    sms: Arc<MockSender>,
    sms_countries: CountryRules,
) -> OtpService {
    let senders = Senders {
        sms,
        call: silent_sender(),
        email: silent_sender(),
        telegram: silent_sender(),
        whatsapp: meta_like(),
    };
    let policy = Policy {
        whatsapp_fallback_sms: fallback,
        sms_countries,
        ..policy()
    };
    OtpService::new(
        stores,
        senders,
        fixed_clock(),
        generator("482910", vec![]),
        CodeHasher::new(SECRET.to_vec()),
        policy,
    )
}

fn failed_131026() -> ReportUpdate {
    ReportUpdate {
        message_id: "wamid.1".into(),
        report: crate::verification::DeliveryReport::Failed,
        error: Some("error 131026: not on WhatsApp".into()),
    }
}

async fn check_whatsapp(svc: &OtpService, password: &str) -> Result<(), CheckError> {
    let target = svc
        .check_target(Channel::WhatsApp, "+5511987654321")
        .expect("target");
    svc.check_at(&target, &code(password)).await
}

#[tokio::test]
async fn a_failed_report_on_an_unreachable_number_sends_the_sealed_code_by_sms_once() {
    let (sms, sent) = recording_sender(false);
    let svc = reporting(true, sms, no_country_rules());
    let receipt = svc.send(whatsapp_request()).await.expect("sent");
    let stored = svc
        .verification(&receipt.id)
        .await
        .expect("store")
        .expect("kept");
    let sealed = stored
        .sealed
        .expect("the code is kept sealed for the fallback");
    assert!(!sealed.as_str().contains("482910"));
    assert_eq!(stored.deliveries[0].message_id.as_deref(), Some("wamid.1"));

    let effect = svc
        .delivery_report(&receipt.id, &failed_131026(), true)
        .await
        .expect("store");
    assert_eq!(effect, ReportEffect::FellBack);
    let replay = svc
        .delivery_report(&receipt.id, &failed_131026(), true)
        .await
        .expect("store");
    assert_eq!(
        replay,
        ReportEffect::Unchanged,
        "one SMS, whatever Meta replays"
    );
    {
        let sent = sent.lock().expect("lock");
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].destination,
            Destination::Sms(Phone::parse("+5511987654321").expect("phone"))
        );
        assert_eq!(sent[0].code, code("482910"));
        assert_eq!(sent[0].verification, Some(receipt.id));
        assert!(sent[0].body.contains("482910"), "{}", sent[0].body);
    }
    let v = svc
        .verification(&receipt.id)
        .await
        .expect("store")
        .expect("kept");
    assert_eq!(v.sealed, None, "the fallback took the sealed code out");
    assert_eq!(
        v.deliveries
            .iter()
            .map(|d| (d.provider.as_str(), d.outcome))
            .collect::<Vec<_>>(),
        [
            ("meta", AttemptOutcome::Delivered),
            ("mock", AttemptOutcome::Delivered)
        ]
    );
    check_whatsapp(&svc, "482910").await.expect("approved");
}

#[tokio::test]
async fn a_failed_report_that_sms_cannot_take_ends_the_verification_as_failed() {
    let svc = reporting(true, silent_sender(), germany_only());
    let receipt = svc.send(whatsapp_request()).await.expect("sent");
    let effect = svc
        .delivery_report(&receipt.id, &failed_131026(), true)
        .await
        .expect("store");
    assert_eq!(effect, ReportEffect::FallbackFailed);
    let v = svc
        .verification(&receipt.id)
        .await
        .expect("store")
        .expect("kept");
    assert_eq!(v.status, Status::Failed);
    assert!(
        matches!(
            check_whatsapp(&svc, "482910").await,
            Err(CheckError::NotFound)
        ),
        "no code nobody received stays checkable"
    );
}

#[tokio::test]
async fn without_the_fallback_or_a_pending_verification_a_failed_report_is_only_recorded() {
    let svc = reporting(false, silent_sender(), no_country_rules());
    let receipt = svc.send(whatsapp_request()).await.expect("sent");
    let v = svc
        .verification(&receipt.id)
        .await
        .expect("store")
        .expect("kept");
    assert_eq!(v.sealed, None, "nothing is sealed without the fallback");
    let effect = svc
        .delivery_report(&receipt.id, &failed_131026(), true)
        .await
        .expect("store");
    assert_eq!(effect, ReportEffect::Recorded);

    // With the fallback on, a report that arrives after the approval.
    let svc = reporting(true, silent_sender(), no_country_rules());
    let receipt = svc.send(whatsapp_request()).await.expect("sent");
    check_whatsapp(&svc, "482910").await.expect("approved");
    let effect = svc
        .delivery_report(&receipt.id, &failed_131026(), true)
        .await
        .expect("store");
    assert_eq!(
        effect,
        ReportEffect::Recorded,
        "no SMS for an ended verification"
    );
    // And one that does not say the number is unreachable.
    let receipt = svc
        .send(SendRequest {
            destination: Destination::parse(Channel::WhatsApp, "+5511987654322").expect("phone"),
            ..whatsapp_request()
        })
        .await
        .expect("sent");
    let effect = svc
        .delivery_report(&receipt.id, &failed_131026(), false)
        .await
        .expect("store");
    assert_eq!(effect, ReportEffect::Recorded);
    let unknown = svc
        .delivery_report(
            &crate::verification::VerificationId::from_bytes([0xee; 16]),
            &failed_131026(),
            true,
        )
        .await
        .expect("store");
    assert_eq!(unknown, ReportEffect::Unknown);
}

/// The in-memory store, with `hit_bucket` failing once `fail` is set: a
/// store outage in the middle of a late fallback.
struct FlakyBuckets {
    inner: Arc<crate::memory::InMemoryStore>,
    fail: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl CodeStore for FlakyBuckets {
    async fn stage_send<'a>(
        &self,
        send: StagedSend<'a>,
        now: Timestamp,
    ) -> Result<PutOutcome, StoreError> {
        self.inner.stage_send(send, now).await
    }
    async fn record_delivery<'a>(
        &self,
        delivery: Delivery<'a>,
        now: Timestamp,
    ) -> Result<Option<crate::fraud::Counters>, StoreError> {
        self.inner.record_delivery(delivery, now).await
    }
    async fn discard_code<'a>(
        &self,
        discard: CodeDiscard<'a>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.discard_code(discard, now).await
    }
    async fn check_in<'a>(
        &self,
        check: CodeCheck<'a>,
        now: Timestamp,
    ) -> Result<crate::ports::Checked, StoreError> {
        self.inner.check_in(check, now).await
    }
    async fn put_pairing<'a>(
        &self,
        pairing: NewPairing<'a>,
        now: Timestamp,
    ) -> Result<PairingOutcome, StoreError> {
        self.inner.put_pairing(pairing, now).await
    }
    async fn discard_pairing(&self, digest: &CodeDigest) -> Result<(), StoreError> {
        self.inner.discard_pairing(digest).await
    }
    async fn take_pairing<'a>(
        &self,
        digest: &CodeDigest,
        failures: Option<&'a RateBucket>,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        self.inner.take_pairing(digest, failures, now).await
    }
    async fn hit_bucket(
        &self,
        bucket: &RateBucket,
        now: Timestamp,
    ) -> Result<HitOutcome, StoreError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the test's outage".into()));
        }
        self.inner.hit_bucket(bucket, now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn a_store_outage_in_a_late_fallback_ends_the_verification_instead_of_losing_the_code() {
    let memory = Arc::new(crate::memory::InMemoryStore::new());
    let flaky = Arc::new(FlakyBuckets {
        inner: memory.clone(),
        fail: std::sync::atomic::AtomicBool::new(false),
    });
    let svc = reporting_on(
        Stores {
            codes: flaky.clone(),
            verifications: memory.clone(),
            idempotency: memory,
        },
        true,
        silent_sender(),
        no_country_rules(),
    );
    let receipt = svc.send(whatsapp_request()).await.expect("sent");
    flaky.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = svc
        .delivery_report(&receipt.id, &failed_131026(), true)
        .await
        .expect_err("the outage is the answer (503: Meta retries)");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let v = svc
        .verification(&receipt.id)
        .await
        .expect("store")
        .expect("kept");
    assert_eq!(v.status, Status::Failed, "the code nobody received died");
    assert_eq!(v.sealed, None);
    let retry = svc
        .delivery_report(&receipt.id, &failed_131026(), true)
        .await
        .expect("store");
    assert_eq!(retry, ReportEffect::Unchanged, "Meta's retry is a replay");
    assert!(matches!(
        check_whatsapp(&svc, "482910").await,
        Err(CheckError::NotFound)
    ));
}

/// A `/v2` service's send keeps the sealed code; its resend sends the same
/// code on the same verification; approving needs no code; once it ended,
/// there is nothing to resend or approve.
#[tokio::test]
async fn a_service_s_resend_reuses_the_code_and_approval_takes_none() {
    let store = Arc::new(crate::memory::InMemoryStore::new());
    let (sms, sent) = recording_sender(false);
    let svc = OtpService::new(
        Stores::of(store),
        senders_with(Channel::Sms, sms),
        fixed_clock(),
        {
            // The service's CodeLength, not the policy's 6.
            let mut g = MockCodeGenerator::new();
            g.expect_numeric()
                .with(eq(7))
                .returning(|_| code("4829107"));
            with_ids(&mut g);
            Arc::new(g)
        },
        CodeHasher::new(SECRET.to_vec()),
        // No cooldown: the resend is at once (its limits are tested on
        // every store by the contract and end to end).
        Policy {
            cooldown_secs: 0,
            ..policy()
        },
    );
    let app = App {
        service: "VA0123456789abcdef0123456789abcdef".into(),
        name: "Acme".into(),
        code_length: Some(7),
    };
    let app_send = || {
        svc.send(SendRequest {
            app: Some(app.clone()),
            ..sms_request(None, None, None)
        })
    };
    let first = app_send().await.expect("send");
    let again = svc
        .resend(&first.id, &app, None)
        .await
        .expect("resend")
        .expect("a pending verification is reused");
    assert_eq!((again.id, again.expires_at), (first.id, first.expires_at));
    {
        let sent = sent.lock().expect("lock");
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].code.expose(), "4829107");
        assert_eq!(
            sent[1].code.expose(),
            sent[0].code.expose(),
            "the same code"
        );
        assert!(sent[1].body.starts_with("Acme: "), "{}", sent[1].body);
        assert!(sent[1].body.contains("4829107"), "{}", sent[1].body);
    }
    // The service's repeated send finds it in its store step, and resends.
    let reused = app_send().await.expect("send again");
    assert_eq!((reused.id, reused.reused), (first.id, true));
    assert_eq!(
        sent.lock().expect("lock")[2].code.expose(),
        "4829107",
        "the same code a third time"
    );
    let v = svc
        .verification(&first.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(v.deliveries.len(), 3);
    assert_eq!(v.service.as_deref(), Some(app.service.as_str()));
    assert!(v.sealed.is_some(), "kept while pending");

    svc.approve(&first.id)
        .await
        .expect("approved without the code");
    let v = svc
        .verification(&first.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(v.status, Status::Approved);
    assert!(v.sealed.is_none(), "dropped when it ended");
    assert!(svc
        .resend(&first.id, &app, None)
        .await
        .expect("resend")
        .is_none());
    assert!(matches!(
        svc.approve(&first.id).await,
        Err(CheckError::NotFound)
    ));
    assert_eq!(sent.lock().expect("lock").len(), 3, "nothing more went out");
    // Once it ended, the service's send is a new verification.
    let fresh = app_send().await.expect("send after the end");
    assert!(!fresh.reused);
    assert_ne!(fresh.id, first.id);
}

/// A resend meets the country rules as they are now: a country refused
/// since the first send is refused for the resend too, and nothing goes
/// out.
#[tokio::test]
async fn a_resend_is_refused_where_the_country_rules_now_refuse_it() {
    let store = Arc::new(crate::memory::InMemoryStore::new());
    let (sms, sent) = recording_sender(false);
    let senders = senders_with(Channel::Sms, sms);
    let with = |sms_countries: CountryRules| {
        OtpService::new(
            Stores::of(store.clone()),
            senders.clone(),
            fixed_clock(),
            generator("482910", vec![]),
            CodeHasher::new(SECRET.to_vec()),
            Policy {
                cooldown_secs: 0,
                sms_countries,
                ..policy()
            },
        )
    };
    let app = App {
        service: "VA0123456789abcdef0123456789abcdef".into(),
        name: "Acme".into(),
        code_length: None,
    };
    let first = with(no_country_rules())
        .send(SendRequest {
            app: Some(app.clone()),
            ..sms_request(None, None, None)
        })
        .await
        .expect("send");
    // The number is in Kazakhstan (+7); now only Germany may get SMS.
    let err = with(germany_only())
        .resend(&first.id, &app, None)
        .await
        .expect_err("refused");
    assert!(matches!(err, SendError::DestinationNotAllowed), "{err:?}");
    assert_eq!(
        sent.lock().expect("lock").len(),
        1,
        "the resend sent nothing"
    );
}

#[test]
fn message_text_is_the_requests_or_the_locales_and_refuses_what_cannot_carry_the_code() {
    let texts = crate::locale::Templates {
        sms: "Code {password}".into(),
        call: "Your code is {password}".into(),
        email_subject: "Your code".into(),
        email_text: "Code {password}".into(),
        telegram: "Code {password}".into(),
        pairing: "Pair {password}".into(),
    };
    let text = |channel, message, subject, password_given, fixed| {
        super::message_text(channel, (message, subject), password_given, &texts, fixed)
    };
    // The locale's texts when the request has none; a subject only for email.
    assert_eq!(
        text(Channel::Sms, None, Some("ignored"), false, false).expect("sms"),
        ("Code {password}", None)
    );
    assert_eq!(
        text(Channel::Email, None, None, false, false).expect("email"),
        ("Code {password}", Some("Your code"))
    );
    assert_eq!(
        text(
            Channel::Email,
            Some("{password}!"),
            Some("Hi"),
            false,
            false
        )
        .expect("own"),
        ("{password}!", Some("Hi"))
    );
    // Without {password} only when the caller chose the code.
    assert!(matches!(
        text(Channel::Sms, Some("no code"), None, false, false),
        Err(SendError::MessageWithoutCode)
    ));
    assert_eq!(
        text(Channel::Sms, Some("no code"), None, true, false).expect("own code"),
        ("no code", None)
    );
    // Each channel's body limit, counted in characters.
    let at_limit = format!("{{password}}{}", "я".repeat(1600 - 10));
    assert!(text(Channel::Sms, Some(&at_limit), None, false, false).is_ok());
    let over = format!("{at_limit}я");
    assert!(matches!(
        text(Channel::Sms, Some(&over), None, false, false),
        Err(SendError::TooLong {
            field: "message",
            max: 1600
        })
    ));
    let subject = "s".repeat(256);
    assert!(matches!(
        text(Channel::Email, None, Some(&subject), false, false),
        Err(SendError::TooLong {
            field: "subject",
            max: 255
        })
    ));
    assert!(matches!(
        text(Channel::Email, None, Some("a\r\nBcc: x"), false, false),
        Err(SendError::MultilineSubject)
    ));
    // The Cloud API's fixed template takes no text of the request's.
    assert!(matches!(
        text(Channel::WhatsApp, Some("{password}"), None, false, true),
        Err(SendError::FixedTemplate {
            channel: "whatsapp"
        })
    ));
    assert!(text(Channel::WhatsApp, None, None, false, true).is_ok());
    assert!(text(Channel::WhatsApp, Some("{password}"), None, false, false).is_ok());
}
