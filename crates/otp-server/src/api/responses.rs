//! Responses. Each kind of operation has its own `ApiResponse`, so every
//! status it can answer is in the spec; every error is an [`ErrorBody`].
//! The mapping from domain errors lives in `crate::error`.

use poem::http::StatusCode;
use poem::Response;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Enum, Object};

/// The machine-readable code of an error. Clients branch on it; the
/// `message` beside it is for people and may change.
///
/// - `invalid_request` (400): malformed JSON, a missing field or an invalid value.
/// - `unsupported_locale` (400): a well-formed `locale` that no served locale matches.
/// - `unauthorized` (401): Basic auth is on and the credentials are missing or wrong,
///   or the webhook's secret token is missing or wrong.
/// - `destination_not_allowed` (403): the phone's country is not allowed on this channel.
/// - `fraud_suspected` (403): the fraud guard refuses sends to this number
///   for now.
/// - `not_found` (404): no such route, no active code or pairing, or no such
///   verification.
/// - `method_not_allowed` (405): the route does not take that method (see `Allow`).
/// - `already_ended` (409): the verification is no longer pending.
/// - `idempotency_in_progress` (409): a request with the same `Idempotency-Key`
///   is still running.
/// - `payload_too_large` (413): the body is larger than `server.body_limit`.
/// - `idempotency_key_reused` (422): the `Idempotency-Key` was used with
///   another request.
/// - `wrong_password` (422): the code did not match; see `attempts_left`.
/// - `too_many_attempts` (429): the code is locked after too many wrong passwords.
/// - `rate_limited` (429): a send or lookup limit was hit; see `retry_after`.
/// - `internal_error` (500): a bug; the details are in otpd's log.
/// - `delivery_failed` (502): no provider accepted the message; no code was issued.
/// - `store_unavailable` (503): the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    UnsupportedLocale,
    Unauthorized,
    DestinationNotAllowed,
    FraudSuspected,
    NotFound,
    MethodNotAllowed,
    AlreadyEnded,
    IdempotencyInProgress,
    PayloadTooLarge,
    IdempotencyKeyReused,
    WrongPassword,
    TooManyAttempts,
    RateLimited,
    InternalError,
    DeliveryFailed,
    StoreUnavailable,
}

/// The JSON body of every error.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `wrong_password`.
    pub error: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Checks left before the code locks (`wrong_password` only).
    #[oai(skip_serializing_if_is_none)]
    pub attempts_left: Option<u32>,
    /// Seconds to wait before retrying (`rate_limited` only); also in the
    /// `Retry-After` header.
    #[oai(skip_serializing_if_is_none)]
    pub retry_after: Option<u64>,
}

impl ErrorBody {
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error,
            message: message.into(),
            attempts_left: None,
            retry_after: None,
        }
    }

    pub fn json(error: ErrorCode, message: impl Into<String>) -> Json<ErrorBody> {
        Json(Self::new(error, message))
    }

    /// The body as a plain response, for errors answered outside the
    /// operations (middleware, unknown routes).
    pub fn response(&self, status: StatusCode) -> Response {
        let json = self.to_json().unwrap_or_default();
        Response::builder()
            .status(status)
            .content_type("application/json; charset=utf-8")
            .body(json.to_string())
    }
}

pub const WWW_AUTHENTICATE: &str = "Basic realm=\"otpd\"";

fn invalid_request(err: &poem::Error) -> Json<ErrorBody> {
    ErrorBody::json(ErrorCode::InvalidRequest, err.to_string())
}

