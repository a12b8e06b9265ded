//! The Redis Stream queue sender against a real redis-server, read back
//! the way an external sender service would: a consumer group,
//! `XREADGROUP` and `XACK`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use otp_domain::ports::{OutgoingMessage, Sender};
use otp_domain::{Channel, Destination};
use otp_redis::{QueueConfig, RedisQueueSender};
use otp_testkit::chain_text;
use otp_testkit::redis::RedisServer;
use serde_json::Value;
use support::{connection, create_group, now_ms};

mod support;

const STREAM: &str = "otpd:outbox";

/// `XREADGROUP`'s reply: per stream, its entries as (id, fields).
type ReadReply = Vec<(String, Vec<(String, HashMap<String, String>)>)>;

fn config(server: &RedisServer) -> QueueConfig {
    QueueConfig {
        url: server.url(),
        ..QueueConfig::default()
    }
}

fn message(channel: Channel, to: &str, subject: Option<&str>, body: &str) -> OutgoingMessage {
    let destination = Destination::parse(channel, to).expect("valid destination");
    OutgoingMessage {
        subject: subject.map(str::to_owned),
        ..otp_testkit::outgoing(destination, body)
    }
}

/// The job field of every entry in the stream, oldest first.
async fn all_jobs(conn: &mut redis::aio::MultiplexedConnection) -> Vec<Value> {
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    entries
        .iter()
        .map(|(_, fields)| serde_json::from_str(&fields["job"]).expect("job is JSON"))
        .collect()
}

