//! Twilio Verify's wire format, for otpd's Twilio-compatible API under
//! `/v2`: what an app written against Twilio Verify (its SDKs, or any
//! client of its REST API) sends and expects back.
//!
//! An adapter of its own: it knows otpd's domain types and Twilio's
//! shapes, nothing of otpd's native API. The routes that use it (in
//! `otp-server`'s `twilio` module) parse these forms, call the same
//! application service as the native API, and render these resources.
//!
//! # Layout
//! - `errors`: Twilio's error body and codes, the domain errors' mapping,
//!   and the `reply!` macro that gives each route its error variants.
//! - `resources`: the JSON resources, the sids, the stored service.
//! - `forms`: the form bodies, PascalCase as Twilio takes them.
//! - `time`: times as Twilio renders them.

pub mod errors;
pub mod forms;
pub mod resources;
pub mod time;
