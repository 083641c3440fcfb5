//! One rollup blob: the rows (dimensions -> statistics) of one (org, server, env, cube, bucket),
//! its byte encoding, and a borrowing row parser for queries (docs/format.md, "Rollups").

use rustc_hash::FxBuildHasher;

use super::kmv::{self, DistinctSketch};
use super::sketch::{self, LatencySketch};
use super::{Cube, Side};
use crate::codec::{put_num, put_str, put_varint, Reader};
use crate::error::{Result, StorageError};
use crate::model::SpanRecord;

/// Dimension slots, in encoding order.
pub const DIMS: usize = 7;
pub const D_METHOD: usize = 0;
pub const D_TOOL: usize = 1;
/// Always `None` in [`Cube::Tools`] rows (and not encoded there).
pub const D_USER: usize = 2;
pub const D_CLIENT: usize = 3;
pub const D_CLIENT_VERSION: usize = 4;
pub const D_PROTOCOL: usize = 5;
pub const D_ERROR_TYPE: usize = 6;

const BLOB_VERSION: u8 = 2;

/// The dimensions of one row. `S` is `&str` while aggregating a batch and `Box<str>` when stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dims<S> {
    pub side: Side,
    pub v: [Option<S>; DIMS],
}

/// Borrowed dimensions find their owned row: both hash and compare as the same strings.
impl hashbrown::Equivalent<Dims<Box<str>>> for Dims<&str> {
    fn equivalent(&self, key: &Dims<Box<str>>) -> bool {
        self.side == key.side && self.v.iter().zip(&key.v).all(|(a, b)| *a == b.as_deref())
    }
}

impl<'a> Dims<&'a str> {
    pub fn of(span: &'a SpanRecord, cube: Cube) -> Dims<&'a str> {
        let m = &span.mcp;
        let user = match cube {
            Cube::Tools => None,
            Cube::Users => m.user_id.as_deref(),
        };
        Dims {
            side: Side::of(span),
            v: [
                m.method.as_deref(),
                m.tool.as_deref(),
                user,
                m.client_name.as_deref(),
                m.client_version.as_deref(),
                m.protocol_version.as_deref(),
                error_type_of(span),
            ],
        }
    }

    pub fn to_owned(&self) -> Dims<Box<str>> {
        Dims {
            side: self.side,
            v: self.v.map(|o| o.map(Box::from)),
        }
    }
}

/// The error type a span is grouped under: its `error.type`, or `"error"` for a span whose status
/// is ERROR without one, so that every error appears in "errors by type".
pub(super) fn error_type_of(span: &SpanRecord) -> Option<&str> {
    match &span.mcp.error_type {
        Some(t) => Some(t.as_str()),
        None if span.is_error() => Some(ERROR_TYPE_UNSPECIFIED),
        None => None,
    }
}

/// `error_type` of error spans that carried no `error.type`.
pub const ERROR_TYPE_UNSPECIFIED: &str = "_OTHER";

/// The most recent error of a row, to link "errors by type" to a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorExample {
    pub start_unix_nano: u64,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl ErrorExample {
    /// Keeps the later of two examples (ties broken by ids, so merging is order-independent).
    pub fn newer(a: Option<ErrorExample>, b: Option<ErrorExample>) -> Option<ErrorExample> {
        match (a, b) {
            (Some(x), Some(y)) => Some(
                if (y.start_unix_nano, y.trace_id, y.span_id)
                    > (x.start_unix_nano, x.trace_id, x.span_id)
                {
                    y
                } else {
                    x
                },
            ),
            (x, None) => x,
            (None, y) => y,
        }
    }
}

/// The statistics of one row (or of a whole blob, per side: its totals). Counts come raw
/// (`spans`) and weighted by 1/p (`calls`, `errors`, `duration_nanos` and the latency sketch).
/// Distinct sessions are kept in users-cube rows and in totals; distinct users in totals only
/// (in users-cube rows the user is a dimension).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub spans: u64,
    pub calls: f64,
    pub error_spans: u64,
    pub errors: f64,
    /// Weighted sum of durations.
    pub duration_nanos: f64,
    /// Latest start time among the row's spans.
    pub last_unix_nano: u64,
    pub error_example: Option<ErrorExample>,
    pub latency: LatencySketch,
    pub sessions: DistinctSketch,
    pub users: DistinctSketch,
}

