use std::collections::BTreeSet;

use otp_domain::memory::InMemoryStore;
use otp_domain::ports::{CodeStore, MockCodeStore, RateBucket};
use otp_domain::{DeliveryError, Email, Phone, StoreError};

use super::*;

/// The value of one series in a scrape; labels in any order.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut labels = labels.to_vec();
    labels.sort();
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}}", inner.join(","))
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(s, _)| *s == series))
        .and_then(|(_, v)| v.parse().ok())
}

fn sms(p: &str) -> Destination {
    Destination::Sms(Phone::parse(p).expect("valid"))
}

#[test]
fn sends_count_outcomes_limits_and_verifications_by_country() {
    let m = Metrics::new().expect("metrics");
    let kz = sms("77011234567");
    let de = Destination::Call(Phone::parse("+4915123456789").expect("valid"));
    let email = Destination::Email(Email::parse("a@example.com").expect("valid"));
    m.send(Channel::Sms, &kz, false, Ok(()));
    m.send(Channel::Sms, &kz, false, Ok(()));
    m.send(Channel::Sms, &kz, true, Ok(()));
    m.send(
        Channel::Sms,
        &kz,
        false,
        Err(&SendError::RateLimited {
            retry_after_secs: 3,
            limit: Limit::User,
        }),
    );
    m.send(
        Channel::Call,
        &de,
        false,
        Err(&SendError::Delivery(DeliveryError {
            provider: "twilio".into(),
            reason: "HTTP 500".into(),
            transient: true,
            retry_after: None,
            source: None,
        })),
    );
    m.send(
        Channel::Sms,
        &kz,
        false,
        Err(&SendError::DestinationNotAllowed),
    );
    m.send(Channel::Email, &email, false, Ok(()));
    m.invalid_send(Channel::Email);
    let s = m.render();
    let sends = |c: &str, o: &str| value(&s, "otpd_sends_total", &[("channel", c), ("outcome", o)]);
    assert_eq!(sends("sms", "sent"), Some(2.0));
    assert_eq!(sends("sms", "test"), Some(1.0));
    assert_eq!(sends("sms", "rate_limited"), Some(1.0));
    assert_eq!(sends("sms", "country_refused"), Some(1.0));
    assert_eq!(sends("call", "delivery_failed"), Some(1.0));
    assert_eq!(sends("email", "sent"), Some(1.0));
    assert_eq!(sends("email", "invalid"), Some(1.0));
    assert_eq!(sends("telegram", "sent"), Some(0.0), "zero series exist");
    assert_eq!(
        value(
            &s,
            "otpd_sends_rate_limited_total",
            &[("channel", "sms"), ("limit", "user")]
        ),
        Some(1.0)
    );
    let started = |c: &str, country: &str| {
        value(
            &s,
            "otpd_verifications_started_total",
            &[("channel", c), ("country", country)],
        )
    };
    assert_eq!(
        started("sms", "KZ"),
        Some(2.0),
        "test destinations left out"
    );
    assert_eq!(
        started("call", "DE"),
        Some(1.0),
        "a failed delivery started one"
    );
    assert_eq!(started("email", "none"), Some(1.0));
    assert_eq!(
        value(
            &s,
            "otpd_verifications_ended_total",
            &[("channel", "call"), ("country", "DE"), ("status", "failed")]
        ),
        Some(1.0)
    );
}

