//! The analytics page, per server and for the whole organization: range and env in the URL,
//! summary cards with the change against the previous period, charts of volume, latency and error
//! rate, and the tables (tools, users, user x tool, clients, protocols, errors). Every row and
//! chart bucket links to the span list with the matching filters.

use std::sync::Arc;

use maud::{html, Markup};
use mcp_obs_storage::analytics::{self as an, Query, Totals, Window};
use mcp_obs_storage::meta::{Org, Role, Server};
use mcp_obs_storage::spans::SpanStore;

use super::chart::{self, Line, Unit};
use super::layout::{fmt_count, fmt_opt_ns, fmt_pct, query, time, Nav};
use super::range::{selector, RangeParams};
use super::{Ctx, PageResult};
use crate::error::ApiError;

/// Rows per table on the page.
const TABLE_ROWS: usize = 10;

/// Runs `f` on the storage analytics for `api_query` (parsed and resolved exactly as the JSON
/// analytics API does) off the async runtime.
pub async fn fetch<T, F>(
    ctx: &Ctx<'_>,
    org: &Org,
    api_query: &str,
    f: F,
) -> Result<(T, Window, Vec<Server>), ApiError>
where
    T: Send + 'static,
    F: FnOnce(&SpanStore, &Query, &Window) -> mcp_obs_storage::Result<T> + Send + 'static,
{
    let p = crate::analytics::parse(api_query)?;
    let (q, w, servers) = crate::analytics::resolve(ctx.state, org, &p)?;
    let store = Arc::clone(&ctx.state.spans);
    let t = tokio::task::spawn_blocking(move || f(&store, &q, &w))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((t, w, servers))
}

/// Everything the page shows, read in one blocking task.
pub struct Data {
    pub summary: an::Summary,
    pub series: Vec<an::Point>,
    pub tools: Vec<an::ToolRow>,
    pub users: Vec<an::UserRow>,
    pub user_tools: Vec<an::UserToolRow>,
    pub clients: Vec<an::ClientRow>,
    pub protocols: Vec<an::ProtocolRow>,
    pub errors: Vec<an::ErrorRow>,
}

/// The users-cube tables (users, user x tool, clients, protocols) come from one pass over it:
/// that cube is most of the page's cost at high user cardinality. The pass runs on its own
/// thread (it splits itself further over the cores) while this one reads the rest: the
/// questions are independent, and the page waits for the slowest.
pub fn read_all(store: &SpanStore, q: &Query, w: &Window) -> mcp_obs_storage::Result<Data> {
    let (u, rest) = std::thread::scope(|s| {
        let users = s.spawn(|| an::user_tables(store, q, w, TABLE_ROWS));
        let rest = (|| {
            Ok::<_, mcp_obs_storage::StorageError>((
                an::summary(store, q, w)?,
                an::series(store, q, w)?,
                an::top_tools(store, q, w, TABLE_ROWS)?,
                an::errors(store, q, w, TABLE_ROWS)?,
            ))
        })();
        // A panic there is a bug; it reaches the caller as a panic of this task would.
        let users = users
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (users, rest)
    });
    let u = u?;
    let (summary, series, tools, errors) = rest?;
    Ok(Data {
        summary,
        series,
        tools,
        users: u.users,
        user_tools: u.user_tools,
        clients: u.clients,
        protocols: u.protocols,
        errors,
    })
}

/// Builds span-list links that keep the page's server, env and window.
struct Links<'a> {
    slug: &'a str,
    server: String,
    env: &'a str,
    from_ms: String,
    to_ms: String,
}

impl Links<'_> {
    fn spans(&self, extra: &[(&str, &str)]) -> String {
        self.spans_between(&self.from_ms, &self.to_ms, extra)
    }
    fn spans_between(&self, from: &str, to: &str, extra: &[(&str, &str)]) -> String {
        let mut pairs = vec![
            ("server", self.server.as_str()),
            ("env", self.env),
            ("from", from),
            ("to", to),
        ];
        pairs.extend_from_slice(extra);
        format!("/orgs/{}/spans?{}", self.slug, query(&pairs))
    }
}

