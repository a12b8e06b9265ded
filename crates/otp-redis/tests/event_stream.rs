//! The events `redis-stream` sink against a real redis-server, read back
//! the way an events consumer would: a consumer group and `XREADGROUP`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use otp_domain::ports::{EventMessage, EventSink, SinkError};
use otp_domain::EventType;
use otp_redis::RedisStreamSink;
use otp_testkit::redis::RedisServer;
use support::{connection, create_group};

mod support;

const STREAM: &str = "otpd:events";

type ReadReply = Vec<(String, Vec<(String, HashMap<String, String>)>)>;

fn event(n: usize, kind: EventType) -> EventMessage {
    EventMessage {
        id: format!("evt_ver{n}_1"),
        kind,
        body: format!(
            r#"{{"specversion":"1.0","id":"evt_ver{n}_1","type":"{}"}}"#,
            kind.as_str()
        )
        .into_bytes(),
    }
}

#[tokio::test]
async fn a_consumer_group_reads_each_event_with_its_id_type_and_cloud_event() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    create_group(&mut conn, STREAM, "app", "$").await;
    let sink = RedisStreamSink::new(&server.url(), STREAM.into(), 0, Duration::from_secs(2))
        .expect("sink");
    let sent = [
        event(1, EventType::Pending),
        event(2, EventType::Approved),
        event(3, EventType::Expired),
    ];
    for e in &sent {
        sink.deliver(e).await.expect("delivered");
    }

    let read: ReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("app")
        .arg("c1")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query_async(&mut conn)
        .await
        .expect("XREADGROUP");
    let entries: Vec<HashMap<String, String>> = read
        .into_iter()
        .flat_map(|(_, entries)| entries)
        .map(|(_, fields)| fields)
        .collect();
    assert_eq!(entries.len(), 3, "{entries:#?}");
    for (got, want) in entries.iter().zip(&sent) {
        assert_eq!(got.len(), 3, "exactly id, type and event: {got:?}");
        assert_eq!(got["id"], want.id);
        assert_eq!(got["type"], want.kind.as_str());
        let ce: serde_json::Value = serde_json::from_str(&got["event"]).expect("JSON");
        assert_eq!(ce["id"], want.id.as_str());
    }
}

#[tokio::test]
async fn maxlen_keeps_the_events_stream_bounded() {
    let server = RedisServer::start();
    let sink = RedisStreamSink::new(&server.url(), STREAM.into(), 10, Duration::from_secs(2))
        .expect("sink");
    for n in 0..500 {
        sink.deliver(&event(n, EventType::Pending))
            .await
            .expect("delivered");
    }
    let mut conn = connection(&server).await;
    let len: usize = redis::cmd("XLEN")
        .arg(STREAM)
        .query_async(&mut conn)
        .await
        .expect("XLEN");
    // `MAXLEN ~` trims in whole blocks of 100 entries.
    assert!((10..=110).contains(&len), "{len}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_fails_the_delivery_quickly_and_a_new_redis_takes_the_next() {
    let mut server = RedisServer::start();
    let url = format!("redis://:hunter2secret@127.0.0.1:{}", server.port());
    let sink = RedisStreamSink::new(&server.url(), STREAM.into(), 0, Duration::from_secs(1))
        .expect("sink");
    sink.deliver(&event(1, EventType::Pending))
        .await
        .expect("delivered");

    server.kill();
    let started = Instant::now();
    let err = sink
        .deliver(&event(2, EventType::Pending))
        .await
        .expect_err("redis is gone");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, SinkError::Failed(_)), "{err:?}");
    server.restart();
    sink.deliver(&event(2, EventType::Pending))
        .await
        .expect("the next delivery opens a new connection");
    let mut conn = connection(&server).await;
    let len: usize = redis::cmd("XLEN")
        .arg(STREAM)
        .query_async(&mut conn)
        .await
        .expect("XLEN");
    assert_eq!(
        len, 1,
        "the restarted Redis keeps nothing on disk: only the retry"
    );
    server.kill();

    // The URL's password never reaches the error.
    let with_password =
        RedisStreamSink::new(&url, STREAM.into(), 0, Duration::from_millis(300)).expect("sink");
    let err = with_password
        .deliver(&event(3, EventType::Pending))
        .await
        .expect_err("redis is gone");
    let text = format!("{err:?} {}", otp_domain::error::chain(&err));
    assert!(!text.contains("hunter2secret"), "{text}");
    assert!(!format!("{with_password:?}").contains("hunter2secret"));
}
