//! Parsed newtypes. Each has a private field and a `parse` that returns a
//! typed [`ParseError`]; nothing downstream re-checks a value of these types.

use std::fmt;

use crate::error::ParseError;

/// The four delivery channels. SMS and voice share the phone destination
/// type but keep separate codes, as the seed API checks them separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Call,
    Email,
    Telegram,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Call => "call",
            Channel::Email => "email",
            Channel::Telegram => "telegram",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A region for numbers typed without a country code (`KZ`, `DE`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region(phonenumber::country::Id);

impl Region {
    /// Parses an ISO 3166 alpha-2 code.
    ///
    /// # Errors
    /// An unknown code.
    pub fn parse(code: &str) -> Result<Self, ParseError> {
        code.trim()
            .to_ascii_uppercase()
            .parse()
            .map(Region)
            .map_err(|_| ParseError::Phone("unknown region code"))
    }

    /// The ISO 3166 alpha-2 code, upper case (`KZ`).
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }
}

/// A valid phone number in E.164 form, always with the leading `+`.
///
/// The seed sends international numbers without the `+`
/// (`77011234567`); that and `+77011234567` parse to the same value.
/// Spaces, dashes, dots and parentheses are ignored, as people type them.
/// Numbers are checked against libphonenumber's metadata.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone {
    e164: String,
    calling_code: u16,
}

impl Phone {
    /// Parses an international number (with or without `+`).
    ///
    /// # Errors
    /// Anything that is not a valid number.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        Self::parse_in(input, None)
    }

    /// Parses an international number, or, when that fails and a default
    /// region is given, a national number of that region.
    ///
    /// # Errors
    /// Anything that is not a valid number.
    pub fn parse_in(input: &str, default_region: Option<Region>) -> Result<Self, ParseError> {
        let trimmed = input.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => {
                    return Err(ParseError::Phone(
                        "a phone may hold only digits and an optional leading +",
                    ))
                }
            }
        }
        // Bounds before libphonenumber sees the input: E.164 has at most
        // 15 digits, and no real number has fewer than 4.
        if !(4..=15).contains(&digits.len()) {
            return Err(ParseError::Phone("a phone must have 4 to 15 digits"));
        }
        let international = format!("+{digits}");
        let mut candidates = vec![(None, international.as_str())];
        if !plus {
            if let Some(region) = default_region {
                candidates.push((Some(region.0), digits.as_str()));
            }
        }
        let valid: Vec<Phone> = candidates
            .into_iter()
            .filter_map(|(region, text)| phonenumber::parse(region, text).ok())
            .filter(phonenumber::is_valid)
            .map(|number| Phone {
                e164: number.format().mode(phonenumber::Mode::E164).to_string(),
                calling_code: number.code().value(),
            })
            .collect();
        match valid.as_slice() {
            [] => Err(ParseError::Phone("not a valid phone number")),
            [only] => Ok(only.clone()),
            // Valid as an international number and as a national one of
            // the default region, and they differ: guessing could send the
            // code (and the bill) to another country.
            [first, rest @ ..] if rest.iter().all(|p| p == first) => Ok(first.clone()),
            _ => Err(ParseError::Phone(
                "ambiguous: valid both as an international and as a national number; add + and the country code",
            )),
        }
    }

    /// The E.164 form, with `+`.
    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The country calling code (`7` for `+77011234567`).
    pub fn calling_code(&self) -> u16 {
        self.calling_code
    }

    /// For logs: `+7701***4567`.
    pub fn masked(&self) -> String {
        mask_middle(&self.e164, 5, 4)
    }

    /// The region the number belongs to (`KZ` for `+77011234567`, `RU`
    /// for `+79161234567`: one calling code may serve several regions), or
    /// `None` for numbers of no region (`+800` freephone). A calling code
    /// of one region is a table lookup; a shared one (`+1`, `+7`, `+44`)
    /// takes a libphonenumber parse (microseconds).
    pub fn region(&self) -> Option<Region> {
        let regions = phonenumber::metadata::DATABASE.region(&self.calling_code);
        if let Some([only]) = regions.as_deref() {
            return only.parse().ok().map(Region);
        }
        phonenumber::parse(None, &self.e164)
            .ok()
            .and_then(|n| n.country().id())
            .map(Region)
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

/// An email address, validated to the practical subset providers accept
/// and lower-cased, so `Foo@Example.com` and `foo@example.com` share a code.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let s = input.trim().to_ascii_lowercase();
        if s.is_empty() || s.len() > 254 {
            return Err(ParseError::Email("an email must be 1 to 254 characters"));
        }
        let (local, domain) = s
            .rsplit_once('@')
            .ok_or(ParseError::Email("an email needs an @"))?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        if !local_ok {
            return Err(ParseError::Email(
                "the part before @ is not a valid mailbox",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !domain_ok {
            return Err(ParseError::Email("the part after @ is not a valid domain"));
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs: `f***@example.com`.
    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".to_owned(),
        }
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

/// A Telegram chat id: a non-zero integer of at most 15 digits, negative
/// for groups. Telegram's ids fit in 52 bits and have at most 13 digits
/// today; the bound keeps every id exact as a JSON number.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChatId(i64);

impl ChatId {
    /// The largest id, in either sign.
    pub const MAX: i64 = 999_999_999_999_999;

    /// Parses `-?[1-9][0-9]{0,14}`, around which spaces are ignored.
    ///
    /// # Errors
    /// Anything else.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let s = input.trim();
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::ChatId("a chat_id must be an integer"));
        }
        if digits.starts_with('0') {
            return Err(ParseError::ChatId(
                "a chat_id cannot be 0 or start with a 0",
            ));
        }
        if digits.len() > 15 {
            return Err(ParseError::ChatId("a chat_id has at most 15 digits"));
        }
        let n: i64 = s
            .parse()
            .map_err(|_| ParseError::ChatId("a chat_id must be an integer"))?;
        Self::from_i64(n)
    }

    /// # Errors
    /// 0, or more than 15 digits.
    pub fn from_i64(n: i64) -> Result<Self, ParseError> {
        if n == 0 {
            return Err(ParseError::ChatId("a chat_id cannot be 0"));
        }
        if !(-Self::MAX..=Self::MAX).contains(&n) {
            return Err(ParseError::ChatId("a chat_id has at most 15 digits"));
        }
        Ok(ChatId(n))
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// Private chats have positive ids; groups and channels negative ones.
    pub fn is_private(self) -> bool {
        self.0 > 0
    }

    pub fn masked(self) -> String {
        mask_middle(&self.0.to_string(), 2, 2)
    }
}

impl fmt::Debug for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChatId({})", self.masked())
    }
}

