//! Request fields whose schemas state every constraint the server
//! enforces, so a client generated from the spec (or a fuzzer) knows what
//! is accepted. The checks themselves stay in the domain's parsers, the
//! one place that enforces them: these types only carry the raw value
//! and its documentation. (A `pattern` validator would also make
//! poem-openapi compile a regex on every request.)
//!
//! Two constraints cannot be a JSON Schema: that a phone number is one
//! libphonenumber knows (`format: phone`), and that an email's part
//! before `@` has at most 64 characters (`format: otpd-email`, stated in
//! the description).

use std::borrow::Cow;
use std::marker::PhantomData;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

/// Which JSON numbers a field also takes, as their decimal digits (old
/// clients send phones and passwords as numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbers {
    No,
    Unsigned,
    Signed,
}

/// What one kind of field is and how the spec describes it.
pub trait FieldSpec: Send + Sync + 'static {
    const NAME: &'static str;
    const NUMBERS: Numbers;
    fn schema() -> MetaSchema;
}

/// A raw field value; the domain parses it.
pub struct Field<S>(pub String, PhantomData<S>);

impl<S> Field<S> {
    pub fn new(value: impl Into<String>) -> Self {
        Field(value.into(), PhantomData)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl<S> Clone for Field<S> {
    fn clone(&self) -> Self {
        Field::new(self.0.clone())
    }
}

impl<S> std::fmt::Debug for Field<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords travel in these: never print a value.
        f.write_str("Field(***)")
    }
}

impl<S: FieldSpec> Type for Field<S> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        S::NAME.into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(S::schema()))
    }

    fn register(_registry: &mut Registry) {}

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<S: FieldSpec> ParseFromJSON for Field<S> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match (value, S::NUMBERS) {
            (Some(Value::String(s)), _) => Ok(Field::new(s)),
            (Some(Value::Number(n)), Numbers::Unsigned) if n.is_u64() => {
                Ok(Field::new(n.to_string()))
            }
            (Some(Value::Number(n)), Numbers::Signed) if n.is_i64() => {
                Ok(Field::new(n.to_string()))
            }
            // Never echo the value: it may be a password.
            (_, Numbers::No) => Err(ParseError::custom("expected a string")),
            _ => Err(ParseError::custom("expected a string or an integer")),
        }
    }
}

impl<S: FieldSpec> ParseFromParameter for Field<S> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Field::new(value))
    }
}

impl<S: FieldSpec> ToJSON for Field<S> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// As [`ToJSON`] renders it: the string (for answers written by serde).
/// Only for times: a password travels in a `Field` too, and serde is what
/// a log or audit line would reach for.
impl serde::Serialize for Field<DateTimeSpec> {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        serializer.serialize_str(&self.0)
    }
}

fn string(pattern: Option<&str>, max_length: Option<usize>) -> MetaSchema {
    let mut s = MetaSchema::new("string");
    s.pattern = pattern.map(str::to_owned);
    s.max_length = max_length;
    s
}

fn integer(minimum: i64, maximum: i64) -> MetaSchemaRef {
    // No `format: int64`: the bounds say more, and inside an `anyOf` with a
    // string branch a fuzzer's "violates int64" value (a string) is valid
    // by the other branch.
    let mut s = MetaSchema::new("integer");
    // Both bounds are below 2^53, so they are exact as JSON numbers.
    s.minimum = Some(minimum as f64);
    s.maximum = Some(maximum as f64);
    MetaSchemaRef::Inline(Box::new(s))
}

fn any_of(
    description: &'static str,
    example: Value,
    alternatives: Vec<MetaSchemaRef>,
) -> MetaSchema {
    let mut s = MetaSchema::ANY;
    s.description = Some(description);
    s.example = Some(example);
    s.any_of = alternatives;
    s
}

/// A phone number: what `otp_domain::Phone::parse` takes on send, and
/// `otp_domain::CheckTarget::parse_in` on check.
pub struct PhoneSpec;

impl FieldSpec for PhoneSpec {
    const NAME: &'static str = "phone";
    const NUMBERS: Numbers = Numbers::Unsigned;

    fn schema() -> MetaSchema {
        // An optional +, then 4 to 15 digits; spaces, dots, dashes and
        // parentheses are ignored, as people type them.
        let mut s = string(Some(r"^\s*\+?[ ().-]*([0-9][ ().-]*){4,15}\s*$"), None);
        s.format = Some("phone");
        s.description = Some(
            "Phone number, international with or without + (`+77011234567`, `77011234567`), or national when otp.default_region is set. \
             A send needs a number libphonenumber knows as valid (format `phone`; 400 otherwise). A check needs only this pattern and does not validate the number: \
             a check for a number no send accepts answers 404, as for any number without a code. \
             Old clients may send it as a JSON integer.",
        );
        s.example = Some(Value::String("77011234567".into()));
        s
    }
}

