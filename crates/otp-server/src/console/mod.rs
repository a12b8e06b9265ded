//! The operator console: what this instance did in the last hour, at a
//! glance, and its recent verifications.
//!
//! - `GET /console`: the page (server-rendered with maud, see
//!   `crate::pages`); a few lines of plain JavaScript re-fetch it every
//!   5 s and swap the numbers in. Without JavaScript it is a static view.
//! - `GET /console/data`: the same [`Overview`] as JSON, for scripts and
//!   tests.
//!
//! Both are behind the auth gate like every route not in its `EXEMPT`
//! table.
//!
//! # Where the numbers come from
//! Every count is read from the Prometheus registry `/metrics` exports
//! ([`Metrics::gather`]): a task samples the counters once a minute
//! ([`Console::spawn_sampler`]), and the page shows the value now minus the
//! sample of an hour ago (or since start, when otpd is younger). So the
//! page and a scrape never disagree. Recent verifications are the records
//! the store holds (`/verifications/{id}`), for the last [`RECENT`] sends
//! this instance made. The code is never on the console: the records do
//! not hold it, and nothing else here reads it.
//!
//! Counters and the recent list are per instance: behind a load balancer,
//! each instance's console shows its own share.
//!
//! # Layout
//! - `window`: samples of the registry, and the counts between two.
//! - `page`: the HTML, with the charts as inline SVG.

mod page;
mod window;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use otp_domain::ports::Clock;
use otp_domain::verification::{AttemptOutcome, Verification};
use otp_domain::{Channel, VerificationId};
use poem::http::header;
use poem::web::Data;
use poem::{handler, Response, Route};
use serde::Serialize;

use self::window::{Sample, Window};
use crate::api::AppState;
use otp_telemetry::metrics::Metrics;

/// How many of this instance's latest verifications the console lists.
pub const RECENT: usize = 50;
/// How often the counters are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// The window the console shows.
const WINDOW: Duration = Duration::from_secs(3600);

/// The console's routes.
pub const PATHS: [&str; 2] = ["/console", "/console/data"];

/// Adds the console's routes.
pub fn mount(route: Route) -> Route {
    let [page, data] = PATHS;
    route
        .at(page, poem::get(console_page))
        .at(data, poem::get(console_data))
}

/// What the console keeps: the ids of recent sends and the minute
/// samples of the counters.
pub struct Console {
    metrics: Option<Arc<Metrics>>,
    clock: Arc<dyn Clock>,
    started: Instant,
    recent: Mutex<VecDeque<VerificationId>>,
    /// Oldest first; the first one is the window's start.
    samples: Mutex<VecDeque<Arc<Sample>>>,
}

impl Console {
    /// `metrics`: the registry to read (`None`: metrics are off, and the
    /// console shows only the store and the recent verifications).
    pub fn new(metrics: Option<Arc<Metrics>>, clock: Arc<dyn Clock>) -> Self {
        let console = Console {
            metrics,
            clock,
            started: Instant::now(),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            samples: Mutex::new(VecDeque::new()),
        };
        console.sample();
        console
    }

    /// Remembers a verification this instance created.
    pub fn record(&self, id: VerificationId) {
        let mut recent = lock(&self.recent);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(id);
    }

    /// Samples the counters now, and drops samples the window no longer
    /// needs (it keeps the newest that is at least an hour old).
    pub fn sample(&self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let now = Instant::now();
        let sample = Arc::new(Sample::of(&metrics.gather(), now));
        let mut samples = lock(&self.samples);
        samples.push_back(sample);
        while samples
            .get(1)
            .is_some_and(|s| now.duration_since(s.at) >= WINDOW)
        {
            samples.pop_front();
        }
    }

