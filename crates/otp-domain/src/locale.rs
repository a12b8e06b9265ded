//! Locales: which language a message goes out in, and its texts.
//!
//! A send names a BCP-47 tag (`de`, `pt-BR`, `zh-Hant-HK`) or, for a
//! phone, gets the locale of the number's country; [`Locales`] finds the
//! texts along the tag's fallback chain and otherwise uses the default
//! locale. The texts themselves are data: the built-in translations and
//! the deployment's overrides are loaded by whoever builds the
//! [`Locales`] (the config), never fetched.

use std::collections::HashMap;
use std::fmt;

use crate::error::ParseError;
use crate::types::Channel;

/// A well-formed BCP-47 language tag in its canonical case: language
/// lowercase, script titlecase, region uppercase (`zh-Hant-HK`). Only
/// language, script and region subtags are kept apart; variants and
/// extensions are accepted and ignored for matching.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocaleTag {
    canonical: String,
    language: String,
    script: Option<String>,
    region: Option<String>,
}

impl LocaleTag {
    /// Parses a tag, case-insensitively; `_` is accepted for `-`
    /// (`pt_BR`).
    ///
    /// # Errors
    /// [`ParseError::Locale`] when it is not a language tag.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let s = input.trim();
        if s.is_empty() || s.len() > 35 {
            return Err(ParseError::Locale("a language tag such as de or pt-BR"));
        }
        let mut parts = s.split(['-', '_']);
        let language = parts.next().unwrap_or_default();
        if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(ParseError::Locale(
                "a language tag must start with a 2 or 3 letter language code",
            ));
        }
        let mut script = None;
        let mut region = None;
        let mut rest = Vec::new();
        for part in parts {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(ParseError::Locale(
                    "each subtag of a language tag is 1 to 8 letters or digits",
                ));
            }
            let alpha = part.bytes().all(|b| b.is_ascii_alphabetic());
            let digits = part.bytes().all(|b| b.is_ascii_digit());
            if rest.is_empty() && script.is_none() && region.is_none() && part.len() == 4 && alpha {
                let mut t = part.to_ascii_lowercase();
                t[..1].make_ascii_uppercase();
                script = Some(t);
            } else if rest.is_empty()
                && region.is_none()
                && ((part.len() == 2 && alpha) || (part.len() == 3 && digits))
            {
                region = Some(part.to_ascii_uppercase());
            } else {
                rest.push(part.to_ascii_lowercase());
            }
        }
        let language = language.to_ascii_lowercase();
        let mut canonical = language.clone();
        for p in script.iter().chain(region.iter()).chain(rest.iter()) {
            canonical.push('-');
            canonical.push_str(p);
        }
        Ok(LocaleTag {
            canonical,
            language,
            script,
            region,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The tags to try, most specific first, as lowercase keys: the tag
    /// itself; language-script-region (variants and extensions dropped);
    /// language-script and the script's usual locale (`zh-Hant` → `zh-HK`,
    /// `zh-Hans` → `zh-CN`), so a script subtag decides before a region
    /// (`zh-Hans-HK` is Simplified); language-region when there is no
    /// script; and the language alone.
    fn chain(&self) -> Vec<String> {
        let l = &self.language;
        let mut out = vec![self.canonical.clone()];
        match (&self.script, &self.region) {
            (Some(script), region) => {
                if let Some(r) = region {
                    out.push(format!("{l}-{script}-{r}"));
                }
                out.push(format!("{l}-{script}"));
                if let Some(usual) = script_locale(l, script) {
                    out.push(usual.to_owned());
                }
            }
            (None, Some(r)) => out.push(format!("{l}-{r}")),
            (None, None) => {}
        }
        out.push(l.clone());
        let mut keys: Vec<String> = Vec::with_capacity(out.len());
        for k in out.into_iter().map(|k| k.to_ascii_lowercase()) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys
    }
}

/// The locale a script subtag usually means, where the language alone
/// would pick the other script.
fn script_locale(language: &str, script: &str) -> Option<&'static str> {
    match (language, script) {
        ("zh", "Hant") => Some("zh-HK"),
        ("zh", "Hans") => Some("zh-CN"),
        _ => None,
    }
}

impl fmt::Display for LocaleTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

/// Default texts per channel, used when a request carries none: one set
/// per locale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    pub sms: String,
    pub call: String,
    pub email_subject: String,
    pub email_text: String,
    pub telegram: String,
    /// What the bot answers a user who messages it.
    pub pairing: String,
}

impl Templates {
    /// The body text of `channel`.
    pub fn body(&self, channel: Channel) -> &str {
        match channel {
            Channel::Sms => &self.sms,
            Channel::Call => &self.call,
            Channel::Email => &self.email_text,
            Channel::Telegram => &self.telegram,
            // WhatsApp's free-form text (dev sink, queue) is the SMS text;
            // the Cloud API sends its approved template instead.
            Channel::WhatsApp => &self.sms,
        }
    }
}

