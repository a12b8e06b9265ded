//! API tests: the real app on port 0 with mocked adapters.

mod auth;
mod channels;
mod errors;
mod helpers;
mod limits;
mod observability;
mod security;
mod spec;
mod telegram;
mod verifications;
