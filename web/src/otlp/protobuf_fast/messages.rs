//! The OTLP trace messages read into borrowed structs (strings and bytes point into the body), with
//! prost's merge rules: last scalar wins, repeated fields append, message fields seen twice merge.

use super::attrs::{key, key_id};
use super::wire::{expect, nested, Malformed, Reader, Res, WT_LEN, WT_VARINT};
use mcp_obs_storage::codec::utf8;

/// An `AnyValue`'s oneof, borrowing from the body. `None` (in an `Option<Val>`) is an absent value.
#[derive(Debug, Clone)]
pub(super) enum Val<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(Vec<Option<Val<'a>>>),
    Kvlist(Vec<Kv<'a>>),
    /// `string_value_strindex` (profiling only): stored as an empty string.
    Strindex,
}

#[derive(Debug, Clone)]
pub(super) struct Kv<'a> {
    pub(super) key: &'a str,
    /// [`key_id`] of `key`.
    pub(super) id: u8,
    pub(super) value: Option<Val<'a>>,
}

#[derive(Debug, Default)]
pub(super) struct EventRaw<'a> {
    pub(super) time_unix_nano: u64,
    pub(super) name: &'a str,
    pub(super) attributes: Vec<Kv<'a>>,
}

#[derive(Debug, Default)]
pub(super) struct LinkRaw<'a> {
    pub(super) trace_id: &'a [u8],
    pub(super) span_id: &'a [u8],
    pub(super) trace_state: &'a str,
    pub(super) attributes: Vec<Kv<'a>>,
}

/// One span's fields. Reused from span to span (its vectors keep their capacity).
#[derive(Debug, Default)]
pub(super) struct SpanRaw<'a> {
    pub(super) trace_id: &'a [u8],
    pub(super) span_id: &'a [u8],
    pub(super) trace_state: &'a str,
    pub(super) parent_span_id: &'a [u8],
    pub(super) name: &'a str,
    pub(super) kind: i32,
    pub(super) start_time_unix_nano: u64,
    pub(super) end_time_unix_nano: u64,
    pub(super) attributes: Vec<Kv<'a>>,
    pub(super) dropped_attributes_count: u32,
    pub(super) events: Vec<EventRaw<'a>>,
    pub(super) dropped_events_count: u32,
    pub(super) links: Vec<LinkRaw<'a>>,
    pub(super) dropped_links_count: u32,
    pub(super) status_message: &'a str,
    pub(super) status_code: i32,
    pub(super) flags: u32,
}

impl SpanRaw<'_> {
    pub(super) fn reset(&mut self) {
        self.trace_id = &[];
        self.span_id = &[];
        self.trace_state = "";
        self.parent_span_id = &[];
        self.name = "";
        self.kind = 0;
        self.start_time_unix_nano = 0;
        self.end_time_unix_nano = 0;
        self.attributes.clear();
        self.dropped_attributes_count = 0;
        self.events.clear();
        self.dropped_events_count = 0;
        self.links.clear();
        self.dropped_links_count = 0;
        self.status_message = "";
        self.status_code = 0;
        self.flags = 0;
    }
}

/// Merges an `AnyValue` message (fields read at `depth`) into `slot`.
pub(super) fn any_value<'a>(buf: &'a [u8], slot: &mut Option<Val<'a>>, depth: u32) -> Res<()> {
    let mut r = Reader::new(buf);
    while r.has_more() {
        let (tag, wt) = r.key()?;
        match tag {
            1 => set(slot, Val::Str(r.str_field(wt)?)),
            2 => set(slot, Val::Bool(r.varint_field(wt)? != 0)),
            3 => set(slot, Val::Int(r.varint_field(wt)? as i64)),
            4 => set(slot, Val::Double(f64::from_bits(r.fixed64_field(wt)?))),
            5 => {
                expect(wt, WT_LEN)?;
                let inner = nested(depth)?;
                let body = r.len_delimited()?;
                let mut values = match slot.take() {
                    Some(Val::Array(values)) => values,
                    _ => Vec::new(),
                };
                array_value(body, &mut values, inner)?;
                *slot = Some(Val::Array(values));
            }
            6 => {
                expect(wt, WT_LEN)?;
                let inner = nested(depth)?;
                let body = r.len_delimited()?;
                let mut values = match slot.take() {
                    Some(Val::Kvlist(values)) => values,
                    _ => Vec::new(),
                };
                key_value_list(body, &mut values, inner)?;
                *slot = Some(Val::Kvlist(values));
            }
            7 => set(slot, Val::Bytes(r.len_field(wt)?)),
            8 => {
                expect(wt, WT_VARINT)?;
                r.varint()?;
                set(slot, Val::Strindex);
            }
            _ => r.skip(tag, wt, depth)?,
        }
    }
    Ok(())
}

