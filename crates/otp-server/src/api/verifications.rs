//! `/verifications`: what an app can follow of its sends. Every send
//! creates a verification; these routes read and cancel them. The record
//! never holds the code.

use std::sync::Arc;

use otp_domain::verification::{
    AttemptOutcome, CancelOutcome, CancelReason, DeliveryReport, Status,
};
use otp_domain::{Channel, StoreError, Verification, VerificationId};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::auth::ApiAuth;
use super::fields::DateTime;
use super::idempotency::{self, Refusal};
use super::responses::{self, ErrorBody, ErrorCode};
use super::{ApiTags, AppState};

/// A channel, as a query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase", rename = "Channel")]
pub enum ChannelName {
    Sms,
    Call,
    Email,
    Telegram,
    Whatsapp,
}

impl From<ChannelName> for Channel {
    fn from(c: ChannelName) -> Self {
        match c {
            ChannelName::Sms => Channel::Sms,
            ChannelName::Call => Channel::Call,
            ChannelName::Email => Channel::Email,
            ChannelName::Telegram => Channel::Telegram,
            ChannelName::Whatsapp => Channel::WhatsApp,
        }
    }
}

impl From<Channel> for ChannelName {
    fn from(c: Channel) -> Self {
        match c {
            Channel::Sms => ChannelName::Sms,
            Channel::Call => ChannelName::Call,
            Channel::Email => ChannelName::Email,
            Channel::Telegram => ChannelName::Telegram,
            Channel::WhatsApp => ChannelName::Whatsapp,
        }
    }
}

/// Where a verification stands. Every status but `pending` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case", rename = "VerificationStatus")]
pub enum StatusName {
    /// The code went out and can be checked.
    Pending,
    /// The right code was checked; it is used up.
    Approved,
    /// Too many wrong codes; the code is locked.
    MaxAttemptsReached,
    /// The code ran out unused.
    Expired,
    /// Canceled through the API, or replaced by a newer send (`reason`).
    Canceled,
    /// No provider accepted the message; no code was issued.
    Failed,
}

impl From<Status> for StatusName {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending => StatusName::Pending,
            Status::Approved => StatusName::Approved,
            Status::MaxAttemptsReached => StatusName::MaxAttemptsReached,
            Status::Expired => StatusName::Expired,
            Status::Canceled => StatusName::Canceled,
            Status::Failed => StatusName::Failed,
        }
    }
}

