//! The generic HTTP gateway: any SMS or voice API that takes the phone
//! and the text in a URL, a form or a JSON body.
//!
//! ```toml
//! name = "smsc"
//! method = "POST"
//! url = "https://sms.example.com/api/send"
//! headers = { Authorization = "Bearer …" }
//! encoding = "json"
//! body = '{"to":"{phone}","text":"{message}"}'
//! success_pointer = "/status"
//! success_value = "queued"
//! ```

use otp_domain::ports::Delivered;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::{DeliveryError, Destination, FieldError, FieldProblem, OutgoingMessage, Sender};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Client, Method};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::{client_error, GatewayError};
use crate::template::{check_placeholders, fill, Escape, Values};
use crate::{http, DEFAULT_TIMEOUT_SECS};

/// Values used to check templates at start-up. The message holds every
/// character that needs escaping, so a placeholder outside a JSON string
/// literal fails the check.
const SAMPLE: Values<'static> = Values {
    phone: "+10000000000",
    message: "Code \"1234\" \\ & = + ?\nÄ",
    locale: "pt-BR",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum HttpMethod {
    #[serde(rename = "GET", alias = "get")]
    Get,
    #[default]
    #[serde(rename = "POST", alias = "post")]
    Post,
}

/// How the body template is encoded, and so how values are escaped in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// `application/json`; placeholders sit inside JSON string literals.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`: `to={phone}&text={message}`.
    Form,
}

/// One HTTP gateway. Header values are secrets: `Debug` hides them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGatewayConfig {
    /// The provider name in errors and logs. Default `gateway`.
    #[serde(default = "default_name")]
    pub name: String,
    /// `GET` or `POST` (default).
    #[serde(default)]
    pub method: HttpMethod,
    /// Required. May hold `{phone}` and `{message}`, percent-encoded when
    /// filled.
    pub url: String,
    /// Extra request headers, e.g. `Authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretString>,
    /// The body template; none for GET. Default: no body.
    #[serde(default)]
    pub body: Option<String>,
    /// `json` (default) or `form`.
    #[serde(default)]
    pub encoding: BodyEncoding,
    /// A JSON pointer (`/result/status`) into a 2xx answer that must show
    /// success: equal `success_value` when that is set, otherwise exist and
    /// be neither `null` nor `false`.
    #[serde(default)]
    pub success_pointer: Option<String>,
    #[serde(default)]
    pub success_value: Option<serde_json::Value>,
    /// Seconds a request may take. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_name() -> String {
    "gateway".to_owned()
}

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

impl HttpGatewayConfig {
    /// A POST gateway with no body, headers or success check.
    pub fn new(url: impl Into<String>) -> Self {
        HttpGatewayConfig {
            name: default_name(),
            method: HttpMethod::Post,
            url: url.into(),
            headers: BTreeMap::new(),
            body: None,
            encoding: BodyEncoding::Json,
            success_pointer: None,
            success_value: None,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
        }
    }

    /// Checks every key once, at start-up.
    ///
    /// # Errors
    /// The first bad field, named within this section (`url`).
    pub fn validate(&self) -> Result<(), FieldError> {
        let fail = |field: &'static str, problem| Err(FieldError::new(field, problem));
        if self.name.trim().is_empty() || self.name.chars().any(char::is_control) {
            return fail("name", FieldProblem::Must("be a non-empty name".into()));
        }
        if self.url.trim().is_empty() {
            return fail("url", FieldProblem::Required);
        }
        check_placeholders(&self.url, "url")?;
        let sample_url = fill(&self.url, &SAMPLE, Escape::Url);
        if !otp_http::is_http_url(&sample_url) {
            return fail("url", FieldProblem::NotHttpUrl);
        }
        if let Some(body) = self.body() {
            if self.method == HttpMethod::Get {
                return fail("body", FieldProblem::Must("be empty for method GET".into()));
            }
            check_placeholders(body, "body")?;
            if self.encoding == BodyEncoding::Json {
                let sample = fill(body, &SAMPLE, Escape::JsonString);
                if serde_json::from_str::<serde_json::Value>(&sample).is_err() {
                    return fail(
                        "body",
                        FieldProblem::Must(
                            "be valid JSON once filled; put {phone} and {message} inside \
                             string literals, e.g. {\"to\":\"{phone}\"}"
                                .into(),
                        ),
                    );
                }
            }
        }
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(FieldError::new(
                    format!("headers.{name}"),
                    FieldProblem::Must("have a valid header name".into()),
                ));
            }
            if HeaderValue::from_str(value.expose_secret()).is_err() {
                return Err(FieldError::new(
                    format!("headers.{name}"),
                    FieldProblem::Must("be visible ASCII without line breaks".into()),
                ));
            }
        }
        match (self.success_pointer(), &self.success_value) {
            (Some(p), _) if !p.starts_with('/') => {
                return fail(
                    "success_pointer",
                    FieldProblem::Must("be a JSON pointer starting with /".into()),
                )
            }
            (None, Some(_)) => {
                return fail(
                    "success_pointer",
                    FieldProblem::RequiredWith("success_value".into()),
                )
            }
            _ => {}
        }
        if self.timeout_secs == 0 {
            return fail("timeout_secs", FieldProblem::AtLeast(1));
        }
        Ok(())
    }

    fn body(&self) -> Option<&str> {
        self.body.as_deref().filter(|b| !b.is_empty())
    }

    fn success_pointer(&self) -> Option<&str> {
        self.success_pointer.as_deref().filter(|p| !p.is_empty())
    }
}

