//! The security suite, run against the real stores: the embedded redb
//! file and a real redis-server this test starts. The clock is the
//! test's (expiry is tested by moving it, never by sleeping); senders are
//! recording mocks.

use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use otp_domain::ports::CodeStore;
use otp_redis::{RedisConfig, RedisStore};
use otp_store_embedded::EmbeddedStore;
use otp_testkit::redis::RedisServer;
use serde_json::json;

use crate::helpers::{assert_error_for, Options, TestApp};

/// Keeps a store's backing file or server alive for the test.
enum Backing {
    File(#[allow(dead_code)] tempfile::TempDir),
    Redis(#[allow(dead_code)] RedisServer),
}

fn stores() -> Vec<(&'static str, Arc<dyn CodeStore>, Backing)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = EmbeddedStore::open(&dir.path().join("otpd.redb")).expect("embedded store");
    let redis = RedisServer::start();
    let store = RedisStore::standalone(&RedisConfig {
        url: redis.url(),
        ..RedisConfig::default()
    })
    .expect("redis store");
    vec![
        ("embedded", Arc::new(embedded), Backing::File(dir)),
        ("redis", Arc::new(store), Backing::Redis(redis)),
    ]
}

async fn app_on(store: Arc<dyn CodeStore>, toml: &'static str) -> TestApp {
    TestApp::spawn_with(Options::toml(toml).with_store(store)).await
}

const NO_COOLDOWN: &str = "[limits]\ncooldown_secs = 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_wrong_guesses_evaluate_at_most_the_limit_then_lock() {
    for (name, store, _backing) in stores() {
        let app = app_on(store, NO_COOLDOWN).await;
        let (status, _) = app.send_sms_code("77011234567", "739184").await;
        assert_eq!(status, 200, "{name}");
        let statuses: Vec<u16> = stream::iter(0..10_000u32)
            .map(|i| {
                let app = &app;
                async move {
                    let guess = format!("{:06}", (i * 7919) % 1_000_000);
                    let guess = if guess == "739184" {
                        "000000".to_owned()
                    } else {
                        guess
                    };
                    app.check_sms("77011234567", &guess).await.0
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let evaluated = statuses.iter().filter(|s| **s == 422).count();
        let locked = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!(evaluated, 5, "{name}: exactly the limit was evaluated");
        assert_eq!(locked, 10_000 - 5, "{name}: every other guess met the lock");
        let locked = app.check_sms("77011234567", "739184").await;
        assert_error_for(name, &locked, 429, "too_many_attempts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_100_concurrent_correct_checks_exactly_one_is_approved() {
    for (name, store, _backing) in stores() {
        let app = app_on(store, NO_COOLDOWN).await;
        app.send_sms_code("77011234567", "482910").await;
        let statuses: Vec<u16> = stream::iter(0..100)
            .map(|_| {
                let app = &app;
                async move { app.check_sms("77011234567", "482910").await.0 }
            })
            .buffer_unordered(100)
            .collect()
            .await;
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{name}: {statuses:?}"
        );
        assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 99, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_success_and_an_expired_code_are_404() {
    for (name, store, _backing) in stores() {
        let app = app_on(store, NO_COOLDOWN).await;
        app.send_sms_code("77011234567", "482910").await;
        assert_eq!(
            app.check_sms("77011234567", "482910").await.0,
            200,
            "{name}"
        );
        let replay = app.check_sms("77011234567", "482910").await;
        assert_error_for(format!("{name}: replay"), &replay, 404, "not_found");

        let send = json!({"phone": "77011234568", "password": "482910", "lifetime": 60});
        let (status, _) = app.post("/sms", send).await;
        assert_eq!(status, 200, "{name}");
        app.advance_secs(59);
        let call = json!({"phone": "77011234568", "password": "111111", "lifetime": 60});
        let (status, _) = app.post("/call", call).await;
        assert_eq!(status, 200, "{name}");
        let (status, _) = app.check_sms("77011234568", "000000").await;
        assert_eq!(status, 422, "{name}: alive one second before its end");
        app.advance_secs(1);
        let (status, _) = app.check_sms("77011234568", "482910").await;
        assert_eq!(status, 404, "{name}: expired at exactly its lifetime");
        let (status, _) = app.check_call("77011234568", "111111").await;
        assert_eq!(status, 200, "{name}: the younger code still lives");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_floods_hit_the_destination_user_and_channel_caps() {
    for (name, store, _backing) in stores() {
        let app = app_on(
            store,
            "[limits]\ncooldown_secs = 30\nsends_per_window = 5\nuser_sends_per_window = 6\nsms_per_hour = 12\n",
        )
        .await;
        // One destination: the cooldown, then the window.
        assert_eq!(app.send_sms("77011234500").await.0, 200, "{name}");
        let (status, body) = app.send_sms("77011234500").await;
        assert_eq!(
            (status, body["retry_after"].as_u64()),
            (429, Some(30)),
            "{name}"
        );
        for _ in 0..4 {
            app.advance_secs(30);
            assert_eq!(app.send_sms("77011234500").await.0, 200, "{name}");
        }
        app.advance_secs(30);
        let (status, _) = app.send_sms("77011234500").await;
        assert_eq!(status, 429, "{name}: the sixth send in the window");

        // One end user across destinations.
        let key = [("X-OTP-User-Key", "198.51.100.23")];
        let mut statuses = Vec::new();
        for i in 0..10 {
            let phone = json!({ "phone": format!("+7701123{i:04}") });
            statuses.push(app.post_with("/sms", &key, phone).await.0);
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            6,
            "{name}: {statuses:?}"
        );
        // Refused sends charge no shared limit: 5 sends above + 6 from the
        // user = 11 of 12 in the hour. One more fits, then the channel is
        // closed for everyone.
        assert_eq!(app.send_sms("77011239998").await.0, 200, "{name}");
        let capped = app.send_sms("77011239999").await;
        assert_error_for(format!("{name}: channel cap"), &capped, 429, "rate_limited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_without_or_with_a_wrong_secret_is_401_and_sends_nothing() {
    for (name, store, _backing) in stores() {
        let app = app_on(store, "[telegram]\nwebhook_secret = \"right-secret\"\n").await;
        let update = json!({"update_id": 9, "message": {"message_id": 1, "date": 0,
            "chat": {"id": 31, "type": "private"}, "from": {"id": 31, "is_bot": false, "first_name": "A"}, "text": "hi"}});
        for secret in [None, Some("wrong-secret"), Some("")] {
            let (status, _) = app.telegram_webhook(secret, update.clone()).await;
            assert_eq!(status, 401, "{name}: {secret:?}");
        }
        assert!(app.sent().is_empty(), "{name}");
    }
}