/// Why a verification was canceled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case", rename = "CancelReason")]
pub enum ReasonName {
    /// `POST /verifications/{id}/cancel`.
    Api,
    /// A new send to the same destination replaced the code.
    Replaced,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case", rename = "DeliveryOutcome")]
pub enum OutcomeName {
    Delivered,
    Failed,
}

/// One delivery attempt. `error` is the provider's reason; it never holds
/// the code or a secret.
#[derive(Debug, Clone, Object)]
#[oai(rename = "DeliveryAttempt")]
pub struct DeliveryBody {
    /// The provider's name in the config (`twilio`, `smtp`, `log`, …).
    pub provider: String,
    pub outcome: OutcomeName,
    pub at: DateTime,
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    /// The provider's id of the message (WhatsApp's `wamid.…`), when it
    /// gives one.
    #[oai(skip_serializing_if_is_none)]
    pub message_id: Option<String>,
    /// What the provider reported later (WhatsApp's status webhook).
    #[oai(skip_serializing_if_is_none)]
    pub report: Option<ReportName>,
}

/// A provider's later report on a message: `sent`, `delivered`, `read`
/// or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "DeliveryReport", rename_all = "snake_case")]
pub enum ReportName {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl From<DeliveryReport> for ReportName {
    fn from(r: DeliveryReport) -> Self {
        match r {
            DeliveryReport::Sent => ReportName::Sent,
            DeliveryReport::Delivered => ReportName::Delivered,
            DeliveryReport::Read => ReportName::Read,
            DeliveryReport::Failed => ReportName::Failed,
        }
    }
}

/// A verification: the record of one send. It never holds the code.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Verification")]
pub struct VerificationBody {
    /// `vrf_` and 32 hex digits.
    pub id: String,
    pub channel: ChannelName,
    /// The normalised destination: E.164 phone, email or chat id.
    pub destination: String,
    /// The phone number's ISO region, when it has one.
    #[oai(skip_serializing_if_is_none)]
    pub country: Option<String>,
    /// The locale its message was written in (a BCP-47 tag).
    #[oai(skip_serializing_if_is_none)]
    pub locale: Option<String>,
    pub status: StatusName,
    /// Why it was canceled (`canceled` only).
    #[oai(skip_serializing_if_is_none)]
    pub reason: Option<ReasonName>,
    pub created_at: DateTime,
    /// When the code runs out.
    pub expires_at: DateTime,
    /// Wrong codes checked so far.
    pub attempts: u32,
    /// Wrong codes that lock the code.
    pub max_attempts: u32,
    /// The delivery attempts, in order.
    pub deliveries: Vec<DeliveryBody>,
    /// When it reached its final status.
    #[oai(skip_serializing_if_is_none)]
    pub ended_at: Option<DateTime>,
}

impl From<&Verification> for VerificationBody {
    fn from(v: &Verification) -> Self {
        VerificationBody {
            id: v.id.to_string(),
            channel: v.channel.into(),
            destination: v.destination.clone(),
            country: v.country.clone(),
            locale: v.locale.clone(),
            status: v.status.into(),
            reason: v.reason.map(|r| match r {
                CancelReason::Api => ReasonName::Api,
                CancelReason::Replaced => ReasonName::Replaced,
            }),
            created_at: DateTime::from_millis_precise(v.created_at),
            expires_at: DateTime::from_millis_precise(v.expires_at),
            attempts: v.attempts,
            max_attempts: v.max_attempts,
            deliveries: v
                .deliveries
                .iter()
                .map(|d| DeliveryBody {
                    provider: d.provider.clone(),
                    outcome: match d.outcome {
                        AttemptOutcome::Delivered => OutcomeName::Delivered,
                        AttemptOutcome::Failed => OutcomeName::Failed,
                    },
                    at: DateTime::from_millis_precise(d.at),
                    error: d.error.clone(),
                    message_id: d.message_id.clone(),
                    report: d.report.map(ReportName::from),
                })
                .collect(),
            ended_at: v.ended_at.map(DateTime::from_millis_precise),
        }
    }
}

impl VerificationBody {
    /// The record as the API shows it, as JSON: the `data` of its events
    /// too, so a webhook and `GET /verifications/{id}` never disagree.
    pub fn json(v: &Verification) -> serde_json::Value {
        VerificationBody::from(v)
            .to_json()
            .unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "lookup_bad_request")]
pub enum LookupResponse {
    /// The verification.
    #[oai(status = 200)]
    Found(Json<VerificationBody>),
    /// An invalid query (`invalid_request`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Basic auth is on and the credentials are missing or wrong
    /// (`unauthorized`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// No such verification, or it ended more than
    /// `verifications.retention_secs` ago (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The store cannot be reached (`store_unavailable`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn lookup_bad_request(err: poem::Error) -> LookupResponse {
    LookupResponse::BadRequest(ErrorBody::json(ErrorCode::InvalidRequest, err.to_string()))
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "cancel_bad_request")]
pub enum CancelResponse {
    /// Canceled: the code is dead. `Idempotent-Replayed: true` marks the
    /// stored answer of an earlier request with the same
    /// `Idempotency-Key`.
    #[oai(status = 200)]
    Canceled(
        Json<VerificationBody>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
    /// An invalid `Idempotency-Key` (`invalid_request`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Basic auth is on and the credentials are missing or wrong
    /// (`unauthorized`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// No such verification (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The verification is no longer pending (`already_ended`; the
    /// message names its status), or a request with the same
    /// `Idempotency-Key` is still running (`idempotency_in_progress`).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The `Idempotency-Key` was used with another request
    /// (`idempotency_key_reused`).
    #[oai(status = 422)]
    KeyReused(Json<ErrorBody>),
    /// The store cannot be reached (`store_unavailable`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn cancel_bad_request(err: poem::Error) -> CancelResponse {
    CancelResponse::BadRequest(ErrorBody::json(ErrorCode::InvalidRequest, err.to_string()))
}

fn not_found() -> Json<ErrorBody> {
    ErrorBody::json(ErrorCode::NotFound, "no such verification")
}

fn store_error(e: &StoreError) -> Json<ErrorBody> {
    tracing::error!(error = %otp_domain::error::chain(e), "store unavailable");
    crate::error::store_unavailable()
}

fn found(result: Result<Option<Verification>, StoreError>) -> LookupResponse {
    match result {
        Ok(Some(v)) => LookupResponse::Found(Json(VerificationBody::from(&v))),
        Ok(None) => LookupResponse::NotFound(not_found()),
        Err(e) => LookupResponse::Unavailable(store_error(&e)),
    }
}

#[derive(Default)]
pub struct VerificationsApi;

#[OpenApi(tag = "ApiTags::Verifications")]
impl VerificationsApi {
    /// A verification by its id (from the send's answer).
    #[oai(
        path = "/verifications/:id",
        method = "get",
        operation_id = "verification_get"
    )]
    async fn get(
        &self,
        _auth: ApiAuth,
        state: Data<&Arc<AppState>>,
        /// The id a send answered: `vrf_` and 32 hex digits.
        id: Path<String>,
    ) -> LookupResponse {
        // An id that cannot exist is simply not found.
        let Some(id) = VerificationId::parse(&id.0) else {
            return LookupResponse::NotFound(not_found());
        };
        found(state.otp.verification(&id).await)
    }

