//! The keys as written: the serde structs that the layered config is
//! extracted into. Every struct denies unknown fields, so a typo fails
//! at start. Which providers a channel accepts is a type here
//! ([`PhoneProviderName`], …), so `email.provider = "twilio"` fails at
//! extraction, naming the key. See `providers` for what a name resolves
//! to.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use otp_domain::Channel;
use secrecy::SecretString;
use serde::de::value::StrDeserializer;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// The whole file, after layering.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub security: SecurityConfig,
    pub otp: OtpConfig,
    pub limits: LimitsConfig,
    pub templates: TemplatesConfig,
    pub sms: PhoneChannelConfig,
    pub call: PhoneChannelConfig,
    pub email: EmailChannelConfig,
    pub telegram: TelegramChannelConfig,
    pub whatsapp: WhatsAppChannelConfig,
    pub delivery: DeliveryConfig,
    pub dev: DevConfig,
    pub verifications: VerificationsConfig,
    pub events: super::events::EventsConfig,
    pub fraud: FraudConfig,
    pub console: ConsoleConfig,
    pub twilio_api: TwilioApiConfig,
}

/// The Twilio Verify compatible API (`/v2`): on when both
/// `account_sid` and `auth_token` are set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioApiConfig {
    /// `AC` and 32 hex digits: the user of the API's Basic auth.
    pub account_sid: String,
    /// The password of its Basic auth.
    pub auth_token: SecretString,
    /// The URL clients reach otpd at, for the resources' `url` and the
    /// paging links (`https://otp.example.com`); empty: `http://` and the
    /// request's `Host`.
    pub public_url: String,
}

impl TwilioApiConfig {
    /// Whether the API is on.
    pub fn enabled(&self) -> bool {
        use secrecy::ExposeSecret;
        !self.account_sid.is_empty() && !self.auth_token.expose_secret().is_empty()
    }
}

/// The operator console (`/console`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    pub enabled: bool,
}

/// The fraud guard (`[fraud]`): SMS pumping recognised by conversion per
/// number prefix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudConfig {
    pub mode: otp_domain::fraud::FraudMode,
    pub prefix_digits: usize,
    pub window_secs: u64,
    pub min_sends: u32,
    pub min_conversion: f64,
    pub block_secs: u64,
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub never_block: Vec<String>,
}

/// The records every send creates (`/verifications`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationsConfig {
    /// How long a verification is kept after it ends, in seconds.
    pub retention_secs: u64,
}

/// The development tools that exist only while a channel uses the `log`
/// dev sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevConfig {
    /// Messages the dev outbox (`/outbox`) keeps.
    pub outbox_size: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub body_limit: usize,
    pub shutdown_timeout_secs: u64,
    /// Seconds a connection has to send a request's headers.
    pub header_timeout_secs: u64,
    /// Seconds a keep-alive connection may wait for its next request.
    pub idle_timeout_secs: u64,
    /// Most open connections; 0 derives it from the open-file limit.
    pub max_connections: usize,
}

/// How log lines are written (see `otp_telemetry::logging`).
pub use otp_telemetry::logging::{LogConfig, LogFormat};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// The scrape listener; `None` (an empty string) turns metrics off.
    #[serde(deserialize_with = "optional_addr")]
    pub listen: Option<SocketAddr>,
}

/// An address, or an empty string for none.
fn optional_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        D::Error::custom(format!(
            "{s:?} is not an address like 127.0.0.1:9464 (or \"\" for off)"
        ))
    })
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
    /// The embedded store's page cache, in MiB.
    pub cache_size_mb: usize,
}

impl StoreConfig {
    /// The embedded store's settings.
    pub fn embedded(&self) -> otp_store_embedded::EmbeddedOptions {
        otp_store_embedded::EmbeddedOptions {
            cache_size_bytes: self.cache_size_mb.saturating_mul(1024 * 1024),
            record_events: true,
        }
    }

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
fn list_or_comma_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
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
    pub trusted_proxies: Vec<IpAddr>,
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
    pub whatsapp_per_hour: u32,
}

/// `[templates]`: the English texts (the top-level keys), the default
/// locale, the region map's overrides and each locale's overrides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    pub sms: String,
    pub call: String,
    pub email_subject: String,
    pub email_text: String,
    pub telegram: String,
    pub pairing: String,
    /// The locale of a send that names none and whose country maps to
    /// none (and of every email and Telegram send without one).
    pub default_locale: String,
    /// ISO region → locale, over the built-in map (`KZ = "kk"`).
    #[serde(default)]
    pub country_locales: std::collections::BTreeMap<String, String>,
    /// A locale's texts, over its built-in ones, or a locale of its own.
    #[serde(default)]
    pub locales: std::collections::BTreeMap<String, LocaleConfig>,
}

