//! The domain [`Policy`] from `[otp]`, `[limits]`, `[templates]`, the
//! phone channels' country rules, `security.test_destinations` and
//! `telegram.pairing_lifetime`. The domain checks the policy and names
//! its own settings; [`key`] says which config key each one is.

use std::collections::HashMap;

use otp_domain::policy::Setting;
use otp_domain::{
    ChannelBudget, Code, CountryRules, Destination, Lifetime, Policy, PolicyError, Region,
};

use super::schema::{ConfigFile, PhoneChannelConfig};
use super::{ConfigError, KeyError, Problem};

/// The config key of a policy setting.
pub(super) fn key(setting: Setting) -> &'static str {
    match setting {
        Setting::CodeLength => "otp.code_length",
        Setting::LifetimeMin => "otp.lifetime_min",
        Setting::LifetimeMax => "otp.lifetime_max",
        Setting::LifetimeDefault => "otp.lifetime_default",
        Setting::MaxAttempts => "otp.max_attempts",
        Setting::SendsPerWindow => "limits.sends_per_window",
        Setting::SendWindowSecs => "limits.send_window_secs",
        Setting::UserSendsPerWindow => "limits.user_sends_per_window",
        Setting::UserSendWindowSecs => "limits.user_send_window_secs",
        Setting::TargetFailuresPerWindow => "limits.target_failures_per_window",
        Setting::TargetFailureWindowSecs => "limits.target_failure_window_secs",
        // The domain names a template by its key already
        // (`templates.sms`, …).
        Setting::Template(_) => setting.name(),
    }
}

impl From<PolicyError> for ConfigError {
    fn from(e: PolicyError) -> Self {
        let name = match &e.locale {
            Some(locale) => {
                let field = key(e.setting).trim_start_matches("templates.");
                format!("templates.locales.{locale}.{field}")
            }
            None => key(e.setting).to_owned(),
        };
        KeyError::new(name, Problem::Policy(e.problem)).into()
    }
}

/// The policy this config describes, checked.
///
/// # Errors
/// A bad region, test destination or pairing lifetime, or a policy rule
/// broken, naming the key.
pub(super) fn policy(file: &ConfigFile) -> Result<Policy, ConfigError> {
    let t = &file.templates;
    let l = &file.limits;
    let o = &file.otp;
    let region = region(&o.default_region)?;
    let policy = Policy {
        lifetime_default: o.lifetime_default,
        lifetime_min: o.lifetime_min,
        lifetime_max: o.lifetime_max,
        code_length: o.code_length,
        verification_retention_secs: file.verifications.retention_secs,
        max_attempts: o.max_attempts,
        cooldown_secs: l.cooldown_secs,
        sends_per_window: l.sends_per_window,
        send_window_secs: l.send_window_secs,
        user_sends_per_window: l.user_sends_per_window,
        user_send_window_secs: l.user_send_window_secs,
        channel_budget: ChannelBudget {
            sms: l.sms_per_hour,
            call: l.call_per_hour,
            email: l.email_per_hour,
            telegram: l.telegram_per_hour,
            whatsapp: l.whatsapp_per_hour,
        },
        target_failures_per_window: l.target_failures_per_window,
        target_failure_window_secs: l.target_failure_window_secs,
        default_region: region,
        sms_countries: countries(&file.sms),
        call_countries: countries(&file.call),
        whatsapp_countries: CountryRules {
            allow: file.whatsapp.allow_countries.clone(),
            deny: file.whatsapp.deny_countries.clone(),
        },
        whatsapp_fallback_sms: file.whatsapp.fallback == super::schema::WhatsAppFallback::Sms,
        // The Cloud API and Twilio send an approved template, whatever the
        // request: its own text would be dropped without a word.
        whatsapp_fixed_template: file.whatsapp.provider.0.iter().any(|p| {
            matches!(
                p,
                super::schema::WhatsAppProviderName::Meta
                    | super::schema::WhatsAppProviderName::Twilio
            )
        }),
        test_destinations: test_destinations(file, region)?,
        pairing_lifetime: Lifetime::parse(i64::from(file.telegram.pairing_lifetime), 1, u32::MAX)
            .map_err(|_| {
            KeyError::new("telegram.pairing_lifetime", Problem::AtLeast(1))
        })?,
        locales: super::locales::locales(t)?,
    };
    policy.validate()?;
    Ok(policy)
}

