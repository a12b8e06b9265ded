//! The WhatsApp Cloud API (Meta): an approved **authentication template**
//! with a copy-code button, whose text WhatsApp fixes ("*123456* is your
//! verification code.").
//!
//! `POST {base_url}/{api_version}/{phone_number_id}/messages` with
//! `Authorization: Bearer {access_token}` and
//! `{"messaging_product":"whatsapp","recipient_type":"individual","to":"+…",
//! "type":"template","template":{"name":…,"language":{"policy":"deterministic","code":…},
//! "components":[{"type":"body","parameters":[{"type":"text","text":CODE}]},
//! {"type":"button","sub_type":"url","index":"0","parameters":[{"type":"text","text":CODE}]}]}}`.
//!
//! With the verification's id in `biz_opaque_callback_data`, which Meta
//! echoes in its status reports on the message.
//!
//! The answer `{"messages":[{"id":"wamid…"}]}` names the message; an
//! error `{"error":{"code":…,"message":…}}` keeps only its code, whose
//! meaning [`MetaError`] says (the message may quote the number).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::ports::Delivered;
use otp_domain::{DeliveryError, Destination, FieldError, FieldProblem, OutgoingMessage, Sender};
use reqwest::Client;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::error::{client_error, from_reqwest, GatewayError};
use crate::DEFAULT_TIMEOUT_SECS;

pub use crate::error::MetaError;

/// The provider name in errors and metrics.
pub const PROVIDER: &str = crate::error::META;

/// `[whatsapp.meta]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaConfig {
    /// The sending number's id in the WhatsApp Business account. Required.
    pub phone_number_id: String,
    /// A system user's access token. Required; a secret.
    pub access_token: SecretString,
    /// The approved authentication template's name. Required.
    pub template: String,
    /// The template's language code. Default `en`.
    #[serde(default = "default_language")]
    pub language: String,
    /// Default `v21.0`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Default `https://graph.facebook.com`; tests point it at loopback.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Seconds a request may take. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The app secret that signs the status webhook (`X-Hub-Signature-256`).
    #[serde(default = "empty_secret")]
    pub app_secret: SecretString,
    /// The token Meta's subscription handshake echoes.
    #[serde(default = "empty_secret")]
    pub verify_token: SecretString,
}

fn default_language() -> String {
    "en".to_owned()
}
fn default_api_version() -> String {
    "v21.0".to_owned()
}
fn default_base_url() -> String {
    "https://graph.facebook.com".to_owned()
}
fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}
fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

impl MetaConfig {
    /// A config with the defaults and the three required keys.
    pub fn new(
        phone_number_id: impl Into<String>,
        access_token: impl Into<String>,
        template: impl Into<String>,
    ) -> Self {
        MetaConfig {
            phone_number_id: phone_number_id.into(),
            access_token: SecretString::from(access_token.into()),
            template: template.into(),
            language: default_language(),
            api_version: default_api_version(),
            base_url: default_base_url(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            app_secret: empty_secret(),
            verify_token: empty_secret(),
        }
    }

    /// Checks every key once, at start-up.
    ///
    /// # Errors
    /// The first bad field, named within this section.
    pub fn validate(&self) -> Result<(), FieldError> {
        let fail = |field: &'static str, problem| Err(FieldError::new(field, problem));
        if self.phone_number_id.trim().is_empty() {
            return fail("phone_number_id", FieldProblem::Required);
        }
        // It goes into the URL path.
        if !self.phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
            return fail(
                "phone_number_id",
                FieldProblem::Must("be the number's id: digits only".into()),
            );
        }
        if self.access_token.expose_secret().is_empty() {
            return fail("access_token", FieldProblem::Required);
        }
        if self.template.trim().is_empty() {
            return fail("template", FieldProblem::Required);
        }
        let lang_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !lang_ok(&self.language) {
            return fail(
                "language",
                FieldProblem::Must("be a template language code such as en or pt_BR".into()),
            );
        }
        let version_ok = self.api_version.starts_with('v')
            && self.api_version[1..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.')
            && self.api_version.len() > 1;
        if !version_ok {
            return fail(
                "api_version",
                FieldProblem::Must("be a Graph API version such as v21.0".into()),
            );
        }
        if !otp_http::is_http_url(&self.base_url) {
            return fail("base_url", FieldProblem::NotHttpUrl);
        }
        if self.timeout_secs == 0 {
            return fail("timeout_secs", FieldProblem::AtLeast(1));
        }
        Ok(())
    }
}

/// Sends WhatsApp codes through the Cloud API.
pub struct MetaSender {
    client: Client,
    url: String,
    access_token: SecretString,
    template: String,
    language: String,
    timeout: Duration,
    /// A config error is logged once, not on every send.
    config_error_logged: AtomicBool,
}

impl fmt::Debug for MetaSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaSender")
            .field("template", &self.template)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    messages: Vec<MessageId>,
}

