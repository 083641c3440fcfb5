//! Exact comparison of normalization results, doubles by bits, for the differential tests and the
//! `otlp_protobuf_fast` fuzz target.

use super::super::normalize::Normalized;
use mcp_obs_storage::model::{AttrValue, KeyValue, SpanRecord};

/// Exact equality, doubles compared by bits (NaN payloads and signed zeros included).
fn same_value(a: &AttrValue, b: &AttrValue) -> bool {
    match (a, b) {
        (AttrValue::Double(x), AttrValue::Double(y)) => x.to_bits() == y.to_bits(),
        (AttrValue::Array(x), AttrValue::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (AttrValue::KvList(x), AttrValue::KvList(y)) => same_kvs(x, y),
        (x, y) => x == y,
    }
}

fn same_kvs(a: &[KeyValue], b: &[KeyValue]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.key == y.key && same_value(&x.value, &y.value))
}

fn same_record(a: &SpanRecord, b: &SpanRecord) -> bool {
    let SpanRecord {
        org_id,
        server_id,
        env,
        trace_id,
        span_id,
        parent_span_id,
        start_unix_nano,
        end_unix_nano,
        name,
        kind,
        status_code,
        status_message,
        flags,
        trace_state,
        sample_probability,
        service_name,
        mcp,
        attributes,
        events,
        links,
        origin,
        dropped_attributes_count,
        dropped_events_count,
        dropped_links_count,
    } = a;
    *org_id == b.org_id
        && *server_id == b.server_id
        && *env == b.env
        && *trace_id == b.trace_id
        && *span_id == b.span_id
        && *parent_span_id == b.parent_span_id
        && *start_unix_nano == b.start_unix_nano
        && *end_unix_nano == b.end_unix_nano
        && *name == b.name
        && *kind == b.kind
        && *status_code == b.status_code
        && *status_message == b.status_message
        && *flags == b.flags
        && *trace_state == b.trace_state
        && sample_probability.to_bits() == b.sample_probability.to_bits()
        && *service_name == b.service_name
        && *mcp == b.mcp
        && same_kvs(attributes, &b.attributes)
        && events.len() == b.events.len()
        && events.iter().zip(&b.events).all(|(x, y)| {
            x.time_unix_nano == y.time_unix_nano
                && x.name == y.name
                && same_kvs(&x.attributes, &y.attributes)
        })
        && links.len() == b.links.len()
        && links.iter().zip(&b.links).all(|(x, y)| {
            x.trace_id == y.trace_id
                && x.span_id == y.span_id
                && x.trace_state == y.trace_state
                && same_kvs(&x.attributes, &y.attributes)
        })
        && same_kvs(&origin.resource, &b.origin.resource)
        && origin.scope_name == b.origin.scope_name
        && origin.scope_version == b.origin.scope_version
        && *dropped_attributes_count == b.dropped_attributes_count
        && *dropped_events_count == b.dropped_events_count
        && *dropped_links_count == b.dropped_links_count
}

/// Whether two normalization results are identical, doubles compared by bits (`Normalized`'s own
/// `PartialEq` says NaN != NaN). For the differential tests and fuzz target of this module.
pub fn same_normalized(a: &Normalized, b: &Normalized) -> bool {
    a.rejected == b.rejected
        && a.error_message == b.error_message
        && a.truncated_values == b.truncated_values
        && a.spans.len() == b.spans.len()
        && a.spans.iter().zip(&b.spans).all(|(x, y)| same_record(x, y))
}