#[test]
fn checks_end_a_verification_once_approved_or_at_the_last_attempt() {
    let m = Metrics::new().expect("metrics");
    let kz = sms("77011234567");
    let never_test = || false;
    m.check(
        Channel::Sms,
        &kz,
        never_test,
        &Err(CheckError::Mismatch { attempts_left: 1 }),
    );
    m.check(
        Channel::Sms,
        &kz,
        never_test,
        &Err(CheckError::Mismatch { attempts_left: 0 }),
    );
    m.check(Channel::Sms, &kz, never_test, &Err(CheckError::Locked));
    m.check(Channel::Sms, &kz, never_test, &Err(CheckError::Locked));
    m.check(Channel::Sms, &kz, never_test, &Ok(()));
    m.check(Channel::Sms, &kz, || true, &Ok(()));
    m.check(Channel::Sms, &kz, never_test, &Err(CheckError::NotFound));
    m.check(
        Channel::Sms,
        &kz,
        never_test,
        &Err(CheckError::Store(StoreError::Corrupt("x".into()))),
    );
    m.invalid_check(Channel::Sms);
    let s = m.render();
    let checks = |o: &str| {
        value(
            &s,
            "otpd_checks_total",
            &[("channel", "sms"), ("outcome", o)],
        )
    };
    assert_eq!(checks("wrong_password"), Some(2.0));
    assert_eq!(checks("locked"), Some(2.0));
    assert_eq!(checks("approved"), Some(2.0));
    assert_eq!(checks("not_found"), Some(1.0));
    assert_eq!(checks("store_error"), Some(1.0));
    assert_eq!(checks("invalid"), Some(1.0));
    let ended = |status: &str| {
        value(
            &s,
            "otpd_verifications_ended_total",
            &[("channel", "sms"), ("country", "KZ"), ("status", status)],
        )
    };
    assert_eq!(
        ended("max_attempts_reached"),
        Some(1.0),
        "not once per lock"
    );
    assert_eq!(
        ended("approved"),
        Some(1.0),
        "the test destination is left out"
    );
}

#[tokio::test]
async fn the_metered_store_times_every_call_and_counts_errors_by_operation() {
    let m = Metrics::new().expect("metrics");
    let store = MeteredStore::new(Arc::new(InMemoryStore::new()), &m, "memory");
    let bucket = RateBucket {
        key: "b".into(),
        limit: 1,
        window_ms: 1000,
    };
    store.hit_bucket(&bucket, 0).await.expect("hit");
    store.hit_bucket(&bucket, 1).await.expect("full, no error");
    store.ping().await.expect("ping");
    let mut failing = MockCodeStore::new();
    failing
        .expect_ping()
        .returning(|| Err(StoreError::Unavailable("down".into())));
    let down = MeteredStore::new(Arc::new(failing), &m, "redis");
    down.ping().await.expect_err("down");
    let s = m.render();
    let series =
        |name: &str, store: &str, op: &str| value(&s, name, &[("store", store), ("operation", op)]);
    assert_eq!(
        series(
            "otpd_store_operation_duration_seconds_count",
            "memory",
            "hit_bucket"
        ),
        Some(2.0)
    );
    assert_eq!(
        series(
            "otpd_store_operation_duration_seconds_count",
            "memory",
            "ping"
        ),
        Some(1.0)
    );
    assert_eq!(
        series("otpd_store_errors_total", "memory", "hit_bucket"),
        Some(0.0)
    );
    assert_eq!(
        series("otpd_store_errors_total", "redis", "ping"),
        Some(1.0)
    );
    assert_eq!(
        series("otpd_store_errors_total", "redis", "check_code"),
        Some(0.0),
        "every operation has a zero series from the start"
    );
}

