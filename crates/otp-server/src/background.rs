//! The work every instance does beside the API, each task under one
//! guard ([`Background`]) that aborts them all when dropped:
//!
//! - the verification sweep (each second): pending verifications past
//!   their time end as `expired`, with their event;
//! - the fraud guard's block sweep (each second, when the guard is on);
//! - the embedded store's file sweep (each minute);
//! - the event dispatcher, from the store's outbox to the configured
//!   sinks ([`otp_events`]).
//!
//! On Redis they get a store of their own (their own connection), so
//! their scripts never queue in front of an API request's on the shared,
//! pipelined socket, nor share its timeouts; the embedded store is one
//! file and is shared.

use std::sync::Arc;
use std::time::Duration;

use otp_domain::ports::{Clock, Store};
use otp_events::{sweeper, Dispatcher, Sink, Tuning, WebhookSink};
use otp_redis::RedisStreamSink;

use crate::config::{EventSettings, SinkTarget};
use otp_telemetry::metrics::Metrics;

/// A sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("events sink {sink}: cannot build the HTTP client")]
    Http {
        sink: String,
        #[source]
        source: otp_http::ClientError,
    },
    #[error("events sink {sink}: cannot set up the Redis stream")]
    Redis {
        sink: String,
        #[source]
        source: otp_redis::RedisStoreError,
    },
}

/// A task that is aborted when this is dropped (a bare `JoinHandle`
/// detaches its task instead).
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running background tasks; dropping this aborts every one.
pub struct Background {
    tasks: tokio::task::JoinSet<()>,
}

impl Background {
    /// How many tasks run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// What the background tasks run on.
pub struct Inputs {
    /// Their own store (see the module doc), metered like the API's.
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Whether the fraud guard is on, so its blocks need sweeping.
    pub fraud_guard: bool,
    /// The embedded store, when used, for its file sweep.
    pub embedded: Option<otp_store_embedded::EmbeddedStore>,
    pub metrics: Option<Arc<Metrics>>,
}

/// Starts every background task on the current runtime.
///
/// # Errors
/// When an event sink cannot be set up.
pub fn spawn(events: &EventSettings, inputs: Inputs) -> Result<Background, EventsError> {
    let Inputs {
        store,
        clock,
        fraud_guard,
        embedded,
        metrics,
    } = inputs;
    let mut tasks = tokio::task::JoinSet::new();

    let (s, c) = (store.clone(), clock.clone());
    tasks.spawn(sweeper::every(Duration::from_secs(1), move || {
        let (s, c) = (s.clone(), c.clone());
        async move { sweeper::sweep_verifications(s.as_ref(), c.as_ref()).await }
    }));

    if fraud_guard {
        // Each block ends once, with its `otpd.fraud.prefix_unblocked`
        // event, however many instances sweep (the store sees to that).
        let (s, c) = (store.clone(), clock.clone());
        tasks.spawn(sweeper::every(Duration::from_secs(1), move || {
            let (s, c) = (s.clone(), c.clone());
            async move { sweeper::expire_blocks(s.as_ref(), c.as_ref()).await }
        }));
    }

    if let Some(embedded) = embedded {
        // Expired entries go, so the file does not grow with codes
        // nobody checked.
        let c = clock.clone();
        tasks.spawn(sweeper::every(Duration::from_secs(60), move || {
            let (embedded, c) = (embedded.clone(), c.clone());
            async move {
                match embedded.sweep_expired(c.now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "swept expired entries"),
                    Err(e) => {
                        tracing::warn!(error = %otp_domain::error::chain(&e), "sweep failed");
                    }
                }
            }
        }));
    }

    let dispatcher = dispatcher(events, store, clock, metrics)?;
    tasks.spawn(dispatcher.run());
    Ok(Background { tasks })
}

/// The dispatcher of the sinks `settings` configures.
///
/// # Errors
/// When a sink's client cannot be built.
pub fn dispatcher(
    settings: &EventSettings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Option<Arc<Metrics>>,
) -> Result<Dispatcher, EventsError> {
    let sinks = settings
        .sinks
        .iter()
        .map(|s| {
            let deliver: Arc<dyn otp_domain::ports::EventSink> = match &s.target {
                SinkTarget::Webhook { url, key } => Arc::new(
                    WebhookSink::new(url.clone(), key.clone(), s.timeout, clock.clone()).map_err(
                        |source| EventsError::Http {
                            sink: s.name.clone(),
                            source,
                        },
                    )?,
                ),
                SinkTarget::RedisStream {
                    url,
                    stream,
                    maxlen,
                } => Arc::new(
                    RedisStreamSink::new(
                        secrecy::ExposeSecret::expose_secret(url),
                        stream.clone(),
                        *maxlen,
                        s.timeout,
                    )
                    .map_err(|source| EventsError::Redis {
                        sink: s.name.clone(),
                        source,
                    })?,
                ),
            };
            if let Some(m) = &metrics {
                m.event_sink(&s.name);
            }
            tracing::info!(sink = %s.name, kind = s.target.kind(), "events sink ready");
            Ok(Sink {
                name: s.name.clone(),
                types: s.types.clone(),
                max_age: s.max_age,
                timeout: s.timeout,
                deliver,
            })
        })
        .collect::<Result<Vec<_>, EventsError>>()?;
    let slowest = sinks
        .iter()
        .map(|s| s.timeout)
        .max()
        .unwrap_or(Duration::from_secs(10));
    let dispatcher = Dispatcher::new(
        store,
        clock,
        settings.source.clone(),
        sinks,
        Tuning::for_timeout(slowest),
    );
    Ok(match metrics {
        Some(m) => dispatcher.with_observer(m),
        None => dispatcher,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_guard_aborts_its_task() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let guard = AbortOnDrop(tokio::spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        }));
        drop(guard);
        // The sender goes with the aborted task, which closes the channel.
        assert!(rx.recv().await.is_none());
    }
}