/// Which distinct sketches a [`Stats`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distinct {
    None,
    Sessions,
    SessionsAndUsers,
}

/// What a [`Stats`] takes from one span, computed once per span however many rows and totals it
/// is added to (the latency key and the distinct hashes are the costly parts).
#[derive(Clone, Copy, Debug)]
pub struct SpanFacts {
    pub duration_nanos: u64,
    pub weight: f64,
    pub start_unix_nano: u64,
    /// [`LatencySketch::key_of_value`] of the duration.
    pub latency_key: Option<u16>,
    /// The span as an error example, for error spans.
    pub error: Option<ErrorExample>,
    /// [`kmv::hash_str`] of the session and of the user, when present.
    pub session_hash: Option<u64>,
    pub user_hash: Option<u64>,
}

impl SpanFacts {
    pub fn of(s: &SpanRecord, weight: f64) -> SpanFacts {
        SpanFacts {
            user_hash: s.mcp.user_id.as_deref().map(kmv::hash_str),
            ..SpanFacts::of_without_user_hash(s, weight)
        }
    }

    /// [`SpanFacts::of`] leaving `user_hash` `None`, for callers that know it already.
    pub fn of_without_user_hash(s: &SpanRecord, weight: f64) -> SpanFacts {
        let duration_nanos = s.duration_nanos();
        SpanFacts {
            duration_nanos,
            weight,
            start_unix_nano: s.start_unix_nano,
            latency_key: LatencySketch::key_of_value(duration_nanos),
            error: s.is_error().then_some(ErrorExample {
                start_unix_nano: s.start_unix_nano,
                trace_id: s.trace_id,
                span_id: s.span_id,
            }),
            session_hash: s.mcp.session_id.as_deref().map(kmv::hash_str),
            user_hash: None,
        }
    }
}

impl Stats {
    pub fn add_span(&mut self, s: &SpanRecord, weight: f64, distinct: Distinct) {
        self.add_facts(&SpanFacts::of(s, weight), distinct);
    }

    /// [`Stats::add_span`] with the span's facts computed beforehand.
    pub fn add_facts(&mut self, f: &SpanFacts, distinct: Distinct) {
        self.latency.add_key(f.latency_key, f.weight);
        self.add_facts_but_latency(f, distinct);
    }

    /// [`Stats::add_facts`] leaving the latency sketch alone: for a caller that sums latencies
    /// apart ([`super::sketch::SketchSum`]).
    pub fn add_facts_but_latency(&mut self, f: &SpanFacts, distinct: Distinct) {
        let weight = f.weight;
        self.spans += 1;
        self.calls += weight;
        self.duration_nanos += weight * f.duration_nanos as f64;
        self.last_unix_nano = self.last_unix_nano.max(f.start_unix_nano);
        if f.error.is_some() {
            self.error_spans += 1;
            self.errors += weight;
            self.error_example = ErrorExample::newer(self.error_example, f.error);
        }
        if distinct != Distinct::None {
            if let Some(h) = f.session_hash {
                self.sessions.insert(h);
            }
        }
        if distinct == Distinct::SessionsAndUsers {
            if let Some(h) = f.user_hash {
                self.users.insert(h);
            }
        }
    }

    /// [`Stats::merge`] of an encoded row (`r`'s sketches decoded into `scratch`, whose
    /// allocations are reused from row to row). On error `self` holds part of `r`.
    pub fn merge_ref(&mut self, r: &RowRef<'_>, scratch: &mut MergeScratch) -> Result<()> {
        self.spans += r.spans;
        self.calls += r.calls;
        self.error_spans += r.error_spans;
        self.errors += r.errors;
        self.duration_nanos += r.duration_nanos;
        self.last_unix_nano = self.last_unix_nano.max(r.last_unix_nano);
        self.error_example = ErrorExample::newer(self.error_example, r.error_example);
        scratch
            .latency
            .decode_into(&mut &r.latency[..])
            .map_err(sk_err)?;
        self.latency.merge(&scratch.latency);
        for (mine, enc) in [(&mut self.sessions, r.sessions), (&mut self.users, r.users)] {
            if !enc.is_empty() {
                scratch
                    .distinct
                    .decode_into(&mut &enc[..])
                    .map_err(kmv_err)?;
                mine.merge(&scratch.distinct);
            }
        }
        Ok(())
    }

