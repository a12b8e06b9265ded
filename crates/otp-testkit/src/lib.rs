//! Test support for otpd: loopback stand-ins for the providers the
//! adapters talk to, and real redis-server processes for the Redis store,
//! shared by the adapters' wire tests and the server's end-to-end tests.
//! Each provider peer records what it received, so a test can assert what
//! a provider (and so a user) would see.
//!
//! Only tests use this crate: crates take it as a dev-dependency, never
//! as a dependency, so no production crate builds a harness (or
//! `tempfile`). It panics with a plain message when a peer cannot start,
//! as a test should; a missing tool (redis-server, openssl, python3) is a
//! failure with an install hint, never a skip.
//!
//! Every provider peer has two constructors. The plain one is `async` and
//! runs on the test's tokio runtime (`#[tokio::test]`); the `_blocking`
//! one needs no runtime, for plain `#[test]` functions that drive a
//! separate `otpd` process. The Redis processes start and stop without a
//! runtime. Everything stops when its value is dropped.
//!
//! # Layout
//! - [`http`]: [`FakePeer`], a recording HTTP server that answers with a
//!   canned [`Reply`] or a script of them (gateway, Twilio, Bot API,
//!   notify relay), [`Recorded`] requests, [`closed_port`] and
//!   [`silent_port`].
//! - [`smtp`]: [`SmtpPeer`], a real SMTP server (Python's aiosmtpd) that
//!   keeps each [`Received`] message with its envelope.
//! - [`redis`]: [`redis::RedisServer`] (standalone, append-only file, TLS;
//!   kill and restart on the same port) and [`redis::RedisCluster`] (three
//!   masters), each on free ports and a temporary folder. They hand out
//!   URLs; a test builds its own store config from them.
//! - [`webhooks`]: Standard Webhooks signatures checked by the reference
//!   library.
//! - [`chain_text`]: an error's whole source chain as text, for "no secret
//!   leaks" checks; [`chain`], any error's chain as a log line shows it.
//! - [`outgoing`]: the message a sender gets, for the adapters' wire tests.

use std::time::{Duration, Instant};

pub mod http;
pub mod redis;
pub mod smtp;
pub mod webhooks;

pub use http::{closed_port, silent_port, FakePeer, Recorded, Reply};
/// The parser [`Received::parsed`] returns messages from, so tests use the
/// same version for its traits (`MimeHeaders`).
pub use mail_parser;
/// An error and its causes as one log line, for the "no secret leaks"
/// checks of suites whose crate does not depend on otp-domain.
pub use otp_domain::error::chain;
pub use smtp::{Received, SmtpPeer};

/// Every message in an error's source chain, `Display` and `Debug`, joined
/// with ` | `: assert that a secret is not in it to prove no error leaks it.
pub fn chain_text(err: &otp_domain::DeliveryError) -> String {
    let mut text = format!("{err} | {err:?}");
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    text
}

/// A message to `destination` with `body`, no subject, no locale and no
/// verification, carrying the code `1234`: what a wire test hands a
/// sender. A test that needs more sets those fields on the result.
pub fn outgoing(destination: otp_domain::Destination, body: &str) -> otp_domain::OutgoingMessage {
    otp_domain::OutgoingMessage {
        verification: None,
        destination,
        subject: None,
        body: body.to_owned(),
        code: otp_domain::Code::parse("1234").expect("a valid code"),
        locale: None,
    }
}

/// How long a `wait_for` waits for the count it was given before it
/// returns what arrived, so the test's assertion shows what is missing.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `arrived` until it holds `n` items or [`WAIT`] passed.
fn wait_until<T>(n: usize, mut arrived: impl FnMut() -> Vec<T>) -> Vec<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = arrived();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs blocking `work` off the async runtime; its panic, such as a failed
/// start's message, becomes the caller's.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
