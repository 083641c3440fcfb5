//! Property tests: random requests built from the attribute spellings of the canonical table, random
//! ids, times and limits. `normalize` must never panic, never leave the stamp's organization/server,
//! account for every span, keep every limit, and find the method whenever `mcp.method.name` is set.

use super::{normalize, span_count, NormalizeLimits, Stamp, TRUNCATED_KEY};
use mcp_obs_storage::model::{AttrValue, Env};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;

const T0: u64 = 1_795_000_000_000_000_000;

const KEYS: &[&str] = &[
    "mcp.method.name",
    "mcp.operation.type",
    "gen_ai.tool.name",
    "mcp.tool.name",
    "traceloop.entity.name",
    "traceloop.span.kind",
    "gen_ai.prompt.name",
    "mcp.prompt.name",
    "mcp.resource.uri",
    "jsonrpc.request.id",
    "mcp.request.id",
    "mcp.session.id",
    "enduser.id",
    "user.id",
    "mcp.user.id",
    "mcp.client.name",
    "mcp.client.version",
    "error.type",
    "mcp.tool.result.is_error",
    "network.transport",
    "mcp.transport",
    "mcp.protocol.version",
    "mcpobs.sample.probability",
    TRUNCATED_KEY,
    "service.name",
    "other",
];

const WORDS: &[&str] = &[
    "",
    "tool",
    "tools/call",
    "true",
    "0.5",
    "tool_error",
    "ééé",
    "get_weather",
    // A method whose span name's target fills a field (the prompt) when the method agrees.
    "prompts/get",
];

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(WORDS).prop_map(str::to_owned),
        "\\PC{0,24}",
    ]
}

pub(super) fn any_value() -> impl Strategy<Value = Option<Value>> {
    let leaf = prop_oneof![
        any_string().prop_map(Value::StringValue),
        any::<bool>().prop_map(Value::BoolValue),
        any::<i64>().prop_map(Value::IntValue),
        any::<f64>().prop_map(Value::DoubleValue),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::BytesValue),
    ];
    let nested = leaf.prop_recursive(3, 16, 4, |inner| {
        proptest::collection::vec(inner.prop_map(|v| AnyValue { value: Some(v) }), 0..4)
            .prop_map(|values| Value::ArrayValue(ArrayValue { values }))
    });
    proptest::option::weighted(0.9, nested)
}

pub(super) fn key_value() -> impl Strategy<Value = KeyValue> {
    (
        prop_oneof![4 => proptest::sample::select(KEYS).prop_map(str::to_owned), 1 => "\\PC{0,12}"],
        any_value(),
    )
        .prop_map(|(key, value)| KeyValue {
            key,
            value: Some(AnyValue { value }),
            key_strindex: 0,
        })
}

fn id(len_usual: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), len_usual),
        1 => Just(vec![0; len_usual]),
        1 => proptest::collection::vec(any::<u8>(), 0..20),
    ]
}

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![4 => T0 - 10_000..T0 + 10_000, 1 => any::<u64>(), 1 => Just(0)]
}

fn span_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("tools/call get_weather".to_owned()),
        Just("MCP send prompts/get greet".to_owned()),
        Just("get_weather.tool".to_owned()),
        Just("tools/list.mcp".to_owned()),
        Just("mcp.client.session".to_owned()),
        "\\PC{0,30}",
    ]
}

fn event() -> impl Strategy<Value = span::Event> {
    (
        prop_oneof![Just("exception".to_owned()), any_string()],
        proptest::collection::vec(key_value(), 0..4),
    )
        .prop_map(|(name, attributes)| span::Event {
            name,
            attributes,
            ..span::Event::default()
        })
}

fn link() -> impl Strategy<Value = span::Link> {
    (id(16), id(8)).prop_map(|(trace_id, span_id)| span::Link {
        trace_id,
        span_id,
        ..span::Link::default()
    })
}

prop_compose! {
    pub(super) fn any_span()(
        trace_id in id(16),
        span_id in id(8),
        parent_span_id in prop_oneof![Just(Vec::new()), id(8)],
        name in span_name(),
        kind in prop_oneof![0..6i32, any::<i32>()],
        start in time(),
        end in time(),
        attributes in proptest::collection::vec(key_value(), 0..12),
        events in proptest::collection::vec(event(), 0..3),
        links in proptest::collection::vec(link(), 0..3),
        trace_state in prop_oneof![Just(String::new()), Just("ot=th:8".to_owned()), "\\PC{0,20}"],
        status in proptest::option::of((0..3i32, any_string())),
    ) -> Span {
        Span {
            trace_id, span_id, parent_span_id, name, kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes, events, links, trace_state,
            status: status.map(|(code, message)| Status { code, message }),
            ..Span::default()
        }
    }
}