    /// The owned stats of an encoded row.
    pub fn of_ref(r: &RowRef<'_>) -> Result<Stats> {
        Ok(Stats {
            spans: r.spans,
            calls: r.calls,
            error_spans: r.error_spans,
            errors: r.errors,
            duration_nanos: r.duration_nanos,
            last_unix_nano: r.last_unix_nano,
            error_example: r.error_example,
            latency: LatencySketch::decode(&mut &r.latency[..]).map_err(sk_err)?,
            sessions: DistinctSketch::decode(&mut &r.sessions[..]).map_err(kmv_err)?,
            users: DistinctSketch::decode(&mut &r.users[..]).map_err(kmv_err)?,
        })
    }

    pub fn merge(&mut self, o: &Stats) {
        self.spans += o.spans;
        self.calls += o.calls;
        self.error_spans += o.error_spans;
        self.errors += o.errors;
        self.duration_nanos += o.duration_nanos;
        self.last_unix_nano = self.last_unix_nano.max(o.last_unix_nano);
        self.error_example = ErrorExample::newer(self.error_example, o.error_example);
        self.latency.merge(&o.latency);
        self.sessions.merge(&o.sessions);
        self.users.merge(&o.users);
    }

    pub(super) fn encode_fixed(&self, out: &mut Vec<u8>, start_unix_nano: u64) {
        put_varint(out, self.spans);
        put_num(out, self.calls);
        put_varint(out, self.error_spans);
        put_num(out, self.errors);
        put_num(out, self.duration_nanos);
        put_varint(out, self.last_unix_nano.saturating_sub(start_unix_nano));
        match &self.error_example {
            None => out.push(0),
            Some(e) => {
                out.push(1);
                put_varint(out, e.start_unix_nano.saturating_sub(start_unix_nano));
                out.extend_from_slice(&e.trace_id);
                out.extend_from_slice(&e.span_id);
            }
        }
        put_sketch(out, |o| self.latency.encode(o));
    }
}

/// Appends a sketch as `varint len` + its encoding, so readers can skip it without parsing. The
/// sketch is encoded in place after a one-byte length (shifted in the rare case the length needs
/// more), so no scratch buffer is allocated per sketch.
fn put_sketch(out: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.push(0);
    encode(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(10);
        put_varint(&mut prefix, len as u64);
        out.splice(at..at + 1, prefix);
    }
}

/// Scratch sketches of [`Stats::merge_ref`].
#[derive(Default)]
pub struct MergeScratch {
    latency: LatencySketch,
    distinct: DistinctSketch,
}

/// The rows of one blob, and (tools cube) its totals per side.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Blob {
    /// hashbrown's map rather than std's: a row read from an encoded blob is looked up by its
    /// borrowed dimensions ([`Blob::merge_encoded`]), with no owned key built first.
    pub rows: hashbrown::HashMap<Dims<Box<str>>, Stats, FxBuildHasher>,
    /// Tools cube only: everything in the blob per side (index `Side as usize`), with distinct
    /// users and sessions. Unfiltered questions read these instead of the rows.
    pub totals: [Option<Stats>; 2],
}

impl Blob {
    pub fn merge(&mut self, other: Blob) {
        for (dims, stats) in other.rows {
            match self.rows.get_mut(&dims) {
                Some(s) => s.merge(&stats),
                None => {
                    self.rows.insert(dims, stats);
                }
            }
        }
        merge_totals(&mut self.totals, other.totals);
    }

