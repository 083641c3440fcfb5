//! Differential tests: the fast protobuf path against `decode_protobuf` + `span_count` + `normalize`
//! on random requests (with merged and unknown fields spliced in at every level), random byte
//! mutations of them, every captured fixture, and nesting around prost's recursion limit.

use super::super::proptests::{any_span, key_value, limits, request, stamp};
use super::super::test_support::{fixture_body, pb_fixture_names};
use super::super::{decode_protobuf, normalize, span_count};
use super::compare::same_normalized;
use super::*;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value as PValue, AnyValue, ArrayValue, InstrumentationScope, KeyValue as PKeyValue,
    KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use proptest::prelude::*;
use prost::Message;

/// Old path: prost structs, then normalize. `Err` carries nothing: messages may differ.
fn old_path(body: &[u8], limits: &NormalizeLimits) -> Result<(usize, Normalized), ()> {
    let req = decode_protobuf(body).map_err(|_| ())?;
    let count = span_count(&req);
    Ok((count, normalize(req, &stamp(), limits)))
}

fn new_path(body: &[u8], limits: &NormalizeLimits) -> Result<(usize, Normalized), ()> {
    match decode_normalize_protobuf(body, &stamp(), limits) {
        Ok(FastIngest {
            span_count,
            normalized,
        }) => Ok((span_count, normalized)),
        Err(e) => {
            assert!(matches!(e, DecodeError::Protobuf(_)), "{e:?}");
            assert!(e.to_string().starts_with("invalid OTLP protobuf body"));
            Err(())
        }
    }
}

/// Whether two outcomes are identical; both errors count as identical.
fn same_outcome(a: &Result<(usize, Normalized), ()>, b: &Result<(usize, Normalized), ()>) -> bool {
    match (a, b) {
        (Err(()), Err(())) => true,
        (Ok((ca, a)), Ok((cb, b))) => ca == cb && same_normalized(a, b),
        _ => false,
    }
}

fn check(body: &[u8], limits: &NormalizeLimits) {
    let old = old_path(body, limits);
    let new = new_path(body, limits);
    assert!(
        same_outcome(&old, &new),
        "fast path differs on {} bytes {:02x?}\nold: {old:#?}\nnew: {new:#?}",
        body.len(),
        body
    );
}

