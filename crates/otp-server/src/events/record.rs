//! A verification in its API form: what `GET /verifications/{id}` answers
//! and what every event carries as `data`. One function, so the two
//! never drift apart.

use otp_domain::fraud::Block;
use otp_domain::ports::Timestamp;
use otp_domain::Verification;
use serde_json::Value;

/// A timestamp (Unix ms) as RFC 3339 in UTC with milliseconds,
/// `2026-11-29T17:05:00.123Z`.
pub fn rfc3339(at: Timestamp) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
    humantime::format_rfc3339_millis(at).to_string()
}

/// The API form of a verification, as `GET /verifications/{id}` answers
/// it: the events' `data`. It delegates to the API's own
/// [`VerificationBody::json`](crate::api::verifications::VerificationBody::json),
/// so a webhook and the API never disagree. The keys:
///
/// | key            | value                                                   |
/// |----------------|---------------------------------------------------------|
/// | `id`           | `vrf_` + 32 hex digits                                  |
/// | `channel`      | `sms`, `call`, `email` or `telegram`                    |
/// | `destination`  | the normalised address (E.164 phone, email, chat id)    |
/// | `country`      | ISO region of a phone; absent otherwise                 |
/// | `status`       | `pending`, `approved`, `max_attempts_reached`, `expired`, `canceled`, `failed` |
/// | `reason`       | `api` or `replaced` when `canceled`; absent otherwise   |
/// | `created_at`, `expires_at` | RFC 3339 UTC with milliseconds              |
/// | `attempts`, `max_attempts` | wrong checks so far, and the limit          |
/// | `deliveries`   | `[{provider, outcome: delivered\|failed, at, error?}]`  |
/// | `ended_at`     | RFC 3339 UTC; absent while pending                      |
///
/// It has no code (the record holds none) and none of the store's own
/// fields (`retention_ms`, `events`). It shows the record as given: pass
/// `Verification::seen_at(now)` for what a reader should see now.
pub fn api_json(v: &Verification) -> Value {
    crate::api::verifications::VerificationBody::json(v)
}

/// A fraud-guard block as `GET /fraud/blocks` shows it: the `data` of the
/// `otpd.fraud.prefix_blocked` and `otpd.fraud.prefix_unblocked` events
/// (`prefix`, `country`, `since`, `until`, `sends`, `approvals`, `mode`).
pub fn block_json(b: &Block) -> Value {
    use poem_openapi::types::ToJSON;
    crate::api::fraud::BlockBody::from(b)
        .to_json()
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use otp_domain::{
        AttemptOutcome, CancelReason, Channel, DeliveryAttempt, Destination, Status, VerificationId,
    };
    use serde_json::json;

    #[test]
    fn the_api_form_has_every_documented_key_and_nothing_internal() {
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
        });
        v.end(
            Status::Canceled,
            Some(CancelReason::Replaced),
            1_767_225_601_000,
        );

        let json = api_json(&v);

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
        let json = api_json(&v);
        assert_eq!(json["status"], "pending");
        assert!(json.get("country").is_none());
        assert!(json.get("reason").is_none());
        assert!(json.get("ended_at").is_none());
        assert_eq!(json["deliveries"], json!([]));
        assert_eq!(json["created_at"], "1970-01-01T00:00:00.000Z");
        assert!(json.get("retention_ms").is_none() && json.get("events").is_none());
    }
}
