//! The locales otpd serves: the built-in translations (`locales/*.toml`,
//! compiled into the binary), the region map (`locales/countries.toml`),
//! and `[templates]` over them. The English texts are the top-level
//! `templates.*` keys; `[templates.locales.<tag>]` replaces any text of a
//! built-in locale or adds a locale of its own.

use std::collections::BTreeMap;

use figment::providers::{Format, Toml};
use figment::Figment;
use otp_domain::{Locale, LocaleSource, LocaleTag, Locales, Templates};
use serde::Deserialize;

use super::schema::{LocaleConfig, TemplatesConfig};
use super::{ConfigError, KeyError, Problem};

/// Every built-in locale: its tag and its file.
pub(crate) const BUILT_IN: &[(&str, &str)] = &[
    ("af", include_str!("../locales/af.toml")),
    ("ar", include_str!("../locales/ar.toml")),
    ("ca", include_str!("../locales/ca.toml")),
    ("cs", include_str!("../locales/cs.toml")),
    ("da", include_str!("../locales/da.toml")),
    ("de", include_str!("../locales/de.toml")),
    ("el", include_str!("../locales/el.toml")),
    ("en", include_str!("../locales/en.toml")),
    ("en-GB", include_str!("../locales/en-GB.toml")),
    ("es", include_str!("../locales/es.toml")),
    ("et", include_str!("../locales/et.toml")),
    ("fi", include_str!("../locales/fi.toml")),
    ("fr", include_str!("../locales/fr.toml")),
    ("he", include_str!("../locales/he.toml")),
    ("hi", include_str!("../locales/hi.toml")),
    ("hr", include_str!("../locales/hr.toml")),
    ("hu", include_str!("../locales/hu.toml")),
    ("id", include_str!("../locales/id.toml")),
    ("it", include_str!("../locales/it.toml")),
    ("ja", include_str!("../locales/ja.toml")),
    ("kk", include_str!("../locales/kk.toml")),
    ("kn", include_str!("../locales/kn.toml")),
    ("ko", include_str!("../locales/ko.toml")),
    ("lt", include_str!("../locales/lt.toml")),
    ("mr", include_str!("../locales/mr.toml")),
    ("ms", include_str!("../locales/ms.toml")),
    ("nb", include_str!("../locales/nb.toml")),
    ("nl", include_str!("../locales/nl.toml")),
    ("pl", include_str!("../locales/pl.toml")),
    ("pt", include_str!("../locales/pt.toml")),
    ("pt-BR", include_str!("../locales/pt-BR.toml")),
    ("ro", include_str!("../locales/ro.toml")),
    ("ru", include_str!("../locales/ru.toml")),
    ("sk", include_str!("../locales/sk.toml")),
    ("sv", include_str!("../locales/sv.toml")),
    ("te", include_str!("../locales/te.toml")),
    ("th", include_str!("../locales/th.toml")),
    ("tl", include_str!("../locales/tl.toml")),
    ("tr", include_str!("../locales/tr.toml")),
    ("uk", include_str!("../locales/uk.toml")),
    ("vi", include_str!("../locales/vi.toml")),
    ("zh", include_str!("../locales/zh.toml")),
    ("zh-CN", include_str!("../locales/zh-CN.toml")),
    ("zh-HK", include_str!("../locales/zh-HK.toml")),
];

/// The built-in region map.
const COUNTRIES: &str = include_str!("../locales/countries.toml");

