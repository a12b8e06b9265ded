//! `[events]`: where verification events go. The keys as written
//! ([`EventsConfig`], a list of `[[events.sinks]]` tables tagged by
//! `kind`), and their resolution into checked [`EventSettings`] that the
//! dispatcher (`crate::events`) builds its sinks from.
//!
//! Keys inside the list are named with their index:
//! `events.sinks[1].secret must start with whsec_`.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use otp_domain::EventType;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;

use super::{ConfigError, KeyError, Problem};

/// `[events]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// The CloudEvents `source` of every event.
    pub source: String,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

/// One `[[events.sinks]]` table, tagged by `kind`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SinkConfig {
    Webhook(WebhookSinkConfig),
    RedisStream(RedisStreamSinkConfig),
}

fn default_max_age_secs() -> u64 {
    86_400
}

fn default_timeout_secs() -> u64 {
    10
}

/// `kind = "webhook"`: a Standard Webhooks POST.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// For logs, metrics and the outbox's bookkeeping; default
    /// `webhook-<index>`.
    #[serde(default)]
    pub name: Option<String>,
    pub url: SecretString,
    /// `whsec_` + base64 of 24 to 64 random bytes.
    pub secret: SecretString,
    /// Only these event types; all when absent.
    #[serde(default)]
    pub types: Option<Vec<String>>,
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// One POST's whole budget.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// `kind = "redis-stream"`: an XADD per event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamSinkConfig {
    /// Default `redis-stream-<index>`.
    #[serde(default)]
    pub name: Option<String>,
    pub url: SecretString,
    pub stream: String,
    #[serde(default)]
    pub types: Option<Vec<String>>,
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// `MAXLEN ~` of every XADD; 0 keeps every entry.
    #[serde(default)]
    pub maxlen: u64,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// `[events]`, checked.
#[derive(Debug, Clone)]
pub struct EventSettings {
    pub source: String,
    pub sinks: Vec<SinkSettings>,
}

/// One sink, checked.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Unique among the sinks; a label value and the name in an event's
    /// `delivered` list.
    pub name: String,
    /// The types it takes; `None` for all.
    pub types: Option<Vec<EventType>>,
    /// How long after an event's time delivery is given up.
    pub max_age: Duration,
    /// The budget of one delivery.
    pub timeout: Duration,
    pub target: SinkTarget,
}

impl SinkSettings {
    /// Whether the sink takes events of type `t`.
    pub fn wants(&self, t: EventType) -> bool {
        self.types.as_ref().is_none_or(|types| types.contains(&t))
    }
}

/// Where a sink delivers.
#[derive(Clone)]
pub enum SinkTarget {
    Webhook {
        url: SecretString,
        /// The decoded bytes of `whsec_<base64>`.
        key: std::sync::Arc<SecretBox<Vec<u8>>>,
    },
    RedisStream {
        url: SecretString,
        stream: String,
        maxlen: u64,
    },
}

impl SinkTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkTarget::Webhook { .. } => "webhook",
            SinkTarget::RedisStream { .. } => "redis-stream",
        }
    }
}

// URLs may carry credentials; the key is a secret.
impl fmt::Debug for SinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkTarget::Webhook { .. } => f.write_str("Webhook { .. }"),
            SinkTarget::RedisStream { stream, maxlen, .. } => f
                .debug_struct("RedisStream")
                .field("stream", stream)
                .field("maxlen", maxlen)
                .finish_non_exhaustive(),
        }
    }
}

