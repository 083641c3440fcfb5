//! OTLP/JSON decoding: hand-written serde mirrors of the trace protos, converted to the prost types.
//!
//! We do not use opentelemetry-proto's `with-serde` feature: its mapping is not the OTLP/JSON one in
//! every corner (hex ids, enum names, snake_case aliases, `null`). Every struct below accepts the
//! lowerCamelCase names of the spec and the proto field names (proto3 JSON parsers must accept both),
//! ignores unknown fields, and reads `null` as "default". The scalar rules live in `json_scalar`.

use super::decode::DecodeError;
use super::json_scalar::{
    opt_base64, opt_f64, opt_hex_id, opt_i64, opt_span_kind, opt_status_code, opt_u32, opt_u64,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use serde::Deserialize;

/// Decodes an OTLP/JSON `ExportTraceServiceRequest` body.
///
/// Errors (all [`DecodeError::Json`]): not UTF-8 / not JSON, a field of the wrong type, an id that is
/// not a hex string, invalid base64 in `bytesValue`, an unknown enum name, or an `AnyValue` with more
/// than one value set. Ids of the wrong *length* are not errors here: normalization rejects those
/// spans one by one.
pub fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    // serde's derived structs also accept a JSON array of fields in order; the top level at least
    // must be an object, so `[]` is not silently an empty export. (Nested messages written as arrays
    // are still accepted; they are harmless and no exporter writes them.)
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(DecodeError::json("expected a JSON object"));
    }
    let request: JRequest = serde_json::from_slice(body).map_err(DecodeError::json)?;
    request.into_proto().map_err(DecodeError::json)
}