pub async fn page(ctx: &Ctx<'_>, slug: &str, server: Option<u32>) -> PageResult {
    let org = ctx.org(slug, Role::Member)?;
    let rp = RangeParams::parse(&ctx.query)?;
    let (d, w, servers) = fetch(ctx, &org, &rp.api_query(server), read_all).await?;
    let server = server.and_then(|id| servers.iter().find(|s| s.id == id));
    let title = server.map_or_else(|| "All servers".to_string(), |s| s.name.clone());
    let path = match server {
        Some(s) => format!("/orgs/{slug}/servers/{}", s.id),
        None => format!("/orgs/{slug}/analytics"),
    };
    let links = Links {
        slug,
        server: server.map(|s| s.id.to_string()).unwrap_or_default(),
        env: &rp.env,
        from_ms: (w.from_unix_nano / 1_000_000).to_string(),
        to_ms: (w.to_unix_nano / 1_000_000).to_string(),
    };
    let admin = ctx.role(slug) >= Role::Admin;
    let c = &d.summary.current;
    let nothing = c.spans == 0 && d.summary.previous.spans == 0;
    let body = html! {
        div.page-head {
            h1 { (title) " " span.muted.small { "analytics" } }
            div.actions {
                button.live type="button" data-live-toggle hidden { "Pause live refresh" }
                @if let Some(s) = server {
                    a.button href={ "/orgs/" (slug) "/servers/" (s.id) "/guide" } { "Integration guide" }
                    @if admin { a.button href={ "/orgs/" (slug) "/servers/" (s.id) "/settings" } { "Settings" } }
                }
                a.button href=(links.spans(&[])) { "Span list" }
            }
        }
        (selector(&path, &rp))
        div data-live {
            @if nothing {
                (empty(slug, server))
            } @else {
                (cards(&d.summary))
                (charts(&d, &w, &links))
                div.grid2 {
                    (tools_table(&d.tools, &links))
                    (users_table(&d.users, &links))
                    (user_tools_table(&d.user_tools, &links))
                    (errors_table(&d.errors, &links))
                    (clients_table(&d.clients, &d.protocols, &links))
                }
            }
            p.muted.small {
                "Window " (time(w.from_unix_nano / 1_000_000)) " to " (time(w.to_unix_nano / 1_000_000))
                ", one point per " (fmt_bucket(w.bucket_nanos)) "."
                @if c.calls > c.spans as f64 + 1e-9 { " Counts are estimated from sampled spans." }
            }
        }
    };
    Ok(ctx.page(Some(slug), Nav::Analytics, &title, body))
}

/// A bucket length for people: `5 min`, `1 h`, `7 d`.
fn fmt_bucket(nanos: u64) -> String {
    let mins = nanos / 60_000_000_000;
    match mins {
        m if m % 1440 == 0 => format!("{} d", m / 1440),
        m if m % 60 == 0 => format!("{} h", m / 60),
        m => format!("{m} min"),
    }
}

/// No data in this range: show how to connect, not empty charts.
fn empty(slug: &str, server: Option<&Server>) -> Markup {
    html! {
        section.card.empty {
            h2 { "No calls in this range yet" }
            @if let Some(s) = server {
                p { "Send telemetry from " strong { (s.name) } " with the snippets of its integration guide; calls appear here within seconds." }
                a.button.primary href={ "/orgs/" (slug) "/servers/" (s.id) "/guide" } { "Open the integration guide" }
            } @else {
                p { "Connect an MCP server, or pick a longer range above." }
                a.button.primary href={ "/orgs/" (slug) } { "Servers" }
            }
        }
    }
}

fn change(now: Option<f64>, before: Option<f64>, lower_is_better: bool) -> Markup {
    let (Some(a), Some(b)) = (now, before) else {
        return html! { span.change.muted { "no previous data" } };
    };
    if b <= 0.0 {
        return html! { span.change.muted { "no previous data" } };
    }
    let rel = (a - b) / b;
    let good = (rel < 0.0) == lower_is_better;
    let class = if rel.abs() < 0.005 {
        "flat"
    } else if good {
        "good"
    } else {
        "bad"
    };
    let arrow = if rel > 0.0 {
        "▲"
    } else if rel < 0.0 {
        "▼"
    } else {
        ""
    };
    html! { span class={ "change " (class) } { (arrow) " " (format!("{:.1}%", rel.abs() * 100.0)) " vs previous" } }
}

