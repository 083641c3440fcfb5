//! Binary encoding of OTLP attribute values, key-value lists, events, links and span origins.
//! Lossless: value types, attribute order and f64 bit patterns all survive a round trip.

use super::Result;
use super::{corrupt, put_bytes, put_str, put_varint, unzigzag, zigzag, Reader};
use crate::model::{AttrValue, KeyValue, SpanEvent, SpanLink, SpanOrigin, Text};

const T_STR: u8 = 0;
const T_BOOL: u8 = 1;
const T_INT: u8 = 2;
const T_DOUBLE: u8 = 3;
const T_BYTES: u8 = 4;
const T_ARRAY: u8 = 5;
const T_KVLIST: u8 = 6;
/// Nesting limit on decode, so crafted bytes cannot overflow the stack.
pub const DEPTH_MAX: usize = 64;

pub fn put_value(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Str(s) => {
            out.push(T_STR);
            put_str(out, s);
        }
        AttrValue::Bool(b) => {
            out.push(T_BOOL);
            out.push(u8::from(*b));
        }
        AttrValue::Int(i) => {
            out.push(T_INT);
            put_varint(out, zigzag(*i));
        }
        AttrValue::Double(d) => {
            out.push(T_DOUBLE);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        AttrValue::Bytes(b) => {
            out.push(T_BYTES);
            put_bytes(out, b);
        }
        AttrValue::Array(items) => {
            out.push(T_ARRAY);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
        AttrValue::KvList(kvs) => {
            out.push(T_KVLIST);
            put_kvs(out, kvs);
        }
    }
}

/// `[count varint][count x (key str, value)]`.
pub fn put_kvs(out: &mut Vec<u8>, kvs: &[KeyValue]) {
    put_varint(out, kvs.len() as u64);
    for kv in kvs {
        put_str(out, &kv.key);
        put_value(out, &kv.value);
    }
}

pub fn read_value(r: &mut Reader<'_>, depth: usize) -> Result<AttrValue> {
    if depth > DEPTH_MAX {
        return Err(corrupt("attribute nesting too deep"));
    }
    Ok(match r.u8()? {
        T_STR => AttrValue::Str(Text::from(r.str()?)),
        T_BOOL => match r.u8()? {
            0 => AttrValue::Bool(false),
            1 => AttrValue::Bool(true),
            b => return Err(corrupt(format!("bool byte {b}"))),
        },
        T_INT => AttrValue::Int(unzigzag(r.varint()?)),
        T_DOUBLE => AttrValue::Double(f64::from_bits(r.u64_le()?)),
        T_BYTES => AttrValue::Bytes(r.len_bytes()?.to_vec()),
        T_ARRAY => {
            let n = r.count(1)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_value(r, depth + 1)?);
            }
            AttrValue::Array(items)
        }
        T_KVLIST => AttrValue::KvList(read_kvs_at(r, depth + 1)?),
        t => return Err(corrupt(format!("unknown value tag {t}"))),
    })
}

pub fn read_kvs(r: &mut Reader<'_>) -> Result<Vec<KeyValue>> {
    read_kvs_at(r, 0)
}

fn read_kvs_at(r: &mut Reader<'_>, depth: usize) -> Result<Vec<KeyValue>> {
    // Each pair takes at least two bytes (empty key length + tag).
    let n = r.count(2)?;
    let mut kvs = Vec::with_capacity(n);
    for _ in 0..n {
        let key = Text::from(r.str()?);
        let value = read_value(r, depth)?;
        kvs.push(KeyValue { key, value });
    }
    Ok(kvs)
}

/// `[count][count x (time u64 LE, name str, kvs)]`.
pub fn put_events(out: &mut Vec<u8>, events: &[SpanEvent]) {
    put_varint(out, events.len() as u64);
    for e in events {
        out.extend_from_slice(&e.time_unix_nano.to_le_bytes());
        put_str(out, &e.name);
        put_kvs(out, &e.attributes);
    }
}

pub fn read_events(r: &mut Reader<'_>) -> Result<Vec<SpanEvent>> {
    let n = r.count(10)?;
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        let time_unix_nano = r.u64_le()?;
        let name = r.str()?.to_owned();
        let attributes = read_kvs(r)?;
        events.push(SpanEvent {
            time_unix_nano,
            name,
            attributes,
        });
    }
    Ok(events)
}

/// `[count][count x (trace 16, span 8, trace_state str, kvs)]`.
pub fn put_links(out: &mut Vec<u8>, links: &[SpanLink]) {
    put_varint(out, links.len() as u64);
    for l in links {
        out.extend_from_slice(&l.trace_id);
        out.extend_from_slice(&l.span_id);
        put_str(out, &l.trace_state);
        put_kvs(out, &l.attributes);
    }
}

pub fn read_links(r: &mut Reader<'_>) -> Result<Vec<SpanLink>> {
    let n = r.count(26)?;
    let mut links = Vec::with_capacity(n);
    for _ in 0..n {
        let trace_id = r.array()?;
        let span_id = r.array()?;
        let trace_state = r.str()?.to_owned();
        let attributes = read_kvs(r)?;
        links.push(SpanLink {
            trace_id,
            span_id,
            trace_state,
            attributes,
        });
    }
    Ok(links)
}

