//! One span (and resource) normalized from borrowed messages: the same checks, canonical fields,
//! sampling weight and limits as `normalize`, `canonical` and `sampling` apply to prost's structs.

use std::sync::Arc;

use super::super::canonical::{parse_span_name, PROMPTS_GET, TOOLS_CALL, TOOL_ERROR};
use super::super::limits::truncate_utf8;
use super::super::normalize::{
    check_ids, check_times, mark_truncated, small_enum, NormalizeLimits, Stamp, SPAN_KIND_MAX,
    STATUS_CODE_ERROR, STATUS_CODE_MAX,
};
use super::super::reject::Reject;
use super::super::sampling::{clamp_probability, probability_from_tracestate};
use super::attrs::{key, scalar_string, Attrs, Clamp};
use super::messages::{EventRaw, Kv, LinkRaw, SpanRaw, Val};
use mcp_obs_storage::model::{KeyValue, SpanEvent, SpanLink, SpanOrigin, SpanRecord, Text};

pub(super) fn convert_resource(
    mut raw: Vec<Kv<'_>>,
    limits: &NormalizeLimits,
) -> (Vec<KeyValue>, String, u64) {
    let mut clamp = Clamp::new(limits);
    let mut attrs = Attrs::new(&mut raw);
    attrs.remove_all(key::TRUNCATED);
    let mut service_name = attrs
        .peek_str(key::SERVICE_NAME)
        .unwrap_or_default()
        .to_owned();
    truncate_utf8(&mut service_name, limits.attribute_value_bytes_max);
    let (mut attributes, _dropped) = clamp.attributes(&raw);
    mark_truncated(&mut attributes, clamp.truncated);
    (attributes, service_name, clamp.truncated)
}

pub(super) fn normalize_span(
    span: &mut SpanRaw<'_>,
    origin: &Arc<SpanOrigin>,
    service_name: &str,
    stamp: &Stamp,
    limits: &NormalizeLimits,
) -> Result<(SpanRecord, u64), Reject> {
    let ids = check_ids(span.trace_id, span.span_id, span.parent_span_id)?;
    check_times(span.start_time_unix_nano, span.end_time_unix_nano, stamp)?;
    let mut clamp = Clamp::new(limits);

    let mut attrs = Attrs::new(&mut span.attributes);
    attrs.remove_all(key::TRUNCATED);
    let mcp = extract(
        &mut attrs,
        span.name,
        span.status_code == STATUS_CODE_ERROR,
        &span.events,
    );
    let sample_probability = take_probability(&mut attrs, span.trace_state);
    let mcp = clamp.fields(mcp);
    let (mut attributes, attrs_dropped) = clamp.attributes(attrs.kvs);

    let (events, events_dropped) = convert_events(&span.events, limits, &mut clamp);
    let (links, links_dropped) = convert_links(&span.links, limits, &mut clamp);
    let name = clamp.text(span.name);
    let status_message = clamp.str(span.status_message);
    let trace_state = clamp.str(span.trace_state);
    mark_truncated(&mut attributes, clamp.truncated);

    let record = SpanRecord {
        org_id: stamp.org_id,
        server_id: stamp.server_id,
        env: stamp.env,
        trace_id: ids.trace_id,
        span_id: ids.span_id,
        parent_span_id: ids.parent_span_id,
        start_unix_nano: span.start_time_unix_nano,
        end_unix_nano: span.end_time_unix_nano,
        name,
        kind: small_enum(span.kind, SPAN_KIND_MAX),
        status_code: small_enum(span.status_code, STATUS_CODE_MAX),
        status_message,
        flags: span.flags,
        trace_state,
        sample_probability,
        service_name: Text::from(service_name),
        mcp,
        attributes,
        events,
        links,
        origin: Arc::clone(origin),
        dropped_attributes_count: span.dropped_attributes_count.saturating_add(attrs_dropped),
        dropped_events_count: span.dropped_events_count.saturating_add(events_dropped),
        dropped_links_count: span.dropped_links_count.saturating_add(links_dropped),
    };
    Ok((record, clamp.truncated))
}

pub(super) fn over_limit(len: usize, max: usize) -> u32 {
    u32::try_from(len.saturating_sub(max)).unwrap_or(u32::MAX)
}

