//! Prometheus metrics: one registry that the server owns (no global), fed
//! at the server's boundaries only, so the domain and the adapters stay
//! free of metric calls:
//! - the API's generic send and check paths count outcomes
//!   and verifications;
//! - [`MeteredStore`] wraps the `CodeStore` port and times every call;
//! - the server's `delivery::ReliableSender` reports each provider attempt;
//! - the server's `http::observe` middleware counts requests by route
//!   template;
//! - the event dispatcher ([`otp_events::Dispatcher`]) reports deliveries
//!   per sink through [`otp_events::Observer`].
//!
//! Every label value comes from a closed set (enums, configured provider
//! names, ISO regions, the spec's route templates), never from a request:
//! no destination, code or id can become a label.
//!
//! The server answers `GET /metrics` with [`Metrics::render`] on a
//! listener of its own.

mod events;
mod process;
mod store;

use std::sync::Arc;
use std::time::Duration;

use otp_domain::{
    Channel, CheckError, CheckTarget, Destination, Limit, Region, SendError, SendErrorKind,
};
use prometheus::core::Collector;
use prometheus::proto::MetricType;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub use self::store::MeteredStore;

/// The names of the families the console reads (see [`crate::snapshot`]),
/// written once for both.
pub(crate) mod names {
    pub const SENDS: &str = "otpd_sends_total";
    pub const RATE_LIMITED: &str = "otpd_sends_rate_limited_total";
    pub const CHECKS: &str = "otpd_checks_total";
    pub const STARTED: &str = "otpd_verifications_started_total";
    pub const ENDED: &str = "otpd_verifications_ended_total";
    pub const ATTEMPTS: &str = "otpd_delivery_attempts_total";
    pub const STORE_SECONDS: &str = "otpd_store_operation_duration_seconds";
    pub const STORE_ERRORS: &str = "otpd_store_errors_total";
}

/// What became of a send request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Stored and accepted by a provider.
    Sent,
    /// A test destination: stored, never delivered.
    Test,
    /// The request did not parse or broke a rule of its fields (400).
    Invalid,
    /// The destination's country is not allowed on the channel (403).
    CountryRefused,
    /// The fraud guard blocks the number's prefix (403).
    FraudRefused,
    /// A limit refused it (429); which one is in the rate-limit counter.
    RateLimited,
    /// Every provider failed (502); the code was discarded.
    DeliveryFailed,
    /// The store failed (503).
    StoreError,
}

impl SendOutcome {
    const ALL: [SendOutcome; 8] = [
        SendOutcome::Sent,
        SendOutcome::Test,
        SendOutcome::Invalid,
        SendOutcome::CountryRefused,
        SendOutcome::FraudRefused,
        SendOutcome::RateLimited,
        SendOutcome::DeliveryFailed,
        SendOutcome::StoreError,
    ];

    fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Sent => "sent",
            SendOutcome::Test => "test",
            SendOutcome::Invalid => "invalid",
            SendOutcome::CountryRefused => "country_refused",
            SendOutcome::FraudRefused => "fraud_refused",
            SendOutcome::RateLimited => "rate_limited",
            SendOutcome::DeliveryFailed => "delivery_failed",
            SendOutcome::StoreError => "store_error",
        }
    }

    fn of(result: &Result<(), &SendError>) -> Self {
        match result.map_err(|e| e.kind()) {
            Ok(()) => SendOutcome::Sent,
            Err(SendErrorKind::Invalid | SendErrorKind::UnsupportedLocale) => SendOutcome::Invalid,
            Err(SendErrorKind::CountryRefused) => SendOutcome::CountryRefused,
            Err(SendErrorKind::FraudRefused) => SendOutcome::FraudRefused,
            Err(SendErrorKind::RateLimited) => SendOutcome::RateLimited,
            Err(SendErrorKind::DeliveryFailed) => SendOutcome::DeliveryFailed,
            Err(SendErrorKind::StoreError) => SendOutcome::StoreError,
        }
    }
}

/// What became of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Approved,
    WrongPassword,
    /// Refused without counting: the attempts were used up earlier.
    Locked,
    NotFound,
    Invalid,
    StoreError,
}

