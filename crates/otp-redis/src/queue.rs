//! A [`Sender`] that delivers nothing itself: it appends each message as a
//! JSON job to a Redis Stream, for an external sender service to consume
//! (with a consumer group, `XREADGROUP` and `XACK`).
//!
//! Each message is one `XADD <stream> MAXLEN ~ <maxlen> * job <json>`: one
//! entry with a single field, `job`, whose value is a JSON object:
//!
//! ```json
//! {
//!   "id": "9f86d081884c7d65",
//!   "channel": "sms",
//!   "to": "+77011234567",
//!   "subject": null,
//!   "body": "Your code is 123456",
//!   "created_at": 1767225600000
//! }
//! ```
//!
//! - `id`: 16 lowercase hex characters (64 random bits), unique per job,
//!   so a consumer can drop a job it already delivered.
//! - `channel`: `sms`, `call`, `email` or `telegram`.
//! - `to`: the address on that channel: an E.164 phone with `+`, a
//!   lower-cased email, or a Telegram chat id (an integer, as a string).
//! - `subject`: a string for email, else `null`.
//! - `body`: the text to deliver, as is.
//! - `created_at`: when otpd queued the job, in Unix milliseconds.
//!
//! The body holds the code, so the stream is as sensitive as the codes
//! themselves: give Redis a password (and TLS off loopback), keep the
//! stream out of reach of anything but the consumer, and let the consumer
//! `XDEL` (or rely on the `MAXLEN` cap to trim) delivered jobs.
//!
//! A send succeeds once Redis has the entry; whether the consumer ever
//! delivers it is beyond otpd. A job that arrives after its code expired
//! is harmless: the code is no longer accepted.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::ports::{Clock, Delivered, OutgoingMessage, Sender, SystemClock};
use otp_domain::{DeliveryError, FieldError, FieldProblem};
use redis::IntoConnectionInfo;
use serde::Deserialize;

use crate::config::redact_url;
use crate::stream::StreamWriter;
use crate::RedisStoreError;

/// Where to queue jobs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// The Redis holding the stream,
    /// `redis://[user:password@]host:port[/db]` (or `rediss://`). Required.
    pub url: String,
    /// The stream's key. Default `otpd:outbox`.
    pub stream: String,
    /// Approximate cap on the stream's length (`MAXLEN ~`): older entries
    /// are trimmed in whole blocks, so the length may exceed it by up to
    /// one block (100 entries by default). `0` turns trimming off.
    /// Default 100000.
    pub maxlen: u64,
    /// The whole budget of one send: get a connection, then XADD.
    /// Default 2000.
    pub timeout_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            url: String::new(),
            stream: "otpd:outbox".to_owned(),
            maxlen: 100_000,
            timeout_ms: 2000,
        }
    }
}

impl QueueConfig {
    /// Checks every key, naming the first bad one.
    ///
    /// # Errors
    /// The first bad field, named within this section (`url`).
    pub fn validate(&self) -> Result<(), FieldError> {
        let fail = |field: &'static str, problem| Err(FieldError::new(field, problem));
        if self.url.trim().is_empty() {
            return fail("url", FieldProblem::Required);
        }
        if self.url.as_str().into_connection_info().is_err() {
            return fail(
                "url",
                FieldProblem::Must("be a redis:// or rediss:// URL".into()),
            );
        }
        if self.stream.is_empty() {
            return fail("stream", FieldProblem::Must("not be empty".into()));
        }
        if self.timeout_ms == 0 {
            return fail("timeout_ms", FieldProblem::AtLeast(1));
        }
        Ok(())
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

// The URL may carry a password, and config is logged at start.
impl fmt::Debug for QueueConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueConfig")
            .field("url", &redact_url(&self.url))
            .field("stream", &self.stream)
            .field("maxlen", &self.maxlen)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// A [`Sender`] that queues jobs on a Redis Stream; see the module doc
/// for the job format. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisQueueSender {
    writer: std::sync::Arc<StreamWriter>,
}

impl RedisQueueSender {
    /// A sender on the standalone Redis at `config.url`. Connects lazily:
    /// a Redis that is down now makes sends fail, not this.
    ///
    /// # Errors
    /// `RedisStoreError::Setting` for a bad setting (see
    /// [`QueueConfig::validate`]), `Url` when redis-rs refuses the URL.
    pub fn new(config: &QueueConfig) -> Result<Self, RedisStoreError> {
        config.validate().map_err(RedisStoreError::Setting)?;
        // A connection that broke in an outage is replaced by the send
        // after the one that found it broken (see `link`). When the
        // budget runs out after Redis got the XADD, the job may be queued
        // anyway; a retry then queues a second job with the same code,
        // which is harmless.
        let writer = StreamWriter::new(
            &config.url,
            config.stream.clone(),
            config.maxlen,
            config.timeout(),
        )?;
        Ok(RedisQueueSender {
            writer: std::sync::Arc::new(writer),
        })
    }
}

/// The JSON of one job, as the module doc describes it.
fn job_json(id: &str, message: &OutgoingMessage, created_at: u64) -> String {
    serde_json::json!({
        "id": id,
        "channel": message.destination.channel().as_str(),
        "to": message.destination.address(),
        "subject": message.subject,
        "body": message.body,
        "created_at": created_at,
    })
    .to_string()
}

/// 16 hex characters from 64 random bits.
fn job_id() -> String {
    let mut bytes = [0u8; 8];
    rand::fill(&mut bytes);
    otp_domain::hex::encode(&bytes)
}

#[async_trait]
impl Sender for RedisQueueSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let sent: Result<(), DeliveryError> = async {
            let job = job_json(&job_id(), message, SystemClock.now());
            self.writer
                .xadd(&[("job", job.as_bytes())])
                .await
                .map_err(DeliveryError::from)
        }
        .await;
        sent.map(|()| Delivered::by("redis-queue"))
    }
}

