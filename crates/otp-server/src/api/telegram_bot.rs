//! The Telegram bot flow: the webhook that answers a user's message with
//! a pairing code, and the lookup that trades that code for the chat id.

use std::sync::Arc;

use otp_domain::{ChatId, PairError};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::auth::{ApiAuth, WebhookAuth};
use super::fields::{Optional, PlainText};
use super::responses::{Ack, Target, TargetResponse, WebhookResponse};
use super::{ApiTags, AppState};

/// The part of a Telegram `Update` otpd reads; other fields are ignored.
#[derive(Debug, Object)]
pub struct Update {
    pub update_id: i64,
    pub message: Optional<Message>,
}

#[derive(Debug, Object)]
pub struct Message {
    pub chat: Chat,
    pub from: Optional<User>,
    pub text: Optional<PlainText>,
}

#[derive(Debug, Object)]
pub struct Chat {
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[oai(rename = "type")]
    pub kind: PlainText,
}

#[derive(Debug, Object)]
pub struct User {
    pub id: i64,
    pub is_bot: bool,
}

/// `{password}`: a pairing code the bot sent.
#[derive(Debug, Object)]
pub struct TargetLookup {
    /// The code as the user typed it; case, spaces and dashes are ignored.
    #[oai(validator(max_length = 64))]
    pub password: String,
}

impl Update {
    /// The chat to pair, if this update is a private text message from a
    /// person. Anything else gets no code.
    fn pairing_chat(&self) -> Option<ChatId> {
        let m = self.message.0.as_ref()?;
        m.text.0.as_ref()?;
        if m.chat.kind.0 != "private" || m.from.0.as_ref().is_none_or(|u| u.is_bot) {
            return None;
        }
        ChatId::from_i64(m.chat.id).ok().filter(|c| c.is_private())
    }
}

async fn redeem(
    state: &AppState,
    req: &Request,
    user_key: Option<&str>,
    password: &str,
) -> TargetResponse {
    let user = super::user_key(req, user_key, state);
    match state.otp.redeem_pairing(password, user.as_deref()).await {
        Ok(chat) => {
            tracing::info!(chat = %chat.masked(), "pairing redeemed");
            TargetResponse::Found(Json(Target {
                chat_id: chat.get(),
            }))
        }
        Err(e) => e.into(),
    }
}

#[derive(Default)]
pub struct TelegramBotApi;

#[OpenApi(tag = "ApiTags::Telegram")]
impl TelegramBotApi {
    /// Telegram webhook. A private text message to the bot gets a fresh
    /// pairing code in reply; redeem it at `/telegram/target` for the
    /// chat id. Set the webhook with a `secret_token` and configure the
    /// same value as `TELEGRAM_WEBHOOK_SECRET`.
    #[oai(
        path = "/telegram/webhook",
        method = "post",
        operation_id = "telegram_webhook"
    )]
    async fn webhook(
        &self,
        _auth: WebhookAuth,
        state: Data<&Arc<AppState>>,
        update: Json<Update>,
    ) -> WebhookResponse {
        let Some(chat) = update.pairing_chat() else {
            tracing::debug!(update_id = update.update_id, "webhook update ignored");
            return WebhookResponse::Accepted(Json(Ack { ok: true }));
        };
        match state.otp.first_delivery(update.update_id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(
                    update_id = update.update_id,
                    "repeated webhook update ignored"
                );
                return WebhookResponse::Accepted(Json(Ack { ok: true }));
            }
            Err(e) => {
                tracing::error!(error = %crate::error::chain(&e), "cannot record the webhook update");
                return WebhookResponse::Accepted(Json(Ack { ok: true }));
            }
        }
        match state.otp.start_pairing(chat).await {
            Ok(()) => tracing::info!(chat = %chat.masked(), "pairing code sent"),
            Err(PairError::RateLimited {
                retry_after_secs,
                limit,
            }) => {
                tracing::warn!(chat = %chat.masked(), retry_after_secs, limit = limit.as_str(), "pairing rate-limited")
            }
            Err(e) => tracing::error!(
                chat = %chat.masked(),
                error = %crate::error::chain(&e),
                "pairing failed"
            ),
        }
        // 2xx whatever happened: a retried update would not help.
        WebhookResponse::Accepted(Json(Ack { ok: true }))
    }

    /// Trade a pairing code for the chat id (query parameter), once.
    #[oai(
        path = "/telegram/target",
        method = "get",
        operation_id = "telegram_target_query"
    )]
    async fn target_query(
        &self,
        _auth: ApiAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        /// The end user looking the code up, for per-user failure limits.
        #[oai(name = "X-OTP-User-Key")]
        user_key: Header<Option<String>>,
        password: Query<String>,
    ) -> TargetResponse {
        redeem(&state, req, user_key.0.as_deref(), &password.0).await
    }

    /// Trade a pairing code for the chat id (JSON body), once.
    #[oai(
        path = "/telegram/target",
        method = "post",
        operation_id = "telegram_target"
    )]
    async fn target(
        &self,
        _auth: ApiAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        /// The end user looking the code up, for per-user failure limits.
        #[oai(name = "X-OTP-User-Key")]
        user_key: Header<Option<String>>,
        body: Json<TargetLookup>,
    ) -> TargetResponse {
        redeem(&state, req, user_key.0.as_deref(), &body.0.password).await
    }

    /// The seed's path for `/telegram/target` (query parameter).
    #[oai(path = "/target", method = "get", operation_id = "target_query")]
    async fn seed_target_query(
        &self,
        _auth: ApiAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        /// The end user looking the code up, for per-user failure limits.
        #[oai(name = "X-OTP-User-Key")]
        user_key: Header<Option<String>>,
        password: Query<String>,
    ) -> TargetResponse {
        redeem(&state, req, user_key.0.as_deref(), &password.0).await
    }

    /// The seed's path for `/telegram/target` (JSON body).
    #[oai(path = "/target", method = "post", operation_id = "target")]
    async fn seed_target(
        &self,
        _auth: ApiAuth,
        state: Data<&Arc<AppState>>,
        req: &Request,
        /// The end user looking the code up, for per-user failure limits.
        #[oai(name = "X-OTP-User-Key")]
        user_key: Header<Option<String>>,
        body: Json<TargetLookup>,
    ) -> TargetResponse {
        redeem(&state, req, user_key.0.as_deref(), &body.0.password).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(kind: &str, chat: i64, is_bot: bool, text: Option<&str>) -> Update {
        Update {
            update_id: 1,
            message: Optional(Some(Message {
                chat: Chat {
                    id: chat,
                    kind: PlainText::new(kind),
                },
                from: Optional(Some(User { id: chat, is_bot })),
                text: Optional(text.map(PlainText::new)),
            })),
        }
    }

    #[test]
    fn only_private_text_from_people_pairs() {
        assert!(update("private", 42, false, Some("hi"))
            .pairing_chat()
            .is_some());
        assert!(update("group", -42, false, Some("hi"))
            .pairing_chat()
            .is_none());
        assert!(update("private", 42, true, Some("hi"))
            .pairing_chat()
            .is_none());
        assert!(update("private", 42, false, None).pairing_chat().is_none());
        let no_message = Update {
            update_id: 2,
            message: Optional(None),
        };
        assert!(no_message.pairing_chat().is_none());
    }
}
