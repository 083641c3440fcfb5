//! Tests of the OTLP/JSON decoder: every captured fixture, and the proto3 JSON corner cases.

use super::decode_json;
use crate::otlp::decode::{decode_protobuf, DecodeError};
use crate::otlp::json_scalar::decode_base64;
use crate::otlp::test_support::{fixture_body, fixture_decoded_json, pb_fixture_names};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Value as Json};

fn spans(req: &ExportTraceServiceRequest) -> Vec<&Span> {
    req.resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .flat_map(|ss| ss.spans.iter())
        .collect()
}

fn names(req: &ExportTraceServiceRequest) -> Vec<&str> {
    spans(req).into_iter().map(|s| s.name.as_str()).collect()
}

/// Rewrites the base64 ids of proto3 canonical JSON (`MessageToJson`) into OTLP/JSON hex ids.
fn base64_ids_to_hex(v: &mut Json) {
    match v {
        Json::Object(map) => {
            for (key, value) in map.iter_mut() {
                let is_id = matches!(key.as_str(), "traceId" | "spanId" | "parentSpanId");
                match value {
                    Json::String(s) if is_id => {
                        *s = hex::encode(decode_base64(s).expect("base64 id"));
                    }
                    other => base64_ids_to_hex(other),
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(base64_ids_to_hex),
        _ => {}
    }
}

#[test]
fn every_protobuf_fixture_decodes() {
    let names = pb_fixture_names();
    assert_eq!(names.len(), 10, "fixture set changed: {names:?}");
    for name in names {
        let req = decode_protobuf(&fixture_body(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!spans(&req).is_empty(), "{name}: no spans");
    }
}

/// The `.decoded.json` of each protobuf fixture is proto3 JSON of the same message (base64 ids, enum
/// names, int64 strings). With the ids turned into hex it is valid OTLP/JSON, and must decode to
/// exactly what prost decodes from the protobuf body.
#[test]
fn decoded_json_of_every_fixture_matches_protobuf() {
    for name in pb_fixture_names() {
        let from_pb = decode_protobuf(&fixture_body(&name)).expect("pb");
        let mut doc = fixture_decoded_json(&name);
        base64_ids_to_hex(&mut doc);
        let body = serde_json::to_vec(&doc).expect("serialize");
        let from_json = decode_json(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(from_json, from_pb, "{name}");
    }
}

#[test]
fn traceloop_json_and_protobuf_runs_agree() {
    let json_req = decode_json(&fixture_body("ts-traceloop-json-001")).expect("json fixture");
    let pb_req = decode_protobuf(&fixture_body("ts-traceloop-001")).expect("pb fixture");
    let expected = [
        "initialize.mcp",
        "tools/list.mcp",
        "get_weather.tool",
        "fail_tool.tool",
        "no_such_tool.tool",
        "resources/read.mcp",
        "prompts/get.mcp",
        "resources/read.mcp",
        "mcp.client.session",
    ];
    assert_eq!(names(&json_req), expected);
    assert_eq!(names(&pb_req), expected);
    // Spot checks of the JSON conversion against the capture.
    let first = spans(&json_req)[0];
    assert_eq!(
        hex::encode(&first.trace_id),
        "fd3bdbb129f711c0785bb159369f0ace"
    );
    assert_eq!(hex::encode(&first.parent_span_id), "1177d3e334c61f1a");
    assert_eq!(first.kind, 3);
    assert_eq!(first.flags, 257);
    assert_eq!(first.start_time_unix_nano, 1_795_571_430_962_000_000);
    assert_eq!(first.status.as_ref().map(|s| s.code), Some(1));
    let session = spans(&json_req)[8];
    assert!(session.parent_span_id.is_empty(), "absent parent is empty");
}

fn one_span(span: Json) -> Span {
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]});
    let req = decode_json(body.to_string().as_bytes()).expect("decode");
    spans(&req)[0].clone()
}

fn decode_err(body: &str) -> DecodeError {
    decode_json(body.as_bytes()).expect_err("must fail")
}

#[test]
fn snake_case_names_strings_and_enum_names() {
    let span = one_span(json!({
        "trace_id": "0AF7651916CD43DD8448EB211C80319C",
        "span_id": "b7ad6b7169203331",
        "parent_span_id": "",
        "start_time_unix_nano": 1_000_u64,
        "endTimeUnixNano": "2000",
        "kind": "SPAN_KIND_SERVER",
        "flags": "256",
        "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
        "dropped_attributes_count": 2,
        "somethingNew": {"nested": [1, 2, 3]},
    }));
    assert_eq!(
        hex::encode(&span.trace_id),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(span.span_id.len(), 8);
    assert!(span.parent_span_id.is_empty());
    assert_eq!(
        (span.start_time_unix_nano, span.end_time_unix_nano),
        (1000, 2000)
    );
    assert_eq!(span.kind, 2);
    assert_eq!(span.flags, 256);
    assert_eq!(
        span.status.map(|s| (s.code, s.message)),
        Some((2, "boom".into()))
    );
    assert_eq!(span.dropped_attributes_count, 2);
}

#[test]
fn enums_as_numbers_names_or_quoted_numbers() {
    assert_eq!(one_span(json!({"kind": 3})).kind, 3);
    assert_eq!(one_span(json!({"kind": "SPAN_KIND_CLIENT"})).kind, 3);
    assert_eq!(one_span(json!({"kind": "3"})).kind, 3);
    assert_eq!(
        one_span(json!({"kind": 17})).kind,
        17,
        "open enum: unknown numbers kept"
    );
    let status = one_span(json!({"status": {"code": "STATUS_CODE_OK"}})).status;
    assert_eq!(status.map(|s| s.code), Some(1));
}

#[test]
fn nulls_are_defaults() {
    let span = one_span(json!({
        "traceId": null, "spanId": null, "name": null, "kind": null,
        "startTimeUnixNano": null, "attributes": null, "events": null, "status": null,
    }));
    assert_eq!(span, Span::default());
}

#[test]
fn wrong_length_hex_ids_are_kept_for_normalize() {
    let span = one_span(json!({"traceId": "abcd", "spanId": "00112233445566778899"}));
    assert_eq!(span.trace_id, [0xab, 0xcd]);
    assert_eq!(span.span_id.len(), 10);
}

#[test]
fn non_hex_ids_fail_the_request() {
    for id in ["xyz0", "abc", "0x12"] {
        let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": id}]}]}]});
        let err = decode_json(body.to_string().as_bytes()).expect_err(id);
        assert!(err.to_string().contains("hex"), "{err}");
    }
}

fn attr_value(value: Json) -> Option<Value> {
    let span = one_span(json!({"attributes": [{"key": "k", "value": value}]}));
    span.attributes.into_iter().next()?.value?.value
}

#[test]
fn any_value_variants() {
    assert_eq!(
        attr_value(json!({"stringValue": "s"})),
        Some(Value::StringValue("s".into()))
    );
    assert_eq!(
        attr_value(json!({"boolValue": true})),
        Some(Value::BoolValue(true))
    );
    assert_eq!(
        attr_value(json!({"intValue": "-42"})),
        Some(Value::IntValue(-42))
    );
    assert_eq!(
        attr_value(json!({"intValue": 42})),
        Some(Value::IntValue(42))
    );
    assert_eq!(
        attr_value(json!({"int_value": 7})),
        Some(Value::IntValue(7))
    );
    assert_eq!(
        attr_value(json!({"doubleValue": 1.5})),
        Some(Value::DoubleValue(1.5))
    );
    assert_eq!(
        attr_value(json!({"doubleValue": "Infinity"})),
        Some(Value::DoubleValue(f64::INFINITY))
    );
    assert_eq!(
        attr_value(json!({"doubleValue": "-Infinity"})),
        Some(Value::DoubleValue(f64::NEG_INFINITY))
    );
    assert!(
        matches!(attr_value(json!({"doubleValue": "NaN"})), Some(Value::DoubleValue(d)) if d.is_nan())
    );
    assert_eq!(
        attr_value(json!({"bytesValue": "AQID"})),
        Some(Value::BytesValue(vec![1, 2, 3]))
    );
    assert_eq!(attr_value(json!({})), None);
    assert_eq!(attr_value(json!({"stringValue": null})), None);
    let nested = attr_value(json!({"arrayValue": {"values": [
        {"intValue": "1"},
        {"kvlistValue": {"values": [{"key": "a", "value": {"stringValue": "b"}}]}}
    ]}}));
    let Some(Value::ArrayValue(array)) = nested else {
        panic!("array expected: {nested:?}");
    };
    assert_eq!(array.values.len(), 2);
    assert!(
        matches!(&array.values[1].value, Some(Value::KvlistValue(l)) if l.values[0].key == "a")
    );
}

#[test]
fn malformed_bodies_are_errors() {
    let two_values = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[
        {"key":"k","value":{"stringValue":"a","intValue":1}}]}]}]}]}"#;
    assert!(decode_err(two_values).to_string().contains("more than one"));
    decode_err("[]");
    decode_err("{");
    decode_err(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_BOGUS"}]}]}]}"#);
    decode_err(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"-1"}]}]}]}"#);
    decode_err(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":1.5}]}]}]}"#);
    decode_err(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"flags":4294967296}]}]}]}"#);
    decode_err(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":{"bytesValue":"!!"}}]}]}]}]}"#,
    );
    decode_err(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":{"doubleValue":"inf"}}]}]}]}]}"#,
    );
    assert!(decode_json(b"{\"resourceSpans\":[{\"schemaUrl\":\"\xff\"}]}").is_err());
}

#[test]
fn integers_in_exponent_form_are_accepted() {
    let span = one_span(json!({"startTimeUnixNano": 1e9, "endTimeUnixNano": "2e9"}));
    assert_eq!(span.start_time_unix_nano, 1_000_000_000);
    assert_eq!(span.end_time_unix_nano, 2_000_000_000);
}
