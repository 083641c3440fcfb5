//! The canonical MCP fields (design.md section 4, fixtures/README.md attribute table) lifted out of a
//! span's attributes, name, status and events.
//!
//! For each field the spellings are tried in order and the first present one wins; the attribute it
//! came from is removed from the span's attributes (see `attrs`). Span-name parsing covers the
//! libraries that put the method only in the name: the mcp2 client (`MCP send tools/call x`) and
//! traceloop (`tools/list.mcp`, `get_weather.tool`).

use super::attrs::{scalar_string, Attrs};
use mcp_obs_storage::model::{McpFields, Text};
use opentelemetry_proto::tonic::common::v1::any_value::Value as PValue;
use opentelemetry_proto::tonic::trace::v1::span::Event;

pub const TOOL_ERROR: &str = "tool_error";
pub(super) const TOOLS_CALL: &str = "tools/call";
pub(super) const PROMPTS_GET: &str = "prompts/get";
/// Longest string we accept as a method parsed out of a span name.
const NAME_METHOD_BYTES_MAX: usize = 64;
const MCP_SEND_PREFIX: &str = "MCP send ";
pub(super) const TRACELOOP_SPAN_KIND: &str = "traceloop.span.kind";
pub(super) const TRACELOOP_ENTITY_NAME: &str = "traceloop.entity.name";

/// What the span name says, when it is shaped like an MCP request span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct NameParts<'a> {
    pub method: Option<&'a str>,
    /// The tool, prompt or other name after the method (`tools/call get_weather`).
    pub target: Option<&'a str>,
}

/// Extracts the canonical fields, consuming the attributes they came from.
/// `status_is_error` and `events` feed the error rules; they are not modified.
pub(super) fn extract(
    attrs: &mut Attrs,
    span_name: &str,
    status_is_error: bool,
    events: &[Event],
) -> McpFields {
    // A condition, not a value: `traceloop.span.kind` stays in the attributes.
    let traceloop_tool = attrs.peek_str(TRACELOOP_SPAN_KIND) == Some("tool");
    let from_name = parse_span_name(span_name, traceloop_tool);

    let method = attrs
        .take_str("mcp.method.name")
        .or_else(|| from_name.method.map(str::to_owned))
        .or_else(|| attrs.take_str("mcp.operation.type"));

    // The name's target only names a tool/prompt when the name's method is the span's method.
    let target_if = |wanted: &str| {
        let agrees = from_name.method.is_some() && from_name.method == method.as_deref();
        (agrees && from_name.method == Some(wanted))
            .then_some(from_name.target)
            .flatten()
            .map(str::to_owned)
    };

    let tool = attrs
        .take_first_str(&["gen_ai.tool.name", "mcp.tool.name"])
        .or_else(|| {
            traceloop_tool
                .then(|| attrs.take_str(TRACELOOP_ENTITY_NAME))
                .flatten()
        })
        .or_else(|| target_if(TOOLS_CALL));
    let prompt = attrs
        .take_first_str(&["gen_ai.prompt.name", "mcp.prompt.name"])
        .or_else(|| target_if(PROMPTS_GET));

    let t = |s: Option<String>| s.map(Text::from);
    let mut fields = McpFields {
        tool: t(tool),
        prompt: t(prompt),
        resource_uri: t(attrs.take_str("mcp.resource.uri")),
        request_id: t(attrs.take_first_scalar(&["jsonrpc.request.id", "mcp.request.id"])),
        session_id: t(attrs.take_scalar("mcp.session.id")),
        user_id: t(attrs.take_first_scalar(&["enduser.id", "user.id", "mcp.user.id"])),
        client_name: t(attrs.take_str("mcp.client.name")),
        client_version: t(attrs.take_scalar("mcp.client.version")),
        error_type: None,
        transport: t(attrs.take_first_str(&["network.transport", "mcp.transport"])),
        protocol_version: t(attrs.take_scalar("mcp.protocol.version")),
        method: t(method),
    };
    fields.error_type = t(error_type(
        attrs,
        status_is_error,
        events,
        fields.method.as_deref(),
    ));
    fields
}

