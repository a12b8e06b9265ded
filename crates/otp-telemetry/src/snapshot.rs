//! The console's numbers, typed: samples of the very counters `/metrics`
//! exports, read from the same registry, and the window between two
//! samples. A counter only grows within a process, so "the last hour" is
//! the value now minus the value an hour ago. The family names are the
//! registry's own constants (`metrics::names`), so the console never
//! spells one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use otp_domain::Channel;
use prometheus::proto::MetricFamily;
use serde::Serialize;

use crate::metrics::names::{
    ATTEMPTS, CHECKS, ENDED, RATE_LIMITED, SENDS, STARTED, STORE_ERRORS, STORE_SECONDS,
};
use crate::metrics::Metrics;

/// The store histogram, summed over store kinds and operations.
const STORE_COUNT: &str = "store_count";
const STORE_SUM: &str = "store_sum";
const STORE_BUCKET: &str = "store_bucket";

/// The families the console reads, with the labels it keeps of each, in
/// this order; other labels are summed over.
const READ: &[(&str, &[&str])] = &[
    (SENDS, &["channel", "outcome"]),
    (RATE_LIMITED, &["channel", "limit"]),
    (CHECKS, &["channel", "outcome"]),
    (STARTED, &["channel", "country"]),
    (ENDED, &["channel", "country", "status"]),
    (ATTEMPTS, &["channel", "provider", "outcome"]),
    (STORE_ERRORS, &[]),
    (STORE_SECONDS, &[]),
];

/// One series: a family (or a store histogram part) and the values of
/// its kept labels.
type Series = (&'static str, Vec<String>);

/// The values of the console's series at one moment.
#[derive(Debug)]
struct Sample {
    at: Instant,
    values: HashMap<Series, f64>,
}

impl Sample {
    /// Reads `families` (a registry's `gather`).
    fn of(families: &[MetricFamily], at: Instant) -> Sample {
        let mut values: HashMap<Series, f64> = HashMap::new();
        let mut add = |series: Series, v: f64| *values.entry(series).or_default() += v;
        for family in families {
            let Some(&(name, keep)) = READ.iter().find(|(n, _)| *n == family.name()) else {
                continue;
            };
            for m in family.get_metric() {
                if name == STORE_SECONDS {
                    let h = m.get_histogram();
                    add((STORE_COUNT, Vec::new()), h.get_sample_count() as f64);
                    add((STORE_SUM, Vec::new()), h.get_sample_sum());
                    for b in h.get_bucket() {
                        add(
                            (STORE_BUCKET, vec![b.upper_bound().to_string()]),
                            b.cumulative_count() as f64,
                        );
                    }
                    continue;
                }
                let labels = keep
                    .iter()
                    .map(|k| {
                        m.get_label()
                            .iter()
                            .find(|p| p.name() == *k)
                            .map(|p| p.value().to_owned())
                            .unwrap_or_default()
                    })
                    .collect();
                add((name, labels), m.get_counter().get_value());
            }
        }
        Sample { at, values }
    }

    /// The sum of `name`'s series whose labels pass `filter`.
    fn sum(&self, name: &str, filter: &dyn Fn(&[String]) -> bool) -> f64 {
        self.values
            .iter()
            .filter(|((n, labels), _)| *n == name && filter(labels))
            .map(|(_, v)| v)
            .sum()
    }

    /// The distinct label values of `name`'s series.
    fn labels<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [String]> + 'a {
        self.values
            .keys()
            .filter(move |(n, _)| *n == name)
            .map(|(_, l)| l.as_slice())
    }
}

/// What happened between two samples.
struct Window<'a> {
    from: &'a Sample,
    to: &'a Sample,
}

impl Window<'_> {
    /// The increase of the sum of `name`'s series whose labels pass
    /// `filter` (label values in the order [`READ`] keeps them).
    fn delta(&self, name: &str, filter: impl Fn(&[String]) -> bool) -> u64 {
        let d = self.to.sum(name, &filter) - self.from.sum(name, &filter);
        // Counters hold whole numbers (histogram sums aside, which are
        // read with `delta_f64`).
        d.max(0.0).round() as u64
    }

    fn delta_f64(&self, name: &str) -> f64 {
        (self.to.sum(name, &|_| true) - self.from.sum(name, &|_| true)).max(0.0)
    }

    /// The distinct label values of `name` at the window's end, sorted.
    fn labels(&self, name: &str) -> Vec<Vec<String>> {
        let mut all: Vec<Vec<String>> = self.to.labels(name).map(<[String]>::to_vec).collect();
        all.sort();
        all.dedup();
        all
    }

    /// The store calls in the window: (count, upper bound of the bucket
    /// holding quantile `q`), `None` without calls.
    fn store_quantile(&self, q: f64) -> Option<f64> {
        let count = self.delta_f64(STORE_COUNT);
        if count < 1.0 {
            return None;
        }
        let mut buckets: Vec<(f64, f64)> = self
            .labels(STORE_BUCKET)
            .into_iter()
            .filter_map(|l| {
                let le = l.first()?;
                let bound: f64 = le.parse().ok()?;
                let d = self.to.sum(STORE_BUCKET, &|x| x == l.as_slice())
                    - self.from.sum(STORE_BUCKET, &|x| x == l.as_slice());
                Some((bound, d))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
            .into_iter()
            .find(|(_, cumulative)| *cumulative >= q * count)
            .map(|(bound, _)| bound)
    }
}

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// How far back the counts reach.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// What the counts cover and what they are.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The window's length: an hour, or the time since start.
    pub window_secs: u64,
    pub numbers: Numbers,
    pub store_latency: StoreLatency,
}

