//! Observability end to end: the real binary's scrape after a scripted
//! flow, read by the Prometheus project's own parser (Python
//! `prometheus_client`) and linted by `promtool`; JSON logs with request
//! ids; `otpd health`; and the deploy/ rules and dashboard checked by
//! `promtool`. `./scripts/test.sh` installs promtool and prometheus_client;
//! these tests fail, never skip, when either is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use otp_testkit::redis::RedisServer;
use otp_testkit::{FakePeer, Reply};
use serde_json::{json, Value};

use crate::support::{http_full, Otpd, OTPD};

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A series: name and labels, as the parser reports them.
type Series = (String, BTreeMap<String, String>);

fn run_with_stdin(program: &str, args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); ./scripts/test.sh installs it"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Every sample of a scrape, parsed by `prometheus_client.parser`.
fn parse(scrape: &str) -> BTreeMap<Series, f64> {
    const PARSER: &str = "
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
";
    let out = run_with_stdin("python3", &["-c", PARSER], scrape);
    assert!(
        out.status.success(),
        "prometheus_client could not parse the scrape (./scripts/test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).expect("parser output");
    samples
        .into_iter()
        .map(|(name, labels, value)| ((name, labels), value))
        .collect()
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

fn promtool(args: &[&str], input: &str) -> std::process::Output {
    run_with_stdin("promtool", args, input)
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A config file for the flow: SMS, email and Telegram by the dev sink,
/// voice calls through an HTTP gateway at `gateway`; 3 attempts; the
/// cooldown on; SMS to Germany denied.
fn flow_config(dir: &Path, gateway: &str) -> String {
    let toml = format!(
        "[otp]\nmax_attempts = 3\n\
         [limits]\ncooldown_secs = 60\n\
         [sms]\ndeny_countries = [49]\n\
         [call]\nprovider = \"http\"\n\
         [call.http]\nname = \"acme-voice\"\nurl = \"{gateway}\"\nencoding = \"json\"\n\
         body = '{{\"to\": \"{{phone}}\", \"text\": \"{{message}}\"}}'\n\
         [delivery]\nattempts = 2\nbase_delay_ms = 10\nmax_delay_ms = 20\n"
    );
    let path = dir.join("otpd.toml");
    std::fs::write(&path, toml).expect("config");
    path.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn a_scripted_flow_moves_exactly_the_expected_counters_in_a_parsed_scrape() {
    // The gateway accepts the first call, then fails the next one for
    // good: a 503 (retried), then a 400 (final).
    let gateway = FakePeer::start_script_blocking(vec![
        Reply::json(200, r#"{"ok":true}"#),
        Reply::json(503, r#"{"error":"busy"}"#),
        Reply::json(400, r#"{"error":"invalid number"}"#),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = flow_config(dir.path(), &format!("{}/call", gateway.base_url));
    let otpd = Otpd::start(dir.path(), &[("OTP_CONFIG", &config)]);
    let before = parse(&otpd.scrape());
    let req = |method: &str, path: &str, body: Value| {
        otpd.request(method, path, &[JSON], &body.to_string()).0
    };

    // Every channel sends; right and wrong checks.
    let kz = "77011234567";
    assert_eq!(
        req("POST", "/sms", json!({"phone": kz, "password": "135790"})),
        200
    );
    assert_eq!(
        req(
            "POST",
            "/sms/check",
            json!({"phone": kz, "password": "000000"})
        ),
        422
    );
    assert_eq!(
        req(
            "GET",
            "/sms/check",
            json!({"phone": kz, "password": "135790"})
        ),
        200
    );
    let de = "+4915123456789";
    assert_eq!(
        req("POST", "/call", json!({"phone": de, "password": "246810"})),
        200
    );
    assert_eq!(
        req(
            "POST",
            "/call/check",
            json!({"phone": de, "password": "246810"})
        ),
        200
    );
    let email = "flow@example.com";
    assert_eq!(
        req(
            "POST",
            "/email",
            json!({"email": email, "password": "864200"})
        ),
        200
    );
    assert_eq!(
        req(
            "POST",
            "/email/check",
            json!({"email": email, "password": "864200"})
        ),
        200
    );
    assert_eq!(
        req(
            "POST",
            "/telegram",
            json!({"chat_id": "4242", "password": "97531"})
        ),
        200
    );
    // A lockout: three wrong checks use up the attempts, the fourth is
    // refused without counting.
    let ru = "+79161234567";
    assert_eq!(
        req("POST", "/sms", json!({"phone": ru, "password": "112233"})),
        200
    );
    for _ in 0..3 {
        assert_eq!(
            req(
                "POST",
                "/sms/check",
                json!({"phone": ru, "password": "999999"})
            ),
            422
        );
    }
    assert_eq!(
        req(
            "POST",
            "/sms/check",
            json!({"phone": ru, "password": "112233"})
        ),
        429
    );
    // A rate-limited send (the destination's cooldown), a refused
    // country, an invalid phone.
    assert_eq!(req("POST", "/sms", json!({"phone": ru})), 429);
    assert_eq!(req("POST", "/sms", json!({"phone": de})), 403);
    assert_eq!(req("POST", "/sms", json!({"phone": "123"})), 400);
    // A failed delivery: 503 retried, then 400.
    assert_eq!(
        req("POST", "/call", json!({"phone": "+4915123456780"})),
        502
    );
    assert_eq!(gateway.received().len(), 3);

    let scrape = otpd.scrape();
    let after = parse(&scrape);
    let expected: BTreeMap<Series, f64> = [
        (
            series(
                "otpd_sends_total",
                &[("channel", "sms"), ("outcome", "sent")],
            ),
            2.0,
        ),
        (
            series(
                "otpd_sends_total",
                &[("channel", "sms"), ("outcome", "rate_limited")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_sends_total",
                &[("channel", "sms"), ("outcome", "country_refused")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_sends_total",
                &[("channel", "sms"), ("outcome", "invalid")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_sends_total",
                &[("channel", "call"), ("outcome", "sent")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_sends_total",
                &[("channel", "call"), ("outcome", "delivery_failed")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_sends_total",
                &[("channel", "email"), ("outcome", "sent")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_sends_total",
                &[("channel", "telegram"), ("outcome", "sent")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_sends_rate_limited_total",
                &[("channel", "sms"), ("limit", "destination")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_checks_total",
                &[("channel", "sms"), ("outcome", "wrong_password")],
            ),
            4.0,
        ),
        (
            series(
                "otpd_checks_total",
                &[("channel", "sms"), ("outcome", "approved")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_checks_total",
                &[("channel", "sms"), ("outcome", "locked")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_checks_total",
                &[("channel", "call"), ("outcome", "approved")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_checks_total",
                &[("channel", "email"), ("outcome", "approved")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_verifications_started_total",
                &[("channel", "sms"), ("country", "KZ")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_verifications_started_total",
                &[("channel", "sms"), ("country", "RU")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_verifications_started_total",
                &[("channel", "call"), ("country", "DE")],
            ),
            2.0,
        ),
        (
            series(
                "otpd_verifications_started_total",
                &[("channel", "email"), ("country", "none")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_verifications_started_total",
                &[("channel", "telegram"), ("country", "none")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_verifications_ended_total",
                &[
                    ("channel", "sms"),
                    ("country", "KZ"),
                    ("status", "approved"),
                ],
            ),
            1.0,
        ),
        (
            series(
                "otpd_verifications_ended_total",
                &[
                    ("channel", "sms"),
                    ("country", "RU"),
                    ("status", "max_attempts_reached"),
                ],
            ),
            1.0,
        ),
        (
            series(
                "otpd_verifications_ended_total",
                &[
                    ("channel", "call"),
                    ("country", "DE"),
                    ("status", "approved"),
                ],
            ),
            1.0,
        ),
        (
            series(
                "otpd_verifications_ended_total",
                &[("channel", "call"), ("country", "DE"), ("status", "failed")],
            ),
            1.0,
        ),
        (
            series(
                "otpd_verifications_ended_total",
                &[
                    ("channel", "email"),
                    ("country", "none"),
                    ("status", "approved"),
                ],
            ),
            1.0,
        ),
        (
            series(
                "otpd_delivery_attempts_total",
                &[
                    ("channel", "sms"),
                    ("provider", "log"),
                    ("outcome", "delivered"),
                ],
            ),
            2.0,
        ),
        (
            series(
                "otpd_delivery_attempts_total",
                &[
                    ("channel", "email"),
                    ("provider", "log"),
                    ("outcome", "delivered"),
                ],
            ),
            1.0,
        ),
        (
            series(
                "otpd_delivery_attempts_total",
                &[
                    ("channel", "telegram"),
                    ("provider", "log"),
                    ("outcome", "delivered"),
                ],
            ),
            1.0,
        ),
        (
            series(
                "otpd_delivery_attempts_total",
                &[
                    ("channel", "call"),
                    ("provider", "http"),
                    ("outcome", "delivered"),
                ],
            ),
            1.0,
        ),
        (
            series(
                "otpd_delivery_attempts_total",
                &[
                    ("channel", "call"),
                    ("provider", "http"),
                    ("outcome", "transient_error"),
                ],
            ),
            1.0,
        ),
        (
            series(
                "otpd_delivery_attempts_total",
                &[
                    ("channel", "call"),
                    ("provider", "http"),
                    ("outcome", "permanent_error"),
                ],
            ),
            1.0,
        ),
        (
            series(
                "otpd_delivery_attempt_duration_seconds_count",
                &[("channel", "call"), ("provider", "http")],
            ),
            3.0,
        ),
        (
            series(
                "otpd_http_requests_total",
                &[("route", "/sms"), ("method", "POST"), ("status", "2xx")],
            ),
            2.0,
        ),
        (
            series(
                "otpd_http_requests_total",
                &[("route", "/sms"), ("method", "POST"), ("status", "4xx")],
            ),
            3.0,
        ),
        (
            series(
                "otpd_http_requests_total",
                &[
                    ("route", "/sms/check"),
                    ("method", "POST"),
                    ("status", "4xx"),
                ],
            ),
            5.0,
        ),
        (
            series(
                "otpd_http_requests_total",
                &[
                    ("route", "/sms/check"),
                    ("method", "GET"),
                    ("status", "2xx"),
                ],
            ),
            1.0,
        ),
        (
            series(
                "otpd_http_requests_total",
                &[("route", "/call"), ("method", "POST"), ("status", "5xx")],
            ),
            1.0,
        ),
    ]
    .into_iter()
    .collect();
    // Every series of these families moved by exactly the expected delta:
    // the listed ones by their number, all others by nothing.
    let exact = [
        "otpd_sends_total",
        "otpd_sends_rate_limited_total",
        "otpd_checks_total",
        "otpd_verifications_started_total",
        "otpd_verifications_ended_total",
        "otpd_delivery_attempts_total",
        "otpd_store_errors_total",
    ];
    let mut table = String::new();
    let mut wrong = Vec::new();
    for (key, value) in &after {
        let delta = value - before.get(key).copied().unwrap_or(0.0);
        let want = expected.get(key).copied();
        if exact.contains(&key.0.as_str()) || want.is_some() {
            if delta != 0.0 {
                table.push_str(&format!("{:>4} {} {:?}\n", delta, key.0, key.1));
            }
            if delta != want.unwrap_or(0.0) {
                wrong.push(format!(
                    "{} {:?}: moved {delta}, expected {want:?}",
                    key.0, key.1
                ));
            }
        }
    }
    for key in expected.keys() {
        if !after.contains_key(key) {
            wrong.push(format!("{} {:?}: missing from the scrape", key.0, key.1));
        }
    }
    println!("counter deltas of the flow:\n{table}");
    assert!(
        wrong.is_empty(),
        "{}\n\nscrape:\n{scrape}",
        wrong.join("\n")
    );

    // promtool lints the names, types and help texts of the live scrape.
    let lint = promtool(&["check", "metrics"], &scrape);
    assert!(
        lint.status.success() && lint.stdout.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    // Every metric the dashboard and the rules use is in this scrape.
    let names: BTreeSet<&str> = after.keys().map(|(n, _)| n.as_str()).collect();
    for file in ["deploy/grafana/otpd.json", "deploy/prometheus/alerts.yml"] {
        let text = std::fs::read_to_string(repo().join(file)).expect(file);
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("otpd_") || word.starts_with("process_") {
                assert!(
                    names.contains(word),
                    "{file} uses {word}, not in the scrape"
                );
            }
        }
    }
    // No destination, code or secret is a label value.
    let labels: Vec<&String> = after.keys().flat_map(|(_, l)| l.values()).collect();
    for leak in [
        "7701",
        "9161",
        "15123",
        "flow@",
        "example.com",
        "4242",
        "135790",
        "000000",
        "246810",
        "864200",
        "97531",
        "112233",
        "999999",
    ] {
        assert!(
            !labels.iter().any(|v| v.contains(leak)),
            "{leak} is in a label value"
        );
    }
}

#[test]
fn json_logs_are_one_object_per_line_and_a_requests_lines_share_its_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[("OTP_LOG__FORMAT", "json")]);
    let (status, head, _) = http_full(
        otpd.addr,
        "POST",
        "/sms",
        &[JSON, ("X-Request-Id", "abc-123")],
        r#"{"phone": "77011234567", "password": "13579"}"#,
    );
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nx-request-id: abc-123"),
        "{head}"
    );
    let (status, head, _) = http_full(
        otpd.addr,
        "POST",
        "/sms/check",
        &[JSON],
        r#"{"phone": "77011234567", "password": "13579"}"#,
    );
    assert_eq!(status, 200);
    let generated = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-request-id: ")
                .map(str::to_owned)
        })
        .expect("a generated request id");
    let stderr = otpd.stderr.clone();
    let stdout = otpd.stdout.clone();
    assert!(otpd.stop().success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lines = stderr.lock().expect("lock").clone();
    assert!(lines.len() > 5, "{lines:?}");
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(v.get(field).is_some(), "no {field}: {line}");
        }
        if let Some(id) = v["span"]["request_id"].as_str() {
            by_id.entry(id.to_owned()).or_default().push(v.clone());
        }
    }
    for line in stdout.lock().expect("lock").iter() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("a stdout line is not JSON ({e}): {line}"));
    }
    let messages = |id: &str| -> Vec<String> {
        by_id
            .get(id)
            .map(|v| {
                v.iter()
                    .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(messages("abc-123"), ["code sent", "request"], "{by_id:#?}");
    assert_eq!(
        messages(&generated),
        ["check approved", "request"],
        "{by_id:#?}"
    );
    let access = &by_id["abc-123"][1];
    assert_eq!(access["target"], "otpd::http");
    assert_eq!(access["status"], 200);
    assert_eq!(access["path"], "/sms");
    assert!(access["ms"].as_f64().is_some(), "{access}");
}

fn health(env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let out = Command::new(OTPD)
        .arg("health")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run otpd health");
    (
        out.status.code() == Some(0),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn otpd_health_exits_0_when_ready_and_1_when_the_store_or_the_process_is_gone() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = redis.url();
    let env = [
        ("OTP_STORE__KIND", "redis"),
        ("OTP_STORE__URL", url.as_str()),
        ("OTP_SECURITY__SECRET", "health-secret-0123456789abcdef"),
    ];
    let otpd = Otpd::start(dir.path(), &env);
    let listen = otpd.addr.to_string();
    // By config, as a container's HEALTHCHECK runs it.
    let (ok, out) = health(&[("OTP_SERVER__LISTEN", &listen)], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("ready"), "{out}");
    let (ok, out) = health(&[], &["--addr", &listen]);
    assert!(ok, "{out}");

    drop(redis);
    let (ok, out) = health(&[], &["--addr", &listen]);
    assert!(!ok, "Redis is gone: {out}");
    assert!(out.contains("503"), "{out}");

    otpd.kill_9();
    let (ok, out) = health(&[], &["--addr", &listen, "--timeout-secs", "1"]);
    assert!(!ok, "otpd is gone: {out}");
    let code = Command::new(OTPD)
        .args(["health", "--addr", &listen])
        .output()
        .expect("run")
        .status
        .code();
    assert_eq!(code, Some(1), "a HEALTHCHECK takes only 0 or 1");
}

#[test]
fn the_alert_rules_and_the_dashboard_queries_pass_promtool() {
    let rules = repo().join("deploy/prometheus/alerts.yml");
    let out = promtool(&["check", "rules", rules.to_str().expect("path")], "");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tests = repo().join("deploy/prometheus/alerts_test.yml");
    let out = promtool(&["test", "rules", tests.to_str().expect("path")], "");
    assert!(
        out.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Each dashboard query, with Grafana's variables filled in, as a
    // recording rule, so promtool parses its PromQL.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/otpd.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard["panels"], &mut exprs);
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let mut file = String::from("groups:\n- name: dashboard\n  rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        file.push_str(&format!(
            "  - record: dashboard:query{i}\n    expr: {}\n",
            json!(e)
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dashboard-rules.yml");
    std::fs::write(&path, file).expect("write");
    let out = promtool(&["check", "rules", path.to_str().expect("path")], "");
    assert!(
        out.status.success(),
        "a dashboard query does not parse: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}