    /// Samples the counters every minute until the task is dropped or
    /// aborted; `None` when metrics are off.
    pub fn spawn_sampler(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        self.metrics.as_ref()?;
        let console = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; `new` took that sample.
            tick.tick().await;
            loop {
                tick.tick().await;
                console.sample();
            }
        }))
    }

    /// Everything the page shows, read now.
    pub async fn overview(&self, state: &AppState) -> Overview {
        let now = Instant::now();
        let now_ms = self.clock.now();
        let store = store_status(state).await;
        let (counts, window) = match &self.metrics {
            Some(metrics) => {
                let current = Sample::of(&metrics.gather(), now);
                let samples: Vec<Arc<Sample>> = lock(&self.samples).iter().cloned().collect();
                let counts = samples
                    .first()
                    .map(|from| counts(from, &samples, &current, metrics, (now, now_ms)));
                let secs = samples
                    .first()
                    .map_or(0, |s| now.duration_since(s.at).as_secs());
                (counts, secs)
            }
            None => (None, 0),
        };
        let uptime = now.duration_since(self.started).as_secs();
        let ids: Vec<VerificationId> = lock(&self.recent).iter().rev().copied().collect();
        let records =
            futures_util::future::join_all(ids.iter().map(|id| state.otp.verification(id))).await;
        let mut unreadable = 0;
        let recent = records
            .into_iter()
            .filter_map(|r| match r {
                Ok(found) => found,
                Err(_) => {
                    unreadable += 1;
                    None
                }
            })
            .map(|v| recent_row(state, &v))
            .collect();
        let store = StoreStatus {
            unreadable_records: unreadable,
            ..store
        };
        let latency = counts.as_ref().map(|c| c.store_latency.clone());
        let fraud_blocks = state.otp.fraud_blocks().await.ok().map(|blocks| {
            blocks
                .iter()
                .map(|b| FraudRow {
                    prefix: b.prefix.to_string(),
                    country: b.country.clone(),
                    mode: b.mode.as_str(),
                    since: rfc3339(b.since),
                    until: rfc3339(b.until),
                    sends: (b.sends * 10.0).round() / 10.0,
                    approvals: (b.approvals * 10.0).round() / 10.0,
                })
                .collect()
        });
        Overview {
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: uptime,
            now: rfc3339(now_ms),
            window: WindowInfo {
                secs: window,
                since_start: uptime < WINDOW.as_secs(),
                from: rfc3339(now_ms.saturating_sub(window * 1000)),
            },
            metrics: counts.map(|c| c.numbers),
            store: StoreInfo {
                status: store,
                latency,
            },
            recent,
            fraud_blocks,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under these locks is one push or pop: a panic leaves
    // a consistent value behind.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The console's content, as `/console/data` answers it.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub version: &'static str,
    pub uptime_secs: u64,
    /// When this was read (RFC 3339).
    pub now: String,
    pub window: WindowInfo,
    /// The counts of the window; `null` when metrics are off.
    pub metrics: Option<Numbers>,
    pub store: StoreInfo,
    /// Newest first.
    pub recent: Vec<RecentRow>,
    /// The fraud guard's active blocks (shared by every instance on the
    /// store); `null` when the store could not be read.
    pub fraud_blocks: Option<Vec<FraudRow>>,
}

/// One active fraud-guard block.
#[derive(Debug, Clone, Serialize)]
pub struct FraudRow {
    pub prefix: String,
    pub country: Option<String>,
    /// `block` or `monitor`.
    pub mode: &'static str,
    /// RFC 3339.
    pub since: String,
    pub until: String,
    pub sends: f64,
    pub approvals: f64,
}

/// Which stretch of time the counts cover.
#[derive(Debug, Clone, Serialize)]
pub struct WindowInfo {
    pub secs: u64,
    /// Younger than an hour: the counts run from start.
    pub since_start: bool,
    /// Where the window starts (RFC 3339).
    pub from: String,
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
pub struct StoreInfo {
    #[serde(flatten)]
    pub status: StoreStatus,
    /// From `otpd_store_operation_duration_seconds` over the window;
    /// `null` when metrics are off.
    pub latency: Option<StoreLatency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    /// The store answered a ping just now.
    pub ok: bool,
    /// How long that ping took.
    pub ping_ms: f64,
    /// Recent verifications the store could not read.
    pub unreadable_records: usize,
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

#[derive(Debug, Clone, Serialize)]
pub struct RecentRow {
    pub id: String,
    pub channel: &'static str,
    /// The destination with its middle hidden.
    pub to: String,
    pub country: Option<String>,
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub created_at: String,
    pub expires_at: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub deliveries: Vec<DeliveryRow>,
    pub ended_at: Option<String>,
    /// The record as JSON.
    pub link: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub provider: String,
    pub delivered: bool,
    pub at: String,
    pub error: Option<String>,
}

struct Counts {
    numbers: Numbers,
    store_latency: StoreLatency,
}

const CHANNELS: [Channel; 4] = [
    Channel::Sms,
    Channel::Call,
    Channel::Email,
    Channel::Telegram,
];

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn counts(
    from: &Sample,
    samples: &[Arc<Sample>],
    current: &Sample,
    metrics: &Metrics,
    (now, now_ms): (Instant, u64),
) -> Counts {
    use window::{
        ATTEMPTS, CHECKS, ENDED, RATE_LIMITED, SENDS, STARTED, STORE_COUNT, STORE_ERRORS, STORE_SUM,
    };
    let w = Window { from, to: current };
    let channels = CHANNELS
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
    Counts {
        numbers: Numbers {
            channels,
            countries,
            providers,
            refusals,
            minutes,
        },
        store_latency,
    }
}

async fn store_status(state: &AppState) -> StoreStatus {
    let started = Instant::now();
    let ok = state.otp.ready().await.is_ok();
    StoreStatus {
        ok,
        ping_ms: started.elapsed().as_secs_f64() * 1000.0,
        unreadable_records: 0,
    }
}

fn recent_row(state: &AppState, v: &Verification) -> RecentRow {
    let to = state
        .otp
        .destination(v.channel, &v.destination)
        .map_or_else(|_| "***".to_owned(), |d| d.masked());
    RecentRow {
        id: v.id.to_string(),
        channel: v.channel.as_str(),
        to,
        country: v.country.clone(),
        status: v.status.as_str(),
        reason: v.reason.map(|r| r.as_str()),
        created_at: rfc3339(v.created_at),
        expires_at: rfc3339(v.expires_at),
        attempts: v.attempts,
        max_attempts: v.max_attempts,
        deliveries: v
            .deliveries
            .iter()
            .map(|d| DeliveryRow {
                provider: d.provider.clone(),
                delivered: d.outcome == AttemptOutcome::Delivered,
                at: rfc3339(d.at),
                error: d.error.clone(),
            })
            .collect(),
        ended_at: v.ended_at.map(rfc3339),
        link: format!("/verifications/{}", v.id),
    }
}

/// The answer while `console.enabled` is off.
fn off() -> Response {
    crate::api::responses::ErrorBody::new(
        crate::api::responses::ErrorCode::NotFound,
        "the console is off (console.enabled = false)",
    )
    .response(poem::http::StatusCode::NOT_FOUND)
}

#[handler]
async fn console_page(state: Data<&Arc<AppState>>) -> Response {
    let Some(console) = &state.console else {
        return off();
    };
    let overview = console.overview(&state).await;
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(page::render(&overview).into_string())
}

#[handler]
async fn console_data(state: Data<&Arc<AppState>>) -> Response {
    let Some(console) = &state.console else {
        return off();
    };
    let overview = console.overview(&state).await;
    let body = serde_json::to_string(&overview).unwrap_or_else(|_| "{}".to_owned());
    Response::builder()
        .content_type("application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
}
