//! Verification records and outbox events as Redis hashes: the flat
//! fields `scripts/vrf.lua` documents, written and read only here, so
//! the scripts never encode JSON or turn a time into a Lua number.

use std::collections::HashMap;

use otp_domain::verification::{
    CancelReason, DeliveryAttempt, EventData, EventType, Status, StoredEvent, Verification,
    VerificationId,
};
use otp_domain::{Channel, SealedCode};

use crate::RedisStoreError;

/// The id's 32 hex digits, as keys and records hold it.
pub(crate) fn hex(id: &VerificationId) -> String {
    otp_domain::hex::encode(id.as_bytes())
}

/// The id whose 32 hex digits `hex` is; `None` for anything else.
pub(crate) fn id_of_hex(hex: &str) -> Option<VerificationId> {
    VerificationId::parse(&format!("{}{hex}", VerificationId::PREFIX))
}

/// The record's fields and values, flat, for `HSET`.
pub(crate) fn fields(v: &Verification) -> Result<Vec<String>, RedisStoreError> {
    let mut out = vec![
        "id".to_owned(),
        hex(&v.id),
        "ch".to_owned(),
        v.channel.as_str().to_owned(),
        "to".to_owned(),
        v.destination.clone(),
        "s".to_owned(),
        v.status.as_str().to_owned(),
        "c".to_owned(),
        v.created_at.to_string(),
        "x".to_owned(),
        v.expires_at.to_string(),
        "a".to_owned(),
        v.attempts.to_string(),
        "m".to_owned(),
        v.max_attempts.to_string(),
        "dl".to_owned(),
        attempts_json(&v.deliveries)?,
        "rt".to_owned(),
        v.retention_ms.to_string(),
        "ev".to_owned(),
        v.events.to_string(),
    ];
    if let Some(country) = &v.country {
        out.extend(["cc".to_owned(), country.clone()]);
    }
    if let Some(locale) = &v.locale {
        out.extend(["lc".to_owned(), locale.clone()]);
    }
    if let Some(reason) = v.reason {
        out.extend(["rs".to_owned(), reason.as_str().to_owned()]);
    }
    if let Some(ended_at) = v.ended_at {
        out.extend(["en".to_owned(), ended_at.to_string()]);
    }
    if let Some(sealed) = &v.sealed {
        out.extend(["sc".to_owned(), sealed.as_str().to_owned()]);
    }
    if let Some(service) = &v.service {
        out.extend(["sv".to_owned(), service.clone()]);
    }
    Ok(out)
}

/// Delivery attempts as the compact JSON array the scripts splice.
pub(crate) fn attempts_json(attempts: &[DeliveryAttempt]) -> Result<String, RedisStoreError> {
    serde_json::to_string(attempts)
        .map_err(|e| RedisStoreError::Corrupt(format!("delivery attempts as JSON: {e}")))
}

/// A hash's reply (field, value, field, value, ...) as a map.
pub(crate) fn pairs(flat: Vec<String>) -> HashMap<String, String> {
    let mut map = HashMap::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(k, v);
    }
    map
}

fn corrupt(what: &str) -> RedisStoreError {
    RedisStoreError::Corrupt(format!("verification record: {what}"))
}

fn field<'a>(map: &'a HashMap<String, String>, name: &str) -> Result<&'a str, RedisStoreError> {
    map.get(name)
        .map(String::as_str)
        .ok_or_else(|| corrupt(&format!("no field {name}")))
}

fn number<T: std::str::FromStr>(
    map: &HashMap<String, String>,
    name: &str,
) -> Result<T, RedisStoreError> {
    field(map, name)?
        .parse()
        .map_err(|_| corrupt(&format!("field {name} is not a number")))
}

fn optional_number(
    map: &HashMap<String, String>,
    name: &str,
) -> Result<Option<u64>, RedisStoreError> {
    map.get(name).map(|_| number(map, name)).transpose()
}