/// Where a locale's texts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocaleSource {
    /// The translations shipped in the binary.
    BuiltIn,
    /// Built in, with some texts replaced by the config.
    Overridden,
    /// Added by the config.
    Configured,
}

impl LocaleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LocaleSource::BuiltIn => "builtin",
            LocaleSource::Overridden => "overridden",
            LocaleSource::Configured => "configured",
        }
    }
}

/// One locale: its texts, its name in its own language, and the language
/// a voice call speaks it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale {
    pub tag: LocaleTag,
    /// The language's own name ("Deutsch").
    pub name: String,
    /// The text-to-speech language of a voice call (`de-DE`).
    pub voice: String,
    pub templates: Templates,
    pub source: LocaleSource,
}

/// Every locale otpd serves, the default one, and the locale of each
/// country.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locales {
    by_key: HashMap<String, Locale>,
    default_key: String,
    /// ISO region (uppercase) → a key of `by_key`.
    countries: HashMap<String, String>,
}

/// Why a [`Locales`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalesError {
    #[error("the default locale {0} is not served (neither built in nor configured)")]
    UnknownDefault(String),
    #[error("country {country} maps to {tag}, which is not served")]
    UnknownCountryLocale { country: String, tag: String },
    #[error("country {0} is not an ISO 3166 two-letter region code")]
    BadCountry(String),
}