pub(super) fn convert_events(
    events: &[EventRaw<'_>],
    limits: &NormalizeLimits,
    clamp: &mut Clamp,
) -> (Vec<SpanEvent>, u32) {
    let dropped = over_limit(events.len(), limits.events_per_span_max);
    let kept = &events[..events.len().min(limits.events_per_span_max)];
    let events = kept
        .iter()
        .map(|e| SpanEvent {
            time_unix_nano: e.time_unix_nano,
            name: clamp.str(e.name),
            attributes: clamp.attributes(&e.attributes).0,
        })
        .collect();
    (events, dropped)
}

pub(super) fn convert_links(
    links: &[LinkRaw<'_>],
    limits: &NormalizeLimits,
    clamp: &mut Clamp,
) -> (Vec<SpanLink>, u32) {
    let mut dropped = over_limit(links.len(), limits.links_per_span_max);
    let kept = &links[..links.len().min(limits.links_per_span_max)];
    let mut out = Vec::with_capacity(kept.len());
    for link in kept {
        let (Ok(trace_id), Ok(span_id)) = (link.trace_id.try_into(), link.span_id.try_into())
        else {
            dropped = dropped.saturating_add(1);
            continue;
        };
        out.push(SpanLink {
            trace_id,
            span_id,
            trace_state: clamp.str(link.trace_state),
            attributes: clamp.attributes(&link.attributes).0,
        });
    }
    (out, dropped)
}

// --- canonical fields (see `canonical::extract`) ---

/// Canonical fields before the value limit applies: names borrowed, rendered scalars owned.
pub(super) struct Fields<'a> {
    pub(super) method: Option<&'a str>,
    pub(super) tool: Option<&'a str>,
    pub(super) prompt: Option<&'a str>,
    pub(super) resource_uri: Option<&'a str>,
    pub(super) request_id: Option<Text>,
    pub(super) session_id: Option<Text>,
    pub(super) user_id: Option<Text>,
    pub(super) client_name: Option<&'a str>,
    pub(super) client_version: Option<Text>,
    pub(super) error_type: Option<Text>,
    pub(super) transport: Option<&'a str>,
    pub(super) protocol_version: Option<Text>,
}

pub(super) fn extract<'a>(
    attrs: &mut Attrs<'_, 'a>,
    span_name: &'a str,
    status_is_error: bool,
    events: &[EventRaw<'a>],
) -> Fields<'a> {
    let traceloop_tool = attrs.peek_str(key::SPAN_KIND) == Some("tool");
    // Parsed only when read: a span with method and tool attributes (what SDKs send) never needs
    // its name, and parsing it was about 660 instructions per span.
    let from_name = std::cell::OnceCell::new();
    let name_parts = || *from_name.get_or_init(|| parse_span_name(span_name, traceloop_tool));

    let method = attrs
        .take_str(key::METHOD)
        .or_else(|| name_parts().method)
        .or_else(|| attrs.take_str(key::OPERATION_TYPE));

    let target_if = |wanted: &str| {
        // A name gives its target only when it names `wanted` and the method agrees with it.
        if method != Some(wanted) {
            return None;
        }
        let from_name = name_parts();
        (from_name.method == Some(wanted))
            .then_some(from_name.target)
            .flatten()
    };

    let tool = attrs
        .take_first_str(&[key::GEN_AI_TOOL, key::MCP_TOOL])
        .or_else(|| {
            traceloop_tool
                .then(|| attrs.take_str(key::ENTITY_NAME))
                .flatten()
        })
        .or_else(|| target_if(TOOLS_CALL));
    let prompt = attrs
        .take_first_str(&[key::GEN_AI_PROMPT, key::MCP_PROMPT])
        .or_else(|| target_if(PROMPTS_GET));

    let mut fields = Fields {
        tool,
        prompt,
        resource_uri: attrs.take_str(key::RESOURCE_URI),
        request_id: attrs.take_first_scalar(&[key::JSONRPC_ID, key::MCP_REQUEST_ID]),
        session_id: attrs.take_scalar(key::SESSION),
        user_id: attrs.take_first_scalar(&[key::ENDUSER, key::USER, key::MCP_USER]),
        client_name: attrs.take_str(key::CLIENT_NAME),
        client_version: attrs.take_scalar(key::CLIENT_VERSION),
        error_type: None,
        transport: attrs.take_first_str(&[key::NET_TRANSPORT, key::MCP_TRANSPORT]),
        protocol_version: attrs.take_scalar(key::PROTOCOL),
        method,
    };
    fields.error_type = error_type(attrs, status_is_error, events, fields.method);
    fields
}

pub(super) fn error_type(
    attrs: &mut Attrs<'_, '_>,
    status_is_error: bool,
    events: &[EventRaw<'_>],
    method: Option<&str>,
) -> Option<Text> {
    if let Some(explicit) = attrs.take_scalar(key::ERROR_TYPE) {
        return Some(explicit);
    }
    let is_error_flag = attrs.take_if(key::IS_ERROR, |v| match *v {
        Val::Bool(true) => Some(()),
        Val::Str(s) if s.eq_ignore_ascii_case("true") => Some(()),
        _ => None,
    });
    if is_error_flag.is_some() {
        return Some(Text::const_new(TOOL_ERROR));
    }
    if !status_is_error {
        return None;
    }
    let exception = events
        .iter()
        .filter(|e| e.name == "exception")
        .flat_map(|e| e.attributes.iter())
        .filter(|kv| kv.key == "exception.type")
        .find_map(|kv| kv.value.as_ref().and_then(scalar_string));
    if exception.is_some() {
        return exception;
    }
    (method == Some(TOOLS_CALL)).then(|| Text::const_new(TOOL_ERROR))
}

// --- sampling (see `sampling::take_probability`) ---

pub(super) fn take_probability(attrs: &mut Attrs<'_, '_>, trace_state: &str) -> f64 {
    let from_attribute = attrs.take_if(key::SAMPLE, |v| match *v {
        Val::Double(d) => clamp_probability(d),
        Val::Int(i) => clamp_probability(i as f64),
        Val::Str(s) => s.trim().parse::<f64>().ok().and_then(clamp_probability),
        _ => None,
    });
    from_attribute
        .or_else(|| probability_from_tracestate(trace_state))
        .unwrap_or(1.0)
}