/// `*slot = Some(v)` (last one wins), the old value dropped by [`discard`]: the assignment's
/// out-of-line drop call cost about 21 instructions per attribute, whose slot is almost always
/// still empty.
#[inline]
fn set<'a>(slot: &mut Option<Val<'a>>, v: Val<'a>) {
    discard(slot.replace(v));
}

/// Drops `v`, calling the out-of-line drop glue only for the values that own memory (arrays
/// and lists): a taken attribute's value, almost always a string, cost a call of about 21
/// instructions otherwise. The match names every variant, so a new one must choose.
#[inline]
pub(super) fn discard(v: Option<Val<'_>>) {
    match v {
        Some(Val::Array(_) | Val::Kvlist(_)) => drop(v),
        None
        | Some(
            Val::Str(_)
            | Val::Bool(_)
            | Val::Int(_)
            | Val::Double(_)
            | Val::Bytes(_)
            | Val::Strindex,
        ) => std::mem::forget(v),
    }
}

pub(super) fn array_value<'a>(
    buf: &'a [u8],
    values: &mut Vec<Option<Val<'a>>>,
    depth: u32,
) -> Res<()> {
    let mut r = Reader::new(buf);
    while r.has_more() {
        let (tag, wt) = r.key()?;
        if tag == 1 {
            expect(wt, WT_LEN)?;
            let inner = nested(depth)?;
            let mut value = None;
            any_value(r.len_delimited()?, &mut value, inner)?;
            values.push(value);
        } else {
            r.skip(tag, wt, depth)?;
        }
    }
    Ok(())
}

pub(super) fn key_value_list<'a>(buf: &'a [u8], values: &mut Vec<Kv<'a>>, depth: u32) -> Res<()> {
    let mut r = Reader::new(buf);
    while r.has_more() {
        let (tag, wt) = r.key()?;
        if tag == 1 {
            push_key_value(&mut r, wt, values, depth)?;
        } else {
            r.skip(tag, wt, depth)?;
        }
    }
    Ok(())
}

/// Reads a `KeyValue` field (of a message read at `depth`) and appends it.
#[inline]
pub(super) fn push_key_value<'a>(
    r: &mut Reader<'a>,
    wt: u8,
    list: &mut Vec<Kv<'a>>,
    depth: u32,
) -> Res<()> {
    expect(wt, WT_LEN)?;
    let inner = nested(depth)?;
    let kv = key_value(r.len_delimited()?, inner)?;
    list.push(kv);
    Ok(())
}

pub(super) fn key_value(buf: &[u8], depth: u32) -> Res<Kv<'_>> {
    let mut kv = Kv {
        key: "",
        id: key::OTHER,
        value: None,
    };
    let mut r = Reader::new(buf);
    while r.has_more() {
        let (tag, wt) = r.key()?;
        match tag {
            1 => {
                let b = r.len_field(wt)?;
                (kv.id, kv.key) = match key_id(b) {
                    Some(known) => known,
                    None => (key::OTHER, utf8(b).ok_or(Malformed::InvalidUtf8)?),
                };
            }
            2 => {
                expect(wt, WT_LEN)?;
                let inner = nested(depth)?;
                any_value(r.len_delimited()?, &mut kv.value, inner)?;
            }
            3 => {
                r.varint_field(wt)?;
            }
            _ => r.skip(tag, wt, depth)?,
        }
    }
    Ok(kv)
}

/// A `Resource` (merged into `attributes`); its other fields are only validated.
pub(super) fn resource<'a>(buf: &'a [u8], attributes: &mut Vec<Kv<'a>>, depth: u32) -> Res<()> {
    let mut r = Reader::new(buf);
    while r.has_more() {
        let (tag, wt) = r.key()?;
        match tag {
            1 => push_key_value(&mut r, wt, attributes, depth)?,
            2 => {
                r.varint_field(wt)?;
            }
            3 => {
                expect(wt, WT_LEN)?;
                let inner = nested(depth)?;
                entity_ref(r.len_delimited()?, inner)?;
            }
            _ => r.skip(tag, wt, depth)?,
        }
    }
    Ok(())
}

/// An `EntityRef`: four string fields (two repeated), validated and ignored.
pub(super) fn entity_ref(buf: &[u8], depth: u32) -> Res<()> {
    let mut r = Reader::new(buf);
    while r.has_more() {
        let (tag, wt) = r.key()?;
        match tag {
            1..=4 => {
                r.str_field(wt)?;
            }
            _ => r.skip(tag, wt, depth)?,
        }
    }
    Ok(())
}

