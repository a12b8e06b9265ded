//! otpd's telemetry, fed at the server's boundaries so the domain and the
//! adapters stay free of metric calls.
//!
//! # Layout
//! - [`metrics`]: the Prometheus registry that the server owns (no
//!   global) and its families; [`metrics::MeteredStore`], which times
//!   every store call of every role; process metrics from `/proc`; the
//!   event dispatcher's [`otp_events::Observer`] and the delivery's
//!   [`otp_delivery::AttemptObserver`].
//! - [`snapshot`]: the typed counts of the last hour the console shows,
//!   from minute samples of the same registry.
//! - [`logging`]: the text or JSON log subscriber behind a non-blocking
//!   batch writer.

pub mod logging;
pub mod metrics;
pub mod snapshot;

pub use metrics::{MeteredStore, Metrics};