#[derive(Deserialize)]
struct MessageId {
    id: String,
}

/// `{"error":{"code":…}}`: only the code is kept.
fn meta_error_code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("error")?
        .get("code")?
        .as_i64()
}

impl MetaSender {
    /// Validates `config` and builds the client.
    ///
    /// # Errors
    /// [`GatewayError::Setting`] naming the bad field;
    /// [`GatewayError::Client`] when the HTTP client cannot be built.
    pub fn new(config: MetaConfig) -> Result<Self, GatewayError> {
        config.validate().map_err(GatewayError::Setting)?;
        let timeout = Duration::from_secs(config.timeout_secs);
        let base = config.base_url.trim_end_matches('/');
        Ok(MetaSender {
            client: otp_http::client(timeout).map_err(client_error(PROVIDER))?,
            url: format!(
                "{base}/{}/{}/messages",
                config.api_version, config.phone_number_id
            ),
            access_token: config.access_token,
            template: config.template,
            language: config.language,
            timeout,
            config_error_logged: AtomicBool::new(false),
        })
    }

    /// The request body of one code to `to` (E.164). `reference` (the
    /// verification's id) goes in `biz_opaque_callback_data`, which Meta
    /// echoes in the status webhook's reports on the message.
    pub fn body(&self, to: &str, code: &str, reference: Option<&str>) -> serde_json::Value {
        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": {
                "name": self.template,
                "language": {"policy": "deterministic", "code": self.language},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": code}]},
                    {"type": "button", "sub_type": "url", "index": "0",
                     "parameters": [{"type": "text", "text": code}]},
                ],
            },
        });
        if let (Some(reference), Some(map)) = (reference, body.as_object_mut()) {
            map.insert("biz_opaque_callback_data".to_owned(), reference.into());
        }
        body
    }

    /// Sends one code; the message id (`wamid…`) on success.
    ///
    /// # Errors
    /// See [`GatewayError`]; a Graph API error is [`GatewayError::Meta`].
    pub async fn deliver(&self, message: &OutgoingMessage) -> Result<String, GatewayError> {
        let Destination::WhatsApp(phone) = &message.destination else {
            return Err(GatewayError::WrongChannel {
                provider: PROVIDER.to_owned(),
                channel: message.destination.channel(),
            });
        };
        let request = self
            .client
            .post(&self.url)
            .bearer_auth(self.access_token.expose_secret())
            .header(
                reqwest::header::CONTENT_TYPE,
                reqwest::header::HeaderValue::from_static("application/json"),
            )
            .body(
                self.body(
                    phone.as_str(),
                    message.code.expose(),
                    message.verification.map(|id| id.to_string()).as_deref(),
                )
                .to_string(),
            );
        let response = request
            .send()
            .await
            .map_err(|e| from_reqwest(PROVIDER, self.timeout, e))?;
        let status = response.status().as_u16();
        let retry_after = otp_http::parse_retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| from_reqwest(PROVIDER, self.timeout, e))?;
        if (200..300).contains(&status) {
            let answer: Answer =
                serde_json::from_slice(&bytes).map_err(|_| GatewayError::Unsuccessful {
                    provider: PROVIDER.to_owned(),
                    status,
                    pointer: "/messages/0/id".to_owned(),
                })?;
            return answer.messages.into_iter().next().map(|m| m.id).ok_or(
                GatewayError::Unsuccessful {
                    provider: PROVIDER.to_owned(),
                    status,
                    pointer: "/messages/0/id".to_owned(),
                },
            );
        }
        let Some(code) = meta_error_code(&bytes) else {
            return Err(GatewayError::Status {
                provider: PROVIDER.to_owned(),
                status,
                provider_code: None,
                retry_after,
            });
        };
        let kind = MetaError::of(code);
        if matches!(kind, MetaError::Config | MetaError::ExpiredToken)
            && !self.config_error_logged.swap(true, Ordering::Relaxed)
        {
            tracing::error!(
                provider = PROVIDER,
                code,
                template = %self.template,
                "WhatsApp refuses otpd's settings: {}; check [whatsapp.meta] (this is logged once)",
                kind.reason()
            );
        }
        Err(GatewayError::Meta {
            status,
            code,
            kind,
            retry_after,
        })
    }
}

#[async_trait]
impl Sender for MetaSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let id = self.deliver(message).await.map_err(DeliveryError::from)?;
        Ok(Delivered::by(PROVIDER).message(id))
    }
}
