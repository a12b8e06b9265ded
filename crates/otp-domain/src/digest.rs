//! Keyed hashing of codes. Stores only ever see a [`CodeDigest`]:
//! HMAC-SHA256(server secret, purpose | key | code). Without the secret a
//! digest cannot be brute-forced offline, even for a 6-digit code.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::types::Code;

/// The HMAC of one code. Compared in constant time.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodeDigest([u8; 32]);

impl CodeDigest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        CodeDigest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality, so response timing says nothing about how
    /// much of a guess matched.
    pub fn ct_eq(&self, other: &CodeDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }
}

impl fmt::Debug for CodeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeDigest(..)")
    }
}

/// Holds the server secret and derives digests from it.
#[derive(Clone)]
pub struct CodeHasher {
    secret: Vec<u8>,
}

impl CodeHasher {
    /// `secret` should carry at least 32 random bytes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        CodeHasher {
            secret: secret.into(),
        }
    }

    /// The digest of a code sent to the destination with store key `key`.
    /// Binding the key means one code's digest is useless for another
    /// destination.
    pub fn code(&self, key: &str, code: &Code) -> CodeDigest {
        self.mac(b"code", key.as_bytes(), code.expose().as_bytes())
    }

    /// The digest of a Telegram pairing code, which has no destination.
    pub fn pairing(&self, code: &Code) -> CodeDigest {
        self.mac(b"pairing", b"", code.expose().as_bytes())
    }

    /// A digest no pairing code can have, to look up malformed input.
    pub fn pairing_miss(&self) -> CodeDigest {
        self.mac(b"pairing-miss", b"", b"")
    }

    /// A keyed fingerprint of a request, for idempotency keys: the store
    /// keeps this, never the request, whose password a plain hash would
    /// let anyone who reads the store recover by trying every code.
    /// `parts` are length-prefixed, so no two lists collide.
    pub fn fingerprint(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut framed = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
        for p in parts {
            framed.extend_from_slice(&(p.len() as u64).to_be_bytes());
            framed.extend_from_slice(p);
        }
        *self.mac(b"idempotency", b"", &framed).as_bytes()
    }

    fn mac(&self, purpose: &[u8], key: &[u8], code: &[u8]) -> CodeDigest {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        // Length-prefix each part so ("ab", "c") and ("a", "bc") differ.
        for part in [purpose, key, code] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let out: [u8; 32] = mac.finalize().into_bytes().into();
        CodeDigest(out)
    }
}

impl fmt::Debug for CodeHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHasher(secret: ***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> Code {
        Code::parse(s).expect("valid code")
    }

    #[test]
    fn digest_depends_on_secret_key_and_code() {
        let a = CodeHasher::new(b"secret-a".to_vec());
        let b = CodeHasher::new(b"secret-b".to_vec());
        let d = a.code("sms:+77011234567", &code("12345"));
        assert!(d.ct_eq(&a.code("sms:+77011234567", &code("12345"))));
        assert!(!d.ct_eq(&b.code("sms:+77011234567", &code("12345"))));
        assert!(!d.ct_eq(&a.code("sms:+77011234568", &code("12345"))));
        assert!(!d.ct_eq(&a.code("sms:+77011234567", &code("12346"))));
        assert!(!d.ct_eq(&a.pairing(&code("12345"))));
    }

    #[test]
    fn digest_hex_does_not_contain_the_code() {
        let h = CodeHasher::new(b"k".to_vec());
        let hex = h.code("sms:+77011234567", &code("123456")).to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(CodeDigest::from_bytes([0xab; 32]).to_hex(), "ab".repeat(32));
        assert!(!hex.contains("123456"));
    }
}
