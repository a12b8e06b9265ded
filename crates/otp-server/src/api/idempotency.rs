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

use otp_domain::IdempotencyBegin;
use poem_openapi::types::{ParseFromJSON, ToJSON};

use super::AppState;

/// The header.
pub const HEADER: &str = "Idempotency-Key";
/// The longest key accepted (Stripe's limit).
pub const MAX_LEN: usize = 255;

/// Why a request under a key does not run, and is not a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The header's value is not a key (`invalid_request`).
    InvalidKey,
    /// The first request with the key still runs (409).
    InProgress,
    /// The key came with another request (422).
    Reused,
    /// The store failed, or a kept answer does not read back (503).
    Unavailable,
}

/// What the header must be.
pub const INVALID_KEY: &str = "Idempotency-Key must be 1 to 255 visible ASCII characters";

/// An operation's response, as the key rule needs it.
pub trait Keyed: Sized {
    /// The body of a successful answer: the one that is kept.
    type Body: poem_openapi::types::ParseFromJSON + poem_openapi::types::ToJSON;
    /// The successful body, if this answer is one.
    fn kept(&self) -> Option<&Self::Body>;
    /// The kept answer, told again (`Idempotent-Replayed: true`).
    fn replayed(body: Self::Body) -> Self;
    /// The answer when the key stops the request.
    fn refused(refusal: Refusal) -> Self;
}

/// Runs `once` under the key in `req`'s header, when the app gave one:
/// the request `parts` (the operation's name first) is what makes two
/// requests the same. See [`start`] and [`end`], for a request whose
/// parts borrow what `once` takes.
pub async fn run<R: Keyed>(
    state: &AppState,
    req: &poem::Request,
    parts: &[&[u8]],
    once: impl std::future::Future<Output = R>,
) -> R {
    match start(state, req, parts).await {
        Start::Answer(answer) => answer,
        Start::Run(held) => end(state, held, once.await).await,
    }
}

/// What [`start`] decided.
pub enum Start<R> {
    /// The request does not run: this is its answer (a replay or a
    /// refusal).
    Answer(R),
    /// Run it, then hand the answer to [`end`].
    Run(Option<Held>),
}

/// The first half of [`run`]. The header is read raw, so a value that is
/// not text is refused, not taken for no key.
pub async fn start<R: Keyed>(state: &AppState, req: &poem::Request, parts: &[&[u8]]) -> Start<R> {
    match begin(state, req, parts).await {
        Ok(held) => Start::Run(held),
        Err(Early::Replay(answer)) => {
            let body = serde_json::from_slice::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| R::Body::parse_from_json(Some(v)).ok());
            Start::Answer(match body {
                Some(body) => R::replayed(body),
                None => {
                    tracing::error!("a stored idempotent answer does not parse");
                    R::refused(Refusal::Unavailable)
                }
            })
        }
        Err(Early::Refused(r)) => Start::Answer(R::refused(r)),
    }
}

/// The second half of [`run`]: keeps a successful `response` under the
/// key, frees the key otherwise, and gives `response` back.
pub async fn end<R: Keyed>(state: &AppState, held: Option<Held>, response: R) -> R {
    if let Some(held) = held {
        let answer = response
            .kept()
            .and_then(ToJSON::to_json)
            .map(|v| v.to_string());
        held.finish(state, answer.as_deref().map(str::as_bytes))
            .await;
    }
    response
}

enum Early {
    /// The stored answer of the same request.
    Replay(Vec<u8>),
    Refused(Refusal),
}

/// A request that holds its key.
pub struct Held {
    scope: String,
    fingerprint: [u8; 32],
}

async fn begin(
    state: &AppState,
    req: &poem::Request,
    parts: &[&[u8]],
) -> Result<Option<Held>, Early> {
    let Some(raw) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = raw.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > MAX_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Early::Refused(Refusal::InvalidKey));
    }
    let scope = format!("idem:{key}");
    match state.otp.idempotency_begin(&scope, parts).await {
        Ok((IdempotencyBegin::Started, fingerprint)) => Ok(Some(Held { scope, fingerprint })),
        Ok((IdempotencyBegin::Replay(answer), _)) => Err(Early::Replay(answer)),
        Ok((IdempotencyBegin::InProgress, _)) => Err(Early::Refused(Refusal::InProgress)),
        Ok((IdempotencyBegin::Mismatch, _)) => Err(Early::Refused(Refusal::Reused)),
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), "store error on an Idempotency-Key");
            Err(Early::Refused(Refusal::Unavailable))
        }
    }
}

impl Held {
    /// Keeps `answer` for replay, or frees the key (`None`). A store error
    /// here is logged: the request itself is done, and a key left held
    /// frees itself after its lease.
    async fn finish(self, state: &AppState, answer: Option<&[u8]>) {
        if let Err(e) = state
            .otp
            .idempotency_end(&self.scope, &self.fingerprint, answer)
            .await
        {
            tracing::error!(error = %crate::error::chain(&e), "could not record an idempotent answer; the key frees itself after its lease");
        }
    }
}
