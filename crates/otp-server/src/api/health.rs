//! Liveness and readiness, exempt from auth.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::responses::{ErrorBody, ErrorCode};
use super::{ApiTags, AppState};

#[derive(Debug, Object)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: String,
}

#[derive(Debug, ApiResponse)]
pub enum LiveResponse {
    /// The process serves requests.
    #[oai(status = 200)]
    Ok(Json<Status>),
}

#[derive(Debug, ApiResponse)]
pub enum ReadyResponse {
    /// The store answers; otpd can take traffic.
    #[oai(status = 200)]
    Ready(Json<Status>),
    /// The store cannot be reached (`store_unavailable`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

#[derive(Default)]
pub struct HealthApi;

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: answers while the process runs, without touching the store.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> LiveResponse {
        LiveResponse::Ok(Json(Status {
            status: "ok".into(),
        }))
    }

    /// Readiness: answers 200 only when the store answers.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&Arc<AppState>>) -> ReadyResponse {
        match state.otp.ready().await {
            Ok(()) => ReadyResponse::Ready(Json(Status {
                status: "ready".into(),
            })),
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "readiness check failed");
                ReadyResponse::Unavailable(ErrorBody::json(
                    ErrorCode::StoreUnavailable,
                    "the store cannot be reached",
                ))
            }
        }
    }
}