    /// Encodes the rows sorted by dimensions, so equal blobs encode to equal bytes.
    /// `start_unix_nano` is the bucket start the times are stored relative to.
    pub fn encode(&self, cube: Cube, start_unix_nano: u64) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out, cube, start_unix_nano);
        out
    }

    /// [`Blob::encode`] into `out` (cleared first), so a caller merging many blobs can reuse one
    /// buffer: a busy minute's users blob runs to megabytes, and a fresh buffer grown by doubling
    /// was most of the delta merge's page faults.
    pub fn encode_into(&self, out: &mut Vec<u8>, cube: Cube, start_unix_nano: u64) {
        out.clear();
        let mut strings: Vec<&str> = self
            .rows
            .keys()
            .flat_map(|d| d.v.iter().flatten().map(|s| &**s))
            .collect();
        strings.sort_unstable();
        strings.dedup();
        let index = |s: &Option<Box<str>>| -> u64 {
            match s {
                None => 0,
                // Present by construction.
                Some(s) => strings.binary_search(&&**s).map_or(0, |i| i as u64 + 1),
            }
        };
        let mut rows: Vec<(&Dims<Box<str>>, &Stats)> = self.rows.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.reserve(64 + rows.len() * 32);
        encode_head(out, cube, start_unix_nano, &self.totals, &strings);
        put_varint(out, rows.len() as u64);
        for (dims, st) in rows {
            let ids = dims.v.each_ref().map(index);
            encode_row(out, cube, start_unix_nano, dims.side, &ids, st);
        }
    }

    pub fn decode(bytes: &[u8], cube: Cube, start_unix_nano: u64) -> Result<Blob> {
        let mut blob = Blob::default();
        for_each_total(bytes, cube, start_unix_nano, |r| {
            blob.totals[r.dims.side as usize] = Some(Stats::of_ref(&r)?);
            Ok(())
        })?;
        for_each_row(bytes, cube, start_unix_nano, &NO_FILTER, |r| {
            blob.rows.insert(r.dims.to_owned(), Stats::of_ref(&r)?);
            Ok(())
        })?;
        Ok(blob)
    }

    /// `self.merge(Blob::decode(bytes, ..)?)` without building the decoded blob: a row whose
    /// dimensions `self` has already is merged in place, found by its borrowed dimensions, and
    /// only new rows are decoded into owned ones. A minute's deltas mostly repeat the same rows,
    /// and building each one (owned dimension strings, fresh sketches, a map insert) was over
    /// half of merging them (docs/benchmarks.md). On error `self` holds part of `bytes`: callers
    /// discard it.
    pub fn merge_encoded(&mut self, bytes: &[u8], cube: Cube, start_unix_nano: u64) -> Result<()> {
        let mut scratch = MergeScratch::default();
        for_each_total(bytes, cube, start_unix_nano, |r| {
            match &mut self.totals[r.dims.side as usize] {
                Some(t) => t.merge_ref(&r, &mut scratch)?,
                slot => *slot = Some(Stats::of_ref(&r)?),
            }
            Ok(())
        })?;
        for_each_row(bytes, cube, start_unix_nano, &NO_FILTER, |r| {
            match self.rows.get_mut(&r.dims) {
                Some(s) => s.merge_ref(&r, &mut scratch)?,
                None => {
                    self.rows.insert(r.dims.to_owned(), Stats::of_ref(&r)?);
                }
            }
            Ok(())
        })
    }
}

/// Merges per-side totals (a [`Blob`]'s, or a delta's) into `totals`.
pub fn merge_totals(totals: &mut [Option<Stats>; 2], other: [Option<Stats>; 2]) {
    for (mine, theirs) in totals.iter_mut().zip(other) {
        match (mine.as_mut(), theirs) {
            (Some(m), Some(t)) => m.merge(&t),
            (None, t) => *mine = t,
            (Some(_), None) => {}
        }
    }
}

/// The start of an encoded blob: version, (tools cube) the totals, and the string table (sorted,
/// distinct). The row count and rows follow ([`encode_row`], rows sorted by dimensions).
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    cube: Cube,
    start_unix_nano: u64,
    totals: &[Option<Stats>; 2],
    strings: &[&str],
) {
    out.push(BLOB_VERSION);
    if cube == Cube::Tools {
        let n = totals.iter().flatten().count();
        out.push(n as u8);
        for (side, t) in totals.iter().enumerate() {
            let Some(t) = t else { continue };
            out.push(side as u8);
            t.encode_fixed(out, start_unix_nano);
            put_sketch(out, |o| t.users.encode(o));
            put_sketch(out, |o| t.sessions.encode(o));
        }
    }
    put_varint(out, strings.len() as u64);
    for s in strings {
        put_str(out, s);
    }
}