/// `[scope_name str][scope_version str][resource kvs]`.
pub fn put_origin(out: &mut Vec<u8>, o: &SpanOrigin) {
    put_str(out, &o.scope_name);
    put_str(out, &o.scope_version);
    put_kvs(out, &o.resource);
}

pub fn read_origin(r: &mut Reader<'_>) -> Result<SpanOrigin> {
    let scope_name = r.str()?.to_owned();
    let scope_version = r.str()?.to_owned();
    let resource = read_kvs(r)?;
    Ok(SpanOrigin {
        resource,
        scope_name,
        scope_version,
    })
}

#[cfg(test)]
pub(crate) mod strategies {
    //! proptest generators for attribute values, shared with the span store tests.
    use crate::model::{AttrValue, KeyValue};
    use proptest::prelude::*;

    pub fn f64_any() -> impl Strategy<Value = f64> {
        // Raw bit patterns cover every NaN payload, infinities and negative zero.
        any::<u64>().prop_map(f64::from_bits)
    }

    pub fn value() -> impl Strategy<Value = AttrValue> {
        let leaf = prop_oneof![
            "\\PC{0,12}".prop_map(|s: String| AttrValue::Str(s.into())),
            any::<bool>().prop_map(AttrValue::Bool),
            any::<i64>().prop_map(AttrValue::Int),
            f64_any().prop_map(AttrValue::Double),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(AttrValue::Bytes),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(AttrValue::Array),
                proptest::collection::vec(("[a-z.]{0,6}", inner), 0..4).prop_map(|kvs| {
                    AttrValue::KvList(
                        kvs.into_iter()
                            .map(|(key, value): (String, AttrValue)| KeyValue {
                                key: key.into(),
                                value,
                            })
                            .collect(),
                    )
                }),
            ]
        })
    }

    pub fn kvs(max: usize) -> impl Strategy<Value = Vec<KeyValue>> {
        proptest::collection::vec(("\\PC{0,8}", value()), 0..max).prop_map(|v| {
            v.into_iter()
                .map(|(key, value): (String, AttrValue)| KeyValue {
                    key: key.into(),
                    value,
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::strategies::{kvs, value};
    use super::*;
    use proptest::prelude::*;

    /// `AttrValue` holds f64, so `==` is false for NaN; compare encodings instead, which are
    /// bit-exact by construction.
    fn enc_kvs(kvs: &[KeyValue]) -> Vec<u8> {
        let mut out = Vec::new();
        put_kvs(&mut out, kvs);
        out
    }

    proptest! {
        #[test]
        fn kvs_round_trip(kvs in kvs(6)) {
            let bytes = enc_kvs(&kvs);
            let mut r = Reader::new(&bytes);
            let back = read_kvs(&mut r).unwrap();
            prop_assert!(r.finish("t").is_ok());
            prop_assert_eq!(enc_kvs(&back), bytes);
            prop_assert_eq!(back.len(), kvs.len());
        }

        #[test]
        fn value_bits_exact(v in value()) {
            let mut out = Vec::new();
            put_value(&mut out, &v);
            let back = read_value(&mut Reader::new(&out), 0).unwrap();
            if let (AttrValue::Double(a), AttrValue::Double(b)) = (&v, &back) {
                prop_assert_eq!(a.to_bits(), b.to_bits());
            }
            let mut again = Vec::new();
            put_value(&mut again, &back);
            prop_assert_eq!(again, out);
        }

        #[test]
        fn events_links_origin_round_trip(
            attrs in kvs(3), time in any::<u64>(), name in "\\PC{0,10}",
            trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(),
        ) {
            let events = vec![SpanEvent { time_unix_nano: time, name: name.clone(), attributes: attrs.clone() }];
            let links = vec![SpanLink { trace_id: trace, span_id: span, trace_state: name.clone(), attributes: attrs.clone() }];
            let origin = SpanOrigin { resource: attrs, scope_name: name.clone(), scope_version: name };
            let mut out = Vec::new();
            put_events(&mut out, &events);
            put_links(&mut out, &links);
            put_origin(&mut out, &origin);
            let mut r = Reader::new(&out);
            let (e, l, o) = (read_events(&mut r).unwrap(), read_links(&mut r).unwrap(), read_origin(&mut r).unwrap());
            prop_assert!(r.finish("t").is_ok());
            let mut again = Vec::new();
            put_events(&mut again, &e);
            put_links(&mut again, &l);
            put_origin(&mut again, &o);
            prop_assert_eq!(again, out);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut r = Reader::new(&bytes);
            let _ = read_kvs(&mut r);
            let _ = read_events(&mut Reader::new(&bytes));
            let _ = read_links(&mut Reader::new(&bytes));
        }
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let mut out = Vec::new();
        for _ in 0..=DEPTH_MAX + 1 {
            out.push(T_ARRAY);
            put_varint(&mut out, 1);
        }
        out.push(T_BOOL);
        out.push(1);
        assert!(read_value(&mut Reader::new(&out), 0).is_err());
    }
}
