//! The fixed column set of a span block: column ids, and which `SpanRecord` string field each
//! dictionary column holds. Shared by the block encoder and decoder so the two cannot disagree.

use crate::model::{SpanRecord, Text};

pub const C_START: usize = 0;
pub const C_END: usize = 1;
pub const C_TRACE: usize = 2;
pub const C_SPAN: usize = 3;
pub const C_PARENT: usize = 4;
pub const C_ENV: usize = 5;
pub const C_KIND: usize = 6;
pub const C_STATUS: usize = 7;
pub const C_COUNTS: usize = 8;
pub const C_PROB: usize = 9;
pub const C_ORIGIN: usize = 10;
pub const C_EXTRA: usize = 11;
/// First of the dictionary-encoded string columns, in [`StrField`] order.
pub const C_STR0: usize = 12;
pub const NCOLS: usize = C_STR0 + StrField::ALL.len();

/// Dictionary entries per segment of a string column stored in row groups: a returned row
/// decompresses the run of entries holding its value, not the whole dictionary.
pub const DICT_SEGMENT_ENTRIES: usize = 256;

const _: () = assert!(NCOLS == 28);

/// The string fields kept as per-block dictionaries. `None` is only possible for the MCP fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrField {
    Name,
    StatusMessage,
    TraceState,
    ServiceName,
    Method,
    Tool,
    Prompt,
    ResourceUri,
    RequestId,
    SessionId,
    UserId,
    ClientName,
    ClientVersion,
    ErrorType,
    Transport,
    ProtocolVersion,
}

impl StrField {
    pub const ALL: [StrField; 16] = [
        StrField::Name,
        StrField::StatusMessage,
        StrField::TraceState,
        StrField::ServiceName,
        StrField::Method,
        StrField::Tool,
        StrField::Prompt,
        StrField::ResourceUri,
        StrField::RequestId,
        StrField::SessionId,
        StrField::UserId,
        StrField::ClientName,
        StrField::ClientVersion,
        StrField::ErrorType,
        StrField::Transport,
        StrField::ProtocolVersion,
    ];

    pub(crate) fn column(self) -> usize {
        C_STR0 + self as usize
    }

    /// Whether the field is an `Option` in the model (a decoded `None` is corruption otherwise).
    pub fn optional(self) -> bool {
        !matches!(
            self,
            StrField::Name | StrField::StatusMessage | StrField::TraceState | StrField::ServiceName
        )
    }

    pub fn get(self, s: &SpanRecord) -> Option<&str> {
        let m = &s.mcp;
        match self {
            StrField::Name => Some(&s.name),
            StrField::StatusMessage => Some(&s.status_message),
            StrField::TraceState => Some(&s.trace_state),
            StrField::ServiceName => Some(&s.service_name),
            StrField::Method => m.method.as_deref(),
            StrField::Tool => m.tool.as_deref(),
            StrField::Prompt => m.prompt.as_deref(),
            StrField::ResourceUri => m.resource_uri.as_deref(),
            StrField::RequestId => m.request_id.as_deref(),
            StrField::SessionId => m.session_id.as_deref(),
            StrField::UserId => m.user_id.as_deref(),
            StrField::ClientName => m.client_name.as_deref(),
            StrField::ClientVersion => m.client_version.as_deref(),
            StrField::ErrorType => m.error_type.as_deref(),
            StrField::Transport => m.transport.as_deref(),
            StrField::ProtocolVersion => m.protocol_version.as_deref(),
        }
    }

    /// Stores a decoded value (a short one inline, without allocating); the caller has checked
    /// that `None` only reaches optional fields.
    pub fn set(self, s: &mut SpanRecord, v: Option<&str>) {
        let m = &mut s.mcp;
        let t = || v.map(Text::from);
        match self {
            StrField::Name => s.name = t().unwrap_or_default(),
            StrField::StatusMessage => s.status_message = v.unwrap_or_default().to_owned(),
            StrField::TraceState => s.trace_state = v.unwrap_or_default().to_owned(),
            StrField::ServiceName => s.service_name = t().unwrap_or_default(),
            StrField::Method => m.method = t(),
            StrField::Tool => m.tool = t(),
            StrField::Prompt => m.prompt = t(),
            StrField::ResourceUri => m.resource_uri = t(),
            StrField::RequestId => m.request_id = t(),
            StrField::SessionId => m.session_id = t(),
            StrField::UserId => m.user_id = t(),
            StrField::ClientName => m.client_name = t(),
            StrField::ClientVersion => m.client_version = t(),
            StrField::ErrorType => m.error_type = t(),
            StrField::Transport => m.transport = t(),
            StrField::ProtocolVersion => m.protocol_version = t(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order() {
        for (i, f) in StrField::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
        }
    }
}
