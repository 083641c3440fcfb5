//! Unit tests of the canonical-field rules, one spelling or shape at a time.

use super::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as PKeyValue};

fn kv(key: &str, value: PValue) -> PKeyValue {
    PKeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn s(key: &str, value: &str) -> PKeyValue {
    kv(key, PValue::StringValue(value.into()))
}

/// Runs `extract` and returns the fields plus the keys left in the attributes.
fn run(
    attrs: Vec<PKeyValue>,
    name: &str,
    status_error: bool,
    events: &[Event],
) -> (McpFields, Vec<String>) {
    let mut attrs = Attrs::new(attrs);
    let fields = extract(&mut attrs, name, status_error, events);
    let left = attrs.into_inner().into_iter().map(|kv| kv.key).collect();
    (fields, left)
}

#[test]
fn mcp_method_shapes() {
    for ok in [
        "initialize",
        "ping",
        "tools/call",
        "notifications/initialized",
        "resources/templates/list",
        "logging/setLevel",
        "sampling/createMessage",
        "server/discover",
        "notifications/tools/list_changed",
    ] {
        assert!(is_mcp_method(ok), "{ok}");
    }
    for bad in [
        "",
        "tools",
        "/tools/call",
        "tools/",
        "tools//call",
        "GET",
        "a/b/c/d/e",
        "tools/call x",
        "mcp.client.session",
        "1tools/call",
        "tools/ca-ll",
    ] {
        assert!(!is_mcp_method(bad), "{bad}");
    }
}

#[test]
fn span_name_shapes() {
    let p = |n| parse_span_name(n, false);
    assert_eq!(
        p("tools/call get_weather"),
        NameParts {
            method: Some("tools/call"),
            target: Some("get_weather")
        }
    );
    assert_eq!(
        p("MCP send prompts/get greet"),
        NameParts {
            method: Some("prompts/get"),
            target: Some("greet")
        }
    );
    assert_eq!(
        p("MCP send initialize"),
        NameParts {
            method: Some("initialize"),
            target: None
        }
    );
    assert_eq!(
        p("resources/read.mcp"),
        NameParts {
            method: Some("resources/read"),
            target: None
        }
    );
    assert_eq!(
        p("initialize.mcp"),
        NameParts {
            method: Some("initialize"),
            target: None
        }
    );
    assert_eq!(p("mcp.client.session"), NameParts::default());
    assert_eq!(
        p("get_weather.tool"),
        NameParts::default(),
        "needs traceloop.span.kind=tool"
    );
    assert_eq!(p("GET /v1/traces"), NameParts::default());
    assert_eq!(p(""), NameParts::default());
    assert_eq!(
        parse_span_name("get_weather.tool", true),
        NameParts {
            method: Some("tools/call"),
            target: Some("get_weather")
        }
    );
}

#[test]
fn method_first_present_wins() {
    let (f, left) = run(
        vec![
            s("mcp.operation.type", "x/y"),
            s("mcp.method.name", "tools/list"),
        ],
        "prompts/get greet",
        false,
        &[],
    );
    assert_eq!(f.method.as_deref(), Some("tools/list"));
    assert_eq!(
        f.prompt, None,
        "name target ignored when the name's method lost"
    );
    assert_eq!(left, ["mcp.operation.type"]);

    let (f, left) = run(
        vec![s("mcp.operation.type", "tools/call")],
        "work",
        false,
        &[],
    );
    assert_eq!(f.method.as_deref(), Some("tools/call"));
    assert!(left.is_empty());

    let (f, _) = run(vec![], "MCP send tools/call get_weather", false, &[]);
    assert_eq!(
        (f.method.as_deref(), f.tool.as_deref()),
        (Some("tools/call"), Some("get_weather"))
    );
}

#[test]
fn tool_prompt_and_other_spellings() {
    let (f, left) = run(
        vec![
            s("mcp.tool.name", "second"),
            s("gen_ai.tool.name", "first"),
            s("mcp.prompt.name", "p"),
            s("mcp.resource.uri", "config://app"),
            kv("mcp.request.id", PValue::IntValue(9)),
            s("user.id", "u2"),
            s("mcp.user.id", "u3"),
            s("mcp.client.name", "cli"),
            s("mcp.client.version", "1.2"),
            s("mcp.transport", "stdio"),
            s("mcp.protocol.version", "2025-11-25"),
            s("mcp.session.id", "sess"),
        ],
        "tools/call from_name",
        false,
        &[],
    );
    assert_eq!(f.tool.as_deref(), Some("first"));
    assert_eq!(f.prompt.as_deref(), Some("p"));
    assert_eq!(f.resource_uri.as_deref(), Some("config://app"));
    assert_eq!(f.request_id.as_deref(), Some("9"));
    assert_eq!(f.user_id.as_deref(), Some("u2"));
    assert_eq!(f.client_name.as_deref(), Some("cli"));
    assert_eq!(f.client_version.as_deref(), Some("1.2"));
    assert_eq!(f.transport.as_deref(), Some("stdio"));
    assert_eq!(f.protocol_version.as_deref(), Some("2025-11-25"));
    assert_eq!(f.session_id.as_deref(), Some("sess"));
    assert_eq!(
        left,
        ["mcp.tool.name", "mcp.user.id"],
        "losing spellings stay"
    );

    let (f, _) = run(
        vec![
            s("enduser.id", "u1"),
            s("user.id", "u2"),
            s("network.transport", "pipe"),
        ],
        "x",
        false,
        &[],
    );
    assert_eq!(f.user_id.as_deref(), Some("u1"));
    assert_eq!(f.transport.as_deref(), Some("pipe"));
}

#[test]
fn traceloop_tool_and_session_spans() {
    let tool = vec![
        s("traceloop.span.kind", "tool"),
        s("traceloop.entity.name", "get_weather"),
    ];
    let (f, left) = run(tool, "get_weather.tool", false, &[]);
    assert_eq!(f.method.as_deref(), Some("tools/call"));
    assert_eq!(f.tool.as_deref(), Some("get_weather"));
    assert_eq!(left, ["traceloop.span.kind"]);

    let session = vec![
        s("traceloop.span.kind", "session"),
        s("traceloop.entity.name", "mcp.client.session"),
    ];
    let (f, left) = run(session, "mcp.client.session", false, &[]);
    assert_eq!(f, McpFields::default(), "the session span is not a request");
    assert_eq!(left.len(), 2);
}

fn exception(kind: &str) -> Event {
    Event {
        name: "exception".into(),
        attributes: vec![s("exception.type", kind)],
        ..Event::default()
    }
}

#[test]
fn error_rules_in_order() {
    let err = |attrs, name, status_error, events: &[Event]| {
        run(attrs, name, status_error, events).0.error_type
    };
    // 1. error.type wins over everything, even without status ERROR.
    assert_eq!(
        err(
            vec![s("error.type", "-32602")],
            "tools/call x",
            true,
            &[exception("E")]
        )
        .as_deref(),
        Some("-32602")
    );
    // 2. is_error flag, as bool or string.
    let flag = |v| vec![kv("mcp.tool.result.is_error", v)];
    assert_eq!(
        err(flag(PValue::BoolValue(true)), "x", false, &[]).as_deref(),
        Some(TOOL_ERROR)
    );
    assert_eq!(
        err(flag(PValue::StringValue("TRUE".into())), "x", false, &[]).as_deref(),
        Some(TOOL_ERROR)
    );
    assert_eq!(err(flag(PValue::BoolValue(false)), "x", false, &[]), None);
    // 3. status ERROR + exception event.
    assert_eq!(
        err(vec![], "tools/call x", true, &[exception("ValueError")]).as_deref(),
        Some("ValueError")
    );
    assert_eq!(
        err(vec![], "tools/call x", false, &[exception("ValueError")]),
        None
    );
    // 4. status ERROR on tools/call.
    assert_eq!(
        err(vec![], "tools/call x", true, &[]).as_deref(),
        Some(TOOL_ERROR)
    );
    // 5. other status ERROR spans: no error type.
    assert_eq!(err(vec![], "resources/read", true, &[]), None);
    assert_eq!(err(vec![], "not mcp", true, &[]), None);
}

#[test]
fn non_string_names_are_not_consumed() {
    let (f, left) = run(
        vec![kv("mcp.method.name", PValue::IntValue(3))],
        "x",
        false,
        &[],
    );
    assert_eq!(f.method, None);
    assert_eq!(left, ["mcp.method.name"]);
}
