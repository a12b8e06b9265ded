//! The sinks an event goes to: a Standard Webhooks signed POST, or an
//! XADD to a Redis Stream. A sink only delivers; which events it still
//! owes and when to try again is the dispatcher's business.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::ports::Clock;
use otp_domain::EventType;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use secrecy::{ExposeSecret, SecretBox, SecretString};

use super::cloud::CONTENT_TYPE;
use super::sign::signature;

/// One event, ready to go: its id, type and CloudEvent JSON.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub kind: EventType,
    pub body: Vec<u8>,
}

/// Why a sink did not take an event. Never holds a URL or a secret.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    #[error("the request failed")]
    Http(#[source] reqwest::Error),
    #[error("Redis refused or failed the XADD")]
    Redis(#[source] redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Where events go.
#[async_trait]
pub trait Deliver: Send + Sync {
    /// Hands `message` over. `Ok` means the receiver has it (a 2xx, an
    /// entry id); an error means try again later.
    async fn deliver(&self, message: &Message) -> Result<(), SinkError>;
}

/// The `webhook` sink.
pub struct WebhookSink {
    client: reqwest::Client,
    url: SecretString,
    key: Arc<SecretBox<Vec<u8>>>,
    clock: Arc<dyn Clock>,
}

impl WebhookSink {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        url: SecretString,
        key: Arc<SecretBox<Vec<u8>>>,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, otp_http::ClientError> {
        Ok(WebhookSink {
            client: otp_http::client(timeout)?,
            url,
            key,
            clock,
        })
    }
}

#[async_trait]
impl Deliver for WebhookSink {
    /// POSTs the CloudEvent with `content-type:
    /// application/cloudevents+json` and the Standard Webhooks headers:
    /// `webhook-id` (the event id, the same on every try),
    /// `webhook-timestamp` (Unix seconds, now) and `webhook-signature`.
    async fn deliver(&self, message: &Message) -> Result<(), SinkError> {
        let timestamp = self.clock.now() / 1000;
        let sig = signature(
            self.key.expose_secret(),
            &message.id,
            timestamp,
            &message.body,
        );
        let answer = self
            .client
            .post(self.url.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sig)
            .body(message.body.clone())
            .send()
            .await
            // The URL may carry a token: it stays out of the error.
            .map_err(|e| SinkError::Http(e.without_url()))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SinkError::Status(status.as_u16()))
        }
    }
}

/// The `redis-stream` sink: `XADD <stream> [MAXLEN ~ n] * id <event id>
/// type <event type> event <CloudEvent JSON>` on one multiplexed
/// connection, opened on first use and again after a failure.
pub struct RedisStreamSink {
    client: Client,
    config: AsyncConnectionConfig,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    stream: String,
    maxlen: u64,
}

impl RedisStreamSink {
    /// Connects lazily: a Redis that is down now delays delivery, not
    /// the start.
    ///
    /// # Errors
    /// When redis-rs refuses the URL.
    pub fn new(
        url: &SecretString,
        stream: String,
        maxlen: u64,
        timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        if url.expose_secret().starts_with("rediss://") {
            // redis-rs names no rustls crypto provider; otp-redis picks
            // the same one.
            let _already = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        Ok(RedisStreamSink {
            client: Client::open(url.expose_secret())?,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
            connection: tokio::sync::Mutex::new(None),
            stream,
            maxlen,
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

#[async_trait]
impl Deliver for RedisStreamSink {
    async fn deliver(&self, message: &Message) -> Result<(), SinkError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream);
        if self.maxlen > 0 {
            cmd.arg("MAXLEN").arg("~").arg(self.maxlen);
        }
        cmd.arg("*")
            .arg("id")
            .arg(&message.id)
            .arg("type")
            .arg(message.kind.as_str())
            .arg("event")
            .arg(&message.body);
        let result = match self.connection().await {
            Ok(mut conn) => cmd.query_async::<String>(&mut conn).await,
            Err(e) => Err(e),
        };
        result.map(|_| ()).map_err(|e| {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                // The next delivery opens a new connection.
                if let Ok(mut slot) = self.connection.try_lock() {
                    *slot = None;
                }
            }
            SinkError::Redis(e)
        })
    }
}