/// Checks `[events]`, naming the first bad key.
///
/// # Errors
/// A bad source, name, URL, secret, type or duration.
pub fn resolve(config: &EventsConfig) -> Result<EventSettings, ConfigError> {
    if config.source.trim().is_empty() {
        return Err(KeyError::new("events.source", Problem::Required)
            .hint("a URI-reference naming this otpd, e.g. \"otpd\" or \"https://otp.example.com\"")
            .into());
    }
    let mut names = HashSet::new();
    let mut sinks = Vec::with_capacity(config.sinks.len());
    for (i, sink) in config.sinks.iter().enumerate() {
        let key = |field: &str| format!("events.sinks[{i}].{field}");
        let (name, types, max_age_secs, timeout_secs) = match sink {
            SinkConfig::Webhook(c) => (&c.name, &c.types, c.max_age_secs, c.timeout_secs),
            SinkConfig::RedisStream(c) => (&c.name, &c.types, c.max_age_secs, c.timeout_secs),
        };
        let kind = match sink {
            SinkConfig::Webhook(_) => "webhook",
            SinkConfig::RedisStream(_) => "redis-stream",
        };
        let name = name.clone().unwrap_or_else(|| format!("{kind}-{i}"));
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(KeyError::new(
                key("name"),
                Problem::Must("be 1 to 64 letters, digits, '-', '_' or '.'"),
            )
            .into());
        }
        if !names.insert(name.clone()) {
            return Err(KeyError::new(
                key("name"),
                Problem::Must("differ from every other sink's name"),
            )
            .into());
        }
        let types = match types {
            None => None,
            Some(list) => {
                let mut parsed = Vec::with_capacity(list.len());
                for t in list {
                    parsed.push(EventType::parse(t).ok_or_else(|| {
                        KeyError::new(
                            key("types"),
                            Problem::Must(
                                "list event types like \"otpd.verification.approved\" (see the README's Events section)",
                            ),
                        )
                    })?);
                }
                Some(parsed)
            }
        };
        if max_age_secs == 0 {
            return Err(KeyError::new(key("max_age_secs"), Problem::AtLeast(1)).into());
        }
        if timeout_secs == 0 {
            return Err(KeyError::new(key("timeout_secs"), Problem::AtLeast(1)).into());
        }
        let target = match sink {
            SinkConfig::Webhook(c) => {
                if !otp_http::is_http_url(c.url.expose_secret()) {
                    return Err(KeyError::new(
                        key("url"),
                        Problem::Must("be an http:// or https:// URL"),
                    )
                    .into());
                }
                SinkTarget::Webhook {
                    url: c.url.clone(),
                    key: std::sync::Arc::new(webhook_key(&c.secret).map_err(|p| {
                        KeyError::new(key("secret"), p)
                            .hint("generate one with `echo whsec_$(openssl rand -base64 32)`")
                    })?),
                }
            }
            SinkConfig::RedisStream(c) => {
                let url = c.url.expose_secret();
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(KeyError::new(
                        key("url"),
                        Problem::Must("be a redis:// or rediss:// URL"),
                    )
                    .into());
                }
                if c.stream.is_empty() {
                    return Err(KeyError::new(key("stream"), Problem::Required).into());
                }
                SinkTarget::RedisStream {
                    url: c.url.clone(),
                    stream: c.stream.clone(),
                    maxlen: c.maxlen,
                }
            }
        };
        sinks.push(SinkSettings {
            name,
            types,
            max_age: Duration::from_secs(max_age_secs),
            timeout: Duration::from_secs(timeout_secs),
            target,
        });
    }
    Ok(EventSettings {
        source: config.source.clone(),
        sinks,
    })
}