/// A one-time code as the user types it: 4 to 12 printable ASCII
/// characters without spaces. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl Code {
    pub const MIN_LEN: usize = 4;
    pub const MAX_LEN: usize = 12;

    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let s = input;
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len()) {
            return Err(ParseError::Code("a password must be 4 to 12 characters"));
        }
        if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ParseError::Code(
                "a password may hold only printable ASCII without spaces",
            ));
        }
        Ok(Code(s.to_owned()))
    }

    /// The code itself, for hashing and for the outgoing message only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code(***)")
    }
}

/// How long a code stays checkable, in seconds, inside the policy's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(u32);

impl Lifetime {
    pub fn parse(secs: i64, min: u32, max: u32) -> Result<Self, ParseError> {
        if secs < i64::from(min) || secs > i64::from(max) {
            return Err(ParseError::Lifetime { min, max });
        }
        // In range of u32 because max is a u32.
        Ok(Lifetime(
            u32::try_from(secs).map_err(|_| ParseError::Lifetime { min, max })?,
        ))
    }

    pub fn secs(self) -> u32 {
        self.0
    }

    pub fn millis(self) -> u64 {
        u64::from(self.0) * 1000
    }
}

/// Where a code goes. The variant names the channel, so a phone can never
/// be sent an email.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Sms(Phone),
    Call(Phone),
    Email(Email),
    Telegram(ChatId),
}

impl Destination {
    /// Parses the address a request gave for `channel`: a phone for SMS
    /// and voice, an email, or a Telegram chat id.
    ///
    /// # Errors
    /// The [`ParseError`] of the address type.
    pub fn parse(channel: Channel, address: &str) -> Result<Self, ParseError> {
        Self::parse_in(channel, address, None)
    }

    /// As [`Destination::parse`], with a default region for phones.
    ///
    /// # Errors
    /// The [`ParseError`] of the address type.
    pub fn parse_in(
        channel: Channel,
        address: &str,
        region: Option<Region>,
    ) -> Result<Self, ParseError> {
        Ok(match channel {
            Channel::Sms => Destination::Sms(Phone::parse_in(address, region)?),
            Channel::Call => Destination::Call(Phone::parse_in(address, region)?),
            Channel::Email => Destination::Email(Email::parse(address)?),
            Channel::Telegram => Destination::Telegram(ChatId::parse(address)?),
        })
    }

    pub fn channel(&self) -> Channel {
        match self {
            Destination::Sms(_) => Channel::Sms,
            Destination::Call(_) => Channel::Call,
            Destination::Email(_) => Channel::Email,
            Destination::Telegram(_) => Channel::Telegram,
        }
    }

    /// The address the provider needs: E.164 phone, email or chat id.
    pub fn address(&self) -> String {
        match self {
            Destination::Sms(p) | Destination::Call(p) => p.as_str().to_owned(),
            Destination::Email(e) => e.as_str().to_owned(),
            Destination::Telegram(c) => c.get().to_string(),
        }
    }

    /// The store key of this destination's code: `sms:+77011234567`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.channel(), self.address())
    }

    /// The destination with its middle hidden, for logs.
    pub fn masked(&self) -> String {
        match self {
            Destination::Sms(p) | Destination::Call(p) => p.masked(),
            Destination::Email(e) => e.masked(),
            Destination::Telegram(c) => c.masked(),
        }
    }
}

