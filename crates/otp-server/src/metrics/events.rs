//! The event dispatcher's families: per sink and event type, deliveries,
//! failed attempts and events given up; and the size of each claimed
//! batch. Sink names come from config, types from a closed set.

use otp_domain::EventType;
use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

pub(super) const BATCH_HISTOGRAM: &str = "otpd_event_claim_batch_size";

pub(super) struct EventFamilies {
    delivered: IntCounterVec,
    failed: IntCounterVec,
    given_up: IntCounterVec,
    batch: Histogram,
}

impl EventFamilies {
    pub(super) fn new() -> Result<Self, prometheus::Error> {
        let counter =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["sink", "type"]);
        Ok(EventFamilies {
            delivered: counter(
                "otpd_events_delivered_total",
                "Events a sink took, by sink name and event type.",
            )?,
            failed: counter(
                "otpd_event_delivery_failures_total",
                "Attempts to hand an event to a sink that failed (it is retried), by sink name and event type.",
            )?,
            given_up: counter(
                "otpd_events_given_up_total",
                "Events a sink never took within its max_age, so otpd stopped trying, by sink name and event type.",
            )?,
            batch: Histogram::with_opts(
                HistogramOpts::new(
                    BATCH_HISTOGRAM,
                    "Events claimed from the store's outbox per dispatcher round (0 when idle).",
                )
                .buckets(vec![0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
            )?,
        })
    }

    pub(super) fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.delivered.clone()),
            Box::new(self.failed.clone()),
            Box::new(self.given_up.clone()),
            Box::new(self.batch.clone()),
        ]
    }

    pub(super) fn sink(&self, sink: &str) -> SinkMetrics {
        let each = |family: &IntCounterVec| {
            EventType::ALL.map(|t| family.with_label_values(&[sink, t.as_str()]))
        };
        SinkMetrics {
            delivered: each(&self.delivered),
            failed: each(&self.failed),
            given_up: each(&self.given_up),
        }
    }

    pub(super) fn batch(&self, size: usize) {
        self.batch.observe(size as f64);
    }
}

/// One sink's counters, resolved once, with a zero series per type.
#[derive(Clone)]
pub struct SinkMetrics {
    delivered: [IntCounter; EventType::ALL.len()],
    failed: [IntCounter; EventType::ALL.len()],
    given_up: [IntCounter; EventType::ALL.len()],
}

fn index(t: EventType) -> usize {
    EventType::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

impl SinkMetrics {
    pub fn delivered(&self, t: EventType) {
        self.delivered[index(t)].inc();
    }

    pub fn failed(&self, t: EventType) {
        self.failed[index(t)].inc();
    }

    pub fn given_up(&self, t: EventType) {
        self.given_up[index(t)].inc();
    }
}