// --- a small wire writer, to build what prost's encoder never emits (merges, unknown fields) ---

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    put_varint(out, u64::from(tag) << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// An unknown field (numbers 17 and up are unknown in every OTLP trace message).
#[derive(Debug, Clone)]
enum Unknown {
    Varint(u32, u64),
    I64(u32, u64),
    I32(u32, u32),
    Len(u32, Vec<u8>),
    Group(u32, Vec<Unknown>),
}

fn put_unknown(out: &mut Vec<u8>, u: &Unknown) {
    match u {
        Unknown::Varint(tag, v) => {
            put_varint(out, u64::from(*tag) << 3);
            put_varint(out, *v);
        }
        Unknown::I64(tag, v) => {
            put_varint(out, u64::from(*tag) << 3 | 1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Unknown::I32(tag, v) => {
            put_varint(out, u64::from(*tag) << 3 | 5);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Unknown::Len(tag, bytes) => put_len(out, *tag, bytes),
        Unknown::Group(tag, inner) => {
            put_varint(out, u64::from(*tag) << 3 | 3);
            for u in inner {
                put_unknown(out, u);
            }
            put_varint(out, u64::from(*tag) << 3 | 4);
        }
    }
}

fn unknown() -> impl Strategy<Value = Unknown> {
    let tag = 17u32..2000;
    let leaf = prop_oneof![
        (tag.clone(), any::<u64>()).prop_map(|(t, v)| Unknown::Varint(t, v)),
        (tag.clone(), any::<u64>()).prop_map(|(t, v)| Unknown::I64(t, v)),
        (tag.clone(), any::<u32>()).prop_map(|(t, v)| Unknown::I32(t, v)),
        (tag.clone(), proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(t, v)| Unknown::Len(t, v)),
    ];
    leaf.prop_recursive(2, 8, 3, move |inner| {
        (17u32..2000, proptest::collection::vec(inner, 0..3))
            .prop_map(|(t, v)| Unknown::Group(t, v))
    })
}

fn unknowns() -> impl Strategy<Value = Vec<Unknown>> {
    proptest::collection::vec(unknown(), 0..2)
}

/// A value that merges interestingly with another (arrays and lists append).
fn mergeable_value() -> impl Strategy<Value = Option<PValue>> {
    let kv = key_value();
    prop_oneof![
        2 => super::super::proptests::any_value(),
        1 => proptest::collection::vec(kv, 0..3)
            .prop_map(|values| Some(PValue::KvlistValue(KeyValueList { values }))),
        1 => Just(Some(PValue::ArrayValue(ArrayValue {
            values: vec![AnyValue { value: Some(PValue::IntValue(1)) }, AnyValue { value: None }],
        }))),
        1 => Just(Some(PValue::StringValueStrindex(3))),
    ]
}

/// A span as raw bytes: one or two encodings (merged by the decoder), an attribute whose
/// `KeyValue` comes in two pieces (its `AnyValue` merged), and unknown fields.
fn span_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        any_span(),
        proptest::option::weighted(0.3, any_span()),
        proptest::option::weighted(0.5, (key_value(), mergeable_value(), mergeable_value())),
        unknowns(),
    )
        .prop_map(|(a, b, merged_kv, unknown)| {
            let mut out = a.encode_to_vec();
            if let Some(b) = b {
                out.extend(b.encode_to_vec());
            }
            if let Some((kv, v1, v2)) = merged_kv {
                let mut kv_bytes = kv.encode_to_vec();
                for v in [v1, v2] {
                    put_len(&mut kv_bytes, 2, &AnyValue { value: v }.encode_to_vec());
                }
                put_len(&mut out, 9, &kv_bytes);
            }
            for u in &unknown {
                put_unknown(&mut out, u);
            }
            out
        })
}

fn scope_spans_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(
            (
                "\\PC{0,6}",
                "\\PC{0,6}",
                proptest::collection::vec(key_value(), 0..2),
            ),
            0..3,
        ),
        proptest::collection::vec(span_bytes(), 0..4),
        unknowns(),
        any::<bool>(),
    )
        .prop_map(|(scopes, spans, unknown, scope_last)| {
            let mut scope_part = Vec::new();
            for (name, version, attributes) in scopes {
                let s = InstrumentationScope {
                    name,
                    version,
                    attributes,
                    dropped_attributes_count: 1,
                };
                put_len(&mut scope_part, 1, &s.encode_to_vec());
            }
            let mut span_part = Vec::new();
            for s in &spans {
                put_len(&mut span_part, 2, s);
            }
            let mut out = Vec::new();
            if scope_last {
                out.extend(span_part);
                out.extend(scope_part);
            } else {
                out.extend(scope_part);
                out.extend(span_part);
            }
            for u in &unknown {
                put_unknown(&mut out, u);
            }
            put_len(&mut out, 3, b"https://schema");
            out
        })
}

fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let resource_spans = (
        proptest::collection::vec(proptest::collection::vec(key_value(), 0..4), 0..3),
        proptest::collection::vec(scope_spans_bytes(), 0..3),
        unknowns(),
        any::<bool>(),
    )
        .prop_map(|(resources, scopes, unknown, resource_last)| {
            let mut res_part = Vec::new();
            for attributes in resources {
                let r = Resource {
                    attributes,
                    dropped_attributes_count: 2,
                    entity_refs: Vec::new(),
                };
                put_len(&mut res_part, 1, &r.encode_to_vec());
            }
            let mut scope_part = Vec::new();
            for s in &scopes {
                put_len(&mut scope_part, 2, s);
            }
            let mut out = Vec::new();
            for u in &unknown {
                put_unknown(&mut out, u);
            }
            if resource_last {
                out.extend(scope_part);
                out.extend(res_part);
            } else {
                out.extend(res_part);
                out.extend(scope_part);
            }
            out
        });
    (proptest::collection::vec(resource_spans, 0..3), unknowns()).prop_map(|(rs, unknown)| {
        let mut out = Vec::new();
        for r in &rs {
            put_len(&mut out, 1, r);
        }
        for u in &unknown {
            put_unknown(&mut out, u);
        }
        out
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutate(body: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        if body.is_empty() {
            return;
        }
        let at = |i: &usize| i % body.len();
        match m {
            Mutation::Flip(i, bit) => {
                let i = at(i);
                body[i] ^= 1 << (bit % 8);
            }
            Mutation::Set(i, b) => {
                let i = at(i);
                body[i] = *b;
            }
            Mutation::Insert(i, b) => {
                let i = at(i);
                body.insert(i, *b);
            }
            Mutation::Remove(i) => {
                let i = at(i);
                body.remove(i);
            }
            Mutation::Truncate(i) => {
                let i = at(i);
                body.truncate(i);
            }
        }
    }
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u8),
                Just(0x80),
                Just(0xff),
                Just(0x0b),
                Just(0x0c),
                any::<u8>()
            ]
        )
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ];
    proptest::collection::vec(one, 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn same_as_prost_and_normalize_on_valid_requests(req in request(), limits in limits()) {
        check(&req.encode_to_vec(), &limits);
    }

    #[test]
    fn same_on_merged_fields_and_unknown_fields(body in request_bytes(), limits in limits()) {
        check(&body, &limits);
    }

    #[test]
    fn same_on_mutated_bodies(
        body in request_bytes(),
        mutations in mutations(),
        limits in limits(),
    ) {
        let mut body = body;
        mutate(&mut body, &mutations);
        check(&body, &limits);
    }

    #[test]
    fn same_on_mutated_prost_encodings(req in request(), mutations in mutations()) {
        let mut body = req.encode_to_vec();
        mutate(&mut body, &mutations);
        check(&body, &NormalizeLimits::default());
    }

    #[test]
    fn same_on_random_bytes(body in proptest::collection::vec(any::<u8>(), 0..64)) {
        check(&body, &NormalizeLimits::default());
    }
}