impl CheckOutcome {
    const ALL: [CheckOutcome; 6] = [
        CheckOutcome::Approved,
        CheckOutcome::WrongPassword,
        CheckOutcome::Locked,
        CheckOutcome::NotFound,
        CheckOutcome::Invalid,
        CheckOutcome::StoreError,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CheckOutcome::Approved => "approved",
            CheckOutcome::WrongPassword => "wrong_password",
            CheckOutcome::Locked => "locked",
            CheckOutcome::NotFound => "not_found",
            CheckOutcome::Invalid => "invalid",
            CheckOutcome::StoreError => "store_error",
        }
    }
}

/// How a verification (one sent code) ended. The lifecycle records will
/// add `expired` and `canceled`; until then those leave no trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Approved,
    /// The attempt that used up the last try.
    MaxAttemptsReached,
    /// Every provider failed; the code was discarded.
    Failed,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Ended::Approved => "approved",
            Ended::MaxAttemptsReached => "max_attempts_reached",
            Ended::Failed => "failed",
        }
    }
}

pub use otp_delivery::Attempt;

/// The metric families otpd exports, and the registry that holds them.
pub struct Metrics {
    registry: Registry,
    sends: IntCounterVec,
    sends_rate_limited: IntCounterVec,
    checks: IntCounterVec,
    started: IntCounterVec,
    ended: IntCounterVec,
    delivery_attempts: IntCounterVec,
    delivery_seconds: HistogramVec,
    store_seconds: HistogramVec,
    store_errors: IntCounterVec,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    log_dropped: IntCounter,
    fraud_blocks: IntCounterVec,
    fraud_refused: IntCounterVec,
    log_dropped_source: std::sync::OnceLock<crate::logging::DroppedLines>,
    /// The last failure of each provider, for the console.
    provider_errors: std::sync::Mutex<Vec<(Channel, String, LastErrorSlot)>>,
    process: process::ProcessMetrics,
    events: events::EventFamilies,
    /// Every family's name, for [`Metrics::family_names`].
    families: Vec<(String, prometheus::proto::MetricType)>,
}

/// Latency buckets, in seconds, for work that takes microseconds to
/// milliseconds (HTTP, store calls).
const FAST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// For provider calls: tens of milliseconds to the delivery deadline.
const DELIVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The registry as [`Metrics::new`] fills it: each family is made and
/// registered in one step, and its name and kind noted for
/// [`Metrics::family_names`].
#[derive(Default)]
struct Families {
    registry: Registry,
    names: Vec<(String, MetricType)>,
}

