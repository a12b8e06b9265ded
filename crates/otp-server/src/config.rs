//! Configuration, layered with figment:
//! 1. the built-in defaults (`config/default.toml`, compiled in);
//! 2. the file given by `--config` or `OTP_CONFIG`;
//! 3. `OTP_` env vars, split on `__` (`OTP_SERVER__LISTEN`);
//! 4. the seed image's plain env vars (`HTTP_AUTH_USERNAME`, …).
//!
//! Unknown keys are errors. String keys from the environment are taken
//! verbatim, so a secret like `0123` keeps its leading zero.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::Figment;
use std::collections::HashMap;

use otp_domain::policy::{Setting, Template};
use otp_domain::{Channel, Code, Destination, Lifetime, Region};
use otp_domain::{ChannelBudget, CountryRules, Policy, PolicyError, Templates};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The built-in defaults.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub security: SecurityConfig,
    pub otp: OtpConfig,
    pub limits: LimitsConfig,
    pub templates: TemplatesConfig,
    pub sms: PhoneChannelConfig,
    pub call: PhoneChannelConfig,
    pub email: EmailChannelConfig,
    pub telegram: TelegramConfig,
    pub delivery: DeliveryConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub body_limit: usize,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    Embedded,
    Redis,
    RedisCluster,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    pub path: PathBuf,
    pub url: String,
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub nodes: Vec<String>,
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
    pub command_timeout_ms: u64,
    pub wait_timeout_ms: u64,
    pub key_prefix: String,
}

impl StoreConfig {
    /// The Redis adapter's settings.
    pub fn redis(&self) -> otp_redis::RedisConfig {
        otp_redis::RedisConfig {
            url: self.url.clone(),
            nodes: self.nodes.clone(),
            pool_size: self.pool_size,
            connect_timeout_ms: self.connect_timeout_ms,
            command_timeout_ms: self.command_timeout_ms,
            wait_timeout_ms: self.wait_timeout_ms,
            key_prefix: self.key_prefix.clone(),
        }
    }
}

/// A list from TOML, or a comma-separated string from the environment.
fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        One(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub username: String,
    pub password: SecretString,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    pub secret: SecretString,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub test_destinations: Vec<TestDestination>,
}

/// A destination with a fixed code that is never sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestDestination {
    pub channel: ChannelName,
    pub to: String,
    pub code: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelName {
    Sms,
    Call,
    Email,
    Telegram,
}

impl From<ChannelName> for Channel {
    fn from(c: ChannelName) -> Channel {
        match c {
            ChannelName::Sms => Channel::Sms,
            ChannelName::Call => Channel::Call,
            ChannelName::Email => Channel::Email,
            ChannelName::Telegram => Channel::Telegram,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtpConfig {
    pub code_length: usize,
    pub max_attempts: u32,
    pub lifetime_default: u32,
    pub lifetime_min: u32,
    pub lifetime_max: u32,
    pub default_region: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub cooldown_secs: u64,
    pub sends_per_window: u32,
    pub send_window_secs: u64,
    pub user_sends_per_window: u32,
    pub user_send_window_secs: u64,
    pub target_failures_per_window: u32,
    pub target_failure_window_secs: u64,
    pub sms_per_hour: u32,
    pub call_per_hour: u32,
    pub email_per_hour: u32,
    pub telegram_per_hour: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    pub sms: String,
    pub call: String,
    pub email_subject: String,
    pub email_text: String,
    pub telegram: String,
    pub pairing: String,
}

/// Which provider delivers a channel's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Development sink: prints messages to stdout.
    Log,
    /// A templated HTTP gateway (`[sms.http]`, `[call.http]`).
    Http,
    /// Twilio Messages / Calls API (`[sms.twilio]`, `[call.twilio]`).
    Twilio,
    /// SMTP (`[email.smtp]`).
    Smtp,
    /// The Telegram Bot API (`telegram.bot_token`).
    Telegram,
    /// An http-telegram-notify relay (`[telegram.notify]`).
    Notify,
    /// A JSON job appended to a Redis Stream for an external sender
    /// (`[<channel>.queue]`).
    Queue,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Log => "log",
            ProviderKind::Http => "http",
            ProviderKind::Twilio => "twilio",
            ProviderKind::Smtp => "smtp",
            ProviderKind::Telegram => "telegram",
            ProviderKind::Notify => "notify",
            ProviderKind::Queue => "queue",
        }
    }
}

