//! Unit tests of `normalize`: each rejection reason, the limits and their marking, origin and stamp.

use super::*;
use mcp_obs_storage::model::{Env, SPAN_KIND_SERVER, STATUS_ERROR};
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value as PValue, AnyValue, InstrumentationScope, KeyValue as PKeyValue,
};
use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Status};

const T0: u64 = 1_795_000_000_000_000_000;

fn stamp() -> Stamp {
    Stamp {
        org_id: 7,
        server_id: 42,
        env: Env::Test,
        oldest_unix_nano: T0 - 1_000,
        newest_unix_nano: T0 + 1_000,
    }
}

fn s(key: &str, value: &str) -> PKeyValue {
    PKeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(PValue::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

fn good_span() -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        parent_span_id: vec![3; 8],
        name: "tools/call get_weather".into(),
        kind: 2,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + 500,
        attributes: vec![s("mcp.method.name", "tools/call"), s("other", "kept")],
        ..Span::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![s("service.name", "weather"), s("host.name", "h")],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "mcp-python-sdk".into(),
                    version: "2.3.0".into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn run(spans: Vec<Span>) -> Normalized {
    normalize(request(spans), &stamp(), &NormalizeLimits::default())
}

fn run_one(span: Span) -> SpanRecord {
    let mut out = run(vec![span]);
    assert_eq!(out.rejected, 0, "{}", out.error_message);
    out.spans.pop().expect("one span")
}

fn rejection(span: Span) -> String {
    let out = run(vec![span]);
    assert!(out.spans.is_empty());
    assert_eq!(out.rejected, 1);
    out.error_message
}

fn attr<'a>(record: &'a SpanRecord, key: &str) -> Option<&'a AttrValue> {
    record
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| &kv.value)
}

#[test]
fn a_good_span_is_stamped_and_copied() {
    let mut span = good_span();
    span.flags = 0x301;
    span.trace_state = "vendor=1".into();
    span.status = Some(Status {
        code: 2,
        message: "bad".into(),
    });
    span.dropped_attributes_count = 3;
    let r = run_one(span);
    assert_eq!((r.org_id, r.server_id, r.env), (7, 42, Env::Test));
    assert_eq!(r.trace_id, [1; 16]);
    assert_eq!(r.span_id, [2; 8]);
    assert_eq!(r.parent_span_id, [3; 8]);
    assert_eq!((r.start_unix_nano, r.end_unix_nano), (T0, T0 + 500));
    assert_eq!(r.kind, SPAN_KIND_SERVER);
    assert_eq!(
        (r.status_code, r.status_message.as_str()),
        (STATUS_ERROR, "bad")
    );
    assert_eq!((r.flags, r.trace_state.as_str()), (0x301, "vendor=1"));
    assert_eq!(r.sample_probability, 1.0);
    assert_eq!(r.service_name, "weather");
    assert_eq!(r.origin.scope_name, "mcp-python-sdk");
    assert_eq!(r.origin.scope_version, "2.3.0");
    assert_eq!(r.origin.resource.len(), 2);
    assert_eq!(r.mcp.method.as_deref(), Some("tools/call"));
    assert_eq!(r.mcp.tool.as_deref(), Some("get_weather"));
    assert_eq!(r.mcp.error_type.as_deref(), Some("tool_error"));
    assert_eq!(
        r.attributes,
        vec![KeyValue {
            key: "other".into(),
            value: AttrValue::Str("kept".into())
        }]
    );
    assert_eq!(r.dropped_attributes_count, 3);
}

#[test]
fn root_spans_have_zero_parent() {
    let mut span = good_span();
    span.parent_span_id.clear();
    assert_eq!(run_one(span).parent_span_id, [0; 8]);
}

#[test]
fn each_rejection_reason() {
    type Breakage = fn(&mut Span);
    let cases: Vec<(Breakage, &str)> = vec![
        (|s| s.trace_id = vec![1; 15], "trace_id must be 16 bytes"),
        (|s| s.trace_id.clear(), "trace_id must be 16 bytes"),
        (
            |s| s.trace_id = vec![0; 16],
            "trace_id must not be all zero",
        ),
        (|s| s.span_id = vec![2; 9], "span_id must be 8 bytes"),
        (|s| s.span_id = vec![0; 8], "span_id must not be all zero"),
        (
            |s| s.parent_span_id = vec![3; 4],
            "parent_span_id must be empty or 8 bytes",
        ),
        (|s| s.start_time_unix_nano = 0, "start time missing"),
        (
            |s| s.end_time_unix_nano = s.start_time_unix_nano - 1,
            "end before start",
        ),
        (
            |s| {
                s.start_time_unix_nano = T0 - 1_001;
                s.end_time_unix_nano = T0;
            },
            "start outside retention",
        ),
        (
            |s| {
                s.start_time_unix_nano = T0 + 1_001;
                s.end_time_unix_nano = T0 + 2_000;
            },
            "start too far in the future",
        ),
    ];
    for (breakage, reason) in cases {
        let mut span = good_span();
        breakage(&mut span);
        assert_eq!(rejection(span), format!("1 span rejected: {reason} (1)"));
    }
}

