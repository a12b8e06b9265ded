//! The figment layers, in order:
//! 1. the built-in defaults (`config/default.toml`, compiled in);
//! 2. the file given by `--config` or `OTP_CONFIG`;
//! 3. `OTP_` env vars, split on `__` (`OTP_SERVER__LISTEN`);
//! 4. the seed image's plain env vars (`HTTP_AUTH_USERNAME`, …).
//!
//! String values from the environment are taken verbatim, so a secret
//! like `0123` keeps its leading zero. Each env var is its own layer,
//! named after the variable, so an error says where a bad value came from.
//!
//! A figment error becomes a [`KeyError`] naming the full key.

use std::path::Path;

use figment::error::Kind;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::{ConfigError, KeyError, Problem};

/// The built-in defaults.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The seed image's plain env vars and the keys they set.
const SEED_ENV: &[(&str, &str)] = &[
    ("HTTP_AUTH_USERNAME", "auth.username"),
    ("HTTP_AUTH_PASSWORD", "auth.password"),
    ("TELEGRAM_WEBHOOK_SECRET", "telegram.webhook_secret"),
    ("TELEGRAM_BOT_TOKEN", "telegram.bot_token"),
    ("TELEGRAM_API_URL", "telegram.api_url"),
];

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
    for (key, raw) in Env::prefixed("OTP_").split("__").iter() {
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
        let var = format!("OTP_{}", key.as_str().replace('.', "__").to_uppercase());
        fig = fig.merge(EnvVar::new(var, key.as_str(), value));
    }
    for (var, key) in SEED_ENV {
        if let Ok(value) = std::env::var(var) {
            if !value.is_empty() {
                fig = fig.merge(EnvVar::new((*var).to_owned(), key, Value::from(value)));
            }
        }
    }
    Ok(fig)
}

/// One env var as a layer that sets one key, named after the variable.
struct EnvVar {
    var: String,
    value: Serialized<Value>,
}

impl EnvVar {
    fn new(var: String, key: &str, value: Value) -> Self {
        EnvVar {
            var,
            value: Serialized::default(key, value),
        }
    }
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.var))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.value.data()
    }
}

impl From<figment::Error> for KeyError {
    /// The full key: figment's path, plus the field for field errors
    /// (their path ends at the enclosing table).
    fn from(e: figment::Error) -> Self {
        let mut path = e.path.clone();
        // A missing key has no value, so no layer to point at.
        let mut origin = e.metadata.as_ref().map(origin);
        let problem = match &e.kind {
            Kind::MissingField(field) => {
                path.push(field.to_string());
                origin = None;
                Problem::Required
            }
            Kind::UnknownField(field, _) => {
                path.push(field.clone());
                Problem::Unknown
            }
            Kind::UnknownVariant(found, accepted)
                if path.len() == 2 && path[1] == "provider" && is_channel(&path[0]) =>
            {
                Problem::CannotDeliver {
                    provider: found.clone(),
                    channel: path[0].clone(),
                    accepted,
                }
            }
            _ if is_secret(&path) => Problem::SecretValue,
            kind => Problem::Value(kind.clone()),
        };
        KeyError {
            key: path.join("."),
            problem,
            hint: None,
            origin,
        }
    }
}

fn is_channel(key: &str) -> bool {
    matches!(key, "sms" | "call" | "email" | "telegram")
}

/// Where a value came from: the file's path or the layer's name.
fn origin(md: &Metadata) -> String {
    match &md.source {
        Some(Source::File(path)) => path.display().to_string(),
        _ => md.name.to_string(),
    }
}

