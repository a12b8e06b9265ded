//! The send and check operations of the five channels. They differ only
//! in paths, body types and the address field, so one macro generates
//! them and every handler calls the generic path in `otp`.

use std::sync::Arc;

use otp_domain::Channel;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;

use super::auth::ApiAuth;
use super::fields::{ChatIdField, EmailField, PasswordField, PhoneField, SendBody};
use super::otp::{
    self, CheckParts, EmailCheck, EmailSend, PhoneCheck, PhoneSend, TelegramCheck, TelegramSend,
};
use super::responses::{CheckResponse, SendResponse};
use super::{ApiTags, AppState};

macro_rules! channel_api {
    (
        $api:ident, $tag:tt, $channel:expr,
        send: $send_path:tt, $send_id:tt, $send_doc:tt, $send_body:ty,
        check: $check_path:tt, $check_id:tt, $check_query_id:tt, $check_body:ty,
        field: $field:ident: $field_ty:ty
    ) => {
        #[derive(Default)]
        pub struct $api;

        #[OpenApi(tag = $tag)]
        impl $api {
            #[doc = $send_doc]
            #[oai(path = $send_path, method = "post", operation_id = $send_id)]
            async fn send(
                &self,
                _auth: ApiAuth,
                state: Data<&Arc<AppState>>,
                req: &Request,
                /// The end user this code is for (their IP address or
                /// session id), for per-user send limits. Optional.
                #[oai(name = "X-OTP-User-Key")]
                user_key: Header<Option<String>>,
                /// Makes retries safe: the same key with the same body
                /// within 24 h answers the first answer again (with
                /// `Idempotent-Replayed: true`) and sends nothing. 1 to
                /// 255 visible ASCII characters, e.g. a UUID.
                #[oai(
                    name = "Idempotency-Key",
                    validator(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")
                )]
                _idempotency_key: Header<Option<String>>,
                body: Json<SendBody<$send_body>>,
            ) -> SendResponse {
                let user = super::user_key(req, user_key.0.as_deref(), &state);
                otp::send(&state, $channel, body.0 .0.into(), user, req).await
            }

            /// Check a password (JSON body). The legacy form, GET with the
            /// same JSON body, is accepted too and behaves the same.
            #[oai(path = $check_path, method = "post", operation_id = $check_id)]
            async fn check(
                &self,
                _auth: ApiAuth,
                state: Data<&Arc<AppState>>,
                body: Json<$check_body>,
            ) -> CheckResponse {
                otp::check(&state, $channel, body.0.into()).await
            }

            /// Check a password (query parameters).
            #[oai(path = $check_path, method = "get", operation_id = $check_query_id)]
            async fn check_query(
                &self,
                _auth: ApiAuth,
                state: Data<&Arc<AppState>>,
                $field: Query<$field_ty>,
                password: Query<PasswordField>,
            ) -> CheckResponse {
                let parts: CheckParts = <$check_body>::from_query($field.0, password.0).into();
                otp::check(&state, $channel, parts).await
            }
        }
    };
}

impl PhoneCheck {
    fn from_query(phone: PhoneField, password: PasswordField) -> Self {
        PhoneCheck { phone, password }
    }
}

impl EmailCheck {
    fn from_query(email: EmailField, password: PasswordField) -> Self {
        EmailCheck { email, password }
    }
}

impl TelegramCheck {
    fn from_query(chat_id: ChatIdField, password: PasswordField) -> Self {
        TelegramCheck { chat_id, password }
    }
}

channel_api!(
    SmsApi, "ApiTags::Sms", Channel::Sms,
    send: "/sms", "sms_send", "Send a code by SMS.", PhoneSend,
    check: "/sms/check", "sms_check", "sms_check_query", PhoneCheck,
    field: phone: PhoneField
);

channel_api!(
    CallApi, "ApiTags::Call", Channel::Call,
    send: "/call", "call_send", "Send a code by a robotic voice call.", PhoneSend,
    check: "/call/check", "call_check", "call_check_query", PhoneCheck,
    field: phone: PhoneField
);

channel_api!(
    EmailApi, "ApiTags::Email", Channel::Email,
    send: "/email", "email_send", "Send a code by email.", EmailSend,
    check: "/email/check", "email_check", "email_check_query", EmailCheck,
    field: email: EmailField
);

channel_api!(
    TelegramApi, "ApiTags::Telegram", Channel::Telegram,
    send: "/telegram", "telegram_send", "Send a code to a Telegram chat.", TelegramSend,
    check: "/telegram/check", "telegram_check", "telegram_check_query", TelegramCheck,
    field: chat_id: ChatIdField
);

channel_api!(
    WhatsAppApi, "ApiTags::Whatsapp", Channel::WhatsApp,
    send: "/whatsapp", "whatsapp_send", "Send a code by WhatsApp (an authentication template with a copy-code button on the Cloud API).", PhoneSend,
    check: "/whatsapp/check", "whatsapp_check", "whatsapp_check_query", PhoneCheck,
    field: phone: PhoneField
);
