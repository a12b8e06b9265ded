//! The pages people look at, server-rendered with maud (HTML checked at
//! compile time, escaped by default, no template files to ship) and a
//! little plain JavaScript for live updates. Everything is compiled into
//! the binary; no CDN. Without JavaScript a page is a static view: the
//! filter and clear forms still work, and a reload shows new messages.
//!
//! - `GET /outbox`: the dev outbox (exists only with the dev sink).
//! - `GET /outbox/events`: its new messages as server-sent events.
//! - `POST /outbox/clear`: empties it, then back to `/outbox`.
//! - `GET /console` and `GET /console/data`: the operator console
//!   (`crate::console`).
//!
//! The auth gate guards them like every other route.

use std::sync::Arc;
use std::time::Duration;

use maud::{html, Markup, PreEscaped};
use poem::http::{header, StatusCode};
use poem::web::sse::{Event, SSE};
use poem::web::{Data, Query};
use poem::{handler, IntoResponse, Response, Route};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::api::responses::{ErrorBody, ErrorCode};
use crate::api::AppState;
use crate::outbox::{Filter, OutboxEntry};
use otp_domain::Channel;

/// Adds the pages' routes.
pub fn mount(route: Route) -> Route {
    let [page, events, clear, ..] = PATHS;
    crate::console::mount(route)
        .at(page, poem::get(outbox_page))
        .at(events, poem::get(outbox_events))
        .at(clear, poem::post(outbox_clear))
}

/// The pages' routes, which the spec does not list (for the metrics'
/// route label).
pub const PATHS: [&str; 5] = [
    "/outbox",
    "/outbox/events",
    "/outbox/clear",
    crate::console::PATHS[0],
    crate::console::PATHS[1],
];

fn not_found() -> Response {
    ErrorBody::new(
        ErrorCode::NotFound,
        "no channel uses the log dev sink, so there is no dev outbox",
    )
    .response(StatusCode::NOT_FOUND)
}

#[derive(Debug, Default, Deserialize)]
struct FilterQuery {
    channel: Option<String>,
    to: Option<String>,
}

/// New messages appear without a reload; the copy buttons copy codes.
const SCRIPT: &str = r#"
(function () {
  var list = document.getElementById('messages');
  var live = document.getElementById('live');
  var filter = { channel: list.dataset.channel || '', to: (list.dataset.to || '').toLowerCase() };
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
  function copyButton(code) {
    var b = el('button', 'copy', 'Copy code');
    b.type = 'button'; b.dataset.code = code; b.setAttribute('aria-label', 'Copy code ' + code);
    return b;
  }
  function row(m) {
    var li = el('li', 'msg'); li.dataset.id = m.id;
    var meta = el('div', 'meta');
    meta.appendChild(el('span', 'channel', m.channel));
    meta.appendChild(el('span', 'to', m.to));
    var t = el('time', null, m.at); t.dateTime = m.at; meta.appendChild(t);
    li.appendChild(meta);
    if (m.subject) li.appendChild(el('p', 'subject', m.subject));
    li.appendChild(el('pre', 'body', m.body));
    var code = el('div', 'code-row');
    code.appendChild(el('span', null, 'Code'));
    code.appendChild(el('code', 'code', m.code));
    code.appendChild(copyButton(m.code));
    li.appendChild(code);
    return li;
  }
  document.addEventListener('click', function (ev) {
    var b = ev.target.closest('button.copy');
    if (!b || !navigator.clipboard) return;
    navigator.clipboard.writeText(b.dataset.code).then(function () { b.textContent = 'Copied'; });
  });
  if (!window.EventSource) return;
  var source = new EventSource('/outbox/events');
  source.onopen = function () { live.textContent = 'Live: new messages appear here as they are sent.'; };
  source.onerror = function () { live.textContent = 'Live updates paused; retrying. Reload to see new messages.'; };
  source.onmessage = function (ev) {
    var m = JSON.parse(ev.data);
    if (filter.channel && m.channel !== filter.channel) return;
    if (filter.to && m.to.toLowerCase().indexOf(filter.to) < 0) return;
    var empty = document.getElementById('empty');
    if (empty) empty.remove();
    list.insertBefore(row(m), list.firstChild);
  };
})();
"#;

fn entry(e: &OutboxEntry) -> Markup {
    html! {
        li.msg data-id=(e.id) {
            div.meta {
                span.channel { (e.channel) }
                span.to { (e.to) }
                time datetime=(e.at.0) { (e.at.0) }
            }
            @if let Some(subject) = &e.subject { p.subject { (subject) } }
            pre.body { (e.body) }
            div."code-row" {
                span { "Code" }
                code.code { (e.code) }
                button.copy type="button" data-code=(e.code) aria-label={ "Copy code " (e.code) } { "Copy code" }
            }
        }
    }
}

#[handler]
async fn outbox_page(state: Data<&Arc<AppState>>, query: Query<FilterQuery>) -> Response {
    let Some(outbox) = &state.outbox else {
        return not_found();
    };
    let filter = Filter {
        channel: query.channel.clone(),
        to: query.to.clone(),
    };
    let entries = outbox.list(&filter);
    let selected = filter.channel.clone().unwrap_or_default();
    let to = filter.to.clone().unwrap_or_default();
    let body = html! {
        header {
            h1 { "Dev outbox" }
            p.lead { "What the log dev sink would have sent, newest first. Nothing here was delivered." }
        }
        main {
            form.filter method="get" action="/outbox" role="search" aria-label="Filter messages" {
                label {
                    "Channel"
                    select name="channel" {
                        option value="" selected[selected.is_empty()] { "All" }
                        @for c in Channel::ALL.map(Channel::as_str) {
                            option value=(c) selected[selected == c] { (c) }
                        }
                    }
                }
                label {
                    "Destination"
                    input type="search" name="to" value=(to) placeholder="+7701…, @example.com";
                }
                button type="submit" { "Filter" }
            }
            form method="post" action="/outbox/clear" {
                button type="submit" { "Clear all messages" }
            }
            p #live role="status" aria-live="polite" { "Reload the page to see new messages." }
            ol #messages aria-label="Messages" data-channel=(selected) data-to=(to) {
                @if entries.is_empty() {
                    li #empty .empty { "No messages yet. Send a code through the API and it appears here." }
                }
                @for e in &entries { (entry(e)) }
            }
        }
        script { (PreEscaped(SCRIPT)) }
    };
    let page = crate::style::page("Dev outbox", "", body);
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(page.into_string())
}

#[handler]
async fn outbox_events(state: Data<&Arc<AppState>>) -> Response {
    let Some(outbox) = &state.outbox else {
        return not_found();
    };
    let rx = outbox.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(entry) => {
                    let json = poem_openapi::types::ToJSON::to_json(entry.as_ref())
                        .unwrap_or_default()
                        .to_string();
                    return Some((Event::message(json).id(entry.id.to_string()), rx));
                }
                // A slow page skipped some; a reload shows them.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    SSE::new(stream)
        .keep_alive(Duration::from_secs(15))
        .into_response()
}

#[handler]
async fn outbox_clear(state: Data<&Arc<AppState>>) -> Response {
    let Some(outbox) = &state.outbox else {
        return not_found();
    };
    outbox.clear();
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, "/outbox")
        .finish()
}
