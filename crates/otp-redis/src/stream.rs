//! Appending to a Redis Stream, written once: the queue sender
//! ([`crate::queue`]) and the events sink ([`RedisStreamSink`]) are both
//! an `XADD <stream> [MAXLEN ~ n] * field value …` on one shared
//! multiplexed connection, opened on first use and again after a failure
//! (see `link`), within a time budget.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::ports::{EventMessage, EventSink, SinkError};
use redis::{AsyncConnectionConfig, Client};

use crate::config::redact_url;
use crate::link::{Connector, Link};
use crate::RedisStoreError;

/// One shared connection pipelines the XADDs of concurrent calls.
const CONNECTIONS: usize = 1;

/// Appends entries to one stream of a standalone Redis.
pub(crate) struct StreamWriter {
    link: Link,
    url: String,
    stream: String,
    maxlen: u64,
    timeout: Duration,
}

impl StreamWriter {
    /// Connects lazily: a Redis that is down now fails the appends, not
    /// this.
    ///
    /// # Errors
    /// `Url` when redis-rs refuses the URL.
    pub(crate) fn new(
        url: &str,
        stream: String,
        maxlen: u64,
        timeout: Duration,
    ) -> Result<Self, RedisStoreError> {
        crate::prepare_tls([url]);
        let client = Client::open(url).map_err(RedisStoreError::Url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Ok(StreamWriter {
            link: Link::new(
                Connector::Standalone { client, config },
                CONNECTIONS,
                timeout,
            ),
            url: url.to_owned(),
            stream,
            maxlen,
            timeout,
        })
    }

    /// `XADD` of one entry with `fields`, within the time budget. When
    /// the budget runs out after Redis got the command, the entry may be
    /// there anyway: callers retry, so readers must take duplicates.
    pub(crate) async fn xadd(&self, fields: &[(&str, &[u8])]) -> Result<(), RedisStoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream);
        if self.maxlen > 0 {
            cmd.arg("MAXLEN").arg("~").arg(self.maxlen);
        }
        cmd.arg("*");
        for (field, value) in fields {
            cmd.arg(*field).arg(*value);
        }
        let call = self
            .link
            .run(|mut conn| async move { cmd.query_async::<String>(&mut conn).await });
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| RedisStoreError::Timeout(self.timeout))??;
        Ok(())
    }
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter")
            .field("url", &redact_url(&self.url))
            .field("stream", &self.stream)
            .field("maxlen", &self.maxlen)
            .field("timeout", &self.timeout)
            .field("open_connections", &self.link.open())
            .finish()
    }
}

/// The events `redis-stream` sink: each event is `XADD <stream> [MAXLEN ~
/// n] * id <event id> type <event type> event <CloudEvent JSON>`.
#[derive(Debug)]
pub struct RedisStreamSink {
    writer: StreamWriter,
}

impl RedisStreamSink {
    /// A sink on the standalone Redis at `url`. Connects lazily: a Redis
    /// that is down now delays delivery, not the start.
    ///
    /// # Errors
    /// `Url` when redis-rs refuses the URL.
    pub fn new(
        url: &str,
        stream: String,
        maxlen: u64,
        timeout: Duration,
    ) -> Result<Self, RedisStoreError> {
        Ok(RedisStreamSink {
            writer: StreamWriter::new(url, stream, maxlen, timeout)?,
        })
    }
}

#[async_trait]
impl EventSink for RedisStreamSink {
    async fn deliver(&self, message: &EventMessage) -> Result<(), SinkError> {
        self.writer
            .xadd(&[
                ("id", message.id.as_bytes()),
                ("type", message.kind.as_str().as_bytes()),
                ("event", &message.body),
            ])
            .await
            .map_err(|e| SinkError::Failed(Box::new(e)))
    }
}