/// An `InstrumentationScope`, merged into (name, version); attributes are validated only.
pub(super) fn scope<'a>(
    buf: &'a [u8],
    name: &mut &'a str,
    version: &mut &'a str,
    depth: u32,
) -> Res<()> {
    let mut r = Reader::new(buf);
    let mut ignored = Vec::new();
    while r.has_more() {
        let (tag, wt) = r.key()?;
        match tag {
            1 => *name = r.str_field(wt)?,
            2 => *version = r.str_field(wt)?,
            3 => {
                push_key_value(&mut r, wt, &mut ignored, depth)?;
                ignored.clear();
            }
            4 => {
                r.varint_field(wt)?;
            }
            _ => r.skip(tag, wt, depth)?,
        }
    }
    Ok(())
}

pub(super) fn event(buf: &[u8], depth: u32) -> Res<EventRaw<'_>> {
    let mut e = EventRaw::default();
    let mut r = Reader::new(buf);
    while r.has_more() {
        let (tag, wt) = r.key()?;
        match tag {
            1 => e.time_unix_nano = r.fixed64_field(wt)?,
            2 => e.name = r.str_field(wt)?,
            3 => push_key_value(&mut r, wt, &mut e.attributes, depth)?,
            4 => {
                r.varint_field(wt)?;
            }
            _ => r.skip(tag, wt, depth)?,
        }
    }
    Ok(e)
}

pub(super) fn link(buf: &[u8], depth: u32) -> Res<LinkRaw<'_>> {
    let mut l = LinkRaw::default();
    let mut r = Reader::new(buf);
    while r.has_more() {
        let (tag, wt) = r.key()?;
        match tag {
            1 => l.trace_id = r.len_field(wt)?,
            2 => l.span_id = r.len_field(wt)?,
            3 => l.trace_state = r.str_field(wt)?,
            4 => push_key_value(&mut r, wt, &mut l.attributes, depth)?,
            5 => {
                r.varint_field(wt)?;
            }
            6 => {
                r.fixed32_field(wt)?;
            }
            _ => r.skip(tag, wt, depth)?,
        }
    }
    Ok(l)
}

/// A `Status`, merged into the span's message and code.
pub(super) fn status<'a>(buf: &'a [u8], span: &mut SpanRaw<'a>, depth: u32) -> Res<()> {
    let mut r = Reader::new(buf);
    while r.has_more() {
        let (tag, wt) = r.key()?;
        match tag {
            2 => span.status_message = r.str_field(wt)?,
            3 => span.status_code = r.varint_field(wt)? as i32,
            _ => r.skip(tag, wt, depth)?,
        }
    }
    Ok(())
}

/// Reads a `Span` (fields at `depth`) into `span`, which must be reset.
pub(super) fn span<'a>(buf: &'a [u8], span: &mut SpanRaw<'a>, depth: u32) -> Res<()> {
    let mut r = Reader::new(buf);
    while r.has_more() {
        let (tag, wt) = r.key()?;
        match tag {
            1 => span.trace_id = r.len_field(wt)?,
            2 => span.span_id = r.len_field(wt)?,
            3 => span.trace_state = r.str_field(wt)?,
            4 => span.parent_span_id = r.len_field(wt)?,
            5 => span.name = r.str_field(wt)?,
            6 => span.kind = r.varint_field(wt)? as i32,
            7 => span.start_time_unix_nano = r.fixed64_field(wt)?,
            8 => span.end_time_unix_nano = r.fixed64_field(wt)?,
            9 => push_key_value(&mut r, wt, &mut span.attributes, depth)?,
            10 => span.dropped_attributes_count = r.varint_field(wt)? as u32,
            11 => {
                expect(wt, WT_LEN)?;
                let inner = nested(depth)?;
                let e = event(r.len_delimited()?, inner)?;
                span.events.push(e);
            }
            12 => span.dropped_events_count = r.varint_field(wt)? as u32,
            13 => {
                expect(wt, WT_LEN)?;
                let inner = nested(depth)?;
                let l = link(r.len_delimited()?, inner)?;
                span.links.push(l);
            }
            14 => span.dropped_links_count = r.varint_field(wt)? as u32,
            15 => {
                expect(wt, WT_LEN)?;
                let inner = nested(depth)?;
                status(r.len_delimited()?, span, inner)?;
            }
            16 => span.flags = r.fixed32_field(wt)?,
            _ => r.skip(tag, wt, depth)?,
        }
    }
    Ok(())
}
