//! The one place where domain errors become HTTP responses and log lines.
//! Internal causes are logged with their chain; clients get a stable
//! `{error, message}` body that never carries internals or secrets.

use otp_domain::{Channel, CheckError, SendError, SendErrorKind, StoreError, TargetError};

use crate::api::responses::{CheckResponse, ErrorBody, ErrorCode, SendResponse, TargetResponse};

pub use otp_domain::error::chain;

fn rate_limited(
    e: &dyn std::error::Error,
    retry_after_secs: u64,
) -> poem_openapi::payload::Json<ErrorBody> {
    let mut body = ErrorBody::new(ErrorCode::RateLimited, e.to_string());
    body.retry_after = Some(retry_after_secs);
    poem_openapi::payload::Json(body)
}

pub(crate) fn store_unavailable() -> poem_openapi::payload::Json<ErrorBody> {
    ErrorBody::json(
        ErrorCode::StoreUnavailable,
        "the store cannot be reached; retry later",
    )
}

impl From<SendError> for SendResponse {
    fn from(e: SendError) -> Self {
        let body = |code| ErrorBody::json(code, e.to_string());
        match e.kind() {
            SendErrorKind::Invalid => SendResponse::BadRequest(body(ErrorCode::InvalidRequest)),
            SendErrorKind::UnsupportedLocale => {
                SendResponse::BadRequest(body(ErrorCode::UnsupportedLocale))
            }
            SendErrorKind::CountryRefused => {
                SendResponse::Forbidden(body(ErrorCode::DestinationNotAllowed))
            }
            SendErrorKind::FraudRefused => SendResponse::Forbidden(body(ErrorCode::FraudSuspected)),
            SendErrorKind::RateLimited => {
                let secs = match &e {
                    SendError::RateLimited {
                        retry_after_secs, ..
                    } => *retry_after_secs,
                    _ => 0,
                };
                SendResponse::RateLimited(rate_limited(&e, secs), secs)
            }
            SendErrorKind::DeliveryFailed => SendResponse::DeliveryFailed(ErrorBody::json(
                ErrorCode::DeliveryFailed,
                "the provider did not accept the message; no code was issued",
            )),
            SendErrorKind::StoreError => SendResponse::Unavailable(store_unavailable()),
        }
    }
}

impl From<CheckError> for CheckResponse {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Mismatch { attempts_left } => {
                let mut body = ErrorBody::new(ErrorCode::WrongPassword, e.to_string());
                body.attempts_left = Some(attempts_left);
                CheckResponse::WrongPassword(poem_openapi::payload::Json(body))
            }
            CheckError::NotFound => {
                CheckResponse::NotFound(ErrorBody::json(ErrorCode::NotFound, e.to_string()))
            }
            CheckError::Locked => {
                CheckResponse::Locked(ErrorBody::json(ErrorCode::TooManyAttempts, e.to_string()))
            }
            CheckError::Store(_) => CheckResponse::Unavailable(store_unavailable()),
        }
    }
}

impl From<TargetError> for TargetResponse {
    fn from(e: TargetError) -> Self {
        match e {
            TargetError::NotFound => {
                TargetResponse::NotFound(ErrorBody::json(ErrorCode::NotFound, e.to_string()))
            }
            TargetError::RateLimited { retry_after_secs } => {
                TargetResponse::RateLimited(rate_limited(&e, retry_after_secs), retry_after_secs)
            }
            TargetError::Store(s) => {
                log_store_error(&s);
                TargetResponse::Unavailable(store_unavailable())
            }
        }
    }
}

fn log_store_error(e: &StoreError) {
    tracing::error!(error = %chain(e), "store error");
}

/// Logs a failed send with its cause; destinations come masked.
pub fn log_send_error(channel: Channel, destination: &str, e: &SendError) {
    match e {
        SendError::Delivery(d) => tracing::error!(
            %channel, %destination, provider = %d.provider, reason = %chain(d),
            "delivery failed; the new code was discarded"
        ),
        SendError::Store(s) => {
            tracing::error!(%channel, %destination, error = %chain(s), "store error on send")
        }
        SendError::RateLimited {
            retry_after_secs,
            limit,
        } => {
            tracing::warn!(%channel, %destination, retry_after_secs, limit = limit.as_str(), "send rate-limited")
        }
        other => tracing::info!(%channel, %destination, reason = %other, "send refused"),
    }
}

/// Logs a check's outcome; never the password.
pub fn log_check_result(channel: Channel, destination: &str, result: &Result<(), CheckError>) {
    match result {
        Ok(()) => tracing::info!(%channel, %destination, "check approved"),
        Err(CheckError::Store(s)) => {
            tracing::error!(%channel, %destination, error = %chain(s), "store error on check")
        }
        Err(e) => tracing::info!(%channel, %destination, outcome = %e, "check refused"),
    }
}
