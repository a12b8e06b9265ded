//! [`Policy`]: every tunable rule of the service, and its check.
//!
//! The server fills a policy from config and checks it once at start with
//! [`Policy::validate`]. A bad setting is a typed [`PolicyError`] (which
//! [`Setting`], what [`Problem`]), so the server can name its own config
//! keys (`otp.lifetime_min must be at most otp.lifetime_max`) without the
//! domain knowing them.

use std::collections::HashMap;
use std::fmt;

use crate::error::Limit;
use crate::locale::{Locales, Templates};
use crate::outcome::RateBucket;
use crate::template::PASSWORD;
use crate::types::{Channel, Code, Lifetime, Region};

/// The policy's checks of a locale's texts (the type lives with the
/// locales, which must not depend on the policy).
impl Templates {
    /// Checks each text against what a request's own text must meet:
    /// bodies show the code and fit the channel's limit, the subject is
    /// one line and short.
    ///
    /// # Errors
    /// The first text that does not, and why.
    pub fn validate(&self) -> Result<(), (Template, Problem)> {
        for (template, text, channel) in [
            (Template::Sms, &self.sms, Channel::Sms),
            (Template::Call, &self.call, Channel::Call),
            (Template::EmailText, &self.email_text, Channel::Email),
            (Template::Telegram, &self.telegram, Channel::Telegram),
            (Template::Pairing, &self.pairing, Channel::Telegram),
        ] {
            if !text.contains(PASSWORD) {
                return Err((template, Problem::MissingPlaceholder));
            }
            let (_, max) = body_limit(channel);
            if text.chars().count() > max {
                return Err((template, Problem::TooLong(max)));
            }
        }
        if self.email_subject.contains(['\r', '\n']) {
            return Err((Template::EmailSubject, Problem::MultiLine));
        }
        if self.email_subject.chars().count() > SUBJECT_LIMIT {
            return Err((Template::EmailSubject, Problem::TooLong(SUBJECT_LIMIT)));
        }
        Ok(())
    }
}

/// Which country calling codes a phone channel may send to. An empty
/// allow list allows every code not denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryRules {
    pub allow: Vec<u16>,
    pub deny: Vec<u16>,
}

impl CountryRules {
    pub fn permits(&self, calling_code: u16) -> bool {
        !self.deny.contains(&calling_code)
            && (self.allow.is_empty() || self.allow.contains(&calling_code))
    }
}

/// Sends per hour per channel, across all destinations: a cost cap
/// against SMS pumping. 0 turns a channel's cap off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelBudget {
    pub sms: u32,
    pub call: u32,
    pub email: u32,
    pub telegram: u32,
    pub whatsapp: u32,
}

impl ChannelBudget {
    fn get(&self, channel: Channel) -> u32 {
        match channel {
            Channel::Sms => self.sms,
            Channel::Call => self.call,
            Channel::Email => self.email,
            Channel::Telegram => self.telegram,
            Channel::WhatsApp => self.whatsapp,
        }
    }
}

