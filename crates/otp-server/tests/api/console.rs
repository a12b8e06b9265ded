//! The operator console, through the real app: its numbers are the
//! `/metrics` counters' increases, its recent list is the verification
//! records, it is closed with auth, and it never shows a code.

use serde_json::{json, Value};

use reqwest::Method;

use crate::helpers::{assert_error_for, Options, TestApp, GENERATED};

/// A cooldown, so a second send to one phone is refused.
const LIMITS: &str = "[limits]\ncooldown_secs = 60\n";
const AUTH: &str = "[auth]\nusername = \"admin\"\npassword = \"0123\"\n";

/// The sum of the scrape's `name` series whose labels include all of
/// `labels`.
fn sum(scrape: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let set = rest.trim_end_matches('}');
            let all = labels
                .iter()
                .all(|(k, v)| set.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().expect("a number") as u64)
        })
        .sum()
}

async fn data(app: &TestApp) -> Value {
    let (status, body) = app.get("/console/data").await;
    assert_eq!(status, 200, "{body}");
    body
}

fn row<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .expect("rows")
        .iter()
        .find(|r| r[key] == json!(value))
        .unwrap_or_else(|| panic!("no row with {key} = {value} in {rows}"))
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[tokio::test]
async fn the_consoles_counts_for_a_flow_equal_the_scrapes_deltas() {
    let app = TestApp::spawn_with(Options::toml(LIMITS).with_metrics()).await;
    let scrape_before = app.scrape().await;
    let before = data(&app).await;

    // Two channels, two countries, approvals, a wrong code, a refusal.
    assert_eq!(app.send_sms("+77011234567").await.0, 200);
    assert_eq!(app.send_sms("+79161234567").await.0, 200);
    let (status, _) = app
        .post("/email", json!({"email": "ann@example.com"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.check_sms("+77011234567", GENERATED).await.0, 200);
    let wrong = json!({"email": "ann@example.com", "password": "000000"});
    assert_eq!(app.post("/email/check", wrong).await.0, 422);
    let right = json!({"email": "ann@example.com", "password": GENERATED});
    assert_eq!(app.post("/email/check", right).await.0, 200);
    assert_eq!(app.send_sms("+79161234567").await.0, 429, "cooldown");

    let scrape = app.scrape().await;
    let after = data(&app).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sum(&scrape, name, labels) - sum(&scrape_before, name, labels)
    };
    let console = |path: &dyn Fn(&Value) -> &Value| num(path(&after)) - num(path(&before));

    for channel in ["sms", "call", "email", "telegram"] {
        let c = [("channel", channel)];
        let field = |f: &'static str| {
            console(&move |d: &Value| &row(&d["metrics"]["channels"], "channel", channel)[f])
        };
        let sends = delta("otpd_verifications_started_total", &c);
        let approvals = delta(
            "otpd_verifications_ended_total",
            &[("channel", channel), ("status", "approved")],
        );
        assert_eq!(field("sends"), sends, "{channel} sends");
        assert_eq!(field("approvals"), approvals, "{channel} approvals");
        assert_eq!(
            field("failed"),
            delta(
                "otpd_verifications_ended_total",
                &[("channel", channel), ("status", "failed")]
            ),
            "{channel} failed"
        );
        assert_eq!(
            field("wrong_codes"),
            delta(
                "otpd_checks_total",
                &[("channel", channel), ("outcome", "wrong_password")]
            ),
            "{channel} wrong codes"
        );
        assert_eq!(
            field("refused"),
            delta(
                "otpd_sends_total",
                &[("channel", channel), ("outcome", "rate_limited")]
            ) + delta(
                "otpd_sends_total",
                &[("channel", channel), ("outcome", "country_refused")]
            ),
            "{channel} refused"
        );
    }
    for country in ["KZ", "RU", "none"] {
        let field = |f: &'static str| {
            console(&move |d: &Value| {
                let rows = &d["metrics"]["countries"];
                let found = rows
                    .as_array()
                    .and_then(|r| r.iter().find(|r| r["country"] == json!(country)));
                found.map_or(&Value::Null, |r| &r[f])
            })
        };
        let after_only = |f: &'static str| {
            // A country first seen in the flow has no row before it.
            let rows = &after["metrics"]["countries"];
            num(&row(rows, "country", country)[f])
        };
        let had_before = before["metrics"]["countries"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["country"] == json!(country)));
        let (sends, approvals) = if had_before {
            (field("sends"), field("approvals"))
        } else {
            (after_only("sends"), after_only("approvals"))
        };
        assert_eq!(
            sends,
            delta("otpd_verifications_started_total", &[("country", country)]),
            "{country} sends"
        );
        assert_eq!(
            approvals,
            delta(
                "otpd_verifications_ended_total",
                &[("country", country), ("status", "approved")]
            ),
            "{country} approvals"
        );
    }
    for limit in ["destination", "user", "channel"] {
        let got = console(&|d: &Value| &row(&d["metrics"]["refusals"], "limit", limit)["count"]);
        let want = delta("otpd_sends_rate_limited_total", &[("limit", limit)]);
        assert_eq!(got, want, "refusals by {limit}");
    }

    // And what the flow did, so the equalities above are not 0 = 0.
    let channels = &after["metrics"]["channels"];
    let sms = row(channels, "channel", "sms");
    assert_eq!((num(&sms["sends"]), num(&sms["approvals"])), (2, 1));
    assert_eq!(sms["conversion"], json!(0.5));
    assert_eq!(num(&sms["refused"]), 1);
    let email = row(channels, "channel", "email");
    assert_eq!(
        (num(&email["sends"]), num(&email["approvals"])),
        (1, 1),
        "{email}"
    );
    assert_eq!(num(&email["wrong_codes"]), 1);
    let refusals = &after["metrics"]["refusals"];
    assert_eq!(num(&row(refusals, "limit", "destination")["count"]), 1);
    let countries = &after["metrics"]["countries"];
    assert_eq!(num(&row(countries, "country", "KZ")["approvals"]), 1);
    assert_eq!(num(&row(countries, "country", "RU")["approvals"]), 0);
    let minutes = after["metrics"]["minutes"].as_array().expect("minutes");
    let charted: u64 = minutes.iter().map(|m| num(&m["sends"])).sum();
    assert_eq!(charted, 3, "the chart holds every send: {minutes:?}");
    assert!(after["window"]["since_start"].as_bool().expect("a flag"));
    assert_eq!(after["store"]["ok"], json!(true));
    assert!(num(&after["store"]["latency"]["calls"]) > 0);
}