/// The record in `map` (a record's hash, or an event's copy of one).
pub(crate) fn verification(map: &HashMap<String, String>) -> Result<Verification, RedisStoreError> {
    let id = VerificationId::parse(&format!("{}{}", VerificationId::PREFIX, field(map, "id")?))
        .ok_or_else(|| corrupt("bad id"))?;
    let channel = Channel::parse(field(map, "ch")?).ok_or_else(|| corrupt("bad channel"))?;
    let status = Status::parse(field(map, "s")?).ok_or_else(|| corrupt("bad status"))?;
    let reason = map
        .get("rs")
        .map(|r| CancelReason::parse(r).ok_or_else(|| corrupt("bad reason")))
        .transpose()?;
    let deliveries = serde_json::from_str(field(map, "dl")?)
        .map_err(|e| corrupt(&format!("bad deliveries: {e}")))?;
    Ok(Verification {
        id,
        channel,
        destination: field(map, "to")?.to_owned(),
        country: map.get("cc").cloned(),
        locale: map.get("lc").cloned(),
        status,
        reason,
        created_at: number(map, "c")?,
        expires_at: number(map, "x")?,
        attempts: number(map, "a")?,
        max_attempts: number(map, "m")?,
        deliveries,
        ended_at: optional_number(map, "en")?,
        retention_ms: number(map, "rt")?,
        events: number(map, "ev")?,
        sealed: map
            .get("sc")
            .map(|hex| SealedCode::from_hex(hex).ok_or_else(|| corrupt("bad sealed code")))
            .transpose()?,
        service: map.get("sv").cloned(),
    })
}

/// The record of a hash reply; `None` for an empty one (no such key).
pub(crate) fn verification_of(flat: Vec<String>) -> Result<Option<Verification>, RedisStoreError> {
    if flat.is_empty() {
        return Ok(None);
    }
    verification(&pairs(flat)).map(Some)
}

/// An outbox event from its hash reply.
pub(crate) fn event(flat: Vec<String>) -> Result<StoredEvent, RedisStoreError> {
    let map = pairs(flat);
    let kind = EventType::parse(field(&map, "@kind")?).ok_or_else(|| corrupt("bad event type"))?;
    let delivered = serde_json::from_str(field(&map, "@delivered")?)
        .map_err(|e| corrupt(&format!("bad event sinks: {e}")))?;
    Ok(StoredEvent {
        id: field(&map, "@id")?.to_owned(),
        kind,
        time: number(&map, "@time")?,
        // A fraud block's event carries the block as JSON (written by
        // Rust); a verification's carries the record's fields.
        data: match map.get("@block") {
            Some(block) => EventData::Block(
                serde_json::from_str(block)
                    .map_err(|e| corrupt(&format!("bad fraud block: {e}")))?,
            ),
            None => EventData::Verification(verification(&map)?),
        },
        tries: number(&map, "@tries")?,
        delivered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use otp_domain::verification::AttemptOutcome;
    use otp_domain::Destination;

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let d = Destination::parse(Channel::Sms, "+77011234567").expect("phone");
        let mut v = Verification::new(
            VerificationId::from_bytes([7; 16]),
            &d,
            1_800_000_000_000,
            1_800_000_060_000,
            5,
            86_400_000,
        );
        let empty = verification_of(fields(&v).expect("fields")).expect("read");
        assert_eq!(empty.as_ref(), Some(&v));
        v.deliveries.push(DeliveryAttempt {
            provider: "twilio".into(),
            outcome: AttemptOutcome::Failed,
            at: 1_800_000_000_001,
            error: Some("HTTP \"503\"".into()),
            message_id: None,
            report: None,
        });
        v.end(Status::Canceled, Some(CancelReason::Api), 1_800_000_000_002);
        let back = verification_of(fields(&v).expect("fields")).expect("read");
        assert_eq!(back, Some(v));
        assert_eq!(verification_of(Vec::new()).expect("read"), None);
    }
}