/// One encoded row: `ids` are the dimension values' positions in the string table (1-based,
/// 0 absent).
pub(super) fn encode_row(
    out: &mut Vec<u8>,
    cube: Cube,
    start_unix_nano: u64,
    side: Side,
    ids: &[u64; DIMS],
    st: &Stats,
) {
    out.push(side as u8);
    for (slot, &id) in ids.iter().enumerate() {
        if slot_stored(cube, slot) {
            put_varint(out, id);
        }
    }
    st.encode_fixed(out, start_unix_nano);
    if cube == Cube::Users {
        put_sketch(out, |o| st.sessions.encode(o));
    }
}

fn slot_stored(cube: Cube, slot: usize) -> bool {
    !(cube == Cube::Tools && slot == D_USER)
}

fn sk_err(e: sketch::DecodeError) -> StorageError {
    StorageError::Corrupt(format!("rollup latency sketch: {e}"))
}

fn kmv_err(e: kmv::DecodeError) -> StorageError {
    StorageError::Corrupt(format!("rollup distinct sketch: {e}"))
}

/// One row as parsed from a blob: strings borrowed from the blob, sketches left encoded (queries
/// merge them straight from these bytes).
#[derive(Clone, Debug)]
pub struct RowRef<'a> {
    pub dims: Dims<&'a str>,
    pub spans: u64,
    pub calls: f64,
    pub error_spans: u64,
    pub errors: f64,
    pub duration_nanos: f64,
    pub last_unix_nano: u64,
    pub error_example: Option<ErrorExample>,
    /// Encoded [`LatencySketch`].
    pub latency: &'a [u8],
    /// Encoded [`DistinctSketch`] of session hashes (users-cube rows and totals; else empty).
    pub sessions: &'a [u8],
    /// Encoded [`DistinctSketch`] of user hashes (totals only; else empty).
    pub users: &'a [u8],
    /// Per dimension slot, the value's position in its blob's string table (1-based, 0 absent;
    /// all 0 for totals). Cheaper to map to an id than the string itself, but comparable only
    /// between rows with the same `blob`.
    pub ids: [u32; DIMS],
    /// A number unique to the blob this row was read from (for the life of the process).
    pub blob: u64,
}

/// Source of [`RowRef::blob`]: each `for_each_row` call takes the next number.
static BLOB_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Required values per dimension slot; a row is visited only if every `Some` slot equals.
pub type DimFilter<'f> = [Option<&'f str>; DIMS];
pub const NO_FILTER: DimFilter<'static> = [None; DIMS];

/// The encoding of an empty [`DistinctSketch`] (count 0), handed out where a row keeps none.
pub(super) const EMPTY_SKETCH: &[u8] = &[0];

/// Fixed statistics and the latency sketch of a row or total, as encoded by `encode_fixed`.
pub(super) struct Fixed<'a> {
    spans: u64,
    calls: f64,
    error_spans: u64,
    errors: f64,
    duration_nanos: f64,
    last_unix_nano: u64,
    error_example: Option<ErrorExample>,
    latency: &'a [u8],
}

pub(super) fn read_fixed<'a>(r: &mut Reader<'a>, start_unix_nano: u64) -> Result<Fixed<'a>> {
    Ok(Fixed {
        spans: r.varint()?,
        calls: r.num()?,
        error_spans: r.varint()?,
        errors: r.num()?,
        duration_nanos: r.num()?,
        last_unix_nano: start_unix_nano.saturating_add(r.varint()?),
        error_example: match r.u8()? {
            0 => None,
            1 => Some(ErrorExample {
                start_unix_nano: start_unix_nano.saturating_add(r.varint()?),
                trace_id: r.array()?,
                span_id: r.array()?,
            }),
            _ => return Err(corrupt("error example flag")),
        },
        latency: r.len_bytes()?,
    })
}