#[tokio::test]
async fn recent_verifications_are_listed_masked_with_their_status_and_record() {
    let app = TestApp::spawn_with(Options::default().with_metrics()).await;
    assert_eq!(app.send_sms("+77011234567").await.0, 200);
    let (_, sent) = app
        .post("/email", json!({"email": "ann@example.com"}))
        .await;
    assert_eq!(app.check_sms("+77011234567", GENERATED).await.0, 200);

    let data = data(&app).await;
    let recent = data["recent"].as_array().expect("recent");
    assert_eq!(recent.len(), 2, "{recent:?}");
    let (email, sms) = (&recent[0], &recent[1]);
    assert_eq!(email["id"], sent["id"], "newest first");
    assert_eq!(
        (&email["status"], &email["to"]),
        (&json!("pending"), &json!("a***@example.com"))
    );
    assert_eq!(
        (&sms["status"], &sms["to"], &sms["country"]),
        (&json!("approved"), &json!("+7701***4567"), &json!("KZ"))
    );
    assert_eq!(sms["deliveries"][0]["provider"], json!("mock"));
    assert!(sms["ended_at"].is_string());
    let link = sms["link"].as_str().expect("a link");
    let (status, record) = app.get(link).await;
    assert_eq!((status, &record["status"]), (200, &json!("approved")));

    let (status, html) = app.page("/console").await;
    assert_eq!(status, 200);
    assert!(html.contains("+7701***4567") && html.contains("a***@example.com"));
    assert!(html.contains(&format!("href=\"{link}\"")));
    assert!(!html.contains(GENERATED), "a code on the console");
    assert!(!html.contains("+77011234567") && !html.contains("ann@example.com"));
    assert!(!data.to_string().contains(GENERATED));
}

#[tokio::test]
async fn the_console_is_closed_without_credentials_when_auth_is_on() {
    let app = TestApp::spawn_with(Options::toml(AUTH).with_metrics()).await;
    for path in ["/console", "/console/data"] {
        let r = app.raw(Method::GET, path).await;
        assert_eq!(r.status().as_u16(), 401, "{path}");
        assert!(r.headers().contains_key("www-authenticate"), "{path}");
        let r = app.raw_as(Method::GET, path, ("admin", "wrong")).await;
        assert_eq!(r.status().as_u16(), 401, "{path} with a wrong password");
        let r = app.raw_as(Method::GET, path, ("admin", "0123")).await;
        assert_eq!(r.status().as_u16(), 200, "{path} with credentials");
    }
}

#[tokio::test]
async fn without_metrics_the_console_still_lists_the_store_and_recent_sends() {
    let app = TestApp::spawn().await;
    assert_eq!(app.send_sms("+77011234567").await.0, 200);
    let data = data(&app).await;
    assert_eq!(data["metrics"], Value::Null);
    assert_eq!(data["recent"][0]["status"], json!("pending"));
    let (status, html) = app.page("/console").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Metrics are off"), "{html}");
}

#[tokio::test]
async fn the_console_is_404_when_turned_off() {
    let app = TestApp::spawn_with(Options::toml("[console]\nenabled = false\n")).await;
    for path in ["/console", "/console/data"] {
        assert_error_for(path, &app.get(path).await, 404, "not_found");
    }
    // Sends still work without it.
    assert_eq!(app.send_sms("77011234567").await.0, 200);
}
