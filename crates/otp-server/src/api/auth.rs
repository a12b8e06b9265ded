//! Authentication, enforced in exactly one place: [`gate`], a middleware
//! in front of the router. It runs before any body is read, so an
//! unauthenticated caller learns nothing from validation, and it is
//! closed by default: a route needs Basic auth (when auth is on) unless
//! the one table [`EXEMPT`] says otherwise.
//!
//! The security schemes below only document auth in the spec; they never
//! refuse a request (the gate already did), and handlers never look at
//! them.

use std::sync::Arc;

use poem::http::{header, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use poem_openapi::auth::{ApiKey, Basic};
use poem_openapi::SecurityScheme;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::responses::{ErrorBody, ErrorCode, WWW_AUTHENTICATE};
use super::AppState;

/// A secret to compare against, kept as its SHA-256 so every comparison
/// takes the same time whatever the lengths.
pub struct Credentials {
    user: [u8; 32],
    secret: [u8; 32],
    /// Of the `Authorization` header as clients write it for this pair:
    /// `Basic ` and the standard base64 of `user:secret`.
    header: [u8; 32],
}

fn sha(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Credentials {
    pub fn new(user: &str, secret: &str) -> Self {
        use base64::Engine;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
        Credentials {
            user: sha(user),
            secret: sha(secret),
            header: sha(&format!("Basic {pair}")),
        }
    }

    /// Whether an `Authorization` header carries this pair. The header as
    /// clients write it is matched by one hash (constant time); any other
    /// form (`basic`, padding spaces) is decoded and matched part by part.
    pub fn admit_basic(&self, header: Option<&str>) -> bool {
        let Some(value) = header else {
            return false;
        };
        bool::from(self.header.ct_eq(&sha(value)))
            || decode_basic(value).is_some_and(|(u, p)| self.matches(&u, &p))
    }

    /// Constant-time match of both parts (no short circuit).
    pub fn matches(&self, user: &str, secret: &str) -> bool {
        let u = self.user.ct_eq(&sha(user));
        let s = self.secret.ct_eq(&sha(secret));
        (u & s).into()
    }
}

/// What a route takes instead of Basic auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health, the spec and the docs.
    Open,
    /// The `X-Telegram-Bot-Api-Secret-Token` header, when a webhook
    /// secret is configured: Telegram cannot send Basic credentials.
    WebhookSecret,
    /// Meta's `X-Hub-Signature-256`, which signs the body: the route
    /// checks it itself, on the raw bytes.
    Signed,
    /// The Twilio-compatible API's own Basic auth, `twilio_api.account_sid`
    /// and `auth_token`, answered in Twilio's words (401 code 20003; 404
    /// while the API is off).
    Twilio,
}

/// The header Telegram sends with every webhook call when the webhook was
/// set with a `secret_token`.
pub const WEBHOOK_SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// The routes that do not take Basic auth: `(path, whole subtree?, access)`.
/// Every other route, present or future, is closed when auth is on.
pub const EXEMPT: &[(&str, bool, Access)] = &[
    ("/healthz", false, Access::Open),
    ("/readyz", false, Access::Open),
    ("/openapi.json", false, Access::Open),
    ("/openapi.yaml", false, Access::Open),
    ("/docs", true, Access::Open),
    ("/telegram/webhook", false, Access::WebhookSecret),
    ("/whatsapp/webhook", false, Access::Signed),
    ("/v2", true, Access::Twilio),
];

/// How `path` is guarded: `None` means Basic auth.
pub fn exemption(path: &str) -> Option<Access> {
    EXEMPT.iter().find_map(|&(route, subtree, access)| {
        let hit = path == route
            || (subtree
                && path.strip_prefix(route).is_some_and(|rest| {
                    // A subtree. The router does not normalise paths, so
                    // `/docs/../sms` never reaches /sms; refusing dot
                    // segments here keeps that true if it ever does.
                    rest.starts_with('/') && !rest.split('/').any(|s| s == "..")
                }));
        hit.then_some(access)
    })
}

fn unauthorized(basic: bool) -> Response {
    let mut resp = ErrorBody::new(ErrorCode::Unauthorized, "missing or wrong credentials")
        .response(StatusCode::UNAUTHORIZED);
    if basic {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(WWW_AUTHENTICATE),
        );
    }
    resp
}

