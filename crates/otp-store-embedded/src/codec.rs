//! Fixed-size big-endian records, and the binary heads of the outbox and
//! idempotency values. A length check guards every decode, so a damaged
//! file gives `Corrupt`, never a panic.
//!
//! Verifications and events are JSON (their serde form): they are read and
//! written whole, hold strings and lists, and JSON keeps the file readable
//! across versions that add fields.

use otp_domain::digest::CodeDigest;
use otp_domain::ports::{CodeRecord, Timestamp};
use otp_domain::state::BucketState;
use otp_domain::VerificationId;

use crate::EmbeddedError;

/// A code record of the version before verifications: no id.
const OLD_RECORD_LEN: usize = 32 + 8 + 4 + 4;
const RECORD_LEN: usize = OLD_RECORD_LEN + 16;

/// The id a code written before verifications decodes with (all zeros):
/// it names no verification, so every verification step of such a code
/// does nothing.
const NO_VERIFICATION: [u8; 16] = [0; 16];

/// Whether `id` names a verification (and is not the id of a code
/// written before verifications existed).
pub fn names_verification(id: &VerificationId) -> bool {
    *id.as_bytes() != NO_VERIFICATION
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

pub fn encode_record(r: &CodeRecord) -> [u8; RECORD_LEN] {
    let mut out = [0u8; RECORD_LEN];
    out[..32].copy_from_slice(r.digest.as_bytes());
    out[32..40].copy_from_slice(&r.expires_at.to_be_bytes());
    out[40..44].copy_from_slice(&r.attempts.to_be_bytes());
    out[44..48].copy_from_slice(&r.max_attempts.to_be_bytes());
    out[48..64].copy_from_slice(r.verification.as_bytes());
    out
}

/// Reads a code record, of this version or of the one before (without a
/// verification id, which then reads as [`names_verification`] false).
pub fn decode_record(b: &[u8]) -> Result<CodeRecord, EmbeddedError> {
    let mut id = NO_VERIFICATION;
    match b.len() {
        RECORD_LEN => id.copy_from_slice(&b[48..64]),
        OLD_RECORD_LEN => {}
        _ => return Err(EmbeddedError::Corrupt("code record has the wrong length")),
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&b[..32]);
    Ok(CodeRecord {
        digest: CodeDigest::from_bytes(digest),
        expires_at: u64_at(b, 32),
        attempts: u32_at(b, 40),
        max_attempts: u32_at(b, 44),
        verification: VerificationId::from_bytes(id),
    })
}

/// The head of an outbox value: when the event is due next and its order
/// of arrival (the key of its entry in the due index). The event's JSON
/// follows.
pub struct OutboxHead {
    pub due: Timestamp,
    pub seq: u64,
}

impl OutboxHead {
    const LEN: usize = 16;

    /// The head followed by `body`.
    pub fn encode_with(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN + body.len());
        out.extend_from_slice(&self.due.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// The head and the body after it.
    pub fn decode(b: &[u8]) -> Result<(Self, &[u8]), EmbeddedError> {
        if b.len() < Self::LEN {
            return Err(EmbeddedError::Corrupt("outbox entry is too short"));
        }
        let head = OutboxHead {
            due: u64_at(b, 0),
            seq: u64_at(b, 8),
        };
        Ok((head, &b[Self::LEN..]))
    }
}

/// An idempotency key's entry: the request's fingerprint, until when the
/// key is held, and the response once the request finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdemValue {
    pub fingerprint: [u8; 32],
    pub until: Timestamp,
    pub response: Option<Vec<u8>>,
}

impl IdemValue {
    const HEAD: usize = 32 + 8 + 1;

    pub fn encode(&self) -> Vec<u8> {
        let body = self.response.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(Self::HEAD + body.len());
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&self.until.to_be_bytes());
        out.push(u8::from(self.response.is_some()));
        out.extend_from_slice(body);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, EmbeddedError> {
        if b.len() < Self::HEAD {
            return Err(EmbeddedError::Corrupt("idempotency entry is too short"));
        }
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(&b[..32]);
        let response = match b[40] {
            0 if b.len() == Self::HEAD => None,
            1 => Some(b[Self::HEAD..].to_vec()),
            _ => return Err(EmbeddedError::Corrupt("idempotency entry is malformed")),
        };
        Ok(IdemValue {
            fingerprint,
            until: u64_at(b, 32),
            response,
        })
    }
}

/// A bucket's counter and when it may be dropped.
pub struct BucketValue {
    pub state: BucketState,
    pub expires_at: Timestamp,
}

impl BucketValue {
    pub fn encode(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..8].copy_from_slice(&self.state.window_start.to_be_bytes());
        out[8..12].copy_from_slice(&self.state.count.to_be_bytes());
        out[12..20].copy_from_slice(&self.expires_at.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, EmbeddedError> {
        if b.len() != 20 {
            return Err(EmbeddedError::Corrupt("bucket has the wrong length"));
        }
        Ok(BucketValue {
            state: BucketState {
                window_start: u64_at(b, 0),
                count: u32_at(b, 8),
            },
            expires_at: u64_at(b, 12),
        })
    }
}

/// The chat a pairing digest belongs to, and its expiry.
pub struct PairingValue {
    pub chat: i64,
    pub expires_at: Timestamp,
}

impl PairingValue {
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.chat.to_be_bytes());
        out[8..].copy_from_slice(&self.expires_at.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, EmbeddedError> {
        if b.len() != 16 {
            return Err(EmbeddedError::Corrupt("pairing has the wrong length"));
        }
        Ok(PairingValue {
            chat: i64::from_be_bytes(u64_at(b, 0).to_be_bytes()),
            expires_at: u64_at(b, 8),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_short_input_is_corrupt() {
        let r = CodeRecord {
            digest: CodeDigest::from_bytes([9; 32]),
            expires_at: 123_456,
            attempts: 2,
            max_attempts: 5,
            verification: VerificationId::from_bytes([4; 16]),
        };
        assert_eq!(decode_record(&encode_record(&r)).ok(), Some(r));
        assert!(names_verification(&r.verification));
        assert!(decode_record(&[0u8; 10]).is_err());
        assert!(decode_record(&[0u8; 49]).is_err());
        let p = PairingValue {
            chat: -100,
            expires_at: 7,
        }
        .encode();
        assert_eq!(PairingValue::decode(&p).map(|p| p.chat).ok(), Some(-100));
    }

    #[test]
    fn a_record_of_the_version_before_verifications_still_decodes_without_one() {
        // Byte for byte what that version wrote: digest, expiry, attempts,
        // max attempts.
        let mut old = Vec::new();
        old.extend_from_slice(&[7u8; 32]);
        old.extend_from_slice(&99_000u64.to_be_bytes());
        old.extend_from_slice(&1u32.to_be_bytes());
        old.extend_from_slice(&5u32.to_be_bytes());
        let r = decode_record(&old).expect("an old record decodes");
        assert_eq!(
            (r.digest, r.expires_at, r.attempts, r.max_attempts),
            (CodeDigest::from_bytes([7; 32]), 99_000, 1, 5)
        );
        assert!(!names_verification(&r.verification));
    }

    #[test]
    fn outbox_heads_and_idempotency_entries_round_trip() {
        let head = OutboxHead { due: 17, seq: 4 }.encode_with(b"{}");
        let (h, body) = OutboxHead::decode(&head).expect("head");
        assert_eq!((h.due, h.seq, body), (17, 4, &b"{}"[..]));
        assert!(OutboxHead::decode(&[1, 2, 3]).is_err());
        for response in [None, Some(Vec::new()), Some(b"{\"ok\":1}".to_vec())] {
            let v = IdemValue {
                fingerprint: [3; 32],
                until: 1_000,
                response,
            };
            assert_eq!(IdemValue::decode(&v.encode()).ok(), Some(v));
        }
        assert!(IdemValue::decode(&[0u8; 40]).is_err());
    }
}
