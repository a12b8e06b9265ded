//! The resources as Twilio renders them, and the stored form of a
//! service. Sids: `VA` + 32 hex (a random service id), `VE` + the
//! verification id's 32 hex (so `VE…` and otpd's `vrf_…` name the same
//! verification), `VL` + 32 hex derived from a verification and an
//! attempt's index.

use otp_domain::verification::{AttemptOutcome, Status};
use otp_domain::{Channel, Verification, VerificationId};
use poem_openapi::Object;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::fields::DateTime;

/// A string that Twilio renders as `null` when it has none (`amount`,
/// `next_page_url`, …): always present, and `nullable` in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nullable(pub Option<String>);

impl poem_openapi::types::Type for Nullable {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> std::borrow::Cow<'static, str> {
        "nullable_string".into()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        let mut schema = poem_openapi::registry::MetaSchema::new("string");
        schema.nullable = true;
        poem_openapi::registry::MetaSchemaRef::Inline(Box::new(schema))
    }

    fn register(_registry: &mut poem_openapi::registry::Registry) {}

    fn as_raw_value(&self) -> Option<&String> {
        self.0.as_ref()
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(self.0.iter())
    }
}

impl poem_openapi::types::ParseFromJSON for Nullable {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value {
            None | Some(serde_json::Value::Null) => Ok(Nullable(None)),
            Some(serde_json::Value::String(s)) => Ok(Nullable(Some(s))),
            Some(other) => Err(poem_openapi::types::ParseError::expected_type(other)),
        }
    }
}

impl poem_openapi::types::ToJSON for Nullable {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(
            self.0
                .clone()
                .map_or(serde_json::Value::Null, serde_json::Value::String),
        )
    }
}

/// A service as the store keeps it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub sid: String,
    pub friendly_name: String,
    pub code_length: u8,
    pub custom_code_enabled: bool,
    pub psd2_enabled: bool,
    pub dtmf_input_required: bool,
    pub lookup_enabled: bool,
    pub skip_sms_to_landlines: bool,
    pub do_not_share_warning_enabled: bool,
    #[serde(default)]
    pub tts_name: Option<String>,
    #[serde(default)]
    pub default_template_sid: Option<String>,
    pub date_created: u64,
    pub date_updated: u64,
}

impl ServiceRecord {
    /// A new service with Twilio's defaults (6 digits, DTMF input
    /// required, every other flag off), created at `now`.
    pub fn new(sid: String, friendly_name: &str, now: u64) -> Self {
        ServiceRecord {
            sid,
            friendly_name: friendly_name.to_owned(),
            code_length: 6,
            custom_code_enabled: false,
            psd2_enabled: false,
            dtmf_input_required: true,
            lookup_enabled: false,
            skip_sms_to_landlines: false,
            do_not_share_warning_enabled: false,
            tts_name: None,
            default_template_sid: None,
            date_created: now,
            date_updated: now,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings, numbers and booleans always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, otp_domain::StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| otp_domain::StoreError::Corrupt(format!("a /v2 service record: {e}")))
    }
}

/// A new service sid: `VA` and 32 random hex digits.
pub fn new_service_sid() -> String {
    format!("VA{:032x}", rand::random::<u128>())
}

