//! WhatsApp's delivery-status webhook (Meta's format, see
//! `otp_gateway::meta_webhook`): `POST /whatsapp/webhook` records each
//! report on its verification's delivery, and a `failed` report that says
//! the number is not on WhatsApp triggers the SMS fallback; `GET` answers
//! Meta's subscription handshake. Both are on only when `[whatsapp.meta]`
//! has an `app_secret`; the auth gate lets them through (Meta cannot send
//! Basic credentials) and the signature is checked here, on the raw body.

use std::sync::Arc;

use otp_domain::ReportEffect;
use otp_gateway::meta_webhook::{self, SIGNATURE_HEADER};
use poem::web::Data;
use poem::{Request, RequestBody};
use poem_openapi::param::Query;
use poem_openapi::payload::{Json, ParsePayload, Payload, PlainText};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::{impl_apirequest_for_payload, OpenApi};

use super::auth::HubAuth;
use super::responses::{Ack, ErrorBody, ErrorCode, HandshakeResponse, StatusResponse};
use super::{ApiTags, AppState};

/// The notification's raw bytes, which the signature covers: parsed only
/// once the signature checks.
pub struct SignedJson(pub Vec<u8>);

impl Payload for SignedJson {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "A WhatsApp Business Account notification: \
                 `entry[].changes[].value.statuses[]` with `id` (the message's `wamid`), \
                 `status` (`sent`, `delivered`, `read`, `failed`), \
                 `biz_opaque_callback_data` (the verification id otpd sent) and \
                 `errors[].code`. Everything else is ignored.",
            ),
            ..MetaSchema::new("object")
        }))
    }
}

impl ParsePayload for SignedJson {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        use poem::FromRequest;
        Ok(SignedJson(<Vec<u8>>::from_request(request, body).await?))
    }
}

impl_apirequest_for_payload!(SignedJson);

fn off() -> Json<ErrorBody> {
    ErrorBody::json(
        ErrorCode::NotFound,
        "the WhatsApp webhook is off: set whatsapp.meta.app_secret",
    )
}

#[derive(Default)]
pub struct WhatsAppHookApi;

#[OpenApi(tag = "ApiTags::Whatsapp")]
impl WhatsAppHookApi {
    /// WhatsApp delivery-status webhook. Register
    /// `https://<otpd>/whatsapp/webhook` in Meta's app dashboard
    /// (WhatsApp → Configuration) and subscribe to the `messages` field.
    /// Every call must carry `X-Hub-Signature-256`, the HMAC-SHA256 of the
    /// body under `whatsapp.meta.app_secret`. A `sent`, `delivered`, `read`
    /// or `failed` report that moves the message on is recorded on the
    /// verification's delivery (event `otpd.delivery.updated`; a replay
    /// changes nothing); a `failed` one with error 131026 sends the same
    /// code by SMS when `whatsapp.fallback = "sms"`.
    #[oai(
        path = "/whatsapp/webhook",
        method = "post",
        operation_id = "whatsapp_webhook"
    )]
    async fn webhook(
        &self,
        _auth: HubAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: SignedJson,
    ) -> StatusResponse {
        let Some(verifier) = &state.whatsapp_hook else {
            return StatusResponse::NotFound(off());
        };
        if !verifier.signed(req.header(SIGNATURE_HEADER), &body.0) {
            tracing::warn!("WhatsApp webhook call with a missing or wrong signature");
            return StatusResponse::Unauthorized(ErrorBody::json(
                ErrorCode::Unauthorized,
                "X-Hub-Signature-256 is missing or does not sign the body",
            ));
        }
        let reports = match meta_webhook::reports(&body.0) {
            Ok(reports) => reports,
            Err(e) => {
                return StatusResponse::BadRequest(ErrorBody::json(
                    ErrorCode::InvalidRequest,
                    format!("not a WhatsApp notification: {e}"),
                ))
            }
        };
        // In a task of its own: a report whose sealed code left the store
        // must finish its fallback even if Meta hangs up meanwhile.
        let state = Arc::clone(&state);
        let recorded = tokio::spawn(async move {
            for r in reports {
                let effect = state
                    .otp
                    .delivery_report(&r.verification, &r.update, r.unreachable)
                    .await?;
                if effect == ReportEffect::Unknown {
                    tracing::debug!(verification = %r.verification, "WhatsApp status of an unknown message ignored");
                } else {
                    tracing::info!(
                        verification = %r.verification,
                        report = r.update.report.as_str(),
                        ?effect,
                        "WhatsApp status report"
                    );
                }
            }
            Ok::<(), otp_domain::StoreError>(())
        })
        .await;
        let error = match recorded {
            Ok(Ok(())) => return StatusResponse::Accepted(Json(Ack { ok: true })),
            Ok(Err(e)) => crate::error::chain(&e).to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(error = %error, "cannot record a WhatsApp status report");
        // Reports before it are recorded; Meta's retry replays them, which
        // changes nothing.
        StatusResponse::Unavailable(ErrorBody::json(
            ErrorCode::StoreUnavailable,
            "the store cannot be reached; retry later",
        ))
    }

    /// Meta's subscription handshake: with `hub.mode=subscribe` and the
    /// configured `whatsapp.meta.verify_token`, answers `hub.challenge`.
    #[oai(
        path = "/whatsapp/webhook",
        method = "get",
        operation_id = "whatsapp_webhook_handshake"
    )]
    async fn handshake(
        &self,
        state: Data<&Arc<AppState>>,
        #[oai(name = "hub.mode")] mode: Query<Option<String>>,
        #[oai(name = "hub.verify_token")] token: Query<Option<String>>,
        #[oai(name = "hub.challenge", validator(max_length = 256))] challenge: Query<
            Option<String>,
        >,
    ) -> HandshakeResponse {
        let Some(verifier) = &state.whatsapp_hook else {
            return HandshakeResponse::NotFound(off());
        };
        if !verifier.subscribes(mode.0.as_deref(), token.0.as_deref()) {
            tracing::warn!("WhatsApp webhook handshake with a wrong verify token");
            return HandshakeResponse::Forbidden(ErrorBody::json(
                ErrorCode::Unauthorized,
                "hub.mode must be subscribe and hub.verify_token the configured one",
            ));
        }
        HandshakeResponse::Subscribed(PlainText(challenge.0.unwrap_or_default()))
    }
}