#[test]
fn http_requests_are_counted_by_status_class() {
    let m = Metrics::new().expect("metrics");
    let ms = Duration::from_millis(3);
    m.http("/sms", "POST", 200, ms);
    m.http("/sms", "POST", 429, ms);
    m.http("/sms", "POST", 502, ms);
    m.http("unmatched", "GET", 404, ms);
    let s = m.render();
    let req = |route: &str, method: &str, status: &str| {
        value(
            &s,
            "otpd_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(req("/sms", "POST", "2xx"), Some(1.0));
    assert_eq!(req("/sms", "POST", "4xx"), Some(1.0));
    assert_eq!(req("/sms", "POST", "5xx"), Some(1.0));
    assert_eq!(req("unmatched", "GET", "4xx"), Some(1.0));
    assert_eq!(
        value(
            &s,
            "otpd_http_request_duration_seconds_count",
            &[("route", "/sms"), ("method", "POST")]
        ),
        Some(3.0)
    );
}

#[test]
fn process_metrics_and_build_info_are_exported() {
    let m = Metrics::new().expect("metrics");
    let s = m.render();
    let get = |name: &str| value(&s, name, &[]).unwrap_or_else(|| panic!("{name} missing:\n{s}"));
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(get("process_open_fds") >= 3.0);
    assert!(get("process_max_fds") >= get("process_open_fds"));
    assert!(get("process_threads") >= 1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let started = get("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 86_400.0,
        "{started} vs {now}"
    );
    assert!(get("process_cpu_seconds_total") >= 0.0);
    assert_eq!(
        value(
            &s,
            "otpd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
}

/// Metric names a PromQL text mentions: otpd's and the process ones.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    for prefix in ["otpd_", "process_"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(prefix) {
            let start = from + at;
            let boundary = start == 0
                || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            let end = text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |n| start + n);
            if boundary {
                names.insert(text[start..end].to_owned());
            }
            from = end;
        }
    }
    names
}

#[test]
fn every_metric_name_in_the_dashboard_and_the_alert_rules_is_one_otpd_exports() {
    let exported: BTreeSet<String> = Metrics::new()
        .expect("metrics")
        .family_names()
        .into_iter()
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    for file in ["grafana/otpd.json", "prometheus/alerts.yml"] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        let used = names_in(&text);
        assert!(used.len() >= 5, "{file} names only {used:?}");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics otpd does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = names_in(
        r#"sum(rate(otpd_sends_total{outcome="sent"}[5m])) / on() process_open_fds + my_otpd_x"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec!["otpd_sends_total", "process_open_fds"]
    );
}

#[test]
fn provider_attempts_are_counted_by_channel_provider_and_outcome_with_the_last_error() {
    use otp_delivery::AttemptObserver;
    let m = Metrics::new().expect("metrics");
    let twilio = m.provider(Channel::Sms, "twilio");
    let http = m.provider(Channel::Sms, "http");
    twilio.attempt(Attempt::TransientError, Duration::from_millis(5));
    twilio.failed("HTTP 503");
    twilio.attempt(Attempt::PermanentError, Duration::from_millis(5));
    http.attempt(Attempt::Delivered, Duration::from_millis(5));
    let scrape = m.render();
    for line in [
        r#"otpd_delivery_attempts_total{channel="sms",outcome="transient_error",provider="twilio"} 1"#,
        r#"otpd_delivery_attempts_total{channel="sms",outcome="permanent_error",provider="twilio"} 1"#,
        r#"otpd_delivery_attempts_total{channel="sms",outcome="delivered",provider="twilio"} 0"#,
        r#"otpd_delivery_attempts_total{channel="sms",outcome="delivered",provider="http"} 1"#,
        r#"otpd_delivery_attempt_duration_seconds_count{channel="sms",provider="twilio"} 2"#,
        r#"otpd_delivery_attempt_duration_seconds_count{channel="sms",provider="http"} 1"#,
    ] {
        assert!(scrape.lines().any(|l| l == line), "no {line} in:\n{scrape}");
    }
    let errors = m.last_errors();
    let reason = |p: &str| {
        errors
            .iter()
            .find(|(_, name, _)| name == p)
            .and_then(|(_, _, e)| e.as_ref().map(|e| e.reason.clone()))
    };
    assert_eq!(reason("twilio").as_deref(), Some("HTTP 503"));
    assert_eq!(reason("http"), None);
}

#[test]
fn family_names_spell_each_kind_as_a_scrape_does() {
    let names = Metrics::new().expect("metrics").family_names();
    let has = |n: &str| names.iter().any(|x| x == n);
    // Counters and gauges by their name; histograms by their three series.
    for n in [
        "otpd_sends_total",
        "otpd_log_lines_dropped_total",
        "otpd_build_info",
    ] {
        assert!(has(n), "{n} in {names:?}");
    }
    for h in [
        "otpd_http_request_duration_seconds",
        "otpd_store_operation_duration_seconds",
        "otpd_delivery_attempt_duration_seconds",
        super::events::BATCH_HISTOGRAM,
    ] {
        assert!(!has(h), "{h} is a histogram: no bare series");
        for suffix in ["_bucket", "_sum", "_count"] {
            assert!(has(&format!("{h}{suffix}")), "{h}{suffix} in {names:?}");
        }
    }
}