pub(super) fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope =
        (any_string(), proptest::collection::vec(any_span(), 0..5)).prop_map(|(name, spans)| {
            ScopeSpans {
                scope: Some(InstrumentationScope {
                    name,
                    ..InstrumentationScope::default()
                }),
                spans,
                schema_url: String::new(),
            }
        });
    let resource = (
        proptest::collection::vec(key_value(), 0..5),
        proptest::collection::vec(scope, 0..3),
    )
        .prop_map(|(attributes, scope_spans)| ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Resource::default()
            }),
            scope_spans,
            schema_url: String::new(),
        });
    proptest::collection::vec(resource, 0..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

pub(super) fn limits() -> impl Strategy<Value = NormalizeLimits> {
    prop_oneof![
        Just(NormalizeLimits::default()),
        (0..8usize, 0..5usize, 0..12usize, 0..3usize, 0..3usize).prop_map(
            |(spans, attrs, bytes, events, links)| NormalizeLimits {
                spans_per_request_max: spans,
                attributes_per_span_max: attrs,
                attribute_value_bytes_max: bytes,
                events_per_span_max: events,
                links_per_span_max: links,
            }
        ),
    ]
}

pub(super) fn stamp() -> Stamp {
    Stamp {
        org_id: 11,
        server_id: 22,
        env: Env::Live,
        oldest_unix_nano: T0 - 5_000,
        newest_unix_nano: T0 + 5_000,
    }
}

/// Whether a span carries `mcp.method.name` as a non-empty string (a usable method).
fn has_method_attribute(span: &Span) -> bool {
    span.attributes.iter().any(|kv| {
        kv.key == "mcp.method.name"
            && matches!(
                kv.value.as_ref().and_then(|v| v.value.as_ref()),
                Some(Value::StringValue(s)) if !s.is_empty()
            )
    })
}

fn one_span_request(span: Span) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

proptest! {
    #[test]
    fn normalize_accounts_for_every_span(req in request(), limits in limits()) {
        let input = span_count(&req);
        let out = normalize(req, &stamp(), &limits);
        prop_assert_eq!(out.spans.len() as u64 + out.rejected, input as u64);
        prop_assert!(out.spans.len() <= limits.spans_per_request_max);
        prop_assert_eq!(out.error_message.is_empty(), out.rejected == 0);
        for s in &out.spans {
            prop_assert_eq!((s.org_id, s.server_id, s.env), (11, 22, Env::Live));
            prop_assert!(s.sample_probability > 0.0 && s.sample_probability <= 1.0);
            prop_assert!(s.start_unix_nano >= T0 - 5_000 && s.start_unix_nano <= T0 + 5_000);
            prop_assert!(s.end_unix_nano >= s.start_unix_nano);
            prop_assert!(s.attributes.len() <= limits.attributes_per_span_max + 1);
            prop_assert!(s.name.len() <= limits.attribute_value_bytes_max);
            prop_assert!(s.status_message.len() <= limits.attribute_value_bytes_max);
            prop_assert!(s.events.len() <= limits.events_per_span_max);
            prop_assert!(s.links.len() <= limits.links_per_span_max);
            let markers = s.attributes.iter().filter(|kv| kv.key == TRUNCATED_KEY).count();
            prop_assert!(markers <= 1);
            for kv in &s.attributes {
                if let AttrValue::Str(v) = &kv.value {
                    prop_assert!(v.len() <= limits.attribute_value_bytes_max);
                }
            }
        }
    }

    #[test]
    fn method_attribute_always_yields_a_method(span in any_span(), limits in limits()) {
        let wanted = has_method_attribute(&span);
        let limits = NormalizeLimits { spans_per_request_max: 1, ..limits };
        let out = normalize(one_span_request(span), &stamp(), &limits);
        if let Some(record) = out.spans.first() {
            if wanted {
                prop_assert!(record.mcp.method.is_some());
            }
        }
    }
}
