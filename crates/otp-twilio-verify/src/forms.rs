//! The form bodies, as Twilio takes them: `application/x-www-form-urlencoded`,
//! PascalCase keys, booleans `true`/`false`. Unknown keys are ignored, as
//! Twilio ignores them; known ones otpd cannot honour are refused with
//! 60200, never dropped silently.

use poem_openapi::Object;
use serde::Deserialize;

use crate::errors::Fail;
use crate::resources::ServiceRecord;

/// The longest `FriendlyName` Twilio takes.
const NAME_MAX: usize = 30;

/// `POST /v2/Services`.
#[derive(Debug, Deserialize, Object)]
#[serde(rename_all = "PascalCase")]
#[oai(rename = "TwilioServiceCreate", rename_all = "PascalCase")]
pub struct ServiceCreate {
    /// The app's name, 1 to 30 characters: it starts every message.
    pub friendly_name: String,
    /// 4 to 10; 6 when absent.
    pub code_length: Option<u8>,
    /// Whether a create may give its own `CustomCode`.
    pub custom_code_enabled: Option<bool>,
    /// Stored and shown; otpd does no carrier lookup.
    pub lookup_enabled: Option<bool>,
    /// Stored and shown; otpd does not tell landlines apart.
    pub skip_sms_to_landlines: Option<bool>,
    /// Stored and shown.
    pub dtmf_input_required: Option<bool>,
    /// Stored and shown; voice messages use the locale's voice.
    pub tts_name: Option<String>,
    /// Stored and shown; otpd has no PSD2 amounts (`Amount` is refused).
    pub psd2_enabled: Option<bool>,
    /// Stored and shown.
    pub do_not_share_warning_enabled: Option<bool>,
    /// Stored and shown; messages use otpd's locale texts.
    pub default_template_sid: Option<String>,
}

/// `POST /v2/Services/{ServiceSid}`: the fields given change.
#[derive(Debug, Deserialize, Object)]
#[serde(rename_all = "PascalCase")]
#[oai(rename = "TwilioServiceUpdate", rename_all = "PascalCase")]
pub struct ServiceUpdate {
    pub friendly_name: Option<String>,
    pub code_length: Option<u8>,
    pub custom_code_enabled: Option<bool>,
    pub lookup_enabled: Option<bool>,
    pub skip_sms_to_landlines: Option<bool>,
    pub dtmf_input_required: Option<bool>,
    pub tts_name: Option<String>,
    pub psd2_enabled: Option<bool>,
    pub do_not_share_warning_enabled: Option<bool>,
    pub default_template_sid: Option<String>,
}

impl From<ServiceCreate> for ServiceUpdate {
    fn from(c: ServiceCreate) -> Self {
        ServiceUpdate {
            friendly_name: Some(c.friendly_name),
            code_length: c.code_length,
            custom_code_enabled: c.custom_code_enabled,
            lookup_enabled: c.lookup_enabled,
            skip_sms_to_landlines: c.skip_sms_to_landlines,
            dtmf_input_required: c.dtmf_input_required,
            tts_name: c.tts_name,
            psd2_enabled: c.psd2_enabled,
            do_not_share_warning_enabled: c.do_not_share_warning_enabled,
            default_template_sid: c.default_template_sid,
        }
    }
}

impl ServiceUpdate {
    /// Writes the given fields into `r`, or refuses the first bad one
    /// (and changes nothing that matters: the caller drops `r`).
    pub fn apply(self, r: &mut ServiceRecord) -> Result<(), Fail> {
        if let Some(name) = self.friendly_name {
            let name = name.trim();
            let len = name.chars().count();
            if len == 0 || len > NAME_MAX || name.chars().any(char::is_control) {
                return Err(Fail::invalid(format!(
                    "Invalid parameter `FriendlyName`: 1 to {NAME_MAX} characters, one line"
                )));
            }
            r.friendly_name = name.to_owned();
        }
        if let Some(n) = self.code_length {
            if !(4..=10).contains(&n) {
                return Err(Fail::invalid(
                    "Invalid parameter `CodeLength`: 4 to 10".to_owned(),
                ));
            }
            r.code_length = n;
        }
        let set = |flag: &mut bool, given: Option<bool>| {
            if let Some(v) = given {
                *flag = v;
            }
        };
        set(&mut r.custom_code_enabled, self.custom_code_enabled);
        set(&mut r.lookup_enabled, self.lookup_enabled);
        set(&mut r.skip_sms_to_landlines, self.skip_sms_to_landlines);
        set(&mut r.dtmf_input_required, self.dtmf_input_required);
        set(&mut r.psd2_enabled, self.psd2_enabled);
        set(
            &mut r.do_not_share_warning_enabled,
            self.do_not_share_warning_enabled,
        );
        if self.tts_name.is_some() {
            r.tts_name = self.tts_name;
        }
        if self.default_template_sid.is_some() {
            r.default_template_sid = self.default_template_sid;
        }
        Ok(())
    }
}

