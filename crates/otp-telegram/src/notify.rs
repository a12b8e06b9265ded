//! A sender for 1flx/http-telegram-notify, the relay the seed image used:
//! it holds the bot token and takes
//! `POST /msg` with header `X-Auth-Token` and JSON
//! `{"to": <chat id>, "message": "…", "silent": false}`.
//!
//! That service answers HTTP 500 even after a successful send (it writes
//! the status after `bot.Send`, ignoring its result, and the body starts
//! with `Sent message`). So a 500 whose body starts with `Sent message` is
//! taken as delivered; the generic gateway cannot tell that apart and
//! would retry, sending the code twice.

use otp_domain::ports::Delivered;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::{DeliveryError, FieldError, FieldProblem, OutgoingMessage, Sender};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Client;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::TelegramError;
use crate::http::{chat_of, client_error, transport_error};
use crate::DEFAULT_TIMEOUT_SECS;

/// The provider name in errors.
pub const PROVIDER: &str = "telegram-notify";

const AUTH_HEADER: HeaderName = HeaderName::from_static("x-auth-token");

/// Where the relay listens and its shared token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpNotifyConfig {
    /// The relay's endpoint, `http://telegram-notify:8080/msg`. Required.
    pub url: String,
    /// Sent as `X-Auth-Token` (the relay's `APP_TOKEN`); a secret. When
    /// unset or empty, no header is sent.
    #[serde(default)]
    pub app_token: Option<SecretString>,
    /// Deliver without sound or vibration. Default false.
    #[serde(default)]
    pub silent: bool,
    /// Seconds a request may take. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

impl HttpNotifyConfig {
    pub fn new(url: impl Into<String>) -> Self {
        HttpNotifyConfig {
            url: url.into(),
            app_token: None,
            silent: false,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
        }
    }

    /// Checks every key once, at start-up.
    ///
    /// # Errors
    /// The first bad field, named within this section (`url`).
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.url.trim().is_empty() {
            return Err(FieldError::new("url", FieldProblem::Required));
        }
        if !otp_http::is_http_url(&self.url) {
            return Err(FieldError::new("url", FieldProblem::NotHttpUrl));
        }
        if let Some(token) = self.app_token() {
            if HeaderValue::from_str(token).is_err() {
                return Err(FieldError::new(
                    "app_token",
                    FieldProblem::Must("be visible ASCII without line breaks".into()),
                ));
            }
        }
        if self.timeout_secs == 0 {
            return Err(FieldError::new("timeout_secs", FieldProblem::AtLeast(1)));
        }
        Ok(())
    }

    fn app_token(&self) -> Option<&str> {
        self.app_token
            .as_ref()
            .map(ExposeSecret::expose_secret)
            .filter(|t| !t.is_empty())
    }
}

/// Sends codes to Telegram chats through an http-telegram-notify relay.
pub struct HttpNotifySender {
    client: Client,
    url: String,
    app_token: Option<HeaderValue>,
    silent: bool,
    timeout: Duration,
}

impl fmt::Debug for HttpNotifySender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpNotifySender")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct NotifyMessage<'a> {
    to: i64,
    message: &'a str,
    silent: bool,
}

impl HttpNotifySender {
    /// Validates `config` and builds the client.
    ///
    /// # Errors
    /// [`TelegramError::Setting`] naming the bad field;
    /// [`TelegramError::Client`] when the HTTP client cannot be built.
    pub fn new(config: HttpNotifyConfig) -> Result<Self, TelegramError> {
        config.validate().map_err(TelegramError::Setting)?;
        let timeout = Duration::from_secs(config.timeout_secs);
        let app_token = match config.app_token() {
            Some(t) => {
                let mut v = HeaderValue::from_str(t).map_err(|_| {
                    TelegramError::Config("notify.app_token is not a header value".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(HttpNotifySender {
            client: otp_http::client(timeout).map_err(client_error(PROVIDER))?,
            url: config.url,
            app_token,
            silent: config.silent,
            timeout,
        })
    }

    /// Sends one message, with this crate's own error type.
    ///
    /// # Errors
    /// See [`TelegramError`]: [`TelegramError::Status`] for a refusal.
    pub async fn deliver(&self, message: &OutgoingMessage) -> Result<(), TelegramError> {
        let chat = chat_of(PROVIDER, message)?;
        let mut request = self.client.post(&self.url).json(&NotifyMessage {
            to: chat,
            message: &message.body,
            silent: self.silent,
        });
        if let Some(token) = &self.app_token {
            request = request.header(AUTH_HEADER, token.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(PROVIDER, self.timeout, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = otp_http::parse_retry_after(response.headers());
        if status.as_u16() == 500 {
            // The relay's quirk: see the module doc.
            let body = response.bytes().await.unwrap_or_default();
            if body.starts_with(b"Sent message ") {
                return Ok(());
            }
        }
        Err(TelegramError::Status {
            provider: PROVIDER,
            status: status.as_u16(),
            retry_after,
        })
    }
}

#[async_trait]
impl Sender for HttpNotifySender {
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        self.deliver(message).await?;
        Ok(Delivered::by("notify"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validates_and_hides_the_token() {
        let c: HttpNotifyConfig =
            serde_json::from_str(r#"{"url":"http://notify:8080/msg","app_token":"relay-secret"}"#)
                .expect("parses");
        assert_eq!(c.validate(), Ok(()));
        assert!(!c.silent);
        assert_eq!(c.timeout_secs, 10);
        assert!(!format!("{c:?}").contains("relay-secret"));
        assert_eq!(
            HttpNotifyConfig::new("").validate(),
            Err(FieldError::new("url", FieldProblem::Required))
        );
        assert_eq!(
            HttpNotifyConfig::new("notify:8080").validate(),
            Err(FieldError::new("url", FieldProblem::NotHttpUrl))
        );
    }
}
