//! The trace view: a waterfall of every span of the trace (bars to scale on one time axis, nested
//! by parent), then each span's canonical fields, attributes, events and resource.

use maud::{html, Markup};
use mcp_obs_storage::meta::Role;
use mcp_obs_storage::model::SpanRecord;

use super::layout::{fmt_ms, time, Nav};
use super::{Ctx, PageResult};
use crate::reads;
use crate::span_json::{attrs_to_json, kind_name, status_name};

/// Width of a bar's drawing box; bars are positioned in these units and scaled by CSS.
const BAR_BOX: f64 = 1000.0;

pub async fn page(ctx: &Ctx<'_>, slug: &str, trace_hex: &str) -> PageResult {
    let org = ctx.org(slug, Role::Member)?;
    let id = reads::parse_trace_id(trace_hex)?;
    let spans = reads::trace_spans(ctx.state, &org, id).await?;
    let order = tree_order(&spans);
    let t0 = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let t1 = spans
        .iter()
        .map(|s| s.end_unix_nano)
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let total = (t1 - t0) as f64;
    let body = html! {
        div.page-head {
            h1 { "Trace " code.small { (hex::encode(id)) } }
            a.button href={ "/orgs/" (slug) "/spans?" (super::layout::query(&[("trace_id", &hex::encode(id))])) } { "As a span list" }
        }
        p.muted { (spans.len()) " spans, " (fmt_ms(total / 1e6)) ", started " (time(t0 / 1_000_000)) }
        section.card {
            h2 { "Waterfall" }
            table.waterfall {
                thead { tr { th scope="col" { "Span" } th.num { "Duration" } th.bar-col { "0 — " (fmt_ms(total / 1e6)) } } }
                tbody {
                    @for (i, depth) in &order {
                        @let s = &spans[*i];
                        @let x = (s.start_unix_nano - t0) as f64 / total * BAR_BOX;
                        @let w = (s.duration_nanos() as f64 / total * BAR_BOX).max(2.0);
                        tr {
                            td.name { span class={ "indent d" ((*depth).min(8)) } {} a href={ "#span-" (hex::encode(s.span_id)) } { (s.name) } }
                            td.num { (fmt_ms(s.duration_nanos() as f64 / 1e6)) }
                            td.bar-col {
                                svg.wbar viewBox={ "0 0 " (BAR_BOX) " 10" } preserveAspectRatio="none" role="img" aria-label={ (s.name) ": " (fmt_ms(s.duration_nanos() as f64 / 1e6)) } {
                                    rect class={ "wb" @if s.is_error() { " err" } } x=(format!("{x:.1}")) y="1" width=(format!("{w:.1}")) height="8" {
                                        title { (s.name) ", starts at +" (fmt_ms((s.start_unix_nano - t0) as f64 / 1e6)) ", " (fmt_ms(s.duration_nanos() as f64 / 1e6)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @for (i, _) in &order { (details(&spans[*i], t0)) }
    };
    Ok(ctx.page(Some(slug), Nav::Spans, "Trace", body))
}

/// Spans in tree order (parents before children, siblings by start) with their depth. Spans whose
/// parent is not in the trace (not received, or past retention) are shown as roots.
fn tree_order(spans: &[SpanRecord]) -> Vec<(usize, usize)> {
    let is_root = |s: &SpanRecord| {
        s.parent_span_id == [0; 8] || !spans.iter().any(|p| p.span_id == s.parent_span_id)
    };
    let mut out = Vec::with_capacity(spans.len());
    // Spans arrive sorted by start time, so pushing children in reverse onto a stack visits
    // siblings in start order.
    let mut stack: Vec<(usize, usize)> = (0..spans.len())
        .filter(|&i| is_root(&spans[i]))
        .rev()
        .map(|i| (i, 0))
        .collect();
    let mut seen = vec![false; spans.len()];
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        out.push((i, depth));
        for c in (0..spans.len()).rev() {
            if !seen[c] && spans[c].parent_span_id == spans[i].span_id && c != i {
                stack.push((c, depth + 1));
            }
        }
    }
    // A cycle of parents (malformed telemetry) leaves spans unvisited; show them anyway.
    out.extend((0..spans.len()).filter(|&i| !seen[i]).map(|i| (i, 0)));
    out
}

fn kv_table(v: &serde_json::Value) -> Markup {
    let Some(map) = v.as_object() else {
        return html! {};
    };
    html! {
        @if map.is_empty() { p.muted { "none" } } @else {
            table.kv { tbody { @for (k, v) in map {
                tr { th scope="row" { (k) } td { code { (match v { serde_json::Value::String(s) => s.clone(), other => other.to_string() }) } } }
            } } }
        }
    }
}

fn details(s: &SpanRecord, t0: u64) -> Markup {
    let id = hex::encode(s.span_id);
    html! {
        section.card.span-detail id={ "span-" (id) } {
            h2 { (s.name) " " @if s.is_error() { span.badge.revoked { "error" } } }
            dl.fields {
                dt { "Span id" } dd { code { (id) } }
                dt { "Parent" } dd { @if s.parent_span_id == [0; 8] { "root" } @else { code { (hex::encode(s.parent_span_id)) } } }
                dt { "Kind" } dd { (kind_name(s.kind)) }
                dt { "Status" } dd { (status_name(s.status_code)) @if !s.status_message.is_empty() { ": " (s.status_message) } }
                dt { "Start" } dd { (time(s.start_unix_nano / 1_000_000)) " (+" (fmt_ms((s.start_unix_nano - t0) as f64 / 1e6)) ")" }
                dt { "Duration" } dd { (fmt_ms(s.duration_nanos() as f64 / 1e6)) }
                dt { "Service" } dd { (s.service_name) }
                @for (k, v) in s.mcp.named() { @if let Some(v) = v { dt { (k) } dd { (v) } } }
            }
            h3 { "Attributes" } (kv_table(&attrs_to_json(&s.attributes)))
            h3 { "Events" }
            @if s.events.is_empty() { p.muted { "none" } }
            @for e in &s.events {
                h4 { (e.name) " " span.muted.small { "+" (fmt_ms(e.time_unix_nano.saturating_sub(t0) as f64 / 1e6)) } }
                (kv_table(&attrs_to_json(&e.attributes)))
            }
            h3 { "Resource" } (kv_table(&attrs_to_json(&s.origin.resource)))
            p.muted.small { "Scope " (s.origin.scope_name) " " (s.origin.scope_version) }
        }
    }
}
