//! Verification events, from the store's outbox to the sinks.
//!
//! Every status change of a verification, and every failed delivery, is
//! written by the store, in the same atomic step as the change, as a
//! [`otp_domain::StoredEvent`] in its outbox. Here a [`Dispatcher`] task
//! per instance claims due events, turns each into a CloudEvents 1.0
//! JSON document ([`cloud::cloud_event`], its `data` the record's API
//! form [`record::api_json`]) and hands it to every configured sink that
//! takes its type, retrying with backoff ([`backoff`]) until each sink
//! has it or its `max_age` passed. Delivery runs beside the API and never
//! holds up a request. The [`sweeper`] expires overdue verifications,
//! which is what makes their `expired` events.
//!
//! Guarantees: an event whose transition the API acknowledged is
//! delivered at least once to each sink (it is in the store before the
//! answer); duplicates only follow a fault (an instance dying mid-round, a
//! lost answer), and carry the same id (`webhook-id`). Order is not
//! guaranteed; each event's `time` and the number ending its id
//! (`evt_<verification>_<n>`) order the events of one verification.
//!
//! # Layout
//! - [`record`]: [`record::api_json`], the API form of a verification
//!   (shared with `GET /verifications/{id}`), and [`record::rfc3339`].
//! - [`cloud`]: the CloudEvent of an outbox event.
//! - [`sign`]: Standard Webhooks signatures.
//! - [`backoff`]: the retry schedule.
//! - [`sinks`]: the `webhook` and `redis-stream` sinks behind
//!   [`sinks::Deliver`].
//! - [`dispatcher`]: claim, deliver, settle.
//! - [`sweeper`]: the periodic `VerificationStore::sweep`.

pub mod backoff;
pub mod cloud;
pub mod dispatcher;
pub mod record;
pub mod sign;
pub mod sinks;
pub mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use otp_domain::ports::{Clock, Store};

pub use dispatcher::{Dispatcher, Sink, Tuning};

use crate::config::{EventSettings, SinkTarget};
use crate::metrics::Metrics;

/// A sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("events sink {sink}: cannot build the HTTP client")]
    Http {
        sink: String,
        #[source]
        source: otp_http::ClientError,
    },
    #[error("events sink {sink}: redis-rs refused the URL")]
    Redis {
        sink: String,
        #[source]
        source: redis::RedisError,
    },
}

/// The sinks `settings` configures.
///
/// # Errors
/// When a sink's client cannot be built.
pub fn build_sinks(
    settings: &EventSettings,
    clock: &Arc<dyn Clock>,
    metrics: Option<&Metrics>,
) -> Result<Vec<Sink>, EventsError> {
    settings
        .sinks
        .iter()
        .map(|s| {
            let deliver: Arc<dyn sinks::Deliver> = match &s.target {
                SinkTarget::Webhook { url, key } => Arc::new(
                    sinks::WebhookSink::new(url.clone(), key.clone(), s.timeout, clock.clone())
                        .map_err(|source| EventsError::Http {
                            sink: s.name.clone(),
                            source,
                        })?,
                ),
                SinkTarget::RedisStream {
                    url,
                    stream,
                    maxlen,
                } => Arc::new(
                    sinks::RedisStreamSink::new(url, stream.clone(), *maxlen, s.timeout).map_err(
                        |source| EventsError::Redis {
                            sink: s.name.clone(),
                            source,
                        },
                    )?,
                ),
            };
            tracing::info!(sink = %s.name, kind = s.target.kind(), "events sink ready");
            Ok(Sink {
                name: s.name.clone(),
                types: s.types.clone(),
                max_age: s.max_age,
                timeout: s.timeout,
                deliver,
                metrics: metrics.map(|m| m.event_sink(&s.name)),
            })
        })
        .collect()
}

/// The running background tasks; they stop when this is dropped.
pub struct EventTasks {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for EventTasks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the sweeper (every second) and the dispatcher on the current
/// runtime.
///
/// # Errors
/// When a sink cannot be set up.
pub fn spawn(
    settings: &EventSettings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Option<Arc<Metrics>>,
) -> Result<EventTasks, EventsError> {
    let sinks = build_sinks(settings, &clock, metrics.as_deref())?;
    let slowest = sinks
        .iter()
        .map(|s| s.timeout)
        .max()
        .unwrap_or(Duration::from_secs(10));
    let mut dispatcher = Dispatcher::new(
        store.clone(),
        clock.clone(),
        settings.source.clone(),
        sinks,
        Tuning::for_timeout(slowest),
    );
    if let Some(m) = metrics {
        dispatcher = dispatcher.with_metrics(m);
    }
    let sweeper = sweeper::spawn_sweeper(store, clock, Duration::from_secs(1));
    let dispatcher = tokio::spawn(dispatcher.run());
    Ok(EventTasks {
        tasks: vec![sweeper, dispatcher],
    })
}

#[cfg(test)]
mod tests;
