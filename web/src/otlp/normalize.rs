//! OTLP request → canonical [`SpanRecord`]s: per-span validation, limits, canonical MCP fields and
//! sampling weight. Pure: no I/O and no clock (the accepted time window comes in through [`Stamp`]).
//!
//! Rules where the design left a choice:
//! - Organization, server and env come only from [`Stamp`]; nothing in the payload can redirect spans.
//! - One rejection reason per span, the first failing check in [`Reject`] order.
//! - The canonical attribute that filled a field is removed from `attributes`; conditions
//!   (`traceloop.span.kind`) and losing spellings stay.
//! - Strings over the value limit are cut at a UTF-8 boundary and counted; the span then carries
//!   `mcpobs.truncated` = number of values cut on it (an incoming `mcpobs.truncated` is dropped, the
//!   key is ours). Cuts in the resource are marked on the resource the same way and counted once
//!   per resource in [`Normalized::truncated_values`].
//! - Links with malformed ids are dropped and counted in `dropped_links_count`.

use std::sync::Arc;

use super::attrs::Attrs;
use super::canonical;
use super::limits::{truncate_utf8, Clamp};
use super::reject::{Reject, Tally};
use super::sampling;
use mcp_obs_storage::model::{
    AttrValue, Env, KeyValue, OrgId, ServerId, SpanEvent, SpanLink, SpanOrigin, SpanRecord, Text,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, Span};

/// Attribute we add to a span (or resource) whose values were truncated: the number cut.
pub const TRUNCATED_KEY: &str = "mcpobs.truncated";
pub(super) const STATUS_CODE_ERROR: i32 = 2;
pub(super) const SPAN_KIND_MAX: i32 = 5;
pub(super) const STATUS_CODE_MAX: i32 = 2;

/// Where spans go and which start times are acceptable, decided by the caller (API key, clock,
/// retention settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub org_id: OrgId,
    pub server_id: ServerId,
    pub env: Env,
    /// Spans starting before this are rejected ("outside retention").
    pub oldest_unix_nano: u64,
    /// Spans starting after this are rejected (sender clock skew).
    pub newest_unix_nano: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormalizeLimits {
    pub spans_per_request_max: usize,
    /// Also caps event and link attributes, resource attributes, and elements of array/kvlist values.
    pub attributes_per_span_max: usize,
    /// Also caps span names, status messages, attribute keys, canonical values and trace state.
    pub attribute_value_bytes_max: usize,
    pub events_per_span_max: usize,
    pub links_per_span_max: usize,
}