/// Sends SMS and voice messages through one configured HTTP gateway.
pub struct HttpGatewaySender {
    name: String,
    client: Client,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Option<(String, BodyEncoding)>,
    success: Option<(String, Option<serde_json::Value>)>,
    timeout: Duration,
}

impl fmt::Debug for HttpGatewaySender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpGatewaySender")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpGatewaySender {
    /// Validates `config` and builds the client.
    ///
    /// # Errors
    /// [`GatewayError::Setting`] naming the bad field;
    /// [`GatewayError::Client`] when the HTTP client cannot be built.
    pub fn new(config: HttpGatewayConfig) -> Result<Self, GatewayError> {
        config.validate().map_err(GatewayError::Setting)?;
        let timeout = Duration::from_secs(config.timeout_secs);
        let mut headers = HeaderMap::new();
        if config.body().is_some() {
            let content_type = match config.encoding {
                BodyEncoding::Json => "application/json",
                BodyEncoding::Form => "application/x-www-form-urlencoded",
            };
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        // Configured headers come last, so they may override Content-Type.
        for (name, value) in &config.headers {
            // Checked by validate above; kept as errors, not panics.
            let bad = || {
                GatewayError::Setting(FieldError::new(
                    format!("headers.{name}"),
                    FieldProblem::Must("be a valid header".into()),
                ))
            };
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let mut value = HeaderValue::from_str(value.expose_secret()).map_err(|_| bad())?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(HttpGatewaySender {
            client: otp_http::client(timeout).map_err(client_error(&config.name))?,
            method: match config.method {
                HttpMethod::Get => Method::GET,
                HttpMethod::Post => Method::POST,
            },
            headers,
            body: config.body().map(|b| (b.to_owned(), config.encoding)),
            success: config
                .success_pointer()
                .map(|p| (p.to_owned(), config.success_value.clone())),
            url: config.url,
            name: config.name,
            timeout,
        })
    }

    /// Sends one message, with this crate's own error type.
    ///
    /// # Errors
    /// See [`GatewayError`]; [`GatewayError::is_transient`] tells which
    /// are worth a retry.
    pub async fn deliver(&self, message: &OutgoingMessage) -> Result<(), GatewayError> {
        let phone = match &message.destination {
            Destination::Sms(p) | Destination::Call(p) => p.as_str(),
            other => {
                return Err(GatewayError::WrongChannel {
                    provider: self.name.clone(),
                    channel: other.channel(),
                })
            }
        };
        let values = Values {
            phone,
            message: &message.body,
            locale: message.locale.as_ref().map_or("", |l| l.tag.as_str()),
        };
        let url = fill(&self.url, &values, Escape::Url);
        let mut request = self
            .client
            .request(self.method.clone(), url)
            .headers(self.headers.clone());
        if let Some((template, encoding)) = &self.body {
            let escape = match encoding {
                BodyEncoding::Json => Escape::JsonString,
                BodyEncoding::Form => Escape::Form,
            };
            request = request.body(fill(template, &values, escape));
        }
        let response = http::send(&self.name, self.timeout, request, None).await?;
        let Some((pointer, expected)) = &self.success else {
            return Ok(());
        };
        let status = response.status().as_u16();
        let unsuccessful = || GatewayError::Unsuccessful {
            provider: self.name.clone(),
            status,
            pointer: pointer.clone(),
        };
        let bytes = response
            .bytes()
            .await
            .map_err(|e| crate::error::from_reqwest(&self.name, self.timeout, e))?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| unsuccessful())?;
        let ok = match (json.pointer(pointer), expected) {
            (Some(found), Some(expected)) => found == expected,
            (Some(found), None) => !matches!(
                found,
                serde_json::Value::Null | serde_json::Value::Bool(false)
            ),
            (None, _) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(unsuccessful())
        }
    }
}