/// `POST /v2/Services/{ServiceSid}/Verifications`.
#[derive(Debug, Deserialize, Object)]
#[serde(rename_all = "PascalCase")]
#[oai(rename = "TwilioVerificationCreate", rename_all = "PascalCase")]
pub struct VerificationForm {
    /// E.164 phone (`sms`, `call`, `whatsapp`) or email (`email`).
    pub to: String,
    /// `sms`, `call`, `email` or `whatsapp`; `sna` and `auto` are 400
    /// (60200).
    pub channel: String,
    /// A BCP-47 tag (`de`, `pt-br`, `zh-hk`); one otpd cannot serve is
    /// 400 (60200).
    pub locale: Option<String>,
    /// This send's app name, instead of the service's `FriendlyName`.
    pub custom_friendly_name: Option<String>,
    /// The code to send; only when the service has `CustomCodeEnabled`.
    pub custom_code: Option<String>,
    /// Refused (60200), as Twilio refuses it: messages are the locale's.
    pub custom_message: Option<String>,
    /// JSON; refused (60200) unless `{}`: otpd's limits are `[limits]`.
    pub rate_limits: Option<String>,
    /// JSON; refused (60200) unless `{}`.
    pub channel_configuration: Option<String>,
    /// PSD2; refused (60200).
    pub amount: Option<String>,
    /// PSD2; refused (60200).
    pub payee: Option<String>,
}

/// A JSON-valued field: must be a JSON object, and an empty one, since
/// otpd has nothing to apply its keys to.
fn empty_json_object(field: &str, value: Option<&str>) -> Result<(), Fail> {
    let Some(raw) = value else { return Ok(()) };
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(map)) if map.is_empty() => Ok(()),
        Ok(serde_json::Value::Object(map)) => Err(Fail::invalid(format!(
            "Invalid parameter `{field}`: {} is not supported by otpd",
            map.keys().next().map_or("", String::as_str)
        ))),
        _ => Err(Fail::invalid(format!(
            "Invalid parameter `{field}`: not a JSON object"
        ))),
    }
}

impl VerificationForm {
    /// Refuses what otpd cannot honour, naming it.
    pub fn refuse_unsupported(&self, custom_code_enabled: bool) -> Result<(), Fail> {
        if self.custom_message.is_some() {
            return Err(Fail::invalid(
                "Invalid parameter `CustomMessage`: custom messages are not supported",
            ));
        }
        if self.custom_code.is_some() && !custom_code_enabled {
            return Err(Fail::invalid(
                "Invalid parameter `CustomCode`: the service does not have CustomCodeEnabled",
            ));
        }
        if self.amount.is_some() || self.payee.is_some() {
            return Err(Fail::invalid(
                "Invalid parameter `Amount`/`Payee`: PSD2 is not supported by otpd",
            ));
        }
        if let Some(name) = &self.custom_friendly_name {
            let len = name.trim().chars().count();
            if len == 0 || len > NAME_MAX || name.chars().any(char::is_control) {
                return Err(Fail::invalid(format!(
                    "Invalid parameter `CustomFriendlyName`: 1 to {NAME_MAX} characters, one line"
                )));
            }
        }
        empty_json_object("RateLimits", self.rate_limits.as_deref())?;
        empty_json_object(
            "ChannelConfiguration",
            self.channel_configuration.as_deref(),
        )
    }
}

/// `POST /v2/Services/{ServiceSid}/Verifications/{Sid}`.
#[derive(Debug, Deserialize, Object)]
#[serde(rename_all = "PascalCase")]
#[oai(rename = "TwilioVerificationUpdate", rename_all = "PascalCase")]
pub struct UpdateForm {
    /// `canceled` or `approved`.
    pub status: String,
}