/// An email address: what `otp_domain::Email::parse` takes.
pub struct EmailSpec;

/// The domain's mailbox rule: dot-separated atoms of these characters.
const ATOM: &str = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
/// A DNS label: letters, digits and inner dashes, at most 63 characters.
const LABEL: &str = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";

impl FieldSpec for EmailSpec {
    const NAME: &'static str = "email";
    const NUMBERS: Numbers = Numbers::No;

    fn schema() -> MetaSchema {
        let pattern = format!(r"^\s*{ATOM}(\.{ATOM})*@{LABEL}(\.{LABEL})+\s*$");
        let mut s = string(Some(&pattern), Some(254));
        // Not `email`: that format admits no surrounding spaces, and has
        // no room for the 64-character mailbox limit.
        s.format = Some("otpd-email");
        s.description = Some(
            "Email address, at most 254 characters, at most 64 of them before the @ (format `otpd-email`). Case and surrounding spaces do not matter.",
        );
        s.example = Some(Value::String("foobar@example.com".into()));
        s
    }
}

/// A code as the user typed it: what `otp_domain::Code::parse` takes.
pub struct PasswordSpec;

impl FieldSpec for PasswordSpec {
    const NAME: &'static str = "password";
    const NUMBERS: Numbers = Numbers::Unsigned;

    fn schema() -> MetaSchema {
        any_of(
            "The code: 4 to 12 printable ASCII characters without spaces, or a JSON integer of 4 to 12 digits.",
            Value::String("12345".into()),
            vec![
                MetaSchemaRef::Inline(Box::new(string(Some(r"^[!-~]{4,12}$"), Some(12)))),
                integer(1_000, 999_999_999_999),
            ],
        )
    }
}

/// A Telegram chat id: what `otp_domain::ChatId::parse` takes.
pub struct ChatIdSpec;

impl FieldSpec for ChatIdSpec {
    const NAME: &'static str = "chat_id";
    const NUMBERS: Numbers = Numbers::Signed;

    fn schema() -> MetaSchema {
        any_of(
            "Telegram chat id: a non-zero integer of at most 15 digits, negative for groups; as a string (as the seed sends it) or a JSON integer.",
            Value::String("1234567890".into()),
            vec![
                MetaSchemaRef::Inline(Box::new(string(
                    Some(r"^\s*-?[1-9][0-9]{0,14}\s*$"),
                    None,
                ))),
                integer(1, otp_domain::ChatId::MAX),
                integer(-otp_domain::ChatId::MAX, -1),
            ],
        )
    }
}

pub type PhoneField = Field<PhoneSpec>;
pub type EmailField = Field<EmailSpec>;
pub type PasswordField = Field<PasswordSpec>;
pub type ChatIdField = Field<ChatIdSpec>;

/// Free text with a length limit (in characters), e.g. a message.
/// Checked by the domain, which refuses longer texts.
macro_rules! text_field {
    ($spec:ident, $field:ident, $name:literal, $max:expr, $pattern:expr, $doc:literal) => {
        pub struct $spec;

        impl FieldSpec for $spec {
            const NAME: &'static str = $name;
            const NUMBERS: Numbers = Numbers::No;

            fn schema() -> MetaSchema {
                let mut s = string($pattern, Some($max));
                s.description = Some($doc);
                s
            }
        }

        pub type $field = Field<$spec>;
    };
}

text_field!(
    PhoneMessageSpec,
    PhoneMessage,
    "phone_message",
    1600,
    None,
    "Text to send, at most 1600 characters; `{password}` and `{lifetime}` are filled in. Default from config."
);
text_field!(
    TelegramMessageSpec,
    TelegramMessage,
    "telegram_message",
    4096,
    None,
    "Text to send, at most 4096 characters; `{password}` and `{lifetime}` are filled in. Default from config."
);
text_field!(
    EmailTextSpec,
    EmailText,
    "email_text",
    10_000,
    None,
    "Body text, at most 10000 characters; `{password}` and `{lifetime}` are filled in. Default from config."
);
text_field!(
    SubjectSpec,
    Subject,
    "subject",
    255,
    Some(r"^[^\r\n]*$"),
    "Subject line: one line of at most 255 characters; placeholders are filled in. Default from config."
);

