//! OTLP/HTTP response bodies: `ExportTraceServiceResponse` and `google.rpc.Status`, in either encoding.
//!
//! The OTLP/HTTP spec answers in the encoding of the request, so every encoder here takes an
//! [`Encoding`]. JSON follows the proto3 JSON mapping: lowerCamelCase names, int64 as a string,
//! default-valued fields left out (a fully successful export is `{}`).

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;

/// The two OTLP/HTTP body encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub const PROTOBUF_CONTENT_TYPE: &'static str = "application/x-protobuf";
    pub const JSON_CONTENT_TYPE: &'static str = "application/json";

    /// The `Content-Type` to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => Self::PROTOBUF_CONTENT_TYPE,
            Encoding::Json => Self::JSON_CONTENT_TYPE,
        }
    }

    /// The encoding named by a request `Content-Type` header, ignoring parameters such as
    /// `; charset=utf-8` and letter case. `None` means the HTTP layer should answer 415.
    pub fn from_content_type(header: &str) -> Option<Encoding> {
        let media_type = header.split(';').next().unwrap_or("").trim();
        // `application/protobuf` is not in the OTLP spec, but some clients send it.
        if media_type.eq_ignore_ascii_case(Self::PROTOBUF_CONTENT_TYPE)
            || media_type.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Encoding::Protobuf)
        } else if media_type.eq_ignore_ascii_case(Self::JSON_CONTENT_TYPE) {
            Some(Encoding::Json)
        } else {
            None
        }
    }
}

/// gRPC status codes used in `google.rpc.Status` bodies (the OTLP/HTTP spec borrows them).
pub mod grpc_code {
    pub const OK: i32 = 0;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// `google.rpc.Status`, defined here because no crate we depend on ships it as a prost message.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`, only so that [`Status`] has its exact wire shape. We never fill it.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// The 200 body of an export. `rejected == 0` with an empty message is a full success and carries no
/// `partial_success` at all, as the spec asks.
pub fn encode_export_response(enc: Encoding, rejected: u64, msg: &str) -> Vec<u8> {
    // The wire field is int64; a count that large cannot happen, but saturate rather than wrap.
    let rejected_spans = i64::try_from(rejected).unwrap_or(i64::MAX);
    match enc {
        Encoding::Protobuf => {
            let partial_success =
                (rejected_spans != 0 || !msg.is_empty()).then(|| ExportTracePartialSuccess {
                    rejected_spans,
                    error_message: msg.to_owned(),
                });
            ExportTraceServiceResponse { partial_success }.encode_to_vec()
        }
        Encoding::Json => {
            // Written by hand so the field order is the spec's, whatever serde_json's map features.
            let mut fields = Vec::with_capacity(2);
            if rejected_spans != 0 {
                fields.push(format!("\"rejectedSpans\":\"{rejected_spans}\""));
            }
            if !msg.is_empty() {
                fields.push(format!("\"errorMessage\":{}", json_string(msg)));
            }
            if fields.is_empty() {
                b"{}".to_vec()
            } else {
                format!("{{\"partialSuccess\":{{{}}}}}", fields.join(",")).into_bytes()
            }
        }
    }
}

/// A JSON string literal, escaped by serde_json (infallible for `&str`).
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// An error body (`google.rpc.Status`) for 4xx/5xx answers.
pub fn encode_status(enc: Encoding, grpc_code: i32, msg: &str) -> Vec<u8> {
    match enc {
        Encoding::Protobuf => Status {
            code: grpc_code,
            message: msg.to_owned(),
            details: Vec::new(),
        }
        .encode_to_vec(),
        Encoding::Json => {
            let mut fields = Vec::with_capacity(2);
            if grpc_code != 0 {
                fields.push(format!("\"code\":{grpc_code}"));
            }
            if !msg.is_empty() {
                fields.push(format!("\"message\":{}", json_string(msg)));
            }
            format!("{{{}}}", fields.join(",")).into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_full_success_is_empty_object() {
        assert_eq!(encode_export_response(Encoding::Json, 0, ""), b"{}");
    }

    #[test]
    fn json_partial_success_uses_string_int64() {
        let body = encode_export_response(Encoding::Json, 3, "3 spans rejected: x \"y\"");
        assert_eq!(
            body,
            br#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"3 spans rejected: x \"y\""}}"#
        );
        let only_message = encode_export_response(Encoding::Json, 0, "warning");
        assert_eq!(
            only_message,
            br#"{"partialSuccess":{"errorMessage":"warning"}}"#
        );
    }

    #[test]
    fn protobuf_response_round_trips() {
        assert!(encode_export_response(Encoding::Protobuf, 0, "").is_empty());
        let body = encode_export_response(Encoding::Protobuf, 2, "bad ids");
        let decoded = ExportTraceServiceResponse::decode(body.as_slice()).expect("decode");
        let partial = decoded.partial_success.expect("partial_success");
        assert_eq!(partial.rejected_spans, 2);
        assert_eq!(partial.error_message, "bad ids");
    }

    #[test]
    fn huge_rejected_count_saturates() {
        let body = encode_export_response(Encoding::Protobuf, u64::MAX, "");
        let decoded = ExportTraceServiceResponse::decode(body.as_slice()).expect("decode");
        assert_eq!(
            decoded.partial_success.map(|p| p.rejected_spans),
            Some(i64::MAX)
        );
    }

    #[test]
    fn status_in_both_encodings() {
        let json = encode_status(Encoding::Json, grpc_code::INVALID_ARGUMENT, "bad body");
        assert_eq!(json, br#"{"code":3,"message":"bad body"}"#);
        let pb = encode_status(Encoding::Protobuf, grpc_code::UNAUTHENTICATED, "no key");
        let status = Status::decode(pb.as_slice()).expect("decode");
        assert_eq!(status.code, 16);
        assert_eq!(status.message, "no key");
        assert!(status.details.is_empty());
    }

    #[test]
    fn content_types() {
        assert_eq!(Encoding::Json.content_type(), "application/json");
        assert_eq!(Encoding::Protobuf.content_type(), "application/x-protobuf");
        assert_eq!(
            Encoding::from_content_type("Application/JSON; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type("application/protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
        assert_eq!(Encoding::from_content_type(""), None);
    }
}