#[test]
fn window_edges_are_inclusive() {
    let mut span = good_span();
    span.start_time_unix_nano = T0 - 1_000;
    run_one(span);
    let mut span = good_span();
    span.start_time_unix_nano = T0 + 1_000;
    span.end_time_unix_nano = T0 + 1_000;
    run_one(span);
}

#[test]
fn mixed_batch_counts_and_summary() {
    let mut short_id = good_span();
    short_id.span_id = vec![1; 4];
    let mut backwards = good_span();
    backwards.end_time_unix_nano = 1;
    let out = run(vec![good_span(), short_id, backwards, good_span()]);
    assert_eq!(out.spans.len(), 2);
    assert_eq!(out.rejected, 2);
    assert_eq!(
        out.error_message,
        "2 spans rejected: span_id must be 8 bytes (1), end before start (1)"
    );
}

#[test]
fn spans_over_the_request_limit_are_rejected() {
    let limits = NormalizeLimits {
        spans_per_request_max: 2,
        ..NormalizeLimits::default()
    };
    let out = normalize(request(vec![good_span(); 3]), &stamp(), &limits);
    assert_eq!((out.spans.len(), out.rejected), (2, 1));
    assert!(out.error_message.contains("too many spans"));
}

#[test]
fn attribute_cap_drops_and_counts() {
    let limits = NormalizeLimits {
        attributes_per_span_max: 3,
        ..NormalizeLimits::default()
    };
    let mut span = good_span();
    span.dropped_attributes_count = 1;
    // mcp.method.name sits after the cap position but is consumed before the cap applies.
    span.attributes = (0..10).map(|i| s(&format!("k{i}"), "v")).collect();
    span.attributes.push(s("mcp.method.name", "tools/list"));
    let out = normalize(request(vec![span]), &stamp(), &limits);
    let r = &out.spans[0];
    let keys: Vec<_> = r.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["k0", "k1", "k2"]);
    assert_eq!(r.dropped_attributes_count, 1 + 7);
    assert_eq!(r.mcp.method.as_deref(), Some("tools/list"));
    assert_eq!(out.truncated_values, 0, "dropping is not truncating");
}

#[test]
fn long_values_are_truncated_and_marked() {
    let limits = NormalizeLimits {
        attribute_value_bytes_max: 10,
        ..NormalizeLimits::default()
    };
    let mut span = good_span();
    span.name = "tools/call a_very_long_tool_name".into();
    span.attributes = vec![
        s("mcp.method.name", "tools/call"), // exactly 10 bytes: kept whole
        s("note", "éééééé"),                // 12 bytes: cut to 5 'é' = 10 bytes
        s("short", "ok"),
        s(TRUNCATED_KEY, "spoofed"),
    ];
    span.status = Some(Status {
        code: 2,
        message: "a long status message".into(),
    });
    let out = normalize(request(vec![span]), &stamp(), &limits);
    let r = &out.spans[0];
    assert_eq!(r.name, "tools/call");
    assert_eq!(r.mcp.method.as_deref(), Some("tools/call"));
    assert_eq!(
        r.mcp.tool.as_deref(),
        Some("a_very_lon"),
        "canonical values are capped too"
    );
    assert_eq!(r.status_message, "a long sta");
    assert_eq!(attr(r, "note"), Some(&AttrValue::Str("ééééé".into())));
    assert_eq!(attr(r, "short"), Some(&AttrValue::Str("ok".into())));
    // name, tool, note, status message; the incoming marker was dropped, ours replaces it.
    assert_eq!(attr(r, TRUNCATED_KEY), Some(&AttrValue::Int(4)));
    assert_eq!(
        r.attributes
            .iter()
            .filter(|kv| kv.key == TRUNCATED_KEY)
            .count(),
        1
    );
    // Resource and scope strings all fit in 10 bytes except the key "service.name" (12 bytes).
    assert_eq!(
        out.truncated_values,
        4 + 1 + 1,
        "span cuts + resource key + scope name"
    );
    assert_eq!(out.rejected, 0, "truncation never rejects");
}

