//! Verification events, from the store's outbox to the sinks.
//!
//! Every status change of a verification, and every failed delivery, is
//! written by the store, in the same atomic step as the change, as a
//! [`otp_domain::StoredEvent`] in its outbox. Here a [`Dispatcher`] task
//! per instance claims due events, turns each into a CloudEvents 1.0
//! JSON document ([`cloud::cloud_event`], its `data` the record in the
//! form of [`payload`]) and hands it to every configured sink
//! ([`otp_domain::ports::EventSink`]) that takes its type, retrying with
//! the domain's [`otp_domain::Backoff`] until each sink has it or its
//! `max_age` passed. Delivery runs beside the API and never holds up a
//! request. The [`sweeper`] expires overdue verifications, which is what
//! makes their `expired` events, and ends fraud blocks past their time.
//!
//! Guarantees: an event whose transition the API acknowledged is
//! delivered at least once to each sink (it is in the store before the
//! answer); duplicates only follow a fault (an instance dying mid-round, a
//! lost answer), and carry the same id (`webhook-id`). Order is not
//! guaranteed; each event's `time` and the number ending its id
//! (`evt_<verification>_<n>`) order the events of one verification.
//!
//! The dispatcher reports what it did through its [`Observer`]; it knows
//! no metrics crate. The Redis-stream sink lives in `otp-redis`, beside
//! the Redis code it reuses.
//!
//! # Layout
//! - [`payload`]: the events' `data` as serde types, and [`payload::rfc3339`].
//! - [`cloud`]: the CloudEvent of an outbox event.
//! - [`sign`]: Standard Webhooks signatures.
//! - [`webhook`]: the `webhook` sink.
//! - [`dispatcher`]: claim, deliver, settle; the [`Observer`].
//! - [`sweeper`]: the periodic verification and block sweeps.

pub mod cloud;
pub mod dispatcher;
pub mod payload;
pub mod sign;
pub mod sweeper;
pub mod webhook;

pub use dispatcher::{Dispatcher, Jitter, Observer, Sink, Tuning, Unobserved, EVENT_BACKOFF};
pub use webhook::WebhookSink;
