//! Realistic MCP `tools/call` spans as OTLP requests, shared by the integration tests and the
//! benchmarks (included with `#[path]`): about 11 attributes, 8 tools, 37 users, 5% errors.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use rand::Rng;

pub const TOOLS: [&str; 8] = [
    "get_weather",
    "search_docs",
    "create_issue",
    "list_files",
    "read_file",
    "run_query",
    "send_email",
    "summarize",
];

pub fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// One generated span plus what a reader should find for it.
#[derive(Clone, Debug)]
pub struct Expected {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub tool: String,
    pub user: String,
    pub is_error: bool,
    pub start_unix_nano: u64,
}

pub fn random_id<const N: usize>(rng: &mut impl Rng) -> [u8; N] {
    loop {
        let id: [u8; N] = std::array::from_fn(|_| rng.gen());
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
}

/// A `tools/call` SERVER span as the MCP Python SDK emits it, one trace per request.
pub fn tool_call_span(rng: &mut impl Rng, start_unix_nano: u64) -> (Span, Expected) {
    let trace_id: [u8; 16] = random_id(rng);
    let span_id: [u8; 8] = random_id(rng);
    let tool = TOOLS[rng.gen_range(0..TOOLS.len())];
    // A session is one client connection, so it belongs to one user: 500 sessions, each of one
    // of the 37 users.
    let session = rng.gen_range(0..500u128);
    let user = format!("user-{:02}@example.com", session % 37);
    let is_error = rng.gen_bool(0.05);
    let duration = rng.gen_range(200_000u64..80_000_000);
    let mut attributes = vec![
        kv("mcp.method.name", "tools/call"),
        kv("gen_ai.tool.name", tool),
        kv("gen_ai.operation.name", "execute_tool"),
        kv("jsonrpc.request.id", &rng.gen_range(1..10_000).to_string()),
        kv("mcp.session.id", &format!("{session:032x}")),
        kv("mcp.protocol.version", "2025-11-25"),
        kv("network.transport", "tcp"),
        kv("enduser.id", &user),
        kv("mcp.client.name", "claude-desktop"),
        kv("mcp.client.version", "1.4.2"),
    ];
    if is_error {
        attributes.push(kv("error.type", "tool_error"));
    } else {
        attributes.push(kv("server.address", "127.0.0.1"));
    }
    let span = Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        flags: 256,
        name: format!("tools/call {tool}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start_unix_nano,
        end_time_unix_nano: start_unix_nano + duration,
        attributes,
        status: Some(Status {
            code: if is_error {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Unset as i32
            },
            message: String::new(),
        }),
        ..Default::default()
    };
    let exp = Expected {
        trace_id,
        span_id,
        tool: tool.into(),
        user,
        is_error,
        start_unix_nano,
    };
    (span, exp)
}

/// One export request of `n` spans starting around `start_unix_nano`, 1 ms apart.
pub fn request(
    rng: &mut impl Rng,
    n: usize,
    start_unix_nano: u64,
) -> (ExportTraceServiceRequest, Vec<Expected>) {
    let mut spans = Vec::with_capacity(n);
    let mut expected = Vec::with_capacity(n);
    for i in 0..n {
        let (s, e) = tool_call_span(rng, start_unix_nano + i as u64 * 1_000_000);
        spans.push(s);
        expected.push(e);
    }
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "weather-server"),
                    kv("service.version", "1.2.0"),
                    kv("telemetry.sdk.language", "python"),
                    kv("telemetry.sdk.name", "opentelemetry"),
                    kv("telemetry.sdk.version", "1.45.2"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "mcp-python-sdk".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (req, expected)
}

pub fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