impl Families {
    fn add<C>(&mut self, c: C, kind: MetricType) -> Result<C, prometheus::Error>
    where
        C: Collector + Clone + 'static,
    {
        for desc in c.desc() {
            self.names.push((desc.fq_name.clone(), kind));
        }
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn counter(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.add(c, MetricType::COUNTER)
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, prometheus::Error> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels)?, MetricType::HISTOGRAM)
    }

    /// The families of the process and the event dispatcher, whose kind
    /// their name says (`_total` counters; the one histogram is the
    /// dispatcher's batch size).
    fn others(
        &mut self,
        collectors: impl IntoIterator<Item = Box<dyn Collector>>,
    ) -> Result<(), prometheus::Error> {
        for c in collectors {
            for desc in c.desc() {
                let kind = if desc.fq_name == events::BATCH_HISTOGRAM {
                    MetricType::HISTOGRAM
                } else if desc.fq_name.ends_with("_total") {
                    MetricType::COUNTER
                } else {
                    MetricType::GAUGE
                };
                self.names.push((desc.fq_name.clone(), kind));
            }
            self.registry.register(c)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// The families, with a zero series for every label set known at
    /// start, so `rate()` sees the first increment. (Providers and store
    /// operations get theirs when [`Metrics::provider`] and
    /// [`MeteredStore::new`] resolve their handles.)
    ///
    /// # Errors
    /// Only on a programming error (a bad name or a duplicate family).
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let mut f = Families::default();
        let sends = f.counter(
            names::SENDS,
            "Send requests, by channel and outcome (sent, test, invalid, country_refused, fraud_refused, rate_limited, delivery_failed, store_error).",
            &["channel", "outcome"],
        )?;
        let sends_rate_limited = f.counter(
            names::RATE_LIMITED,
            "Sends refused with 429, by channel and the limit that refused them (destination, user, channel).",
            &["channel", "limit"],
        )?;
        let checks = f.counter(
            names::CHECKS,
            "Checks, by channel and outcome (approved, wrong_password, locked, not_found, invalid, store_error).",
            &["channel", "outcome"],
        )?;
        let started = f.counter(
            names::STARTED,
            "Codes stored for delivery (test destinations excluded), by channel and country (ISO region of the phone, none otherwise).",
            &["channel", "country"],
        )?;
        let ended = f.counter(
            names::ENDED,
            "Verifications that ended, by channel, country and status (approved, max_attempts_reached, failed).",
            &["channel", "country", "status"],
        )?;
        let delivery_attempts = f.counter(
            names::ATTEMPTS,
            "Attempts to hand a message to a provider, by channel, provider and outcome (delivered, transient_error, permanent_error, deadline).",
            &["channel", "provider", "outcome"],
        )?;
        let delivery_seconds = f.histogram(
            "otpd_delivery_attempt_duration_seconds",
            "Time of one provider attempt, by channel and provider.",
            &["channel", "provider"],
            DELIVERY_BUCKETS,
        )?;
        let store_seconds = f.histogram(
            names::STORE_SECONDS,
            "Time of one store call, by store kind and operation.",
            &["store", "operation"],
            FAST_BUCKETS,
        )?;
        let store_errors = f.counter(
            names::STORE_ERRORS,
            "Store calls that failed (backend unreachable or corrupt data), by store kind and operation.",
            &["store", "operation"],
        )?;
        let http_requests = f.counter(
            "otpd_http_requests_total",
            "HTTP requests, by route template, method and status class.",
            &["route", "method", "status"],
        )?;
        let http_seconds = f.histogram(
            "otpd_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            &["route", "method"],
            FAST_BUCKETS,
        )?;
        let log_dropped = f.add(
            IntCounter::new(
                "otpd_log_lines_dropped_total",
                "Log lines dropped because the log writer was behind (logging never blocks a request).",
            )?,
            MetricType::COUNTER,
        )?;
        let fraud_blocks = f.counter(
            "otpd_fraud_blocks_total",
            "Number prefixes the fraud guard blocked (low conversion), by country (ISO region, none when unknown) and mode (block, monitor). Counted by the instance that made the block.",
            &["country", "mode"],
        )?;
        let fraud_refused = f.counter(
            "otpd_fraud_refused_sends_total",
            "Sends refused because the fraud guard blocks their prefix, by channel and country.",
            &["channel", "country"],
        )?;
        let build_info = f.add(
            IntGaugeVec::new(
                Opts::new(
                    "otpd_build_info",
                    "Always 1; the labels say which otpd this is.",
                ),
                &["version"],
            )?,
            MetricType::GAUGE,
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let process = process::ProcessMetrics::new()?;
        let events = events::EventFamilies::new()?;

        f.others(process.collectors().into_iter().chain(events.collectors()))?;

        for channel in Channel::ALL {
            let c = channel.as_str();
            for outcome in SendOutcome::ALL {
                sends.with_label_values(&[c, outcome.as_str()]);
            }
            for limit in Limit::ALL {
                sends_rate_limited.with_label_values(&[c, limit.as_str()]);
            }
            for outcome in CheckOutcome::ALL {
                checks.with_label_values(&[c, outcome.as_str()]);
            }
        }
        let Families { registry, names } = f;
        Ok(Metrics {
            registry,
            sends,
            sends_rate_limited,
            checks,
            started,
            ended,
            delivery_attempts,
            delivery_seconds,
            store_seconds,
            store_errors,
            http_requests,
            http_seconds,
            log_dropped,
            fraud_blocks,
            fraud_refused,
            log_dropped_source: std::sync::OnceLock::new(),
            provider_errors: std::sync::Mutex::new(Vec::new()),
            process,
            events,
            families: names,
        })
    }

    /// Counts a send to `destination` (`test`: a test destination).
    /// A block this instance put on a prefix.
    pub fn fraud_block(&self, block: &otp_domain::fraud::Block) {
        self.fraud_blocks
            .with_label_values(&[
                block.country.as_deref().unwrap_or("none"),
                block.mode.as_str(),
            ])
            .inc();
    }

    pub fn send(
        &self,
        channel: Channel,
        destination: &Destination,
        test: bool,
        result: Result<(), &SendError>,
    ) {
        let c = channel.as_str();
        let mut outcome = SendOutcome::of(&result);
        if test && outcome == SendOutcome::Sent {
            outcome = SendOutcome::Test;
        }
        self.sends.with_label_values(&[c, outcome.as_str()]).inc();
        if let Err(SendError::FraudSuspected) = result {
            self.fraud_refused
                .with_label_values(&[c, &country(destination)])
                .inc();
        }
        if let Err(SendError::RateLimited { limit, .. }) = result {
            self.sends_rate_limited
                .with_label_values(&[c, limit.as_str()])
                .inc();
        }
        if test {
            return;
        }
        // A verification exists once its code was stored for delivery:
        // delivered, or failed and discarded.
        match outcome {
            SendOutcome::Sent => {
                self.started
                    .with_label_values(&[c, &country(destination)])
                    .inc();
            }
            SendOutcome::DeliveryFailed => {
                let country = country(destination);
                self.started.with_label_values(&[c, &country]).inc();
                self.ended
                    .with_label_values(&[c, &country, Ended::Failed.as_str()])
                    .inc();
            }
            _ => {}
        }
    }

    /// Counts a send whose body did not parse into a request.
    pub fn invalid_send(&self, channel: Channel) {
        self.sends
            .with_label_values(&[channel.as_str(), SendOutcome::Invalid.as_str()])
            .inc();
    }

    /// Counts a check, and the verification it ended, if any.
    pub fn check(
        &self,
        channel: Channel,
        destination: &impl Country,
        test: impl FnOnce() -> bool,
        result: &Result<(), CheckError>,
    ) {
        let (outcome, ended) = match result {
            Ok(()) => (CheckOutcome::Approved, Some(Ended::Approved)),
            // The store counts attempts atomically, so exactly one check
            // sees the last try go: the verification ends there, once.
            Err(CheckError::Mismatch { attempts_left: 0 }) => {
                (CheckOutcome::WrongPassword, Some(Ended::MaxAttemptsReached))
            }
            Err(CheckError::Mismatch { .. }) => (CheckOutcome::WrongPassword, None),
            Err(CheckError::Locked) => (CheckOutcome::Locked, None),
            Err(CheckError::NotFound) => (CheckOutcome::NotFound, None),
            Err(CheckError::Store(_)) => (CheckOutcome::StoreError, None),
        };
        let c = channel.as_str();
        self.checks.with_label_values(&[c, outcome.as_str()]).inc();
        if let Some(ended) = ended {
            if !test() {
                self.ended
                    .with_label_values(&[c, &country(destination), ended.as_str()])
                    .inc();
            }
        }
    }

    /// Counts a check whose body did not parse.
    pub fn invalid_check(&self, channel: Channel) {
        self.checks
            .with_label_values(&[channel.as_str(), CheckOutcome::Invalid.as_str()])
            .inc();
    }

    /// The handles of one provider of one channel, resolved once.
    pub fn provider(&self, channel: Channel, provider: &str) -> ProviderMetrics {
        let c = channel.as_str();
        let last_error = {
            let mut slots = self
                .provider_errors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match slots
                .iter()
                .find(|(ch, p, _)| *ch == channel && p == provider)
            {
                Some((_, _, slot)) => slot.clone(),
                None => {
                    let slot = LastErrorSlot::default();
                    slots.push((channel, provider.to_owned(), slot.clone()));
                    slot
                }
            }
        };
        ProviderMetrics {
            last_error,
            attempts: Attempt::ALL.map(|a| {
                self.delivery_attempts
                    .with_label_values(&[c, provider, a.as_str()])
            }),
            seconds: self.delivery_seconds.with_label_values(&[c, provider]),
        }
    }

    /// Makes the zero event series of the sink called `sink`.
    pub fn event_sink(&self, sink: &str) {
        self.events.register_sink(sink);
    }

    /// Counts one HTTP request. `route` is a template from the spec (or
    /// a fixed word), never the raw path.
    pub fn http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_requests
            .with_label_values(&[route, method, class])
            .inc();
        self.http_seconds
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    /// Reports the log writer's dropped lines.
    pub fn watch_dropped_log_lines(&self, counter: crate::logging::DroppedLines) {
        let _ = self.log_dropped_source.set(counter);
    }

    /// The last failure of every provider [`Metrics::provider`] resolved,
    /// in the order they were resolved (`None`: no failure yet).
    pub fn last_errors(&self) -> Vec<(Channel, String, Option<LastError>)> {
        self.provider_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(c, p, slot)| (*c, p.clone(), slot.get()))
            .collect()
    }

    /// The registry's families as a scrape would encode them: the console
    /// reads its numbers here, so page and scrape never disagree.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// The scrape: every family in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        self.process.refresh();
        if let Some(source) = self.log_dropped_source.get() {
            let dropped = source.get();
            self.log_dropped
                .inc_by(dropped.saturating_sub(self.log_dropped.get()));
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }

    /// Every metric name a scrape can hold (histograms with their
    /// `_bucket`, `_sum` and `_count` series), for checking dashboards and
    /// alert rules against.
    pub fn family_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (name, kind) in &self.families {
            if *kind == prometheus::proto::MetricType::HISTOGRAM {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.push(format!("{name}{suffix}"));
                }
            } else {
                names.push(name.clone());
            }
        }
        names
    }

    fn store_op(&self, store: &str, op: store::Operation) -> store::OpMetrics {
        store::OpMetrics {
            seconds: self.store_seconds.with_label_values(&[store, op.as_str()]),
            errors: self.store_errors.with_label_values(&[store, op.as_str()]),
        }
    }
}

