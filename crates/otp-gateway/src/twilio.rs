//! Twilio: SMS and WhatsApp through the Messages resource, voice through
//! the Calls resource with inline TwiML, all form-encoded with HTTP Basic
//! auth (Account SID and Auth Token).
//!
//! - WhatsApp: `Messages.json` with `To=whatsapp:+…`, `From=whatsapp:+…`,
//!   `ContentSid` (an approved authentication template) and
//!   `ContentVariables={"1":CODE}`.
//!
//! - SMS: `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`
//!   with `To`, `From` and/or `MessagingServiceSid`, and `Body`.
//! - Voice: `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Calls.json`
//!   with `To`, `From` and `Twiml`, a `<Say>` of the message with every
//!   run of digits spaced out so the voice reads them one by one.

use otp_domain::ports::Delivered;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use otp_domain::{
    Channel, DeliveryError, Destination, FieldError, FieldProblem, OutgoingMessage, Sender,
};
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::Client;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::{client_error, GatewayError};
use crate::{http, DEFAULT_TIMEOUT_SECS};

/// The provider name in errors.
pub const PROVIDER: &str = "twilio";

/// Twilio's credentials, senders and voice settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// `AC…`. Required.
    pub account_sid: String,
    /// Required; a secret.
    pub auth_token: SecretString,
    /// The caller id / sender number in E.164. Required for voice; for SMS
    /// this or `messaging_service_sid` is required.
    #[serde(default)]
    pub from: Option<String>,
    /// `MG…`: send SMS through a Messaging Service.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Default `https://api.twilio.com`; tests point it at loopback.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// `<Say language>`. Default `en-US`.
    #[serde(default = "default_language")]
    pub language: String,
    /// `<Say voice>`. Default `alice`.
    #[serde(default = "default_voice")]
    pub voice: String,
    /// How often the call says the message. Default 2.
    #[serde(default = "default_repeat")]
    pub repeat: u32,
    /// Seconds a request may take. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// `HX…`: the approved WhatsApp authentication template (Content
    /// API), whose variable `1` is the code. Required for WhatsApp.
    #[serde(default)]
    pub content_sid: Option<String>,
}

fn default_base_url() -> String {
    "https://api.twilio.com".to_owned()
}
fn default_language() -> String {
    "en-US".to_owned()
}
fn default_voice() -> String {
    "alice".to_owned()
}
fn default_repeat() -> u32 {
    2
}
fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

