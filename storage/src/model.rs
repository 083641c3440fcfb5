//! The canonical span record shared by ingest (which produces it) and the span store (which keeps it).
//!
//! Everything here is plain data: no I/O, no encoding. Normalization (in `web`) turns OTLP spans into
//! [`SpanRecord`]s; the span store encodes them column-wise and hands [`SpanRecord`]s back on read.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A span's short strings (MCP fields, span name): kept inline up to 24 bytes, so most spans carry
/// no heap allocation for them. Ingest allocates these on its worker threads and the span writer
/// frees them; with one `String` per field that churn was about a sixth of ingest CPU (cross-thread
/// frees, cold free lists; docs/benchmarks.md "Inline span strings").
pub type Text = compact_str::CompactString;

/// Internal id of an organization (dense, assigned by the metadata store).
pub type OrgId = u32;
/// Internal id of an MCP server (dense, unique across organizations).
pub type ServerId = u32;
/// Internal id of a user.
pub type UserId = u32;

/// Which key environment a span arrived with. `test` spans are kept apart from `live` analytics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Env {
    Live = 0,
    Test = 1,
}

impl Env {
    pub fn as_str(self) -> &'static str {
        match self {
            Env::Live => "live",
            Env::Test => "test",
        }
    }
    pub fn parse(s: &str) -> Option<Env> {
        match s {
            "live" => Some(Env::Live),
            "test" => Some(Env::Test),
            _ => None,
        }
    }
    pub fn from_u8(v: u8) -> Option<Env> {
        match v {
            0 => Some(Env::Live),
            1 => Some(Env::Test),
            _ => None,
        }
    }
}

/// OTLP span kind, as its protobuf enum number (0 unspecified .. 5 consumer).
pub type SpanKind = u8;
pub const SPAN_KIND_UNSPECIFIED: SpanKind = 0;
pub const SPAN_KIND_INTERNAL: SpanKind = 1;
pub const SPAN_KIND_SERVER: SpanKind = 2;
pub const SPAN_KIND_CLIENT: SpanKind = 3;

/// OTLP status code, as its protobuf enum number (0 unset, 1 ok, 2 error).
pub type StatusCode = u8;
pub const STATUS_UNSET: StatusCode = 0;
pub const STATUS_OK: StatusCode = 1;
pub const STATUS_ERROR: StatusCode = 2;

/// An OTLP `AnyValue`, kept losslessly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Str(Text),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AttrValue>),
    KvList(Vec<KeyValue>),
}

/// One attribute: key and value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Text,
    pub value: AttrValue,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub time_unix_nano: u64,
    pub name: String,
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub trace_state: String,
    pub attributes: Vec<KeyValue>,
}

/// The resource and instrumentation scope a span was exported under. Many spans share one, so the
/// span store keeps it once per block (dictionary) rather than once per span.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanOrigin {
    pub resource: Vec<KeyValue>,
    pub scope_name: String,
    pub scope_version: String,
}

/// The canonical MCP fields (design.md section 4). `None` means the span did not carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpFields {
    pub method: Option<Text>,
    pub tool: Option<Text>,
    pub prompt: Option<Text>,
    pub resource_uri: Option<Text>,
    pub request_id: Option<Text>,
    pub session_id: Option<Text>,
    pub user_id: Option<Text>,
    pub client_name: Option<Text>,
    pub client_version: Option<Text>,
    /// `tool_error`, a JSON-RPC code such as `-32602`, or an exception type.
    pub error_type: Option<Text>,
    pub transport: Option<Text>,
    pub protocol_version: Option<Text>,
}

impl McpFields {
    /// Every field with its canonical name, in the order the API documents them.
    pub fn named(&self) -> [(&'static str, &Option<Text>); 12] {
        [
            ("method", &self.method),
            ("tool", &self.tool),
            ("prompt", &self.prompt),
            ("resource_uri", &self.resource_uri),
            ("request_id", &self.request_id),
            ("session_id", &self.session_id),
            ("user_id", &self.user_id),
            ("client_name", &self.client_name),
            ("client_version", &self.client_version),
            ("error_type", &self.error_type),
            ("transport", &self.transport),
            ("protocol_version", &self.protocol_version),
        ]
    }
}

/// One normalized span, ready to store. Organization, server and env come from the API key, never
/// from the payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    pub org_id: OrgId,
    pub server_id: ServerId,
    pub env: Env,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zero when the span is a root.
    pub parent_span_id: [u8; 8],
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub name: Text,
    pub kind: SpanKind,
    pub status_code: StatusCode,
    pub status_message: String,
    pub flags: u32,
    pub trace_state: String,
    /// Probability in (0, 1] with which the sender kept this span; analytics weigh it 1/p.
    pub sample_probability: f64,
    /// `service.name` of the resource, kept as its own column for filtering and display.
    pub service_name: Text,
    pub mcp: McpFields,
    /// Attributes not consumed into canonical columns (the canonical keys are removed).
    pub attributes: Vec<KeyValue>,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
    /// Shared: ingest builds one per resource/scope of an export, and every span under it points
    /// at it (so a batch holds and frees it once, and the store can compare by pointer).
    pub origin: Arc<SpanOrigin>,
    /// OTLP dropped counts plus what our own limits dropped (attributes over the count limit).
    pub dropped_attributes_count: u32,
    pub dropped_events_count: u32,
    pub dropped_links_count: u32,
}

impl SpanRecord {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
    /// An MCP request span: one that carries a method. Only these count in analytics.
    pub fn is_mcp_request(&self) -> bool {
        self.mcp.method.is_some()
    }
    pub fn is_error(&self) -> bool {
        self.status_code == STATUS_ERROR || self.mcp.error_type.is_some()
    }
}

/// Nanoseconds in one UTC day: the width of one time partition.
pub const DAY_NANOS: u64 = 86_400 * 1_000_000_000;

/// The UTC day number (days since 1970-01-01) a timestamp falls in.
pub fn day_of(unix_nano: u64) -> u32 {
    (unix_nano / DAY_NANOS) as u32
}
