//! The span list: the filters as a GET form kept in the URL (parsed by the span API's own
//! `parse_filter`), cursor pagination, and export links to the API's CSV and JSON Lines export
//! (with the same filters and text search).

use maud::{html, Markup};
use mcp_obs_storage::meta::Role;
use mcp_obs_storage::model::SpanRecord;

use super::layout::{fmt_ms, query, time, Nav};
use super::{Ctx, PageResult};
use crate::error::ApiError;
use crate::reads;

/// Spans per page of the dashboard's list.
const PAGE_SPANS: usize = 50;

/// The form's fields, as the URL had them (empty ones dropped so the strict parser accepts them).
fn cleaned(q: &str) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q)
        .map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    Ok(pairs
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect())
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> &'a str {
    pairs
        .iter()
        .find(|(n, _)| n == k)
        .map_or("", |(_, v)| v.as_str())
}

fn encode(pairs: &[(String, String)], skip: &[&str]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    query(&kept)
}

pub async fn page(ctx: &Ctx<'_>, slug: &str) -> PageResult {
    let org = ctx.org(slug, Role::Member)?;
    let pairs = cleaned(&ctx.query)?;
    let mut params = reads::parse_filter(&encode(&pairs, &[]))?;
    params.limit = PAGE_SPANS;
    let page = reads::list_page(ctx.state, &org, params).await?;
    let servers = ctx.state.meta.servers(org.id)?;
    let server_name = |id: u32| {
        servers
            .iter()
            .find(|s| s.id == id)
            .map_or_else(|| id.to_string(), |s| s.name.clone())
    };
    let filters = encode(&pairs, &["cursor", "limit"]);
    let path = format!("/orgs/{slug}/spans");
    let export = format!("/api/v1/orgs/{slug}/spans/export?{filters}");
    let body = html! {
        div.page-head {
            h1 { "Spans" }
            div.actions {
                button.live type="button" data-live-toggle hidden { "Pause live refresh" }
                // Export takes the same filters and search: it is this list, paged to its end.
                a.button href={ (export) "&format=csv" } download { "Export CSV" }
                a.button href={ (export) "&format=jsonl" } download { "Export JSON Lines" }
            }
        }
        (filter_form(&path, &pairs, &servers))
        div.card data-live {
            table.spans {
                thead { tr {
                    th scope="col" { "Start" } th { "Server" } th { "Method" } th { "Tool" }
                    th { "User" } th.num { "Duration" } th { "Status" } th { span.visually-hidden { "Trace" } }
                } }
                tbody {
                    @if page.spans.is_empty() {
                        tr { td.muted colspan="8" { "No spans match these filters." } }
                    }
                    @for s in &page.spans { (row(slug, s, &server_name(s.server_id))) }
                }
            }
            nav.pager aria-label="Pages" {
                @if !get(&pairs, "cursor").is_empty() { a href={ (path) "?" (filters) } { "« Newest" } }
                @if let Some(c) = &page.next_cursor {
                    a rel="next" href={ (path) "?" (filters) (if filters.is_empty() { "" } else { "&" }) (query(&[("cursor", c)])) } { "Older »" }
                }
            }
        }
    };
    Ok(ctx.page(Some(slug), Nav::Spans, "Spans", body))
}

fn row(slug: &str, s: &SpanRecord, server: &str) -> Markup {
    let trace = hex::encode(s.trace_id);
    let span = hex::encode(s.span_id);
    let dash = |v: &Option<mcp_obs_storage::model::Text>| v.as_deref().unwrap_or("–").to_owned();
    html! {
        tr {
            td { (time(s.start_unix_nano / 1_000_000)) }
            td { (server) " " span.muted.small { (s.env.as_str()) } }
            td { (dash(&s.mcp.method)) }
            td { (dash(&s.mcp.tool)) }
            td { (dash(&s.mcp.user_id)) }
            td.num { (fmt_ms(s.duration_nanos() as f64 / 1e6)) }
            td { @if s.is_error() {
                span.badge.revoked { "error" } @if let Some(t) = &s.mcp.error_type { " " span.small { (t) } }
            } @else { span.badge.active { "ok" } } }
            td { a href={ "/orgs/" (slug) "/traces/" (trace) "#span-" (span) } { "Trace" } }
        }
    }
}

fn filter_form(
    path: &str,
    pairs: &[(String, String)],
    servers: &[mcp_obs_storage::meta::Server],
) -> Markup {
    let text = |name: &'static str, label: &'static str| {
        html! {
            label { (label) input name=(name) value=(get(pairs, name)); }
        }
    };
    let server = get(pairs, "server");
    let status = get(pairs, "status");
    let env = get(pairs, "env");
    html! {
        form.card.filters method="get" action=(path) aria-label="Filters" {
            label { "Server"
                select name="server" {
                    option value="" { "All servers" }
                    @for s in servers {
                        @let id = s.id.to_string();
                        option value=(id) selected[server == id] { (s.name) }
                    }
                }
            }
            label { "Env"
                select name="env" {
                    option value="" { "any" }
                    option value="live" selected[env == "live"] { "live" }
                    option value="test" selected[env == "test"] { "test" }
                }
            }
            label.wide { "Search"
                input type="search" name="q" value=(get(pairs, "q"))
                    placeholder="tool, user, session, resource, error message…";
            }
            (text("tool", "Tool"))
            (text("user", "User"))
            (text("method", "Method"))
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    option value="ok" selected[status == "ok"] { "ok" }
                    option value="error" selected[status == "error"] { "error" }
                }
            }
            (text("session", "Session"))
            (text("error_type", "Error type"))
            (text("client", "Client"))
            label { "Min duration (ms)" input type="number" min="0" step="any" name="min_duration_ms" value=(get(pairs, "min_duration_ms")); }
            @let ms = |k: &str| get(pairs, k).parse::<u64>().ok();
            @if ms("from").is_some() || ms("to").is_some() {
                p.window.muted {
                    "Started "
                    @if let Some(f) = ms("from") { "from " (time(f)) " " }
                    @if let Some(t) = ms("to") { "before " (time(t)) }
                }
            }
            @for k in ["from", "to", "trace_id"] {
                @if !get(pairs, k).is_empty() { input type="hidden" name=(k) value=(get(pairs, k)); }
            }
            div.buttons {
                button.primary type="submit" { "Filter" }
                a.button href=(path) { "Clear" }
            }
        }
    }
}
