//! The `data` of the events, as their own serde types: a verification
//! and a fraud-guard block in the JSON form `GET /verifications/{id}` and
//! `GET /fraud/blocks` answer. They are written here, apart from the
//! API's types, so the dispatcher does not depend on the HTTP layer; the
//! server's tests hold the two forms against each other.
//!
//! Verification keys:
//!
//! | key            | value                                                   |
//! |----------------|---------------------------------------------------------|
//! | `id`           | `vrf_` + 32 hex digits                                  |
//! | `channel`      | `sms`, `call`, `email` or `telegram`                    |
//! | `destination`  | the normalised address (E.164 phone, email, chat id)    |
//! | `country`      | ISO region of a phone; absent otherwise                 |
//! | `locale`       | the message's locale (BCP-47); absent on old records    |
//! | `status`       | `pending`, `approved`, `max_attempts_reached`, `expired`, `canceled`, `failed` |
//! | `reason`       | `api` or `replaced` when `canceled`; absent otherwise   |
//! | `created_at`, `expires_at` | RFC 3339 UTC with milliseconds              |
//! | `attempts`, `max_attempts` | wrong checks so far, and the limit          |
//! | `deliveries`   | `[{provider, outcome: delivered\|failed, at, error?, message_id?, report?}]` |
//! | `ended_at`     | RFC 3339 UTC; absent while pending                      |
//!
//! No code (the record holds none) and none of the store's own fields.

use otp_domain::fraud::{Block, FraudMode};
use otp_domain::verification::{AttemptOutcome, Verification};
use otp_domain::Timestamp;
use serde::Serialize;

/// A timestamp (Unix ms) as RFC 3339 in UTC with milliseconds,
/// `2026-11-29T17:05:00.123Z`.
pub fn rfc3339(at: Timestamp) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
    humantime::format_rfc3339_millis(at).to_string()
}

/// A verification, as its events carry it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerificationData {
    pub id: String,
    pub channel: &'static str,
    pub destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub created_at: String,
    pub expires_at: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub deliveries: Vec<DeliveryData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

/// One delivery attempt of a verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryData {
    pub provider: String,
    pub outcome: &'static str,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<&'static str>,
}

impl From<&Verification> for VerificationData {
    fn from(v: &Verification) -> Self {
        VerificationData {
            id: v.id.to_string(),
            channel: v.channel.as_str(),
            destination: v.destination.clone(),
            country: v.country.clone(),
            locale: v.locale.clone(),
            status: v.status.as_str(),
            reason: v.reason.map(|r| r.as_str()),
            created_at: rfc3339(v.created_at),
            expires_at: rfc3339(v.expires_at),
            attempts: v.attempts,
            max_attempts: v.max_attempts,
            deliveries: v
                .deliveries
                .iter()
                .map(|d| DeliveryData {
                    provider: d.provider.clone(),
                    outcome: match d.outcome {
                        AttemptOutcome::Delivered => "delivered",
                        AttemptOutcome::Failed => "failed",
                    },
                    at: rfc3339(d.at),
                    error: d.error.clone(),
                    message_id: d.message_id.clone(),
                    report: d.report.map(|r| r.as_str()),
                })
                .collect(),
            ended_at: v.ended_at.map(rfc3339),
        }
    }
}

/// A fraud-guard block: `prefix`, `country`, `since`, `until`, `sends`,
/// `approvals` (estimates, to two decimals) and `mode`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockData {
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    pub since: String,
    pub until: String,
    pub sends: f64,
    pub approvals: f64,
    pub mode: &'static str,
}

impl From<&Block> for BlockData {
    fn from(b: &Block) -> Self {
        BlockData {
            prefix: b.prefix.to_string(),
            country: b.country.clone(),
            since: rfc3339(b.since),
            until: rfc3339(b.until),
            sends: (b.sends * 100.0).round() / 100.0,
            approvals: (b.approvals * 100.0).round() / 100.0,
            mode: match b.mode {
                FraudMode::Monitor => "monitor",
                FraudMode::Block | FraudMode::Off => "block",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otp_domain::{CancelReason, Channel, DeliveryAttempt, Destination, Status, VerificationId};
    use serde_json::json;

    #[test]
    fn a_verification_has_every_documented_key_and_nothing_internal() {
        let d = Destination::parse(Channel::Sms, "+77011234567").expect("phone");
        let mut v = Verification::new(
            VerificationId::from_bytes([7; 16]),
            &d,
            1_767_225_600_000,
            1_767_225_900_000,
            5,
            86_400_000,
        );
        v.deliveries.push(DeliveryAttempt {
            provider: "twilio".into(),
            outcome: AttemptOutcome::Failed,
            at: 1_767_225_600_250,
            error: Some("HTTP 500".into()),
            message_id: None,
            report: None,
        });
        v.end(
            Status::Canceled,
            Some(CancelReason::Replaced),
            1_767_225_601_000,
        );
        let json = serde_json::to_value(VerificationData::from(&v)).expect("json");
        assert_eq!(
            json,
            json!({
                "id": format!("vrf_{}", "07".repeat(16)),
                "channel": "sms",
                "destination": "+77011234567",
                "country": "KZ",
                "status": "canceled",
                "reason": "replaced",
                "created_at": "2026-01-01T00:00:00.000Z",
                "expires_at": "2026-01-01T00:05:00.000Z",
                "attempts": 0,
                "max_attempts": 5,
                "deliveries": [{
                    "provider": "twilio",
                    "outcome": "failed",
                    "at": "2026-01-01T00:00:00.250Z",
                    "error": "HTTP 500",
                }],
                "ended_at": "2026-01-01T00:00:01.000Z",
            })
        );
    }

    #[test]
    fn a_pending_email_verification_leaves_out_what_did_not_happen() {
        let d = Destination::parse(Channel::Email, "A@Example.com").expect("email");
        let v = Verification::new(VerificationId::from_bytes([1; 16]), &d, 0, 60_000, 3, 1);
        let json = serde_json::to_value(VerificationData::from(&v)).expect("json");
        assert_eq!(json["status"], "pending");
        assert!(json.get("country").is_none());
        assert!(json.get("reason").is_none());
        assert!(json.get("ended_at").is_none());
        assert_eq!(json["deliveries"], json!([]));
        assert_eq!(json["created_at"], "1970-01-01T00:00:00.000Z");
        assert!(json.get("retention_ms").is_none() && json.get("events").is_none());
    }
}
