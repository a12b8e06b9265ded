//! The HTTP API, as poem-openapi services. The same [`api_service`]
//! serves requests and generates `openapi/openapi.yaml`.
//!
//! - `auth`: the gate, the one place auth is enforced, with its `EXEMPT`
//!   table; the security schemes that document it in the spec.
//! - `responses`: one `ApiResponse` per kind of operation and the JSON
//!   error body.
//! - `fields`: request fields whose schemas state every constraint.
//! - `channels`: the five channels' send and check operations, generated
//!   from one macro over one generic path (`otp`).
//! - `telegram_bot`: the webhook and the pairing lookup (`/target`).
//! - `whatsapp_hook`: WhatsApp's delivery-status webhook and Meta's
//!   subscription handshake.
//! - `locales`: `/locales`, the locales messages are written in.
//! - `health`: `/healthz` and `/readyz`.
//! - `dev`: the dev outbox as JSON (`/outbox/messages`).
//! - `twilio`: the Twilio Verify compatible routes under `/v2`, on the
//!   wire format of `otp-twilio-verify`; the native API's modules know
//!   nothing of it (only `AppState` holds its state).

pub mod auth;
pub mod channels;
pub mod dev;
pub mod fields;
pub mod fraud;
pub mod health;
pub mod idempotency;
pub mod locales;
pub mod otp;
pub mod responses;
pub mod telegram_bot;
pub mod twilio;
pub mod verifications;
pub mod whatsapp_hook;

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
    /// WhatsApp's status webhook; `None` (off) without
    /// `whatsapp.meta.app_secret`.
    pub whatsapp_hook: Option<otp_gateway::meta_webhook::Verifier>,
    /// Proxies whose `X-Forwarded-For` names the end user.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Counters of sends, checks and requests; `None` when metrics are off.
    pub metrics: Option<std::sync::Arc<otp_telemetry::metrics::Metrics>>,
    /// The dev outbox, while a channel uses the dev sink.
    pub outbox: Option<std::sync::Arc<crate::outbox::DevOutbox>>,
    /// The operator console's memory: recent sends, counter samples.
    /// `None` when `console.enabled` is off (the pages are then 404).
    pub console: Option<std::sync::Arc<crate::console::memory::Console>>,
    /// The Twilio Verify compatible API (`/v2`); `None` (404) unless
    /// `twilio_api.account_sid` and `auth_token` are set.
    pub twilio: Option<twilio::TwilioApi>,
}

/// The end user a request is for, for per-user limits: the
/// `X-OTP-User-Key` header the app sets (the user's IP or session), else
/// the client address a trusted proxy forwards. Never the caller's own
/// address, which is the app backend's for every request.
pub fn user_key(req: &poem::Request, header: Option<&str>, state: &AppState) -> Option<String> {
    if let Some(key) = header.map(str::trim).filter(|k| !k.is_empty()) {
        return Some(key.chars().take(128).collect());
    }
    let peer = req.remote_addr().as_socket_addr()?.ip();
    if !state.trusted_proxies.contains(&peer) {
        return None;
    }
    // The right-most address that is not one of our proxies is the
    // client; anything left of it could be forged by the client.
    req.header("x-forwarded-for")?
        .split(',')
        .rev()
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .find(|ip| !state.trusted_proxies.contains(ip))
        .map(|ip| match ip {
            // One IPv6 user usually holds a whole /64: limit the network.
            std::net::IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            v4 => v4.to_string(),
        })
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
    /// One-time passwords by WhatsApp.
    Whatsapp,
    /// Verifications: every send's record, to look up or cancel.
    Verifications,
    /// The fraud guard: blocked number prefixes.
    Fraud,
    /// The languages messages are written in.
    Locales,
    /// Liveness and readiness.
    Health,
    /// Development tools: the dev outbox of the `log` sink.
    Dev,
    /// The Twilio Verify compatible API (`/v2`): Twilio's paths, form
    /// bodies, resources and error codes, behind Basic auth with
    /// `twilio_api.account_sid` and `auth_token`. Off (404) unless both
    /// are set.
    TwilioVerify,
}

/// Every API of the service, in the order the spec lists their tags.
/// (The channels are a tuple of their own: poem-openapi nests tuples,
/// and `Default` is derived for tuples of at most twelve.)
pub type Api = (
    (
        channels::SmsApi,
        channels::CallApi,
        channels::EmailApi,
        channels::TelegramApi,
        channels::WhatsAppApi,
    ),
    telegram_bot::TelegramBotApi,
    whatsapp_hook::WhatsAppHookApi,
    verifications::VerificationsApi,
    fraud::FraudApi,
    locales::LocalesApi,
    health::HealthApi,
    dev::DevApi,
    twilio::TwilioVerifyApi,
);

/// The whole API, without state (handlers take it as request data).
pub fn api_service() -> OpenApiService<Api, ()> {
    OpenApiService::new(Api::default(), "otpd", env!("CARGO_PKG_VERSION")).description(
        "Self-hosted one-time passwords by SMS, voice call, email and Telegram.\n\n\
         Every error is a JSON body such as \
         `{\"error\": \"wrong_password\", \"message\": \"wrong password; 4 attempts left\"}`: \
         `error` is one of the `ErrorCode` values and is stable, `message` is for people.\n\n\
         Checks are also accepted as GET with a JSON body (the legacy form), \
         which otpd treats exactly like the POST form.",
    )
}
