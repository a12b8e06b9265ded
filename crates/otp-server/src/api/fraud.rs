//! `/fraud/blocks`: the fraud guard's active blocks, and lifting one now.

use std::sync::Arc;

use otp_domain::fraud::{Block, FraudMode, Prefix};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::auth::ApiAuth;
use super::fields::DateTime;
use super::responses::{ErrorBody, ErrorCode};
use super::{ApiTags, AppState};

/// What a block does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase", rename = "FraudMode")]
pub enum ModeName {
    /// Sends under the prefix are refused (403 `fraud_suspected`).
    Block,
    /// Recorded and announced only; nothing is refused.
    Monitor,
}

/// A blocked number prefix.
#[derive(Debug, Clone, Object)]
#[oai(rename = "FraudBlock")]
pub struct BlockBody {
    /// The calling code and the next digits, without `+`.
    pub prefix: String,
    /// ISO region of the numbers, when known.
    #[oai(skip_serializing_if_is_none)]
    pub country: Option<String>,
    pub since: DateTime,
    /// When the block lifts by itself.
    pub until: DateTime,
    /// Sends in the window when it was blocked (estimated).
    pub sends: f64,
    /// Approvals in the window when it was blocked (estimated).
    pub approvals: f64,
    pub mode: ModeName,
}

impl From<&Block> for BlockBody {
    fn from(b: &Block) -> Self {
        BlockBody {
            prefix: b.prefix.to_string(),
            country: b.country.clone(),
            since: DateTime::from_millis_precise(b.since),
            until: DateTime::from_millis_precise(b.until),
            sends: (b.sends * 100.0).round() / 100.0,
            approvals: (b.approvals * 100.0).round() / 100.0,
            mode: match b.mode {
                FraudMode::Monitor => ModeName::Monitor,
                FraudMode::Block | FraudMode::Off => ModeName::Block,
            },
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum BlocksResponse {
    /// The active blocks, by prefix.
    #[oai(status = 200)]
    Blocks(Json<Vec<BlockBody>>),
    /// Basic auth is on and the credentials are missing or wrong
    /// (`unauthorized`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// The store cannot be reached (`store_unavailable`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "unblock_bad_request")]
pub enum UnblockResponse {
    /// Lifted: sends under the prefix go through at once. The body is the
    /// block that was lifted.
    #[oai(status = 200)]
    Unblocked(Json<BlockBody>),
    /// The prefix is not 1 to 15 digits (`invalid_request`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Basic auth is on and the credentials are missing or wrong
    /// (`unauthorized`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// The prefix has no active block (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The store cannot be reached (`store_unavailable`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn unblock_bad_request(err: poem::Error) -> UnblockResponse {
    UnblockResponse::BadRequest(ErrorBody::json(ErrorCode::InvalidRequest, err.to_string()))
}

fn unavailable(e: &otp_domain::StoreError) -> Json<ErrorBody> {
    tracing::error!(error = %otp_domain::error::chain(e), "store unavailable");
    crate::error::store_unavailable()
}

#[derive(Default)]
pub struct FraudApi;

#[OpenApi(tag = "ApiTags::Fraud")]
impl FraudApi {
    /// The fraud guard's active blocks.
    #[oai(path = "/fraud/blocks", method = "get", operation_id = "fraud_blocks")]
    async fn blocks(&self, _auth: ApiAuth, state: Data<&Arc<AppState>>) -> BlocksResponse {
        match state.otp.fraud_blocks().await {
            Ok(blocks) => {
                BlocksResponse::Blocks(Json(blocks.iter().map(BlockBody::from).collect()))
            }
            Err(e) => BlocksResponse::Unavailable(unavailable(&e)),
        }
    }

    /// Lift a block now.
    #[oai(
        path = "/fraud/blocks/:prefix",
        method = "delete",
        operation_id = "fraud_unblock"
    )]
    async fn unblock(
        &self,
        _auth: ApiAuth,
        state: Data<&Arc<AppState>>,
        /// The blocked prefix: digits, without `+`.
        #[oai(validator(pattern = r"^[0-9]{1,15}$"))]
        prefix: Path<String>,
    ) -> UnblockResponse {
        let Some(prefix) = Prefix::parse(&prefix.0) else {
            return UnblockResponse::BadRequest(ErrorBody::json(
                ErrorCode::InvalidRequest,
                "a prefix is 1 to 15 digits",
            ));
        };
        match state.otp.fraud_unblock(&prefix).await {
            Ok(Some(block)) => {
                tracing::warn!(%prefix, "fraud guard: prefix unblocked through the API");
                UnblockResponse::Unblocked(Json(BlockBody::from(&block)))
            }
            Ok(None) => UnblockResponse::NotFound(ErrorBody::json(
                ErrorCode::NotFound,
                "this prefix has no active block",
            )),
            Err(e) => UnblockResponse::Unavailable(unavailable(&e)),
        }
    }
}
