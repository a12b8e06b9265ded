//! Configuration: layered with figment, extracted once into the keys as
//! written, then resolved once into what the rest of the server uses: the
//! typed providers of each channel and the domain [`Policy`]. Nothing
//! after [`Config::load`] checks a setting again.
//!
//! Every problem is a [`KeyError`] that names the full key
//! (`sms.twilio.auth_token is required`, `otp.lifetime_min must be at most
//! otp.lifetime_max`).
//!
//! The keys are the contract deployments rely on, so they live in a crate
//! of their own: it knows the domain and the adapters' settings types and
//! nothing above them (the server re-exports it as `otp_server::config`).
//!
//! # Layout
//! - [`schema`]: the serde structs, one per section; unknown keys and
//!   providers a channel cannot use fail here.
//! - `loading`: the figment layers (defaults, file, `OTP_*`, the seed's
//!   plain env vars), and figment errors as [`KeyError`]s.
//! - [`providers`]: the typed provider model per channel kind and its
//!   resolution from the provider lists and their sections.
//! - `policy`: the domain [`Policy`] from `[otp]`, `[limits]`,
//!   `[templates]` and more, with its errors told in config keys.
//! - `locales`: the built-in locales (`locales/*.toml`, compiled in) and
//!   the region map, with `[templates]`' overrides over them.
//! - [`events`]: `[events]` and its `[[events.sinks]]`, checked into
//!   [`EventSettings`].

pub mod events;
mod loading;
mod locales;
mod policy;
pub mod providers;
pub mod schema;

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use otp_domain::{FieldProblem, ParseError, Policy};
use secrecy::ExposeSecret;

pub use events::{EventSettings, SinkSettings, SinkTarget};
pub use loading::DEFAULT_TOML;
pub use providers::{
    EmailProvider, PhoneProvider, Providers, TelegramProvider, TelegramSettings, WhatsAppProvider,
};
pub use schema::{
    AuthConfig, DeliveryConfig, DevConfig, LogConfig, LogFormat, MetricsConfig, SecurityConfig,
    ServerConfig, StoreConfig, StoreKind,
};

use schema::ConfigFile;

/// A loaded configuration, checked and resolved.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub security: SecurityConfig,
    pub delivery: DeliveryConfig,
    pub dev: DevConfig,
    /// The webhook secret and the bot's settings.
    pub telegram: TelegramSettings,
    /// Each channel's providers, in fallback order.
    pub providers: Providers,
    /// The domain rules.
    pub policy: Policy,
    /// Where verification events go.
    pub events: EventSettings,
    /// The fraud guard's rules.
    pub fraud: otp_domain::fraud::FraudPolicy,
    pub console: schema::ConsoleConfig,
    /// The Twilio Verify compatible API.
    pub twilio_api: schema::TwilioApiConfig,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// The key error is this error's message, not its cause, so a
    /// printed chain says it once.
    #[error("invalid config: {0}")]
    Invalid(Box<KeyError>),
}

impl From<KeyError> for ConfigError {
    fn from(e: KeyError) -> Self {
        ConfigError::Invalid(Box::new(e))
    }
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        KeyError::from(e).into()
    }
}

/// One bad key: which (in full, `sms.twilio.auth_token`), and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError {
    pub key: String,
    pub problem: Problem,
    /// How to fix it, when the problem does not say.
    pub hint: Option<&'static str>,
    /// Where the value came from (a file, an env var), when known.
    pub origin: Option<String>,
}

impl KeyError {
    pub fn new(key: impl Into<String>, problem: Problem) -> Self {
        KeyError {
            key: key.into(),
            problem,
            hint: None,
            origin: None,
        }
    }

    fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }
}

impl std::error::Error for KeyError {}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.problem)?;
        if let Some(hint) = self.hint {
            write!(f, "; {hint}")?;
        }
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