fn cards(s: &an::Summary) -> Markup {
    let (c, p) = (&s.current, &s.previous);
    let f = |x: Option<u64>| x.map(|v| v as f64);
    let rate_change = {
        let d = (c.error_rate - p.error_rate) * 100.0;
        let class = if d.abs() < 0.05 {
            "flat"
        } else if d < 0.0 {
            "good"
        } else {
            "bad"
        };
        html! { span class={ "change " (class) } { (format!("{d:+.1}")) " pts vs previous" } }
    };
    let card = |label: &str, value: String, ch: Markup| {
        html! { div.card.stat { span.label { (label) } span.value { (value) } (ch) } }
    };
    html! {
        div.cards {
            (card("Calls", fmt_count(c.calls), change(Some(c.calls), Some(p.calls), false)))
            (card("Error rate", fmt_pct(c.error_rate), rate_change))
            (card("p50", fmt_opt_ns(c.p50_nanos), change(f(c.p50_nanos), f(p.p50_nanos), true)))
            (card("p95", fmt_opt_ns(c.p95_nanos), change(f(c.p95_nanos), f(p.p95_nanos), true)))
            (card("p99", fmt_opt_ns(c.p99_nanos), change(f(c.p99_nanos), f(p.p99_nanos), true)))
            (card("Active users", fmt_count(c.users.unwrap_or(0) as f64), change(c.users.map(|u| u as f64), p.users.map(|u| u as f64), false)))
            (card("Sessions", fmt_count(c.sessions.unwrap_or(0) as f64), change(c.sessions.map(|u| u as f64), p.sessions.map(|u| u as f64), false)))
        }
    }
}

fn charts(d: &Data, w: &Window, links: &Links<'_>) -> Markup {
    let bucket_ms = w.bucket_nanos / 1_000_000;
    let starts: Vec<u64> = d
        .series
        .iter()
        .map(|p| p.start_unix_nano / 1_000_000)
        .collect();
    let link =
        |start: u64| links.spans_between(&start.to_string(), &(start + bucket_ms).to_string(), &[]);
    let calls: Vec<f64> = d.series.iter().map(|p| p.calls).collect();
    let errors: Vec<f64> = d.series.iter().map(|p| p.errors).collect();
    let ms = |x: Option<u64>| x.map(|n| n as f64 / 1e6);
    let lat = [
        Line {
            name: "p50",
            class: "p50",
            values: d.series.iter().map(|p| ms(p.p50_nanos)).collect(),
        },
        Line {
            name: "p95",
            class: "p95",
            values: d.series.iter().map(|p| ms(p.p95_nanos)).collect(),
        },
        Line {
            name: "p99",
            class: "p99",
            values: d.series.iter().map(|p| ms(p.p99_nanos)).collect(),
        },
    ];
    let rate = [Line {
        name: "error rate",
        class: "errline",
        values: d
            .series
            .iter()
            .map(|p| (p.calls > 0.0).then(|| an::rate(p.errors, p.calls)))
            .collect(),
    }];
    let error_link = |start: u64| {
        links.spans_between(
            &start.to_string(),
            &(start + bucket_ms).to_string(),
            &[("status", "error")],
        )
    };
    html! {
        div.charts {
            (chart::volume("Request volume (calls per bucket)", &starts, bucket_ms, &calls, &errors, link))
            (chart::lines("Latency percentiles", Unit::Ms, &starts, bucket_ms, &lat, link))
            (chart::lines("Error rate", Unit::Percent, &starts, bucket_ms, &rate, error_link))
        }
    }
}

fn totals_cells(t: &Totals) -> Markup {
    html! {
        td.num { (fmt_count(t.calls)) }
        td.num { (fmt_pct(t.error_rate)) }
        td.num { (fmt_opt_ns(t.p50_nanos)) }
        td.num { (fmt_opt_ns(t.p95_nanos)) }
        td.num { (fmt_count(t.users.unwrap_or(0) as f64)) }
    }
}

fn none_row(cols: usize) -> Markup {
    html! { tr { td.muted colspan=(cols) { "Nothing in this range." } } }
}

