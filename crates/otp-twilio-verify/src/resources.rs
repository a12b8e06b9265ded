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

use crate::time::DateTime;

/// A resource as a JSON answer, written by serde straight from the
/// struct into one pre-sized buffer. poem-openapi's `Json` first builds
/// a `serde_json::Value` of it (a map and a string per field) and then
/// writes that: for an 800-byte verification, that tree was the largest
/// part of the `/v2` answer's cost. The spec's schema is `T`'s, as for
/// `Json<T>`; a test holds both renderings equal in content (the keys
/// now come in the struct's order, Twilio's own, not sorted).
#[derive(Debug)]
pub struct Direct<T>(pub T);

/// A check's answer (about 330 bytes) and a verification's with a few
/// attempts fit in this; a longer one grows the buffer. Under glibc's
/// large-bin size (1024), whose requests first consolidate the fast bins.
const ANSWER_CAPACITY: usize = 960;

/// The answers' content type, as poem-openapi's `Json` gives it.
const JSON: &str = "application/json; charset=utf-8";

impl<T: poem_openapi::types::Type> poem_openapi::payload::Payload for Direct<T> {
    const CONTENT_TYPE: &'static str = JSON;

    fn check_content_type(content_type: &str) -> bool {
        <poem_openapi::payload::Json<T> as poem_openapi::payload::Payload>::check_content_type(
            content_type,
        )
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> poem::IntoResponse for Direct<T> {
    fn into_response(self) -> poem::Response {
        let mut buf = Vec::with_capacity(ANSWER_CAPACITY);
        match serde_json::to_writer(&mut buf, &self.0) {
            Ok(()) => poem::Response::builder().content_type(JSON).body(buf),
            // Structs of strings, numbers and booleans always serialize.
            // Were one not to, the body is Twilio's 20503 error (the
            // reply's variant still sets its own status): logged, never
            // an empty answer.
            Err(e) => {
                tracing::error!(error = %e, "twilio api: an answer did not serialize");
                crate::errors::Fail::new(
                    503,
                    crate::errors::code::UNAVAILABLE,
                    "Service unavailable: the answer could not be written",
                )
                .response()
            }
        }
    }
}

/// A string that Twilio renders as `null` when it has none (`amount`,
/// `next_page_url`, …): always present, and `nullable` in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
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
            .map_err(|e| otp_domain::StoreError::Corrupt(Box::new(UnreadableService(e))))
    }
}

/// A stored service that does not read back as one.
#[derive(Debug, thiserror::Error)]
#[error("unreadable /v2 service record")]
struct UnreadableService(#[source] serde_json::Error);

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
    format!("VE{}", otp_domain::hex::encode(id.as_bytes()))
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
    format!("VL{}", otp_domain::hex::encode(&d[..16]))
}

/// Links of a service, as Twilio gives them.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ServiceLinks {
    pub verifications: String,
    pub verification_checks: String,
}

/// A Verify service.
#[derive(Debug, Clone, Object, Serialize)]
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
#[derive(Debug, Clone, Object, Serialize)]
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
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "TwilioServicePage")]
pub struct ServicePage {
    pub services: Vec<ServiceBody>,
    pub meta: PageMeta,
}

/// One send of the code.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "TwilioSendCodeAttempt")]
pub struct SendCodeAttempt {
    /// `VL` and 32 hex digits.
    pub attempt_sid: String,
    pub channel: String,
    pub time: DateTime,
}

/// The `lookup` block: empty, as otpd does no carrier lookup.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "TwilioLookup")]
pub struct Lookup {}

/// A verification, as Twilio renders it.
#[derive(Debug, Clone, Object, Serialize)]
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
#[derive(Debug, Clone, Object, Serialize)]
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

    /// `Direct` writes what poem-openapi's `Json` wrote: for every
    /// resource, with `null`s, an empty `lookup`, nested lists and links.
    #[test]
    fn direct_answers_render_as_poem_openapi_json_did() {
        use poem_openapi::types::ToJSON;
        fn same<T: ToJSON + Serialize>(body: &T) {
            let direct = serde_json::to_value(body).expect("serializes");
            assert_eq!(Some(direct), body.to_json());
        }
        let mut record = ServiceRecord::new(new_service_sid(), "Acme", 1_000);
        record.tts_name = Some("acme".into());
        let service = ServiceBody::of(&record, "ACx", "http://h");
        same(&service);
        let meta = PageMeta {
            page: 1,
            page_size: 2,
            first_page_url: "http://h/a".into(),
            previous_page_url: Nullable(Some("http://h/b".into())),
            url: "http://h/c".into(),
            next_page_url: Nullable(None),
            key: "services".into(),
        };
        same(&ServicePage {
            services: vec![service.clone(), service],
            meta,
        });
        let id = VerificationId::from_bytes([7; 16]);
        same(&VerificationBody {
            sid: verification_sid(&id),
            service_sid: record.sid.clone(),
            account_sid: "ACx".into(),
            to: "+15005550006".into(),
            channel: "sms".into(),
            status: "pending".into(),
            valid: false,
            lookup: Lookup {},
            amount: Nullable(None),
            payee: Nullable(Some("p".into())),
            send_code_attempts: (0..2)
                .map(|n| SendCodeAttempt {
                    attempt_sid: attempt_sid(&id, n),
                    channel: "sms".into(),
                    time: DateTime::from_millis(2_000),
                })
                .collect(),
            date_created: DateTime::from_millis(1_000),
            date_updated: DateTime::from_millis(2_000),
            sna: Nullable(None),
            url: "http://h/v".into(),
        });
        same(&CheckBody::of(
            &CheckedCode {
                id,
                to: "+15005550006",
                channel: Channel::Call,
                created_at: 1_000,
                updated_at: 3_000,
            },
            &record.sid,
            "ACx",
            "approved",
        ));
    }

    #[test]
    fn a_direct_answer_is_json_with_its_content_type() {
        use poem::IntoResponse;
        let page = ServicePage {
            services: vec![],
            meta: PageMeta {
                page: 0,
                page_size: 50,
                first_page_url: "u".into(),
                previous_page_url: Nullable(None),
                url: "u".into(),
                next_page_url: Nullable(None),
                key: "services".into(),
            },
        };
        let resp = Direct(page).into_response();
        assert_eq!(resp.status(), poem::http::StatusCode::OK);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json; charset=utf-8")
        );
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
        let err = ServiceRecord::from_bytes(b"{").expect_err("not a record");
        assert!(matches!(err, otp_domain::StoreError::Corrupt(_)), "{err:?}");
        // What was unreadable, and serde's reason below it.
        let chain = otp_domain::error::chain(&err);
        assert!(
            chain.contains("unreadable /v2 service record: EOF"),
            "{chain}"
        );
    }
}