/// What is wrong with a key. Each reads as the rest of a sentence that
/// starts with the key.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// Unset or empty, but needed.
    Required,
    /// Needed because of another key, which the text names.
    RequiredWhen(String),
    /// Not a key otpd knows (often a typo, or `_` for `__` in an env var).
    Unknown,
    /// The value does not fit the key's type, in figment's words.
    Value(figment::error::Kind),
    /// The value of a secret key does not fit its type; figment's words
    /// would quote the secret, so only the expected type is said.
    SecretValue,
    /// A provider named on a channel that it cannot serve.
    CannotDeliver {
        provider: String,
        channel: String,
        accepted: &'static [&'static str],
    },
    /// A provider's section is missing: every key it must set, in full.
    MissingSection {
        section: String,
        by: String,
        provider: &'static str,
        keys: Vec<String>,
    },
    /// A rule of the domain policy; other settings are named by their
    /// config keys.
    Policy(otp_domain::policy::Problem),
    /// An adapter's check of its own settings.
    Field(FieldProblem),
    /// A value that the domain does not accept.
    Parse(ParseError),
    /// Must be at least this number.
    AtLeast(u64),
    /// Any other rule, as the rest of "must …".
    Must(&'static str),
    /// A locale that cannot be served.
    Locales(otp_domain::LocalesError),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Required => f.write_str("is required"),
            Problem::RequiredWhen(when) => write!(f, "is required when {when}"),
            Problem::Unknown => f.write_str("is not a known key"),
            Problem::Value(kind) => write!(f, "has a bad value: {kind}"),
            Problem::SecretValue => {
                f.write_str("has a bad value (not shown: it is a secret); expected a string")
            }
            Problem::CannotDeliver {
                provider,
                channel,
                accepted,
            } => write!(
                f,
                "names {provider}, but {provider} cannot deliver {channel}; use {}",
                accepted.join(", ")
            ),
            Problem::MissingSection {
                section,
                by,
                provider,
                keys,
            } => write!(
                f,
                "is missing: {by} names {provider}, which needs [{section}] with {}",
                keys.join(", ")
            ),
            Problem::Policy(p) => f.write_str(&p.describe(|s| policy::key(s).to_owned())),
            Problem::Field(p) => p.fmt(f),
            Problem::Parse(e) => write!(f, "is not accepted: {e}"),
            Problem::AtLeast(min) => write!(f, "must be at least {min}"),
            Problem::Must(rule) => write!(f, "must {rule}"),
            Problem::Locales(e) => write!(f, "is not accepted: {e}"),
        }
    }
}

impl Config {
    /// Loads every layer from the process environment.
    ///
    /// # Errors
    /// A missing file, or the first bad key.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(Self::figment(file)?)
    }

    /// The layered figment, before extraction.
    ///
    /// # Errors
    /// A config file that does not exist.
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        loading::figment(file)
    }

    /// Extracts, checks and resolves.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let file: ConfigFile = fig.extract_lossy()?;
        Self::resolve(file)
    }

    fn resolve(file: ConfigFile) -> Result<Config, ConfigError> {
        check_server(&file)?;
        let (providers, telegram) = providers::resolve(&file)?;
        let policy = policy::policy(&file)?;
        let events = events::resolve(&file.events)?;
        let fraud = policy::fraud(&file)?;
        Ok(Config {
            fraud,
            console: file.console,
            twilio_api: file.twilio_api,
            server: file.server,
            log: file.log,
            metrics: file.metrics,
            store: file.store,
            auth: file.auth,
            security: file.security,
            delivery: file.delivery,
            dev: file.dev,
            telegram,
            providers,
            policy,
            events,
        })
    }

    /// Whether Basic auth is on.
    pub fn auth_enabled(&self) -> bool {
        !self.auth.username.is_empty()
    }

    /// The retry policy of every channel.
    pub fn retry_policy(&self) -> otp_delivery::RetryPolicy {
        let d = &self.delivery;
        otp_delivery::RetryPolicy {
            attempts: d.attempts.max(1),
            base_delay: std::time::Duration::from_millis(d.base_delay_ms),
            max_delay: std::time::Duration::from_millis(d.max_delay_ms),
            deadline: std::time::Duration::from_secs(d.deadline_secs),
        }
    }
}