/// The key of `whsec_<base64>`: standard base64 (padding optional) of 24
/// to 64 bytes, as Standard Webhooks recommends.
fn webhook_key(secret: &SecretString) -> Result<SecretBox<Vec<u8>>, Problem> {
    let text = secret.expose_secret();
    let Some(b64) = text.strip_prefix("whsec_") else {
        return Err(Problem::Must(
            "start with whsec_ followed by base64 (not shown: it is a secret)",
        ));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
        .map_err(|_| {
            Problem::Must("be whsec_ followed by standard base64 (not shown: it is a secret)")
        })?;
    if !(24..=64).contains(&bytes.len()) {
        return Err(Problem::Must(
            "decode to 24 to 64 bytes after whsec_ (not shown: it is a secret)",
        ));
    }
    Ok(SecretBox::new(Box::new(bytes)))
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use std::path::Path;

    use figment::Jail;

    use super::super::tests::load_error;
    use super::super::Config;
    use super::*;

    const SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn load(jail: &mut Jail, toml: &str) -> Result<Config, ConfigError> {
        jail.create_file("otpd.toml", toml)
            .expect("write the config file");
        Config::load(Some(Path::new("otpd.toml")))
    }

    fn webhook(extra: &str) -> String {
        format!(
            "[[events.sinks]]\nkind = \"webhook\"\nurl = \"https://app.example.com/hook?token=t0p\"\nsecret = \"{SECRET}\"\n{extra}\n"
        )
    }

    #[test]
    fn by_default_events_have_no_sink_and_the_source_otpd() {
        Jail::expect_with(|_| {
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.events.source, "otpd");
            assert!(c.events.sinks.is_empty());
            Ok(())
        });
    }

    #[test]
    fn a_webhook_and_a_redis_stream_sink_load_with_derived_names_and_defaults() {
        Jail::expect_with(|jail| {
            let toml = format!(
                "[events]\nsource = \"https://otp.example.com\"\n{}\n[[events.sinks]]\nkind = \"redis-stream\"\nurl = \"redis://127.0.0.1:6379\"\nstream = \"otpd:events\"\nname = \"audit\"\nmax_age_secs = 60\n",
                webhook("types = [\"otpd.verification.approved\", \"otpd.delivery.failed\"]")
            );
            let c = load(jail, &toml).map_err(|e| e.to_string())?;
            assert_eq!(c.events.source, "https://otp.example.com");
            let [hook, stream] = &c.events.sinks[..] else {
                panic!("two sinks: {:?}", c.events.sinks);
            };
            assert_eq!(hook.name, "webhook-0");
            assert_eq!(
                hook.types,
                Some(vec![EventType::Approved, EventType::DeliveryFailed])
            );
            assert!(hook.wants(EventType::Approved) && !hook.wants(EventType::Pending));
            assert_eq!(hook.max_age, Duration::from_secs(86_400));
            match &hook.target {
                SinkTarget::Webhook { key, .. } => {
                    assert_eq!(
                        key.expose_secret().as_slice(),
                        b"0123456789abcdef0123456789abcdef"
                    );
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(stream.name, "audit");
            assert!(stream.wants(EventType::Pending));
            assert_eq!(stream.max_age, Duration::from_secs(60));
            assert_eq!(stream.target.kind(), "redis-stream");
            let printed = format!("{:?}", c.events);
            assert!(
                !printed.contains("MDEy") && !printed.contains("t0p"),
                "{printed}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_bad_secret_names_its_key_and_is_never_quoted() {
        for bad in [
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "whsec_not*base64!",
            "whsec_c2hvcnQ=",
        ] {
            let err = load_error(&[], &webhook("").replace(SECRET, bad));
            assert!(err.contains("events.sinks[0].secret must"), "{err}");
            assert!(!err.contains(bad), "the secret leaked: {err}");
        }
    }

    #[test]
    fn bad_sink_settings_name_their_key() {
        for (toml, expected) in [
            (
                webhook("types = [\"otpd.verification.done\"]"),
                "events.sinks[0].types must",
            ),
            (
                webhook("max_age_secs = 0"),
                "events.sinks[0].max_age_secs must be at least 1",
            ),
            (webhook("name = \"a b\""), "events.sinks[0].name must"),
            (
                format!("{}{}", webhook(""), webhook("")).replacen("kind", "name = \"x\"\nkind", 2),
                "events.sinks[1].name must differ",
            ),
            (
                webhook("").replace("https://app.example.com/hook?token=t0p", "ftp://x"),
                "events.sinks[0].url must be an http",
            ),
            (
                "[[events.sinks]]\nkind = \"redis-stream\"\nurl = \"http://x\"\nstream = \"s\"\n"
                    .into(),
                "events.sinks[0].url must be a redis",
            ),
            (
                "[events]\nsource = \" \"\n".into(),
                "events.source is required",
            ),
        ] {
            let err = load_error(&[], &toml);
            assert!(err.contains(expected), "{toml}\n=> {err}");
        }
    }

    #[test]
    fn an_unknown_kind_or_key_in_a_sink_fails_at_start() {
        for (toml, expected) in [
            ("[[events.sinks]]\nkind = \"kafka\"\n".to_owned(), "kafka"),
            (webhook("secrit = \"x\""), "secrit"),
            (
                "[[events.sinks]]\nkind = \"webhook\"\nurl = \"http://x\"\n".to_owned(),
                "secret",
            ),
        ] {
            let err = load_error(&[], &toml);
            assert!(err.contains("events.sinks"), "{err}");
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn the_source_and_the_sinks_can_come_from_the_environment() {
        Jail::expect_with(|jail| {
            jail.set_env("OTP_EVENTS__SOURCE", "otpd-eu");
            jail.set_env(
                "OTP_EVENTS__SINKS",
                format!("[{{kind=\"webhook\",url=\"http://127.0.0.1:9/\",secret=\"{SECRET}\"}}]"),
            );
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.events.source, "otpd-eu");
            assert_eq!(c.events.sinks.len(), 1);
            assert_eq!(c.events.sinks[0].name, "webhook-0");
            Ok(())
        });
    }
}
