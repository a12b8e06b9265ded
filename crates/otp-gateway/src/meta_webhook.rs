//! The WhatsApp Cloud API's webhook, as Meta calls it.
//!
//! - Every `POST` carries `X-Hub-Signature-256: sha256=<hex>`, the
//!   HMAC-SHA256 of the raw body under the app secret: [`Verifier::signed`].
//! - The subscription handshake is a `GET` with `hub.mode=subscribe`,
//!   `hub.verify_token` and `hub.challenge`: [`Verifier::subscribes`].
//! - A status notification is
//!   `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages",
//!   "value":{"statuses":[{"id":"wamid…","status":"delivered","timestamp":"…",
//!   "recipient_id":"…","biz_opaque_callback_data":"vrf_…","errors":[{"code":131026,…}]}]}}]}]}`;
//!   [`reports`] reads it. otpd sends the verification's id as
//!   `biz_opaque_callback_data` ([`crate::MetaSender`]), so a report finds
//!   its verification without an index.

use hmac::{Hmac, KeyInit, Mac};
use otp_domain::verification::{DeliveryReport, ReportUpdate};
use otp_domain::VerificationId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use crate::error::MetaError;

/// The header Meta signs every webhook call with.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Checks Meta's signature and handshake token.
#[derive(Clone)]
pub struct Verifier {
    app_secret: SecretString,
    verify_token: SecretString,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(..)")
    }
}

impl Verifier {
    /// `None` without an app secret: unsigned calls are never taken.
    pub fn new(app_secret: &SecretString, verify_token: &SecretString) -> Option<Self> {
        (!app_secret.expose_secret().is_empty()).then(|| Verifier {
            app_secret: app_secret.clone(),
            verify_token: verify_token.clone(),
        })
    }

    /// Whether `header` (the `X-Hub-Signature-256` value) signs `body`:
    /// the HMAC is compared in constant time.
    pub fn signed(&self, header: Option<&str>, body: &[u8]) -> bool {
        let Some(given) = header
            .and_then(|h| h.trim().strip_prefix("sha256="))
            .and_then(from_hex)
        else {
            return false;
        };
        let Ok(mut mac) =
            <Hmac<Sha256> as KeyInit>::new_from_slice(self.app_secret.expose_secret().as_bytes())
        else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    }

    /// Whether a handshake `GET` subscribes with the right token (compared
    /// in constant time). No configured token refuses every handshake.
    pub fn subscribes(&self, mode: Option<&str>, token: Option<&str>) -> bool {
        let expected = self.verify_token.expose_secret();
        if mode != Some("subscribe") || expected.is_empty() {
            return false;
        }
        let Some(token) = token else {
            return false;
        };
        // Equal-length MACs of both, so the comparison takes the same time
        // whatever the token's length.
        let digest = |s: &str| {
            let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(b"otpd-verify-token") {
                Ok(mac) => mac,
                Err(_) => unreachable!("HMAC takes keys of any length"),
            };
            mac.update(s.as_bytes());
            mac
        };
        let want = digest(expected).finalize().into_bytes();
        digest(token).verify_slice(&want).is_ok()
    }
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One status report, as otpd records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// The verification the message belongs to.
    pub verification: VerificationId,
    pub update: ReportUpdate,
    /// Meta says the number cannot get WhatsApp messages (131026).
    pub unreachable: bool,
}

#[derive(Deserialize)]
struct Notification {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize, Default)]
struct Value {
    #[serde(default)]
    statuses: Vec<Status>,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    status: String,
    #[serde(default)]
    biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    errors: Vec<StatusError>,
}

#[derive(Deserialize)]
struct StatusError {
    code: i64,
}

