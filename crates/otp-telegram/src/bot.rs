//! The Telegram Bot API: `sendMessage` for codes and `setWebhook` for the
//! bot flow. Both POST JSON to `{api_url}/bot{token}/{method}` and read
//! `{"ok": true, "result": …}` or `{"ok": false, "error_code": …,
//! "description": …, "parameters": {"retry_after": …}}`.

use otp_domain::ports::Delivered;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::{DeliveryError, FieldError, FieldProblem, OutgoingMessage, Sender};
use reqwest::{Client, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::TelegramError;
use crate::http::{chat_of, client_error, transport_error};
use crate::DEFAULT_TIMEOUT_SECS;

/// The provider name in errors.
pub const PROVIDER: &str = crate::error::BOT_PROVIDER;

/// The Bot API's address and the bot's token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// From @BotFather, `123456:ABC-DEF…`. Required; a secret.
    pub bot_token: SecretString,
    /// Default `https://api.telegram.org`; a local Bot API server or a
    /// test peer otherwise.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Seconds a request may take. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_api_url() -> String {
    "https://api.telegram.org".to_owned()
}

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

impl TelegramConfig {
    pub fn new(bot_token: impl Into<String>) -> Self {
        TelegramConfig {
            bot_token: SecretString::from(bot_token.into()),
            api_url: default_api_url(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
        }
    }

    /// Checks every key once, at start-up.
    ///
    /// # Errors
    /// The first bad field (`bot_token`, never its value).
    pub fn validate(&self) -> Result<(), FieldError> {
        check_token(&self.bot_token)?;
        if !otp_http::is_http_url(&self.api_url) {
            return Err(FieldError::new("api_url", FieldProblem::NotHttpUrl));
        }
        if self.timeout_secs == 0 {
            return Err(FieldError::new("timeout_secs", FieldProblem::AtLeast(1)));
        }
        Ok(())
    }
}

/// The token goes into the URL path, so only its own alphabet is allowed.
fn check_token(token: &SecretString) -> Result<(), FieldError> {
    let token = token.expose_secret();
    if token.is_empty() {
        return Err(FieldError::new("bot_token", FieldProblem::Required));
    }
    let well_formed = token.contains(':')
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
    if !well_formed {
        return Err(FieldError::new(
            "bot_token",
            FieldProblem::Must("look like 123456:ABC-DEF… (from @BotFather)".into()),
        ));
    }
    Ok(())
}

fn method_url(api_url: &str, token: &SecretString, method: &str) -> String {
    format!(
        "{}/bot{}/{method}",
        api_url.trim_end_matches('/'),
        token.expose_secret()
    )
}

/// Sends codes to Telegram chats (`Destination::Telegram`) as the bot.
pub struct TelegramSender {
    client: Client,
    /// Holds the token: never printed.
    send_url: SecretString,
    timeout: Duration,
}

impl fmt::Debug for TelegramSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramSender")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct SendMessage<'a> {
    chat_id: i64,
    text: &'a str,
}

impl TelegramSender {
    /// Validates `config` and builds the client.
    ///
    /// # Errors
    /// [`TelegramError::Setting`] naming the bad field;
    /// [`TelegramError::Client`] when the HTTP client cannot be built.
    pub fn new(config: TelegramConfig) -> Result<Self, TelegramError> {
        config.validate().map_err(TelegramError::Setting)?;
        let timeout = Duration::from_secs(config.timeout_secs);
        Ok(TelegramSender {
            client: otp_http::client(timeout).map_err(client_error(PROVIDER))?,
            send_url: SecretString::from(method_url(
                &config.api_url,
                &config.bot_token,
                "sendMessage",
            )),
            timeout,
        })
    }

    /// Sends one message, with this crate's own error type.
    ///
    /// # Errors
    /// See [`TelegramError`]; [`TelegramError::is_transient`] tells which
    /// are worth a retry.
    pub async fn deliver(&self, message: &OutgoingMessage) -> Result<(), TelegramError> {
        let chat = chat_of(PROVIDER, message)?;
        let payload = SendMessage {
            chat_id: chat,
            text: &message.body,
        };
        call(
            &self.client,
            self.send_url.expose_secret(),
            &payload,
            self.timeout,
        )
        .await
    }
}

#[async_trait]
impl Sender for TelegramSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        self.deliver(message).await?;
        Ok(Delivered::by("telegram"))
    }
}

#[derive(Serialize)]
struct SetWebhook<'a> {
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_token: Option<&'a str>,
    allowed_updates: [&'static str; 1],
}

