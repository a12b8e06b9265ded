//! Parsed newtypes. Each has a private field and a `parse` that returns a
//! typed [`ParseError`]; nothing downstream re-checks a value of these types.

use std::fmt;

use crate::error::ParseError;

/// The five delivery channels. SMS, voice and WhatsApp share the phone
/// destination type but keep separate codes, as the seed API checks SMS
/// and voice separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Call,
    Email,
    Telegram,
    #[serde(rename = "whatsapp")]
    WhatsApp,
}

impl Channel {
    /// Every channel, in the order metrics and the console list them.
    pub const ALL: [Channel; 5] = [
        Channel::Sms,
        Channel::Call,
        Channel::Email,
        Channel::Telegram,
        Channel::WhatsApp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Call => "call",
            Channel::Email => "email",
            Channel::Telegram => "telegram",
            Channel::WhatsApp => "whatsapp",
        }
    }

    /// Whether its destinations are phone numbers.
    pub fn is_phone(self) -> bool {
        matches!(self, Channel::Sms | Channel::Call | Channel::WhatsApp)
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sms" => Some(Channel::Sms),
            "call" => Some(Channel::Call),
            "email" => Some(Channel::Email),
            "telegram" => Some(Channel::Telegram),
            "whatsapp" => Some(Channel::WhatsApp),
            _ => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A region for numbers typed without a country code (`KZ`, `DE`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Found by the parse that checked the number: a second parse per
    /// request costs microseconds where calling codes are shared.
    region: Option<Region>,
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
        TypedPhone::read(input)?
            .validate(default_region)
            .map_err(Rejection::into_parse_error)
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
    /// `None` for numbers of no region (`+800` freephone). It was found by
    /// the parse that checked the number.
    pub fn region(&self) -> Option<Region> {
        self.region
    }
}

/// The region of the number `e164` (with `+`) whose calling code is
/// `calling_code`: a table lookup when the code serves one region, else a
/// libphonenumber parse.
fn region_of(calling_code: u16, e164: &str) -> Option<Region> {
    let regions = phonenumber::metadata::DATABASE.region(&calling_code);
    if let Some([only]) = regions.as_deref() {
        return only.parse().ok().map(Region);
    }
    phonenumber::parse(None, e164)
        .ok()
        .and_then(|n| n.country().id())
        .map(Region)
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

/// A phone as typed, read for its shape only: an optional leading `+`,
/// then 4 to 15 digits among spaces, dashes, dots and parentheses (the
/// API spec's pattern). Cheap: no libphonenumber.
struct TypedPhone {
    plus: bool,
    digits: String,
}

/// Why libphonenumber refused a well-shaped phone.
enum Rejection {
    /// Not a valid number, read either way.
    Invalid,
    /// Valid both as an international and as a national number of the
    /// default region, and they differ.
    Ambiguous,
}

impl Rejection {
    fn into_parse_error(self) -> ParseError {
        match self {
            Rejection::Invalid => ParseError::Phone("not a valid phone number"),
            // Guessing could send the code (and the bill) to another
            // country.
            Rejection::Ambiguous => ParseError::Phone(
                "ambiguous: valid both as an international and as a national number; add + and the country code",
            ),
        }
    }
}

impl TypedPhone {
    /// # Errors
    /// A character other than digits and separators, or a digit count
    /// outside 4 to 15.
    fn read(input: &str) -> Result<Self, ParseError> {
        let trimmed = input.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(rest.len() + 1);
        digits.push('+');
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
        if !(5..=16).contains(&digits.len()) {
            return Err(ParseError::Phone("a phone must have 4 to 15 digits"));
        }
        Ok(TypedPhone { plus, digits })
    }

    /// The digits with a `+` in front: the E.164 form when the number was
    /// typed internationally and in full.
    fn international(&self) -> &str {
        &self.digits
    }

    /// Whether a default region could read this as a national number.
    fn may_be_national(&self, default_region: Option<Region>) -> bool {
        !self.plus && default_region.is_some()
    }

    /// The full check against libphonenumber's metadata: the number read
    /// internationally and, without a `+`, as a national number of the
    /// default region.
    fn validate(&self, default_region: Option<Region>) -> Result<Phone, Rejection> {
        let mut candidates = vec![(None, self.international())];
        if let (false, Some(region)) = (self.plus, default_region) {
            candidates.push((Some(region.0), &self.digits[1..]));
        }
        let valid: Vec<Phone> = candidates
            .into_iter()
            .filter_map(|(region, text)| phonenumber::parse(region, text).ok())
            .filter(phonenumber::is_valid)
            .map(|number| Phone {
                e164: number.format().mode(phonenumber::Mode::E164).to_string(),
                calling_code: number.code().value(),
                region: number.country().id().map(Region),
            })
            .collect();
        match valid.as_slice() {
            [] => Err(Rejection::Invalid),
            [only] => Ok(only.clone()),
            [first, rest @ ..] if rest.iter().all(|p| p == first) => Ok(first.clone()),
            _ => Err(Rejection::Ambiguous),
        }
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
    WhatsApp(Phone),
}

impl Destination {
    /// The phone number of an SMS, call or WhatsApp destination.
    pub fn phone(&self) -> Option<&Phone> {
        match self {
            Destination::Sms(p) | Destination::Call(p) | Destination::WhatsApp(p) => Some(p),
            Destination::Email(_) | Destination::Telegram(_) => None,
        }
    }

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
            Channel::WhatsApp => Destination::WhatsApp(Phone::parse_in(address, region)?),
        })
    }

    pub fn channel(&self) -> Channel {
        match self {
            Destination::Sms(_) => Channel::Sms,
            Destination::Call(_) => Channel::Call,
            Destination::Email(_) => Channel::Email,
            Destination::Telegram(_) => Channel::Telegram,
            Destination::WhatsApp(_) => Channel::WhatsApp,
        }
    }

    /// The address the provider needs: E.164 phone, email or chat id.
    pub fn address(&self) -> String {
        match self {
            Destination::Sms(p) | Destination::Call(p) | Destination::WhatsApp(p) => {
                p.as_str().to_owned()
            }
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
            Destination::Sms(p) | Destination::Call(p) | Destination::WhatsApp(p) => p.masked(),
            Destination::Email(e) => e.masked(),
            Destination::Telegram(c) => c.masked(),
        }
    }
}

