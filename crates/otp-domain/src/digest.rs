//! Keyed hashing of codes. Stores only ever see a [`CodeDigest`]:
//! HMAC-SHA256(server secret, purpose | key | code). Without the secret a
//! digest cannot be brute-forced offline, even for a 6-digit code.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit as AeadKeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
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
        crate::hex::encode(&self.0)
    }
}

impl fmt::Debug for CodeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeDigest(..)")
    }
}

/// A code sealed for a later resend (WhatsApp's SMS fallback, or a `/v2`
/// service's reuse of a pending verification): ChaCha20-Poly1305 under a key
/// derived from the server secret, bound to its verification. The store
/// that keeps it cannot read it; only an otpd holding the secret (which
/// could brute-force a short code from its digest anyway) can.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedCode(String);

impl SealedCode {
    /// The sealed bytes as hex, as stores keep them.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A sealed code as a store gave it back; `None` unless it is hex.
    pub fn from_hex(hex: &str) -> Option<Self> {
        (hex.len().is_multiple_of(2) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| SealedCode(hex.to_ascii_lowercase()))
    }

    fn bytes(&self) -> Option<Vec<u8>> {
        (0..self.0.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(self.0.get(i..i + 2)?, 16).ok())
            .collect()
    }
}

impl fmt::Debug for SealedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedCode(..)")
    }
}

/// Holds the server secret and derives digests from it.
#[derive(Clone)]
pub struct CodeHasher {
    /// HMAC-SHA256 keyed with the server secret, once: each digest clones
    /// it instead of hashing the key again.
    keyed: Hmac<Sha256>,
    /// The sealing key, derived from the secret once (see `sealer`).
    seal_key: Key,
}

impl CodeHasher {
    /// `secret` should carry at least 32 random bytes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = match <Hmac<Sha256> as KeyInit>::new_from_slice(&secret.into()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        let mut hasher = CodeHasher {
            keyed,
            seal_key: Key::default(),
        };
        hasher.seal_key = *Key::from_slice(hasher.mac(b"seal", b"", b"").as_bytes());
        hasher
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

    /// Seals `code` for a later resend within verification `id` (16
    /// random bytes, unique per verification: the nonce is their first
    /// 12, and all 16 are bound as associated data).
    pub fn seal(&self, id: &[u8; 16], code: &Code) -> SealedCode {
        let (cipher, nonce) = self.sealer(id);
        let payload = Payload {
            msg: code.expose().as_bytes(),
            aad: id,
        };
        match cipher.encrypt(&nonce, payload) {
            Ok(bytes) => SealedCode(crate::hex::encode(&bytes)),
            // Encryption fails only for messages of gigabytes.
            Err(_) => unreachable!("ChaCha20-Poly1305 seals any short message"),
        }
    }

    /// The code `sealed` holds, if it was sealed by this secret for `id`.
    pub fn open(&self, id: &[u8; 16], sealed: &SealedCode) -> Option<Code> {
        let (cipher, nonce) = self.sealer(id);
        let bytes = sealed.bytes()?;
        let plain = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &bytes,
                    aad: id,
                },
            )
            .ok()?;
        Code::parse(std::str::from_utf8(&plain).ok()?).ok()
    }

    fn sealer(&self, id: &[u8; 16]) -> (ChaCha20Poly1305, Nonce) {
        let cipher = ChaCha20Poly1305::new(&self.seal_key);
        (cipher, *Nonce::from_slice(&id[..12]))
    }

    fn mac(&self, purpose: &[u8], key: &[u8], code: &[u8]) -> CodeDigest {
        let mut mac = self.keyed.clone();
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
    fn a_sealed_code_opens_only_with_its_secret_and_verification() {
        let h = CodeHasher::new(b"secret-a".to_vec());
        let id = [7u8; 16];
        let sealed = h.seal(&id, &code("123456"));
        assert!(!sealed.as_str().contains("123456"));
        assert_eq!(
            h.open(&id, &sealed).map(|c| c.expose().to_owned()),
            Some("123456".to_owned())
        );
        assert_eq!(h.open(&[8u8; 16], &sealed), None, "another verification");
        assert_eq!(
            CodeHasher::new(b"secret-b".to_vec()).open(&id, &sealed),
            None,
            "another secret"
        );
        let again = SealedCode::from_hex(sealed.as_str()).expect("hex");
        assert_eq!(
            h.open(&id, &again).map(|c| c.expose().to_owned()),
            Some("123456".to_owned())
        );
        let mut tampered = sealed.as_str().to_owned();
        let last = if tampered.ends_with('0') { "1" } else { "0" };
        tampered.replace_range(tampered.len() - 1.., last);
        let tampered = SealedCode::from_hex(&tampered).expect("hex");
        assert_eq!(h.open(&id, &tampered), None, "a changed byte fails the tag");
        assert_eq!(SealedCode::from_hex("xyz"), None);
        assert_eq!(format!("{sealed:?}"), "SealedCode(..)");
    }

    /// Digests stored before are still found: the keyed HMAC is the one
    /// Python's `hmac` computes over the length-prefixed parts.
    #[test]
    fn digest_is_hmac_sha256_of_the_length_prefixed_parts() {
        let h = CodeHasher::new(b"secret-a".to_vec());
        assert_eq!(
            h.code("sms:+77011234567", &code("123456")).to_hex(),
            "099ae4af75d04c5cf62b4f56ecdad89aec07e6f4763a313c6398adbf1e558ce6"
        );
        // The same hasher twice gives the same digest (the keyed state is
        // cloned, never consumed).
        assert_eq!(
            h.code("sms:+77011234567", &code("123456")),
            h.code("sms:+77011234567", &code("123456"))
        );
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
