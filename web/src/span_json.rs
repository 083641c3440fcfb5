//! The JSON form of a stored span, shared by the trace and span-list endpoints (and later export).

use mcp_obs_storage::model::{AttrValue, KeyValue, SpanRecord};
use serde_json::{json, Map, Value};

/// Timestamps are strings of nanoseconds (JSON numbers lose precision past 2^53) plus a
/// millisecond number for convenience.
pub fn span_to_json(s: &SpanRecord) -> Value {
    let parent = if s.parent_span_id == [0u8; 8] {
        Value::Null
    } else {
        hex::encode(s.parent_span_id).into()
    };
    let m = &s.mcp;
    json!({
        "trace_id": hex::encode(s.trace_id),
        "span_id": hex::encode(s.span_id),
        "parent_span_id": parent,
        "server_id": s.server_id,
        "env": s.env.as_str(),
        "name": s.name,
        "kind": kind_name(s.kind),
        "start_time_unix_nano": s.start_unix_nano.to_string(),
        "end_time_unix_nano": s.end_unix_nano.to_string(),
        "start_time_ms": s.start_unix_nano / 1_000_000,
        "duration_ms": s.duration_nanos() as f64 / 1e6,
        "status": { "code": status_name(s.status_code), "message": s.status_message },
        "is_error": s.is_error(),
        "mcp": {
            "method": m.method, "tool": m.tool, "prompt": m.prompt, "resource_uri": m.resource_uri,
            "request_id": m.request_id, "session_id": m.session_id, "user_id": m.user_id,
            "client_name": m.client_name, "client_version": m.client_version,
            "error_type": m.error_type, "transport": m.transport,
            "protocol_version": m.protocol_version,
        },
        "service_name": s.service_name,
        "sample_probability": s.sample_probability,
        "flags": s.flags,
        "trace_state": s.trace_state,
        "attributes": attrs_to_json(&s.attributes),
        "resource": attrs_to_json(&s.origin.resource),
        "scope": { "name": s.origin.scope_name, "version": s.origin.scope_version },
        "events": s.events.iter().map(|e| json!({
            "time_unix_nano": e.time_unix_nano.to_string(),
            "name": e.name,
            "attributes": attrs_to_json(&e.attributes),
        })).collect::<Vec<_>>(),
        "links": s.links.iter().map(|l| json!({
            "trace_id": hex::encode(l.trace_id),
            "span_id": hex::encode(l.span_id),
            "trace_state": l.trace_state,
            "attributes": attrs_to_json(&l.attributes),
        })).collect::<Vec<_>>(),
        "dropped_attributes_count": s.dropped_attributes_count,
        "dropped_events_count": s.dropped_events_count,
        "dropped_links_count": s.dropped_links_count,
    })
}

/// Attributes as a JSON object (OTel keys are unique per list; a repeated key keeps the last).
pub fn attrs_to_json(attrs: &[KeyValue]) -> Value {
    let mut map = Map::with_capacity(attrs.len());
    for kv in attrs {
        map.insert(kv.key.to_string(), value_to_json(&kv.value));
    }
    Value::Object(map)
}

fn value_to_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => Value::String(s.to_string()),
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::Int(i) => Value::from(*i),
        AttrValue::Double(d) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(d.to_string())),
        AttrValue::Bytes(b) => json!({ "bytes_hex": hex::encode(b) }),
        AttrValue::Array(items) => Value::Array(items.iter().map(value_to_json).collect()),
        AttrValue::KvList(kvs) => attrs_to_json(kvs),
    }
}

pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

pub fn status_name(code: u8) -> &'static str {
    match code {
        1 => "ok",
        2 => "error",
        _ => "unset",
    }
}
