//! Times as Twilio renders them: RFC 3339 in UTC, to the second
//! (`2015-07-30T20:00:00Z`).

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;

/// A time in a resource, rendered once when the resource is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateTime(String);

impl DateTime {
    /// From milliseconds since the Unix epoch, to the second.
    pub fn from_millis(millis: u64) -> Self {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
        DateTime(humantime::format_rfc3339_seconds(at).to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Type for DateTime {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "date-time".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "date-time")))
    }

    fn register(_registry: &mut Registry) {}

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ToJSON for DateTime {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

impl ParseFromJSON for DateTime {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(s)) if humantime::parse_rfc3339(&s).is_ok() => Ok(DateTime(s)),
            _ => Err(ParseError::custom("expected an RFC 3339 time")),
        }
    }
}

/// As [`ToJSON`] renders it, for the resources serde writes.
impl serde::Serialize for DateTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_utc_to_the_second() {
        let t = DateTime::from_millis(1_438_286_400_999);
        assert_eq!(t.as_str(), "2015-07-30T20:00:00Z");
        assert_eq!(
            t.to_json(),
            Some(Value::String("2015-07-30T20:00:00Z".into()))
        );
        assert_eq!(
            serde_json::to_string(&t).expect("serializes"),
            "\"2015-07-30T20:00:00Z\""
        );
    }

    #[test]
    fn parses_only_rfc3339() {
        let back = DateTime::parse_from_json(Some(Value::String("2015-07-30T20:00:00Z".into())))
            .expect("an RFC 3339 time parses");
        assert_eq!(back, DateTime::from_millis(1_438_286_400_000));
        assert!(DateTime::parse_from_json(Some(Value::String("yesterday".into()))).is_err());
        assert!(DateTime::parse_from_json(Some(Value::from(5))).is_err());
        assert!(DateTime::parse_from_json(None).is_err());
    }
}
