//! The `webhook` sink: a Standard Webhooks signed POST of the CloudEvent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::ports::{Clock, EventMessage, EventSink, SinkError};
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::cloud::CONTENT_TYPE;
use crate::sign::signature;

/// POSTs events to one URL.
pub struct WebhookSink {
    client: reqwest::Client,
    url: SecretString,
    key: Arc<SecretBox<Vec<u8>>>,
    clock: Arc<dyn Clock>,
}

impl WebhookSink {
    /// `key` is the decoded part of the `whsec_` secret.
    ///
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
impl EventSink for WebhookSink {
    /// POSTs the CloudEvent with `content-type:
    /// application/cloudevents+json` and the Standard Webhooks headers:
    /// `webhook-id` (the event id, the same on every try),
    /// `webhook-timestamp` (Unix seconds, now) and `webhook-signature`.
    async fn deliver(&self, message: &EventMessage) -> Result<(), SinkError> {
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
            .map_err(|e| SinkError::Failed(Box::new(e.without_url())))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SinkError::Status(status.as_u16()))
        }
    }
}
