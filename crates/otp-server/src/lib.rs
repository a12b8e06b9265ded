//! otpd's server: the poem-openapi API and the wiring of ports to
//! adapters chosen by config.
//!
//! # Layout
//! - [`config`]: the `otp-config` crate, re-exported: the keys, parsed
//!   once into typed providers and the domain policy.
//! - [`api`]: the operations, security schemes and responses.
//! - [`console`]: the operator console (`/console`), read from the
//!   metrics registry and the verification records.
//! - [`error`]: domain errors → HTTP responses and log lines, in one place.
//! - [`background`]: the sweepers and the event dispatcher
//!   ([`otp_events`]) with its sinks, under one guard.
//! - [`http`]: middleware (request ids, access log and HTTP metrics,
//!   legacy GET-with-body checks, size limit, JSON errors for unknown
//!   routes, `Allow` on every 405).
//! - [`outbox`]: the dev outbox, the dev sink's last messages.
//! - [`pages`]: the HTML pages (`/outbox`, `/console`), server-rendered
//!   with maud.
//! - [`probe`]: `otpd health`, a readiness probe for container health
//!   checks.
//! - [`sinks`]: the `log` development sender.
//! - [`startup`]: building adapters from the resolved config and running
//!   the server.
//! - [`style`]: the CSS the pages share.

pub mod api;
pub mod background;
pub use otp_config as config;
pub mod console;
pub mod error;
pub mod http;
pub mod outbox;
pub mod pages;
pub mod probe;
pub mod sinks;
pub mod startup;
pub mod style;
