//! The OTP rules of otpd: newtypes, policies, the canonical service and the
//! port traits that adapters implement. This crate does no IO.
//!
//! # Layout
//! - [`types`]: parsed newtypes (`Phone`, `Email`, `ChatId`, `Code`, `Lifetime`),
//!   `Channel` and the `Destination` they make up; `CheckTarget`, a check's
//!   address read only as far as finding its code needs (a phone's shape,
//!   not its validity).
//! - [`ports`]: the traits adapters implement (`CodeStore`, `Sender`, `Clock`,
//!   `CodeGenerator`) and the records they exchange.
//! - [`policy`]: `Policy`, every tunable rule, and its check with a typed
//!   `PolicyError` (which `Setting`, what `Problem`).
//! - [`settings`]: `FieldError`, what an adapter's settings check reports,
//!   naming the field within the adapter's section.
//! - [`codes`]: the CSPRNG code generator and the pairing alphabet.
//! - [`digest`]: keyed hashing of codes, so no store ever holds a code;
//!   and the sealed code a later resend needs (`SealedCode`), which only
//!   the holder of the server secret can open.
//! - [`state`]: the pure check / rate-limit state machine, shared by the
//!   in-process stores (Redis re-implements it in Lua).
//! - [`service`]: `OtpService`, the one place that owns every rule; its
//!   `fallback` part holds WhatsApp's SMS fallback, at send time and after
//!   a provider's status report.
//! - [`template`]: `{password}` / `{lifetime}` / `{minutes}` message
//!   templating, in one pass.
//! - [`locale`]: BCP-47 tags, their fallback chains, and `Locales`, the
//!   catalog of texts per locale with the locale of each region.
//! - [`error`]: one error enum per operation, and `DeliveryError`, the
//!   `Sender` port's error. It imports no other module, so the ports can use
//!   it without a cycle.
//! - `contract` (feature `contract`): the behaviour every `CodeStore` must
//!   show, as one suite that each store crate runs against its store.
//! - [`verification`]: a send's record (`Verification`, its `Status`),
//!   the transitions the stores apply, and the events they write to their
//!   outbox.
//! - [`memory`]: an in-memory `CodeStore`, for tests and as the reference
//!   implementation of the port's contract.

pub mod backoff;
pub mod codes;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod digest;
pub mod error;
pub mod fraud;
pub mod hex;
pub mod locale;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod outcome;
pub mod policy;
pub mod ports;
pub mod service;
pub mod settings;
pub mod state;
pub mod template;
pub mod time;
pub mod types;
pub mod verification;

pub use backoff::Backoff;
pub use codes::RandomCodes;
pub use digest::{CodeDigest, CodeHasher, SealedCode};
pub use error::{
    CheckError, DeliveryError, Limit, PairError, ParseError, SendError, SendErrorKind, StoreError,
    TargetError,
};
pub use locale::{Locale, LocaleSource, LocaleTag, Locales, LocalesError, Templates};
pub use policy::{ChannelBudget, CountryRules, Policy, PolicyError};
pub use ports::{
    CheckOutcome, CheckScope, Checked, Clock, CodeGenerator, CodeRecord, CodeStore, Delivered,
    EventMessage, EventSink, FraudLedger, IdempotencyStore, Outbox, OutgoingMessage,
    PairingOutcome, PutOutcome, RateBucket, Sender, SinkError, Store, SystemClock, Timestamp,
    VerificationStore,
};
pub use service::{
    App, CheckRequest, FraudGuard, OtpService, ReportEffect, SendReceipt, SendRequest, Senders,
    Stores,
};
pub use settings::{FieldError, FieldProblem};
pub use types::{Channel, ChatId, CheckTarget, Code, Destination, Email, Lifetime, Phone, Region};
pub use verification::{
    AttemptOutcome, CancelOutcome, CancelReason, DeliveryAttempt, DeliveryReport, EventData,
    EventSettle, EventType, IdempotencyBegin, ReportOutcome, ReportUpdate, Status, StoredEvent,
    Verification, VerificationId,
};