#[async_trait]
impl Sender for HttpGatewaySender {
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let sent: Result<(), DeliveryError> =
            async { self.deliver(message).await.map_err(DeliveryError::from) }.await;
        sent.map(|()| Delivered::by("gateway"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_gateway() -> HttpGatewayConfig {
        let mut c = HttpGatewayConfig::new("https://sms.example.com/send");
        c.body = Some(r#"{"to":"{phone}","text":"{message}"}"#.to_owned());
        c
    }

    #[test]
    fn a_minimal_config_loads_with_defaults() {
        let c: HttpGatewayConfig =
            serde_json::from_str(r#"{"url":"https://sms.example.com/send"}"#).expect("parses");
        assert_eq!(c.name, "gateway");
        assert_eq!(c.method, HttpMethod::Post);
        assert_eq!(c.encoding, BodyEncoding::Json);
        assert_eq!(c.timeout_secs, 10);
        assert_eq!(c.validate(), Ok(()));
        assert!(serde_json::from_str::<HttpGatewayConfig>(
            r#"{"url":"https://x.example","bdy":"typo"}"#
        )
        .is_err());
        let c: HttpGatewayConfig =
            serde_json::from_str(r#"{"url":"https://x.example","method":"get"}"#)
                .expect("lower-case method");
        assert_eq!(c.method, HttpMethod::Get);
    }

    #[test]
    fn validate_names_the_bad_key() {
        let field = |field, problem| Err(FieldError::new(field, problem));
        assert_eq!(
            HttpGatewayConfig::new("").validate(),
            field("url", FieldProblem::Required)
        );
        assert_eq!(
            HttpGatewayConfig::new("ftp://x.example/{phone}").validate(),
            field("url", FieldProblem::NotHttpUrl)
        );

        let mut c = json_gateway();
        c.body = Some(r#"{"to":{phone},"text":"{message}"}"#.to_owned());
        assert!(c
            .validate()
            .expect_err("bare placeholder")
            .to_string()
            .starts_with("body must be valid JSON"));

        let mut c = json_gateway();
        c.body = Some(r#"{"to":"{phone}","code":"{password}"}"#.to_owned());
        assert!(c
            .validate()
            .expect_err("no password")
            .to_string()
            .starts_with("body must not use {password}"));

        let mut c = json_gateway();
        c.method = HttpMethod::Get;
        assert_eq!(
            c.validate(),
            field("body", FieldProblem::Must("be empty for method GET".into()))
        );

        let mut c = json_gateway();
        c.success_value = Some(serde_json::json!("ok"));
        assert_eq!(
            c.validate(),
            field(
                "success_pointer",
                FieldProblem::RequiredWith("success_value".into())
            )
        );

        let mut c = json_gateway();
        c.success_pointer = Some("status".to_owned());
        assert_eq!(
            c.validate().expect_err("pointer syntax").field,
            "success_pointer"
        );

        let mut c = json_gateway();
        c.headers
            .insert("X-Key".to_owned(), SecretString::from("a\r\nb"));
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err("headers.X-Key must be visible ASCII without line breaks".to_owned())
        );
    }

    #[test]
    fn form_bodies_are_not_json_checked() {
        let mut c = HttpGatewayConfig::new("https://sms.example.com/send?key=abc");
        c.encoding = BodyEncoding::Form;
        c.body = Some("to={phone}&text={message}".to_owned());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn debug_hides_header_values() {
        let mut c = json_gateway();
        c.headers.insert(
            "Authorization".to_owned(),
            SecretString::from("Bearer very-secret-token"),
        );
        let shown = format!("{c:?}");
        assert!(shown.contains("Authorization"));
        assert!(!shown.contains("very-secret-token"), "{shown}");
        let sender = HttpGatewaySender::new(c).expect("valid");
        assert!(!format!("{sender:?}").contains("very-secret-token"));
    }
}
