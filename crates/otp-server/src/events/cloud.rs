//! An outbox event as a CloudEvents 1.0 structured-mode JSON document
//! (<https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md>).

use otp_domain::StoredEvent;
use serde_json::json;

use super::record::{api_json, rfc3339};

/// The media type of a structured CloudEvent, which the webhook sink
/// sends as its `content-type`.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The CloudEvent of `event`:
/// `{specversion: "1.0", id, source, type, time, datacontenttype:
/// "application/json", subject: <verification id>, data: <the
/// verification's API form>}`. The same event always gives the same id
/// (so a redelivery can be recognised), and `data` never holds a code.
pub fn cloud_event(source: &str, event: &StoredEvent) -> serde_json::Value {
    json!({
        "specversion": "1.0",
        "id": event.id,
        "source": source,
        "type": event.kind.as_str(),
        "time": rfc3339(event.time),
        "datacontenttype": "application/json",
        "subject": event.verification.id.to_string(),
        "data": api_json(&event.verification),
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
        assert_eq!(ce["data"], api_json(&event.verification));
        assert_eq!(ce["data"]["status"], "approved");
        let keys: Vec<&String> = ce.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 8, "{keys:?}");
    }
}
