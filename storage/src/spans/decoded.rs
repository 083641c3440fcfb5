//! A block decoded whole, every column at once, for bulk reads (`SpanStore::scan`): rows are read
//! through accessors by index, strings stay in per-block dictionaries (so a caller can render each
//! distinct value once per block), and attributes, events and links stay encoded until asked for.

use std::sync::{Arc, OnceLock};

use super::block::{BlockBody, ColumnRead};
use super::columns::*;
use super::corrupt;
use super::materialize::Materialize;
use crate::bufs;
use crate::codec::strdict::{self, StrColumn, StrVals};
use crate::codec::{value, Reader};
use crate::error::Result;
use crate::model::{
    Env, KeyValue, McpFields, OrgId, ServerId, SpanEvent, SpanLink, SpanOrigin, SpanRecord, Text,
    STATUS_ERROR,
};

/// Every column of one block, decoded. Row indexes are block rows (`0..rows()`).
pub struct ScanBlock {
    org: OrgId,
    server: ServerId,
    starts: Vec<u64>,
    ends: Vec<u64>,
    traces: Vec<[u8; 16]>,
    spans: Vec<[u8; 8]>,
    parents: Vec<[u8; 8]>,
    envs: Vec<Env>,
    kinds: Vec<u8>,
    statuses: Vec<u8>,
    /// flags, dropped attributes, dropped events, dropped links.
    counts: Vec<[u32; 4]>,
    probs: Vec<[u8; 8]>,
    origin_ids: Vec<u32>,
    origins: Vec<Arc<SpanOrigin>>,
    extras: Vec<u8>,
    /// Row i's extras are `extras[extra_at[i]..extra_at[i + 1]]`.
    extra_at: Vec<u32>,
    /// In [`StrField::ALL`] order; empty for a column stored in numeric mode (request ids), whose
    /// dictionary of decimal spellings is built in `num_strs` only when first read as strings
    /// (JSON Lines renders the numbers). Kept apart so that reading a dictionary column costs no
    /// more than an index.
    strs: Vec<StrColumn>,
    num_strs: Vec<OnceLock<StrColumn>>,
    /// For a column stored in numeric mode, its values as numbers.
    nums: Vec<Option<Vec<Option<u64>>>>,
}

/// The larger vectors go back to the dropping thread's pools (`bufs`): a scan decodes block after
/// block of about the same shape, and on a scan thread that enables pools the next block reuses
/// them instead of memory the allocator may have handed back to the OS meanwhile (a page fault
/// per 4 KiB touched).
impl Drop for ScanBlock {
    fn drop(&mut self) {
        use std::mem::take;
        bufs::give(take(&mut self.starts));
        bufs::give(take(&mut self.ends));
        bufs::give(take(&mut self.traces));
        bufs::give(take(&mut self.spans));
        bufs::give(take(&mut self.parents));
        bufs::give(take(&mut self.counts));
        bufs::give(take(&mut self.probs));
        bufs::give(take(&mut self.origin_ids));
        bufs::give(take(&mut self.extras));
        bufs::give(take(&mut self.extra_at));
        for c in self.strs.drain(..) {
            c.recycle();
        }
        for v in self.nums.drain(..).flatten() {
            bufs::give(v);
        }
    }
}

