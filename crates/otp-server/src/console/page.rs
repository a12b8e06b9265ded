//! The console's HTML: one maud template over an [`Overview`], the
//! charts as inline SVG drawn here, and a few lines of JavaScript that
//! re-fetch the page and swap its content in. No code is ever rendered:
//! the overview holds none.

use maud::{html, Markup, PreEscaped};

use super::{ChannelRow, FraudRow, MinuteRow, Numbers, Overview, RecentRow, StoreInfo};

const STYLE: &str = r#"
header, main { max-width: 72rem; }
section { margin: 0 0 1.75rem; }
h2 { font-size: 1.15rem; margin: 0 0 .5rem; }
.facts { display: flex; flex-wrap: wrap; gap: .25rem 1.25rem; margin: 0 0 1.25rem; padding: 0; list-style: none; color: var(--muted); font-size: .95rem; }
.facts strong { color: var(--fg); }
.scroll { overflow-x: auto; }
#updated:empty { display: none; }
caption { caption-side: top; white-space: normal; }
table { border-collapse: collapse; width: 100%; font-size: .95rem; }
caption { text-align: left; color: var(--muted); font-size: .9rem; padding: 0 0 .25rem; }
th, td { padding: .35rem .6rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th[scope=col] { font-size: .85rem; text-transform: uppercase; letter-spacing: .03em; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: 1rem; }
figure { margin: 0; }
figcaption { font-weight: 600; font-size: .95rem; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart .bar-sends { fill: var(--accent); }
svg.chart .bar-approvals { fill: var(--ok); }
svg.chart .axis { stroke: var(--line); }
svg.chart text { fill: var(--muted); font: 12px system-ui, sans-serif; }
.err { overflow-wrap: anywhere; }
ol.recent { list-style: none; padding: 0; margin: 0; }
li.vrf { border: 1px solid var(--line); border-radius: .4rem; padding: .6rem .75rem; margin: 0 0 .6rem; }
li.vrf .meta { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: baseline; }
.status { font-weight: 700; padding: 0 .4rem; border-radius: .3rem; border: 1px solid currentColor; }
.status-approved { color: var(--ok); }
.status-failed, .status-max_attempts_reached { color: var(--bad); }
.status-pending { color: var(--accent); }
.status-expired, .status-canceled { color: var(--muted); }
ol.timeline { margin: .4rem 0 0; padding: 0 0 0 1.1rem; font-size: .9rem; color: var(--muted); }
ol.timeline li { margin: .1rem 0; }
.ok { color: var(--ok); font-weight: 700; }
.bad { color: var(--bad); font-weight: 700; }
a { color: var(--accent); }
footer { max-width: 72rem; margin: 0 auto; padding: 0 1rem 2rem; color: var(--muted); font-size: .9rem; }
:root { --ok: #0b6b2a; --bad: #b3261e; }
@media (prefers-color-scheme: dark) { :root { --ok: #81c995; --bad: #f2b8b5; } }
"#;

/// Re-fetches the page every 5 s while it is visible and swaps the
/// content in; the server renders the numbers either way.
const SCRIPT: &str = r#"
(function () {
  var live = document.getElementById('live');
  var stamp = document.getElementById('updated');
  var busy = false, failing = false;
  function say(text) { if (live.textContent !== text) live.textContent = text; }
  function refresh() {
    if (busy || document.hidden || !window.fetch || !window.DOMParser) return;
    busy = true;
    fetch(location.pathname, { headers: { 'Accept': 'text/html' }, cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('console');
        var old = document.getElementById('console');
        if (fresh && old) old.replaceWith(document.importNode(fresh, true));
        stamp.textContent = 'Last update ' + new Date().toLocaleTimeString() + '.';
        failing = false;
        say('Live: the numbers refresh every 5 seconds.');
      })
      .catch(function () {
        failing = true;
        say('Live updates paused; retrying. Reload to see newer numbers.');
      })
      .then(function () { busy = false; });
  }
  say('Live: the numbers refresh every 5 seconds.');
  setInterval(refresh, 5000);
})();
"#;

fn percent(r: Option<f64>) -> String {
    r.map_or_else(|| "—".to_owned(), |r| format!("{:.0}%", r * 100.0))
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.2} ms"))
}

fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// An RFC 3339 time as `HH:MM:SS` with the full form in the markup.
fn time(rfc3339: &str) -> Markup {
    html! {
        time datetime=(rfc3339) title=(rfc3339) { (rfc3339.get(11..19).unwrap_or(rfc3339)) }
    }
}

pub fn render(o: &Overview) -> Markup {
    let window = if o.window.since_start {
        format!("since start ({} ago)", duration(o.window.secs))
    } else {
        format!("the last {}", duration(o.window.secs))
    };
    let body = html! {
        header {
            h1 { "Console" }
            p.lead { "What this otpd instance did " (window) ". Codes are never shown here." }
            p #live role="status" aria-live="polite" { "Reload the page to see newer numbers." }
            p #updated .lead {}
        }
        main #console {
            ul.facts aria-label="This instance" {
                li { "Version " strong { (o.version) } }
                li { "Up " strong { (duration(o.uptime_secs)) } }
                li { "Counts cover " strong #window data-secs=(o.window.secs) { (window) } ", from " (time(&o.window.from)) " to " (time(&o.now)) " UTC" }
            }
            @match &o.metrics {
                Some(n) => { (numbers(n, &window)) }
                None => {
                    section aria-labelledby="no-metrics" {
                        h2 #"no-metrics" { "Counts" }
                        p { "Metrics are off (" code { "metrics.listen" } " is empty), so there are no counts to show. The store and the recent verifications are below." }
                    }
                }
            }
            (store(&o.store))
            (fraud(o.fraud_blocks.as_deref()))
            (recent(&o.recent))
        }
        footer {
            p { "Every count is the increase of a counter that " code { "/metrics" } " exports, over the window above, so this page and a scrape agree. The same data as JSON: " a href="/console/data" { "/console/data" } "." }
            p { "Counters and the recent list are this instance's own: behind a load balancer, each instance shows its share." }
        }
        script { (PreEscaped(SCRIPT)) }
    };
    crate::style::page("Console", STYLE, body)
}

fn numbers(n: &Numbers, window: &str) -> Markup {
    html! {
        section aria-labelledby="glance" {
            h2 #glance { "At a glance" }
            div.scroll tabindex="0" role="region" aria-label="Channels table" {
                table #channels {
                    caption { "Per channel, " (window) ". Test destinations are not counted." }
                    thead { tr {
                        th scope="col" { "Channel" }
                        th.n scope="col" { "Sends" }
                        th.n scope="col" { "Approvals" }
                        th.n scope="col" { "Conversion" }
                        th.n scope="col" { "Delivery failed" }
                        th.n scope="col" { "Wrong codes" }
                        th.n scope="col" { "Refused" }
                    } }
                    tbody { @for c in &n.channels { (channel_row(c)) } }
                }
            }
        }
        section aria-labelledby="charts" {
            h2 #charts { "Per minute" }
            div.charts {
                (chart("Sends per minute", "sends", &n.minutes, |m| m.sends))
                (chart("Approvals per minute", "approvals", &n.minutes, |m| m.approvals))
            }
        }
        section aria-labelledby="countries" {
            h2 #countries { "Top countries by sends" }
            @if n.countries.is_empty() {
                p.empty { "No sends yet." }
            } @else {
                div.scroll tabindex="0" role="region" aria-label="Countries table" {
                    table {
                        thead { tr {
                            th scope="col" { "Country" }
                            th.n scope="col" { "Sends" }
                            th.n scope="col" { "Approvals" }
                            th.n scope="col" { "Conversion" }
                        } }
                        tbody { @for c in &n.countries { tr {
                            th scope="row" { @if c.country == "none" { "none (email, Telegram)" } @else { (c.country) } }
                            td.n { (c.sends) }
                            td.n { (c.approvals) }
                            td.n { (percent(c.conversion)) }
                        } } }
                    }
                }
            }
        }
        section aria-labelledby="providers" {
            h2 #providers { "Delivery by provider" }
            @if n.providers.is_empty() {
                p.empty { "No provider has been tried yet." }
            } @else {
                div.scroll tabindex="0" role="region" aria-label="Providers table" {
                    table {
                        thead { tr {
                            th scope="col" { "Channel" }
                            th scope="col" { "Provider" }
                            th.n scope="col" { "Attempts" }
                            th.n scope="col" { "Failed" }
                            th scope="col" { "Last error (since start)" }
                        } }
                        tbody { @for p in &n.providers { tr {
                            td { (p.channel) }
                            th scope="row" { (p.provider) }
                            td.n { (p.attempts) }
                            td.n { (p.failures) }
                            td.err {
                                @match (&p.last_error, &p.last_error_at) {
                                    (Some(e), Some(at)) => { (time(at)) " " (e) }
                                    (Some(e), None) => { (e) }
                                    _ => { "none" }
                                }
                            }
                        } } }
                    }
                }
            }
        }
        section aria-labelledby="refusals" {
            h2 #refusals { "Refusals by limit" }
            div.scroll tabindex="0" role="region" aria-label="Refusals table" {
                table {
                    thead { tr { th scope="col" { "Limit" } th.n scope="col" { "Refused sends" } } }
                    tbody { @for r in &n.refusals { tr {
                        th scope="row" { (r.limit) }
                        td.n { (r.count) }
                    } } }
                }
            }
        }
    }
}

fn channel_row(c: &ChannelRow) -> Markup {
    html! {
        tr data-channel=(c.channel) {
            th scope="row" { (c.channel) }
            td.n.sends { (c.sends) }
            td.n.approvals { (c.approvals) }
            td.n { (percent(c.conversion)) }
            td.n { (c.failed) }
            td.n { (c.wrong_codes) }
            td.n { (c.refused) }
        }
    }
}

/// A bar chart of one series, newest minute on the right; the figure's
/// label says what a screen reader would otherwise miss.
fn chart(title: &str, class: &str, minutes: &[MinuteRow], value: fn(&MinuteRow) -> u64) -> Markup {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    const TOP: f64 = 16.0;
    let slots = minutes.len().max(60);
    let values: Vec<u64> = minutes.iter().map(value).collect();
    let total: u64 = values.iter().sum();
    let peak = values.iter().copied().max().unwrap_or(0);
    let scale = peak.max(1) as f64;
    let slot = W / slots as f64;
    let first = slots - values.len();
    let label = format!(
        "{title}: {total} in all over {} minutes, at most {peak} in one minute",
        values.len()
    );
    html! {
        figure {
            figcaption { (title) }
            svg.chart viewBox={ "0 0 " (W) " " (H + 20.0) } role="img" aria-label=(label) {
                title { (label) }
                text x="0" y="12" { "max " (peak) }
                line.axis x1="0" y1=(H) x2=(W) y2=(H) {}
                @for (i, v) in values.iter().enumerate() {
                    @let h = (*v as f64 / scale) * (H - TOP);
                    rect class={ "bar-" (class) }
                        x=(format!("{:.1}", (first + i) as f64 * slot + 1.0))
                        y=(format!("{:.1}", H - h))
                        width=(format!("{:.1}", (slot - 2.0).max(1.0)))
                        height=(format!("{:.1}", h)) {}
                }
                text x="0" y=(H + 16.0) { "−60 min" }
                text x=(W) y=(H + 16.0) text-anchor="end" { "now" }
            }
        }
    }
}

fn store(s: &StoreInfo) -> Markup {
    html! {
        section aria-labelledby="store" {
            h2 #store { "Store" }
            ul.facts {
                li { "Status "
                    @if s.status.ok { strong.ok #"store-status" { "answering" } }
                    @else { strong.bad #"store-status" { "not answering" } }
                }
                li { "Ping " strong { (ms(Some(s.status.ping_ms))) } }
                @if let Some(l) = &s.latency {
                    li { "Calls " strong { (l.calls) } }
                    li { "Mean " strong { (ms(l.mean_ms)) } }
                    li { "p50 ≤ " strong { (ms(l.p50_ms)) } }
                    li { "p99 ≤ " strong { (ms(l.p99_ms)) } }
                    li { "Errors " strong { (l.errors) } }
                }
                @if s.status.unreadable_records > 0 {
                    li.bad { (s.status.unreadable_records) " recent records unreadable" }
                }
            }
        }
    }
}

fn fraud(rows: Option<&[FraudRow]>) -> Markup {
    html! {
        section aria-labelledby="fraud" {
            h2 #fraud { "Fraud guard: blocked prefixes" }
            @match rows {
                None => { p { "The store could not be read." } }
                Some([]) => { p.empty { "No prefix is blocked." } }
                Some(rows) => {
                    div.scroll tabindex="0" role="region" aria-label="Blocked prefixes table" {
                        table {
                            thead { tr {
                                th scope="col" { "Prefix" }
                                th scope="col" { "Country" }
                                th scope="col" { "Mode" }
                                th scope="col" { "Since" }
                                th scope="col" { "Until" }
                                th.n scope="col" { "Sends" }
                                th.n scope="col" { "Approvals" }
                            } }
                            tbody { @for r in rows { tr data-prefix=(r.prefix) {
                                th scope="row" { "+" (r.prefix) }
                                td { (r.country.as_deref().unwrap_or("none")) }
                                td { (r.mode) }
                                td { (time(&r.since)) }
                                td { (time(&r.until)) }
                                td.n { (r.sends) }
                                td.n { (r.approvals) }
                            } } }
                        }
                    }
                    p { "Lift one now with " code { "DELETE /fraud/blocks/{prefix}" } "." }
                }
            }
        }
    }
}

fn recent(rows: &[RecentRow]) -> Markup {
    html! {
        section aria-labelledby="recent" {
            h2 #recent { "Recent verifications" }
            p.lead { "This instance's last " (super::memory::RECENT) " sends, newest first, with destinations masked. Each links to its record as JSON." }
            @if rows.is_empty() {
                p.empty { "No verifications yet." }
            }
            ol.recent aria-label="Recent verifications" {
                @for v in rows {
                    li.vrf data-id=(v.id) data-status=(v.status) {
                        div.meta {
                            span class={ "status status-" (v.status) } { (v.status.replace('_', " ")) }
                            span.channel { (v.channel) }
                            span.to { (v.to) }
                            a href=(v.link) { (v.id) }
                        }
                        ol.timeline aria-label="Timeline" {
                            li { "Created " (time(&v.created_at)) }
                            @for d in &v.deliveries {
                                li {
                                    @if d.delivered { "Delivered by " (d.provider) " " (time(&d.at)) }
                                    @else { "Failed at " (d.provider) " " (time(&d.at)) @if let Some(e) = &d.error { ": " span.err { (e) } } }
                                }
                            }
                            @if v.attempts > 0 {
                                li { (v.attempts) " of " (v.max_attempts) " attempts wrong" }
                            }
                            @if let Some(end) = &v.ended_at {
                                li { "Ended " (v.status.replace('_', " "))
                                    @if let Some(r) = v.reason { " (" (r) ")" }
                                    " " (time(end)) }
                            } @else {
                                li { "Expires " (time(&v.expires_at)) }
                            }
                        }
                    }
                }
            }
        }
    }
}