/// A level, or a directive list with targets (`info,otpd::http=warn`). A
/// lone word must be a level: `EnvFilter` would read `loud` as a target
/// and silence everything else.
fn log_level_ok(level: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let level = level.trim();
    if level.contains([',', '=']) {
        tracing_subscriber::EnvFilter::try_new(level).is_ok()
    } else {
        LEVELS.contains(&level.to_ascii_lowercase().as_str())
    }
}

/// Both keys or neither, and a sid the SDKs would send.
fn check_twilio_api(t: &schema::TwilioApiConfig) -> Result<(), ConfigError> {
    let sid_set = !t.account_sid.is_empty();
    let token_set = !t.auth_token.expose_secret().is_empty();
    if sid_set != token_set {
        let (missing, other) = if sid_set {
            ("twilio_api.auth_token", "twilio_api.account_sid")
        } else {
            ("twilio_api.account_sid", "twilio_api.auth_token")
        };
        return Err(KeyError::new(missing, Problem::RequiredWhen(format!("{other} is set")))
            .hint("set both (OTP_TWILIO_API__ACCOUNT_SID, OTP_TWILIO_API__AUTH_TOKEN), or neither")
            .into());
    }
    let hex = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if sid_set && !t.account_sid.strip_prefix("AC").is_some_and(hex) {
        return Err(KeyError::new(
            "twilio_api.account_sid",
            Problem::Must("be AC and 32 hex digits, as a Twilio account sid"),
        )
        .into());
    }
    let url = &t.public_url;
    if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
        return Err(KeyError::new(
            "twilio_api.public_url",
            Problem::Must("be an http:// or https:// URL, or empty"),
        )
        .into());
    }
    Ok(())
}