/// The one enforcement point of authentication.
pub async fn gate<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    state: Arc<AppState>,
) -> Result<Response> {
    let exempt = exemption(req.uri().path());
    if exempt == Some(Access::Twilio) {
        use otp_twilio_verify::errors::Fail;
        let admitted = match &state.twilio {
            None => return Ok(Fail::not_found().response()),
            Some(t) => t.admits(req.header(header::AUTHORIZATION)),
        };
        if !admitted {
            return Ok(Fail::unauthorized().response());
        }
        return next.call(req).await.map(IntoResponse::into_response);
    }
    let allowed = match exempt {
        Some(Access::Open | Access::Signed | Access::Twilio) => true,
        Some(Access::WebhookSecret) => state.webhook_secret.as_ref().is_none_or(|secret| {
            req.header(WEBHOOK_SECRET_HEADER)
                .is_some_and(|given| secret.matches("", given))
        }),
        None => state
            .credentials
            .as_ref()
            .is_none_or(|credentials| credentials.admit_basic(req.header(header::AUTHORIZATION))),
    };
    if !allowed {
        let basic = exempt.is_none();
        if !basic {
            tracing::warn!("webhook call with a missing or wrong secret token");
        }
        return Ok(unauthorized(basic));
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// The user and password of a Basic `Authorization` header's value.
fn decode_basic(value: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

// The schemes' checkers document the gate's check in the spec and never
// refuse by themselves: the gate already did.
async fn basic_documented(_req: &Request, _given: Basic) -> Option<()> {
    Some(())
}

async fn hub_documented(_req: &Request, _given: ApiKey) -> Option<()> {
    Some(())
}

async fn webhook_documented(_req: &Request, _given: ApiKey) -> Option<()> {
    Some(())
}

/// HTTP Basic auth, on when `auth.username`/`auth.password` (or
/// `HTTP_AUTH_USERNAME`/`HTTP_AUTH_PASSWORD`) are set.
#[derive(SecurityScheme)]
#[oai(ty = "basic", checker = "basic_documented")]
pub struct BasicAuth(());

/// Basic auth when configured, otherwise open. Handlers take it only so
/// the spec shows it; the gate enforces it.
#[derive(SecurityScheme)]
pub enum ApiAuth {
    Basic(BasicAuth),
    #[oai(fallback)]
    Anonymous,
}

/// The `X-Telegram-Bot-Api-Secret-Token` header that Telegram sends with
/// every webhook call when the webhook was set with a `secret_token`.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "X-Telegram-Bot-Api-Secret-Token",
    key_in = "header",
    checker = "webhook_documented"
)]
pub struct WebhookSecret(());

/// The webhook secret when configured, otherwise open.
#[derive(SecurityScheme)]
pub enum WebhookAuth {
    Secret(WebhookSecret),
    #[oai(fallback)]
    Anonymous,
}

/// `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the body
/// under `whatsapp.meta.app_secret`, which Meta sends with every webhook
/// call. The route checks it; a missing or wrong one is 401.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "X-Hub-Signature-256",
    key_in = "header",
    checker = "hub_documented"
)]
pub struct HubSignature(());

/// Meta's signature; the route answers 401 itself when it is missing, so
/// the scheme lets a call without it through.
#[derive(SecurityScheme)]
pub enum HubAuth {
    Signature(HubSignature),
    #[oai(fallback)]
    Anonymous,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_match_only_both_parts() {
        let c = Credentials::new("admin", "0123");
        assert!(c.matches("admin", "0123"));
        assert!(!c.matches("admin", "123"));
        assert!(!c.matches("admin2", "0123"));
        assert!(!c.matches("", ""));
    }

    #[test]
    fn a_basic_header_admits_only_its_pair_in_any_form() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let c = Credentials::new("AC1", "token");
        // The one-hash path is built for the header clients write.
        let written = format!("Basic {}", b64("AC1:token"));
        assert!(bool::from(c.header.ct_eq(&sha(&written))));
        // As clients write it (the one-hash path), and in other forms.
        assert!(c.admit_basic(Some(&format!("Basic {}", b64("AC1:token")))));
        assert!(c.admit_basic(Some(&format!("basic {}", b64("AC1:token")))));
        assert!(c.admit_basic(Some(&format!("BASIC  {} ", b64("AC1:token")))));
        for wrong in ["AC1:tokeN", "AC1:", ":token", "AC2:token", "AC1:token:"] {
            assert!(
                !c.admit_basic(Some(&format!("Basic {}", b64(wrong)))),
                "{wrong}"
            );
        }
        assert!(!c.admit_basic(Some(&format!("Bearer {}", b64("AC1:token")))));
        assert!(!c.admit_basic(Some("Basic !!!")));
        assert!(!c.admit_basic(Some("")));
        assert!(!c.admit_basic(None));
    }

    #[test]
    fn only_the_table_s_routes_are_exempt_and_dot_segments_are_not() {
        assert_eq!(exemption("/healthz"), Some(Access::Open));
        assert_eq!(exemption("/docs"), Some(Access::Open));
        assert_eq!(exemption("/docs/index.html"), Some(Access::Open));
        assert_eq!(exemption("/telegram/webhook"), Some(Access::WebhookSecret));
        assert_eq!(exemption("/docs/../sms"), None);
        assert_eq!(exemption("/docsx"), None);
        assert_eq!(exemption("/healthz/"), None);
        assert_eq!(exemption("/sms"), None);
        assert_eq!(exemption("/telegram/webhook/x"), None);
        assert_eq!(exemption("/whatsapp/webhook"), Some(Access::Signed));
        assert_eq!(exemption("/whatsapp/webhook/x"), None);
        assert_eq!(exemption("/whatsapp"), None);
        assert_eq!(exemption("/v2/Services"), Some(Access::Twilio));
        assert_eq!(exemption("/v2"), Some(Access::Twilio));
        assert_eq!(exemption("/v2x"), None);
        assert_eq!(exemption("/v2/../sms"), None);
    }
}