/// Whether `sid` is `prefix` and 32 lowercase hex digits.
pub fn is_sid(sid: &str, prefix: &str) -> bool {
    sid.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The `VE` sid of a verification.
pub fn verification_sid(id: &VerificationId) -> String {
    let text = id.to_string();
    format!("VE{}", text.strip_prefix("vrf_").unwrap_or(&text))
}

/// The verification a `VE` sid names.
pub fn verification_id(sid: &str) -> Option<VerificationId> {
    if !is_sid(sid, "VE") {
        return None;
    }
    VerificationId::parse(&format!("vrf_{}", &sid[2..]))
}

fn attempt_sid(id: &VerificationId, n: usize) -> String {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update((n as u64).to_be_bytes());
    let d = h.finalize();
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("VL{hex}")
}

/// Links of a service, as Twilio gives them.
#[derive(Debug, Clone, Object)]
pub struct ServiceLinks {
    pub verifications: String,
    pub verification_checks: String,
}

/// A Verify service.
#[derive(Debug, Clone, Object)]
#[oai(rename = "TwilioService")]
pub struct ServiceBody {
    /// `VA` and 32 hex digits.
    pub sid: String,
    pub account_sid: String,
    /// The app's name: it starts every message ("Acme: Your code is …").
    pub friendly_name: String,
    /// The length of its codes, 4 to 10.
    pub code_length: u8,
    pub lookup_enabled: bool,
    pub psd2_enabled: bool,
    pub skip_sms_to_landlines: bool,
    pub dtmf_input_required: bool,
    pub tts_name: Nullable,
    pub do_not_share_warning_enabled: bool,
    pub custom_code_enabled: bool,
    pub default_template_sid: Nullable,
    pub date_created: DateTime,
    pub date_updated: DateTime,
    pub url: String,
    pub links: ServiceLinks,
}

impl ServiceBody {
    pub fn of(r: &ServiceRecord, account_sid: &str, base: &str) -> Self {
        let url = format!("{base}/v2/Services/{}", r.sid);
        ServiceBody {
            sid: r.sid.clone(),
            account_sid: account_sid.to_owned(),
            friendly_name: r.friendly_name.clone(),
            code_length: r.code_length,
            lookup_enabled: r.lookup_enabled,
            psd2_enabled: r.psd2_enabled,
            skip_sms_to_landlines: r.skip_sms_to_landlines,
            dtmf_input_required: r.dtmf_input_required,
            tts_name: Nullable(r.tts_name.clone()),
            do_not_share_warning_enabled: r.do_not_share_warning_enabled,
            custom_code_enabled: r.custom_code_enabled,
            default_template_sid: Nullable(r.default_template_sid.clone()),
            date_created: DateTime::from_millis(r.date_created),
            date_updated: DateTime::from_millis(r.date_updated),
            links: ServiceLinks {
                verifications: format!("{url}/Verifications"),
                verification_checks: format!("{url}/VerificationCheck"),
            },
            url,
        }
    }
}

/// Twilio's paging block.
#[derive(Debug, Clone, Object)]
#[oai(rename = "TwilioPageMeta")]
pub struct PageMeta {
    pub page: u32,
    pub page_size: u32,
    pub first_page_url: String,
    pub previous_page_url: Nullable,
    pub url: String,
    /// Absolute; `null` on the last page.
    pub next_page_url: Nullable,
    /// The name of the list in the page: `services`.
    pub key: String,
}

/// A page of services.
#[derive(Debug, Clone, Object)]
#[oai(rename = "TwilioServicePage")]
pub struct ServicePage {
    pub services: Vec<ServiceBody>,
    pub meta: PageMeta,
}

/// One send of the code.
#[derive(Debug, Clone, Object)]
#[oai(rename = "TwilioSendCodeAttempt")]
pub struct SendCodeAttempt {
    /// `VL` and 32 hex digits.
    pub attempt_sid: String,
    pub channel: String,
    pub time: DateTime,
}

/// The `lookup` block: empty, as otpd does no carrier lookup.
#[derive(Debug, Clone, Object)]
#[oai(rename = "TwilioLookup")]
pub struct Lookup {}

/// A verification, as Twilio renders it.
#[derive(Debug, Clone, Object)]
#[oai(rename = "TwilioVerification")]
pub struct VerificationBody {
    /// `VE` and the 32 hex digits of otpd's `vrf_` id.
    pub sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub to: String,
    /// `sms`, `call`, `email` or `whatsapp`.
    pub channel: String,
    /// `pending`, `approved`, `canceled`, `max_attempts_reached`,
    /// `expired` or `failed`.
    pub status: String,
    pub valid: bool,
    pub lookup: Lookup,
    pub amount: Nullable,
    pub payee: Nullable,
    pub send_code_attempts: Vec<SendCodeAttempt>,
    pub date_created: DateTime,
    pub date_updated: DateTime,
    pub sna: Nullable,
    pub url: String,
}

/// A verification check's answer.
#[derive(Debug, Clone, Object)]
#[oai(rename = "TwilioVerificationCheck")]
pub struct CheckBody {
    pub sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub to: String,
    pub channel: String,
    /// `approved` for the right code; `pending` for a wrong one
    /// (`max_attempts_reached` when it was the last allowed).
    pub status: String,
    pub valid: bool,
    pub amount: Nullable,
    pub payee: Nullable,
    pub date_created: DateTime,
    pub date_updated: DateTime,
}

/// Twilio's word for a status.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending",
        Status::Approved => "approved",
        Status::Canceled => "canceled",
        Status::MaxAttemptsReached => "max_attempts_reached",
        Status::Expired => "expired",
        Status::Failed => "failed",
    }
}

