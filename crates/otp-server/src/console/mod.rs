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
//! (through [`Counters`]): a task samples the counters once a minute
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
//! - [`otp_telemetry::snapshot`]: samples of the registry, and the typed
//!   counts between two.
//! - `memory`: [`Console`], what the console keeps (recent ids, the
//!   counters' samples); it knows nothing of the HTTP layer.
//! - `page`: the HTML, with the charts as inline SVG.

pub mod memory;
mod page;

pub use memory::{Console, RECENT};

use std::sync::Arc;
use std::time::Instant;

use otp_domain::verification::{AttemptOutcome, Verification};
use poem::http::header;
use poem::web::Data;
use poem::{handler, Response, Route};
use serde::Serialize;

use crate::api::AppState;
use otp_telemetry::snapshot::{rfc3339, WINDOW};
pub use otp_telemetry::snapshot::{
    ChannelRow, CountryRow, MinuteRow, Numbers, ProviderRow, RefusalRow, StoreLatency,
};

/// The console's routes.
pub const PATHS: [&str; 2] = ["/console", "/console/data"];

/// Adds the console's routes.
pub fn mount(route: Route) -> Route {
    let [page, data] = PATHS;
    route
        .at(page, poem::get(console_page))
        .at(data, poem::get(console_data))
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

/// Everything the page shows, read now.
pub async fn overview(console: &Console, state: &AppState) -> Overview {
    let now = Instant::now();
    let now_ms = console.now_ms();
    let store = store_status(state).await;
    let snapshot = console.snapshot(now, now_ms);
    let window = snapshot.as_ref().map_or(0, |s| s.window_secs);
    let uptime = console.uptime_secs(now);
    let ids = console.recent();
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
    let latency = snapshot.as_ref().map(|s| s.store_latency.clone());
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
        metrics: snapshot.map(|s| s.numbers),
        store: StoreInfo {
            status: store,
            latency,
        },
        recent,
        fraud_blocks,
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
    let overview = overview(console, &state).await;
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
    let overview = overview(console, &state).await;
    match serde_json::to_string(&overview) {
        Ok(body) => Response::builder()
            .content_type("application/json")
            .header(header::CACHE_CONTROL, "no-store")
            .body(body),
        // Not reachable with these types (strings, numbers, no maps with
        // non-string keys); said, not hidden, if it ever is.
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the console's data");
            crate::api::responses::ErrorBody::new(
                crate::api::responses::ErrorCode::InternalError,
                "the console's data could not be encoded",
            )
            .response(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}