pub(super) fn row_ref<'a>(
    dims: Dims<&'a str>,
    f: Fixed<'a>,
    sessions: &'a [u8],
    users: &'a [u8],
) -> RowRef<'a> {
    RowRef {
        dims,
        spans: f.spans,
        calls: f.calls,
        error_spans: f.error_spans,
        errors: f.errors,
        duration_nanos: f.duration_nanos,
        last_unix_nano: f.last_unix_nano,
        error_example: f.error_example,
        latency: f.latency,
        sessions,
        users,
        ids: [0; DIMS],
        blob: 0,
    }
}

/// Reads the version byte and, for the tools cube, the totals (calling `f` for each when given).
fn read_head<'a>(
    r: &mut Reader<'a>,
    cube: Cube,
    start_unix_nano: u64,
    mut f: Option<&mut dyn FnMut(RowRef<'a>) -> Result<()>>,
) -> Result<()> {
    let version = r.u8()?;
    if version != BLOB_VERSION {
        return Err(StorageError::Corrupt(format!(
            "rollup blob version {version}"
        )));
    }
    if cube == Cube::Tools {
        let n = r.u8()?;
        if n > 2 {
            return Err(corrupt("totals count"));
        }
        for _ in 0..n {
            let side = Side::from_u8(r.u8()?).ok_or_else(|| corrupt("side"))?;
            let fixed = read_fixed(r, start_unix_nano)?;
            let users = r.len_bytes()?;
            let sessions = r.len_bytes()?;
            if let Some(f) = f.as_mut() {
                f(row_ref(
                    Dims {
                        side,
                        v: [None; DIMS],
                    },
                    fixed,
                    sessions,
                    users,
                ))?;
            }
        }
    }
    Ok(())
}

/// Calls `f` with the totals of a tools-cube blob, one per side present (dimensions all absent).
/// Users-cube blobs have no totals.
pub fn for_each_total<'a>(
    bytes: &'a [u8],
    cube: Cube,
    start_unix_nano: u64,
    mut f: impl FnMut(RowRef<'a>) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::new(bytes);
    read_head(&mut r, cube, start_unix_nano, Some(&mut f))
}

/// Reads the string table. When every string is shorter than 128 bytes (one length byte, which
/// is ASCII), each string starts and ends on a character boundary of the table's bytes: the table
/// is then checked as UTF-8 once and the strings sliced from it, instead of checking hundreds of
/// short strings one by one (a tenth of reading a users-cube blob, and most of skipping one).
fn read_strings<'a>(r: &mut Reader<'a>) -> Result<Vec<&'a str>> {
    let n = r.count(1)?;
    let mut strings: Vec<&'a str> = Vec::with_capacity(n);
    let all = r.rest();
    let mut end = 0;
    for _ in 0..n {
        match all.get(end) {
            Some(&len) if len < 0x80 => end += 1 + usize::from(len),
            _ => {
                end = usize::MAX;
                break;
            }
        }
    }
    if let Some(table) = all.get(..end).and_then(|t| std::str::from_utf8(t).ok()) {
        let mut p = 0;
        for _ in 0..n {
            let len = usize::from(table.as_bytes()[p]);
            let s = table.get(p + 1..p + 1 + len);
            strings.push(s.ok_or_else(|| corrupt("string table"))?);
            p += 1 + len;
        }
        r.bytes(end)?;
        return Ok(strings);
    }
    for _ in 0..n {
        strings.push(r.str()?);
    }
    Ok(strings)
}

/// The string-table index (1-based) each filtered slot of a blob's rows must have (0: any), or
/// `None` when a filter value is absent from the table, so no row of the blob can match.
fn filter_positions(strings: &[&str], filter: &DimFilter<'_>) -> Option<[u64; DIMS]> {
    let mut want = [0u64; DIMS];
    for (slot, v) in filter.iter().enumerate() {
        if let Some(v) = v {
            want[slot] = strings.binary_search(v).ok()? as u64 + 1;
        }
    }
    Some(want)
}