/// What the notification `body` reports about otpd's messages. Statuses
/// otpd did not send (no verification id in `biz_opaque_callback_data`),
/// other kinds (`deleted`, `warning`) and other changes (incoming
/// messages) are left out; the caller answers 200 all the same, so Meta
/// does not retry them.
///
/// # Errors
/// The body is not a notification (not JSON, or a status without `id`
/// or `status`).
pub fn reports(body: &[u8]) -> Result<Vec<StatusReport>, serde_json::Error> {
    let notification: Notification = serde_json::from_slice(body)?;
    let statuses = notification
        .entry
        .into_iter()
        .flat_map(|e| e.changes)
        .flat_map(|c| c.value.statuses);
    Ok(statuses
        .filter_map(|s| {
            let verification = VerificationId::parse(s.biz_opaque_callback_data.as_deref()?)?;
            let report = DeliveryReport::parse(&s.status)?;
            let kinds: Vec<(i64, MetaError)> = s
                .errors
                .iter()
                .map(|e| (e.code, MetaError::of(e.code)))
                .collect();
            let error = (report == DeliveryReport::Failed).then(|| match kinds.first() {
                // Meta's own title and message may quote the number.
                Some((code, kind)) => format!("error {code}: {}", kind.reason()),
                None => "failed".to_owned(),
            });
            Some(StatusReport {
                verification,
                update: ReportUpdate {
                    message_id: s.id,
                    report,
                    error,
                },
                unreachable: kinds.iter().any(|(_, k)| *k == MetaError::Undeliverable),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(secret: &str, token: &str) -> Option<Verifier> {
        Verifier::new(
            &SecretString::from(secret.to_owned()),
            &SecretString::from(token.to_owned()),
        )
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_raw_body() {
        let v = verifier("app-secret", "").expect("a secret");
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        // printf '%s' "$body" | openssl dgst -sha256 -hmac app-secret
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(b"app-secret").expect("any key length");
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(v.signed(Some(&format!("sha256={hex}")), body));
        assert!(v.signed(Some(&format!("sha256={}", hex.to_uppercase())), body));
        assert!(
            !v.signed(Some(&format!("sha256={hex}")), b"{}"),
            "another body"
        );
        assert!(!v.signed(Some(&hex), body), "without the sha256= prefix");
        assert!(!v.signed(Some("sha256=zz"), body));
        assert!(!v.signed(None, body));
        assert!(verifier("", "t").is_none(), "no secret, no webhook");
    }

    #[test]
    fn the_handshake_needs_subscribe_and_the_token() {
        let v = verifier("s", "hook-token").expect("a secret");
        assert!(v.subscribes(Some("subscribe"), Some("hook-token")));
        assert!(!v.subscribes(Some("subscribe"), Some("hook-tokeN")));
        assert!(!v.subscribes(Some("subscribe"), Some("")));
        assert!(!v.subscribes(Some("subscribe"), None));
        assert!(!v.subscribes(Some("unsubscribe"), Some("hook-token")));
        let no_token = verifier("s", "").expect("a secret");
        assert!(!no_token.subscribes(Some("subscribe"), Some("")));
    }

    #[test]
    fn statuses_become_reports_and_the_rest_is_left_out() {
        let id = format!("vrf_{}", "0a".repeat(16));
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [
                {"field": "messages", "value": {"messaging_product": "whatsapp", "statuses": [
                    {"id": "wamid.A", "status": "delivered", "timestamp": "1", "recipient_id": "5511",
                     "biz_opaque_callback_data": id},
                    {"id": "wamid.B", "status": "failed", "timestamp": "2", "recipient_id": "5511",
                     "biz_opaque_callback_data": id,
                     "errors": [{"code": 131026, "title": "Message undeliverable to +5511987654321"}]},
                    {"id": "wamid.C", "status": "read", "recipient_id": "5511"},
                    {"id": "wamid.D", "status": "deleted", "biz_opaque_callback_data": id},
                    {"id": "wamid.E", "status": "failed", "biz_opaque_callback_data": id,
                     "errors": [{"code": 131049}]}
                ]}},
                {"field": "messages", "value": {"messages": [{"from": "5511", "text": {"body": "hi"}}]}}
            ]}]
        });
        let got = reports(body.to_string().as_bytes()).expect("a notification");
        let vrf = VerificationId::parse(&id).expect("id");
        let update = |m: &str, r, e: Option<&str>| ReportUpdate {
            message_id: m.to_owned(),
            report: r,
            error: e.map(str::to_owned),
        };
        assert_eq!(
            got,
            [
                StatusReport {
                    verification: vrf,
                    update: update("wamid.A", DeliveryReport::Delivered, None),
                    unreachable: false,
                },
                StatusReport {
                    verification: vrf,
                    update: update(
                        "wamid.B",
                        DeliveryReport::Failed,
                        Some("error 131026: the number is not on WhatsApp or cannot receive it")
                    ),
                    unreachable: true,
                },
                StatusReport {
                    verification: vrf,
                    update: update(
                        "wamid.E",
                        DeliveryReport::Failed,
                        Some("error 131049: refused")
                    ),
                    unreachable: false,
                },
            ]
        );
        assert!(reports(b"not json").is_err());
        assert_eq!(reports(b"{}").expect("empty is fine"), []);
    }
}