/// A semantic error found after parsing (serde cannot express "at most one of").
#[derive(Debug)]
struct ConvertError(&'static str);

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

type Convert<T> = Result<T, ConvertError>;

/// Converts a list that may be `null` or missing.
fn list<J, P>(items: Option<Vec<J>>, f: impl Fn(J) -> Convert<P>) -> Convert<Vec<P>> {
    items.unwrap_or_default().into_iter().map(f).collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JRequest {
    #[serde(default, alias = "resource_spans")]
    resource_spans: Option<Vec<JResourceSpans>>,
}

impl JRequest {
    fn into_proto(self) -> Convert<ExportTraceServiceRequest> {
        Ok(ExportTraceServiceRequest {
            resource_spans: list(self.resource_spans, JResourceSpans::into_proto)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JResourceSpans {
    #[serde(default)]
    resource: Option<JResource>,
    #[serde(default, alias = "scope_spans")]
    scope_spans: Option<Vec<JScopeSpans>>,
    #[serde(default, alias = "schema_url")]
    schema_url: Option<String>,
}

impl JResourceSpans {
    fn into_proto(self) -> Convert<ResourceSpans> {
        Ok(ResourceSpans {
            resource: self.resource.map(JResource::into_proto).transpose()?,
            scope_spans: list(self.scope_spans, JScopeSpans::into_proto)?,
            schema_url: self.schema_url.unwrap_or_default(),
        })
    }
}

/// `entityRefs` is not read: nothing downstream uses it, and it is development-status in OTLP.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JResource {
    #[serde(default)]
    attributes: Option<Vec<JKeyValue>>,
    #[serde(
        default,
        alias = "dropped_attributes_count",
        deserialize_with = "opt_u32"
    )]
    dropped_attributes_count: Option<u32>,
}

impl JResource {
    fn into_proto(self) -> Convert<Resource> {
        Ok(Resource {
            attributes: list(self.attributes, JKeyValue::into_proto)?,
            dropped_attributes_count: self.dropped_attributes_count.unwrap_or_default(),
            entity_refs: Vec::new(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JScopeSpans {
    #[serde(default)]
    scope: Option<JScope>,
    #[serde(default)]
    spans: Option<Vec<JSpan>>,
    #[serde(default, alias = "schema_url")]
    schema_url: Option<String>,
}

impl JScopeSpans {
    fn into_proto(self) -> Convert<ScopeSpans> {
        Ok(ScopeSpans {
            scope: self.scope.map(JScope::into_proto).transpose()?,
            spans: list(self.spans, JSpan::into_proto)?,
            schema_url: self.schema_url.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JScope {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    attributes: Option<Vec<JKeyValue>>,
    #[serde(
        default,
        alias = "dropped_attributes_count",
        deserialize_with = "opt_u32"
    )]
    dropped_attributes_count: Option<u32>,
}

impl JScope {
    fn into_proto(self) -> Convert<InstrumentationScope> {
        Ok(InstrumentationScope {
            name: self.name.unwrap_or_default(),
            version: self.version.unwrap_or_default(),
            attributes: list(self.attributes, JKeyValue::into_proto)?,
            dropped_attributes_count: self.dropped_attributes_count.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JSpan {
    #[serde(default, alias = "trace_id", deserialize_with = "opt_hex_id")]
    trace_id: Option<Vec<u8>>,
    #[serde(default, alias = "span_id", deserialize_with = "opt_hex_id")]
    span_id: Option<Vec<u8>>,
    #[serde(default, alias = "trace_state")]
    trace_state: Option<String>,
    #[serde(default, alias = "parent_span_id", deserialize_with = "opt_hex_id")]
    parent_span_id: Option<Vec<u8>>,
    #[serde(default, deserialize_with = "opt_u32")]
    flags: Option<u32>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "opt_span_kind")]
    kind: Option<i32>,
    #[serde(default, alias = "start_time_unix_nano", deserialize_with = "opt_u64")]
    start_time_unix_nano: Option<u64>,
    #[serde(default, alias = "end_time_unix_nano", deserialize_with = "opt_u64")]
    end_time_unix_nano: Option<u64>,
    #[serde(default)]
    attributes: Option<Vec<JKeyValue>>,
    #[serde(
        default,
        alias = "dropped_attributes_count",
        deserialize_with = "opt_u32"
    )]
    dropped_attributes_count: Option<u32>,
    #[serde(default)]
    events: Option<Vec<JEvent>>,
    #[serde(default, alias = "dropped_events_count", deserialize_with = "opt_u32")]
    dropped_events_count: Option<u32>,
    #[serde(default)]
    links: Option<Vec<JLink>>,
    #[serde(default, alias = "dropped_links_count", deserialize_with = "opt_u32")]
    dropped_links_count: Option<u32>,
    #[serde(default)]
    status: Option<JStatus>,
}

impl JSpan {
    fn into_proto(self) -> Convert<Span> {
        Ok(Span {
            trace_id: self.trace_id.unwrap_or_default(),
            span_id: self.span_id.unwrap_or_default(),
            trace_state: self.trace_state.unwrap_or_default(),
            parent_span_id: self.parent_span_id.unwrap_or_default(),
            flags: self.flags.unwrap_or_default(),
            name: self.name.unwrap_or_default(),
            kind: self.kind.unwrap_or_default(),
            start_time_unix_nano: self.start_time_unix_nano.unwrap_or_default(),
            end_time_unix_nano: self.end_time_unix_nano.unwrap_or_default(),
            attributes: list(self.attributes, JKeyValue::into_proto)?,
            dropped_attributes_count: self.dropped_attributes_count.unwrap_or_default(),
            events: list(self.events, JEvent::into_proto)?,
            dropped_events_count: self.dropped_events_count.unwrap_or_default(),
            links: list(self.links, JLink::into_proto)?,
            dropped_links_count: self.dropped_links_count.unwrap_or_default(),
            status: self.status.map(JStatus::into_proto),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JEvent {
    #[serde(default, alias = "time_unix_nano", deserialize_with = "opt_u64")]
    time_unix_nano: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    attributes: Option<Vec<JKeyValue>>,
    #[serde(
        default,
        alias = "dropped_attributes_count",
        deserialize_with = "opt_u32"
    )]
    dropped_attributes_count: Option<u32>,
}

impl JEvent {
    fn into_proto(self) -> Convert<span::Event> {
        Ok(span::Event {
            time_unix_nano: self.time_unix_nano.unwrap_or_default(),
            name: self.name.unwrap_or_default(),
            attributes: list(self.attributes, JKeyValue::into_proto)?,
            dropped_attributes_count: self.dropped_attributes_count.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JLink {
    #[serde(default, alias = "trace_id", deserialize_with = "opt_hex_id")]
    trace_id: Option<Vec<u8>>,
    #[serde(default, alias = "span_id", deserialize_with = "opt_hex_id")]
    span_id: Option<Vec<u8>>,
    #[serde(default, alias = "trace_state")]
    trace_state: Option<String>,
    #[serde(default)]
    attributes: Option<Vec<JKeyValue>>,
    #[serde(
        default,
        alias = "dropped_attributes_count",
        deserialize_with = "opt_u32"
    )]
    dropped_attributes_count: Option<u32>,
    #[serde(default, deserialize_with = "opt_u32")]
    flags: Option<u32>,
}

impl JLink {
    fn into_proto(self) -> Convert<span::Link> {
        Ok(span::Link {
            trace_id: self.trace_id.unwrap_or_default(),
            span_id: self.span_id.unwrap_or_default(),
            trace_state: self.trace_state.unwrap_or_default(),
            attributes: list(self.attributes, JKeyValue::into_proto)?,
            dropped_attributes_count: self.dropped_attributes_count.unwrap_or_default(),
            flags: self.flags.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JStatus {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, deserialize_with = "opt_status_code")]
    code: Option<i32>,
}

impl JStatus {
    fn into_proto(self) -> Status {
        Status {
            message: self.message.unwrap_or_default(),
            code: self.code.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JKeyValue {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<JAnyValue>,
}

impl JKeyValue {
    fn into_proto(self) -> Convert<KeyValue> {
        Ok(KeyValue {
            key: self.key.unwrap_or_default(),
            value: self.value.map(JAnyValue::into_proto).transpose()?,
            key_strindex: 0,
        })
    }
}

/// The `AnyValue` oneof as optional fields; [`JAnyValue::into_proto`] checks that at most one is set.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JAnyValue {
    #[serde(default, alias = "string_value")]
    string_value: Option<String>,
    #[serde(default, alias = "bool_value")]
    bool_value: Option<bool>,
    #[serde(default, alias = "int_value", deserialize_with = "opt_i64")]
    int_value: Option<i64>,
    #[serde(default, alias = "double_value", deserialize_with = "opt_f64")]
    double_value: Option<f64>,
    #[serde(default, alias = "bytes_value", deserialize_with = "opt_base64")]
    bytes_value: Option<Vec<u8>>,
    #[serde(default, alias = "array_value")]
    array_value: Option<JArrayValue>,
    #[serde(default, alias = "kvlist_value")]
    kvlist_value: Option<JKeyValueList>,
}

impl JAnyValue {
    fn into_proto(self) -> Convert<AnyValue> {
        use any_value::Value;
        let candidates = [
            self.string_value.map(Value::StringValue),
            self.bool_value.map(Value::BoolValue),
            self.int_value.map(Value::IntValue),
            self.double_value.map(Value::DoubleValue),
            self.bytes_value.map(Value::BytesValue),
            self.array_value
                .map(|a| list(a.values, JAnyValue::into_proto).map(|values| ArrayValue { values }))
                .transpose()?
                .map(Value::ArrayValue),
            self.kvlist_value
                .map(|l| {
                    list(l.values, JKeyValue::into_proto).map(|values| KeyValueList { values })
                })
                .transpose()?
                .map(Value::KvlistValue),
        ];
        let mut set = candidates.into_iter().flatten();
        let value = set.next();
        if set.next().is_some() {
            return Err(ConvertError("an AnyValue has more than one value set"));
        }
        Ok(AnyValue { value })
    }
}

#[derive(Deserialize)]
struct JArrayValue {
    #[serde(default)]
    values: Option<Vec<JAnyValue>>,
}

#[derive(Deserialize)]
struct JKeyValueList {
    #[serde(default)]
    values: Option<Vec<JKeyValue>>,
}

#[cfg(test)]
mod tests;
