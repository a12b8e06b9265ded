//! The one generic path behind all four channels: request bodies, their
//! conversion into domain requests, and the send and check flows.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use otp_domain::service::{CheckRequest, SendRequest};
use otp_domain::{Channel, Code, ParseError};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{
    ParseError as TypeParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use poem_openapi::Object;
use serde_json::Value;

use super::responses::{Approved, CheckResponse, ErrorBody, ErrorCode, SendResponse, Sent};
use super::AppState;

/// A Telegram chat id as the seed sends it (`"1234567890"`), also
/// accepted as a JSON integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatIdField(pub String);

impl Type for ChatIdField {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "chat_id".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("string");
        schema.description = Some(
            "Telegram chat id: an integer, negative for groups. A JSON string (as the seed sends it) or a JSON integer.",
        );
        schema.example = Some(Value::String("1234567890".into()));
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for ChatIdField {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(s)) => Ok(ChatIdField(s)),
            Some(Value::Number(n)) if n.is_i64() => Ok(ChatIdField(n.to_string())),
            _ => Err(TypeParseError::custom("expected a string or an integer")),
        }
    }
}

impl ParseFromParameter for ChatIdField {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(ChatIdField(value.to_owned()))
    }
}

impl ToJSON for ChatIdField {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// A string field whose pattern the spec documents but which is not
/// checked by regex at runtime: poem-openapi compiles a `pattern`
/// validator's regex on every request (it was most of a check's CPU in
/// the benchmark), and the domain's parsers check these values anyway.
macro_rules! documented_string {
    ($name:ident, $schema:literal, $pattern:literal, $max:literal, $example:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub String);

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> Cow<'static, str> {
                $schema.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                let mut schema = MetaSchema::new("string");
                schema.pattern = Some($pattern.to_owned());
                schema.max_length = Some($max);
                schema.example = Some(Value::String($example.into()));
                MetaSchemaRef::Inline(Box::new(schema))
            }

            fn as_raw_value(&self) -> Option<&Self> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                match value {
                    Some(Value::String(s)) => Ok($name(s)),
                    // Old clients send digits as a JSON number.
                    Some(Value::Number(n)) if n.is_u64() => Ok($name(n.to_string())),
                    // Never echo the value: it may be a password.
                    _ => Err(TypeParseError::custom("expected a string")),
                }
            }
        }

        impl ParseFromParameter for $name {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                Ok($name(value.to_owned()))
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String(self.0.clone()))
            }
        }
    };
}

documented_string!(
    PhoneField,
    "phone",
    r"^\+?[0-9 ().-]{4,32}$",
    32,
    "77011234567"
);
documented_string!(
    EmailField,
    "email",
    r"^[^@\s]+@[^@\s]+$",
    254,
    "foobar@example.com"
);
documented_string!(PasswordField, "password", r"^[!-~]{4,12}$", 12, "12345");

/// `POST /sms` and `POST /call`.
#[derive(Debug, Object)]
pub struct PhoneSend {
    /// Phone number, E.164 (`+77011234567`) or digits only (`77011234567`).
    pub phone: PhoneField,
    /// The code to send, 4 to 12 printable ASCII characters; generated
    /// (digits) when absent.
    pub password: Option<PasswordField>,
    /// Seconds the code stays valid (default 300, bounds in config).
    pub lifetime: Option<i64>,
    /// Text to send; `{password}` and `{lifetime}` are filled in. Default
    /// from config. Must contain `{password}` when no password is given.
    pub message: Option<String>,
}

/// `POST /email`.
#[derive(Debug, Object)]
pub struct EmailSend {
    /// Email address.
    pub email: EmailField,
    /// The code to send; generated when absent.
    pub password: Option<PasswordField>,
    /// Seconds the code stays valid.
    pub lifetime: Option<i64>,
    /// Subject line; placeholders are filled in. One line.
    pub subject: Option<String>,
    /// Body text; placeholders are filled in.
    pub text: Option<String>,
}

/// `POST /telegram`.
#[derive(Debug, Object)]
pub struct TelegramSend {
    pub chat_id: ChatIdField,
    /// The code to send; generated when absent.
    pub password: Option<PasswordField>,
    /// Seconds the code stays valid.
    pub lifetime: Option<i64>,
    /// Text to send; placeholders are filled in.
    pub message: Option<String>,
}

/// `POST /sms/check` and `POST /call/check`.
#[derive(Debug, Object)]
pub struct PhoneCheck {
    pub phone: PhoneField,
    /// What the user typed.
    pub password: PasswordField,
}

