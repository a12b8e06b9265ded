//! Fixed-size big-endian records. A length check guards every decode, so
//! a damaged file gives `Corrupt`, never a panic.

use otp_domain::digest::CodeDigest;
use otp_domain::ports::{CodeRecord, Timestamp};
use otp_domain::state::BucketState;

use crate::EmbeddedError;

const RECORD_LEN: usize = 32 + 8 + 4 + 4;

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
    out
}

pub fn decode_record(b: &[u8]) -> Result<CodeRecord, EmbeddedError> {
    if b.len() != RECORD_LEN {
        return Err(EmbeddedError::Corrupt("code record has the wrong length"));
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&b[..32]);
    Ok(CodeRecord {
        digest: CodeDigest::from_bytes(digest),
        expires_at: u64_at(b, 32),
        attempts: u32_at(b, 40),
        max_attempts: u32_at(b, 44),
        verification: otp_domain::VerificationId::from_bytes([0; 16]),
    })
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
        };
        assert_eq!(decode_record(&encode_record(&r)).ok(), Some(r));
        assert!(decode_record(&[0u8; 10]).is_err());
        let p = PairingValue {
            chat: -100,
            expires_at: 7,
        }
        .encode();
        assert_eq!(PairingValue::decode(&p).map(|p| p.chat).ok(), Some(-100));
    }
}
