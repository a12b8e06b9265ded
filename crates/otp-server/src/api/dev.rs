//! The dev outbox as JSON, for tests of apps that integrate otpd: what
//! the `log` dev sink "sent". 404 unless a channel uses the dev sink.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::auth::ApiAuth;
use super::responses::{ErrorBody, ErrorCode};
use super::{ApiTags, AppState};
use crate::outbox::{Filter, OutboxEntry};

#[derive(Debug, ApiResponse)]
pub enum OutboxResponse {
    /// The messages, newest first.
    #[oai(status = 200)]
    Messages(Json<Vec<OutboxEntry>>),
    /// Basic auth is on and the credentials are missing or wrong
    /// (`unauthorized`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// No channel uses the dev sink, so there is no outbox (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(Debug, ApiResponse)]
pub enum ClearResponse {
    /// The outbox is empty now.
    #[oai(status = 204)]
    Cleared,
    /// Basic auth is on and the credentials are missing or wrong
    /// (`unauthorized`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// No channel uses the dev sink, so there is no outbox (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

fn no_outbox() -> Json<ErrorBody> {
    ErrorBody::json(
        ErrorCode::NotFound,
        "no channel uses the log dev sink, so there is no dev outbox",
    )
}

#[derive(Default)]
pub struct DevApi;

#[OpenApi(tag = "ApiTags::Dev")]
impl DevApi {
    /// The dev sink's last messages (at most `dev.outbox_size`), newest
    /// first, codes included. Exists only while a channel uses the `log`
    /// dev sink.
    #[oai(
        path = "/outbox/messages",
        method = "get",
        operation_id = "outbox_messages"
    )]
    async fn messages(
        &self,
        _auth: ApiAuth,
        state: Data<&Arc<AppState>>,
        /// Only this channel: `sms`, `call`, `email` or `telegram`.
        channel: Query<Option<String>>,
        /// Only destinations that contain this text (case ignored).
        to: Query<Option<String>>,
    ) -> OutboxResponse {
        let Some(outbox) = &state.outbox else {
            return OutboxResponse::NotFound(no_outbox());
        };
        let filter = Filter {
            channel: channel.0,
            to: to.0,
        };
        let entries = outbox.list(&filter);
        OutboxResponse::Messages(Json(
            entries.iter().map(|e| OutboxEntry::clone(e)).collect(),
        ))
    }

    /// Empty the dev outbox.
    #[oai(
        path = "/outbox/messages",
        method = "delete",
        operation_id = "outbox_clear"
    )]
    async fn clear(&self, _auth: ApiAuth, state: Data<&Arc<AppState>>) -> ClearResponse {
        match &state.outbox {
            Some(outbox) => {
                outbox.clear();
                ClearResponse::Cleared
            }
            None => ClearResponse::NotFound(no_outbox()),
        }
    }
}
