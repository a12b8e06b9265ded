//! `Idempotency-Key`, with Stripe's semantics, on the four sends and on
//! cancel:
//! - the same key and the same request within 24 h answer the first
//!   answer again, with `Idempotent-Replayed: true`, and do nothing else;
//! - the same key with another request is `422 idempotency_key_reused`;
//! - the same key while the first request still runs is
//!   `409 idempotency_in_progress`.
//!
//! Only a successful answer is kept. A request refused before it did
//! anything (invalid, rate limited), or one that failed (delivery, store),
//! frees its key, so the app retries with the same key. The key and a
//! keyed fingerprint of the request live in the store, so this holds
//! across instances.

use otp_domain::{IdempotencyBegin, StoreError};

use super::AppState;

/// The header.
pub const HEADER: &str = "Idempotency-Key";
/// The longest key accepted (Stripe's limit).
pub const MAX_LEN: usize = 255;

/// Why a request under a key does not run.
#[derive(Debug)]
pub enum Early {
    /// The stored answer of the same request.
    Replay(Vec<u8>),
    InProgress,
    Reused,
    /// The header's value is not a key.
    Invalid(String),
    Store(StoreError),
}

/// A request that holds its key; end it with [`Held::finish`].
pub struct Held {
    scope: String,
    fingerprint: [u8; 32],
}

/// Starts the request `parts` (the operation's name first) under the
/// key in `req`'s header, when the app gave one. The header is read raw,
/// so a value that is not text is refused, not taken for no key.
///
/// # Errors
/// [`Early`] when the request must not run.
pub async fn begin(
    state: &AppState,
    req: &poem::Request,
    parts: &[&[u8]],
) -> Result<Option<Held>, Early> {
    let Some(raw) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = raw.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > MAX_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Early::Invalid(format!(
            "{HEADER} must be 1 to {MAX_LEN} visible ASCII characters"
        )));
    }
    let scope = format!("idem:{key}");
    match state.otp.idempotency_begin(&scope, parts).await {
        Ok((IdempotencyBegin::Started, fingerprint)) => Ok(Some(Held { scope, fingerprint })),
        Ok((IdempotencyBegin::Replay(answer), _)) => Err(Early::Replay(answer)),
        Ok((IdempotencyBegin::InProgress, _)) => Err(Early::InProgress),
        Ok((IdempotencyBegin::Mismatch, _)) => Err(Early::Reused),
        Err(e) => Err(Early::Store(e)),
    }
}

impl Held {
    /// Keeps `answer` for replay, or frees the key (`None`). A store error
    /// here is logged: the request itself is done, and a key left held
    /// frees itself after its lease.
    pub async fn finish(self, state: &AppState, answer: Option<&[u8]>) {
        if let Err(e) = state
            .otp
            .idempotency_end(&self.scope, &self.fingerprint, answer)
            .await
        {
            tracing::error!(error = %e, "could not record an idempotent answer; the key frees itself after its lease");
        }
    }
}

/// Ends `held` (if any) with `answer`.
pub async fn finish(state: &AppState, held: Option<Held>, answer: Option<&[u8]>) {
    if let Some(h) = held {
        h.finish(state, answer).await;
    }
}