/// Every tunable rule. The server fills it from config.
#[derive(Debug, Clone)]
pub struct Policy {
    pub lifetime_default: u32,
    pub lifetime_min: u32,
    pub lifetime_max: u32,
    /// Digits of a generated code, 4 to 10.
    pub code_length: usize,
    /// Failed checks after which a code is locked.
    pub max_attempts: u32,
    /// Minimum seconds between two sends to one destination; 0 turns it off.
    pub cooldown_secs: u64,
    /// At most this many sends to one destination per `send_window_secs`;
    /// 0 turns it off.
    pub sends_per_window: u32,
    pub send_window_secs: u64,
    /// At most this many sends per end-user key (the app passes one) per
    /// `user_send_window_secs`; 0 turns it off.
    pub user_sends_per_window: u32,
    pub user_send_window_secs: u64,
    /// Global hourly caps per channel.
    pub channel_budget: ChannelBudget,
    /// Failed `/target` lookups per end-user key per
    /// `target_failure_window_secs`; 0 turns it off.
    pub target_failures_per_window: u32,
    pub target_failure_window_secs: u64,
    /// Region for phones given without a country code; `None` accepts
    /// international numbers only.
    pub default_region: Option<Region>,
    pub sms_countries: CountryRules,
    pub call_countries: CountryRules,
    pub whatsapp_countries: CountryRules,
    /// Whether WhatsApp messages are an approved template whose text
    /// the provider fixes (the Cloud API): a request's `message` is then
    /// refused, and codes are at most 15 characters.
    pub whatsapp_fixed_template: bool,
    /// Send a WhatsApp code by SMS when WhatsApp cannot deliver it.
    pub whatsapp_fallback_sms: bool,
    /// Destinations (by store key) with a fixed code that is never sent,
    /// for app-store review and QA.
    pub test_destinations: HashMap<String, Code>,
    /// How long a Telegram pairing code lives; parsed by whoever builds
    /// the policy, so no rule re-checks it.
    pub pairing_lifetime: Lifetime,
    /// How long a verification is kept after it ends, in seconds.
    pub verification_retention_secs: u64,
    /// The texts of every locale served, and which locale a send gets.
    pub locales: Locales,
}

/// A setting of the [`Policy`] that can be wrong. The server maps each to
/// its config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    CodeLength,
    LifetimeMin,
    LifetimeMax,
    LifetimeDefault,
    MaxAttempts,
    SendsPerWindow,
    SendWindowSecs,
    UserSendsPerWindow,
    UserSendWindowSecs,
    TargetFailuresPerWindow,
    TargetFailureWindowSecs,
    Template(Template),
}

/// A template of [`Templates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    Sms,
    Call,
    EmailSubject,
    EmailText,
    Telegram,
    Pairing,
}

/// Per-channel message length limits, in characters: what providers
/// accept in one message. Requests and templates alike must fit.
pub(crate) fn body_limit(channel: Channel) -> (&'static str, usize) {
    match channel {
        Channel::Sms => ("message", 1600),
        Channel::Call => ("message", 1600),
        Channel::Email => ("text", 10_000),
        Channel::Telegram => ("message", 4096),
        Channel::WhatsApp => ("message", 1600),
    }
}

/// The longest email subject, in characters.
pub(crate) const SUBJECT_LIMIT: usize = 255;

