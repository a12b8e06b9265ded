//! [`CodeGenerator`]: the randomness of codes and verification ids, a
//! port so that tests fix it.

use crate::types::Code;
use crate::verification::VerificationId;

/// Randomness for codes and ids. Implementations MUST use a CSPRNG.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait CodeGenerator: Send + Sync {
    /// A numeric code of `len` digits (4 to 10).
    fn numeric(&self, len: usize) -> Code;
    /// A Telegram pairing code: 8 symbols from an unambiguous 32-symbol
    /// alphabet, 40 bits of entropy.
    fn pairing(&self) -> Code;
    /// A fresh verification id: 128 unguessable bits.
    fn verification_id(&self) -> VerificationId;
}
