//! The typed provider model: each channel kind has its own enum of the
//! providers that can serve it, each variant holding that provider's
//! checked settings. The schema already refuses a provider name that a
//! channel cannot use; `resolve` pairs each name with its section once,
//! so startup only matches on the result.
//!
//! | channel     | providers                         |
//! |-------------|-----------------------------------|
//! | sms, call   | log, http, twilio, queue          |
//! | email       | log, smtp, queue                  |
//! | telegram    | log, telegram, notify, queue      |
//! | whatsapp    | log, meta, twilio, queue          |

use otp_domain::{Channel, FieldError};
use secrecy::{ExposeSecret, SecretString};

use super::schema::{
    ConfigFile, EmailChannelConfig, EmailProviderName, PhoneChannelConfig, PhoneProviderName,
    TelegramChannelConfig, TelegramProviderName, WhatsAppChannelConfig, WhatsAppProviderName,
};
use super::{ConfigError, KeyError, Problem};

/// Declares a channel's provider enum and its `name`, so a variant and
/// the name it has in config and logs are written once, side by side.
macro_rules! provider_enum {
    (
        $(#[$meta:meta])*
        $enum:ident {
            $($(#[$vmeta:meta])* $variant:ident $(($settings:ty))? => $name:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub enum $enum {
            $($(#[$vmeta])* $variant $(($settings))?,)+
        }

        impl $enum {
            /// Its name in config and logs.
            pub fn name(&self) -> &'static str {
                match self {
                    $($enum::$variant { .. } => $name,)+
                }
            }
        }
    };
}

provider_enum! {
    /// A provider of SMS or voice calls, with its settings.
    PhoneProvider {
        /// The development sink.
        Log => "log",
        Http(otp_gateway::HttpGatewayConfig) => "http",
        Twilio(otp_gateway::TwilioConfig) => "twilio",
        Queue(otp_redis::QueueConfig) => "queue",
    }
}

provider_enum! {
    /// A provider of WhatsApp messages, with its settings.
    WhatsAppProvider {
        Log => "log",
        Meta(otp_gateway::MetaConfig) => "meta",
        Twilio(otp_gateway::TwilioConfig) => "twilio",
        Queue(otp_redis::QueueConfig) => "queue",
    }
}

provider_enum! {
    /// A provider of email, with its settings.
    EmailProvider {
        Log => "log",
        Smtp(otp_smtp::SmtpConfig) => "smtp",
        Queue(otp_redis::QueueConfig) => "queue",
    }
}

provider_enum! {
    /// A provider of Telegram messages, with its settings.
    TelegramProvider {
        Log => "log",
        /// The Bot API, with `telegram.bot_token`.
        Bot(otp_telegram::TelegramConfig) => "telegram",
        Notify(otp_telegram::HttpNotifyConfig) => "notify",
        Queue(otp_redis::QueueConfig) => "queue",
    }
}

/// Each channel's providers, in fallback order; never empty.
#[derive(Debug, Clone)]
pub struct Providers {
    pub sms: Vec<PhoneProvider>,
    pub call: Vec<PhoneProvider>,
    pub email: Vec<EmailProvider>,
    pub telegram: Vec<TelegramProvider>,
    pub whatsapp: Vec<WhatsAppProvider>,
}

impl Providers {
    /// Whether any channel uses the `log` dev sink (then the dev outbox
    /// exists).
    pub fn use_dev_sink(&self) -> bool {
        self.sms
            .iter()
            .chain(&self.call)
            .any(|p| matches!(p, PhoneProvider::Log))
            || self.email.iter().any(|p| matches!(p, EmailProvider::Log))
            || self
                .telegram
                .iter()
                .any(|p| matches!(p, TelegramProvider::Log))
            || self
                .whatsapp
                .iter()
                .any(|p| matches!(p, WhatsAppProvider::Log))
    }
}

/// The Telegram settings outside the providers.
#[derive(Debug, Clone)]
pub struct TelegramSettings {
    /// Empty: the webhook takes no secret token (allowed only while no
    /// Telegram message is delivered).
    pub webhook_secret: SecretString,
    /// The Bot API settings, when a bot token is set (for
    /// `otpd telegram set-webhook`).
    pub bot: Option<otp_telegram::TelegramConfig>,
}

/// The keys a provider's section must set, for the message when the
/// section is missing altogether. A test checks that a section with just
/// these keys loads.
mod required {
    pub const TWILIO: &[&str] = &["account_sid", "auth_token", "from"];
    pub const HTTP: &[&str] = &["url"];
    pub const QUEUE: &[&str] = &["url"];
    pub const SMTP: &[&str] = &["host", "from"];
    pub const NOTIFY: &[&str] = &["url"];
    pub const META: &[&str] = &["phone_number_id", "access_token", "template"];
    pub const TWILIO_WHATSAPP: &[&str] = &["account_sid", "auth_token", "from", "content_sid"];
}

/// Pairs every provider name with its settings and checks them.
///
/// # Errors
/// A missing section (listing every key it needs), a bad setting, or a
/// delivering Telegram provider without a webhook secret.
pub(super) fn resolve(file: &ConfigFile) -> Result<(Providers, TelegramSettings), ConfigError> {
    let telegram = telegram_settings(&file.telegram);
    let providers = Providers {
        sms: phone(Channel::Sms, &file.sms)?,
        call: phone(Channel::Call, &file.call)?,
        email: email(&file.email)?,
        telegram: telegram_providers(&file.telegram, telegram.bot.as_ref())?,
        whatsapp: whatsapp(&file.whatsapp)?,
    };
    // Once Telegram messages really go out (any provider but the dev
    // sink), the webhook must be authenticated: it is exempt from Basic
    // auth, and an open one would let anyone send codes to any chat.
    let delivers = providers
        .telegram
        .iter()
        .any(|p| !matches!(p, TelegramProvider::Log));
    if (delivers || telegram.bot.is_some()) && telegram.webhook_secret.expose_secret().is_empty() {
        return Err(ConfigError::from(
            KeyError::new(
                "telegram.webhook_secret",
                Problem::RequiredWhen(
                    "Telegram messages are delivered (a bot token or a provider other than log)"
                        .into(),
                ),
            )
            .hint("TELEGRAM_WEBHOOK_SECRET, the same value as setWebhook's secret_token"),
        ));
    }
    Ok((providers, telegram))
}

fn phone(channel: Channel, c: &PhoneChannelConfig) -> Result<Vec<PhoneProvider>, ConfigError> {
    each(&c.provider, |name| {
        Ok(match name {
            PhoneProviderName::Log => PhoneProvider::Log,
            PhoneProviderName::Http => PhoneProvider::Http(settings(
                (channel, "http"),
                c.http.as_ref(),
                required::HTTP,
                |s| s.validate(),
            )?),
            PhoneProviderName::Twilio => PhoneProvider::Twilio(settings(
                (channel, "twilio"),
                c.twilio.as_ref(),
                required::TWILIO,
                |s| s.validate_for(channel),
            )?),
            PhoneProviderName::Queue => PhoneProvider::Queue(queue(channel, c.queue.as_ref())?),
        })
    })
}

fn whatsapp(c: &WhatsAppChannelConfig) -> Result<Vec<WhatsAppProvider>, ConfigError> {
    let channel = Channel::WhatsApp;
    each(&c.provider, |name| {
        Ok(match name {
            WhatsAppProviderName::Log => WhatsAppProvider::Log,
            WhatsAppProviderName::Meta => WhatsAppProvider::Meta(settings(
                (channel, "meta"),
                c.meta.as_ref(),
                required::META,
                |s| s.validate(),
            )?),
            WhatsAppProviderName::Twilio => WhatsAppProvider::Twilio(settings(
                (channel, "twilio"),
                c.twilio.as_ref(),
                required::TWILIO_WHATSAPP,
                |s| s.validate_for(channel),
            )?),
            WhatsAppProviderName::Queue => {
                WhatsAppProvider::Queue(queue(channel, c.queue.as_ref())?)
            }
        })
    })
}

fn email(c: &EmailChannelConfig) -> Result<Vec<EmailProvider>, ConfigError> {
    let channel = Channel::Email;
    each(&c.provider, |name| {
        Ok(match name {
            EmailProviderName::Log => EmailProvider::Log,
            EmailProviderName::Smtp => EmailProvider::Smtp(settings(
                (channel, "smtp"),
                c.smtp.as_ref(),
                required::SMTP,
                |s| s.validate(),
            )?),
            EmailProviderName::Queue => EmailProvider::Queue(queue(channel, c.queue.as_ref())?),
        })
    })
}

fn telegram_settings(c: &TelegramChannelConfig) -> TelegramSettings {
    let bot = (!c.bot_token.expose_secret().is_empty()).then(|| otp_telegram::TelegramConfig {
        bot_token: c.bot_token.clone(),
        api_url: c.api_url.clone(),
        timeout_secs: c.timeout_secs,
    });
    TelegramSettings {
        webhook_secret: c.webhook_secret.clone(),
        bot,
    }
}

fn telegram_providers(
    c: &TelegramChannelConfig,
    bot: Option<&otp_telegram::TelegramConfig>,
) -> Result<Vec<TelegramProvider>, ConfigError> {
    let channel = Channel::Telegram;
    each(&c.provider, |name| {
        Ok(match name {
            TelegramProviderName::Log => TelegramProvider::Log,
            TelegramProviderName::Telegram => {
                let bot = bot.ok_or_else(|| {
                    KeyError::new(
                        "telegram.bot_token",
                        Problem::RequiredWhen("telegram.provider names telegram".into()),
                    )
                    .hint("TELEGRAM_BOT_TOKEN")
                })?;
                // The bot's keys sit right under [telegram].
                checked("telegram", bot.validate())?;
                TelegramProvider::Bot(bot.clone())
            }
            TelegramProviderName::Notify => TelegramProvider::Notify(settings(
                (channel, "notify"),
                c.notify.as_ref(),
                required::NOTIFY,
                |s| s.validate(),
            )?),
            TelegramProviderName::Queue => {
                TelegramProvider::Queue(queue(channel, c.queue.as_ref())?)
            }
        })
    })
}

/// Resolves each provider name of a channel's list, in order.
fn each<N, P>(
    names: &super::schema::ProviderList<N>,
    one: impl FnMut(&N) -> Result<P, ConfigError>,
) -> Result<Vec<P>, ConfigError> {
    names.0.iter().map(one).collect()
}

/// `[channel.queue]`, which every channel may name.
fn queue(
    channel: Channel,
    c: Option<&otp_redis::QueueConfig>,
) -> Result<otp_redis::QueueConfig, ConfigError> {
    settings((channel, "queue"), c, required::QUEUE, |s| s.validate())
}

/// The settings of a provider in section `[channel.name]`, checked by
/// the adapter's `check`. A missing section lists, in full, every key it
/// must set.
fn settings<T: Clone>(
    (channel, name): (Channel, &'static str),
    value: Option<&T>,
    required: &[&'static str],
    check: impl FnOnce(&T) -> Result<(), FieldError>,
) -> Result<T, ConfigError> {
    let section = format!("{channel}.{name}");
    let Some(value) = value else {
        return Err(KeyError::new(
            &section,
            Problem::MissingSection {
                section: section.clone(),
                by: format!("{channel}.provider"),
                provider: name,
                keys: required.iter().map(|k| format!("{section}.{k}")).collect(),
            },
        )
        .into());
    };
    checked(&section, check(value))?;
    Ok(value.clone())
}

/// An adapter's check of its settings, with the section before the field.
fn checked(section: &str, result: Result<(), FieldError>) -> Result<(), ConfigError> {
    result.map_err(|e| {
        let e = e.within(section);
        KeyError::new(e.field, Problem::Field(e.problem)).into()
    })
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use super::super::tests::{load_error, load_in_jail};
    use std::path::Path;

    use figment::Jail;

    use super::super::Config;
    use super::*;

    #[test]
    fn providers_are_checked_at_start_naming_the_key() {
        let err = load_error(&[("OTP_SMS__PROVIDER", "twilio,http")], "");
        assert!(
            err.contains("sms.provider") && err.contains("[sms.twilio]"),
            "{err}"
        );
        Jail::expect_with(|jail| {
            jail.set_env("OTP_SMS__PROVIDER", "twilio");
            jail.set_env("OTP_SMS__TWILIO__ACCOUNT_SID", "AC123");
            jail.set_env("OTP_SMS__TWILIO__AUTH_TOKEN", "0123");
            let err = load_in_jail(jail).map(|_| ()).expect_err("no from");
            assert!(err.to_string().contains("sms.twilio.from"), "{err}");
            jail.set_env("OTP_SMS__TWILIO__FROM", "+14155552671");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            let [PhoneProvider::Twilio(twilio)] = &c.providers.sms[..] else {
                panic!("{:?}", c.providers.sms);
            };
            assert_eq!(twilio.from.as_deref(), Some("+14155552671"));
            assert_eq!(twilio.auth_token.expose_secret(), "0123");
            Ok(())
        });
        let err = load_error(&[("OTP_EMAIL__PROVIDER", "twilio")], "");
        assert!(err.contains("twilio cannot deliver email"), "{err}");
        let err = load_error(
            &[("OTP_EMAIL__PROVIDER", "smtp")],
            "[email.smtp]\nhost = \"localhost\"\nfrom = \"\"\n",
        );
        assert!(err.contains("email.smtp.from"), "{err}");
    }

    #[test]
    fn a_provider_the_channel_cannot_use_fails_at_load_naming_the_key() {
        for (var, value, expected) in [
            (
                "OTP_EMAIL__PROVIDER",
                "twilio",
                "email.provider names twilio, but twilio cannot deliver email; use log, smtp, queue",
            ),
            (
                "OTP_SMS__PROVIDER",
                "http,smtp",
                "sms.provider names smtp, but smtp cannot deliver sms; use log, http, twilio, queue",
            ),
            (
                "OTP_TELEGRAM__PROVIDER",
                "http",
                "telegram.provider names http, but http cannot deliver telegram; use log, telegram, notify, queue",
            ),
        ] {
            let err = load_error(&[(var, value)], "");
            assert!(err.contains(expected), "{err}");
        }
        let err = load_error(&[("OTP_CALL__PROVIDER", ",")], "");
        assert!(
            err.contains("call.provider has a bad value: name at least one provider"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_section_lists_every_key_it_needs() {
        assert_eq!(
            load_error(&[("OTP_CALL__PROVIDER", "twilio")], ""),
            "invalid config: call.twilio is missing: call.provider names twilio, which needs \
             [call.twilio] with call.twilio.account_sid, call.twilio.auth_token, \
             call.twilio.from"
        );
        Jail::expect_with(|jail| {
            jail.set_env("OTP_WHATSAPP__PROVIDER", "meta");
            let err = load_in_jail(jail).map(|_| ()).expect_err("no section");
            assert_eq!(
                err.to_string(),
                "invalid config: whatsapp.meta is missing: whatsapp.provider names meta, which \
                 needs [whatsapp.meta] with whatsapp.meta.phone_number_id, \
                 whatsapp.meta.access_token, whatsapp.meta.template"
            );
            jail.set_env("OTP_WHATSAPP__META__PHONE_NUMBER_ID", "1065");
            jail.set_env("OTP_WHATSAPP__META__ACCESS_TOKEN", "EAAG");
            let err = load_in_jail(jail).map(|_| ()).expect_err("no template");
            assert!(err.to_string().contains("whatsapp.meta.template"), "{err}");
            jail.set_env("OTP_WHATSAPP__META__TEMPLATE", "otp_code");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert!(matches!(
                &c.providers.whatsapp[..],
                [WhatsAppProvider::Meta(_)]
            ));
            jail.set_env("OTP_WHATSAPP__PROVIDER", "twilio");
            jail.set_env("OTP_WHATSAPP__TWILIO__ACCOUNT_SID", "AC1");
            jail.set_env("OTP_WHATSAPP__TWILIO__AUTH_TOKEN", "t");
            jail.set_env("OTP_WHATSAPP__TWILIO__FROM", "+14155552671");
            let err = load_in_jail(jail).map(|_| ()).expect_err("no content_sid");
            assert!(
                err.to_string().contains("whatsapp.twilio.content_sid"),
                "{err}"
            );
            Ok(())
        });
    }

    /// Each provider's section with only its required keys loads, so the
    /// lists in `required` name every key a missing section needs.
    #[test]
    fn a_section_with_just_its_required_keys_loads() {
        let valid = |key: &str| match key {
            "account_sid" => "AC123",
            "auth_token" => "0123",
            "from" => "otp@example.com",
            "host" => "smtp.example.com",
            _ => "http://127.0.0.1:9/x",
        };
        for (channel, section, provider, keys) in [
            ("sms", "twilio", "twilio", required::TWILIO),
            ("call", "twilio", "twilio", required::TWILIO),
            ("sms", "http", "http", required::HTTP),
            ("sms", "queue", "queue", required::QUEUE),
            ("email", "smtp", "smtp", required::SMTP),
            ("email", "queue", "queue", required::QUEUE),
            ("telegram", "notify", "notify", required::NOTIFY),
            ("telegram", "queue", "queue", required::QUEUE),
        ] {
            Jail::expect_with(|jail| {
                let mut toml =
                    format!("[{channel}]\nprovider = \"{provider}\"\n[{channel}.{section}]\n");
                for key in keys {
                    let value = match (section, *key) {
                        ("twilio", "from") => "+14155552671",
                        ("queue", "url") => "redis://127.0.0.1:6379",
                        _ => valid(key),
                    };
                    toml.push_str(&format!("{key} = \"{value}\"\n"));
                }
                jail.create_file("otpd.toml", &toml)?;
                jail.set_env("TELEGRAM_WEBHOOK_SECRET", "s3cret");
                Config::load(Some(Path::new("otpd.toml")))
                    .map(|_| ())
                    .map_err(|e| format!("{toml}: {e}").into())
            });
        }
    }

    #[test]
    fn adapter_checks_name_the_full_key_of_every_field_they_mention() {
        for (toml, expected) in [
            (
                "[sms]\nprovider = \"twilio\"\n[sms.twilio]\naccount_sid = \"AC1\"\nauth_token = \"t\"\n",
                "sms.twilio.from is required when sms.twilio.messaging_service_sid is not set",
            ),
            (
                "[call]\nprovider = \"twilio\"\n[call.twilio]\naccount_sid = \"AC1\"\nauth_token = \"t\"\nmessaging_service_sid = \"MG1\"\n",
                "call.twilio.from is required for voice calls",
            ),
            (
                "[email]\nprovider = \"smtp\"\n[email.smtp]\nhost = \"h\"\nfrom = \"a@b.example\"\nusername = \"u\"\n",
                "email.smtp.password is required when email.smtp.username is set",
            ),
            (
                "[sms]\nprovider = [\"log\", \"http\"]\n[sms.http]\nurl = \"https://x.example/{password}\"\n",
                "sms.http.url must not use {password}",
            ),
            (
                "[telegram]\nprovider = \"queue\"\n[telegram.queue]\nurl = \"redis://q\"\ntimeout_ms = 0\n",
                "telegram.queue.timeout_ms must be at least 1",
            ),
            (
                "[telegram]\nprovider = \"telegram\"\nbot_token = \"1:a\"\napi_url = \"api.telegram.org\"\n",
                "telegram.api_url must be an http:// or https:// URL",
            ),
        ] {
            let err = load_error(&[("TELEGRAM_WEBHOOK_SECRET", "s3cret")], toml);
            assert!(err.contains(expected), "{err}");
        }
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
            assert!(c.telegram.bot.is_some());
            assert!(matches!(
                c.providers.telegram[..],
                [TelegramProvider::Bot(_)]
            ));
            Ok(())
        });
        // Any delivering provider, not only the Bot API.
        let err = load_error(
            &[
                ("OTP_TELEGRAM__PROVIDER", "notify"),
                ("OTP_TELEGRAM__NOTIFY__URL", "http://127.0.0.1:9/msg"),
            ],
            "",
        );
        assert!(err.contains("telegram.webhook_secret"), "{err}");
        let err = load_error(
            &[
                ("OTP_TELEGRAM__PROVIDER", "telegram"),
                ("TELEGRAM_WEBHOOK_SECRET", "s3cret"),
            ],
            "",
        );
        assert!(
            err.contains("telegram.bot_token is required when telegram.provider names telegram"),
            "{err}"
        );
    }
}