/// One file of `locales/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocaleFile {
    name: String,
    voice: String,
    sms: String,
    call: String,
    email_subject: String,
    email_text: String,
    telegram: String,
    pairing: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountriesFile {
    countries: BTreeMap<String, String>,
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Box<figment::Error>> {
    Figment::from(Toml::string(text))
        .extract()
        .map_err(Box::new)
}

/// The built-in locales, as shipped.
///
/// # Panics
/// Never at run time: every file is checked by this crate's tests (a
/// broken file fails them, and would fail every start).
pub(crate) fn built_in() -> Vec<Locale> {
    BUILT_IN
        .iter()
        .map(|(tag, text)| {
            let f: LocaleFile =
                parse(text).unwrap_or_else(|e| panic!("built-in locale {tag} does not parse: {e}"));
            Locale {
                tag: LocaleTag::parse(tag).unwrap_or_else(|e| panic!("built-in locale {tag}: {e}")),
                name: f.name,
                voice: f.voice,
                templates: Templates {
                    sms: f.sms,
                    call: f.call,
                    email_subject: f.email_subject,
                    email_text: f.email_text,
                    telegram: f.telegram,
                    pairing: f.pairing,
                },
                source: LocaleSource::BuiltIn,
            }
        })
        .collect()
}

/// The built-in region map: ISO region → tag.
pub(crate) fn built_in_countries() -> BTreeMap<String, String> {
    parse::<CountriesFile>(COUNTRIES)
        .unwrap_or_else(|e| panic!("locales/countries.toml does not parse: {e}"))
        .countries
}

/// Applies `over` to `t`; whether anything changed.
fn apply(t: &mut Templates, over: &LocaleConfig) -> bool {
    let before = t.clone();
    for (slot, value) in [
        (&mut t.sms, &over.sms),
        (&mut t.call, &over.call),
        (&mut t.email_subject, &over.email_subject),
        (&mut t.email_text, &over.email_text),
        (&mut t.telegram, &over.telegram),
        (&mut t.pairing, &over.pairing),
    ] {
        if let Some(v) = value {
            slot.clone_from(v);
        }
    }
    *t != before
}

fn tag_of(key: &str, value: &str) -> Result<LocaleTag, ConfigError> {
    LocaleTag::parse(value).map_err(|e| KeyError::new(key, Problem::Parse(e)).into())
}

/// The locales `[templates]` describes. The texts themselves are checked
/// with the rest of the policy, naming `templates.locales.<tag>.<key>`.
///
/// # Errors
/// A malformed tag, a default or region locale that nothing serves, or
/// `[templates.locales.en]` (English is `[templates]` itself).
pub(crate) fn locales(t: &TemplatesConfig) -> Result<Locales, ConfigError> {
    let mut all: BTreeMap<String, Locale> = built_in()
        .into_iter()
        .map(|l| (l.tag.as_str().to_ascii_lowercase(), l))
        .collect();
    if let Some(en) = all.get_mut("en") {
        let top = LocaleConfig {
            sms: Some(t.sms.clone()),
            call: Some(t.call.clone()),
            email_subject: Some(t.email_subject.clone()),
            email_text: Some(t.email_text.clone()),
            telegram: Some(t.telegram.clone()),
            pairing: Some(t.pairing.clone()),
            name: None,
            voice: None,
        };
        if apply(&mut en.templates, &top) {
            en.source = LocaleSource::Overridden;
        }
    }
    let shipped = Locales::new(
        all.values().cloned(),
        &tag_of("templates.default_locale", "en")?,
        [],
    )
    .map_err(|e| KeyError::new("templates.locales", Problem::Locales(e)))?;
    for (raw, over) in &t.locales {
        let key = format!("templates.locales.{raw}");
        let tag = tag_of(&key, raw)?;
        let lower = tag.as_str().to_ascii_lowercase();
        if lower == "en" {
            return Err(KeyError::new(
                key,
                Problem::Must("not be set: the English texts are the [templates] keys themselves"),
            )
            .into());
        }
        let locale = match all.get(&lower) {
            Some(existing) => {
                let mut l = existing.clone();
                if apply(&mut l.templates, over) {
                    l.source = LocaleSource::Overridden;
                }
                l
            }
            None => {
                // A locale of its own: what it does not set comes from
                // the locale its tag falls back to (`de-CH` → `de`), else
                // from the default.
                let base = shipped
                    .resolve(&tag)
                    .unwrap_or_else(|| shipped.default_locale())
                    .clone();
                let mut templates = base.templates;
                apply(&mut templates, over);
                Locale {
                    tag: tag.clone(),
                    name: tag.to_string(),
                    voice: base.voice,
                    templates,
                    source: LocaleSource::Configured,
                }
            }
        };
        let mut locale = locale;
        if let Some(name) = &over.name {
            locale.name.clone_from(name);
        }
        if let Some(voice) = &over.voice {
            locale.voice.clone_from(voice);
        }
        all.insert(lower, locale);
    }
    let default = tag_of("templates.default_locale", &t.default_locale)?;
    let countries = built_in_countries();
    let mut regions = Vec::with_capacity(countries.len() + t.country_locales.len());
    for (region, raw) in &countries {
        regions.push((region.clone(), tag_of("locales/countries.toml", raw)?));
    }
    for (region, raw) in &t.country_locales {
        let key = format!("templates.country_locales.{region}");
        regions.retain(|(r, _)| !r.eq_ignore_ascii_case(region));
        regions.push((region.clone(), tag_of(&key, raw)?));
    }
    Locales::new(all.into_values(), &default, regions.clone()).map_err(|e| {
        let key = match &e {
            otp_domain::LocalesError::UnknownDefault(_) => "templates.default_locale".to_owned(),
            otp_domain::LocalesError::UnknownCountryLocale { country, .. }
            | otp_domain::LocalesError::BadCountry(country) => t
                .country_locales
                .keys()
                .find(|r| r.eq_ignore_ascii_case(country))
                .map_or_else(
                    || "locales/countries.toml".to_owned(),
                    |r| format!("templates.country_locales.{}", r.to_ascii_uppercase()),
                ),
        };
        KeyError::new(key, Problem::Locales(e)).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_locale_parses_and_has_valid_texts() {
        let all = built_in();
        assert_eq!(all.len(), 44);
        for l in &all {
            assert_eq!(l.templates.validate(), Ok(()), "built-in locale {}", l.tag);
            assert!(!l.name.is_empty() && !l.voice.is_empty(), "{}", l.tag);
            for (what, text) in [
                ("sms", &l.templates.sms),
                ("email_text", &l.templates.email_text),
                ("telegram", &l.templates.telegram),
                ("pairing", &l.templates.pairing),
            ] {
                let lifetime = if l.tag.as_str() == "en" {
                    "{lifetime}"
                } else {
                    "{minutes}"
                };
                assert!(
                    text.contains(lifetime),
                    "{}.{what} says no {lifetime}",
                    l.tag
                );
                // Rendered: the code and the lifetime are in it, and no
                // placeholder is left.
                let code = otp_domain::Code::parse("482910").expect("code");
                let life = otp_domain::Lifetime::parse(300, 30, 86_400).expect("lifetime");
                let out = otp_domain::template::render(text, &code, life);
                assert!(out.contains("482910"), "{}.{what}: {out}", l.tag);
                let said = if l.tag.as_str() == "en" { "300" } else { "5" };
                assert!(out.contains(said), "{}.{what}: {out}", l.tag);
                assert!(!out.contains(['{', '}']), "{}.{what}: {out}", l.tag);
                assert!(
                    out.chars().count() <= 160,
                    "{}.{what} is long: {out}",
                    l.tag
                );
            }
        }
    }

    #[test]
    fn every_region_maps_to_a_built_in_locale() {
        let served = Locales::new(
            built_in(),
            &LocaleTag::parse("en").expect("tag"),
            built_in_countries()
                .into_iter()
                .map(|(r, t)| (r, LocaleTag::parse(&t).expect("tag"))),
        )
        .expect("the shipped map is servable");
        for (region, tag) in [
            ("DE", "de"),
            ("AT", "de"),
            ("BR", "pt-BR"),
            ("PT", "pt"),
            ("MX", "es"),
            ("FR", "fr"),
            ("SN", "fr"),
            ("EG", "ar"),
            ("JP", "ja"),
            ("CN", "zh-CN"),
            ("HK", "zh-HK"),
            ("TW", "zh-HK"),
            ("KZ", "ru"),
            ("IN", "en-GB"),
            ("GB", "en-GB"),
            ("UA", "uk"),
            ("IL", "he"),
            ("US", "en"),
            // Not in the map: the default.
            ("BG", "en"),
        ] {
            assert_eq!(
                served.for_region(Some(region)).tag.as_str(),
                tag,
                "{region}"
            );
        }
    }
}