impl Setting {
    /// The name of the [`Policy`] field, for messages that know no config
    /// keys.
    pub fn name(self) -> &'static str {
        match self {
            Setting::CodeLength => "code_length",
            Setting::LifetimeMin => "lifetime_min",
            Setting::LifetimeMax => "lifetime_max",
            Setting::LifetimeDefault => "lifetime_default",
            Setting::MaxAttempts => "max_attempts",
            Setting::SendsPerWindow => "sends_per_window",
            Setting::SendWindowSecs => "send_window_secs",
            Setting::UserSendsPerWindow => "user_sends_per_window",
            Setting::UserSendWindowSecs => "user_send_window_secs",
            Setting::TargetFailuresPerWindow => "target_failures_per_window",
            Setting::TargetFailureWindowSecs => "target_failure_window_secs",
            Setting::Template(Template::Sms) => "templates.sms",
            Setting::Template(Template::Call) => "templates.call",
            Setting::Template(Template::EmailSubject) => "templates.email_subject",
            Setting::Template(Template::EmailText) => "templates.email_text",
            Setting::Template(Template::Telegram) => "templates.telegram",
            Setting::Template(Template::Pairing) => "templates.pairing",
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with a setting. Problems that involve another setting
/// name it as a [`Setting`], so a message can use the caller's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Must lie in `min..=max`.
    OutOfRange { min: u64, max: u64 },
    /// Must be at least this.
    AtLeast(u64),
    /// Must not exceed the other setting.
    AtMost(Setting),
    /// Must lie between the two other settings, both included.
    Between(Setting, Setting),
    /// Must be at least 1 while the other setting is not 0.
    RequiredWhen(Setting),
    /// A body template must show the code.
    MissingPlaceholder,
    /// Longer than this many characters.
    TooLong(usize),
    /// Must be a single line.
    MultiLine,
}

impl Problem {
    /// The problem in words, naming other settings with `name` (the
    /// server passes its config keys).
    pub fn describe(&self, name: impl Fn(Setting) -> String) -> String {
        match *self {
            Problem::OutOfRange { min, max } => format!("must be {min} to {max}"),
            Problem::AtLeast(min) => format!("must be at least {min}"),
            Problem::AtMost(other) => format!("must be at most {}", name(other)),
            Problem::Between(low, high) => {
                format!("must lie between {} and {}", name(low), name(high))
            }
            Problem::RequiredWhen(other) => {
                format!("must be at least 1 when {} is not 0", name(other))
            }
            Problem::MissingPlaceholder => format!("must contain {PASSWORD}"),
            Problem::TooLong(max) => format!("must be at most {max} characters"),
            Problem::MultiLine => "must be a single line".to_owned(),
        }
    }
}

/// A policy setting that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}", self.setting_name(), problem.describe(|s| s.name().to_owned()))]
pub struct PolicyError {
    pub setting: Setting,
    pub problem: Problem,
    /// For a template: the locale whose text it is, unless that is `en`,
    /// whose texts are the top-level `templates.*`.
    pub locale: Option<String>,
}

impl PolicyError {
    pub fn new(setting: Setting, problem: Problem) -> Self {
        PolicyError {
            setting,
            problem,
            locale: None,
        }
    }

    /// The setting's name, with its locale: `templates.locales.de.sms`.
    pub fn setting_name(&self) -> String {
        match &self.locale {
            Some(locale) => {
                let field = self.setting.name().trim_start_matches("templates.");
                format!("templates.locales.{locale}.{field}")
            }
            None => self.setting.name().to_owned(),
        }
    }
}

impl Policy {
    /// Checks the policy itself, once at start.
    ///
    /// # Errors
    /// The first setting that is out of range, and why.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let fail = |setting, problem| Err(PolicyError::new(setting, problem));
        if !(4..=10).contains(&self.code_length) {
            return fail(Setting::CodeLength, Problem::OutOfRange { min: 4, max: 10 });
        }
        if self.lifetime_min == 0 {
            return fail(Setting::LifetimeMin, Problem::AtLeast(1));
        }
        if self.lifetime_min > self.lifetime_max {
            return fail(Setting::LifetimeMin, Problem::AtMost(Setting::LifetimeMax));
        }
        if !(self.lifetime_min..=self.lifetime_max).contains(&self.lifetime_default) {
            return fail(
                Setting::LifetimeDefault,
                Problem::Between(Setting::LifetimeMin, Setting::LifetimeMax),
            );
        }
        if self.max_attempts == 0 {
            return fail(Setting::MaxAttempts, Problem::AtLeast(1));
        }
        for (limit, window, limit_setting, window_setting) in [
            (
                self.sends_per_window,
                self.send_window_secs,
                Setting::SendsPerWindow,
                Setting::SendWindowSecs,
            ),
            (
                self.user_sends_per_window,
                self.user_send_window_secs,
                Setting::UserSendsPerWindow,
                Setting::UserSendWindowSecs,
            ),
            (
                self.target_failures_per_window,
                self.target_failure_window_secs,
                Setting::TargetFailuresPerWindow,
                Setting::TargetFailureWindowSecs,
            ),
        ] {
            if limit > 0 && window == 0 {
                return fail(window_setting, Problem::RequiredWhen(limit_setting));
            }
        }
        // A template is what a request without its own text sends: it
        // must fit the same limits, or every such send would fail.
        for locale in self.locales.all() {
            locale
                .templates
                .validate()
                .map_err(|(template, problem)| PolicyError {
                    setting: Setting::Template(template),
                    problem,
                    locale: (locale.tag.as_str() != "en").then(|| locale.tag.to_string()),
                })?;
        }
        Ok(())
    }

