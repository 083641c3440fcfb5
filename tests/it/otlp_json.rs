//! Writes an `ExportTraceServiceRequest` as OTLP/JSON the way the JS exporter does (hex ids,
//! int64 as strings, numeric enums), to test the JSON ingest path with the same spans.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use serde_json::{json, Value};

fn any(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => json!({ "stringValue": s }),
        Some(any_value::Value::BoolValue(b)) => json!({ "boolValue": b }),
        Some(any_value::Value::IntValue(i)) => json!({ "intValue": i.to_string() }),
        Some(any_value::Value::DoubleValue(d)) => json!({ "doubleValue": d }),
        _ => json!({}),
    }
}

fn kvs(list: &[KeyValue]) -> Value {
    list.iter()
        .map(
            |kv| json!({ "key": kv.key, "value": kv.value.as_ref().map(any).unwrap_or(json!({})) }),
        )
        .collect()
}

pub fn to_json(req: &ExportTraceServiceRequest) -> Vec<u8> {
    let rs: Vec<Value> = req
        .resource_spans
        .iter()
        .map(|rs| {
            json!({
                "resource": { "attributes": kvs(&rs.resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default()) },
                "scopeSpans": rs.scope_spans.iter().map(|ss| json!({
                    "scope": { "name": ss.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default() },
                    "spans": ss.spans.iter().map(|s| json!({
                        "traceId": hex::encode(&s.trace_id),
                        "spanId": hex::encode(&s.span_id),
                        "parentSpanId": hex::encode(&s.parent_span_id),
                        "name": s.name,
                        "kind": s.kind,
                        "flags": s.flags,
                        "startTimeUnixNano": s.start_time_unix_nano.to_string(),
                        // A number here on purpose: the spec allows both spellings.
                        "endTimeUnixNano": s.end_time_unix_nano,
                        "attributes": kvs(&s.attributes),
                        "droppedAttributesCount": 0,
                        "events": [],
                        "links": [],
                        "status": { "code": s.status.as_ref().map(|st| st.code).unwrap_or(0), "message": "" },
                        "someFutureField": { "ignored": true },
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "resourceSpans": rs })).unwrap()
}