impl Locales {
    /// A catalog of `locales` (later ones replace earlier ones with the
    /// same tag), `default` and `countries` (ISO region → tag).
    ///
    /// # Errors
    /// When the default or a country's locale is not among `locales`
    /// (after fallback), or a country code is not two letters.
    pub fn new(
        locales: impl IntoIterator<Item = Locale>,
        default: &LocaleTag,
        countries: impl IntoIterator<Item = (String, LocaleTag)>,
    ) -> Result<Self, LocalesError> {
        let mut by_key = HashMap::new();
        for l in locales {
            by_key.insert(l.tag.as_str().to_ascii_lowercase(), l);
        }
        let mut this = Locales {
            by_key,
            default_key: String::new(),
            countries: HashMap::new(),
        };
        this.default_key = this
            .key_of(default)
            .ok_or_else(|| LocalesError::UnknownDefault(default.to_string()))?;
        for (country, tag) in countries {
            let region = country.to_ascii_uppercase();
            if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(LocalesError::BadCountry(country));
            }
            let key = this
                .key_of(&tag)
                .ok_or_else(|| LocalesError::UnknownCountryLocale {
                    country: region.clone(),
                    tag: tag.to_string(),
                })?;
            this.countries.insert(region, key);
        }
        Ok(this)
    }

    fn key_of(&self, tag: &LocaleTag) -> Option<String> {
        tag.chain()
            .into_iter()
            .find(|k| self.by_key.contains_key(k))
    }

    /// The locale serving `tag`, along its fallback chain; `None` when
    /// no step of it is served.
    pub fn resolve(&self, tag: &LocaleTag) -> Option<&Locale> {
        self.key_of(tag).and_then(|k| self.by_key.get(&k))
    }

    /// The locale of a number in `region` (ISO, uppercase): the
    /// country's, else the default.
    pub fn for_region(&self, region: Option<&str>) -> &Locale {
        region
            .and_then(|r| self.countries.get(r))
            .and_then(|k| self.by_key.get(k))
            .unwrap_or_else(|| self.default_locale())
    }

    pub fn default_locale(&self) -> &Locale {
        // `new` made sure the default key is in the map.
        &self.by_key[&self.default_key]
    }

    /// Whether `locale` is the default one.
    pub fn is_default(&self, locale: &Locale) -> bool {
        locale.tag.as_str().eq_ignore_ascii_case(&self.default_key)
    }

    /// Every locale, sorted by tag.
    pub fn all(&self) -> Vec<&Locale> {
        let mut all: Vec<&Locale> = self.by_key.values().collect();
        all.sort_by(|a, b| a.tag.as_str().cmp(b.tag.as_str()));
        all
    }

    /// One locale of English texts: for tests and for a policy built
    /// without a catalog.
    pub fn english(templates: Templates) -> Self {
        let tag = LocaleTag::parse("en").unwrap_or_else(|_| unreachable!("a valid tag"));
        let en = Locale {
            tag: tag.clone(),
            name: "English".to_owned(),
            voice: "en-US".to_owned(),
            templates,
            source: LocaleSource::BuiltIn,
        };
        Locales::new([en], &tag, []).unwrap_or_else(|_| unreachable!("en serves en"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(s: &str) -> LocaleTag {
        LocaleTag::parse(s).expect("valid tag")
    }

    fn locale(t: &str) -> Locale {
        Locale {
            tag: tag(t),
            name: t.to_owned(),
            voice: format!("{t}-XX"),
            templates: Templates {
                sms: format!("{t} {{password}}"),
                call: String::new(),
                email_subject: String::new(),
                email_text: String::new(),
                telegram: String::new(),
                pairing: String::new(),
            },
            source: LocaleSource::BuiltIn,
        }
    }

    fn catalog() -> Locales {
        Locales::new(
            [
                "en", "en-GB", "pt", "pt-BR", "zh", "zh-CN", "zh-HK", "ru", "de",
            ]
            .map(locale),
            &tag("en"),
            [
                ("DE".to_owned(), tag("de")),
                ("at".to_owned(), tag("de-AT")),
                ("BR".to_owned(), tag("pt-BR")),
                ("KZ".to_owned(), tag("ru")),
            ],
        )
        .expect("catalog")
    }

    fn served(l: &Locales, t: &str) -> Option<String> {
        l.resolve(&tag(t)).map(|l| l.tag.to_string())
    }

    #[test]
    fn tags_are_matched_case_insensitively_in_canonical_form() {
        assert_eq!(tag("PT-br").as_str(), "pt-BR");
        assert_eq!(tag("pt_br").as_str(), "pt-BR");
        assert_eq!(tag("zh-hant-hk").as_str(), "zh-Hant-HK");
        assert_eq!(tag("es-419").as_str(), "es-419");
        assert_eq!(tag(" de ").as_str(), "de");
    }

    #[test]
    fn malformed_tags_are_refused() {
        for bad in [
            "",
            "x",
            "german",
            "de--DE",
            "de-",
            "12",
            "de-DE!",
            "d3",
            "de-abcdefghi",
        ] {
            assert!(
                matches!(LocaleTag::parse(bad), Err(ParseError::Locale(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn the_chain_falls_back_along_the_tag() {
        let l = catalog();
        assert_eq!(served(&l, "pt-BR").as_deref(), Some("pt-BR"));
        assert_eq!(served(&l, "PT-br").as_deref(), Some("pt-BR"));
        assert_eq!(served(&l, "pt").as_deref(), Some("pt"));
        assert_eq!(served(&l, "pt-AO").as_deref(), Some("pt"));
        assert_eq!(served(&l, "en-GB").as_deref(), Some("en-GB"));
        assert_eq!(served(&l, "en-US").as_deref(), Some("en"));
        assert_eq!(served(&l, "de-CH-1996").as_deref(), Some("de"));
        assert_eq!(served(&l, "xx").as_deref(), None);
        assert_eq!(served(&l, "fr-FR").as_deref(), None);
    }

    #[test]
    fn script_subtags_pick_the_script_not_only_the_language() {
        let l = catalog();
        assert_eq!(served(&l, "zh-Hant-HK").as_deref(), Some("zh-HK"));
        assert_eq!(served(&l, "zh-Hant").as_deref(), Some("zh-HK"));
        assert_eq!(served(&l, "zh-Hant-TW").as_deref(), Some("zh-HK"));
        assert_eq!(served(&l, "zh-Hans").as_deref(), Some("zh-CN"));
        assert_eq!(served(&l, "zh-Hans-SG").as_deref(), Some("zh-CN"));
        // The script decides before the region.
        assert_eq!(served(&l, "zh-Hans-HK").as_deref(), Some("zh-CN"));
        assert_eq!(served(&l, "zh-Hant-CN").as_deref(), Some("zh-HK"));
        assert_eq!(served(&l, "zh-Hant-HK-u-ca-roc").as_deref(), Some("zh-HK"));
        assert_eq!(served(&l, "zh").as_deref(), Some("zh"));
    }

    #[test]
    fn countries_pick_their_locale_and_others_the_default() {
        let l = catalog();
        let of = |r: Option<&str>| l.for_region(r).tag.to_string();
        assert_eq!(of(Some("DE")), "de");
        assert_eq!(of(Some("AT")), "de");
        assert_eq!(of(Some("BR")), "pt-BR");
        assert_eq!(of(Some("KZ")), "ru");
        assert_eq!(of(Some("US")), "en");
        assert_eq!(of(None), "en");
        assert!(l.is_default(l.for_region(Some("FR"))));
    }

    #[test]
    fn a_catalog_refuses_what_it_cannot_serve() {
        let en = || [locale("en")];
        assert_eq!(
            Locales::new(en(), &tag("fr"), []),
            Err(LocalesError::UnknownDefault("fr".into()))
        );
        assert_eq!(
            Locales::new(en(), &tag("en"), [("FR".to_owned(), tag("fr"))]),
            Err(LocalesError::UnknownCountryLocale {
                country: "FR".into(),
                tag: "fr".into()
            })
        );
        assert_eq!(
            Locales::new(en(), &tag("en"), [("FRA".to_owned(), tag("en"))]),
            Err(LocalesError::BadCountry("FRA".into()))
        );
    }
}
