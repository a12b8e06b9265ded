//! An outbox event as a CloudEvents 1.0 structured-mode JSON document
//! (<https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md>).

use otp_domain::{EventData, StoredEvent};
use serde_json::json;

use crate::payload::{rfc3339, BlockData, VerificationData};

/// The media type of a structured CloudEvent, which the webhook sink
/// sends as its `content-type`.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The CloudEvent of `event`:
/// `{specversion: "1.0", id, source, type, time, datacontenttype:
/// "application/json", subject, data}`, where `subject` and `data` are the
/// verification's id and API form ([`VerificationData`]), or for the
/// fraud guard's `otpd.fraud.*` events the blocked prefix and the block as
/// `/fraud/blocks` shows it ([`BlockData`]). The same event always gives
/// the same id (so a redelivery can be recognised), and `data` never
/// holds a code.
pub fn cloud_event(source: &str, event: &StoredEvent) -> serde_json::Value {
    let (subject, data) = match &event.data {
        EventData::Verification(v) => (v.id.to_string(), json!(VerificationData::from(v))),
        EventData::Block(b) => (b.prefix.to_string(), json!(BlockData::from(b))),
    };
    json!({
        "specversion": "1.0",
        "id": event.id,
        "source": source,
        "type": event.kind.as_str(),
        "time": rfc3339(event.time),
        "datacontenttype": "application/json",
        "subject": subject,
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use otp_domain::{Channel, Destination, Status, Verification, VerificationId};

    #[test]
    fn the_cloud_event_carries_the_required_attributes_and_the_record() {
        let d = Destination::parse(Channel::Email, "user@example.com").expect("email");
        let mut v = Verification::new(VerificationId::from_bytes([9; 16]), &d, 0, 300_000, 5, 1);
        let event = v.end(Status::Approved, None, 1_500);

        let ce = cloud_event("https://otp.example.com", &event);

        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["id"], event.id.as_str());
        assert_eq!(ce["source"], "https://otp.example.com");
        assert_eq!(ce["type"], "otpd.verification.approved");
        assert_eq!(ce["time"], "1970-01-01T00:00:01.500Z");
        assert_eq!(ce["datacontenttype"], "application/json");
        assert_eq!(ce["subject"], v.id.to_string());
        assert_eq!(ce["data"], json!(VerificationData::from(&v)));
        assert_eq!(ce["data"]["status"], "approved");
        let keys: Vec<&String> = ce.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 8, "{keys:?}");
    }

    #[test]
    fn a_fraud_block_event_names_the_prefix_and_carries_the_block() {
        let block = otp_domain::fraud::Block {
            prefix: otp_domain::fraud::Prefix::parse("7701").expect("prefix"),
            country: Some("KZ".into()),
            since: 0,
            until: 3_600_000,
            sends: 50.0,
            approvals: 2.0,
            mode: otp_domain::fraud::FraudMode::Block,
        };
        let event = StoredEvent::fraud(&block, false, 10);

        let ce = cloud_event("otpd", &event);

        assert_eq!(ce["type"], "otpd.fraud.prefix_blocked");
        assert_eq!(ce["subject"], "7701");
        assert_eq!(ce["data"]["prefix"], "7701");
        assert_eq!(ce["data"]["until"], "1970-01-01T01:00:00.000Z");
        assert_eq!(ce["data"]["mode"], "block");
    }
}
