//! The dispatcher: one task per otpd that drains the store's outbox.
//!
//! Each round claims (leases) a batch of due events, delivers each one to
//! every sink that takes its type and does not have it yet, and settles
//! it: `Done` when every such sink has it (or gave it up), else `Retry`
//! at a backed-off time with the sinks that have it, so a sink that is
//! down never holds back the others nor gets a duplicate's second copy
//! sent to a sink that already took it. An event whose instance dies
//! mid-round is claimed again when its lease runs out.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use otp_domain::error::chain;
use otp_domain::ports::{Clock, EventMessage, EventSink, Outbox, Timestamp};
use otp_domain::{Backoff, EventSettle, EventType, StoredEvent};

use crate::cloud::cloud_event;

/// What the dispatcher did, for whoever counts it (the server's metrics).
/// Every method has a no-op default.
pub trait Observer: Send + Sync {
    /// A round claimed `size` events (0 when idle).
    fn claimed(&self, _size: usize) {}
    /// Sink `sink` took an event of type `kind`.
    fn delivered(&self, _sink: &str, _kind: EventType) {}
    /// An attempt to hand an event to `sink` failed; it is retried.
    fn failed(&self, _sink: &str, _kind: EventType) {}
    /// `sink` never took the event within its `max_age`.
    fn given_up(&self, _sink: &str, _kind: EventType) {}
}

/// The observer that counts nothing.
pub struct Unobserved;

impl Observer for Unobserved {}

/// One configured sink, as the dispatcher sees it.
pub struct Sink {
    /// Unique; what an event's `delivered` list records.
    pub name: String,
    /// The types it takes; `None` for all.
    pub types: Option<Vec<EventType>>,
    /// Events older than this are given up.
    pub max_age: Duration,
    /// The most one delivery may take.
    pub timeout: Duration,
    pub deliver: Arc<dyn EventSink>,
}

impl Sink {
    fn wants(&self, t: EventType) -> bool {
        self.types.as_ref().is_none_or(|types| types.contains(&t))
    }
}

/// How the dispatcher paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Events claimed per round.
    pub batch: usize,
    /// Events delivered at once.
    pub concurrency: usize,
    /// How long claimed events are this instance's: longer than a round
    /// can take, shorter than the wait you accept for events of an
    /// instance that died.
    pub lease: Duration,
    /// The pause after a round that found less than a full batch.
    pub idle: Duration,
    pub backoff: Backoff,
}

impl Tuning {
    /// The production pace for sinks whose slowest delivery takes
    /// `timeout`: batches of 64, all at once, polled every 250 ms, leased
    /// for 30 s or three timeouts.
    pub fn for_timeout(timeout: Duration) -> Self {
        Tuning {
            batch: 64,
            concurrency: 64,
            lease: (timeout * 3).max(Duration::from_secs(30)),
            idle: Duration::from_millis(250),
            backoff: EVENT_BACKOFF,
        }
    }
}

/// The retry schedule of sinks: 1 s doubling up to 10 minutes.
pub const EVENT_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(600),
};

/// What a draw of jitter in `[0, 1)` comes from.
pub type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Drains the outbox into the sinks.
pub struct Dispatcher {
    store: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
    source: String,
    sinks: Vec<Sink>,
    tuning: Tuning,
    jitter: Jitter,
    observer: Arc<dyn Observer>,
}

