//! Request-body decoding entry points and [`DecodeError`], the one error a client sees for a body
//! we cannot read (HTTP 400).

use super::json::decode_json;
use super::response::Encoding;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// Longest decoder detail we pass on. Parser messages can quote input (an unknown enum name, say),
/// so they are capped to keep error bodies small.
const DETAIL_BYTES_MAX: usize = 200;

/// Why a body could not be decoded. The message is safe to send back to the client: it describes
/// the payload, never our internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("invalid OTLP protobuf body: {0}")]
    Protobuf(String),
    #[error("invalid OTLP JSON body: {0}")]
    Json(String),
}

impl DecodeError {
    pub(super) fn json(detail: impl std::fmt::Display) -> DecodeError {
        DecodeError::Json(capped(detail))
    }
}

fn capped(detail: impl std::fmt::Display) -> String {
    let mut s = detail.to_string();
    super::limits::truncate_utf8(&mut s, DETAIL_BYTES_MAX);
    s
}

/// Decodes a binary protobuf `ExportTraceServiceRequest`. prost bounds message nesting (depth 100),
/// so hostile nesting of `AnyValue`s fails cleanly instead of exhausting the stack.
pub fn decode_protobuf(body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    ExportTraceServiceRequest::decode(body).map_err(|e| DecodeError::Protobuf(capped(e)))
}

/// Decodes a body in the given encoding (already decompressed).
pub fn decode(enc: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    match enc {
        Encoding::Protobuf => decode_protobuf(body),
        Encoding::Json => decode_json(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_protobuf_is_an_error() {
        let err = decode_protobuf(&[0xff, 0xff, 0xff]).expect_err("garbage");
        assert!(err.to_string().starts_with("invalid OTLP protobuf body"));
    }

    #[test]
    fn empty_bodies_are_empty_requests() {
        assert_eq!(decode_protobuf(b"").map(|r| r.resource_spans.len()), Ok(0));
        assert_eq!(decode_json(b"{}").map(|r| r.resource_spans.len()), Ok(0));
    }

    #[test]
    fn error_detail_is_capped() {
        // serde_json quotes the offending string in "invalid type" messages.
        let long = "X".repeat(10_000);
        let body = format!(r#"{{"resourceSpans":[{{"scopeSpans":"{long}"}}]}}"#);
        let err = decode_json(body.as_bytes()).expect_err("wrong type");
        assert!(err.to_string().len() < DETAIL_BYTES_MAX + 40, "{err}");
    }
}
