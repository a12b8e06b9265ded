//! The ports: traits the domain needs from the outside world, one module
//! per role, and the records that cross them. Adapters implement these;
//! the server picks the implementations from config and holds them as
//! `Arc<dyn …>`.
//!
//! # Layout
//! - [`codes`]: [`CodeStore`], codes and pairings with their rate buckets,
//!   the steps of a send and a check.
//! - [`verifications`]: [`VerificationStore`], reading, canceling and
//!   expiring the records of sends.
//! - [`outbox`]: [`Outbox`], leasing the events the stores wrote, and
//!   [`EventSink`], where they go.
//! - [`idempotency`]: [`IdempotencyStore`], requests under an app's
//!   `Idempotency-Key`.
//! - [`fraud`]: [`FraudLedger`], the fraud guard's counters and blocks.
//! - [`senders`]: [`Sender`], delivering a message on a channel.
//! - [`random`]: [`CodeGenerator`], the randomness of codes and ids.
//! - [`services`]: [`ServiceStore`], the Twilio-compatible API's
//!   services.
//!
//! One store usually implements every store port; [`Store`] names that
//! whole, so the server opens a store once and hands each part out.

pub mod codes;
pub mod fraud;
pub mod idempotency;
pub mod outbox;
pub mod random;
pub mod senders;
pub mod services;
pub mod verifications;

pub use crate::outcome::{
    CheckOutcome, HitOutcome, PairingOutcome, PutOutcome, RateBucket, TakeOutcome,
};
pub use crate::time::{Clock, SystemClock, Timestamp};
pub use codes::{
    CheckScope, Checked, CodeCheck, CodeDiscard, CodeRecord, CodeStore, Delivery, FraudCount,
    FraudTally, NewPairing, SendLimits, StagedSend,
};
pub use fraud::FraudLedger;
pub use idempotency::{IdempotencyAnswer, IdempotencyClaim, IdempotencyStore};
pub use outbox::{EventMessage, EventSink, Outbox, SinkError};
pub use random::CodeGenerator;
pub use senders::{Delivered, DeliveryError, MessageLocale, OutgoingMessage, Sender};
pub use services::ServiceStore;
pub use verifications::VerificationStore;

#[cfg(any(test, feature = "mocks"))]
pub use crate::time::MockClock;
#[cfg(any(test, feature = "mocks"))]
pub use codes::MockCodeStore;
#[cfg(any(test, feature = "mocks"))]
pub use fraud::MockFraudLedger;
#[cfg(any(test, feature = "mocks"))]
pub use random::MockCodeGenerator;
#[cfg(any(test, feature = "mocks"))]
pub use senders::MockSender;

/// Every store port at once: what a store crate's store is, so the
/// server opens it once and hands each role its part (trait upcasting).
pub trait Store: CodeStore + VerificationStore + Outbox + IdempotencyStore + FraudLedger {}

impl<T: CodeStore + VerificationStore + Outbox + IdempotencyStore + FraudLedger> Store for T {}