/// When it last changed: its end, else its latest delivery.
fn updated_at(v: &Verification) -> u64 {
    v.ended_at
        .or_else(|| v.deliveries.last().map(|d| d.at))
        .unwrap_or(v.created_at)
}

impl VerificationBody {
    pub fn of(v: &Verification, service: &str, account_sid: &str, base: &str) -> Self {
        let sid = verification_sid(&v.id);
        let channel = v.channel.as_str().to_owned();
        let send_code_attempts = v
            .deliveries
            .iter()
            .filter(|d| d.outcome == AttemptOutcome::Delivered)
            .enumerate()
            .map(|(n, d)| SendCodeAttempt {
                attempt_sid: attempt_sid(&v.id, n),
                channel: channel.clone(),
                time: DateTime::from_millis(d.at),
            })
            .collect();
        VerificationBody {
            url: format!("{base}/v2/Services/{service}/Verifications/{sid}"),
            sid,
            service_sid: service.to_owned(),
            account_sid: account_sid.to_owned(),
            to: v.destination.clone(),
            channel,
            status: status_name(v.status).to_owned(),
            valid: v.status == Status::Approved,
            lookup: Lookup {},
            amount: Nullable(None),
            payee: Nullable(None),
            send_code_attempts,
            date_created: DateTime::from_millis(v.created_at),
            date_updated: DateTime::from_millis(updated_at(v)),
            sna: Nullable(None),
        }
    }
}

/// What a check answers about the code it checked (see
/// [`otp_domain::ports::Checked`]).
pub struct CheckedCode<'a> {
    pub id: VerificationId,
    pub to: &'a str,
    pub channel: Channel,
    pub created_at: u64,
    pub updated_at: u64,
}

impl CheckBody {
    pub fn of(c: &CheckedCode<'_>, service: &str, account_sid: &str, status: &str) -> Self {
        CheckBody {
            sid: verification_sid(&c.id),
            service_sid: service.to_owned(),
            account_sid: account_sid.to_owned(),
            to: c.to.to_owned(),
            channel: c.channel.as_str().to_owned(),
            status: status.to_owned(),
            valid: status == "approved",
            amount: Nullable(None),
            payee: Nullable(None),
            date_created: DateTime::from_millis(c.created_at),
            date_updated: DateTime::from_millis(c.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_map_to_otpd_ids_and_back() {
        let id = VerificationId::from_bytes([0xab; 16]);
        let sid = verification_sid(&id);
        assert_eq!(sid, format!("VE{}", "ab".repeat(16)));
        assert_eq!(verification_id(&sid), Some(id));
        assert_eq!(verification_id("VE123"), None);
        assert_eq!(verification_id(&sid.to_uppercase()), None);
        assert_eq!(verification_id(&format!("VA{}", "ab".repeat(16))), None);
        let va = new_service_sid();
        assert!(is_sid(&va, "VA"), "{va}");
        assert_ne!(va, new_service_sid());
        assert_ne!(attempt_sid(&id, 0), attempt_sid(&id, 1));
        assert!(is_sid(&attempt_sid(&id, 0), "VL"));
    }

    #[test]
    fn a_service_record_round_trips() {
        let r = ServiceRecord {
            sid: new_service_sid(),
            friendly_name: "Acme".into(),
            code_length: 8,
            custom_code_enabled: true,
            psd2_enabled: false,
            dtmf_input_required: true,
            lookup_enabled: false,
            skip_sms_to_landlines: false,
            do_not_share_warning_enabled: true,
            tts_name: Some("acme".into()),
            default_template_sid: None,
            date_created: 1,
            date_updated: 2,
        };
        assert_eq!(ServiceRecord::from_bytes(&r.to_bytes()).expect("decode"), r);
        assert!(ServiceRecord::from_bytes(b"{").is_err());
    }
}