impl ScanBlock {
    /// Decodes every column of `body` (already checked against its header), validating what the
    /// accessors rely on: lengths, dictionary and origin ids, required strings, env bytes.
    pub(super) fn decode(body: &BlockBody, starts: Vec<u64>) -> Result<ScanBlock> {
        let n = body.rows();
        let ends = body.ends(&starts)?;
        let counts_raw = body.varints(C_COUNTS, 4)?;
        let mut counts = bufs::take(n);
        for c in counts_raw.chunks_exact(4) {
            let mut v = [0u32; 4];
            for (d, s) in v.iter_mut().zip(c) {
                *d = u32::try_from(*s).map_err(|_| corrupt("count overflows u32"))?;
            }
            counts.push(v);
        }
        bufs::give(counts_raw);
        let (origin_ids, origins) = body.origins()?;
        if origin_ids.iter().any(|&o| o as usize >= origins.len()) {
            return Err(corrupt("origin id past dictionary"));
        }
        let column = body.column(C_EXTRA)?;
        let (extra_at, data_at) = extra_offsets(&column, n)?;
        let mut extras = bufs::take(column.len() - data_at);
        extras.extend_from_slice(&column[data_at..]);
        bufs::give(column);
        let mut strs = Vec::with_capacity(StrField::ALL.len());
        let mut nums = Vec::with_capacity(StrField::ALL.len());
        for f in StrField::ALL {
            let raw = body.column(f.column())?;
            let mut r = Reader::new(&raw);
            let vals = strdict::decode_vals(&mut r, n)?;
            r.finish("string column")?;
            let absent = match vals {
                StrVals::Num(v) => {
                    let absent = v.contains(&None);
                    strs.push(StrColumn::default());
                    nums.push(Some(v));
                    absent
                }
                dict => {
                    let c = StrColumn::from_vals(dict)?;
                    let absent = c.ids.contains(&0);
                    strs.push(c);
                    nums.push(None);
                    absent
                }
            };
            bufs::give(raw);
            if !f.optional() && absent {
                return Err(corrupt(format!("{f:?} is absent in a row")));
            }
        }
        Ok(ScanBlock {
            org: body.org,
            server: body.server,
            ends,
            traces: body.fixed(C_TRACE)?,
            spans: body.fixed(C_SPAN)?,
            parents: body.parents()?,
            envs: body.envs()?,
            kinds: body.bytes(C_KIND)?,
            statuses: body.bytes(C_STATUS)?,
            counts,
            probs: body.fixed(C_PROB)?,
            origin_ids,
            origins,
            extras,
            extra_at,
            strs,
            num_strs: StrField::ALL.iter().map(|_| OnceLock::new()).collect(),
            nums,
            starts,
        })
    }