    pub(crate) fn countries(&self, channel: Channel) -> Option<&CountryRules> {
        match channel {
            Channel::Sms => Some(&self.sms_countries),
            Channel::Call => Some(&self.call_countries),
            Channel::WhatsApp => Some(&self.whatsapp_countries),
            Channel::Email | Channel::Telegram => None,
        }
    }

    /// The limits that span destinations: per end user and per channel,
    /// each with the [`Limit`] it enforces. Each is its own bucket (on
    /// Redis Cluster, its own slot).
    pub(crate) fn shared_buckets(
        &self,
        channel: Channel,
        user_key: Option<&str>,
    ) -> Vec<(Limit, RateBucket)> {
        let mut buckets = Vec::with_capacity(2);
        if let Some(user) = user_key.filter(|_| self.user_sends_per_window > 0) {
            buckets.push((
                Limit::User,
                RateBucket {
                    key: format!("user:{user}"),
                    limit: self.user_sends_per_window,
                    window_ms: self.user_send_window_secs * 1000,
                },
            ));
        }
        let budget = self.channel_budget.get(channel);
        if budget > 0 {
            buckets.push((
                Limit::Channel,
                RateBucket {
                    key: format!("channel:{channel}"),
                    limit: budget,
                    window_ms: 3_600_000,
                },
            ));
        }
        buckets
    }

    /// The buckets a send to `key` must fit in.
    pub(crate) fn send_buckets(&self, key: &str) -> Vec<RateBucket> {
        let mut buckets = Vec::with_capacity(2);
        if self.cooldown_secs > 0 {
            buckets.push(RateBucket {
                key: format!("cooldown:{key}"),
                limit: 1,
                window_ms: self.cooldown_secs * 1000,
            });
        }
        if self.sends_per_window > 0 {
            buckets.push(RateBucket {
                key: format!("sends:{key}"),
                limit: self.sends_per_window,
                window_ms: self.send_window_secs * 1000,
            });
        }
        buckets
    }
}