impl TwilioConfig {
    /// A config with the defaults, the credentials and a `From` number.
    pub fn new(
        account_sid: impl Into<String>,
        auth_token: impl Into<String>,
        from: impl Into<String>,
    ) -> Self {
        TwilioConfig {
            account_sid: account_sid.into(),
            auth_token: SecretString::from(auth_token.into()),
            from: Some(from.into()),
            messaging_service_sid: None,
            base_url: default_base_url(),
            language: default_language(),
            voice: default_voice(),
            repeat: default_repeat(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            content_sid: None,
        }
    }

    /// Checks every key once, at start-up, for SMS and voice alike; see
    /// [`TwilioConfig::validate_for`] for one channel's needs.
    ///
    /// # Errors
    /// The first bad field, named within this section (`auth_token`).
    pub fn validate(&self) -> Result<(), FieldError> {
        let fail = |field: &'static str, problem| Err(FieldError::new(field, problem));
        if self.account_sid.trim().is_empty() {
            return fail("account_sid", FieldProblem::Required);
        }
        // It goes into the URL path.
        if !self.account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return fail(
                "account_sid",
                FieldProblem::Must("be letters and digits (AC…)".into()),
            );
        }
        if self.auth_token.expose_secret().is_empty() {
            return fail("auth_token", FieldProblem::Required);
        }
        if self.sender_number().is_none() && self.messaging_service_sid().is_none() {
            return fail(
                "from",
                FieldProblem::RequiredWithout("messaging_service_sid".into()),
            );
        }
        if let Some(sid) = self.messaging_service_sid() {
            if !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return fail(
                    "messaging_service_sid",
                    FieldProblem::Must("be letters and digits (MG…)".into()),
                );
            }
        }
        if !otp_http::is_http_url(&self.base_url) {
            return fail("base_url", FieldProblem::NotHttpUrl);
        }
        if self.language.trim().is_empty() {
            return fail("language", FieldProblem::Must("not be empty".into()));
        }
        if self.voice.trim().is_empty() {
            return fail("voice", FieldProblem::Must("not be empty".into()));
        }
        if !(1..=10).contains(&self.repeat) {
            return fail("repeat", FieldProblem::OutOfRange { min: 1, max: 10 });
        }
        if self.timeout_secs == 0 {
            return fail("timeout_secs", FieldProblem::AtLeast(1));
        }
        Ok(())
    }

    /// [`TwilioConfig::validate`], plus what `channel` needs: voice calls
    /// need `from`. Twilio serves only SMS and voice; its sender refuses
    /// any other channel with [`GatewayError::WrongChannel`].
    ///
    /// # Errors
    /// The first bad or missing field.
    pub fn validate_for(&self, channel: Channel) -> Result<(), FieldError> {
        self.validate()?;
        if channel == Channel::Call && self.sender_number().is_none() {
            return Err(FieldError::new(
                "from",
                FieldProblem::RequiredFor("voice calls"),
            ));
        }
        if channel == Channel::WhatsApp {
            if self.sender_number().is_none() {
                return Err(FieldError::new(
                    "from",
                    FieldProblem::RequiredFor("WhatsApp"),
                ));
            }
            match self.content_sid.as_deref().filter(|s| !s.is_empty()) {
                None => {
                    return Err(FieldError::new(
                        "content_sid",
                        FieldProblem::RequiredFor("WhatsApp"),
                    ))
                }
                Some(sid) if !sid.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                    return Err(FieldError::new(
                        "content_sid",
                        FieldProblem::Must("be letters and digits (HX…)".into()),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn sender_number(&self) -> Option<&str> {
        self.from.as_deref().filter(|s| !s.is_empty())
    }

    fn messaging_service_sid(&self) -> Option<&str> {
        self.messaging_service_sid
            .as_deref()
            .filter(|s| !s.is_empty())
    }
}

/// Sends SMS (`Destination::Sms`) and voice calls (`Destination::Call`)
/// through Twilio.
pub struct TwilioSender {
    client: Client,
    account_sid: String,
    auth_token: SecretString,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    messages_url: String,
    calls_url: String,
    language: String,
    voice: String,
    repeat: u32,
    timeout: Duration,
    content_sid: Option<String>,
}

impl fmt::Debug for TwilioSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSender")
            .field("account_sid", &self.account_sid)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TwilioSender {
    /// Validates `config` and builds the client.
    ///
    /// # Errors
    /// [`GatewayError::Setting`] naming the bad field;
    /// [`GatewayError::Client`] when the HTTP client cannot be built.
    pub fn new(config: TwilioConfig) -> Result<Self, GatewayError> {
        config.validate().map_err(GatewayError::Setting)?;
        let timeout = Duration::from_secs(config.timeout_secs);
        let base = config.base_url.trim_end_matches('/');
        let account = format!("{base}/2010-04-01/Accounts/{}", config.account_sid);
        Ok(TwilioSender {
            client: otp_http::client(timeout).map_err(client_error(PROVIDER))?,
            from: config.sender_number().map(str::to_owned),
            messaging_service_sid: config.messaging_service_sid().map(str::to_owned),
            messages_url: format!("{account}/Messages.json"),
            calls_url: format!("{account}/Calls.json"),
            account_sid: config.account_sid,
            auth_token: config.auth_token,
            language: config.language,
            voice: config.voice,
            repeat: config.repeat,
            timeout,
            content_sid: config.content_sid.filter(|s| !s.is_empty()),
        })
    }

    /// Sends one SMS or starts one call, with this crate's error type.
    ///
    /// # Errors
    /// See [`GatewayError`]; a Twilio error answer carries Twilio's numeric
    /// `code` in `provider_code`.
    pub async fn deliver(&self, message: &OutgoingMessage) -> Result<(), GatewayError> {
        let (url, form) = match &message.destination {
            Destination::Sms(phone) => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("To", phone.as_str());
                if let Some(from) = &self.from {
                    form.append_pair("From", from);
                }
                if let Some(sid) = &self.messaging_service_sid {
                    form.append_pair("MessagingServiceSid", sid);
                }
                form.append_pair("Body", &message.body);
                (&self.messages_url, form.finish())
            }
            Destination::Call(phone) => {
                let Some(from) = &self.from else {
                    return Err(GatewayError::NotConfigured {
                        provider: PROVIDER.to_owned(),
                        key: "twilio.from for voice calls",
                    });
                };
                // The message's locale speaks its own language; the
                // default locale the configured one.
                let language = message
                    .locale
                    .as_ref()
                    .and_then(|l| l.voice.as_deref())
                    .unwrap_or(&self.language);
                let twiml = twiml(&message.body, language, &self.voice, self.repeat);
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("To", phone.as_str())
                    .append_pair("From", from)
                    .append_pair("Twiml", &twiml)
                    .finish();
                (&self.calls_url, form)
            }
            Destination::WhatsApp(phone) => {
                let (Some(from), Some(content_sid)) = (&self.from, &self.content_sid) else {
                    return Err(GatewayError::NotConfigured {
                        provider: PROVIDER.to_owned(),
                        key: "twilio.from and twilio.content_sid for WhatsApp",
                    });
                };
                let variables = serde_json::json!({"1": message.code.expose()}).to_string();
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("To", &format!("whatsapp:{}", phone.as_str()))
                    .append_pair("From", &format!("whatsapp:{from}"))
                    .append_pair("ContentSid", content_sid)
                    .append_pair("ContentVariables", &variables)
                    .finish();
                (&self.messages_url, form)
            }
            other => {
                return Err(GatewayError::WrongChannel {
                    provider: PROVIDER.to_owned(),
                    channel: other.channel(),
                })
            }
        };
        let request = self
            .client
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(form);
        http::send(PROVIDER, self.timeout, request, Some(twilio_error_code)).await?;
        Ok(())
    }
}

#[async_trait]
impl Sender for TwilioSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        let sent: Result<(), DeliveryError> =
            async { self.deliver(message).await.map_err(DeliveryError::from) }.await;
        sent.map(|()| Delivered::by("twilio"))
    }
}

/// Twilio's error body is `{"code": 21211, "message": "…", …}`; only the
/// numeric code is kept, as the message may quote the number.
fn twilio_error_code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("code")?
        .as_i64()
}