/// A message's locale: a BCP-47 tag that a served locale matches.
pub struct LocaleFieldSpec;

impl FieldSpec for LocaleFieldSpec {
    const NAME: &'static str = "locale";
    const NUMBERS: Numbers = Numbers::No;

    fn schema() -> MetaSchema {
        let mut s = string(Some(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$"), Some(35));
        // Which tags are served is the deployment's (GET /locales), which
        // no pattern states: a format names the rule.
        s.format = Some("otpd-locale");
        s.description = Some(
            "The message's language, a BCP-47 tag such as `de`, `pt-BR` or `zh-Hant-HK`, matched case-insensitively (`_` for `-` too) and along its fallback chain (`pt-BR` → `pt`). \
             Format `otpd-locale`: a tag that a locale of `GET /locales` matches after fallback; a well-formed tag that none matches is 400 `unsupported_locale`. \
             Default: for a phone, the locale of its country; otherwise `templates.default_locale`. A request's own message text is sent as given, whatever the locale.",
        );
        s.example = Some(Value::String("pt-BR".into()));
        s
    }
}

pub type LocaleField = Field<LocaleFieldSpec>;

/// Free text without a limit of its own (the body limit bounds it).
pub struct PlainTextSpec;

impl FieldSpec for PlainTextSpec {
    const NAME: &'static str = "text";
    const NUMBERS: Numbers = Numbers::No;

    fn schema() -> MetaSchema {
        MetaSchema::new("string")
    }
}

pub type PlainText = Field<PlainTextSpec>;

/// A point in time, RFC 3339 in UTC (`2026-11-29T17:05:00Z`).
pub struct DateTimeSpec;

impl FieldSpec for DateTimeSpec {
    const NAME: &'static str = "date-time";
    const NUMBERS: Numbers = Numbers::No;

    fn schema() -> MetaSchema {
        MetaSchema::new_with_format("string", "date-time")
    }
}

pub type DateTime = Field<DateTimeSpec>;

impl Field<DateTimeSpec> {
    /// From milliseconds since the Unix epoch, to the second.
    pub fn from_millis(millis: u64) -> Self {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
        Field::new(humantime::format_rfc3339_seconds(at).to_string())
    }

    /// From milliseconds since the Unix epoch, to the millisecond: for
    /// timelines, where events a few ms apart must stay in order.
    pub fn from_millis_precise(millis: u64) -> Self {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
        Field::new(humantime::format_rfc3339_millis(at).to_string())
    }
}

/// An optional field: absent or `null` both mean "not given", as they
/// always have for otpd's clients; the spec says so with `nullable`.
#[derive(Debug)]
pub struct Optional<T>(pub Option<T>);

impl<T: Type> Type for Optional<T> {
    const IS_REQUIRED: bool = false;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        format!("optional_{}", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        match T::schema_ref() {
            MetaSchemaRef::Inline(mut schema) => {
                schema.nullable = true;
                MetaSchemaRef::Inline(schema)
            }
            // OpenAPI 3.0 ignores siblings of $ref: wrap it.
            reference => {
                let mut schema = MetaSchema::ANY;
                schema.all_of = vec![reference];
                schema.nullable = true;
                MetaSchemaRef::Inline(Box::new(schema))
            }
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().and_then(Type::as_raw_value)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Some(value) => value.raw_element_iter(),
            None => Box::new(std::iter::empty()),
        }
    }
}

impl<T: ParseFromJSON> ParseFromJSON for Optional<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            None | Some(Value::Null) => Ok(Optional(None)),
            Some(value) => T::parse_from_json(Some(value))
                .map(|v| Optional(Some(v)))
                .map_err(ParseError::propagate),
        }
    }
}

impl<T: ToJSON> ToJSON for Optional<T> {
    fn to_json(&self) -> Option<Value> {
        self.0.as_ref().and_then(ToJSON::to_json)
    }
}

/// The default lifetime bounds (`otp.lifetime_min`, `otp.lifetime_max` in
/// config/default.toml), which the committed spec shows.
pub const LIFETIME_MIN: i64 = 30;
pub const LIFETIME_MAX: i64 = 86_400;

/// Seconds a code stays valid; the domain checks the configured bounds.
#[derive(Debug, Clone, Copy)]
pub struct LifetimeField(pub i64);