/// What a check looks up: the store key under which a send would have
/// stored the code for the address the check was given.
///
/// A send parses its destination in full, and stores the code under the
/// destination's [`Destination::key`]. A check needs only that key, and
/// a check for an address no send accepted simply finds no code (404).
/// So a phone typed internationally (with `+`, or any phone when there is
/// no default region) is read for its shape alone, and looked up as
/// `+<digits>`: the key of every send whose number was typed in its E.164
/// form. Only when no code is stored there does
/// [`CheckTarget::resolved_key`] run the full parse, for numbers typed in
/// another form, such as a national prefix after the country code
/// (`+44 (0)20 …`), whose send stored them under the E.164 form.
///
/// A code stored under `+<digits>` belongs to that very number: only a
/// valid number's E.164 form is ever a key, and the digits typed are it.
///
/// A phone without `+` when a default region is set may be a national
/// number of that region; it is parsed in full at once, as a send parses
/// it, since the region decides its key. Emails and chat ids are cheap to
/// parse and always are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTarget {
    channel: Channel,
    lookup: Lookup,
}

#[derive(Clone, PartialEq, Eq)]
enum Lookup {
    /// Parsed as a send parses it.
    Parsed(Destination),
    /// A phone read for its shape only: `+` and its digits.
    International(String),
    /// A phone no send accepts: there is nothing to look up.
    Invalid(String),
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Parsed(d) => f.debug_tuple("Parsed").field(d).finish(),
            Lookup::International(p) => write!(f, "International({})", mask_middle(p, 5, 4)),
            Lookup::Invalid(p) => write!(f, "Invalid({})", mask_middle(p, 5, 4)),
        }
    }
}

