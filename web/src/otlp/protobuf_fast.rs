//! Protobuf ingest without the intermediate `opentelemetry-proto` structs: a hand-written,
//! bounds-checked reader of `ExportTraceServiceRequest` that borrows strings and bytes from the body
//! while it scans, and allocates only what the final
//! [`SpanRecord`](mcp_obs_storage::model::SpanRecord)s own.
//!
//! It produces exactly what `normalize(decode_protobuf(body)?, stamp, limits)` produces (the
//! differential tests and the `otlp_protobuf_fast` fuzz target hold it to that), so it follows
//! prost's decoding rules: unknown fields (groups included) are skipped, the last occurrence of a
//! scalar wins, repeated fields append, a message field seen twice is merged (an `AnyValue` keeps
//! the last value of its oneof, and two arrays or key-value lists merge), strings must be UTF-8,
//! and message nesting is limited to prost's recursion limit (100).
//!
//! The request's messages are read in one pass, except that a `ResourceSpans` and a `ScopeSpans` are
//! scanned twice: first for the resource (or scope), which every span under it needs, then for the
//! spans. Any malformed byte anywhere fails the whole body, as with prost.

mod attrs;
pub mod compare;
mod messages;
mod span;
mod wire;

use std::sync::Arc;

use super::decode::DecodeError;
use super::normalize::{NormalizeLimits, Normalized, Stamp};
use super::reject::{Reject, Tally};
use attrs::Clamp;
use mcp_obs_storage::model::{KeyValue, SpanOrigin};
use messages::{resource, scope, SpanRaw};
use span::{convert_resource, normalize_span};
use wire::{expect, nested, Reader, Res, RECURSION_LIMIT, WT_LEN};

/// Wire bytes per span assumed when sizing a request's record vector up front (measured 465-477
/// for realistic MCP tool calls; a smaller guess over-reserves, a larger one grows).
const SPAN_WIRE_BYTES_GUESS: usize = 384;

/// The result of [`decode_normalize_protobuf`]: what [`super::span_count`] and
/// [`super::normalize()`] give for the decoded request.
#[derive(Debug, Clone)]
pub struct FastIngest {
    /// Spans in the request (valid or not), for the `spans_per_request_max` check.
    pub span_count: usize,
    pub normalized: Normalized,
}

/// Decodes a protobuf `ExportTraceServiceRequest` body and normalizes its spans in one go. Same
/// result as `decode_protobuf` followed by `span_count` and `normalize`; an undecodable body is a
/// [`DecodeError::Protobuf`] (the detail text differs from prost's).
pub fn decode_normalize_protobuf(
    body: &[u8],
    stamp: &Stamp,
    limits: &NormalizeLimits,
) -> Result<FastIngest, DecodeError> {
    let mut run = Run {
        stamp,
        limits,
        out: Normalized {
            // Sized from the body, so a request's records are not moved as the vector grows.
            spans: Vec::with_capacity(
                (body.len() / SPAN_WIRE_BYTES_GUESS).min(limits.spans_per_request_max),
            ),
            rejected: 0,
            error_message: String::new(),
            truncated_values: 0,
        },
        tally: Tally::default(),
        span_count: 0,
        scratch: SpanRaw::default(),
    };
    run.request(body)
        .map_err(|e| DecodeError::Protobuf(e.message().to_owned()))?;
    let Run {
        mut out,
        tally,
        span_count,
        ..
    } = run;
    out.rejected = tally.total();
    out.error_message = tally.summary();
    Ok(FastIngest {
        span_count,
        normalized: out,
    })
}

struct Run<'s, 'a> {
    stamp: &'s Stamp,
    limits: &'s NormalizeLimits,
    out: Normalized,
    tally: Tally,
    /// Spans seen so far, valid or not.
    span_count: usize,
    scratch: SpanRaw<'a>,
}

impl<'a> Run<'_, 'a> {
    fn request(&mut self, body: &'a [u8]) -> Res<()> {
        let mut r = Reader::new(body);
        while r.has_more() {
            let (tag, wt) = r.key()?;
            if tag == 1 {
                expect(wt, WT_LEN)?;
                let inner = nested(RECURSION_LIMIT)?;
                self.resource_spans(r.len_delimited()?, inner)?;
            } else {
                r.skip(tag, wt, RECURSION_LIMIT)?;
            }
        }
        Ok(())
    }

    fn resource_spans(&mut self, buf: &'a [u8], depth: u32) -> Res<()> {
        // First scan: the resource, and validation of everything but the scope spans.
        let mut raw = Vec::new();
        let mut r = Reader::new(buf);
        while r.has_more() {
            let (tag, wt) = r.key()?;
            match tag {
                1 => {
                    expect(wt, WT_LEN)?;
                    let inner = nested(depth)?;
                    resource(r.len_delimited()?, &mut raw, inner)?;
                }
                2 => {
                    r.len_field(wt)?;
                }
                3 => {
                    r.str_field(wt)?;
                }
                _ => r.skip(tag, wt, depth)?,
            }
        }
        let (resource, service_name, truncated) = convert_resource(raw, self.limits);
        self.out.truncated_values += truncated;
        // Second scan: the scope spans, in order.
        let mut r = Reader::new(buf);
        while r.has_more() {
            let (tag, wt) = r.key()?;
            if tag == 2 {
                let inner = nested(depth)?;
                self.scope_spans(r.len_delimited()?, inner, &resource, &service_name)?;
            } else {
                r.skip_validated(tag, wt)?;
            }
        }
        Ok(())
    }

    fn scope_spans(
        &mut self,
        buf: &'a [u8],
        depth: u32,
        resource: &[KeyValue],
        service_name: &str,
    ) -> Res<()> {
        let (mut name, mut version) = ("", "");
        let mut r = Reader::new(buf);
        while r.has_more() {
            let (tag, wt) = r.key()?;
            match tag {
                1 => {
                    expect(wt, WT_LEN)?;
                    let inner = nested(depth)?;
                    scope(r.len_delimited()?, &mut name, &mut version, inner)?;
                }
                2 => {
                    r.len_field(wt)?;
                }
                3 => {
                    r.str_field(wt)?;
                }
                _ => r.skip(tag, wt, depth)?,
            }
        }
        let mut scope_clamp = Clamp::new(self.limits);
        let origin = Arc::new(SpanOrigin {
            resource: resource.to_vec(),
            scope_name: scope_clamp.str(name),
            scope_version: scope_clamp.str(version),
        });
        self.out.truncated_values += scope_clamp.truncated;

        let mut r = Reader::new(buf);
        while r.has_more() {
            let (tag, wt) = r.key()?;
            if tag != 2 {
                r.skip_validated(tag, wt)?;
                continue;
            }
            let inner = nested(depth)?;
            let mut raw = std::mem::take(&mut self.scratch);
            raw.reset();
            messages::span(r.len_delimited()?, &mut raw, inner)?;
            self.span_count = self.span_count.saturating_add(1);
            if self.span_count > self.limits.spans_per_request_max {
                self.tally.add(Reject::TooManySpans);
            } else {
                match normalize_span(&mut raw, &origin, service_name, self.stamp, self.limits) {
                    Ok((record, truncated)) => {
                        self.out.truncated_values += truncated;
                        self.out.spans.push(record);
                    }
                    Err(reason) => self.tally.add(reason),
                }
            }
            self.scratch = raw;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
