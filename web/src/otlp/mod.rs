//! OTLP/HTTP trace ingest, minus the HTTP: body decoding (protobuf and OTLP/JSON), normalization into
//! canonical [`SpanRecord`](mcp_obs_storage::model::SpanRecord)s, and response bodies.
//!
//! The HTTP layer calls, in order: [`Encoding::from_content_type`], [`decode()`], [`span_count`] (to
//! enforce `spans_per_request_max`), [`normalize()`], then [`encode_export_response`] or, on failure,
//! [`encode_status`].

mod attrs;
mod canonical;
pub mod decode;
pub mod json;
mod json_scalar;
mod limits;
pub mod normalize;
pub mod protobuf_fast;
mod reject;
pub mod response;
mod sampling;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod test_support;

pub use canonical::TOOL_ERROR;
pub use decode::{decode, decode_protobuf, DecodeError};
pub use json::decode_json;
pub use normalize::{normalize, span_count, NormalizeLimits, Normalized, Stamp, TRUNCATED_KEY};
pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
pub use protobuf_fast::compare::same_normalized;
pub use protobuf_fast::{decode_normalize_protobuf, FastIngest};
pub use reject::Reject;
pub use response::{encode_export_response, encode_status, grpc_code, Encoding, Status};
pub use sampling::{probability_from_tracestate, SAMPLE_PROBABILITY_KEY};