/// Parses `bytes` and calls `f` for each row matching `filter`. A filter value absent from the
/// blob's string table skips the whole blob without parsing a row.
pub fn for_each_row<'a>(
    bytes: &'a [u8],
    cube: Cube,
    start_unix_nano: u64,
    filter: &DimFilter<'_>,
    mut f: impl FnMut(RowRef<'a>) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::new(bytes);
    read_head(&mut r, cube, start_unix_nano, None)?;
    let strings = read_strings(&mut r)?;
    let Some(want) = filter_positions(&strings, filter) else {
        return Ok(());
    };
    let rows = r.count(1)?;
    let blob = BLOB_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for _ in 0..rows {
        let side = Side::from_u8(r.u8()?).ok_or_else(|| corrupt("side"))?;
        let mut v: [Option<&'a str>; DIMS] = [None; DIMS];
        let mut ids = [0u32; DIMS];
        let mut matches = true;
        for (slot, out) in v.iter_mut().enumerate() {
            if !slot_stored(cube, slot) {
                continue;
            }
            let i = r.varint()?;
            // Indices past the table are refused below, so this fits once the row is accepted.
            ids[slot] = i as u32;
            if want[slot] != 0 && i != want[slot] {
                matches = false;
            }
            if i != 0 {
                *out = Some(
                    strings
                        .get(i as usize - 1)
                        .copied()
                        .ok_or_else(|| corrupt("string index"))?,
                );
            }
        }
        let fixed = read_fixed(&mut r, start_unix_nano)?;
        let sessions = match cube {
            Cube::Users => r.len_bytes()?,
            Cube::Tools => EMPTY_SKETCH,
        };
        if matches {
            let mut row = row_ref(Dims { side, v }, fixed, sessions, EMPTY_SKETCH);
            row.ids = ids;
            row.blob = blob;
            f(row)?;
        }
    }
    r.finish("rollup blob")?;
    Ok(())
}

/// What the per-user tables read of a users-cube row ([`for_each_users_row`]): dimensions as
/// string-table positions and the statistics those tables show.
#[derive(Clone, Copy, Debug)]
pub struct UsersRow<'a> {
    pub side: Side,
    /// Per dimension slot, the value's position in the blob's string table (1-based, 0 absent).
    pub ids: [u32; DIMS],
    pub calls: f64,
    pub errors: f64,
    pub last_unix_nano: u64,
    /// Encoded [`LatencySketch`].
    pub latency: &'a [u8],
}

/// `for_each_row` for a users-cube blob, reading only what a [`UsersRow`] holds: `f` gets the
/// blob's string table (position `i` is `strings[i - 1]`) and each row matching `filter`. The rest
/// of a row (raw counts, duration, error example, sessions) is checked and skipped, not decoded:
/// the per-user tables read every row of 30 days, and building a full [`RowRef`] per row was a
/// large part of their time.
pub fn for_each_users_row<'a>(
    bytes: &'a [u8],
    start_unix_nano: u64,
    filter: &DimFilter<'_>,
    mut f: impl FnMut(&[&'a str], &UsersRow<'a>) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::new(bytes);
    read_head(&mut r, Cube::Users, start_unix_nano, None)?;
    let strings = read_strings(&mut r)?;
    let Some(want) = filter_positions(&strings, filter) else {
        return Ok(());
    };
    let n_strings = strings.len() as u64;
    let rows = r.count(1)?;
    for _ in 0..rows {
        let side = Side::from_u8(r.u8()?).ok_or_else(|| corrupt("side"))?;
        let mut ids = [0u32; DIMS];
        let mut matches = true;
        for (slot, id) in ids.iter_mut().enumerate() {
            let i = r.varint()?;
            if i > n_strings {
                return Err(corrupt("string index"));
            }
            *id = i as u32;
            if want[slot] != 0 && i != want[slot] {
                matches = false;
            }
        }
        r.varint()?; // spans
        let calls = r.num()?;
        r.varint()?; // error spans
        let errors = r.num()?;
        r.num()?; // duration
        let last_unix_nano = start_unix_nano.saturating_add(r.varint()?);
        match r.u8()? {
            0 => {}
            1 => {
                r.varint()?;
                r.bytes(16 + 8)?; // trace id, span id
            }
            _ => return Err(corrupt("error example flag")),
        }
        let latency = r.len_bytes()?;
        r.len_bytes()?; // sessions
        if matches {
            let row = UsersRow {
                side,
                ids,
                calls,
                errors,
                last_unix_nano,
                latency,
            };
            f(&strings, &row)?;
        }
    }
    r.finish("rollup blob")?;
    Ok(())
}

pub(super) fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(format!("rollup blob: bad {what}"))
}