    pub fn rows(&self) -> usize {
        self.starts.len()
    }
    pub fn org(&self) -> OrgId {
        self.org
    }
    pub fn server(&self) -> ServerId {
        self.server
    }
    pub fn start(&self, i: usize) -> u64 {
        self.starts[i]
    }
    pub fn end(&self, i: usize) -> u64 {
        self.ends[i]
    }
    /// `end.saturating_sub(start)`, as `SpanRecord::duration_nanos`.
    pub fn duration_nanos(&self, i: usize) -> u64 {
        self.ends[i].saturating_sub(self.starts[i])
    }
    pub fn trace_id(&self, i: usize) -> &[u8; 16] {
        &self.traces[i]
    }
    pub fn span_id(&self, i: usize) -> &[u8; 8] {
        &self.spans[i]
    }
    /// All zero for a root span.
    pub fn parent_span_id(&self, i: usize) -> &[u8; 8] {
        &self.parents[i]
    }
    pub fn env(&self, i: usize) -> Env {
        self.envs[i]
    }
    pub fn kind(&self, i: usize) -> u8 {
        self.kinds[i]
    }
    pub fn status_code(&self, i: usize) -> u8 {
        self.statuses[i]
    }
    pub fn flags(&self, i: usize) -> u32 {
        self.counts[i][0]
    }
    /// Dropped attributes, events and links.
    pub fn dropped_counts(&self, i: usize) -> [u32; 3] {
        let c = self.counts[i];
        [c[1], c[2], c[3]]
    }
    pub fn sample_probability(&self, i: usize) -> f64 {
        f64::from_bits(u64::from_le_bytes(self.probs[i]))
    }
    /// As `SpanRecord::is_error`.
    pub fn is_error(&self, i: usize) -> bool {
        self.statuses[i] == STATUS_ERROR || self.str_id(StrField::ErrorType, i) != 0
    }
    /// The value of a string field (`None`: absent; only MCP fields can be).
    pub fn str(&self, f: StrField, i: usize) -> Option<&str> {
        self.col(f).get(i)
    }
    /// [`ScanBlock::str_id`] of a numeric column: out of line, so that the dictionary columns' path
    /// stays an index.
    #[cold]
    #[inline(never)]
    fn num_str_id(&self, f: StrField, i: usize) -> u32 {
        self.col(f).ids[i]
    }
    /// Field `f`'s column (a numeric one's dictionary built on first use).
    fn col(&self, f: StrField) -> &StrColumn {
        let k = f as usize;
        match &self.nums[k] {
            Some(nums) => self.num_strs[k].get_or_init(|| StrColumn::from_nums(nums)),
            None => &self.strs[k],
        }
    }
    /// The dictionary id of a string field in row i: 0 for absent, k for the k-th value of
    /// `str_dict(f)`.
    #[inline]
    pub fn str_id(&self, f: StrField, i: usize) -> u32 {
        // A numeric column's placeholder has no ids.
        match self.strs[f as usize].ids.get(i) {
            Some(&id) => id,
            None => self.num_str_id(f, i),
        }
    }
    /// The values of a string field as numbers, when this block stores it in numeric mode (every
    /// value a canonical decimal `u64`; `None` for absent): `str` of a row is then the decimal
    /// spelling of its number.
    pub fn str_nums(&self, f: StrField) -> Option<&[Option<u64>]> {
        self.nums[f as usize].as_deref()
    }
    /// The distinct values of a string field in this block.
    pub fn str_dict(&self, f: StrField) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.col(f).dict()
    }
    /// Row i's index into [`ScanBlock::origins`].
    pub fn origin_id(&self, i: usize) -> usize {
        self.origin_ids[i] as usize
    }
    /// The distinct resource + scope pairs of this block.
    pub fn origins(&self) -> &[Arc<SpanOrigin>] {
        &self.origins
    }
    /// Opaque bytes standing for row i's attributes, events and links: two rows of this block
    /// with equal bytes have equal values (for caching what is derived from them).
    pub fn extra_bytes(&self, i: usize) -> &[u8] {
        &self.extras[self.extra_at[i] as usize..self.extra_at[i + 1] as usize]
    }
    /// Row i's attributes, events and links, decoded.
    pub fn extra(&self, i: usize) -> Result<(Vec<KeyValue>, Vec<SpanEvent>, Vec<SpanLink>)> {
        let mut r = Reader::new(self.extra_bytes(i));
        let attrs = value::read_kvs(&mut r)?;
        let events = value::read_events(&mut r)?;
        let links = value::read_links(&mut r)?;
        r.finish("extra row")?;
        Ok((attrs, events, links))
    }

    /// Row i as a `SpanRecord` (what `list` would return for it).
    pub fn record(&self, i: usize) -> Result<SpanRecord> {
        let (attributes, events, links) = self.extra(i)?;
        let [dropped_attributes_count, dropped_events_count, dropped_links_count] =
            self.dropped_counts(i);
        let mut rec = SpanRecord {
            org_id: self.org,
            server_id: self.server,
            env: self.env(i),
            trace_id: self.traces[i],
            span_id: self.spans[i],
            parent_span_id: self.parents[i],
            start_unix_nano: self.starts[i],
            end_unix_nano: self.ends[i],
            name: Text::default(),
            kind: self.kinds[i],
            status_code: self.statuses[i],
            status_message: String::new(),
            flags: self.flags(i),
            trace_state: String::new(),
            sample_probability: self.sample_probability(i),
            service_name: Text::default(),
            mcp: McpFields::default(),
            attributes,
            events,
            links,
            origin: Arc::clone(&self.origins[self.origin_id(i)]),
            dropped_attributes_count,
            dropped_events_count,
            dropped_links_count,
        };
        for f in StrField::ALL {
            f.set(&mut rec, self.str(f, i));
        }
        Ok(rec)
    }
}

/// The extras column's row offsets (relative to the data after the length prefix, `rows + 1` of
/// them) and where that data starts.
fn extra_offsets(raw: &[u8], rows: usize) -> Result<(Vec<u32>, usize)> {
    let mut r = Reader::new(raw);
    let mut at = crate::bufs::take(rows + 1);
    let mut sum = 0u64;
    at.push(0);
    for _ in 0..rows {
        sum = sum
            .checked_add(r.varint()?)
            .ok_or_else(|| corrupt("extra column length overflow"))?;
        let end = u32::try_from(sum).map_err(|_| corrupt("extra column too large"))?;
        at.push(end);
    }
    let data_at = r.position();
    if sum != (raw.len() - data_at) as u64 {
        return Err(corrupt("extra column length mismatch"));
    }
    Ok((at, data_at))
}