/// The TwiML of a voice call: `text` said `repeat` times, with a one
/// second pause between, every run of digits spaced out ("4 8 2 9") and
/// everything XML-escaped.
///
/// ```
/// assert_eq!(
///     otp_gateway::twilio::twiml("Code 4829.", "en-US", "alice", 2),
///     "<Response>\
///      <Say language=\"en-US\" voice=\"alice\">Code 4 8 2 9.</Say>\
///      <Pause length=\"1\"/>\
///      <Say language=\"en-US\" voice=\"alice\">Code 4 8 2 9.</Say>\
///      </Response>"
/// );
/// ```
pub fn twiml(text: &str, language: &str, voice: &str, repeat: u32) -> String {
    let say = format!(
        "<Say language=\"{}\" voice=\"{}\">{}</Say>",
        xml_escape(language),
        xml_escape(voice),
        xml_escape(&space_digits(text)),
    );
    let says: Vec<&str> = (0..repeat.max(1)).map(|_| say.as_str()).collect();
    format!(
        "<Response>{}</Response>",
        says.join("<Pause length=\"1\"/>")
    )
}

/// "Code 4829" → "Code 4 8 2 9".
fn space_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut previous_digit = false;
    for c in text.chars() {
        let digit = c.is_ascii_digit();
        if digit && previous_digit {
            out.push(' ');
        }
        out.push(c);
        previous_digit = digit;
    }
    out
}

