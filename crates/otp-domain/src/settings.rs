//! [`FieldError`]: what an adapter's settings check reports.
//!
//! Every adapter checks its own settings once at start. It names the bad
//! field relative to its own section (`auth_token`, `headers.X-Key`),
//! since it does not know where the server mounts it; the server prefixes
//! the section (`sms.twilio`) and so names the full key. One shared type
//! rather than one per adapter, so the server maps them all in one place.

use std::borrow::Cow;
use std::fmt;

/// A bad field of an adapter's settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct FieldError {
    /// Relative to the adapter's section, e.g. `auth_token`.
    pub field: Cow<'static, str>,
    pub problem: FieldProblem,
}

impl FieldError {
    pub fn new(field: impl Into<Cow<'static, str>>, problem: FieldProblem) -> Self {
        FieldError {
            field: field.into(),
            problem,
        }
    }

    /// The same error with `section.` before the field, and before the
    /// other field a problem names.
    pub fn within(mut self, section: &str) -> Self {
        let prefixed = |field: &str| Cow::Owned(format!("{section}.{field}"));
        self.field = prefixed(&self.field);
        match &mut self.problem {
            FieldProblem::RequiredWith(other) | FieldProblem::RequiredWithout(other) => {
                *other = prefixed(other);
            }
            _ => {}
        }
        self
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    /// Unset or empty, but needed.
    Required,
    /// Needed because this other field is set.
    RequiredWith(Cow<'static, str>),
    /// Needed because this other field, an alternative, is not set.
    RequiredWithout(Cow<'static, str>),
    /// Needed for this use: `RequiredFor("voice calls")`.
    RequiredFor(&'static str),
    /// Not an `http://` or `https://` URL with a host.
    NotHttpUrl,
    /// Must be at least this number.
    AtLeast(u64),
    /// Must lie in `min..=max`.
    OutOfRange { min: u64, max: u64 },
    /// Any other rule, as the rest of "must …": `Must("be letters and
    /// digits (AC…)")`.
    Must(Cow<'static, str>),
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldProblem::Required => f.write_str("is required"),
            FieldProblem::RequiredWith(other) => write!(f, "is required when {other} is set"),
            FieldProblem::RequiredWithout(other) => {
                write!(f, "is required when {other} is not set")
            }
            FieldProblem::RequiredFor(what) => write!(f, "is required for {what}"),
            FieldProblem::NotHttpUrl => f.write_str("must be an http:// or https:// URL"),
            FieldProblem::AtLeast(min) => write!(f, "must be at least {min}"),
            FieldProblem::OutOfRange { min, max } => write!(f, "must be {min} to {max}"),
            FieldProblem::Must(rule) => write!(f, "must {rule}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_error_reads_as_a_sentence_and_takes_its_section() {
        let e = FieldError::new("auth_token", FieldProblem::Required);
        assert_eq!(e.to_string(), "auth_token is required");
        assert_eq!(
            e.within("sms.twilio").to_string(),
            "sms.twilio.auth_token is required"
        );
        let e = FieldError::new(
            "from",
            FieldProblem::RequiredWithout("messaging_service_sid".into()),
        );
        assert_eq!(
            e.to_string(),
            "from is required when messaging_service_sid is not set"
        );
        assert_eq!(
            e.within("sms.twilio").to_string(),
            "sms.twilio.from is required when sms.twilio.messaging_service_sid is not set"
        );
        assert_eq!(
            FieldError::new("repeat", FieldProblem::OutOfRange { min: 1, max: 10 }).to_string(),
            "repeat must be 1 to 10"
        );
    }
}