#[test]
fn every_fixture_decodes_the_same() {
    let names = pb_fixture_names();
    assert!(!names.is_empty());
    for name in names {
        let body = fixture_body(&name);
        for limits in [
            NormalizeLimits::default(),
            NormalizeLimits {
                spans_per_request_max: 3,
                attributes_per_span_max: 2,
                attribute_value_bytes_max: 5,
                events_per_span_max: 1,
                links_per_span_max: 1,
            },
        ] {
            let old = old_path(&body, &limits);
            assert!(old.is_ok(), "{name}");
            let new = new_path(&body, &limits);
            assert!(same_outcome(&old, &new), "{name}: {old:#?}\n{new:#?}");
        }
    }
}

/// An attribute whose value is `depth` nested arrays (or key-value lists) around an integer.
fn nested_attribute(depth: usize, kvlist: bool) -> PKeyValue {
    let mut value = AnyValue {
        value: Some(PValue::IntValue(7)),
    };
    for _ in 0..depth {
        value = AnyValue {
            value: Some(if kvlist {
                PValue::KvlistValue(KeyValueList {
                    values: vec![PKeyValue {
                        key: "k".into(),
                        value: Some(value),
                        key_strindex: 0,
                    }],
                })
            } else {
                PValue::ArrayValue(ArrayValue {
                    values: vec![value],
                })
            }),
        };
    }
    PKeyValue {
        key: "deep".into(),
        value: Some(value),
        key_strindex: 0,
    }
}

/// Hand-encoded, since prost's encoder does not mind depth but building the struct recursively
/// does; both decoders must agree exactly where the recursion limit starts failing.
#[test]
fn nesting_around_the_recursion_limit() {
    let mut outcomes = Vec::new();
    for depth in 0..60 {
        for kvlist in [false, true] {
            let span = Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                start_time_unix_nano: stamp().oldest_unix_nano + 1,
                end_time_unix_nano: stamp().oldest_unix_nano + 2,
                attributes: vec![nested_attribute(depth, kvlist)],
                ..Span::default()
            };
            let mut body = Vec::new();
            let mut ss = Vec::new();
            put_len(&mut ss, 2, &span.encode_to_vec());
            let mut rs = Vec::new();
            put_len(&mut rs, 2, &ss);
            put_len(&mut body, 1, &rs);
            let limits = NormalizeLimits::default();
            let old = old_path(&body, &limits);
            let new = new_path(&body, &limits);
            assert!(same_outcome(&old, &new), "depth {depth} kvlist {kvlist}");
            outcomes.push(old.is_ok());
        }
    }
    assert!(outcomes.iter().any(|ok| *ok) && outcomes.iter().any(|ok| !ok));
}

#[test]
fn groups_at_the_recursion_limit() {
    // An unknown field that is a group nested `n` deep, at the top level.
    for n in 95..=101 {
        let mut body = Vec::new();
        for _ in 0..n {
            put_varint(&mut body, 20 << 3 | 3);
        }
        for _ in 0..n {
            put_varint(&mut body, 20 << 3 | 4);
        }
        check(&body, &NormalizeLimits::default());
    }
}