/// The minute samples of the registry's counters.
pub struct Counters {
    metrics: Arc<Metrics>,
    /// Oldest first; the first one is the window's start.
    samples: Mutex<VecDeque<Arc<Sample>>>,
}

impl Counters {
    /// Takes the first sample now.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let counters = Counters {
            metrics,
            samples: Mutex::new(VecDeque::new()),
        };
        counters.sample();
        counters
    }

    /// Samples the counters now, and drops samples the window no longer
    /// needs (it keeps the newest that is at least [`WINDOW`] old).
    pub fn sample(&self) {
        let now = Instant::now();
        let sample = Arc::new(Sample::of(&self.metrics.gather(), now));
        let mut samples = lock(&self.samples);
        samples.push_back(sample);
        while samples
            .get(1)
            .is_some_and(|s| now.duration_since(s.at) >= WINDOW)
        {
            samples.pop_front();
        }
    }

    /// The counts from the oldest sample kept to now; `now_ms` is the
    /// wall clock at `now`, for the times of providers' last errors.
    pub fn snapshot(&self, now: Instant, now_ms: u64) -> Option<Snapshot> {
        let current = Sample::of(&self.metrics.gather(), now);
        let samples: Vec<Arc<Sample>> = lock(&self.samples).iter().cloned().collect();
        let from = samples.first()?;
        let (numbers, store_latency) =
            counts(from, &samples, &current, &self.metrics, (now, now_ms));
        Some(Snapshot {
            window_secs: now.duration_since(from.at).as_secs(),
            numbers,
            store_latency,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under this lock is one push or pop: a panic leaves a
    // consistent value behind.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A time in Unix milliseconds as RFC 3339, to the second.
pub fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The counts of the window, each the increase of a `/metrics` counter
/// (the field docs name it).
#[derive(Debug, Clone, Serialize)]
pub struct Numbers {
    /// Every channel, in a fixed order.
    pub channels: Vec<ChannelRow>,
    /// Countries with sends, most sends first (at most 10).
    pub countries: Vec<CountryRow>,
    pub providers: Vec<ProviderRow>,
    pub refusals: Vec<RefusalRow>,
    /// Sends and approvals per minute, oldest first; the last one is the
    /// minute in progress.
    pub minutes: Vec<MinuteRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelRow {
    pub channel: &'static str,
    /// Verifications started (`otpd_verifications_started_total`): codes
    /// stored for delivery, test destinations excluded.
    pub sends: u64,
    /// `otpd_verifications_ended_total{status="approved"}`.
    pub approvals: u64,
    /// `approvals / sends`; `null` without sends.
    pub conversion: Option<f64>,
    /// `otpd_verifications_ended_total{status="failed"}`: no provider took
    /// the message.
    pub failed: u64,
    /// `otpd_checks_total{outcome="wrong_password"}`.
    pub wrong_codes: u64,
    /// `otpd_sends_total{outcome="rate_limited"|"country_refused"}`.
    pub refused: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CountryRow {
    /// ISO region, or `none` (email, Telegram, numbers of no region).
    pub country: String,
    pub sends: u64,
    pub approvals: u64,
    pub conversion: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderRow {
    pub channel: String,
    pub provider: String,
    /// `otpd_delivery_attempts_total`, every outcome.
    pub attempts: u64,
    /// Attempts whose outcome was not `delivered`.
    pub failures: u64,
    /// The provider's last failure, whenever it was (kept in memory since
    /// start); provider reasons never hold a code or secret.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefusalRow {
    /// `destination`, `user`, `channel` (`otpd_sends_rate_limited_total`)
    /// or `country` (`otpd_sends_total{outcome="country_refused"}`).
    pub limit: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MinuteRow {
    pub sends: u64,
    pub approvals: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreLatency {
    pub calls: u64,
    pub errors: u64,
    pub mean_ms: Option<f64>,
    /// Upper bounds of the histogram buckets that hold the median and the
    /// 99th percentile.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn counts(
    from: &Sample,
    samples: &[Arc<Sample>],
    current: &Sample,
    metrics: &Metrics,
    (now, now_ms): (Instant, u64),
) -> (Numbers, StoreLatency) {
    let w = Window { from, to: current };
    let channels = Channel::ALL
        .iter()
        .map(|c| {
            let c = c.as_str();
            let sends = w.delta(STARTED, |l| l[0] == c);
            let approvals = w.delta(ENDED, |l| l[0] == c && l[2] == "approved");
            ChannelRow {
                channel: c,
                sends,
                approvals,
                conversion: ratio(approvals, sends),
                failed: w.delta(ENDED, |l| l[0] == c && l[2] == "failed"),
                wrong_codes: w.delta(CHECKS, |l| l[0] == c && l[1] == "wrong_password"),
                refused: w.delta(SENDS, |l| {
                    l[0] == c && (l[1] == "rate_limited" || l[1] == "country_refused")
                }),
            }
        })
        .collect();

    let mut countries: Vec<CountryRow> = w
        .labels(STARTED)
        .into_iter()
        .filter_map(|l| l.get(1).cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|country| {
            let sends = w.delta(STARTED, |l| l[1] == country);
            let approvals = w.delta(ENDED, |l| l[1] == country && l[2] == "approved");
            CountryRow {
                country,
                sends,
                approvals,
                conversion: ratio(approvals, sends),
            }
        })
        .filter(|r| r.sends > 0)
        .collect();
    countries.sort_by(|a, b| b.sends.cmp(&a.sends).then(a.country.cmp(&b.country)));
    countries.truncate(10);

    let providers = metrics
        .last_errors()
        .into_iter()
        .map(|(channel, provider, last)| {
            let c = channel.as_str();
            let mine = |l: &[String]| l[0] == c && l[1] == provider;
            let attempts = w.delta(ATTEMPTS, mine);
            let delivered = w.delta(ATTEMPTS, |l| mine(l) && l[2] == "delivered");
            let at = last.as_ref().map(|e| {
                let ago = now.saturating_duration_since(e.at).as_millis();
                let ago = u64::try_from(ago).unwrap_or(u64::MAX);
                rfc3339(now_ms.saturating_sub(ago))
            });
            ProviderRow {
                channel: c.to_owned(),
                provider,
                attempts,
                failures: attempts.saturating_sub(delivered),
                last_error: last.map(|e| e.reason),
                last_error_at: at,
            }
        })
        .collect();

    let mut refusals: Vec<RefusalRow> = w
        .labels(RATE_LIMITED)
        .into_iter()
        .filter_map(|l| l.get(1).cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|limit| RefusalRow {
            count: w.delta(RATE_LIMITED, |l| l[1] == limit),
            limit,
        })
        .collect();
    refusals.push(RefusalRow {
        limit: "country".into(),
        count: w.delta(SENDS, |l| l[1] == "country_refused"),
    });

    let minutes = samples
        .iter()
        .map(Arc::as_ref)
        .chain(std::iter::once(current))
        .collect::<Vec<_>>()
        .windows(2)
        .map(|pair| {
            let m = Window {
                from: pair[0],
                to: pair[1],
            };
            MinuteRow {
                sends: m.delta(STARTED, |_| true),
                approvals: m.delta(ENDED, |l| l[2] == "approved"),
            }
        })
        .collect();

    let calls = w.delta(STORE_COUNT, |_| true);
    let store_latency = StoreLatency {
        calls,
        errors: w.delta(STORE_ERRORS, |_| true),
        mean_ms: (calls > 0).then(|| w.delta_f64(STORE_SUM) * 1000.0 / calls as f64),
        p50_ms: w.store_quantile(0.5).map(|s| s * 1000.0),
        p99_ms: w.store_quantile(0.99).map(|s| s * 1000.0),
    };
    (
        Numbers {
            channels,
            countries,
            providers,
            refusals,
            minutes,
        },
        store_latency,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use otp_domain::{Channel, Destination, Phone};

    #[test]
    fn a_window_counts_what_the_counters_gained_between_two_samples() {
        let metrics = Metrics::new().expect("metrics");
        let start = Sample::of(&metrics.gather(), Instant::now());
        let phone = Destination::Sms(Phone::parse("+77011234567").expect("phone"));
        metrics.send(Channel::Sms, &phone, false, Ok(()));
        let middle = Sample::of(&metrics.gather(), Instant::now());
        metrics.send(Channel::Sms, &phone, false, Ok(()));
        metrics.send(Channel::Sms, &phone, true, Ok(()));
        let end = Sample::of(&metrics.gather(), Instant::now());

        let all = Window {
            from: &start,
            to: &end,
        };
        assert_eq!(
            all.delta(STARTED, |l| l[0] == "sms"),
            2,
            "test sends excluded"
        );
        assert_eq!(all.delta(STARTED, |l| l[1] == "KZ"), 2);
        assert_eq!(all.delta(SENDS, |l| l[1] == "test"), 1);
        let last = Window {
            from: &middle,
            to: &end,
        };
        assert_eq!(last.delta(STARTED, |_| true), 1);
        assert_eq!(last.delta(STARTED, |l| l[0] == "email"), 0);
    }
}