/// Escapes the five XML specials and drops characters XML 1.0 forbids.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_spaced_run_by_run() {
        assert_eq!(
            space_digits("Your code is 482910."),
            "Your code is 4 8 2 9 1 0."
        );
        assert_eq!(space_digits("12 34 a5b"), "1 2 3 4 a5b");
        assert_eq!(space_digits("Код: 77"), "Код: 7 7");
    }

    #[test]
    fn twiml_escapes_text_and_attributes() {
        assert_eq!(
            twiml("<b>1&2</b> \"it's\"\u{7}", "en\"", "x<y", 1),
            "<Response><Say language=\"en&quot;\" voice=\"x&lt;y\">\
             &lt;b&gt;1&amp;2&lt;/b&gt; &quot;it&apos;s&quot; </Say></Response>"
        );
    }

    #[test]
    fn config_loads_with_documented_defaults_and_validates() {
        let c: TwilioConfig = serde_json::from_str(
            r#"{"account_sid":"AC123","auth_token":"twilio-secret-token","from":"+14155552671"}"#,
        )
        .expect("parses");
        assert_eq!(c.base_url, "https://api.twilio.com");
        assert_eq!(c.language, "en-US");
        assert_eq!(c.voice, "alice");
        assert_eq!(c.repeat, 2);
        assert_eq!(c.timeout_secs, 10);
        assert_eq!(c.validate_for(Channel::Call), Ok(()));
        assert!(
            !format!("{c:?}").contains("twilio-secret-token"),
            "the token is hidden"
        );
    }

    #[test]
    fn validate_names_the_bad_key() {
        let field = |field, problem| Err(FieldError::new(field, problem));
        let mut c = TwilioConfig::new("AC123", "tok", "+14155552671");
        c.from = None;
        assert_eq!(
            c.validate(),
            field(
                "from",
                FieldProblem::RequiredWithout("messaging_service_sid".into())
            )
        );
        c.messaging_service_sid = Some("MG123".to_owned());
        assert_eq!(c.validate_for(Channel::Sms), Ok(()));
        assert_eq!(
            c.validate_for(Channel::Call),
            field("from", FieldProblem::RequiredFor("voice calls"))
        );
        assert_eq!(
            c.validate_for(Channel::Call).map_err(|e| e.to_string()),
            Err("from is required for voice calls".to_owned())
        );

        let c = TwilioConfig::new("", "tok", "+14155552671");
        assert_eq!(c.validate(), field("account_sid", FieldProblem::Required));
        let c = TwilioConfig::new("AC1/../x", "tok", "+14155552671");
        assert_eq!(c.validate().expect_err("path").field, "account_sid");
        let c = TwilioConfig::new("AC1", "", "+14155552671");
        assert_eq!(c.validate(), field("auth_token", FieldProblem::Required));
        let mut c = TwilioConfig::new("AC1", "tok", "+14155552671");
        c.repeat = 0;
        assert_eq!(
            c.validate(),
            field("repeat", FieldProblem::OutOfRange { min: 1, max: 10 })
        );
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err("repeat must be 1 to 10".to_owned())
        );
    }

    #[test]
    fn twilio_error_codes_are_read_from_the_error_body() {
        assert_eq!(
            twilio_error_code(br#"{"code":21211,"message":"bad To","status":400}"#),
            Some(21211)
        );
        assert_eq!(twilio_error_code(b"<html>"), None);
    }
}