impl CheckTarget {
    /// Reads the address a check gave for `channel`.
    ///
    /// # Errors
    /// A malformed address: for a phone, one outside the shape that
    /// [`Phone::parse_in`] also requires (an optional `+`, 4 to 15 digits
    /// and separators), or one that is ambiguous with the default region.
    /// A well-shaped phone that is not a valid number is no error: it is
    /// a target without a key.
    pub fn parse_in(
        channel: Channel,
        address: &str,
        region: Option<Region>,
    ) -> Result<Self, ParseError> {
        let phone = match channel {
            Channel::Sms => Destination::Sms,
            Channel::Call => Destination::Call,
            Channel::WhatsApp => Destination::WhatsApp,
            Channel::Email | Channel::Telegram => {
                return Destination::parse_in(channel, address, region).map(Self::from)
            }
        };
        let typed = TypedPhone::read(address)?;
        let lookup = if typed.may_be_national(region) {
            match typed.validate(region) {
                Ok(p) => Lookup::Parsed(phone(p)),
                Err(Rejection::Invalid) => Lookup::Invalid(typed.digits),
                Err(ambiguous) => return Err(ambiguous.into_parse_error()),
            }
        } else {
            Lookup::International(typed.digits)
        };
        Ok(CheckTarget { channel, lookup })
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The key to look up first; `None` when no send can have stored a
    /// code for this address.
    pub fn key(&self) -> Option<String> {
        match &self.lookup {
            Lookup::Parsed(d) => Some(d.key()),
            Lookup::International(p) => Some(format!("{}:{p}", self.channel)),
            Lookup::Invalid(_) => None,
        }
    }

    /// When [`CheckTarget::key`] held no code: the key a send would have
    /// used for this address, if that is another one. Runs the full parse;
    /// `None` for an address no send accepts.
    pub fn resolved_key(&self) -> Option<String> {
        let Lookup::International(digits) = &self.lookup else {
            return None;
        };
        let phone = TypedPhone {
            plus: true,
            digits: digits.clone(),
        }
        .validate(None)
        .ok()?;
        (phone.as_str() != digits).then(|| format!("{}:{}", self.channel, phone.as_str()))
    }

    /// The region of a phone, as [`Phone::region`] gives it for the number
    /// a send stored: calling codes are prefix-free, so the digits' first
    /// one to three name theirs. `None` for emails, chat ids and phones no
    /// send accepts.
    pub fn region(&self) -> Option<Region> {
        match &self.lookup {
            Lookup::Parsed(d) if d.phone().is_some() => d.phone().and_then(Phone::region),
            Lookup::Parsed(_) | Lookup::Invalid(_) => None,
            Lookup::International(digits) => (2..=4)
                .filter_map(|end| digits.get(1..end)?.parse::<u16>().ok())
                .find(|code| phonenumber::metadata::DATABASE.region(code).is_some())
                .and_then(|code| region_of(code, digits)),
        }
    }

    /// The address with its middle hidden, for logs.
    pub fn masked(&self) -> String {
        match &self.lookup {
            Lookup::Parsed(d) => d.masked(),
            Lookup::International(p) | Lookup::Invalid(p) => mask_middle(p, 5, 4),
        }
    }
}

impl From<Destination> for CheckTarget {
    fn from(destination: Destination) -> Self {
        CheckTarget {
            channel: destination.channel(),
            lookup: Lookup::Parsed(destination),
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

/// `vrf_` and 128 random bits as 32 lowercase hex digits: URL-safe and
/// unguessable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerificationId([u8; 16]);

impl VerificationId {
    pub const PREFIX: &'static str = "vrf_";

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        VerificationId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Reads `vrf_` + 32 hex digits (either case); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(Self::PREFIX)?;
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(VerificationId(out))
    }
}

impl fmt::Display for VerificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::PREFIX)?;
        f.write_str(&crate::hex::encode(&self.0))
    }
}