/// One provider (`"twilio"`) or several in fallback order
/// (`["twilio", "http"]`, or `twilio,http` from the environment).
fn providers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ProviderKind>, D::Error> {
    use serde::de::Error;
    let names = list_or_comma_separated(d)?;
    if names.is_empty() {
        return Err(D::Error::custom("name at least one provider"));
    }
    names
        .iter()
        .map(|n| ProviderKind::deserialize(serde::de::value::StrDeserializer::<D::Error>::new(n)))
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneChannelConfig {
    #[serde(deserialize_with = "providers")]
    pub provider: Vec<ProviderKind>,
    pub allow_countries: Vec<u16>,
    pub deny_countries: Vec<u16>,
    pub http: Option<otp_gateway::HttpGatewayConfig>,
    pub twilio: Option<otp_gateway::TwilioConfig>,
    pub queue: Option<otp_redis::QueueConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannelConfig {
    #[serde(deserialize_with = "providers")]
    pub provider: Vec<ProviderKind>,
    pub smtp: Option<otp_smtp::SmtpConfig>,
    pub queue: Option<otp_redis::QueueConfig>,
}

/// How hard otpd tries to deliver one message (see `delivery`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub deadline_secs: u64,
}

impl PhoneChannelConfig {
    fn countries(&self) -> CountryRules {
        CountryRules {
            allow: self.allow_countries.clone(),
            deny: self.deny_countries.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    #[serde(deserialize_with = "providers")]
    pub provider: Vec<ProviderKind>,
    pub webhook_secret: SecretString,
    pub pairing_lifetime: u32,
    pub bot_token: SecretString,
    pub api_url: String,
    pub timeout_secs: u64,
    pub notify: Option<otp_telegram::HttpNotifyConfig>,
    pub queue: Option<otp_redis::QueueConfig>,
}

impl TelegramConfig {
    /// The Bot API settings, when a bot token is set.
    pub fn bot(&self) -> Option<otp_telegram::TelegramConfig> {
        (!self.bot_token.expose_secret().is_empty()).then(|| otp_telegram::TelegramConfig {
            bot_token: self.bot_token.clone(),
            api_url: self.api_url.clone(),
            timeout_secs: self.timeout_secs,
        })
    }
}

/// The config key of a policy setting.
fn policy_key(setting: Setting) -> &'static str {
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
        Setting::Template(Template::Sms) => "templates.sms",
        Setting::Template(Template::Call) => "templates.call",
        Setting::Template(Template::EmailText) => "templates.email_text",
        Setting::Template(Template::Telegram) => "templates.telegram",
        Setting::Template(Template::Pairing) => "templates.pairing",
    }
}

/// A policy error, told with config keys.
fn policy_error(e: PolicyError) -> ConfigError {
    ConfigError::Invalid {
        key: policy_key(e.setting),
        message: e.problem.describe(|s| policy_key(s).to_owned()),
    }
}

/// The seed image's plain env vars and the keys they set.
const SEED_ENV: &[(&str, &str)] = &[
    ("HTTP_AUTH_USERNAME", "auth.username"),
    ("HTTP_AUTH_PASSWORD", "auth.password"),
    ("TELEGRAM_WEBHOOK_SECRET", "telegram.webhook_secret"),
    ("TELEGRAM_BOT_TOKEN", "telegram.bot_token"),
    ("TELEGRAM_API_URL", "telegram.api_url"),
];

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error(transparent)]
    Figment(#[from] Box<figment::Error>),
    #[error("invalid config: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// Loads every layer from the process environment.
    ///
    /// # Errors
    /// A missing file, an unknown key, a bad value (the message names the
    /// key) or a failed cross-key check.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(Self::figment(file)?)
    }

    /// The layered figment, before extraction.
    ///
    /// # Errors
    /// A config file that does not exist.
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            fig = fig.merge(Toml::file(path));
        }
        let env = Env::prefixed("OTP_").split("__");
        for (key, raw) in env.iter() {
            if key.as_str() == "config" {
                continue; // OTP_CONFIG names the file, it is no key.
            }
            // Taken verbatim, so `0123` keeps its zero and `+4912345678`
            // stays a string; extraction is lossy, so `"3"` still fills a
            // number. Only `[...]` is parsed, as a list.
            let value = if raw.trim_start().starts_with('[') {
                raw.parse::<Value>().unwrap_or_else(|_| Value::from(raw))
            } else {
                Value::from(raw)
            };
            fig = fig.merge(Serialized::default(key.as_str(), value));
        }
        for (var, key) in SEED_ENV {
            if let Ok(value) = std::env::var(var) {
                if !value.is_empty() {
                    fig = fig.merge(Serialized::default(key, value));
                }
            }
        }
        Ok(fig)
    }

    /// Extracts and validates.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let config: Config = fig.extract_lossy().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let user_set = !self.auth.username.is_empty();
        let pass_set = !self.auth.password.expose_secret().is_empty();
        if user_set != pass_set {
            return Err(ConfigError::Invalid {
                key: "auth",
                message: "set both auth.username and auth.password (HTTP_AUTH_USERNAME, HTTP_AUTH_PASSWORD), or neither".into(),
            });
        }
        match self.store.kind {
            StoreKind::Embedded => {}
            StoreKind::Redis | StoreKind::RedisCluster => {
                if self.security.secret.expose_secret().is_empty() {
                    return Err(ConfigError::Invalid {
                        key: "security.secret",
                        message: "required with a Redis store, and the same on every otpd instance (OTP_SECURITY__SECRET; e.g. `openssl rand -hex 32`)".into(),
                    });
                }
                if self.store.kind == StoreKind::RedisCluster && self.store.nodes.is_empty() {
                    return Err(ConfigError::Invalid {
                        key: "store.nodes",
                        message: "list at least one seed node for store.kind = \"redis-cluster\""
                            .into(),
                    });
                }
                if self.store.key_prefix.contains(['{', '}']) {
                    return Err(ConfigError::Invalid {
                        key: "store.key_prefix",
                        message: "must not contain { or }".into(),
                    });
                }
            }
        }
        self.validate_providers()?;
        if self.server.body_limit < 256 {
            return Err(ConfigError::Invalid {
                key: "server.body_limit",
                message: "must be at least 256 bytes".into(),
            });
        }
        self.policy()?.validate().map_err(policy_error)
    }

    /// Every named provider is allowed on its channel and has its
    /// settings; a missing token, URL or from-address stops otpd here.
    fn validate_providers(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid { key, message };
        for (key, channel, kinds) in [
            ("sms.provider", Channel::Sms, &self.sms.provider),
            ("call.provider", Channel::Call, &self.call.provider),
            ("email.provider", Channel::Email, &self.email.provider),
            (
                "telegram.provider",
                Channel::Telegram,
                &self.telegram.provider,
            ),
        ] {
            for kind in kinds {
                let allowed = *kind == ProviderKind::Queue
                    || match channel {
                        Channel::Sms | Channel::Call => {
                            matches!(
                                kind,
                                ProviderKind::Log | ProviderKind::Http | ProviderKind::Twilio
                            )
                        }
                        Channel::Email => matches!(kind, ProviderKind::Log | ProviderKind::Smtp),
                        Channel::Telegram => {
                            matches!(
                                kind,
                                ProviderKind::Log | ProviderKind::Telegram | ProviderKind::Notify
                            )
                        }
                    };
                if !allowed {
                    return Err(invalid(
                        key,
                        format!("{} cannot deliver {channel}", kind.as_str()),
                    ));
                }
                let prefixed = |e: String| invalid(key, format!("{channel}.{e}"));
                let missing = |section: &str| {
                    invalid(
                        key,
                        format!("{} needs a [{channel}.{section}] section", kind.as_str()),
                    )
                };
                match (channel, kind) {
                    (_, ProviderKind::Log) => {}
                    (Channel::Sms | Channel::Call, ProviderKind::Http) => {
                        let phone = if channel == Channel::Sms {
                            &self.sms
                        } else {
                            &self.call
                        };
                        phone
                            .http
                            .as_ref()
                            .ok_or_else(|| missing("http"))?
                            .validate()
                            .map_err(prefixed)?;
                    }
                    (Channel::Sms | Channel::Call, ProviderKind::Twilio) => {
                        let phone = if channel == Channel::Sms {
                            &self.sms
                        } else {
                            &self.call
                        };
                        phone
                            .twilio
                            .as_ref()
                            .ok_or_else(|| missing("twilio"))?
                            .validate_for(channel)
                            .map_err(prefixed)?;
                    }
                    (Channel::Email, ProviderKind::Smtp) => {
                        self.email
                            .smtp
                            .as_ref()
                            .ok_or_else(|| missing("smtp"))?
                            .validate()
                            .map_err(prefixed)?;
                    }
                    (Channel::Telegram, ProviderKind::Telegram) => {
                        let bot = self.telegram.bot().ok_or_else(|| {
                            invalid(
                                "telegram.bot_token",
                                "required by the telegram provider (TELEGRAM_BOT_TOKEN)".into(),
                            )
                        })?;
                        bot.validate()
                            .map_err(|e| invalid("telegram.bot_token", e))?;
                    }
                    (_, ProviderKind::Queue) => {
                        self.queue(channel)
                            .ok_or_else(|| missing("queue"))?
                            .validate()
                            .map_err(prefixed)?;
                    }
                    (Channel::Telegram, ProviderKind::Notify) => {
                        self.telegram
                            .notify
                            .as_ref()
                            .ok_or_else(|| missing("notify"))?
                            .validate()
                            .map_err(prefixed)?;
                    }
                    _ => {}
                }
            }
        }
        // Once Telegram messages really go out (any provider but the dev
        // sink), the webhook must be authenticated: it is exempt from Basic
        // auth, and an open one would let anyone send codes to any chat.
        let delivers = self
            .telegram
            .provider
            .iter()
            .any(|k| *k != ProviderKind::Log);
        if (delivers || self.telegram.bot().is_some())
            && self.telegram.webhook_secret.expose_secret().is_empty()
        {
            return Err(invalid(
                "telegram.webhook_secret",
                "required when Telegram messages are delivered (a bot token or a provider other than log): TELEGRAM_WEBHOOK_SECRET, the same value as setWebhook's secret_token".into(),
            ));
        }
        Ok(())
    }

    /// The queue settings of `channel`, if any.
    pub fn queue(&self, channel: Channel) -> Option<&otp_redis::QueueConfig> {
        match channel {
            Channel::Sms => self.sms.queue.as_ref(),
            Channel::Call => self.call.queue.as_ref(),
            Channel::Email => self.email.queue.as_ref(),
            Channel::Telegram => self.telegram.queue.as_ref(),
        }
    }

    /// The retry policy of every channel.
    pub fn retry_policy(&self) -> crate::delivery::RetryPolicy {
        let d = &self.delivery;
        crate::delivery::RetryPolicy {
            attempts: d.attempts.max(1),
            base_delay: std::time::Duration::from_millis(d.base_delay_ms),
            max_delay: std::time::Duration::from_millis(d.max_delay_ms),
            deadline: std::time::Duration::from_secs(d.deadline_secs),
        }
    }

    fn region(&self) -> Result<Option<Region>, ConfigError> {
        let code = self.otp.default_region.trim();
        if code.is_empty() {
            return Ok(None);
        }
        Region::parse(code)
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                key: "otp.default_region",
                message: format!("{code:?} is not an ISO 3166 region code"),
            })
    }

    fn test_destinations(
        &self,
        region: Option<Region>,
    ) -> Result<HashMap<String, Code>, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            key: "security.test_destinations",
            message,
        };
        self.security
            .test_destinations
            .iter()
            .map(|t| {
                let destination = Destination::parse_in(t.channel.into(), &t.to, region)
                    .map_err(|e| invalid(format!("{}: {e}", t.to)))?;
                let code = Code::parse(&t.code).map_err(|e| invalid(format!("{}: {e}", t.to)))?;
                Ok((destination.key(), code))
            })
            .collect()
    }

    /// Whether Basic auth is on.
    pub fn auth_enabled(&self) -> bool {
        !self.auth.username.is_empty()
    }

    /// The domain policy this config describes.
    ///
    /// # Errors
    /// A bad region or test destination, naming the key.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let t = &self.templates;
        let l = &self.limits;
        let region = self.region()?;
        Ok(Policy {
            lifetime_default: self.otp.lifetime_default,
            lifetime_min: self.otp.lifetime_min,
            lifetime_max: self.otp.lifetime_max,
            code_length: self.otp.code_length,
            max_attempts: self.otp.max_attempts,
            cooldown_secs: self.limits.cooldown_secs,
            sends_per_window: self.limits.sends_per_window,
            send_window_secs: self.limits.send_window_secs,
            user_sends_per_window: l.user_sends_per_window,
            user_send_window_secs: l.user_send_window_secs,
            channel_budget: ChannelBudget {
                sms: l.sms_per_hour,
                call: l.call_per_hour,
                email: l.email_per_hour,
                telegram: l.telegram_per_hour,
            },
            target_failures_per_window: l.target_failures_per_window,
            target_failure_window_secs: l.target_failure_window_secs,
            default_region: region,
            sms_countries: self.sms.countries(),
            call_countries: self.call.countries(),
            test_destinations: self.test_destinations(region)?,
            pairing_lifetime: Lifetime::parse(
                i64::from(self.telegram.pairing_lifetime),
                1,
                u32::MAX,
            )
            .map_err(|_| ConfigError::Invalid {
                key: "telegram.pairing_lifetime",
                message: "must be at least 1".into(),
            })?,
            templates: Templates {
                sms: t.sms.clone(),
                call: t.call.clone(),
                email_subject: t.email_subject.clone(),
                email_text: t.email_text.clone(),
                telegram: t.telegram.clone(),
                pairing: t.pairing.clone(),
            },
        })
    }
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(jail: &mut Jail) -> Result<Config, ConfigError> {
        let _ = jail;
        Config::load(None)
    }

    #[test]
    fn defaults_load_and_are_the_documented_ones() {
        Jail::expect_with(|jail| {
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(c.store.kind, StoreKind::Embedded);
            assert_eq!(c.store.path, PathBuf::from("data/otpd.redb"));
            assert!(!c.auth_enabled());
            assert_eq!(c.otp.max_attempts, 5);
            assert_eq!(c.sms.provider, vec![ProviderKind::Log]);
            Ok(())
        });
    }

    #[test]
    fn seed_env_secrets_stay_strings_with_leading_zeros() {
        Jail::expect_with(|jail| {
            jail.set_env("HTTP_AUTH_USERNAME", "0042");
            jail.set_env("HTTP_AUTH_PASSWORD", "0123");
            jail.set_env("TELEGRAM_WEBHOOK_SECRET", "+4912345678");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert!(c.auth_enabled());
            assert_eq!(c.auth.username, "0042");
            assert_eq!(c.auth.password.expose_secret(), "0123");
            assert_eq!(c.telegram.webhook_secret.expose_secret(), "+4912345678");
            Ok(())
        });
    }

    #[test]
    fn otp_env_vars_split_on_double_underscore_and_keep_strings() {
        Jail::expect_with(|jail| {
            jail.set_env("OTP_SERVER__LISTEN", "0.0.0.0:9000");
            jail.set_env("OTP_STORE__PATH", "/tmp/x.redb");
            jail.set_env("OTP_OTP__MAX_ATTEMPTS", "3");
            jail.set_env("OTP_AUTH__USERNAME", "007");
            jail.set_env("OTP_AUTH__PASSWORD", "0123");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert_eq!(c.server.listen.to_string(), "0.0.0.0:9000");
            assert_eq!(c.store.path, PathBuf::from("/tmp/x.redb"));
            assert_eq!(c.otp.max_attempts, 3);
            assert_eq!(c.auth.username, "007");
            assert_eq!(c.auth.password.expose_secret(), "0123");
            Ok(())
        });
    }

    #[test]
    fn file_layer_overrides_defaults_and_env_overrides_file() {
        Jail::expect_with(|jail| {
            jail.create_file("otpd.toml", "[otp]\nmax_attempts = 7\ncode_length = 8\n")?;
            jail.set_env("OTP_OTP__CODE_LENGTH", "4");
            let c = Config::load(Some(Path::new("otpd.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.otp.max_attempts, 7);
            assert_eq!(c.otp.code_length, 4);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("OTP_REDIS_URL", "redis://x");
            let err = load_in_jail(jail).map(|_| ()).expect_err("unknown key");
            assert!(err.to_string().contains("redis_url"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("OTP_OTP__MAX_ATTEMPTS", "many");
            let err = load_in_jail(jail).map(|_| ()).expect_err("bad value");
            assert!(err.to_string().contains("max_attempts"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("OTP_SERVER__LISTEN", "not-an-address");
            let err = load_in_jail(jail).map(|_| ()).expect_err("bad value");
            assert!(err.to_string().contains("listen"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn half_configured_auth_is_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("HTTP_AUTH_USERNAME", "admin");
            let err = load_in_jail(jail).map(|_| ()).expect_err("half auth");
            assert!(err.to_string().contains("auth"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_template_without_password_is_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("OTP_TEMPLATES__SMS", "Hello");
            let err = load_in_jail(jail).map(|_| ()).expect_err("bad template");
            assert!(
                err.to_string().contains("templates.sms")
                    && err.to_string().contains("must contain {password}"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn country_rules_region_and_test_destinations_reach_the_policy() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "otpd.toml",
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
            )?;
            let c = Config::load(Some(Path::new("otpd.toml"))).map_err(|e| e.to_string())?;
            let p = c.policy().map_err(|e| e.to_string())?;
            assert!(p.sms_countries.permits(49) && !p.sms_countries.permits(7));
            assert!(!p.call_countries.permits(7) && p.call_countries.permits(1));
            assert!(p.test_destinations.contains_key("sms:+49301234567"));
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("OTP_OTP__DEFAULT_REGION", "XX");
            let err = load_in_jail(jail).map(|_| ()).expect_err("bad region");
            assert!(err.to_string().contains("otp.default_region"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn redis_needs_a_secret_and_cluster_nodes_come_from_a_comma_list() {
        Jail::expect_with(|jail| {
            jail.set_env("OTP_STORE__KIND", "redis");
            let err = load_in_jail(jail).map(|_| ()).expect_err("no secret");
            assert!(err.to_string().contains("security.secret"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("OTP_STORE__KIND", "redis-cluster");
            jail.set_env("OTP_SECURITY__SECRET", "0123456789abcdef0123");
            jail.set_env(
                "OTP_STORE__NODES",
                "redis://127.0.0.1:7000, redis://127.0.0.1:7001",
            );
            jail.set_env("OTP_STORE__URL", "redis://user:0123@db:6379");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert_eq!(c.store.kind, StoreKind::RedisCluster);
            assert_eq!(
                c.store.nodes,
                vec!["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
            );
            assert_eq!(c.store.url, "redis://user:0123@db:6379");
            Ok(())
        });
    }

    #[test]
    fn providers_are_checked_at_start_naming_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("OTP_SMS__PROVIDER", "twilio,http");
            let err = load_in_jail(jail)
                .map(|_| ())
                .expect_err("no twilio section");
            assert!(
                err.to_string().contains("sms.provider")
                    && err.to_string().contains("[sms.twilio]"),
                "{err}"
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("OTP_SMS__PROVIDER", "twilio");
            jail.set_env("OTP_SMS__TWILIO__ACCOUNT_SID", "AC123");
            jail.set_env("OTP_SMS__TWILIO__AUTH_TOKEN", "0123");
            let err = load_in_jail(jail).map(|_| ()).expect_err("no from");
            assert!(err.to_string().contains("sms.twilio.from"), "{err}");
            jail.set_env("OTP_SMS__TWILIO__FROM", "+14155552671");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert_eq!(c.sms.provider, vec![ProviderKind::Twilio]);
            let twilio = c.sms.twilio.as_ref().expect("twilio");
            assert_eq!(twilio.from.as_deref(), Some("+14155552671"));
            assert_eq!(twilio.auth_token.expose_secret(), "0123");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("OTP_EMAIL__PROVIDER", "twilio");
            let err = load_in_jail(jail).map(|_| ()).expect_err("wrong channel");
            assert!(
                err.to_string().contains("twilio cannot deliver email"),
                "{err}"
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("OTP_EMAIL__PROVIDER", "smtp");
            jail.create_file(
                "otpd.toml",
                "[email.smtp]\nhost = \"localhost\"\nfrom = \"\"\n",
            )?;
            let err = Config::load(Some(Path::new("otpd.toml")))
                .map(|_| ())
                .expect_err("no from");
            assert!(err.to_string().contains("email.smtp.from"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_bot_needs_a_webhook_secret() {
        Jail::expect_with(|jail| {
            jail.set_env("TELEGRAM_BOT_TOKEN", "123456:ABC-DEF1234ghIkl");
            jail.set_env("OTP_TELEGRAM__PROVIDER", "telegram");
            let err = load_in_jail(jail).map(|_| ()).expect_err("no secret");
            assert!(err.to_string().contains("telegram.webhook_secret"), "{err}");
            jail.set_env("TELEGRAM_WEBHOOK_SECRET", "s3cret");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert!(c.telegram.bot().is_some());
            Ok(())
        });
        Jail::expect_with(|jail| {
            // Any delivering provider, not only the Bot API.
            jail.set_env("OTP_TELEGRAM__PROVIDER", "notify");
            jail.set_env("OTP_TELEGRAM__NOTIFY__URL", "http://127.0.0.1:9/msg");
            let err = load_in_jail(jail).map(|_| ()).expect_err("no secret");
            assert!(err.to_string().contains("telegram.webhook_secret"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn every_example_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("config/examples") {
            let path = entry.expect("entry").path();
            Jail::expect_with(|jail| {
                // The secrets the examples leave to the environment.
                jail.set_env("TELEGRAM_BOT_TOKEN", "123456:ABC-DEF1234ghIkl");
                jail.set_env("TELEGRAM_WEBHOOK_SECRET", "example-secret");
                jail.set_env("OTP_SECURITY__SECRET", "0123456789abcdef0123456789abcdef");
                Config::load(Some(&path))
                    .map(|_| ())
                    .map_err(|e| format!("{}: {e}", path.display()).into())
            });
            seen += 1;
        }
        assert!(seen >= 6, "only {seen} examples");
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/otpd.toml"))).map(|_| ());
        assert!(matches!(err, Err(ConfigError::MissingFile(_))));
    }
}