impl Default for NormalizeLimits {
    fn default() -> Self {
        NormalizeLimits {
            spans_per_request_max: 10_000,
            attributes_per_span_max: 128,
            attribute_value_bytes_max: 4096,
            events_per_span_max: 128,
            links_per_span_max: 128,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    pub spans: Vec<SpanRecord>,
    pub rejected: u64,
    /// Summary of the rejection reasons, for `partial_success.error_message`; empty when none.
    pub error_message: String,
    /// Values shortened by the limits (spans plus resources).
    pub truncated_values: u64,
}

/// Number of spans in a request, for the HTTP layer's `spans_per_request_max` check.
pub fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .fold(0usize, |n, ss| n.saturating_add(ss.spans.len()))
}

/// Normalizes every span of a request. `spans.len() + rejected` always equals [`span_count`].
pub fn normalize(
    req: ExportTraceServiceRequest,
    stamp: &Stamp,
    limits: &NormalizeLimits,
) -> Normalized {
    let mut out = Normalized {
        spans: Vec::with_capacity(span_count(&req).min(limits.spans_per_request_max)),
        rejected: 0,
        error_message: String::new(),
        truncated_values: 0,
    };
    let mut tally = Tally::default();
    let mut seen = 0usize;
    for ResourceSpans {
        resource,
        scope_spans,
        ..
    } in req.resource_spans
    {
        let (resource, service_name, resource_truncated) = convert_resource(resource, limits);
        out.truncated_values += resource_truncated;
        for ss in scope_spans {
            let mut scope_clamp = Clamp::new(
                limits.attribute_value_bytes_max,
                limits.attributes_per_span_max,
            );
            let scope = ss.scope.unwrap_or_default();
            let origin = Arc::new(SpanOrigin {
                resource: resource.clone(),
                scope_name: scope_clamp.string(scope.name),
                scope_version: scope_clamp.string(scope.version),
            });
            out.truncated_values += scope_clamp.truncated;
            for span in ss.spans {
                seen = seen.saturating_add(1);
                if seen > limits.spans_per_request_max {
                    tally.add(Reject::TooManySpans);
                    continue;
                }
                match normalize_span(span, &origin, &service_name, stamp, limits) {
                    Ok((record, truncated)) => {
                        out.truncated_values += truncated;
                        out.spans.push(record);
                    }
                    Err(reason) => tally.add(reason),
                }
            }
        }
    }
    out.rejected = tally.total();
    out.error_message = tally.summary();
    out
}

/// The resource's attributes (limited and marked), its `service.name`, and how many values were cut.
fn convert_resource(
    resource: Option<Resource>,
    limits: &NormalizeLimits,
) -> (Vec<KeyValue>, String, u64) {
    let Some(resource) = resource else {
        return (Vec::new(), String::new(), 0);
    };
    let mut clamp = Clamp::new(
        limits.attribute_value_bytes_max,
        limits.attributes_per_span_max,
    );
    let mut raw = Attrs::new(resource.attributes);
    raw.remove_all(TRUNCATED_KEY);
    // Read before the limits apply: they may cut the key itself. Its own cut is not counted again,
    // the attribute it copies already was.
    let mut service_name = raw.peek_str("service.name").unwrap_or_default().to_owned();
    truncate_utf8(&mut service_name, limits.attribute_value_bytes_max);
    // Resource attributes over the count limit are dropped: the model keeps no count for them.
    let (mut attributes, _dropped) = clamp.attributes(raw.into_inner());
    mark_truncated(&mut attributes, clamp.truncated);
    (attributes, service_name, clamp.truncated)
}

pub(super) fn mark_truncated(attributes: &mut Vec<KeyValue>, truncated: u64) {
    if truncated > 0 {
        attributes.push(KeyValue {
            key: Text::const_new(TRUNCATED_KEY),
            value: AttrValue::Int(i64::try_from(truncated).unwrap_or(i64::MAX)),
        });
    }
}

/// Validated ids of a span.
pub(super) struct Ids {
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
    pub(super) parent_span_id: [u8; 8],
}

/// The id rules of every decoder: trace id 16 non-zero bytes, span id 8 non-zero bytes, parent
/// empty or 8 bytes.
pub(super) fn check_ids(
    trace_id: &[u8],
    span_id: &[u8],
    parent_span_id: &[u8],
) -> Result<Ids, Reject> {
    let trace_id: [u8; 16] = trace_id.try_into().map_err(|_| Reject::TraceIdLength)?;
    if trace_id == [0; 16] {
        return Err(Reject::TraceIdZero);
    }
    let span_id: [u8; 8] = span_id.try_into().map_err(|_| Reject::SpanIdLength)?;
    if span_id == [0; 8] {
        return Err(Reject::SpanIdZero);
    }
    let parent_span_id = match parent_span_id {
        [] => [0; 8],
        bytes => bytes.try_into().map_err(|_| Reject::ParentSpanIdLength)?,
    };
    Ok(Ids {
        trace_id,
        span_id,
        parent_span_id,
    })
}

/// The time rules of every decoder, in the order their rejections are reported.
pub(super) fn check_times(start: u64, end: u64, stamp: &Stamp) -> Result<(), Reject> {
    if start == 0 {
        Err(Reject::StartTimeZero)
    } else if end < start {
        Err(Reject::EndBeforeStart)
    } else if start < stamp.oldest_unix_nano {
        Err(Reject::OutsideRetention)
    } else if start > stamp.newest_unix_nano {
        Err(Reject::InFuture)
    } else {
        Ok(())
    }
}

/// One span: validate, lift canonical fields, apply limits. Returns the record and how many values
/// were truncated on it.
fn normalize_span(
    span: Span,
    origin: &Arc<SpanOrigin>,
    service_name: &str,
    stamp: &Stamp,
    limits: &NormalizeLimits,
) -> Result<(SpanRecord, u64), Reject> {
    let ids = check_ids(&span.trace_id, &span.span_id, &span.parent_span_id)?;
    check_times(span.start_time_unix_nano, span.end_time_unix_nano, stamp)?;
    let Span {
        trace_state,
        flags,
        name,
        kind,
        start_time_unix_nano,
        end_time_unix_nano,
        attributes,
        dropped_attributes_count,
        events,
        dropped_events_count,
        links,
        dropped_links_count,
        status,
        ..
    } = span;
    let status = status.unwrap_or_default();
    let mut clamp = Clamp::new(
        limits.attribute_value_bytes_max,
        limits.attributes_per_span_max,
    );

    let mut raw = Attrs::new(attributes);
    raw.remove_all(TRUNCATED_KEY);
    let mcp = canonical::extract(&mut raw, &name, status.code == STATUS_CODE_ERROR, &events);
    let sample_probability = sampling::take_probability(&mut raw, &trace_state);
    let mcp = clamp_fields(mcp, &mut clamp);
    let (mut attributes, attrs_dropped) = clamp.attributes(raw.into_inner());

    let (events, events_dropped) = convert_events(events, limits, &mut clamp);
    let (links, links_dropped) = convert_links(links, limits, &mut clamp);
    let record_name = Text::from(clamp.string(name));
    let status_message = clamp.string(status.message);
    let trace_state = clamp.string(trace_state);
    mark_truncated(&mut attributes, clamp.truncated);

    let record = SpanRecord {
        org_id: stamp.org_id,
        server_id: stamp.server_id,
        env: stamp.env,
        trace_id: ids.trace_id,
        span_id: ids.span_id,
        parent_span_id: ids.parent_span_id,
        start_unix_nano: start_time_unix_nano,
        end_unix_nano: end_time_unix_nano,
        name: record_name,
        kind: small_enum(kind, SPAN_KIND_MAX),
        status_code: small_enum(status.code, STATUS_CODE_MAX),
        status_message,
        flags,
        trace_state,
        sample_probability,
        service_name: Text::from(service_name),
        mcp,
        attributes,
        events,
        links,
        origin: Arc::clone(origin),
        dropped_attributes_count: dropped_attributes_count.saturating_add(attrs_dropped),
        dropped_events_count: dropped_events_count.saturating_add(events_dropped),
        dropped_links_count: dropped_links_count.saturating_add(links_dropped),
    };
    Ok((record, clamp.truncated))
}

/// Known enum numbers as stored; unknown ones (proto3 enums are open) become 0, "unspecified".
pub(super) fn small_enum(value: i32, max: i32) -> u8 {
    if (0..=max).contains(&value) {
        u8::try_from(value).unwrap_or(0)
    } else {
        0
    }
}

fn clamp_fields(
    mut f: mcp_obs_storage::model::McpFields,
    clamp: &mut Clamp,
) -> mcp_obs_storage::model::McpFields {
    for field in [
        &mut f.method,
        &mut f.tool,
        &mut f.prompt,
        &mut f.resource_uri,
        &mut f.request_id,
        &mut f.session_id,
        &mut f.user_id,
        &mut f.client_name,
        &mut f.client_version,
        &mut f.error_type,
        &mut f.transport,
        &mut f.protocol_version,
    ] {
        *field = clamp.opt_text(field.take());
    }
    f
}

fn cap_count<T>(mut items: Vec<T>, max: usize) -> (Vec<T>, u32) {
    let dropped = items.len().saturating_sub(max);
    items.truncate(max);
    (items, u32::try_from(dropped).unwrap_or(u32::MAX))
}

/// Events beyond the limit are dropped and counted. Event attributes get the span limits; the
/// storage model has no per-event dropped count, so attributes cut for the count limit are lost.
fn convert_events(
    events: Vec<span::Event>,
    limits: &NormalizeLimits,
    clamp: &mut Clamp,
) -> (Vec<SpanEvent>, u32) {
    let (events, dropped) = cap_count(events, limits.events_per_span_max);
    let events = events
        .into_iter()
        .map(|e| SpanEvent {
            time_unix_nano: e.time_unix_nano,
            name: clamp.string(e.name),
            attributes: clamp.attributes(e.attributes).0,
        })
        .collect();
    (events, dropped)
}

/// Links beyond the limit, or with ids of the wrong length, are dropped and counted.
fn convert_links(
    links: Vec<span::Link>,
    limits: &NormalizeLimits,
    clamp: &mut Clamp,
) -> (Vec<SpanLink>, u32) {
    let (links, mut dropped) = cap_count(links, limits.links_per_span_max);
    let mut out = Vec::with_capacity(links.len());
    for link in links {
        let ids: Option<([u8; 16], [u8; 8])> = link
            .trace_id
            .as_slice()
            .try_into()
            .ok()
            .zip(link.span_id.as_slice().try_into().ok());
        let Some((trace_id, span_id)) = ids else {
            dropped = dropped.saturating_add(1);
            continue;
        };
        out.push(SpanLink {
            trace_id,
            span_id,
            trace_state: clamp.string(link.trace_state),
            attributes: clamp.attributes(link.attributes).0,
        });
    }
    (out, dropped)
}

#[cfg(test)]
mod tests;