fn tools_table(rows: &[an::ToolRow], links: &Links<'_>) -> Markup {
    html! {
        section.card {
            h2 { "Top tools" }
            table {
                thead { tr { th scope="col" { "Tool" } th.num { "Calls" } th.num { "Errors" } th.num { "p50" } th.num { "p95" } th.num { "Users" } } }
                tbody {
                    @if rows.is_empty() { (none_row(6)) }
                    @for r in rows {
                        tr { td { a href=(links.spans(&[("tool", &r.tool)])) { (r.tool) } } (totals_cells(&r.totals)) }
                    }
                }
            }
        }
    }
}

fn users_table(rows: &[an::UserRow], links: &Links<'_>) -> Markup {
    html! {
        section.card {
            h2 { "Most active users" }
            table {
                thead { tr { th scope="col" { "User" } th.num { "Calls" } th.num { "Error rate" } th.num { "Tools" } th { "Last call" } } }
                tbody {
                    @if rows.is_empty() { (none_row(5)) }
                    @for r in rows {
                        tr {
                            td { a href=(links.spans(&[("user", &r.user)])) { (r.user) } }
                            td.num { (fmt_count(r.calls)) } td.num { (fmt_pct(r.error_rate)) }
                            td.num { (r.tools) } td { (time(r.last_unix_nano / 1_000_000)) }
                        }
                    }
                }
            }
        }
    }
}

fn user_tools_table(rows: &[an::UserToolRow], links: &Links<'_>) -> Markup {
    html! {
        section.card {
            h2 { "Tool performance per user" }
            table {
                thead { tr { th scope="col" { "User" } th { "Tool" } th.num { "Calls" } th.num { "Error rate" } th.num { "p95" } } }
                tbody {
                    @if rows.is_empty() { (none_row(5)) }
                    @for r in rows {
                        tr {
                            td { (r.user) }
                            td { a href=(links.spans(&[("user", &r.user), ("tool", &r.tool)])) { (r.tool) } }
                            td.num { (fmt_count(r.calls)) } td.num { (fmt_pct(r.error_rate)) }
                            td.num { (fmt_opt_ns(r.p95_nanos)) }
                        }
                    }
                }
            }
        }
    }
}

fn errors_table(rows: &[an::ErrorRow], links: &Links<'_>) -> Markup {
    html! {
        section.card {
            h2 { "Errors by type" }
            table {
                thead { tr { th scope="col" { "Error type" } th.num { "Errors" } th.num { "Share of calls" } th { "Latest example" } } }
                tbody {
                    @if rows.is_empty() { (none_row(4)) }
                    @for r in rows {
                        tr {
                            // `error_type=_OTHER` matches what the `_OTHER` row counts: errors
                            // without an error type (and the literal type `_OTHER`).
                            @let filter = links.spans(&[("status", "error"), ("error_type", &r.error_type)]);
                            td { a href=(filter) { (r.error_type) } }
                            td.num { (fmt_count(r.errors)) } td.num { (fmt_pct(r.share_of_calls)) }
                            td { @if let Some(e) = r.example {
                                a href={ "/orgs/" (links.slug) "/traces/" (hex::encode(e.trace_id)) "#span-" (hex::encode(e.span_id)) } { "trace" }
                                " " (time(e.start_unix_nano / 1_000_000))
                            } }
                        }
                    }
                }
            }
        }
    }
}

fn clients_table(
    clients: &[an::ClientRow],
    protocols: &[an::ProtocolRow],
    links: &Links<'_>,
) -> Markup {
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "–".into());
    html! {
        section.card {
            h2 { "Clients and protocol versions" }
            table {
                thead { tr { th scope="col" { "Client" } th { "Version" } th.num { "Calls" } th.num { "Users" } } }
                tbody {
                    @if clients.is_empty() { (none_row(4)) }
                    @for r in clients {
                        tr { td { @if let Some(n) = &r.name { a href=(links.spans(&[("client", n)])) { (n) } } @else { "–" } }
                            td { (dash(&r.version)) } td.num { (fmt_count(r.calls)) } td.num { (r.users) } }
                    }
                }
            }
            table {
                thead { tr { th scope="col" { "MCP protocol version" } th.num { "Calls" } th { "Last call" } } }
                tbody {
                    @if protocols.is_empty() { (none_row(3)) }
                    @for r in protocols {
                        tr { td { (dash(&r.version)) } td.num { (fmt_count(r.calls)) } td { (time(r.last_unix_nano / 1_000_000)) } }
                    }
                }
            }
        }
    }
}