/// Keys whose values must never be quoted in an error: passwords,
/// tokens, secrets, and URLs (which may carry credentials).
fn is_secret(path: &[String]) -> bool {
    path.last().is_some_and(|leaf| {
        ["password", "secret", "token", "url", "nodes"]
            .iter()
            .any(|word| leaf.contains(word))
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load_error, load_ok};
    use std::path::PathBuf;

    use secrecy::ExposeSecret;

    use super::super::{Config, ConfigError};
    use super::*;

    #[test]
    fn a_secret_of_the_wrong_type_is_not_quoted_in_the_error() {
        let text = load_error(
            &[],
            "[auth]\nusername = \"admin\"\npassword = 98765432\n[telegram]\nbot_token = 4242424242\n",
        );
        assert!(text.contains("auth.password"), "{text}");
        assert!(!text.contains("98765432"), "the secret leaked: {text}");
    }

    #[test]
    fn seed_env_secrets_stay_strings_with_leading_zeros() {
        let c = load_ok(
            &[
                ("HTTP_AUTH_USERNAME", "0042"),
                ("HTTP_AUTH_PASSWORD", "0123"),
                ("TELEGRAM_WEBHOOK_SECRET", "+4912345678"),
            ],
            "",
        );
        assert!(c.auth_enabled());
        assert_eq!(c.auth.username, "0042");
        assert_eq!(c.auth.password.expose_secret(), "0123");
        assert_eq!(c.telegram.webhook_secret.expose_secret(), "+4912345678");
    }

    #[test]
    fn otp_env_vars_split_on_double_underscore_and_keep_strings() {
        let c = load_ok(
            &[
                ("OTP_SERVER__LISTEN", "0.0.0.0:9000"),
                ("OTP_STORE__PATH", "/tmp/x.redb"),
                ("OTP_OTP__MAX_ATTEMPTS", "3"),
                ("OTP_AUTH__USERNAME", "007"),
                ("OTP_AUTH__PASSWORD", "0123"),
            ],
            "",
        );
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.store.path, PathBuf::from("/tmp/x.redb"));
        assert_eq!(c.policy.max_attempts, 3);
        assert_eq!(c.auth.username, "007");
        assert_eq!(c.auth.password.expose_secret(), "0123");
    }

    #[test]
    fn file_layer_overrides_defaults_and_env_overrides_file() {
        let c = load_ok(
            &[("OTP_OTP__CODE_LENGTH", "4")],
            "[otp]\nmax_attempts = 7\ncode_length = 8\n",
        );
        assert_eq!(c.policy.max_attempts, 7);
        assert_eq!(c.policy.code_length, 4);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = load_error(&[("OTP_REDIS_URL", "redis://x")], "");
        assert!(err.contains("redis_url"), "{err}");
        assert!(
            err.contains("redis_url is not a known key (from environment variable OTP_REDIS_URL)"),
            "{err}"
        );
        let err = load_error(&[("OTP_OTP__MAX_ATTEMPTS", "many")], "");
        assert!(err.contains("max_attempts"), "{err}");
        assert!(
            err.contains("otp.max_attempts has a bad value")
                && err.contains("environment variable OTP_OTP__MAX_ATTEMPTS"),
            "{err}"
        );
        let err = load_error(&[("OTP_SERVER__LISTEN", "not-an-address")], "");
        assert!(err.contains("listen"), "{err}");
        assert!(err.contains("server.listen"), "{err}");
        let err = load_error(&[], "[store]\nkind = \"mysql\"\n");
        assert!(
            err.contains("store.kind has a bad value") && err.contains("otpd.toml"),
            "{err}"
        );
    }

    #[test]
    fn retention_and_the_delivery_deadline_are_bounded_by_what_depends_on_them() {
        for (key, value, named) in [
            (
                "OTP_VERIFICATIONS__RETENTION_SECS",
                "59",
                "verifications.retention_secs must be at least 60",
            ),
            (
                "OTP_DELIVERY__DEADLINE_SECS",
                "46",
                "delivery.deadline_secs must be at most 45",
            ),
            (
                "OTP_FRAUD__MIN_CONVERSION",
                "1.5",
                "fraud.min_conversion must be between 0 and 1",
            ),
            (
                "OTP_FRAUD__NEVER_BLOCK",
                "77a",
                "fraud.never_block must list prefixes",
            ),
        ] {
            let err = load_error(&[(key, value)], "");
            assert!(err.contains(named), "{key}: {err}");
        }
        // The bounds themselves are fine.
        load_ok(
            &[
                ("OTP_VERIFICATIONS__RETENTION_SECS", "60"),
                ("OTP_DELIVERY__DEADLINE_SECS", "45"),
            ],
            "",
        );
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/otpd.toml"))).map(|_| ());
        assert!(matches!(err, Err(ConfigError::MissingFile(_))));
    }
}
