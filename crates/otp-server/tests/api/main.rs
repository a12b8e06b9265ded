//! API tests: the real app on port 0 with mocked adapters.

mod auth;
mod channels;
mod console;
mod errors;
mod fraud;
mod helpers;
mod limits;
mod locales;
mod observability;
mod security;
mod spec;
mod telegram;
mod twilio;
mod verifications;
mod whatsapp;