/// How one sink fared with one event.
enum Fate {
    Delivered,
    GaveUp,
    Failed,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Outbox>,
        clock: Arc<dyn Clock>,
        source: String,
        sinks: Vec<Sink>,
        tuning: Tuning,
    ) -> Self {
        Dispatcher {
            store,
            clock,
            source,
            sinks,
            tuning,
            jitter: Arc::new(rand::random::<f64>),
            observer: Arc::new(Unobserved),
        }
    }

    /// Draws jitter from `jitter` instead of the thread's RNG.
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Reports each round and each sink's fate of each event to
    /// `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// One round: claims a batch, delivers it and settles every event.
    /// Returns how many events it claimed.
    ///
    /// # Errors
    /// When the store cannot hand out events (nothing was claimed).
    pub async fn round(&self) -> Result<usize, otp_domain::StoreError> {
        let now = self.clock.now();
        let lease = u64::try_from(self.tuning.lease.as_millis()).unwrap_or(u64::MAX);
        let events = self
            .store
            .claim_events(now, lease, self.tuning.batch)
            .await?;
        self.observer.claimed(events.len());
        let n = events.len();
        stream::iter(events)
            .for_each_concurrent(self.tuning.concurrency.max(1), |e| self.handle(e))
            .await;
        Ok(n)
    }

    /// Rounds forever: the next one at once after a full batch, after the
    /// idle pause otherwise, and after a second when the store failed.
    pub async fn run(self) {
        loop {
            match self.round().await {
                Ok(n) if n >= self.tuning.batch => continue,
                Ok(_) => tokio::time::sleep(self.tuning.idle).await,
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "cannot claim events from the store; trying again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn handle(&self, event: StoredEvent) {
        let pending: Vec<&Sink> = self
            .sinks
            .iter()
            .filter(|s| s.wants(event.kind) && !event.delivered.contains(&s.name))
            .collect();
        let settle = if pending.is_empty() {
            EventSettle::Done
        } else {
            self.deliver(&event, &pending).await
        };
        if let Err(e) = self.store.settle_event(&event.id, &settle).await {
            // The lease runs out and the event is claimed again: sinks
            // that took it this round may get it twice, with its id.
            tracing::warn!(event_id = %event.id, error = %chain(&e), "cannot settle an event; it will be delivered again");
        }
    }

    async fn deliver(&self, event: &StoredEvent, pending: &[&Sink]) -> EventSettle {
        let now = self.clock.now();
        let age = Duration::from_millis(now.saturating_sub(event.time));
        let message = match serde_json::to_vec(&cloud_event(&self.source, event)) {
            Ok(body) => EventMessage {
                id: event.id.clone(),
                kind: event.kind,
                body,
            },
            Err(e) => {
                // A JSON value always serializes; were it not to, no
                // retry would help.
                tracing::error!(event_id = %event.id, error = %e, "cannot encode an event; dropping it");
                return EventSettle::Done;
            }
        };
        let fates = futures_util::future::join_all(pending.iter().map(|sink| {
            let message = &message;
            async move {
                if age > sink.max_age {
                    return Fate::GaveUp;
                }
                match tokio::time::timeout(sink.timeout, sink.deliver.deliver(message)).await {
                    Ok(Ok(())) => Fate::Delivered,
                    Ok(Err(e)) => {
                        tracing::warn!(
                            sink = %sink.name,
                            event_id = %event.id,
                            event_type = %event.kind,
                            tries = event.tries + 1,
                            error = %chain(&e),
                            "event delivery failed; will retry"
                        );
                        Fate::Failed
                    }
                    Err(_) => {
                        tracing::warn!(
                            sink = %sink.name,
                            event_id = %event.id,
                            event_type = %event.kind,
                            tries = event.tries + 1,
                            timeout_ms = u64::try_from(sink.timeout.as_millis()).unwrap_or(u64::MAX),
                            "event delivery timed out; will retry"
                        );
                        Fate::Failed
                    }
                }
            }
        }))
        .await;
        let mut delivered = event.delivered.clone();
        let mut failed = false;
        for (sink, fate) in pending.iter().zip(fates) {
            match fate {
                Fate::Delivered => {
                    self.observer.delivered(&sink.name, event.kind);
                    delivered.push(sink.name.clone());
                }
                Fate::GaveUp => {
                    tracing::error!(
                        sink = %sink.name,
                        event_id = %event.id,
                        event_type = %event.kind,
                        tries = event.tries,
                        age_secs = age.as_secs(),
                        max_age_secs = sink.max_age.as_secs(),
                        "giving up on an event the sink never took"
                    );
                    self.observer.given_up(&sink.name, event.kind);
                    // Recorded as done with, so it is not counted twice.
                    delivered.push(sink.name.clone());
                }
                Fate::Failed => {
                    self.observer.failed(&sink.name, event.kind);
                    failed = true;
                }
            }
        }
        if !failed {
            return EventSettle::Done;
        }
        let wait = self.tuning.backoff.delay(event.tries, (self.jitter)());
        let wait = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        EventSettle::Retry {
            at: now.saturating_add(wait) as Timestamp,
            delivered,
        }
    }
}