/// `POST /v2/Services/{ServiceSid}/VerificationCheck`.
#[derive(Debug, Deserialize, Object)]
#[serde(rename_all = "PascalCase")]
#[oai(rename = "TwilioVerificationCheckCreate", rename_all = "PascalCase")]
pub struct CheckForm {
    /// The code the user typed.
    pub code: String,
    /// The destination; or give `VerificationSid`.
    pub to: Option<String>,
    /// `VE…`; or give `To`.
    pub verification_sid: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, String> {
        serde_urlencoded::from_str(body).map_err(|e| e.to_string())
    }

    fn record() -> ServiceRecord {
        ServiceRecord::new("VA00000000000000000000000000000000".into(), "Old", 0)
    }

    #[test]
    fn forms_read_pascal_case_and_booleans_and_ignore_unknown_keys() {
        let c: ServiceCreate =
            parse("FriendlyName=Acme+Inc&CodeLength=8&CustomCodeEnabled=true&Psd2Enabled=false&Whatever=1")
                .expect("parse");
        assert_eq!(c.friendly_name, "Acme Inc");
        assert_eq!(c.code_length, Some(8));
        assert_eq!(c.custom_code_enabled, Some(true));
        assert_eq!(c.psd2_enabled, Some(false));
        let mut r = record();
        ServiceUpdate::from(c).apply(&mut r).expect("apply");
        assert_eq!(
            (
                r.friendly_name.as_str(),
                r.code_length,
                r.custom_code_enabled
            ),
            ("Acme Inc", 8, true)
        );
        assert!(
            parse::<ServiceCreate>("CodeLength=6").is_err(),
            "FriendlyName is required"
        );
        assert!(parse::<ServiceCreate>("FriendlyName=A&CodeLength=six").is_err());
        assert!(parse::<ServiceCreate>("FriendlyName=A&LookupEnabled=maybe").is_err());
        let v: VerificationForm =
            parse("To=%2B4915112345678&Channel=sms&Locale=de").expect("parse");
        assert_eq!(
            (v.to.as_str(), v.channel.as_str()),
            ("+4915112345678", "sms")
        );
        assert_eq!(v.locale.as_deref(), Some("de"));
    }

    #[test]
    fn service_fields_are_checked_and_a_partial_update_keeps_the_rest() {
        for bad in [
            "CodeLength=3",
            "CodeLength=11",
            "FriendlyName=",
            "FriendlyName=0123456789012345678901234567890",
        ] {
            let u: ServiceUpdate = parse(bad).expect("parse");
            let f = u.apply(&mut record()).expect_err(bad);
            assert_eq!((f.status, f.code), (400, 60200), "{bad}");
        }
        let mut r = record();
        let u: ServiceUpdate = parse("LookupEnabled=true").expect("parse");
        u.apply(&mut r).expect("apply");
        assert!(r.lookup_enabled);
        assert_eq!((r.friendly_name.as_str(), r.code_length), ("Old", 6));
    }

    #[test]
    fn what_otpd_cannot_honour_is_refused_by_name() {
        let form = |body: &str| {
            parse::<VerificationForm>(&format!("To=a%40b.example&Channel=email&{body}"))
                .expect("parse")
        };
        let refused = |body: &str, enabled: bool| {
            form(body)
                .refuse_unsupported(enabled)
                .expect_err(body)
                .message
        };
        assert!(refused("CustomMessage=hi", true).contains("CustomMessage"));
        assert!(refused("CustomCode=1234", false).contains("CustomCodeEnabled"));
        assert!(refused("Amount=1", true).contains("PSD2"));
        assert!(refused("RateLimits=%7B%22per_ip%22%3A1%7D", true).contains("per_ip"));
        assert!(refused("RateLimits=nope", true).contains("JSON"));
        assert!(refused("ChannelConfiguration=%5B%5D", true).contains("JSON object"));
        for ok in [
            "CustomCode=1234",
            "RateLimits=%7B%7D",
            "ChannelConfiguration=%7B%7D",
            "Locale=fr",
        ] {
            form(ok)
                .refuse_unsupported(true)
                .unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
    }
}