impl Type for LifetimeField {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "lifetime".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut s = MetaSchema::new_with_format("integer", "int64");
        s.minimum = Some(LIFETIME_MIN as f64);
        s.maximum = Some(LIFETIME_MAX as f64);
        s.description = Some(
            "Seconds the code stays valid: otp.lifetime_min to otp.lifetime_max (the spec shows the defaults). Default otp.lifetime_default.",
        );
        s.example = Some(Value::from(300));
        MetaSchemaRef::Inline(Box::new(s))
    }

    fn register(_registry: &mut Registry) {}

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for LifetimeField {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.as_ref().and_then(Value::as_i64) {
            Some(n) => Ok(LifetimeField(n)),
            None => Err(ParseError::custom("expected an integer")),
        }
    }
}

impl ToJSON for LifetimeField {
    fn to_json(&self) -> Option<Value> {
        Some(Value::from(self.0))
    }
}

/// A send body whose text field must carry `{password}` when the request
/// gives no password (else the generated code would reach nobody).
pub trait TemplatedBody {
    /// The field holding the text: `message` or `text`.
    const TEXT_FIELD: &'static str;
}

/// A send body with that rule in its schema: `password` is given, or the
/// text field is absent or contains `{password}`.
pub struct SendBody<T>(pub T);

impl<T: Type + TemplatedBody> Type for SendBody<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        // A password that is given and not null.
        let mut with_password = MetaSchema::ANY;
        with_password.required = vec!["password"];
        with_password.properties = vec![(
            "password",
            MetaSchemaRef::Inline(Box::new(PasswordSpec::schema())),
        )];
        // A text that is absent, null, or carries the placeholder.
        let mut text = MetaSchema::new("string");
        text.nullable = true;
        text.pattern = Some(r"\{password\}".to_owned());
        let mut with_placeholder = MetaSchema::ANY;
        with_placeholder.properties = vec![(T::TEXT_FIELD, MetaSchemaRef::Inline(Box::new(text)))];
        let mut rule = MetaSchema::ANY;
        rule.description = Some(
            "Without a password, the text must contain {password}, or be left out (the configured template has it).",
        );
        rule.any_of = vec![
            MetaSchemaRef::Inline(Box::new(with_password)),
            MetaSchemaRef::Inline(Box::new(with_placeholder)),
        ];
        let mut s = MetaSchema::ANY;
        s.all_of = vec![T::schema_ref(), MetaSchemaRef::Inline(Box::new(rule))];
        MetaSchemaRef::Inline(Box::new(s))
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_raw_value()
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        self.0.raw_element_iter()
    }
}

impl<T: ParseFromJSON + TemplatedBody> ParseFromJSON for SendBody<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        T::parse_from_json(value)
            .map(SendBody)
            .map_err(ParseError::propagate)
    }
}

impl<T: ToJSON + TemplatedBody> ToJSON for SendBody<T> {
    fn to_json(&self) -> Option<Value> {
        self.0.to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(schema: &MetaSchema) -> regex::Regex {
        regex::Regex::new(schema.pattern.as_deref().expect("pattern")).expect("regex")
    }

    #[test]
    fn the_spec_s_lifetime_bounds_are_the_default_config_s() {
        use figment::providers::{Format, Toml};
        let defaults = figment::Figment::from(Toml::string(crate::config::DEFAULT_TOML));
        let bound = |key: &str| defaults.extract_inner::<i64>(key).expect("a default bound");
        assert_eq!(bound("otp.lifetime_min"), LIFETIME_MIN);
        assert_eq!(bound("otp.lifetime_max"), LIFETIME_MAX);
    }

    #[test]
    fn the_phone_pattern_counts_digits_like_the_domain() {
        let p = pattern(&PhoneSpec::schema());
        for ok in [
            "77011234567",
            "+7 (701) 123-45-67",
            "+1.415.555.2671",
            "1234",
        ] {
            assert!(p.is_match(ok), "{ok}");
        }
        for bad in [
            "123",
            "+0000000000000000",
            "7701x1234567",
            "++77011234567",
            "",
        ] {
            assert!(!p.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn the_email_pattern_follows_the_domain_rules() {
        let p = pattern(&EmailSpec::schema());
        for ok in ["foobar@example.com", "a.b+c@x-y.example", "A@B.CO"] {
            assert!(p.is_match(ok), "{ok}");
        }
        for bad in [
            "0@0", "a..b@x.y", ".a@x.y", "a@-x.y", "a@x", "a b@x.y", "a@x..y",
        ] {
            assert!(!p.is_match(bad), "{bad}");
        }
    }
}
