//! The outbox: the events the stores wrote in the same step as the
//! changes they tell of ([`Outbox`]), and where they are delivered
//! ([`EventSink`]).

use async_trait::async_trait;

use crate::error::StoreError;
use crate::time::Timestamp;
use crate::verification::{EventSettle, EventType, StoredEvent};

/// The store's outbox of events, drained by a dispatcher per instance.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Leases up to `max` outbox events that are due at `now`, oldest
    /// first: they are not handed out again before `now + lease_ms`, so
    /// with several instances each event goes to one of them unless that
    /// one dies or overruns its lease.
    async fn claim_events(
        &self,
        now: Timestamp,
        lease_ms: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Reports how a claimed event went: removes it, or schedules its next
    /// round (counting `tries`).
    async fn settle_event(&self, id: &str, settle: &EventSettle) -> Result<(), StoreError>;
}

/// One event, ready for a sink: its id, type and its encoded document
/// (a CloudEvent).
#[derive(Debug, Clone)]
pub struct EventMessage {
    pub id: String,
    pub kind: EventType,
    pub body: Vec<u8>,
}

/// Why a sink did not take an event. Never holds a URL or a secret.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The receiver answered with a status that is not a success.
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    /// The receiver could not be reached, timed out or refused it; the
    /// adapter's own error is the source.
    #[error("the receiver could not be reached or refused the event")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where events go: a webhook, a stream.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Hands `message` over.
    ///
    /// # Errors
    /// - MUST return `Ok` only when the receiver has it (a 2xx, an entry
    ///   id), so the event is settled;
    /// - any [`SinkError`] means "try again later"; its reason holds no
    ///   URL, token or secret.
    async fn deliver(&self, message: &EventMessage) -> Result<(), SinkError>;
}