/// Error rules, first match wins:
/// 1. `error.type` (consumed);
/// 2. `mcp.tool.result.is_error` true, as a bool or the string "true" → `tool_error` (consumed);
/// 3. status ERROR with an `exception` event → that event's `exception.type`;
/// 4. status ERROR on a `tools/call` span → `tool_error` (traceloop reports `isError` results so);
/// 5. otherwise none (a status ERROR span still counts as an error through its status).
fn error_type(
    attrs: &mut Attrs,
    status_is_error: bool,
    events: &[Event],
    method: Option<&str>,
) -> Option<String> {
    if let Some(explicit) = attrs.take_scalar("error.type") {
        return Some(explicit);
    }
    let is_error_flag = attrs.take_if("mcp.tool.result.is_error", |v| match v {
        PValue::BoolValue(true) => Some(()),
        PValue::StringValue(s) if s.eq_ignore_ascii_case("true") => Some(()),
        _ => None,
    });
    if is_error_flag.is_some() {
        return Some(TOOL_ERROR.to_owned());
    }
    if !status_is_error {
        return None;
    }
    if let Some(exception) = exception_type(events) {
        return Some(exception);
    }
    (method == Some(TOOLS_CALL)).then(|| TOOL_ERROR.to_owned())
}

/// `exception.type` of the first `exception` event that has one (OTel exception semantic conventions).
fn exception_type(events: &[Event]) -> Option<String> {
    events
        .iter()
        .filter(|e| e.name == "exception")
        .flat_map(|e| e.attributes.iter())
        .filter(|kv| kv.key == "exception.type")
        .find_map(|kv| kv.value.as_ref()?.value.as_ref().and_then(scalar_string))
}

/// Reads the method (and target) out of a span name in the shapes MCP libraries use:
/// `{method}`, `{method} {target}`, `MCP send {method}[ {target}]`, traceloop's `{method}.mcp`, and
/// traceloop's `{tool}.tool` when `traceloop.span.kind` is `tool` (a `tools/call`).
pub(super) fn parse_span_name(name: &str, traceloop_tool: bool) -> NameParts<'_> {
    if traceloop_tool {
        return NameParts {
            method: Some(TOOLS_CALL),
            target: name.strip_suffix(".tool").filter(|t| !t.is_empty()),
        };
    }
    if let Some(method) = name.strip_suffix(".mcp").filter(|m| is_mcp_method(m)) {
        return NameParts {
            method: Some(method),
            target: None,
        };
    }
    let rest = name.strip_prefix(MCP_SEND_PREFIX).unwrap_or(name);
    let (first, target) = match rest.split_once(' ') {
        Some((first, target)) => (first, Some(target.trim()).filter(|t| !t.is_empty())),
        None => (rest, None),
    };
    if is_mcp_method(first) {
        NameParts {
            method: Some(first),
            target,
        }
    } else {
        NameParts::default()
    }
}

/// An MCP method name: `initialize`, `ping`, or 2 to 4 `/`-separated words of ASCII letters, digits
/// and `_`, each starting with a letter (`tools/call`, `notifications/initialized`,
/// `resources/templates/list`, `logging/setLevel`). Future methods of that shape are accepted too.
pub(super) fn is_mcp_method(s: &str) -> bool {
    if s == "initialize" || s == "ping" {
        return true;
    }
    if s.len() > NAME_METHOD_BYTES_MAX {
        return false;
    }
    let word_ok = |w: &str| {
        let mut bytes = w.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let mut words = 0;
    for word in s.split('/') {
        if !word_ok(word) {
            return false;
        }
        words += 1;
    }
    (2..=4).contains(&words)
}

#[cfg(test)]
mod tests;
