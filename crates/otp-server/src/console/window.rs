//! The console's numbers: samples of the very counters `/metrics`
//! exports, read from the same registry, and the window between two
//! samples. A counter only grows within a process, so "the last hour" is
//! the value now minus the value an hour ago.

use std::collections::HashMap;
use std::time::Instant;

use prometheus::proto::MetricFamily;

pub(super) const SENDS: &str = "otpd_sends_total";
pub(super) const RATE_LIMITED: &str = "otpd_sends_rate_limited_total";
pub(super) const CHECKS: &str = "otpd_checks_total";
pub(super) const STARTED: &str = "otpd_verifications_started_total";
pub(super) const ENDED: &str = "otpd_verifications_ended_total";
pub(super) const ATTEMPTS: &str = "otpd_delivery_attempts_total";
pub(super) const STORE_ERRORS: &str = "otpd_store_errors_total";
const STORE_SECONDS: &str = "otpd_store_operation_duration_seconds";
/// The store histogram, summed over store kinds and operations.
pub(super) const STORE_COUNT: &str = "store_count";
pub(super) const STORE_SUM: &str = "store_sum";
pub(super) const STORE_BUCKET: &str = "store_bucket";

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
pub struct Sample {
    pub at: Instant,
    values: HashMap<Series, f64>,
}

impl Sample {
    /// Reads `families` (a registry's `gather`).
    pub fn of(families: &[MetricFamily], at: Instant) -> Sample {
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
pub struct Window<'a> {
    pub from: &'a Sample,
    pub to: &'a Sample,
}

impl Window<'_> {
    /// The increase of the sum of `name`'s series whose labels pass
    /// `filter` (label values in the order [`READ`] keeps them).
    pub fn delta(&self, name: &str, filter: impl Fn(&[String]) -> bool) -> u64 {
        let d = self.to.sum(name, &filter) - self.from.sum(name, &filter);
        // Counters hold whole numbers (histogram sums aside, which are
        // read with `delta_f64`).
        d.max(0.0).round() as u64
    }

    pub fn delta_f64(&self, name: &str) -> f64 {
        (self.to.sum(name, &|_| true) - self.from.sum(name, &|_| true)).max(0.0)
    }

    /// The distinct label values of `name` at the window's end, sorted.
    pub fn labels(&self, name: &str) -> Vec<Vec<String>> {
        let mut all: Vec<Vec<String>> = self.to.labels(name).map(<[String]>::to_vec).collect();
        all.sort();
        all.dedup();
        all
    }

    /// The store calls in the window: (count, upper bound of the bucket
    /// holding quantile `q`), `None` without calls.
    pub fn store_quantile(&self, q: f64) -> Option<f64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use otp_domain::{Channel, Destination, Phone};
    use otp_telemetry::metrics::Metrics;

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