/// The rules across the server's own keys: auth, store, body limit.
fn check_server(file: &ConfigFile) -> Result<(), ConfigError> {
    // The store keeps a record at least until its expiry event is written
    // (the sweeper runs every second; instances' clocks differ a little).
    if file.verifications.retention_secs < 60 {
        return Err(KeyError::new("verifications.retention_secs", Problem::AtLeast(60)).into());
    }
    // A send under an Idempotency-Key holds the key for 60 s: a delivery
    // must end well within that, or a retry could send a second code.
    if file.delivery.deadline_secs > 45 {
        return Err(KeyError::new(
            "delivery.deadline_secs",
            Problem::Must("be at most 45 (an Idempotency-Key holds its request for 60 s)"),
        )
        .into());
    }
    let user_set = !file.auth.username.is_empty();
    let pass_set = !file.auth.password.expose_secret().is_empty();
    if user_set != pass_set {
        let (missing, other) = if user_set {
            ("auth.password", "auth.username")
        } else {
            ("auth.username", "auth.password")
        };
        return Err(KeyError::new(
            missing,
            Problem::RequiredWhen(format!("{other} is set")),
        )
        .hint("set both auth.username and auth.password (HTTP_AUTH_USERNAME, HTTP_AUTH_PASSWORD), or neither").into());
    }
    if file.auth.username.contains(':') {
        // Basic auth splits user and password at the first colon
        // (RFC 7617): such a name could never be told apart.
        return Err(KeyError::new(
            "auth.username",
            Problem::Must("not contain `:` (Basic auth splits user and password there)"),
        )
        .into());
    }
    check_twilio_api(&file.twilio_api)?;
    match file.store.kind {
        StoreKind::Embedded => {}
        StoreKind::Redis | StoreKind::RedisCluster => {
            if file.security.secret.expose_secret().is_empty() {
                return Err(KeyError::new(
                    "security.secret",
                    Problem::RequiredWhen("store.kind is a Redis store".into()),
                )
                .hint("the same on every otpd instance (OTP_SECURITY__SECRET; e.g. `openssl rand -hex 32`)").into());
            }
            if file.store.kind == StoreKind::RedisCluster && file.store.nodes.is_empty() {
                return Err(KeyError::new(
                    "store.nodes",
                    Problem::RequiredWhen("store.kind is \"redis-cluster\"".into()),
                )
                .hint("list at least one seed node")
                .into());
            }
            if file.store.key_prefix.contains(['{', '}']) {
                return Err(
                    KeyError::new("store.key_prefix", Problem::Must("not contain { or }")).into(),
                );
            }
        }
    }
    if !log_level_ok(&file.log.level) {
        return Err(KeyError::new(
            "log.level",
            Problem::Must(
                "be error, warn, info, debug or trace, or a filter like info,otpd::http=warn",
            ),
        )
        .into());
    }
    if let (Some(metrics), listen) = (file.metrics.listen, file.server.listen) {
        if metrics == listen && listen.port() != 0 {
            return Err(KeyError::new(
                "metrics.listen",
                Problem::Must("differ from server.listen: metrics have a listener of their own"),
            )
            .into());
        }
    }
    if file.server.body_limit < 256 {
        return Err(KeyError::new("server.body_limit", Problem::AtLeast(256))
            .hint("a size in bytes")
            .into());
    }
    for (key, secs) in [
        (
            "server.header_timeout_secs",
            file.server.header_timeout_secs,
        ),
        ("server.idle_timeout_secs", file.server.idle_timeout_secs),
    ] {
        if secs == 0 {
            return Err(KeyError::new(key, Problem::AtLeast(1))
                .hint(
                    "seconds; without it, clients that stop sending hold their connection forever",
                )
                .into());
        }
    }
    if file.store.cache_size_mb == 0 {
        return Err(KeyError::new("store.cache_size_mb", Problem::AtLeast(1))
            .hint("MiB of redb page cache")
            .into());
    }
    Ok(())
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; fine in tests.
#[allow(clippy::result_large_err)]
pub(crate) mod tests {
    use super::*;
    use figment::Jail;

    /// Loads the config inside a figment `Jail` (its env and files only).
    pub(super) fn load_in_jail(jail: &mut Jail) -> Result<Config, ConfigError> {
        let _ = jail;
        Config::load(None)
    }

    /// Loads the defaults, `env` and, unless empty, `toml` as the
    /// `--config` file, inside a fresh `Jail` (so no other test's env or
    /// files leak in).
    fn load_with(env: &[(&str, &str)], toml: &str) -> Result<Config, ConfigError> {
        let mut loaded = None;
        Jail::expect_with(|jail| {
            for (var, value) in env {
                jail.set_env(var, value);
            }
            let file = if toml.is_empty() {
                None
            } else {
                jail.create_file("otpd.toml", toml)?;
                Some(Path::new("otpd.toml"))
            };
            loaded = Some(Config::load(file));
            Ok(())
        });
        loaded.expect("the jail ran the load")
    }

    /// The config `load_with` loads, which must load.
    pub(super) fn load_ok(env: &[(&str, &str)], toml: &str) -> Config {
        load_with(env, toml).unwrap_or_else(|e| panic!("{env:?} {toml}: {e}"))
    }

    /// The error text of a config `load_with` loads, which must not load.
    pub(super) fn load_error(env: &[(&str, &str)], toml: &str) -> String {
        match load_with(env, toml) {
            Ok(_) => panic!("loads, but must not: {env:?} {toml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_load_and_are_the_documented_ones() {
        let c = load_ok(&[], "");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.store.kind, StoreKind::Embedded);
        assert_eq!(c.store.path, PathBuf::from("data/otpd.redb"));
        assert!(!c.auth_enabled());
        assert_eq!(c.policy.max_attempts, 5);
        assert!(matches!(c.providers.sms[..], [PhoneProvider::Log]));
    }

    #[test]
    fn logs_are_text_at_info_and_metrics_listen_on_loopback_by_default() {
        let c = load_ok(&[], "");
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.log.level, "info");
        assert_eq!(
            c.metrics.listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9464")
        );
    }

    #[test]
    fn an_empty_metrics_listen_turns_metrics_off_and_json_logs_load() {
        let c = load_ok(
            &[
                ("OTP_METRICS__LISTEN", ""),
                ("OTP_LOG__FORMAT", "json"),
                ("OTP_LOG__LEVEL", "warn,otpd::http=info"),
            ],
            "",
        );
        assert_eq!(c.metrics.listen, None);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "warn,otpd::http=info");
    }

    #[test]
    fn bad_log_and_metrics_settings_name_their_key() {
        for (var, value, expected) in [
            ("OTP_LOG__FORMAT", "yaml", "log.format"),
            ("OTP_LOG__LEVEL", "loud", "log.level must be error, warn"),
            ("OTP_METRICS__LISTEN", "9464", "metrics.listen"),
            (
                "OTP_METRICS__LISTEN",
                "127.0.0.1:8080",
                "metrics.listen must differ from server.listen",
            ),
        ] {
            let err = load_error(&[(var, value)], "");
            assert!(err.contains(expected), "{var}={value}: {err}");
        }
    }

    #[test]
    fn half_configured_auth_is_refused() {
        let err = load_error(&[("HTTP_AUTH_USERNAME", "admin")], "");
        assert!(err.contains("auth"), "{err}");
        assert!(
            err.contains("auth.password is required when auth.username is set"),
            "{err}"
        );
    }

    #[test]
    fn a_user_name_with_a_colon_is_refused() {
        let err = load_error(
            &[
                ("HTTP_AUTH_USERNAME", "ad:min"),
                ("HTTP_AUTH_PASSWORD", "secret"),
            ],
            "",
        );
        assert!(err.contains("auth.username must not contain `:`"), "{err}");
        // The same pair without the colon loads.
        load_ok(
            &[
                ("HTTP_AUTH_USERNAME", "admin"),
                ("HTTP_AUTH_PASSWORD", "secret"),
            ],
            "",
        );
    }

    #[test]
    fn redis_needs_a_secret_and_cluster_nodes_come_from_a_comma_list() {
        let err = load_error(&[("OTP_STORE__KIND", "redis")], "");
        assert!(err.contains("security.secret"), "{err}");
        let c = load_ok(
            &[
                ("OTP_STORE__KIND", "redis-cluster"),
                ("OTP_SECURITY__SECRET", "0123456789abcdef0123"),
                (
                    "OTP_STORE__NODES",
                    "redis://127.0.0.1:7000, redis://127.0.0.1:7001",
                ),
                ("OTP_STORE__URL", "redis://user:0123@db:6379"),
            ],
            "",
        );
        assert_eq!(c.store.kind, StoreKind::RedisCluster);
        assert_eq!(
            c.store.nodes,
            vec!["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert_eq!(c.store.url, "redis://user:0123@db:6379");
    }

    #[test]
    fn server_rules_name_the_key() {
        for (var, value, expected) in [
            (
                "OTP_SERVER__BODY_LIMIT",
                "100",
                "server.body_limit must be at least 256",
            ),
            (
                "OTP_STORE__KEY_PREFIX",
                "otp{d}",
                "store.key_prefix must not contain { or }",
            ),
        ] {
            let err = load_error(
                &[
                    ("OTP_STORE__KIND", "redis"),
                    ("OTP_SECURITY__SECRET", "0123456789abcdef0123"),
                    (var, value),
                ],
                "",
            );
            assert!(err.contains(expected), "{err}");
        }
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
}
