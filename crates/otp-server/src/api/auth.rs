//! Security schemes. Handlers never compare secrets: the checkers here
//! do, in constant time, and handlers only ask [`ApiAuth::permitted`].
//!
//! Auth is optional by config, so each scheme has an anonymous fallback;
//! `permitted` refuses the fallback whenever credentials are configured.

use std::sync::Arc;

use poem::Request;
use poem_openapi::auth::{ApiKey, Basic};
use poem_openapi::SecurityScheme;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;

/// A secret to compare against, kept as its SHA-256 so every comparison
/// takes the same time whatever the lengths.
pub struct Credentials {
    user: [u8; 32],
    secret: [u8; 32],
}

fn sha(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Credentials {
    pub fn new(user: &str, secret: &str) -> Self {
        Credentials {
            user: sha(user),
            secret: sha(secret),
        }
    }

    /// Constant-time match of both parts (no short circuit).
    pub fn matches(&self, user: &str, secret: &str) -> bool {
        let u = self.user.ct_eq(&sha(user));
        let s = self.secret.ct_eq(&sha(secret));
        (u & s).into()
    }
}

fn state(req: &Request) -> Option<&Arc<AppState>> {
    req.data::<Arc<AppState>>()
}

/// HTTP Basic auth, on when `auth.username`/`auth.password` (or
/// `HTTP_AUTH_USERNAME`/`HTTP_AUTH_PASSWORD`) are set.
#[derive(SecurityScheme)]
#[oai(ty = "basic", checker = "check_basic")]
pub struct BasicAuth(());

async fn check_basic(req: &Request, basic: Basic) -> Option<()> {
    match &state(req)?.credentials {
        Some(c) => c.matches(&basic.username, &basic.password).then_some(()),
        None => Some(()),
    }
}

/// Basic auth when configured, otherwise open.
#[derive(SecurityScheme)]
pub enum ApiAuth {
    Basic(BasicAuth),
    #[oai(fallback)]
    Anonymous,
}

impl ApiAuth {
    pub fn permitted(&self, state: &AppState) -> bool {
        matches!(self, ApiAuth::Basic(_)) || state.credentials.is_none()
    }
}

/// The `X-Telegram-Bot-Api-Secret-Token` header that Telegram sends with
/// every webhook call when the webhook was set with a `secret_token`.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "X-Telegram-Bot-Api-Secret-Token",
    key_in = "header",
    checker = "check_webhook_secret"
)]
pub struct WebhookSecret(());

async fn check_webhook_secret(req: &Request, key: ApiKey) -> Option<()> {
    match &state(req)?.webhook_secret {
        Some(c) => c.matches("", &key.key).then_some(()),
        None => Some(()),
    }
}

/// The webhook secret when configured, otherwise open.
#[derive(SecurityScheme)]
pub enum WebhookAuth {
    Secret(WebhookSecret),
    #[oai(fallback)]
    Anonymous,
}

impl WebhookAuth {
    pub fn permitted(&self, state: &AppState) -> bool {
        matches!(self, WebhookAuth::Secret(_)) || state.webhook_secret.is_none()
    }
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
}
