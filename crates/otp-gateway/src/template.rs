//! Placeholder filling for the generic gateway. The placeholders are
//! `{phone}` (E.164, with `+`), `{message}` (the text to deliver) and
//! `{locale}` (the message's BCP-47 tag, e.g. `de`).
//! Each value is escaped for the place it lands in, so a message can hold
//! quotes, `&` or line breaks without breaking the request.
//!
//! Filling is one pass over the template: a value that itself contains
//! `{phone}` is never expanded again.

use otp_domain::{FieldError, FieldProblem};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 3] = ["phone", "message", "locale"];

/// Everything but RFC 3986's unreserved characters is encoded, so a value
/// fits in a path segment or a query value alike.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How a value is escaped where it is put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// The inside of a JSON string literal: `"` `\` and control characters
    /// are escaped; other characters, non-ASCII included, stay as they are.
    JsonString,
    /// An `application/x-www-form-urlencoded` value (space becomes `+`).
    Form,
    /// A URL path or query value (space becomes `%20`).
    Url,
}

/// The values of one message.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    pub phone: &'a str,
    pub message: &'a str,
    pub locale: &'a str,
}

impl Values<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "phone" => Some(self.phone),
            "message" => Some(self.message),
            "locale" => Some(self.locale),
            _ => None,
        }
    }
}

/// `template` with every known placeholder replaced by its escaped value.
/// Anything else, JSON braces included, is copied as is.
pub fn fill(template: &str, values: &Values<'_>, escape: Escape) -> String {
    let mut out = String::with_capacity(template.len() + values.message.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match placeholder_at(after).and_then(|name| Some((name, values.get(name)?))) {
            Some((name, value)) => {
                push_escaped(&mut out, value, escape);
                rest = &after[name.len() + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks that `template` uses only known placeholders. `field` names
/// the setting that holds it.
///
/// # Errors
/// The field, and the unknown placeholder.
pub fn check_placeholders(template: &str, field: &'static str) -> Result<(), FieldError> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        if let Some(name) = placeholder_at(after) {
            if name == "password" || name == "code" {
                return Err(FieldError::new(
                    field,
                    FieldProblem::Must(
                        format!(
                            "not use {{{name}}}: the code is already in the message, so \
                             use {{message}}"
                        )
                        .into(),
                    ),
                ));
            }
            if !PLACEHOLDERS.contains(&name) {
                return Err(FieldError::new(
                    field,
                    FieldProblem::Must(
                        format!("use only {{phone}} and {{message}}, not {{{name}}}").into(),
                    ),
                ));
            }
        }
        rest = after;
    }
    Ok(())
}

/// The name of a `{name}` placeholder starting right after a `{`: ASCII
/// letters, digits and `_`, closed by `}`.
fn placeholder_at(after_brace: &str) -> Option<&str> {
    let close = after_brace.find('}')?;
    let name = &after_brace[..close];
    let is_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    is_name.then_some(name)
}

fn push_escaped(out: &mut String, value: &str, escape: Escape) {
    match escape {
        Escape::JsonString => push_json_string_inner(out, value),
        Escape::Form => out.extend(form_urlencoded::byte_serialize(value.as_bytes())),
        Escape::Url => out.extend(utf8_percent_encode(value, URL_VALUE)),
    }
}

fn push_json_string_inner(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Values<'static> = Values {
        phone: "+77011234567",
        message: "Код \"1234\" \\ a&b=c\nnext",
        locale: "pt-BR",
    };

    #[test]
    fn json_values_are_escaped_as_string_contents() {
        let filled = fill(
            r#"{"to":"{phone}","text":"{message}"}"#,
            &V,
            Escape::JsonString,
        );
        assert_eq!(
            filled,
            r#"{"to":"+77011234567","text":"Код \"1234\" \\ a&b=c\nnext"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&filled).expect("valid JSON");
        assert_eq!(parsed["text"], V.message);
    }

    #[test]
    fn control_characters_become_unicode_escapes() {
        let v = Values {
            message: "a\u{1}b\u{1f}",
            ..V
        };
        assert_eq!(
            fill("{message}", &v, Escape::JsonString),
            "a\\u0001b\\u001f"
        );
    }

    #[test]
    fn form_and_url_values_are_percent_encoded() {
        assert_eq!(
            fill("to={phone}&text={message}", &V, Escape::Form),
            "to=%2B77011234567&text=%D0%9A%D0%BE%D0%B4+%221234%22+%5C+a%26b%3Dc%0Anext"
        );
        assert_eq!(
            fill("https://h/send/{phone}?t={message}", &V, Escape::Url),
            "https://h/send/%2B77011234567?t=%D0%9A%D0%BE%D0%B4%20%221234%22%20%5C%20a%26b%3Dc%0Anext"
        );
    }

    #[test]
    fn values_are_not_expanded_twice_and_other_braces_stay() {
        let v = Values {
            phone: "+77011234567",
            message: "{phone}",
            locale: "{message}",
        };
        assert_eq!(
            fill("{ {message} {other} {", &v, Escape::JsonString),
            "{ {phone} {other} {"
        );
    }

    #[test]
    fn unknown_placeholders_are_named() {
        assert_eq!(check_placeholders(r#"{"to":"{phone}"}"#, "body"), Ok(()));
        let err = check_placeholders("to={phone}&pw={password}", "body")
            .expect_err("password is not available");
        assert!(
            err.to_string()
                .starts_with("body must not use {password}: the code is already"),
            "{err}"
        );
        let err = check_placeholders("{phne}", "url").expect_err("typo");
        assert_eq!(
            err.to_string(),
            "url must use only {phone} and {message}, not {phne}"
        );
    }
}