#[test]
fn resource_truncation_is_marked_on_the_resource_once() {
    let limits = NormalizeLimits {
        attribute_value_bytes_max: 4,
        ..NormalizeLimits::default()
    };
    let mut span = good_span();
    span.name = "ping".into();
    span.attributes.clear();
    let out = normalize(request(vec![span.clone(), span]), &stamp(), &limits);
    let r = &out.spans[0];
    assert_eq!(
        r.service_name, "weat",
        "found before keys are cut, then capped"
    );
    // "service.name" -> "serv", "weather" -> "weat", "host.name" -> "host".
    let marker = KeyValue {
        key: TRUNCATED_KEY.into(),
        value: AttrValue::Int(3),
    };
    assert_eq!(r.origin.resource.last(), Some(&marker));
    assert_eq!(out.spans[1].origin, r.origin);
    assert!(
        Arc::ptr_eq(&out.spans[1].origin, &r.origin),
        "spans of one scope share one origin"
    );
    // Plus scope name and version, counted once per scope, not per span.
    assert_eq!(out.truncated_values, 3 + 2);
    assert!(
        attr(r, TRUNCATED_KEY).is_none(),
        "the span itself had nothing cut"
    );
}

#[test]
fn events_and_links_are_capped() {
    let limits = NormalizeLimits {
        events_per_span_max: 1,
        links_per_span_max: 2,
        attributes_per_span_max: 1,
        ..NormalizeLimits::default()
    };
    let mut span = good_span();
    span.dropped_events_count = 5;
    span.events = vec![
        span::Event {
            name: "e1".into(),
            attributes: vec![s("a", "1"), s("b", "2")],
            ..Default::default()
        },
        span::Event {
            name: "e2".into(),
            ..Default::default()
        },
    ];
    let link = |trace_len| span::Link {
        trace_id: vec![9; trace_len],
        span_id: vec![8; 8],
        ..Default::default()
    };
    span.links = vec![link(16), link(3), link(16)];
    let out = normalize(request(vec![span]), &stamp(), &limits);
    let r = &out.spans[0];
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].attributes.len(), 1);
    assert_eq!(r.dropped_events_count, 5 + 1);
    assert_eq!(
        r.links.len(),
        1,
        "one over the cap, one with a bad trace id"
    );
    assert_eq!(r.links[0].trace_id, [9; 16]);
    assert_eq!(r.dropped_links_count, 2);
}

#[test]
fn sampling_probability_from_tracestate_and_attribute() {
    let mut span = good_span();
    span.trace_state = "ot=th:c;rv:01234567890abc".into();
    assert_eq!(run_one(span).sample_probability, 0.25);

    let mut span = good_span();
    span.trace_state = "ot=th:8".into();
    span.attributes.push(PKeyValue {
        key: "mcpobs.sample.probability".into(),
        value: Some(AnyValue {
            value: Some(PValue::DoubleValue(0.1)),
        }),
        key_strindex: 0,
    });
    let r = run_one(span);
    assert_eq!(r.sample_probability, 0.1);
    assert!(attr(&r, "mcpobs.sample.probability").is_none(), "consumed");

    let mut span = good_span();
    span.trace_state = "ot=th:zz".into();
    assert_eq!(run_one(span).sample_probability, 1.0);
}

#[test]
fn payload_cannot_redirect_spans() {
    let mut span = good_span();
    span.attributes
        .extend([s("org_id", "1"), s("server_id", "1"), s("env", "live")]);
    let r = run_one(span);
    assert_eq!((r.org_id, r.server_id, r.env), (7, 42, Env::Test));
}

#[test]
fn unknown_enum_numbers_become_unspecified() {
    let mut span = good_span();
    span.kind = 99;
    span.status = Some(Status {
        code: -4,
        message: String::new(),
    });
    let r = run_one(span);
    assert_eq!((r.kind, r.status_code), (0, 0));
}

#[test]
fn span_count_sums_all_scopes() {
    let mut req = request(vec![good_span(), good_span()]);
    req.resource_spans
        .push(request(vec![good_span()]).resource_spans.remove(0));
    req.resource_spans.push(ResourceSpans::default());
    assert_eq!(span_count(&req), 3);
    assert_eq!(span_count(&ExportTraceServiceRequest::default()), 0);
}