/// The documented defaults (`config/default.toml`), for tests: the server
/// always builds its policy from config.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn budget() -> ChannelBudget {
        ChannelBudget {
            sms: 1000,
            call: 200,
            email: 5000,
            telegram: 5000,
            whatsapp: 1000,
        }
    }

    pub(crate) fn no_country_rules() -> CountryRules {
        CountryRules {
            allow: vec![],
            deny: vec![],
        }
    }

    pub(crate) fn policy() -> Policy {
        Policy {
            lifetime_default: 300,
            lifetime_min: 30,
            lifetime_max: 86_400,
            code_length: 6,
            max_attempts: 5,
            cooldown_secs: 30,
            sends_per_window: 5,
            send_window_secs: 600,
            user_sends_per_window: 10,
            user_send_window_secs: 3600,
            channel_budget: budget(),
            target_failures_per_window: 10,
            target_failure_window_secs: 600,
            default_region: None,
            sms_countries: no_country_rules(),
            call_countries: no_country_rules(),
            whatsapp_countries: no_country_rules(),
            whatsapp_fixed_template: false,
            whatsapp_fallback_sms: false,
            test_destinations: HashMap::new(),
            pairing_lifetime: Lifetime::parse(300, 1, 300).expect("valid"),
            verification_retention_secs: 86_400,
            locales: Locales::english(en_templates()),
        }
    }

    /// otpd's English defaults.
    pub(crate) fn en_templates() -> Templates {
        Templates {
            sms: "Your code is {password}. It expires in {lifetime} seconds.".into(),
            call: "Your code is {password}.".into(),
            email_subject: "Your verification code".into(),
            email_text: "Your code is {password}. It expires in {lifetime} seconds.".into(),
            telegram: "Your code is {password}. It expires in {lifetime} seconds.".into(),
            pairing: "Your code is {password}. Enter it in the app within {lifetime} seconds."
                .into(),
        }
    }

    /// Changes the English texts of `p`.
    pub(crate) fn set_en(p: &mut Policy, change: impl FnOnce(&mut Templates)) {
        let mut t = p.locales.default_locale().templates.clone();
        change(&mut t);
        p.locales = Locales::english(t);
    }

    #[test]
    fn default_policy_is_valid_and_bad_ones_name_the_setting() {
        assert_eq!(policy().validate(), Ok(()));
        let mut p = policy();
        set_en(&mut p, |t| t.sms = "no code here".into());
        assert_eq!(
            p.validate(),
            Err(PolicyError::new(
                Setting::Template(Template::Sms),
                Problem::MissingPlaceholder
            ))
        );
        let p = Policy {
            lifetime_default: 5,
            ..policy()
        };
        assert_eq!(
            p.validate(),
            Err(PolicyError::new(
                Setting::LifetimeDefault,
                Problem::Between(Setting::LifetimeMin, Setting::LifetimeMax)
            ))
        );
    }

    #[test]
    fn each_bad_setting_is_reported_with_the_setting_it_depends_on() {
        type Spoil = fn(&mut Policy);
        let cases: [(Spoil, Setting, Problem); 9] = [
            (
                |p| p.code_length = 11,
                Setting::CodeLength,
                Problem::OutOfRange { min: 4, max: 10 },
            ),
            (
                |p| p.lifetime_min = 0,
                Setting::LifetimeMin,
                Problem::AtLeast(1),
            ),
            (
                |p| {
                    p.lifetime_min = 500;
                    p.lifetime_max = 100;
                },
                Setting::LifetimeMin,
                Problem::AtMost(Setting::LifetimeMax),
            ),
            (
                |p| p.max_attempts = 0,
                Setting::MaxAttempts,
                Problem::AtLeast(1),
            ),
            (
                |p| p.user_send_window_secs = 0,
                Setting::UserSendWindowSecs,
                Problem::RequiredWhen(Setting::UserSendsPerWindow),
            ),
            (
                |p| set_en(p, |t| t.pairing = "Hello".into()),
                Setting::Template(Template::Pairing),
                Problem::MissingPlaceholder,
            ),
            (
                |p| set_en(p, |t| t.sms = format!("{{password}}{}", "x".repeat(1600))),
                Setting::Template(Template::Sms),
                Problem::TooLong(1600),
            ),
            (
                |p| {
                    set_en(p, |t| {
                        t.email_subject = "Your code\nBcc: x@example.com".into()
                    })
                },
                Setting::Template(Template::EmailSubject),
                Problem::MultiLine,
            ),
            (
                |p| set_en(p, |t| t.email_subject = "x".repeat(256)),
                Setting::Template(Template::EmailSubject),
                Problem::TooLong(255),
            ),
        ];
        for (spoil, setting, problem) in cases {
            let mut p = policy();
            spoil(&mut p);
            assert_eq!(p.validate(), Err(PolicyError::new(setting, problem)));
        }
        // A window of 0 is fine while its limit is off.
        let mut p = policy();
        p.user_sends_per_window = 0;
        p.user_send_window_secs = 0;
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn problems_name_other_settings_in_the_callers_words() {
        let err = PolicyError::new(Setting::LifetimeMin, Problem::AtMost(Setting::LifetimeMax));
        assert_eq!(err.to_string(), "lifetime_min must be at most lifetime_max");
        assert_eq!(
            err.problem.describe(|s| format!("otp.{}", s.name())),
            "must be at most otp.lifetime_max"
        );
        let err = PolicyError::new(
            Setting::Template(Template::Sms),
            Problem::MissingPlaceholder,
        );
        assert_eq!(err.to_string(), "templates.sms must contain {password}");
    }
}
