//! The event dispatcher's families: per sink and event type, deliveries,
//! failed attempts and events given up; and the size of each claimed
//! batch. Sink names come from config, types from a closed set.

use otp_domain::EventType;
use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

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

    /// Makes the zero series of `sink`, one per event type, so a sink
    /// shows up in a scrape before its first event.
    pub(super) fn register_sink(&self, sink: &str) {
        for t in EventType::ALL {
            for family in [&self.delivered, &self.failed, &self.given_up] {
                family.with_label_values(&[sink, t.as_str()]);
            }
        }
    }

    pub(super) fn batch(&self, size: usize) {
        self.batch.observe(size as f64);
    }
}

/// The dispatcher's reports, counted.
impl otp_events::Observer for super::Metrics {
    fn claimed(&self, size: usize) {
        self.events.batch(size);
    }

    fn delivered(&self, sink: &str, kind: EventType) {
        self.events
            .delivered
            .with_label_values(&[sink, kind.as_str()])
            .inc();
    }

    fn failed(&self, sink: &str, kind: EventType) {
        self.events
            .failed
            .with_label_values(&[sink, kind.as_str()])
            .inc();
    }

    fn given_up(&self, sink: &str, kind: EventType) {
        self.events
            .given_up
            .with_label_values(&[sink, kind.as_str()])
            .inc();
    }
}
