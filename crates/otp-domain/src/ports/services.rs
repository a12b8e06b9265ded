//! [`ServiceStore`]: the services of the Twilio-compatible API (`/v2`),
//! kept in the same store as everything else so they survive a restart
//! and every instance on a shared store sees the same ones.
//!
//! A service is the API's own record; the store keeps it as opaque bytes
//! under its sid and never reads it.

use async_trait::async_trait;

use crate::error::StoreError;

/// The `/v2` services, by sid.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// Stores `record` under `sid`, replacing what was there.
    ///
    /// # Errors
    /// `StoreError::Unavailable` when the backend cannot be reached.
    async fn put_service(&self, sid: &str, record: &[u8]) -> Result<(), StoreError>;

    /// The record under `sid`, if there is one.
    ///
    /// # Errors
    /// As [`ServiceStore::put_service`].
    async fn service(&self, sid: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes `sid`'s record; whether there was one.
    ///
    /// # Errors
    /// As [`ServiceStore::put_service`].
    async fn delete_service(&self, sid: &str) -> Result<bool, StoreError>;

    /// Every record, as `(sid, record)`, in sid order.
    ///
    /// # Errors
    /// As [`ServiceStore::put_service`].
    async fn services(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}
