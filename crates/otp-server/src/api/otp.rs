//! The one generic path behind all four channels: request bodies, their
//! conversion into domain requests, and the send and check flows.

use otp_domain::service::{SendReceipt, SendRequest};
use otp_domain::{Channel, CheckError, CheckTarget, Code, Destination, ParseError, SendError};
use poem_openapi::payload::Json;
use poem_openapi::Object;

use super::fields::{
    ChatIdField, DateTime, EmailField, EmailText, Field, LifetimeField, LocaleField, Optional,
    PasswordField, PhoneField, PhoneMessage, Subject, TelegramMessage, TemplatedBody,
};

use super::idempotency::{self, Refusal};
use super::responses::{self, Approved, CheckResponse, ErrorBody, ErrorCode, SendResponse, Sent};
use super::AppState;

/// `POST /sms` and `POST /call`.
#[derive(Debug, Object)]
pub struct PhoneSend {
    pub phone: PhoneField,
    /// The code to send; generated (digits) when absent.
    pub password: Optional<PasswordField>,
    pub lifetime: Optional<LifetimeField>,
    pub message: Optional<PhoneMessage>,
    pub locale: Optional<LocaleField>,
}

impl TemplatedBody for PhoneSend {
    const TEXT_FIELD: &'static str = "message";
}

/// `POST /email`.
#[derive(Debug, Object)]
pub struct EmailSend {
    pub email: EmailField,
    /// The code to send; generated when absent.
    pub password: Optional<PasswordField>,
    pub lifetime: Optional<LifetimeField>,
    pub subject: Optional<Subject>,
    pub text: Optional<EmailText>,
    pub locale: Optional<LocaleField>,
}

impl TemplatedBody for EmailSend {
    const TEXT_FIELD: &'static str = "text";
}

/// `POST /telegram`.
#[derive(Debug, Object)]
pub struct TelegramSend {
    pub chat_id: ChatIdField,
    /// The code to send; generated when absent.
    pub password: Optional<PasswordField>,
    pub lifetime: Optional<LifetimeField>,
    pub message: Optional<TelegramMessage>,
    pub locale: Optional<LocaleField>,
}

impl TemplatedBody for TelegramSend {
    const TEXT_FIELD: &'static str = "message";
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
    pub locale: Option<String>,
}

impl From<PhoneSend> for SendParts {
    fn from(b: PhoneSend) -> Self {
        SendParts {
            address: b.phone.into_inner(),
            password: b.password.0.map(Field::into_inner),
            lifetime: b.lifetime.0.map(|l| l.0),
            message: b.message.0.map(Field::into_inner),
            subject: None,
            locale: b.locale.0.map(Field::into_inner),
        }
    }
}

impl From<EmailSend> for SendParts {
    fn from(b: EmailSend) -> Self {
        SendParts {
            address: b.email.into_inner(),
            password: b.password.0.map(Field::into_inner),
            lifetime: b.lifetime.0.map(|l| l.0),
            message: b.text.0.map(Field::into_inner),
            subject: b.subject.0.map(Field::into_inner),
            locale: b.locale.0.map(Field::into_inner),
        }
    }
}

impl From<TelegramSend> for SendParts {
    fn from(b: TelegramSend) -> Self {
        SendParts {
            address: b.chat_id.into_inner(),
            password: b.password.0.map(Field::into_inner),
            lifetime: b.lifetime.0.map(|l| l.0),
            message: b.message.0.map(Field::into_inner),
            subject: None,
            locale: b.locale.0.map(Field::into_inner),
        }
    }
}

/// A check body, whatever the channel: (address, password).
pub struct CheckParts(pub String, pub String);

impl From<PhoneCheck> for CheckParts {
    fn from(b: PhoneCheck) -> Self {
        CheckParts(b.phone.into_inner(), b.password.into_inner())
    }
}

impl From<EmailCheck> for CheckParts {
    fn from(b: EmailCheck) -> Self {
        CheckParts(b.email.into_inner(), b.password.into_inner())
    }
}

impl From<TelegramCheck> for CheckParts {
    fn from(b: TelegramCheck) -> Self {
        CheckParts(b.chat_id.into_inner(), b.password.into_inner())
    }
}

impl SendParts {
    /// What makes two sends the same request, for `Idempotency-Key`.
    fn fingerprint_parts<'a>(&'a self, channel: &'a str, lifetime: &'a [u8]) -> [&'a [u8]; 8] {
        let opt = |o: &'a Option<String>| o.as_deref().map_or(&b"\0"[..], str::as_bytes);
        [
            b"send",
            channel.as_bytes(),
            self.address.as_bytes(),
            opt(&self.password),
            lifetime,
            opt(&self.message),
            opt(&self.subject),
            opt(&self.locale),
        ]
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
        locale: parts.locale,
        app: None,
    })
}