fn countries(channel: &PhoneChannelConfig) -> CountryRules {
    CountryRules {
        allow: channel.allow_countries.clone(),
        deny: channel.deny_countries.clone(),
    }
}

fn region(code: &str) -> Result<Option<Region>, ConfigError> {
    let code = code.trim();
    if code.is_empty() {
        return Ok(None);
    }
    Region::parse(code).map(Some).map_err(|_| {
        KeyError::new(
            "otp.default_region",
            Problem::Must("be an ISO 3166 region code like \"DE\", or empty"),
        )
        .into()
    })
}

fn test_destinations(
    file: &ConfigFile,
    region: Option<Region>,
) -> Result<HashMap<String, Code>, ConfigError> {
    file.security
        .test_destinations
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let invalid = |field, e| {
                KeyError::new(
                    format!("security.test_destinations[{i}].{field}"),
                    Problem::Parse(e),
                )
            };
            let destination = Destination::parse_in(t.channel.into(), &t.to, region)
                .map_err(|e| invalid("to", e))?;
            let code = Code::parse(&t.code).map_err(|e| invalid("code", e))?;
            Ok((destination.key(), code))
        })
        .collect()
}

/// The fraud guard's policy, each rule named by its key.
pub(super) fn fraud(file: &ConfigFile) -> Result<otp_domain::fraud::FraudPolicy, ConfigError> {
    let f = &file.fraud;
    if f.prefix_digits > 6 {
        return Err(KeyError::new("fraud.prefix_digits", Problem::Must("be at most 6")).into());
    }
    if f.window_secs < 60 {
        return Err(KeyError::new("fraud.window_secs", Problem::AtLeast(60)).into());
    }
    if f.min_sends < 1 {
        return Err(KeyError::new("fraud.min_sends", Problem::AtLeast(1)).into());
    }
    if !(0.0..=1.0).contains(&f.min_conversion) {
        return Err(
            KeyError::new("fraud.min_conversion", Problem::Must("be between 0 and 1")).into(),
        );
    }
    if f.block_secs < 1 {
        return Err(KeyError::new("fraud.block_secs", Problem::AtLeast(1)).into());
    }
    let mut never_block = Vec::with_capacity(f.never_block.len());
    for p in &f.never_block {
        match otp_domain::fraud::Prefix::parse(p.trim()) {
            Some(p) => never_block.push(p.as_str().to_owned()),
            None => {
                return Err(KeyError::new(
                    "fraud.never_block",
                    Problem::Must("list prefixes of 1 to 15 digits, e.g. \"7701\""),
                )
                .into())
            }
        }
    }
    Ok(otp_domain::fraud::FraudPolicy {
        mode: f.mode,
        prefix_digits: f.prefix_digits,
        window_secs: f.window_secs,
        min_sends: f.min_sends,
        min_conversion: f.min_conversion,
        block_secs: f.block_secs,
        never_block,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load_error, load_ok};
    use figment::providers::{Format, Toml};
    use figment::Figment;
    use otp_domain::policy::{Setting, Template};

    #[test]
    fn every_template_setting_names_a_key_of_the_default_config() {
        let templates = [
            Template::Sms,
            Template::Call,
            Template::EmailSubject,
            Template::EmailText,
            Template::Telegram,
            Template::Pairing,
        ];
        let defaults = Figment::from(Toml::string(crate::DEFAULT_TOML));
        for t in templates {
            // No wildcard: a new template fails to compile here until it
            // is listed above.
            match t {
                Template::Sms
                | Template::Call
                | Template::EmailSubject
                | Template::EmailText
                | Template::Telegram
                | Template::Pairing => {}
            }
            let key = super::key(Setting::Template(t));
            assert!(
                defaults.find_value(key).is_ok_and(|v| v.as_str().is_some()),
                "{key} is not a text of config/default.toml"
            );
        }
    }

    #[test]
    fn a_template_without_password_is_refused() {
        let err = load_error(&[("OTP_TEMPLATES__SMS", "Hello")], "");
        assert!(
            err.contains("templates.sms") && err.contains("must contain {password}"),
            "{err}"
        );
    }

    #[test]
    fn policy_errors_name_every_key_in_full() {
        for (vars, expected) in [
            (
                &[
                    ("OTP_OTP__LIFETIME_MIN", "500"),
                    ("OTP_OTP__LIFETIME_MAX", "100"),
                ][..],
                "otp.lifetime_min must be at most otp.lifetime_max",
            ),
            (
                &[("OTP_OTP__LIFETIME_DEFAULT", "5")][..],
                "otp.lifetime_default must lie between otp.lifetime_min and otp.lifetime_max",
            ),
            (
                &[("OTP_OTP__CODE_LENGTH", "12")][..],
                "otp.code_length must be 4 to 10",
            ),
            (
                &[("OTP_LIMITS__SEND_WINDOW_SECS", "0")][..],
                "limits.send_window_secs must be at least 1 when limits.sends_per_window is not 0",
            ),
            (
                &[("OTP_TELEGRAM__PAIRING_LIFETIME", "0")][..],
                "telegram.pairing_lifetime must be at least 1",
            ),
            (
                &[("OTP_TEMPLATES__PAIRING", "Hi")][..],
                "templates.pairing must contain {password}",
            ),
            (
                &[("OTP_TEMPLATES__LOCALES__DE__SMS", "Hallo")][..],
                "templates.locales.de.sms must contain {password}",
            ),
            (
                &[("OTP_TEMPLATES__LOCALES__XX__EMAIL_SUBJECT", "a\nb")][..],
                "templates.locales.xx.email_subject must be a single line",
            ),
            (
                &[("OTP_TEMPLATES__DEFAULT_LOCALE", "xx")][..],
                "templates.default_locale is not accepted: the default locale xx is not served (neither built in nor configured)",
            ),
            (
                &[("OTP_TEMPLATES__DEFAULT_LOCALE", "german!")][..],
                "templates.default_locale is not accepted: invalid locale: a language tag must start with a 2 or 3 letter language code",
            ),
            (
                &[("OTP_TEMPLATES__COUNTRY_LOCALES__KZ", "xx")][..],
                "templates.country_locales.KZ is not accepted: country KZ maps to xx, which is not served",
            ),
            (
                &[("OTP_TEMPLATES__LOCALES__EN__SMS", "{password}")][..],
                "templates.locales.en must not be set: the English texts are the [templates] keys themselves",
            ),
        ] {
            let err = load_error(vars, "");
            assert_eq!(err, format!("invalid config: {expected}"));
        }
    }

    #[test]
    fn country_rules_region_and_test_destinations_reach_the_policy() {
        let c = load_ok(
            &[],
            r#"
                [otp]
                default_region = "de"
                [sms]
                allow_countries = [49]
                [call]
                deny_countries = [7]
                [security]
                test_destinations = [{ channel = "sms", to = "030 1234567", code = "424242" }]
                "#,
        );
        let p = &c.policy;
        assert!(p.sms_countries.permits(49) && !p.sms_countries.permits(7));
        assert!(!p.call_countries.permits(7) && p.call_countries.permits(1));
        assert!(p.test_destinations.contains_key("sms:+49301234567"));
        let err = load_error(&[("OTP_OTP__DEFAULT_REGION", "XX")], "");
        assert!(err.contains("otp.default_region"), "{err}");
        assert!(
            err.contains("otp.default_region must be an ISO 3166 region code"),
            "{err}"
        );
        let err = load_error(
            &[],
            r#"
                [security]
                test_destinations = [{ channel = "email", to = "not-an-email", code = "424242" }]
                "#,
        );
        assert!(
            err.contains("security.test_destinations[0].to is not accepted: invalid email"),
            "{err}"
        );
    }
}