#[tokio::test]
async fn a_consumer_group_reads_one_exact_job_per_channel() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    create_group(&mut conn, STREAM, "g", "0").await;
    let sender = RedisQueueSender::new(&config(&server)).expect("sender");
    let messages = [
        message(Channel::Sms, "77011234567", None, "Your code: 4821"),
        message(Channel::Call, "+7 701 765-43-21", None, "4 8 2 1"),
        message(
            Channel::Email,
            "Ann@Example.kz",
            Some("Код подтверждения"),
            "Код: 4821\n\"otpd\" \\ <b>",
        ),
        message(Channel::Telegram, "-1001234567890", None, "AB7K-92QX"),
    ];

    let before = now_ms();
    for m in &messages {
        sender.send(m).await.expect("queued");
    }
    let after = now_ms();

    let reply: ReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("c")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query_async(&mut conn)
        .await
        .expect("XREADGROUP");
    assert_eq!(reply.len(), 1);
    let (stream, entries) = &reply[0];
    assert_eq!(stream, STREAM);
    assert_eq!(entries.len(), messages.len());

    let expected = [
        ("sms", "+77011234567", Value::Null, "Your code: 4821"),
        ("call", "+77017654321", Value::Null, "4 8 2 1"),
        (
            "email",
            "ann@example.kz",
            Value::from("Код подтверждения"),
            "Код: 4821\n\"otpd\" \\ <b>",
        ),
        ("telegram", "-1001234567890", Value::Null, "AB7K-92QX"),
    ];
    let mut job_ids = Vec::new();
    for ((_, fields), (channel, to, subject, body)) in entries.iter().zip(expected) {
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["job"], "{fields:?}");
        let job: Value = serde_json::from_str(&fields["job"]).expect("job is JSON");
        let id = job["id"].as_str().expect("id is a string").to_owned();
        assert_eq!(id.len(), 16, "{id}");
        assert!(
            id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{id}"
        );
        let created_at = job["created_at"].as_u64().expect("created_at is a u64");
        assert!(
            (before..=after).contains(&created_at),
            "{created_at} not in {before}..={after}"
        );
        assert_eq!(
            job,
            serde_json::json!({
                "id": id,
                "channel": channel,
                "to": to,
                "subject": subject,
                "body": body,
                "created_at": created_at,
            })
        );
        job_ids.push(id);
    }
    job_ids.sort();
    job_ids.dedup();
    assert_eq!(job_ids.len(), messages.len(), "job ids repeat");

    let mut ack = redis::cmd("XACK");
    ack.arg(STREAM).arg("g");
    for (entry_id, _) in entries {
        ack.arg(entry_id);
    }
    let acked: usize = ack.query_async(&mut conn).await.expect("XACK");
    assert_eq!(acked, messages.len());
    let (pending, ..): (usize, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg("g")
        .query_async(&mut conn)
        .await
        .expect("XPENDING");
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn maxlen_keeps_the_stream_bounded_and_drops_the_oldest_jobs() {
    let server = RedisServer::start();
    let maxlen = 10;
    let sent = 300;
    let sender = RedisQueueSender::new(&QueueConfig {
        maxlen,
        ..config(&server)
    })
    .expect("sender");
    for i in 0..sent {
        let m = message(Channel::Sms, "77011234567", None, &format!("code {i}"));
        sender.send(&m).await.expect("queued");
    }

    // `MAXLEN ~` trims whole blocks of entries only, so the stream keeps
    // at least `maxlen` and at most one block (100 entries, Redis's
    // default `stream-node-max-entries`) beyond it. Untrimmed it would
    // hold all 300.
    let mut conn = connection(&server).await;
    let len: u64 = redis::cmd("XLEN")
        .arg(STREAM)
        .query_async(&mut conn)
        .await
        .expect("XLEN");
    assert!((maxlen..=maxlen + 100).contains(&len), "XLEN {len}");
    let jobs = all_jobs(&mut conn).await;
    let last = format!("code {}", sent - 1);
    assert_eq!(jobs.last().map(|j| &j["body"]), Some(&Value::from(last)));
    assert_ne!(jobs[0]["body"], "code 0", "the oldest job was not trimmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_gives_a_transient_error_quickly() {
    let mut server = RedisServer::start();
    let sender = RedisQueueSender::new(&config(&server)).expect("sender");
    let m = message(Channel::Sms, "77011234567", None, "Your code: 4821");
    // Warm the pool, so the outage meets an open connection first.
    sender.send(&m).await.expect("queued");

    server.kill();
    for _ in 0..2 {
        let started = Instant::now();
        let err = sender.send(&m).await.expect_err("redis is gone");
        let took = started.elapsed();
        assert!(err.transient, "{err:?}");
        assert_eq!(err.provider, "redis-queue");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert!(!chain_text(&err).contains("4821"), "{}", chain_text(&err));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_gives_a_transient_error_within_timeout_ms() {
    // Accepts connections and never replies: only the timeout ends it.
    let port = otp_testkit::silent_port();
    let sender = RedisQueueSender::new(&QueueConfig {
        url: format!("redis://127.0.0.1:{port}"),
        timeout_ms: 500,
        ..QueueConfig::default()
    })
    .expect("sender");
    let started = Instant::now();
    let err = sender
        .send(&message(
            Channel::Sms,
            "77011234567",
            None,
            "Your code: 4821",
        ))
        .await
        .expect_err("no answer");
    let took = started.elapsed();
    assert!(err.transient, "{err:?}");
    assert!(took < Duration::from_millis(1_500), "took {took:?}");
}

#[tokio::test]
async fn a_key_of_the_wrong_type_gives_a_permanent_error_without_the_body() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    let _: () = redis::cmd("SET")
        .arg(STREAM)
        .arg("not a stream")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let sender = RedisQueueSender::new(&config(&server)).expect("sender");

    let err = sender
        .send(&message(
            Channel::Email,
            "ann@example.kz",
            Some("Subject 7391"),
            "Your code: 4821",
        ))
        .await
        .expect_err("WRONGTYPE");
    assert!(!err.transient, "{err:?}");
    assert_eq!(err.provider, "redis-queue");
    assert!(err.reason.contains("WRONGTYPE"), "{}", err.reason);
    let text = chain_text(&err);
    assert!(!text.contains("4821"), "{text}");
    assert!(!text.contains("7391"), "{text}");
}
