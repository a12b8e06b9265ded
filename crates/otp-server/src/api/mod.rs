//! The HTTP API, as poem-openapi services. The same [`api_service`]
//! serves requests and generates `openapi/openapi.yaml`.
//!
//! - `auth`: the Basic auth and webhook secret security schemes.
//! - `responses`: one `ApiResponse` per kind of operation and the JSON
//!   error body.
//! - `channels`: the four channels' send and check operations, generated
//!   from one macro over one generic path (`otp`).
//! - `telegram_bot`: the webhook and the pairing lookup (`/target`).
//! - `health`: `/healthz` and `/readyz`.

pub mod auth;
pub mod channels;
pub mod health;
pub mod otp;
pub mod responses;
pub mod telegram_bot;

use otp_domain::OtpService;
use poem_openapi::{OpenApiService, Tags};

use self::auth::Credentials;

/// What every handler reaches through `Data<&Arc<AppState>>`.
pub struct AppState {
    pub otp: OtpService,
    /// Basic auth credentials; `None` when auth is off.
    pub credentials: Option<Credentials>,
    /// The webhook's secret token; `None` when not required.
    pub webhook_secret: Option<Credentials>,
}

#[derive(Tags)]
pub enum ApiTags {
    /// One-time passwords by SMS.
    Sms,
    /// One-time passwords read out by a robotic voice call.
    Call,
    /// One-time passwords by email.
    Email,
    /// One-time passwords by Telegram, and the bot that pairs chats.
    Telegram,
    /// Liveness and readiness.
    Health,
}

pub type Api = (
    channels::SmsApi,
    channels::CallApi,
    channels::EmailApi,
    channels::TelegramApi,
    telegram_bot::TelegramBotApi,
    health::HealthApi,
);

/// The whole API, without state (handlers take it as request data).
pub fn api_service() -> OpenApiService<Api, ()> {
    OpenApiService::new(
        (
            channels::SmsApi,
            channels::CallApi,
            channels::EmailApi,
            channels::TelegramApi,
            telegram_bot::TelegramBotApi,
            health::HealthApi,
        ),
        "otpd",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Self-hosted one-time passwords by SMS, voice call, email and Telegram. \
         Every error is a JSON body {\"error\": <machine code>, \"message\": <text>}. \
         Checks are also accepted as GET with a JSON body (the legacy form), \
         which otpd treats exactly like the POST form.",
    )
}