/// `[templates.locales.<tag>]`: any of a locale's texts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocaleConfig {
    pub sms: Option<String>,
    pub call: Option<String>,
    pub email_subject: Option<String>,
    pub email_text: Option<String>,
    pub telegram: Option<String>,
    pub pairing: Option<String>,
    /// The language's own name, for `GET /locales`.
    pub name: Option<String>,
    /// The text-to-speech language of a voice call (`de-DE`).
    pub voice: Option<String>,
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

/// The providers that can deliver SMS and voice calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhoneProviderName {
    /// Development sink: prints messages to stdout.
    Log,
    /// A templated HTTP gateway (`[sms.http]`, `[call.http]`).
    Http,
    /// Twilio Messages / Calls API (`[sms.twilio]`, `[call.twilio]`).
    Twilio,
    /// A JSON job on a Redis Stream (`[sms.queue]`, `[call.queue]`).
    Queue,
}

/// The providers that can deliver WhatsApp messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhatsAppProviderName {
    /// Development sink: the dev outbox.
    Log,
    /// The WhatsApp Cloud API (`[whatsapp.meta]`).
    Meta,
    /// Twilio's Messages API with `whatsapp:` addresses
    /// (`[whatsapp.twilio]`, with `content_sid`).
    Twilio,
    /// `[whatsapp.queue]`.
    Queue,
}

/// The providers that can deliver email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailProviderName {
    Log,
    /// SMTP (`[email.smtp]`).
    Smtp,
    /// `[email.queue]`.
    Queue,
}

/// The providers that can deliver Telegram messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramProviderName {
    Log,
    /// The Telegram Bot API (`telegram.bot_token`).
    Telegram,
    /// An http-telegram-notify relay (`[telegram.notify]`).
    Notify,
    /// `[telegram.queue]`.
    Queue,
}

/// One provider (`"twilio"`) or several in fallback order
/// (`["twilio", "http"]`, or `twilio,http` from the environment). Each
/// name must be a `K`, so a provider that cannot serve the channel fails
/// here with serde's "unknown variant", at the channel's `provider` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderList<K>(pub Vec<K>);

impl<'de, K: Deserialize<'de>> Deserialize<'de> for ProviderList<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = list_or_comma_separated(d)?;
        if names.is_empty() {
            return Err(D::Error::custom("name at least one provider"));
        }
        names
            .iter()
            .map(|n| K::deserialize(StrDeserializer::<D::Error>::new(n)))
            .collect::<Result<_, _>>()
            .map(ProviderList)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneChannelConfig {
    pub provider: ProviderList<PhoneProviderName>,
    pub allow_countries: Vec<u16>,
    pub deny_countries: Vec<u16>,
    pub http: Option<otp_gateway::HttpGatewayConfig>,
    pub twilio: Option<otp_gateway::TwilioConfig>,
    pub queue: Option<otp_redis::QueueConfig>,
}

/// What happens when WhatsApp cannot deliver a code (`whatsapp.fallback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum WhatsAppFallback {
    /// Nothing: the send fails (502), as on any channel.
    #[serde(rename = "")]
    Off,
    /// The same code by SMS, under the SMS channel's rules.
    #[serde(rename = "sms")]
    Sms,
}

/// `[whatsapp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppChannelConfig {
    pub provider: ProviderList<WhatsAppProviderName>,
    pub fallback: WhatsAppFallback,
    pub allow_countries: Vec<u16>,
    pub deny_countries: Vec<u16>,
    pub meta: Option<otp_gateway::MetaConfig>,
    pub twilio: Option<otp_gateway::TwilioConfig>,
    pub queue: Option<otp_redis::QueueConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannelConfig {
    pub provider: ProviderList<EmailProviderName>,
    pub smtp: Option<otp_smtp::SmtpConfig>,
    pub queue: Option<otp_redis::QueueConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramChannelConfig {
    pub provider: ProviderList<TelegramProviderName>,
    pub webhook_secret: SecretString,
    pub pairing_lifetime: u32,
    pub bot_token: SecretString,
    pub api_url: String,
    pub timeout_secs: u64,
    pub notify: Option<otp_telegram::HttpNotifyConfig>,
    pub queue: Option<otp_redis::QueueConfig>,
}