/// Sends a code on `channel`, under the app's `Idempotency-Key` if it gave
/// one.
pub async fn send(
    state: &AppState,
    channel: Channel,
    parts: SendParts,
    user_key: Option<String>,
    req: &poem::Request,
) -> SendResponse {
    let lifetime = parts.lifetime.map(|l| l.to_be_bytes());
    let fingerprint = parts.fingerprint_parts(
        channel.as_str(),
        lifetime.as_ref().map_or(&b"\0"[..], |l| &l[..]),
    );
    let held = match idempotency::start(state, req, &fingerprint).await {
        idempotency::Start::Answer(answer) => return answer,
        idempotency::Start::Run(held) => held,
    };
    let response = send_once(state, channel, parts, user_key).await;
    idempotency::end(state, held, response).await
}

impl idempotency::Keyed for SendResponse {
    type Body = Sent;

    fn kept(&self) -> Option<&Sent> {
        match self {
            SendResponse::Sent(Json(sent), _) => Some(sent),
            _ => None,
        }
    }

    fn replayed(sent: Sent) -> Self {
        SendResponse::Sent(Json(sent), Some("true".into()))
    }

    fn refused(refusal: Refusal) -> Self {
        match refusal {
            Refusal::InvalidKey => SendResponse::BadRequest(ErrorBody::json(
                ErrorCode::InvalidRequest,
                idempotency::INVALID_KEY,
            )),
            Refusal::InProgress => SendResponse::Conflict(responses::in_progress()),
            Refusal::Reused => SendResponse::KeyReused(responses::key_reused()),
            Refusal::Unavailable => SendResponse::Unavailable(crate::error::store_unavailable()),
        }
    }
}

async fn send_once(
    state: &AppState,
    channel: Channel,
    parts: SendParts,
    user_key: Option<String>,
) -> SendResponse {
    let request = match send_request(state, channel, parts, user_key) {
        Ok(r) => r,
        Err(e) => {
            if let Some(m) = &state.metrics {
                m.invalid_send(channel);
            }
            return SendResponse::BadRequest(ErrorBody::json(
                ErrorCode::InvalidRequest,
                e.to_string(),
            ));
        }
    };
    let target = request.destination.clone();
    match observe_send(state, &target, state.otp.send(request)).await {
        Ok(receipt) => SendResponse::Sent(
            Json(Sent {
                id: receipt.id.to_string(),
                status: "sent".into(),
                channel: channel.to_string(),
                lifetime: receipt.lifetime.secs(),
                expires_at: DateTime::from_millis(receipt.expires_at),
            }),
            None,
        ),
        Err(e) => e.into(),
    }
}

/// Runs a send to `target` and records it as every send is recorded,
/// whichever API asked: metrics, the log line, the console's row.
pub async fn observe_send(
    state: &AppState,
    target: &Destination,
    send: impl std::future::Future<Output = Result<SendReceipt, SendError>>,
) -> Result<SendReceipt, SendError> {
    let channel = target.channel();
    let destination = target.masked();
    let result = send.await;
    if let Some(m) = &state.metrics {
        let test = state.otp.is_test_destination(target);
        m.send(channel, target, test, result.as_ref().map(|_| ()));
    }
    match &result {
        Ok(receipt) => {
            if let (Some(m), Some(block)) = (&state.metrics, &receipt.fraud_block) {
                m.fraud_block(block);
            }
            tracing::info!(%channel, %destination, verification = %receipt.id, lifetime = receipt.lifetime.secs(), "code sent");
            if let Some(console) = &state.console {
                console.record(receipt.id);
            }
        }
        Err(e) => crate::error::log_send_error(channel, &destination, e),
    }
    result
}

/// Checks `password` against `target`'s code and records the check as
/// every check is recorded ([`record_check`]).
///
/// # Errors
/// As [`otp_domain::OtpService::check_at`].
pub async fn observe_check(
    state: &AppState,
    target: &CheckTarget,
    password: &Code,
) -> Result<(), CheckError> {
    let result = state.otp.check_at(target, password).await;
    record_check(state, target, &result);
    result
}

/// Records a check of `target` that ended with `result`, as every check
/// is recorded: metrics and the log line.
pub fn record_check(state: &AppState, target: &CheckTarget, result: &Result<(), CheckError>) {
    let channel = target.channel();
    if let Some(m) = &state.metrics {
        m.check(channel, target, || state.otp.is_test_target(target), result);
    }
    crate::error::log_check_result(channel, &target.masked(), result);
}

/// Checks a code on `channel`. The address is read only as far as finding
/// its code needs (`CheckTarget`): a phone's shape, not its validity, so a
/// number no send accepted is a 404, like any number without a code.
pub async fn check(state: &AppState, channel: Channel, parts: CheckParts) -> CheckResponse {
    let CheckParts(address, password) = parts;
    let (target, password) = match (
        state.otp.check_target(channel, &address),
        Code::parse(&password),
    ) {
        (Ok(target), Ok(password)) => (target, password),
        (Err(e), _) | (_, Err(e)) => {
            if let Some(m) = &state.metrics {
                m.invalid_check(channel);
            }
            return CheckResponse::BadRequest(ErrorBody::json(
                ErrorCode::InvalidRequest,
                e.to_string(),
            ));
        }
    };
    match observe_check(state, &target, &password).await {
        Ok(()) => CheckResponse::Approved(Json(Approved {
            status: "approved".into(),
        })),
        Err(e) => e.into(),
    }
}
