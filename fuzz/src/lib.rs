//! Shared bodies of the fuzz targets: decode untrusted bytes, normalize what decodes, and check the
//! invariants that must hold for any input. A violated invariant panics, which the fuzzer reports.

use mcp_obs_storage::model::Env;
use mcp_obs_web::otlp::{
    decode_json, decode_normalize_protobuf, decode_protobuf, normalize, same_normalized,
    span_count, ExportTraceServiceRequest, NormalizeLimits, Normalized, Stamp, TRUNCATED_KEY,
};

/// The window the fixture corpus falls in (late 2026), so seeds exercise the accept path.
const OLDEST_UNIX_NANO: u64 = 1_700_000_000_000_000_000;
const NEWEST_UNIX_NANO: u64 = 1_900_000_000_000_000_000;

fn stamp() -> Stamp {
    Stamp {
        org_id: 1,
        server_id: 2,
        env: Env::Live,
        oldest_unix_nano: OLDEST_UNIX_NANO,
        newest_unix_nano: NEWEST_UNIX_NANO,
    }
}

/// Tiny limits so that truncation, caps and the request limit are all reachable.
const TINY: NormalizeLimits = NormalizeLimits {
    spans_per_request_max: 3,
    attributes_per_span_max: 2,
    attribute_value_bytes_max: 5,
    events_per_span_max: 1,
    links_per_span_max: 1,
};

/// Normalizes with the given limits and checks the invariants of the result.
fn normalize_checked(req: ExportTraceServiceRequest, limits: &NormalizeLimits) {
    let input = span_count(&req) as u64;
    let out: Normalized = normalize(req, &stamp(), limits);
    assert_eq!(
        out.spans.len() as u64 + out.rejected,
        input,
        "every span accounted for"
    );
    assert_eq!(out.error_message.is_empty(), out.rejected == 0);
    for s in &out.spans {
        assert_eq!(
            (s.org_id, s.server_id),
            (1, 2),
            "stamp only from the caller"
        );
        assert!(s.sample_probability > 0.0 && s.sample_probability <= 1.0);
        assert!(s.start_unix_nano >= OLDEST_UNIX_NANO && s.start_unix_nano <= NEWEST_UNIX_NANO);
        assert!(s.end_unix_nano >= s.start_unix_nano);
        assert!(s.name.len() <= limits.attribute_value_bytes_max);
        assert!(s.attributes.len() <= limits.attributes_per_span_max + 1);
        assert!(
            s.attributes
                .iter()
                .filter(|kv| kv.key == TRUNCATED_KEY)
                .count()
                <= 1
        );
        assert!(s.events.len() <= limits.events_per_span_max);
        assert!(s.links.len() <= limits.links_per_span_max);
    }
}

fn normalize_both(req: ExportTraceServiceRequest) {
    normalize_checked(req.clone(), &TINY);
    normalize_checked(req, &NormalizeLimits::default());
}

/// Target `otlp_protobuf`: the protobuf decoder must never panic; what decodes must normalize.
pub fn otlp_protobuf(data: &[u8]) {
    if let Ok(req) = decode_protobuf(data) {
        normalize_checked(req, &NormalizeLimits::default());
    }
}

/// Target `otlp_json`: the OTLP/JSON decoder must never panic; what decodes must normalize.
pub fn otlp_json(data: &[u8]) {
    if let Ok(req) = decode_json(data) {
        normalize_both(req);
    }
}

/// Target `normalize`: arbitrary bytes as protobuf, then normalization under default and tiny limits.
pub fn normalize_protobuf(data: &[u8]) {
    if let Ok(req) = decode_protobuf(data) {
        normalize_both(req);
    }
}

/// Target `otlp_protobuf_fast` (differential): the one-pass protobuf path must give exactly what
/// `decode_protobuf` + `span_count` + `normalize` give, under tiny and default limits; both fail
/// on the same inputs.
pub fn otlp_protobuf_fast(data: &[u8]) {
    for limits in [TINY, NormalizeLimits::default()] {
        let old = decode_protobuf(data).map(|req| {
            let count = span_count(&req);
            (count, normalize(req, &stamp(), &limits))
        });
        let new = decode_normalize_protobuf(data, &stamp(), &limits);
        match (old, new) {
            (Err(_), Err(_)) => {}
            (Ok((count, old)), Ok(new)) => {
                assert_eq!(count, new.span_count, "span count differs");
                assert!(
                    same_normalized(&old, &new.normalized),
                    "fast path differs\nold: {old:#?}\nnew: {:#?}",
                    new.normalized
                );
            }
            (old, new) => panic!(
                "one path failed: old ok={} new ok={} ({:?})",
                old.is_ok(),
                new.is_ok(),
                new.as_ref().err()
            ),
        }
    }
}