#[test]
fn edge_cases_agree() {
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0x0a, 0x00],
        vec![0x0a, 0x01],
        vec![0x0c],
        vec![0x0b, 0x0c],
        vec![0xa3, 0x01, 0xa4, 0x01],
        vec![0x0a, 0x02, 0x12, 0x00],
        // Ten-byte varints at the overflow edge, as an unknown field.
        vec![
            0x98, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
        vec![
            0x98, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ],
        vec![
            0x98, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ],
        // Non-minimal varint lengths and keys.
        vec![0x8a, 0x00, 0x80, 0x00],
        // Key above u32::MAX.
        vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
    ];
    for body in cases {
        check(&body, &NormalizeLimits::default());
    }
}

/// Every looked-up key is found by its bytes, as itself; its near misses (one byte changed,
/// dropped or added, other case) are other keys or none.
#[test]
fn key_table_finds_every_key_and_nothing_else() {
    use super::attrs::{key_id, KEYS};
    for (i, k) in KEYS.iter().enumerate() {
        assert_eq!(key_id(k.as_bytes()), Some((i as u8, *k)), "{k}");
        let b = k.as_bytes();
        let mut misses = vec![
            b[..b.len() - 1].to_vec(),
            [b, b"x"].concat(),
            k.to_uppercase().into_bytes(),
        ];
        for pos in [0, b.len() / 2, b.len() - 1] {
            let mut m = b.to_vec();
            m[pos] ^= 1;
            misses.push(m);
        }
        for m in misses {
            let want = KEYS
                .iter()
                .position(|o| o.as_bytes() == m.as_slice())
                .map(|j| (j as u8, KEYS[j]));
            assert_eq!(key_id(&m), want, "{:?}", String::from_utf8_lossy(&m));
        }
    }
    assert_eq!(key_id(b""), None);
    assert_eq!(key_id(&[b'a'; 40]), None);
}

/// A `KeyValue` whose key field appears twice (the last one counts, and every one must be UTF-8):
/// known then unknown, unknown then known, known then empty, empty then known, known then
/// invalid, invalid then known, known then non-ASCII. Both paths agree on each, and a known key
/// read last is the one normalization sees.
#[test]
fn repeated_key_fields_agree() {
    let known = |k: &str| {
        let mut f = Vec::new();
        put_len(&mut f, 1, k.as_bytes());
        f
    };
    let raw = |b: &[u8]| {
        let mut f = Vec::new();
        put_len(&mut f, 1, b);
        f
    };
    let orders: Vec<(Vec<u8>, Option<&str>)> = vec![
        ([known("user.id"), known("abc")].concat(), None),
        ([known("abc"), known("user.id")].concat(), Some("v")),
        ([known("enduser.id"), known("")].concat(), None),
        ([known(""), known("enduser.id")].concat(), Some("v")),
        ([known("user.id"), raw(&[0xff, 0xfe])].concat(), None),
        ([raw(&[0xff, 0xfe]), known("user.id")].concat(), None),
        ([known("user.id"), known("€")].concat(), None),
    ];
    for (keys, user) in orders {
        let mut kv = keys.clone();
        let mut value = Vec::new();
        put_len(&mut value, 1, b"v");
        put_len(&mut kv, 2, &value);
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "tools/call x".into(),
            start_time_unix_nano: stamp().oldest_unix_nano + 1,
            end_time_unix_nano: stamp().oldest_unix_nano + 2,
            ..Span::default()
        };
        let mut sp = span.encode_to_vec();
        put_len(&mut sp, 9, &kv);
        let mut ss = Vec::new();
        put_len(&mut ss, 2, &sp);
        let mut rs = Vec::new();
        put_len(&mut rs, 2, &ss);
        let mut body = Vec::new();
        put_len(&mut body, 1, &rs);
        let limits = NormalizeLimits::default();
        check(&body, &limits);
        let invalid = keys.windows(2).any(|w| w == [0xff, 0xfe]);
        match new_path(&body, &limits) {
            Ok((_, n)) => {
                assert!(!invalid, "{keys:02x?} accepted");
                assert_eq!(n.spans[0].mcp.user_id.as_deref(), user, "{keys:02x?}");
            }
            Err(()) => assert!(invalid, "{keys:02x?} rejected"),
        }
    }
}