/// A code was sent.
#[derive(Debug, Object)]
pub struct Sent {
    /// The verification this send created: `GET /verifications/{id}`.
    pub id: String,
    /// Always `sent`.
    pub status: String,
    /// `sms`, `call`, `email` or `telegram`.
    pub channel: String,
    /// Seconds the code stays valid.
    pub lifetime: u32,
    /// When the code expires (RFC 3339, UTC).
    pub expires_at: super::fields::DateTime,
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "send_bad_request")]
pub enum SendResponse {
    /// The code was stored and handed to the provider. The password is
    /// never echoed. `Idempotent-Replayed: true` marks the stored answer
    /// of an earlier request with the same `Idempotency-Key`.
    #[oai(status = 200)]
    Sent(
        Json<Sent>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
    /// Malformed JSON, a missing field or an invalid value
    /// (`invalid_request`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Basic auth is on and the credentials are missing or wrong
    /// (`unauthorized`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// The phone's country is not allowed for this channel
    /// (`destination_not_allowed`), or the fraud guard refuses sends to
    /// this number for now (`fraud_suspected`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// A request with the same `Idempotency-Key` is still running
    /// (`idempotency_in_progress`).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than `server.body_limit` (`payload_too_large`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The `Idempotency-Key` was used with another request
    /// (`idempotency_key_reused`).
    #[oai(status = 422)]
    KeyReused(Json<ErrorBody>),
    /// Too many sends: to this destination, for this end user, or on this
    /// channel in the last hour (`rate_limited`); see `Retry-After`.
    #[oai(status = 429)]
    RateLimited(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// The provider refused or could not be reached (`delivery_failed`).
    /// The new code was discarded; an older code for this destination was
    /// already replaced.
    #[oai(status = 502)]
    DeliveryFailed(Json<ErrorBody>),
    /// The store cannot be reached (`store_unavailable`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// The error bodies of an `Idempotency-Key` that stops a request.
pub fn in_progress() -> Json<ErrorBody> {
    ErrorBody::json(
        ErrorCode::IdempotencyInProgress,
        "a request with this Idempotency-Key is still running; retry later",
    )
}

pub fn key_reused() -> Json<ErrorBody> {
    ErrorBody::json(
        ErrorCode::IdempotencyKeyReused,
        "this Idempotency-Key was used with another request",
    )
}

fn send_bad_request(err: poem::Error) -> SendResponse {
    SendResponse::BadRequest(invalid_request(&err))
}

/// The check approved the password.
#[derive(Debug, Object)]
pub struct Approved {
    /// Always `approved`.
    pub status: String,
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "check_bad_request")]
pub enum CheckResponse {
    /// The password is right. The code is used up: a second check gets 404.
    #[oai(status = 200)]
    Approved(Json<Approved>),
    /// Malformed request or invalid field (`invalid_request`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Basic auth is on and the credentials are missing or wrong
    /// (`unauthorized`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// No active code: never sent, expired or already used (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The body is larger than `server.body_limit` (`payload_too_large`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Wrong password (`wrong_password`); `attempts_left` says how many
    /// checks remain before the code locks.
    #[oai(status = 422)]
    WrongPassword(Json<ErrorBody>),
    /// The code is locked after too many wrong passwords
    /// (`too_many_attempts`); even the right one is refused until a new
    /// send.
    #[oai(status = 429)]
    Locked(Json<ErrorBody>),
    /// The store cannot be reached (`store_unavailable`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn check_bad_request(err: poem::Error) -> CheckResponse {
    CheckResponse::BadRequest(invalid_request(&err))
}

/// The chat a pairing code was sent to.
#[derive(Debug, Object)]
pub struct Target {
    /// The Telegram chat id; use it with `POST /telegram`.
    pub chat_id: i64,
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "target_bad_request")]
pub enum TargetResponse {
    /// The code was valid; it is used up now.
    #[oai(status = 200)]
    Found(Json<Target>),
    /// Malformed request (`invalid_request`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Basic auth is on and the credentials are missing or wrong
    /// (`unauthorized`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// Unknown, expired or already used code (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The body is larger than `server.body_limit` (`payload_too_large`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Too many failed lookups for this end user (`rate_limited`); see
    /// `Retry-After`.
    #[oai(status = 429)]
    RateLimited(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// The store cannot be reached (`store_unavailable`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn target_bad_request(err: poem::Error) -> TargetResponse {
    TargetResponse::BadRequest(invalid_request(&err))
}

/// Acknowledgement of a webhook call.
#[derive(Debug, Object)]
pub struct Ack {
    pub ok: bool,
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "webhook_bad_request")]
pub enum WebhookResponse {
    /// Accepted, whether or not the update started a pairing (updates
    /// from groups, bots or without text are ignored), so Telegram does
    /// not retry.
    #[oai(status = 200)]
    Accepted(Json<Ack>),
    /// The body is not a Telegram `Update` (`invalid_request`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The secret token header is missing or wrong (`unauthorized`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The body is larger than `server.body_limit` (`payload_too_large`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
}

fn webhook_bad_request(err: poem::Error) -> WebhookResponse {
    WebhookResponse::BadRequest(invalid_request(&err))
}

/// WhatsApp's status webhook (`POST /whatsapp/webhook`).
#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "status_bad_request")]
pub enum StatusResponse {
    /// Taken: every report on otpd's messages is recorded (a replay
    /// changes nothing); statuses of other messages are ignored.
    #[oai(status = 200)]
    Accepted(Json<Ack>),
    /// The body is not a notification (`invalid_request`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `X-Hub-Signature-256` is missing or does not sign the body
    /// (`unauthorized`); nothing was recorded.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The webhook is off: `[whatsapp.meta]` has no `app_secret`
    /// (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The body is larger than `server.body_limit` (`payload_too_large`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The store cannot be reached (`store_unavailable`): Meta retries.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn status_bad_request(err: poem::Error) -> StatusResponse {
    StatusResponse::BadRequest(invalid_request(&err))
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "handshake_bad_request")]
pub enum HandshakeResponse {
    /// The right token: the challenge, echoed.
    #[oai(status = 200)]
    Subscribed(PlainText<String>),
    /// A parameter is invalid (`invalid_request`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Not `hub.mode=subscribe` with the configured `verify_token` (error
    /// code `unauthorized`, as for a wrong credential).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The webhook is off (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

fn handshake_bad_request(err: poem::Error) -> HandshakeResponse {
    HandshakeResponse::BadRequest(invalid_request(&err))
}
