//! The CSPRNG-backed [`CodeGenerator`].

use rand::RngExt;

use crate::ports::CodeGenerator;
use crate::types::Code;
use crate::verification::VerificationId;

/// Crockford's base32: no I, L, O or U, so a code read aloud or typed from
/// a phone screen is hard to get wrong. 32 symbols, 5 bits each.
pub const PAIRING_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 8 symbols × 5 bits = 40 bits.
pub const PAIRING_LEN: usize = 8;

/// Codes from the thread-local CSPRNG (ChaCha, seeded from the OS).
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomCodes;

impl CodeGenerator for RandomCodes {
    fn numeric(&self, len: usize) -> Code {
        let mut rng = rand::rng();
        let len = len.clamp(Code::MIN_LEN, 10);
        let s: String = (0..len)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect();
        Code::parse(&s).unwrap_or_else(|_| unreachable!("4 to 10 digits always parse"))
    }

    fn pairing(&self) -> Code {
        let mut rng = rand::rng();
        let s: String = (0..PAIRING_LEN)
            .map(|_| char::from(PAIRING_ALPHABET[rng.random_range(0..PAIRING_ALPHABET.len())]))
            .collect();
        Code::parse(&s).unwrap_or_else(|_| unreachable!("8 base32 symbols always parse"))
    }

    fn verification_id(&self) -> VerificationId {
        VerificationId::from_bytes(rand::rng().random())
    }
}

/// Reads a pairing code the way people type it: any case, with spaces or
/// dashes, and with the letters Crockford maps to digits (O→0, I/L→1).
pub fn normalize_pairing(input: &str) -> Option<Code> {
    let s: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    if s.len() != PAIRING_LEN || !s.bytes().all(|b| PAIRING_ALPHABET.contains(&b)) {
        return None;
    }
    Code::parse(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_codes_have_the_asked_length_and_only_digits() {
        for len in [4, 6, 10] {
            let c = RandomCodes.numeric(len);
            assert_eq!(c.expose().len(), len);
            assert!(c.expose().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn numeric_codes_vary() {
        let codes: std::collections::HashSet<String> = (0..50)
            .map(|_| RandomCodes.numeric(10).expose().to_owned())
            .collect();
        // 50 draws of 10 random digits colliding would be a broken RNG.
        assert_eq!(codes.len(), 50);
    }

    #[test]
    fn pairing_codes_use_the_alphabet_and_normalize_back() {
        let c = RandomCodes.pairing();
        assert_eq!(c.expose().len(), PAIRING_LEN);
        assert!(c.expose().bytes().all(|b| PAIRING_ALPHABET.contains(&b)));
        let typed = c.expose().to_ascii_lowercase();
        assert_eq!(normalize_pairing(&typed), Some(c));
    }

    #[test]
    fn verification_ids_are_fresh_128_bit_draws() {
        let ids: std::collections::HashSet<VerificationId> =
            (0..50).map(|_| RandomCodes.verification_id()).collect();
        assert_eq!(ids.len(), 50);
    }

    #[test]
    fn pairing_normalization_maps_lookalikes() {
        assert_eq!(
            normalize_pairing("ab-cd oil9").map(|c| c.expose().to_owned()),
            Some("ABCD0119".to_owned())
        );
        assert_eq!(normalize_pairing("ABCDEFG"), None);
        assert_eq!(normalize_pairing("ABCDEFGU"), None);
    }
}