impl fmt::Debug for RedisQueueSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueueSender")
            .field("writer", &self.writer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use otp_domain::{Channel, Destination};

    use super::*;

    fn config_from(json: &str) -> Result<QueueConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn only_the_url_is_needed_and_the_rest_takes_defaults() {
        let config = config_from(r#"{"url": "redis://queue:6379/1"}"#).expect("valid");
        assert_eq!(config.stream, "otpd:outbox");
        assert_eq!(config.maxlen, 100_000);
        assert_eq!(config.timeout_ms, 2000);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn a_misspelt_key_is_an_error() {
        let err = config_from(r#"{"url": "redis://q", "max_len": 5}"#).expect_err("unknown");
        assert!(err.to_string().contains("max_len"), "{err}");
    }

    #[test]
    fn validate_names_the_bad_key() {
        let with = |f: fn(&mut QueueConfig)| {
            let mut c = QueueConfig {
                url: "redis://127.0.0.1:6379".to_owned(),
                ..QueueConfig::default()
            };
            f(&mut c);
            c.validate().expect_err("invalid")
        };
        assert_eq!(
            QueueConfig::default().validate(),
            Err(FieldError::new("url", FieldProblem::Required))
        );
        assert_eq!(with(|c| c.url = "http://q".to_owned()).field, "url");
        assert_eq!(with(|c| c.stream.clear()).field, "stream");
        assert_eq!(with(|c| c.timeout_ms = 0).field, "timeout_ms");
        let err = RedisQueueSender::new(&QueueConfig::default()).map(|_| ());
        assert!(matches!(err, Err(RedisStoreError::Setting(_))), "{err:?}");
    }

    #[test]
    fn debug_output_hides_the_password_in_the_url() {
        let config = QueueConfig {
            url: "redis://app:s3cret@queue:6379/1".to_owned(),
            ..QueueConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redis://***@queue:6379/1"), "{shown}");
        let sender = RedisQueueSender::new(&config).expect("builds without connecting");
        let shown = format!("{sender:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("otpd:outbox"), "{shown}");
    }

    #[test]
    fn a_job_is_the_documented_json_object() {
        let message = OutgoingMessage {
            verification: None,
            destination: Destination::parse(Channel::Email, "Ann@Example.kz").expect("email"),
            subject: Some("Your code".to_owned()),
            body: "Code: 4821 \"quoted\"".to_owned(),
            code: otp_domain::Code::parse("1234").expect("code"),
            locale: None,
        };
        let job: serde_json::Value =
            serde_json::from_str(&job_json("00ff00ff00ff00ff", &message, 42)).expect("json");
        assert_eq!(
            job,
            serde_json::json!({
                "id": "00ff00ff00ff00ff",
                "channel": "email",
                "to": "ann@example.kz",
                "subject": "Your code",
                "body": "Code: 4821 \"quoted\"",
                "created_at": 42,
            })
        );
    }

    #[test]
    fn job_ids_are_16_hex_characters_and_differ() {
        let (a, b) = (job_id(), job_id());
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{a}");
        assert_ne!(a, b);
    }
}