fn mask_middle(s: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= head + tail {
        return "***".to_owned();
    }
    let start: String = chars[..head].iter().collect();
    let end: String = chars[chars.len() - tail..].iter().collect();
    format!("{start}***{end}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_digits_and_e164_are_the_same_phone() {
        assert_eq!(
            Phone::parse("77011234567").ok(),
            Phone::parse("+7 701 123-45-67").ok()
        );
        assert_eq!(
            Phone::parse("77011234567").map(|p| p.as_str().to_owned()),
            Ok("+77011234567".to_owned())
        );
    }

    #[test]
    fn bad_phones_are_refused() {
        for bad in [
            "",
            "abc",
            "+",
            "123",
            "+0123456789",
            "7701123456789012",
            "7701x234567",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn a_phone_knows_its_region_even_where_regions_share_a_calling_code() {
        let region = |p: &str| {
            Phone::parse(p)
                .expect("valid")
                .region()
                .map(|r| r.as_str().to_owned())
        };
        assert_eq!(region("77011234567").as_deref(), Some("KZ"));
        assert_eq!(region("+79161234567").as_deref(), Some("RU"));
        assert_eq!(region("+4915123456789").as_deref(), Some("DE"));
        assert_eq!(region("+12025550123").as_deref(), Some("US"));
        assert_eq!(region("+14165550123").as_deref(), Some("CA"));
        assert_eq!(region("+80012345678"), None, "freephone has no region");
        assert_eq!(region("+447400123456").as_deref(), Some("GB"));
        assert_eq!(region("+447781123456").as_deref(), Some("GG"));
        assert_eq!(region("+33612345678").as_deref(), Some("FR"));
    }

    #[test]
    fn phone_is_masked_in_logs() {
        let p = Phone::parse("77011234567").expect("valid");
        assert_eq!(p.masked(), "+7701***4567");
        assert_eq!(format!("{p:?}"), "Phone(+7701***4567)");
    }

    #[test]
    fn emails_are_validated_and_lowercased() {
        let e = Email::parse(" FooBar@Example.com ").expect("valid");
        assert_eq!(e.as_str(), "foobar@example.com");
        assert_eq!(e.masked(), "f***@example.com");
        for bad in [
            "",
            "foo",
            "foo@",
            "@example.com",
            "foo@example",
            "foo@-example.com",
            "fo o@example.com",
            "foo@example.com\r\nBcc: x@y.z",
            "a..b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn chat_ids_are_integers_and_groups_are_negative() {
        assert_eq!(ChatId::parse("1234567890").map(ChatId::get), Ok(1234567890));
        let group = ChatId::parse("-100123").expect("valid");
        assert!(!group.is_private());
        assert!(ChatId::parse("abc").is_err());
        assert!(ChatId::parse("0").is_err());
        assert_eq!(
            ChatId::parse(" -1001234567890 ").map(ChatId::get),
            Ok(-1001234567890)
        );
        assert_eq!(
            ChatId::parse("999999999999999").map(ChatId::get),
            Ok(ChatId::MAX)
        );
        for bad in ["", "-", "+5", "05", "-0", "1000000000000000", "1e3", "1 2"] {
            assert!(ChatId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ChatId::from_i64(ChatId::MAX + 1).is_err());
        assert!(ChatId::from_i64(-ChatId::MAX).is_ok());
    }

    #[test]
    fn codes_are_printable_ascii_of_bounded_length() {
        assert!(Code::parse("12345").is_ok());
        assert!(Code::parse("AB7K-92Q").is_ok());
        for bad in ["123", "1234567890123", "12 34", "12\u{e9}45", "1234\n"] {
            assert!(Code::parse(bad).is_err(), "{bad:?} should fail");
        }
        let c = Code::parse("12345").expect("valid");
        assert!(!format!("{c:?}").contains("12345"));
    }

    #[test]
    fn lifetime_respects_bounds() {
        assert_eq!(Lifetime::parse(300, 30, 86400).map(Lifetime::secs), Ok(300));
        assert!(Lifetime::parse(0, 30, 86400).is_err());
        assert!(Lifetime::parse(86401, 30, 86400).is_err());
        assert!(Lifetime::parse(-5, 30, 86400).is_err());
    }

    #[test]
    fn destination_parses_the_address_of_its_channel() {
        let d = Destination::parse(Channel::Call, "77011234567").expect("valid");
        assert_eq!(d.channel(), Channel::Call);
        assert_eq!(d.address(), "+77011234567");
        assert!(Destination::parse(Channel::Email, "77011234567").is_err());
        assert!(Destination::parse(Channel::Telegram, "foo@example.com").is_err());
    }

    #[test]
    fn destination_key_names_channel_and_address() {
        let p = Phone::parse("77011234567").expect("valid");
        assert_eq!(Destination::Sms(p.clone()).key(), "sms:+77011234567");
        assert_eq!(Destination::Call(p).key(), "call:+77011234567");
    }
}