impl fmt::Debug for VerificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for VerificationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for VerificationId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        VerificationId::parse(&s).ok_or_else(|| serde::de::Error::custom("not a verification id"))
    }
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

    fn target(channel: Channel, input: &str, region: Option<&str>) -> CheckTarget {
        let region = region.map(|r| Region::parse(r).expect("region"));
        CheckTarget::parse_in(channel, input, region).expect("well-shaped")
    }

    #[test]
    fn a_check_reads_an_international_phone_by_its_digits_alone() {
        for (input, region) in [
            ("+7 (701) 123-45-67", None),
            ("77011234567", None),
            (" +77011234567 ", Some("KZ")),
        ] {
            let t = target(Channel::Sms, input, region);
            assert_eq!(t.key().as_deref(), Some("sms:+77011234567"), "{input}");
            assert_eq!(t.resolved_key(), None, "{input}");
        }
        assert_eq!(
            target(Channel::Call, "+77011234567", None).key().as_deref(),
            Some("call:+77011234567")
        );
        // Well-shaped but no valid number: looked up (and not found), never
        // a 400; the full parse finds no other key either.
        let t = target(Channel::Sms, "+0123456789", None);
        assert_eq!(t.key().as_deref(), Some("sms:+0123456789"));
        assert_eq!(t.resolved_key(), None);
    }

    #[test]
    fn a_check_refuses_what_has_not_the_shape_of_a_phone() {
        for bad in [
            "",
            "abc",
            "+",
            "123",
            "7701123456789012",
            "7701x234567",
            "++77011234567",
        ] {
            assert!(
                CheckTarget::parse_in(Channel::Sms, bad, None).is_err(),
                "{bad:?} should fail"
            );
        }
    }

    #[test]
    fn a_check_finds_the_key_that_the_send_of_the_same_input_used() {
        let cases = [
            ("+77011234567", None),
            ("7 701 123 45 67", None),
            ("+44 (0)20 7946 0958", None),
            ("+442079460958", None),
            ("+541115 23456789", None),
            ("+5491123456789", None),
            ("+1 201 555 0123", Some("US")),
            ("87011234567", Some("KZ")),
            ("77011234567", Some("KZ")),
            ("2079460958", Some("GB")),
            ("612345678", Some("FR")),
            ("33612345678", Some("FR")),
            ("4930123456", Some("DE")),
        ];
        let mut resolved = 0;
        for (input, region) in cases {
            let r = region.map(|r| Region::parse(r).expect("region"));
            let sent = Destination::parse_in(Channel::Sms, input, r).expect("a send accepts it");
            let t = target(Channel::Sms, input, region);
            if t.key() != Some(sent.key()) {
                assert_eq!(t.resolved_key(), Some(sent.key()), "{input} in {region:?}");
                resolved += 1;
            }
        }
        // The national prefix after +44 and the 15 after +54 11: typed
        // otherwise than their E.164 form, found on the second lookup.
        assert_eq!(resolved, 2);
    }

    #[test]
    fn a_national_phone_with_a_default_region_is_parsed_as_a_send_parses_it() {
        let t = target(Channel::Sms, "8 701 123 45 67", Some("KZ"));
        assert_eq!(t.key().as_deref(), Some("sms:+77011234567"));
        assert_eq!(t.resolved_key(), None);
        // No valid number in the region or abroad: nothing to look up.
        let t = target(Channel::Sms, "7011234567", Some("KZ"));
        assert_eq!(t.key(), None);
        assert_eq!(t.resolved_key(), None);
    }

    #[test]
    fn an_ambiguous_phone_is_refused_on_check_as_on_send() {
        let de = Region::parse("DE").ok();
        for channel in [Channel::Sms, Channel::Call] {
            let err = CheckTarget::parse_in(channel, "15123456789", de).expect_err("ambiguous");
            assert!(err.to_string().contains("ambiguous"), "{err}");
            assert!(Destination::parse_in(channel, "15123456789", de).is_err());
        }
        // With + it is international, and read by its digits.
        let t = target(Channel::Sms, "+15123456789", Some("DE"));
        assert_eq!(t.key().as_deref(), Some("sms:+15123456789"));
    }

    #[test]
    fn emails_and_chat_ids_are_parsed_in_full_on_check() {
        let t = target(Channel::Email, " Foo@Example.com", None);
        assert_eq!(t.key().as_deref(), Some("email:foo@example.com"));
        assert_eq!(t.channel(), Channel::Email);
        assert!(CheckTarget::parse_in(Channel::Email, "foo@", None).is_err());
        let t = target(Channel::Telegram, "-100123", None);
        assert_eq!(t.key().as_deref(), Some("telegram:-100123"));
        assert!(CheckTarget::parse_in(Channel::Telegram, "abc", None).is_err());
    }

    #[test]
    fn a_check_target_has_the_region_of_the_sent_number() {
        for (input, region) in [
            ("+77011234567", None),
            ("+79161234567", None),
            ("+4915123456789", None),
            ("+1 201 555 0123", None),
            ("+44 (0)20 7946 0958", None),
            ("8 701 123 45 67", Some("KZ")),
        ] {
            let r = region.map(|r| Region::parse(r).expect("region"));
            let sent = match Destination::parse_in(Channel::Sms, input, r).expect("valid") {
                Destination::Sms(p) => p,
                other => panic!("{other:?}"),
            };
            let t = target(Channel::Sms, input, region);
            assert!(sent.region().is_some(), "{input}");
            assert_eq!(t.region(), sent.region(), "{input}");
        }
        assert_eq!(target(Channel::Sms, "+0123456789", None).region(), None);
        assert_eq!(target(Channel::Email, "a@b.kz", None).region(), None);
    }

    #[test]
    fn a_check_target_is_masked_in_logs() {
        let t = target(Channel::Sms, "+77011234567", None);
        assert_eq!(t.masked(), "+7701***4567");
        assert!(!format!("{t:?}").contains("1234567"), "{t:?}");
        let t = target(Channel::Sms, "8 701 123 45 67", Some("KZ"));
        assert_eq!(t.masked(), "+7701***4567");
        assert!(!format!("{t:?}").contains("1234567"), "{t:?}");
    }
}