/// `POST /email/check`.
#[derive(Debug, Object)]
pub struct EmailCheck {
    pub email: EmailField,
    /// What the user typed.
    pub password: PasswordField,
}

/// `POST /telegram/check`.
#[derive(Debug, Object)]
pub struct TelegramCheck {
    pub chat_id: ChatIdField,
    /// What the user typed.
    pub password: PasswordField,
}

/// A send body, whatever the channel.
pub struct SendParts {
    pub address: String,
    pub password: Option<String>,
    pub lifetime: Option<i64>,
    pub message: Option<String>,
    pub subject: Option<String>,
}

impl From<PhoneSend> for SendParts {
    fn from(b: PhoneSend) -> Self {
        SendParts {
            address: b.phone.0,
            password: b.password.map(|p| p.0),
            lifetime: b.lifetime,
            message: b.message,
            subject: None,
        }
    }
}

impl From<EmailSend> for SendParts {
    fn from(b: EmailSend) -> Self {
        SendParts {
            address: b.email.0,
            password: b.password.map(|p| p.0),
            lifetime: b.lifetime,
            message: b.text,
            subject: b.subject,
        }
    }
}

impl From<TelegramSend> for SendParts {
    fn from(b: TelegramSend) -> Self {
        SendParts {
            address: b.chat_id.0,
            password: b.password.map(|p| p.0),
            lifetime: b.lifetime,
            message: b.message,
            subject: None,
        }
    }
}

/// A check body, whatever the channel: (address, password).
pub struct CheckParts(pub String, pub String);

impl From<PhoneCheck> for CheckParts {
    fn from(b: PhoneCheck) -> Self {
        CheckParts(b.phone.0, b.password.0)
    }
}

impl From<EmailCheck> for CheckParts {
    fn from(b: EmailCheck) -> Self {
        CheckParts(b.email.0, b.password.0)
    }
}

impl From<TelegramCheck> for CheckParts {
    fn from(b: TelegramCheck) -> Self {
        CheckParts(b.chat_id.0, b.password.0)
    }
}

fn send_request(
    state: &AppState,
    channel: Channel,
    parts: SendParts,
    user_key: Option<String>,
) -> Result<SendRequest, ParseError> {
    Ok(SendRequest {
        destination: state.otp.destination(channel, &parts.address)?,
        user_key,
        password: parts.password.as_deref().map(Code::parse).transpose()?,
        lifetime: parts.lifetime,
        message: parts.message,
        subject: parts.subject,
    })
}

fn rfc3339(millis: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(millis);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Sends a code on `channel`.
pub async fn send(
    state: &AppState,
    channel: Channel,
    parts: SendParts,
    user_key: Option<String>,
) -> SendResponse {
    let request = match send_request(state, channel, parts, user_key) {
        Ok(r) => r,
        Err(e) => {
            return SendResponse::BadRequest(ErrorBody::json(
                ErrorCode::InvalidRequest,
                e.to_string(),
            ))
        }
    };
    let destination = request.destination.masked();
    match state.otp.send(request).await {
        Ok(receipt) => {
            tracing::info!(%channel, %destination, lifetime = receipt.lifetime.secs(), "code sent");
            SendResponse::Sent(Json(Sent {
                status: "sent".into(),
                channel: channel.to_string(),
                lifetime: receipt.lifetime.secs(),
                expires_at: rfc3339(receipt.expires_at),
            }))
        }
        Err(e) => {
            crate::error::log_send_error(channel, &destination, &e);
            e.into()
        }
    }
}

/// Checks a code on `channel`.
pub async fn check(state: &AppState, channel: Channel, parts: CheckParts) -> CheckResponse {
    let CheckParts(address, password) = parts;
    let request = match (
        state.otp.destination(channel, &address),
        Code::parse(&password),
    ) {
        (Ok(destination), Ok(password)) => CheckRequest {
            destination,
            password,
        },
        (Err(e), _) | (_, Err(e)) => {
            return CheckResponse::BadRequest(ErrorBody::json(
                ErrorCode::InvalidRequest,
                e.to_string(),
            ))
        }
    };
    let destination = request.destination.masked();
    let result = state.otp.check(request).await;
    crate::error::log_check_result(channel, &destination, &result);
    match result {
        Ok(()) => CheckResponse::Approved(Json(Approved {
            status: "approved".into(),
        })),
        Err(e) => e.into(),
    }
}