/// Points the bot's webhook at `url` (which must be `https://`), asking
/// only for `message` updates. With `secret_token`, Telegram sends it in
/// the `X-Telegram-Bot-Api-Secret-Token` header of every update.
///
/// # Errors
/// - [`TelegramError::Config`] for a malformed token, a non-https `url`,
///   or a secret outside Telegram's rule (1 to 256 of `A-Z a-z 0-9 _ -`);
///   nothing is sent then.
/// - [`TelegramError::Api`] when Telegram refuses, and the transport errors.
/// - [`TelegramError::Client`] when the HTTP client cannot be built.
pub async fn set_webhook(
    api_url: &str,
    bot_token: &SecretString,
    url: &str,
    secret_token: Option<&SecretString>,
) -> Result<(), TelegramError> {
    // Both come from [telegram], so the errors name those keys.
    check_token(bot_token).map_err(|e| TelegramError::Setting(e.within("telegram")))?;
    if !otp_http::is_http_url(api_url) {
        return Err(TelegramError::Setting(
            FieldError::new("api_url", FieldProblem::NotHttpUrl).within("telegram"),
        ));
    }
    if !otp_http::is_https_url(url) {
        return Err(TelegramError::Config(
            "the webhook url must be an https:// URL (Telegram calls only HTTPS)".to_owned(),
        ));
    }
    let secret = secret_token.map(ExposeSecret::expose_secret);
    if let Some(s) = secret {
        let allowed = (1..=256).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !allowed {
            return Err(TelegramError::Config(
                "the webhook secret must be 1 to 256 characters of A-Z, a-z, 0-9, _ and - \
                 (Telegram's rule for secret_token)"
                    .to_owned(),
            ));
        }
    }
    let timeout = Duration::from_secs(DEFAULT_TIMEOUT_SECS);
    let client = otp_http::client(timeout).map_err(client_error(PROVIDER))?;
    let payload = SetWebhook {
        url,
        secret_token: secret,
        allowed_updates: ["message"],
    };
    let target = SecretString::from(method_url(api_url, bot_token, "setWebhook"));
    call(&client, target.expose_secret(), &payload, timeout).await
}

/// The Bot API's answer envelope; `result` is not needed.
#[derive(Deserialize)]
struct ApiAnswer {
    ok: bool,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<ApiParameters>,
}

#[derive(Deserialize)]
struct ApiParameters {
    retry_after: Option<u64>,
}

async fn call<T: Serialize>(
    client: &Client,
    url: &str,
    payload: &T,
    timeout: Duration,
) -> Result<(), TelegramError> {
    let response = client
        .post(url)
        .json(payload)
        .send()
        .await
        .map_err(|e| transport_error(PROVIDER, timeout, e))?;
    read_answer(response, timeout).await
}

async fn read_answer(response: Response, timeout: Duration) -> Result<(), TelegramError> {
    let status = response.status();
    let header_wait = otp_http::parse_retry_after(response.headers());
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(PROVIDER, timeout, e))?;
    let answer = serde_json::from_slice::<ApiAnswer>(&bytes).ok();
    match answer {
        Some(a) if a.ok && status.is_success() => Ok(()),
        None if status.is_success() => Err(TelegramError::BadResponse {
            provider: PROVIDER,
            status: status.as_u16(),
        }),
        answer => {
            let (code, description, wait) = match answer {
                Some(a) => (
                    a.error_code.unwrap_or(i64::from(status.as_u16())),
                    a.description.map(|d| tidy(&d)),
                    a.parameters
                        .and_then(|p| p.retry_after)
                        .map(Duration::from_secs),
                ),
                None => (i64::from(status.as_u16()), None, None),
            };
            Err(TelegramError::Api {
                status: status.as_u16(),
                code,
                description,
                retry_after: wait.or(header_wait),
            })
        }
    }
}

/// One line of at most 200 characters, for logs.
fn tidy(description: &str) -> String {
    description
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_loads_with_defaults_and_hides_the_token() {
        let c: TelegramConfig =
            serde_json::from_str(r#"{"bot_token":"123456:AAE-secret_token"}"#).expect("parses");
        assert_eq!(c.api_url, "https://api.telegram.org");
        assert_eq!(c.timeout_secs, 10);
        assert_eq!(c.validate(), Ok(()));
        assert!(!format!("{c:?}").contains("AAE-secret_token"));
        let sender = TelegramSender::new(c).expect("valid");
        assert!(!format!("{sender:?}").contains("AAE-secret_token"));
        assert!(
            serde_json::from_str::<TelegramConfig>(r#"{"bot_token":"1:a","api_ur":"x"}"#).is_err()
        );
    }

    #[test]
    fn validate_names_the_key_and_never_the_token() {
        assert_eq!(
            TelegramConfig::new("").validate(),
            Err(FieldError::new("bot_token", FieldProblem::Required))
        );
        let err = TelegramConfig::new("123/../x?y")
            .validate()
            .expect_err("malformed")
            .to_string();
        assert!(err.starts_with("bot_token must look like"), "{err}");
        assert!(!err.contains("123/../x?y"));
        let mut c = TelegramConfig::new("1:abc");
        c.api_url = "api.telegram.org".to_owned();
        assert_eq!(
            c.validate(),
            Err(FieldError::new("api_url", FieldProblem::NotHttpUrl))
        );
    }

    #[test]
    fn descriptions_are_made_one_short_line() {
        assert_eq!(tidy("a\nb"), "a b");
        assert_eq!(tidy(&"x".repeat(500)).len(), 200);
    }
}