    /// The latest verification of a destination, for clients that keep no
    /// id: give the channel and the one address field that goes with it
    /// (`phone` for sms, call and whatsapp, `email`, or `chat_id`).
    #[oai(
        path = "/verifications",
        method = "get",
        operation_id = "verification_latest"
    )]
    async fn latest(
        &self,
        _auth: ApiAuth,
        state: Data<&Arc<AppState>>,
        channel: Query<ChannelName>,
        /// For `sms`, `call` and `whatsapp`.
        phone: Query<Option<String>>,
        /// For `email`.
        email: Query<Option<String>>,
        /// For `telegram`.
        chat_id: Query<Option<String>>,
    ) -> LookupResponse {
        let channel: Channel = channel.0.into();
        let (field, given) = match channel {
            Channel::Sms | Channel::Call | Channel::WhatsApp => ("phone", &phone.0),
            Channel::Email => ("email", &email.0),
            Channel::Telegram => ("chat_id", &chat_id.0),
        };
        let others = [&phone.0, &email.0, &chat_id.0]
            .iter()
            .filter(|o| o.is_some())
            .count();
        let Some(address) = given.as_deref().filter(|_| others == 1) else {
            return LookupResponse::BadRequest(ErrorBody::json(
                ErrorCode::InvalidRequest,
                format!("give `{field}`, and only it, with channel `{channel}`"),
            ));
        };
        let destination = match state.otp.destination(channel, address) {
            Ok(d) => d,
            Err(e) => {
                return LookupResponse::BadRequest(ErrorBody::json(
                    ErrorCode::InvalidRequest,
                    e.to_string(),
                ))
            }
        };
        found(state.otp.latest_verification(&destination).await)
    }

    /// Cancel a pending verification: its code dies at once.
    #[oai(
        path = "/verifications/:id/cancel",
        method = "post",
        operation_id = "verification_cancel"
    )]
    async fn cancel(
        &self,
        _auth: ApiAuth,
        state: Data<&Arc<AppState>>,
        /// The verification's id.
        id: Path<String>,
        /// Makes retries safe: the same key within 24 h answers the first
        /// successful cancel again (with `Idempotent-Replayed: true`).
        #[oai(
            name = "Idempotency-Key",
            validator(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")
        )]
        _idempotency_key: Header<Option<String>>,
        req: &poem::Request,
    ) -> CancelResponse {
        idempotency::run(
            &state,
            req,
            &[b"cancel", id.0.as_bytes()],
            cancel_once(&state, &id.0),
        )
        .await
    }
}

async fn cancel_once(state: &AppState, id: &str) -> CancelResponse {
    let Some(id) = VerificationId::parse(id) else {
        return CancelResponse::NotFound(not_found());
    };
    match state.otp.cancel(&id).await {
        Ok(CancelOutcome::Canceled(v)) => {
            tracing::info!(verification = %v.id, channel = %v.channel, "verification canceled");
            CancelResponse::Canceled(Json(VerificationBody::from(&v)), None)
        }
        Ok(CancelOutcome::AlreadyEnded(v)) => CancelResponse::Conflict(ErrorBody::json(
            ErrorCode::AlreadyEnded,
            format!("the verification is {} already", v.status),
        )),
        Ok(CancelOutcome::NotFound) => CancelResponse::NotFound(not_found()),
        Err(e) => CancelResponse::Unavailable(store_error(&e)),
    }
}

impl idempotency::Keyed for CancelResponse {
    type Body = VerificationBody;

    fn kept(&self) -> Option<&VerificationBody> {
        match self {
            CancelResponse::Canceled(Json(body), _) => Some(body),
            _ => None,
        }
    }

    fn replayed(body: VerificationBody) -> Self {
        CancelResponse::Canceled(Json(body), Some("true".into()))
    }

    fn refused(refusal: Refusal) -> Self {
        match refusal {
            Refusal::InvalidKey => CancelResponse::BadRequest(ErrorBody::json(
                ErrorCode::InvalidRequest,
                idempotency::INVALID_KEY,
            )),
            Refusal::InProgress => CancelResponse::Conflict(responses::in_progress()),
            Refusal::Reused => CancelResponse::KeyReused(responses::key_reused()),
            Refusal::Unavailable => CancelResponse::Unavailable(crate::error::store_unavailable()),
        }
    }
}