/// The counters and histogram of one provider, and its last failure.
#[derive(Clone)]
pub struct ProviderMetrics {
    attempts: [IntCounter; 4],
    seconds: Histogram,
    last_error: LastErrorSlot,
}

impl ProviderMetrics {}

impl otp_delivery::AttemptObserver for ProviderMetrics {
    fn attempt(&self, attempt: Attempt, elapsed: Duration) {
        self.attempts[attempt.index()].inc();
        self.seconds.observe(elapsed.as_secs_f64());
    }

    /// Keeps `reason` as the provider's last failure. Provider reasons
    /// never hold a code or a secret (the adapters' contract).
    fn failed(&self, reason: &str) {
        self.last_error.set(LastError {
            reason: reason.chars().take(300).collect(),
            at: std::time::Instant::now(),
        });
    }
}

/// A provider's last failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// The provider's reason, cut to 300 characters.
    pub reason: String,
    pub at: std::time::Instant,
}

#[derive(Clone, Default)]
struct LastErrorSlot(Arc<std::sync::Mutex<Option<LastError>>>);

impl LastErrorSlot {
    fn set(&self, error: LastError) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
    }

    fn get(&self) -> Option<LastError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What a country label is read from: a send's destination, or a check's
/// target (which knows its phone's region without validating it).
pub trait Country {
    /// The phone's ISO region, if any.
    fn region(&self) -> Option<Region>;
}

impl Country for Destination {
    fn region(&self) -> Option<Region> {
        self.phone().and_then(otp_domain::Phone::region)
    }
}

impl Country for CheckTarget {
    fn region(&self) -> Option<Region> {
        CheckTarget::region(self)
    }
}

/// The country label: the phone's ISO region, else `none`.
fn country(destination: &impl Country) -> String {
    destination
        .region()
        .map_or_else(|| "none".to_owned(), |r| r.as_str().to_owned())
}

#[cfg(test)]
mod tests;
