//! The in-memory column set of one block: what the encoder writes and what compaction merges.
//! Built either from `SpanRecord`s (append) or straight from the decompressed columns of stored
//! blocks (compaction), so merging never materializes records: strings stay borrowed, attribute
//! payloads stay encoded, dictionaries are remapped, rows are gathered.

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::block::{BlockBody, BLOCK_ROWS_LIMIT, BODY_MAGIC};
use super::columns::*;
use super::corrupt;
use super::header::{BlockHeader, BITMAP_FIELDS};
use crate::bufs;
use crate::codec::strdict::{self, StrVals};
use crate::codec::{self, bitpack, compress, hash32, put_varint, value, Reader};
use crate::error::Result;
use crate::model::{OrgId, ServerId, SpanOrigin, SpanRecord, STATUS_ERROR};

/// Columns of `len()` rows, sorted by (start, span id, trace id).
pub struct Cols<'a> {
    pub starts: Vec<u64>,
    /// Stored form: `zigzag(end.wrapping_sub(start) as i64)`.
    pub ends: Vec<u64>,
    pub traces: Vec<[u8; 16]>,
    pub spans: Vec<[u8; 8]>,
    pub parents: Vec<[u8; 8]>,
    pub envs: Vec<u8>,
    pub kinds: Vec<u8>,
    pub statuses: Vec<u8>,
    /// flags, dropped attributes, dropped events, dropped links.
    pub counts: Vec<[u64; 4]>,
    pub probs: Vec<u64>,
    /// Encoded origins (`value::put_origin`) and one id per row.
    pub origin_dict: Vec<Cow<'a, [u8]>>,
    pub origin_ids: Vec<u32>,
    /// Encoded (attributes, events, links) of every row, concatenated; `extra_ends[i]` is the end
    /// offset of row i.
    pub extras: Cow<'a, [u8]>,
    pub extra_ends: Vec<usize>,
    /// One per [`StrField`], in `StrField::ALL` order.
    pub strs: Vec<StrVals<'a>>,
}

impl<'a> Cols<'a> {
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    fn with_capacity(n: usize) -> Cols<'a> {
        // From the thread's pools (`bufs`): every merge builds several column sets of a block's
        // size, and `Drop` gives their vectors back.
        Cols {
            starts: bufs::take(n),
            ends: bufs::take(n),
            traces: bufs::take(n),
            spans: bufs::take(n),
            parents: bufs::take(n),
            envs: bufs::take(n),
            kinds: bufs::take(n),
            statuses: bufs::take(n),
            counts: bufs::take(n),
            probs: bufs::take(n),
            origin_dict: Vec::new(),
            origin_ids: bufs::take(n),
            extras: Cow::Owned(Vec::new()),
            extra_ends: bufs::take(n),
            strs: Vec::with_capacity(StrField::ALL.len()),
        }
    }

    /// Columns of `rows`, which must be sorted (`block::sort_rows`).
    pub fn from_records(rows: &[&'a SpanRecord]) -> Cols<'a> {
        let mut c = Cols::with_capacity(rows.len());
        let mut extras = bufs::take(rows.len() * 32);
        let mut origin_index: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
        // Each export shares one `Arc<SpanOrigin>` among its spans, and the rows of a group
        // commit interleave a few exports: the id of an origin already seen, by address, saves
        // comparing resource attributes whenever consecutive rows come from different exports.
        // The addresses stay valid: `rows` borrows every record for this whole function.
        let mut origin_by_addr: FxHashMap<*const SpanOrigin, u32> = FxHashMap::default();
        let mut enc = Vec::new();
        let mut prev: Option<&SpanRecord> = None;
        for &r in rows {
            c.starts.push(r.start_unix_nano);
            c.ends.push(codec::zigzag(
                r.end_unix_nano.wrapping_sub(r.start_unix_nano) as i64,
            ));
            c.traces.push(r.trace_id);
            c.spans.push(r.span_id);
            c.parents.push(r.parent_span_id);
            c.envs.push(r.env as u8);
            c.kinds.push(r.kind);
            c.statuses.push(r.status_code);
            c.counts.push([
                u64::from(r.flags),
                u64::from(r.dropped_attributes_count),
                u64::from(r.dropped_events_count),
                u64::from(r.dropped_links_count),
            ]);
            c.probs.push(r.sample_probability.to_bits());
            // The previous row's export first, then any export seen, then the encoded origin.
            let id = match prev {
                Some(p) if Arc::ptr_eq(&p.origin, &r.origin) => *c.origin_ids.last().unwrap_or(&0),
                _ => *origin_by_addr
                    .entry(Arc::as_ptr(&r.origin))
                    .or_insert_with(|| {
                        enc.clear();
                        value::put_origin(&mut enc, &r.origin);
                        match origin_index.get(enc.as_slice()) {
                            Some(&id) => id,
                            None => {
                                let id = c.origin_dict.len() as u32;
                                origin_index.insert(enc.clone(), id);
                                c.origin_dict.push(Cow::Owned(enc.clone()));
                                id
                            }
                        }
                    }),
            };
            c.origin_ids.push(id);
            prev = Some(r);
            value::put_kvs(&mut extras, &r.attributes);
            value::put_events(&mut extras, &r.events);
            value::put_links(&mut extras, &r.links);
            c.extra_ends.push(extras.len());
        }
        c.extras = Cow::Owned(extras);
        for f in StrField::ALL {
            let vals = rows.iter().map(|r| f.get(r));
            let numeric = (f == StrField::RequestId)
                .then(|| StrVals::collect_numeric(vals.clone()))
                .flatten();
            c.strs
                .push(numeric.unwrap_or_else(|| StrVals::collect(vals)));
        }
        c
    }

    /// These columns with every borrowed string and byte run copied, to outlive the records or
    /// raw columns they were built from, and no spare capacity: the vectors move, shrunk (they
    /// may come from the writer's pools, sized for larger blocks); after `from_records` only the
    /// string dictionaries' entries are copied.
    pub fn into_owned(mut self) -> Cols<'static> {
        fn fit<T>(v: &mut Vec<T>) -> Vec<T> {
            let mut v = std::mem::take(v);
            v.shrink_to_fit();
            v
        }
        Cols {
            starts: fit(&mut self.starts),
            ends: fit(&mut self.ends),
            traces: fit(&mut self.traces),
            spans: fit(&mut self.spans),
            parents: fit(&mut self.parents),
            envs: fit(&mut self.envs),
            kinds: fit(&mut self.kinds),
            statuses: fit(&mut self.statuses),
            counts: fit(&mut self.counts),
            probs: fit(&mut self.probs),
            origin_dict: std::mem::take(&mut self.origin_dict)
                .into_iter()
                .map(|o| Cow::Owned(o.into_owned()))
                .collect(),
            origin_ids: fit(&mut self.origin_ids),
            extras: Cow::Owned({
                let mut e = std::mem::take(&mut self.extras).into_owned();
                e.shrink_to_fit();
                e
            }),
            extra_ends: fit(&mut self.extra_ends),
            strs: self.strs.drain(..).map(StrVals::into_owned).collect(),
        }
    }

    /// Heap bytes these columns hold: vectors by capacity, owned bytes by length.
    pub fn heap_bytes(&self) -> usize {
        fn cap<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        let owned = |c: &Cow<'_, [u8]>| match c {
            Cow::Owned(v) => v.capacity(),
            Cow::Borrowed(_) => 0,
        };
        cap(&self.starts)
            + cap(&self.ends)
            + cap(&self.traces)
            + cap(&self.spans)
            + cap(&self.parents)
            + cap(&self.envs)
            + cap(&self.kinds)
            + cap(&self.statuses)
            + cap(&self.counts)
            + cap(&self.probs)
            + cap(&self.origin_dict)
            + self.origin_dict.iter().map(owned).sum::<usize>()
            + cap(&self.origin_ids)
            + owned(&self.extras)
            + cap(&self.extra_ends)
            + cap(&self.strs)
            + self.strs.iter().map(StrVals::heap_bytes).sum::<usize>()
    }

    /// Columns of a stored block, borrowing from its decompressed columns `raw` (from
    /// [`BlockBody::raw_columns`]).
    pub fn from_raw(raw: &'a [Vec<u8>], n: usize) -> Result<Cols<'a>> {
        let mut c = Cols::with_capacity(n);
        let mut r = Reader::new(&raw[C_START]);
        let mut acc = 0u64;
        for _ in 0..n {
            acc = acc
                .checked_add(r.varint()?)
                .ok_or_else(|| corrupt("start time overflow"))?;
            c.starts.push(acc);
        }
        r.finish("start column")?;
        let mut r = Reader::new(&raw[C_END]);
        for _ in 0..n {
            c.ends.push(r.varint()?);
        }
        r.finish("end column")?;
        fixed(&raw[C_TRACE], n, &mut c.traces)?;
        fixed(&raw[C_SPAN], n, &mut c.spans)?;
        let mut r = Reader::new(&raw[C_PARENT]);
        for p in bitpack::unpack(&mut r, n)? {
            c.parents.push(match p {
                0 => [0; 8],
                1 => r.array()?,
                _ => return Err(corrupt("parent presence bit")),
            });
        }
        r.finish("parent column")?;
        for (col, out) in [
            (C_ENV, &mut c.envs),
            (C_KIND, &mut c.kinds),
            (C_STATUS, &mut c.statuses),
        ] {
            if raw[col].len() != n {
                return Err(corrupt(format!("byte column {col} length")));
            }
            out.extend_from_slice(&raw[col]);
        }
        if c.envs.iter().any(|&e| e > 1) {
            return Err(corrupt("env byte"));
        }
        let mut r = Reader::new(&raw[C_COUNTS]);
        for _ in 0..n {
            let mut v = [0u64; 4];
            for x in &mut v {
                *x = u64::from(r.varint_u32()?);
            }
            c.counts.push(v);
        }
        r.finish("counts column")?;
        if raw[C_PROB].len() != n * 8 {
            return Err(corrupt(format!(
                "fixed column of {} bytes",
                raw[C_PROB].len()
            )));
        }
        c.probs.extend(
            raw[C_PROB]
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
        );
        let mut r = Reader::new(&raw[C_ORIGIN]);
        let nd = r.count(3)?;
        for _ in 0..nd {
            let at = r.position();
            value::read_origin(&mut r)?;
            c.origin_dict
                .push(Cow::Borrowed(&raw[C_ORIGIN][at..r.position()]));
        }
        bitpack::unpack_into(&mut r, n, &mut c.origin_ids)?;
        r.finish("origin column")?;
        if c.origin_ids.iter().any(|&id| id as usize >= nd) {
            return Err(corrupt("origin id past dictionary"));
        }
        let ex = &raw[C_EXTRA];
        let mut r = Reader::new(ex);
        let mut end = 0usize;
        for _ in 0..n {
            end = end
                .checked_add(usize::try_from(r.varint()?).map_err(|_| corrupt("extra length"))?)
                .ok_or_else(|| corrupt("extra length"))?;
            c.extra_ends.push(end);
        }
        let data = &ex[r.position()..];
        if end != data.len() {
            return Err(corrupt("extra column length"));
        }
        c.extras = Cow::Borrowed(data);
        for f in StrField::ALL {
            let mut r = Reader::new(&raw[f.column()]);
            let v = strdict::decode_vals(&mut r, n)?;
            r.finish("string column")?;
            if !f.optional() && (0..n).any(|i| !v.present(i)) {
                return Err(corrupt(format!("{f:?} is absent in a row")));
            }
            c.strs.push(v);
        }
        Ok(c)
    }

    fn extra(&self, i: usize) -> &[u8] {
        let a = if i == 0 { 0 } else { self.extra_ends[i - 1] };
        &self.extras[a..self.extra_ends[i]]
    }

    /// The merged row order of `parts` (each sorted): (part, row) pairs sorted by (start, span id,
    /// trace id), ties by part and row so the result is deterministic.
    pub fn merged_order(parts: &[Cols<'a>]) -> Vec<(u32, u32)> {
        // (start, span id, trace id, part, row)
        type Key = (u64, [u8; 8], [u8; 16], u32, u32);
        let mut keys: Vec<Key> = bufs::take(parts.iter().map(Cols::len).sum());
        for (p, c) in parts.iter().enumerate() {
            for i in 0..c.len() {
                keys.push((c.starts[i], c.spans[i], c.traces[i], p as u32, i as u32));
            }
        }
        // Every part is already sorted (blocks keep their rows in this order), so the keys are a
        // concatenation of sorted runs: the stable sort merges runs (O(n log parts)) where an
        // unstable sort would start over. Keys are distinct (part, row), so the order is the same.
        keys.sort();
        let mut order = bufs::take(keys.len());
        order.extend(keys.iter().map(|k| (k.3, k.4)));
        bufs::give(keys);
        order
    }

    /// The rows `order` of `parts`, in that order.
    pub fn gather(parts: &[Cols<'a>], order: &[(u32, u32)]) -> Cols<'a> {
        let mut c = Cols::with_capacity(order.len());
        // The rows' extras in proportion to the share of the parts' rows they are: one allocation
        // instead of a doubling series (a full block's extras run to hundreds of KB).
        let rows: usize = parts.iter().map(Cols::len).sum();
        let bytes: usize = parts.iter().map(|p| p.extras.len()).sum();
        let mut extras = bufs::take(bytes / rows.max(1) * order.len() + 64);
        let mut origin_remap: Vec<Vec<u32>> = parts
            .iter()
            .map(|p| vec![u32::MAX; p.origin_dict.len()])
            .collect();
        let mut origin_index: FxHashMap<&[u8], u32> = FxHashMap::default();
        for &(p, i) in order {
            let (src, i) = (&parts[p as usize], i as usize);
            c.starts.push(src.starts[i]);
            c.ends.push(src.ends[i]);
            c.traces.push(src.traces[i]);
            c.spans.push(src.spans[i]);
            c.parents.push(src.parents[i]);
            c.envs.push(src.envs[i]);
            c.kinds.push(src.kinds[i]);
            c.statuses.push(src.statuses[i]);
            c.counts.push(src.counts[i]);
            c.probs.push(src.probs[i]);
            let oid = src.origin_ids[i] as usize;
            let m = &mut origin_remap[p as usize][oid];
            if *m == u32::MAX {
                let bytes: &[u8] = &src.origin_dict[oid];
                *m = *origin_index.entry(bytes).or_insert_with(|| {
                    c.origin_dict.push(src.origin_dict[oid].clone());
                    c.origin_dict.len() as u32 - 1
                });
            }
            c.origin_ids.push(*m);
            extras.extend_from_slice(src.extra(i));
            c.extra_ends.push(extras.len());
        }
        c.extras = Cow::Owned(extras);
        for f in 0..StrField::ALL.len() {
            let cols: Vec<&StrVals<'a>> = parts.iter().map(|p| &p.strs[f]).collect();
            c.strs.push(gather_strs(&cols, order));
        }
        c
    }

    /// Header of this column set (bitmaps from the dictionaries, not from every row).
    pub fn header(&self, body_bytes: usize) -> BlockHeader {
        let mut h = BlockHeader {
            rows: self.len() as u32,
            min_start: u64::MAX,
            max_start: 0,
            min_dur: u64::MAX,
            max_dur: 0,
            errors: 0,
            env_mask: 0,
            flags: 0,
            body_bytes: u32::try_from(body_bytes).unwrap_or(u32::MAX),
            bitmaps: Default::default(),
        };
        let err_type = &self.strs[StrField::ErrorType as usize];
        for i in 0..self.len() {
            let s = self.starts[i];
            let end = s.wrapping_add(codec::unzigzag(self.ends[i]) as u64);
            let d = end.saturating_sub(s);
            h.min_start = h.min_start.min(s);
            h.max_start = h.max_start.max(s);
            h.min_dur = h.min_dur.min(d);
            h.max_dur = h.max_dur.max(d);
            h.errors += u32::from(self.statuses[i] == STATUS_ERROR || err_type.present(i));
            h.env_mask |= 1 << self.envs[i];
        }
        // Built from sorted hashes: inserting a block's few hundred random session hashes one by
        // one shifts the bitmap's container list each time (quadratic in the distinct values);
        // `from_sorted_iter` appends (`extend` of sorted values still searches per container).
        let mut hashes: Vec<u32> = Vec::new();
        for (bm, f) in h.bitmaps.iter_mut().zip(BITMAP_FIELDS) {
            hashes.clear();
            self.strs[f as usize].distinct(|v| hashes.push(hash32(v)));
            hashes.sort_unstable();
            hashes.dedup();
            *bm = roaring::RoaringBitmap::from_sorted_iter(hashes.iter().copied())
                .expect("sorted and deduplicated");
        }
        h
    }

    /// Encodes the block body (layout in docs/format.md) with every column compressed at `level`.
    pub fn encode(
        &self,
        org: OrgId,
        server: ServerId,
        level: i32,
        group_rows: usize,
    ) -> Result<Vec<u8>> {
        let n = self.len();
        assert!(n > 0 && n <= BLOCK_ROWS_LIMIT);
        // No row groups (0) in a block that fits in one.
        let group_rows = if group_rows == 0 || n <= group_rows {
            0
        } else {
            group_rows
        };
        let mut frames = bufs::take(n * 48 + 1024);
        let mut lens = [0usize; NCOLS];
        let mut raw = bufs::take(n * 16);
        let mut cuts = Vec::new();
        for (col, len) in lens.iter_mut().enumerate() {
            raw.clear();
            cuts.clear();
            if group_rows > 0 {
                self.encode_column(col, &mut raw, &mut cuts, group_rows);
            } else {
                self.encode_column(col, &mut raw, &mut Vec::new(), usize::MAX);
            }
            let before = frames.len();
            // Cuts must split the column into non-empty segments; anything else stays one frame
            // (readers accept both).
            let valid = cuts.windows(2).all(|w| w[0] < w[1])
                && cuts.first().is_some_and(|&c| c > 0)
                && cuts.last().is_some_and(|&c| c < raw.len());
            if valid {
                compress::put_frame_segmented(&mut frames, &raw, &cuts, level)?;
            } else {
                compress::put_frame(&mut frames, &raw, level)?;
            }
            *len = frames.len() - before;
        }
        let mut body = bufs::take(frames.len() + 17 + NCOLS * 3);
        body.extend_from_slice(&BODY_MAGIC);
        body.extend_from_slice(&org.to_le_bytes());
        body.extend_from_slice(&server.to_le_bytes());
        body.extend_from_slice(&(n as u32).to_le_bytes());
        body.extend_from_slice(&(group_rows as u32).to_le_bytes());
        body.push(NCOLS as u8);
        for l in lens {
            put_varint(&mut body, l as u64);
        }
        body.extend_from_slice(&frames);
        bufs::give(frames);
        bufs::give(raw);
        Ok(body)
    }

    /// Writes column `col` raw into `out` and, for the columns stored as row groups, the raw
    /// offsets where its segments start (docs/format.md, "Row groups").
    fn encode_column(&self, col: usize, out: &mut Vec<u8>, cuts: &mut Vec<usize>, g: usize) {
        // At the first byte of each row group but the first.
        let group_start = |i: usize| i > 0 && i % g == 0;
        match col {
            C_START => {
                let mut prev = 0u64;
                for &s in &self.starts {
                    put_varint(out, s - prev);
                    prev = s;
                }
            }
            C_END => {
                for (i, &e) in self.ends.iter().enumerate() {
                    if group_start(i) {
                        cuts.push(out.len());
                    }
                    put_varint(out, e);
                }
            }
            C_TRACE => self.traces.iter().for_each(|t| out.extend_from_slice(t)),
            C_SPAN => self.spans.iter().for_each(|t| out.extend_from_slice(t)),
            C_PARENT => {
                // Roots have an all-zero parent: a presence bit instead of 8 zero bytes.
                let mut present = bufs::take(self.parents.len());
                present.extend(self.parents.iter().map(|p| u32::from(*p != [0; 8])));
                bitpack::pack(out, &present);
                bufs::give(present);
                for p in self.parents.iter().filter(|p| **p != [0; 8]) {
                    out.extend_from_slice(p);
                }
            }
            C_ENV => out.extend_from_slice(&self.envs),
            C_KIND => out.extend_from_slice(&self.kinds),
            C_STATUS => out.extend_from_slice(&self.statuses),
            C_COUNTS => {
                for (i, c) in self.counts.iter().enumerate() {
                    if group_start(i) {
                        cuts.push(out.len());
                    }
                    c.iter().for_each(|&v| put_varint(out, v));
                }
            }
            C_PROB => {
                for (i, p) in self.probs.iter().enumerate() {
                    if group_start(i) {
                        cuts.push(out.len());
                    }
                    out.extend_from_slice(&p.to_le_bytes());
                }
            }
            C_ORIGIN => {
                put_varint(out, self.origin_dict.len() as u64);
                for d in &self.origin_dict {
                    out.extend_from_slice(d);
                }
                bitpack::pack(out, &self.origin_ids);
            }
            C_EXTRA => {
                let mut prev = 0;
                for &e in &self.extra_ends {
                    put_varint(out, (e - prev) as u64);
                    prev = e;
                }
                // Lengths, then the payloads of each row group (every payload is >= 3 bytes).
                let at = out.len();
                cuts.push(at);
                for i in (g..self.len()).step_by(g) {
                    cuts.push(at + self.extra_ends[i - 1]);
                }
                out.extend_from_slice(&self.extras);
            }
            _ => {
                let vals = &self.strs[col - C_STR0];
                // The header's bitmap fields keep their dictionary in hash order (`MOB4`).
                let ordered = BITMAP_FIELDS
                    .contains(&StrField::ALL[col - C_STR0])
                    .then(|| hash_ordered(vals))
                    .flatten();
                strdict::encode_vals(out, ordered.as_ref().unwrap_or(vals));
                if let Some(o) = ordered {
                    o.recycle();
                }
                if g != usize::MAX {
                    str_cuts(out, self.len(), g, cuts);
                }
            }
        }
    }
}

/// Cuts of a string column of `n` rows in row groups of `g` (docs/format.md, "Row groups"):
/// dictionary mode, after every [`DICT_SEGMENT_ENTRIES`] entries and before the ids; numeric mode,
/// after the presence bits and before the first value of each later row group. Parses what
/// `strdict::encode_vals` just wrote; leaves `cuts` empty if that fails (then one plain frame).
fn str_cuts(raw: &[u8], n: usize, g: usize, cuts: &mut Vec<usize>) {
    let parse = |cuts: &mut Vec<usize>| -> Result<()> {
        let mut r = Reader::new(raw);
        match r.u8()? {
            0 => {
                let d = r.count(1)?;
                for k in 0..d {
                    if k > 0 && k % DICT_SEGMENT_ENTRIES == 0 {
                        cuts.push(r.position());
                    }
                    r.len_bytes()?;
                }
                cuts.push(r.position());
            }
            _ => {
                let present = bitpack::unpack(&mut r, n)?;
                for (i, p) in present.iter().enumerate() {
                    if i % g == 0 {
                        cuts.push(r.position());
                    }
                    if *p == 1 {
                        r.varint()?;
                    }
                }
            }
        }
        Ok(())
    };
    if parse(cuts).is_err() {
        cuts.clear();
    }
}

/// `v` with its dictionary sorted by (`hash32`, bytes) and its ids remapped (docs/format.md,
/// "Hash-ordered dictionaries"); `None` for a numeric column.
pub(super) fn hash_ordered<'b>(v: &StrVals<'b>) -> Option<StrVals<'b>> {
    let StrVals::Dict { dict, ids } = v else {
        return None;
    };
    let hashes: Vec<u32> = dict.iter().map(|s| hash32(s)).collect();
    let mut order: Vec<usize> = (0..dict.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        (hashes[a], dict[a].as_bytes()).cmp(&(hashes[b], dict[b].as_bytes()))
    });
    let mut remap = vec![0u32; dict.len() + 1];
    for (pos, &k) in order.iter().enumerate() {
        remap[k + 1] = pos as u32 + 1;
    }
    Some(StrVals::Dict {
        dict: order.iter().map(|&k| dict[k].clone()).collect(),
        ids: {
            let mut out = crate::bufs::take(ids.len());
            out.extend(
                ids.iter()
                    .map(|&id| remap.get(id as usize).copied().unwrap_or(0)),
            );
            out
        },
    })
}

/// Appends the `n` values of a fixed-width column to `out`.
fn fixed<const N: usize>(raw: &[u8], n: usize, out: &mut Vec<[u8; N]>) -> Result<()> {
    if raw.len() != n * N {
        return Err(corrupt(format!("fixed column of {} bytes", raw.len())));
    }
    out.extend(raw.chunks_exact(N).map(|c| c.try_into().unwrap_or([0; N])));
    Ok(())
}

/// Gathers one string column: numeric stays numeric; otherwise dictionaries are remapped into one
/// (first-appearance order of the gathered rows).
fn gather_strs<'a>(parts: &[&StrVals<'a>], order: &[(u32, u32)]) -> StrVals<'a> {
    // Numeric parts (request ids read back from stored blocks), alone or with dictionary parts
    // whose entries are all canonical numbers: gather numbers. Going through a dictionary
    // instead spelled every number out, hashed the spellings and parsed them back when encoding
    // (about 4% of the writer's instructions).
    if let Some(nums) = dicts_as_numbers(parts) {
        let mut v = bufs::take(order.len());
        v.extend(order.iter().map(|&(p, i)| match parts[p as usize] {
            StrVals::Num(v) => v[i as usize],
            StrVals::Dict { ids, .. } => nums[p as usize][ids[i as usize] as usize],
        }));
        return StrVals::Num(v);
    }
    let converted: Vec<Option<StrVals<'a>>> = parts
        .iter()
        .map(|p| match p {
            StrVals::Num(v) => Some(num_to_dict(v)),
            StrVals::Dict { .. } => None,
        })
        .collect();
    let dicts: Vec<(&[Cow<'a, str>], &[u32])> = parts
        .iter()
        .zip(&converted)
        .map(|(p, c)| match c.as_ref().unwrap_or(p) {
            StrVals::Dict { dict, ids } => (dict.as_slice(), ids.as_slice()),
            StrVals::Num(_) => (&[][..], &[][..]),
        })
        .collect();
    let mut remap: Vec<Vec<u32>> = dicts
        .iter()
        .map(|(d, _)| {
            let mut m = vec![u32::MAX; d.len() + 1];
            m[0] = 0;
            m
        })
        .collect();
    let mut index: FxHashMap<&str, u32> = FxHashMap::default();
    let mut dict: Vec<Cow<'a, str>> = Vec::new();
    let mut ids = bufs::take(order.len());
    for &(p, i) in order {
        let (d, src_ids) = dicts[p as usize];
        let id = src_ids[i as usize] as usize;
        let m = &mut remap[p as usize][id];
        if *m == u32::MAX {
            let s = &d[id - 1];
            *m = *index.entry(s.as_ref()).or_insert_with(|| {
                dict.push(s.clone());
                dict.len() as u32
            });
        }
        ids.push(*m);
    }
    StrVals::Dict { dict, ids }
}

/// When some of `parts` are numeric and every entry of the others' dictionaries is a canonical
/// number: per part, the value of each dictionary id (index 0, absent, is `None`; numeric parts
/// get an empty table). Else `None`.
fn dicts_as_numbers(parts: &[&StrVals<'_>]) -> Option<Vec<Vec<Option<u64>>>> {
    if !parts.iter().any(|p| matches!(p, StrVals::Num(_))) {
        return None;
    }
    parts
        .iter()
        .map(|p| match p {
            StrVals::Num(_) => Some(Vec::new()),
            StrVals::Dict { dict, .. } => std::iter::once(Some(None))
                .chain(dict.iter().map(|s| strdict::canonical_u64(s).map(Some)))
                .collect(),
        })
        .collect()
}

fn num_to_dict<'a>(v: &[Option<u64>]) -> StrVals<'a> {
    let mut index: FxHashMap<u64, u32> = FxHashMap::default();
    let mut dict = Vec::new();
    let ids = v
        .iter()
        .map(|x| match x {
            None => 0,
            Some(n) => *index.entry(*n).or_insert_with(|| {
                dict.push(Cow::Owned(n.to_string()));
                dict.len() as u32
            }),
        })
        .collect();
    StrVals::Dict { dict, ids }
}

/// Gives the column vectors back to the thread's pools (`bufs`; a no-op on threads without them).
impl Drop for Cols<'_> {
    fn drop(&mut self) {
        bufs::give(std::mem::take(&mut self.starts));
        bufs::give(std::mem::take(&mut self.ends));
        bufs::give(std::mem::take(&mut self.traces));
        bufs::give(std::mem::take(&mut self.spans));
        bufs::give(std::mem::take(&mut self.parents));
        bufs::give(std::mem::take(&mut self.envs));
        bufs::give(std::mem::take(&mut self.kinds));
        bufs::give(std::mem::take(&mut self.statuses));
        bufs::give(std::mem::take(&mut self.counts));
        bufs::give(std::mem::take(&mut self.probs));
        bufs::give(std::mem::take(&mut self.origin_ids));
        bufs::give(std::mem::take(&mut self.extra_ends));
        if let Cow::Owned(v) = std::mem::take(&mut self.extras) {
            bufs::give(v);
        }
        for v in self.strs.drain(..) {
            v.recycle();
        }
    }
}

impl BlockBody {
    /// Every column decompressed, in column order (for [`Cols::from_raw`]).
    pub fn raw_columns(&self) -> Result<Vec<Vec<u8>>> {
        (0..NCOLS).map(|c| self.column(c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(v: &StrVals<'_>, i: usize) -> Option<String> {
        match v {
            StrVals::Dict { dict, ids } => match ids[i] {
                0 => None,
                id => Some(dict[id as usize - 1].to_string()),
            },
            StrVals::Num(n) => n[i].map(|x| x.to_string()),
        }
    }

    proptest! {
        /// A hash-ordered column holds the same value in every row, its dictionary is distinct
        /// and sorted by (hash, bytes), and it encodes and decodes like any dictionary column.
        #[test]
        fn hash_order_keeps_values(vals in proptest::collection::vec(
            proptest::option::of("[a-e]{0,3}"), 1..200)) {
            let v = StrVals::collect(vals.iter().map(|s| s.as_deref()));
            let o = hash_ordered(&v).unwrap();
            let StrVals::Dict { dict, .. } = &o else { panic!("dictionary") };
            let keys: Vec<(u32, &[u8])> = dict.iter().map(|s| (hash32(s), s.as_bytes())).collect();
            prop_assert!(keys.windows(2).all(|w| w[0] < w[1]));
            let mut raw = Vec::new();
            strdict::encode_vals(&mut raw, &o);
            let mut r = Reader::new(&raw);
            let back = strdict::decode_vals(&mut r, vals.len()).unwrap();
            r.finish("string column").unwrap();
            for (i, want) in vals.iter().enumerate() {
                prop_assert_eq!(at(&o, i), want.clone());
                prop_assert_eq!(at(&back, i), want.clone());
            }
        }

        /// Gathering string columns some of which were read back numeric (request ids of stored
        /// blocks) and some collected as dictionaries (new rows) keeps every row's value, whether
        /// the dictionaries hold only canonical numbers (gathered as numbers) or not; and the
        /// result encodes and decodes to the same values.
        #[test]
        fn gather_strs_mixed_numeric_and_dictionary_parts(
            parts in proptest::collection::vec(
                (0u8..3, proptest::collection::vec(
                    (proptest::option::of(0u64..50), prop_oneof![
                        Just(None), Just(Some(u64::MAX.to_string())),
                        Just(Some("07".to_string())), "[a-c]{1,2}".prop_map(Some)]),
                    1..40)),
                1..5),
            seed in any::<u64>(),
        ) {
            // Kind 0: a numeric part (as read back from a stored block); 1: a dictionary of
            // canonical numbers only (new rows of request ids); 2: a dictionary of anything.
            let parts: Vec<(u8, Vec<Option<String>>)> = parts
                .into_iter()
                .map(|(kind, vals)| {
                    let vals = vals
                        .into_iter()
                        .map(|(n, other)| match kind {
                            2 => other.or_else(|| n.map(|n| n.to_string())),
                            _ => n.map(|n| n.to_string()),
                        })
                        .collect();
                    (kind, vals)
                })
                .collect();
            let cols: Vec<StrVals<'_>> = parts
                .iter()
                .map(|(kind, vals)| match kind {
                    0 => StrVals::Num(
                        vals.iter().map(|v| v.as_deref().and_then(strdict::canonical_u64)).collect(),
                    ),
                    _ => StrVals::collect(vals.iter().map(|v| v.as_deref())),
                })
                .collect();
            let mut order: Vec<(u32, u32)> = parts
                .iter()
                .enumerate()
                .flat_map(|(p, (_, v))| (0..v.len() as u32).map(move |i| (p as u32, i)))
                .collect();
            // Any interleaving, as a merge by time gives.
            let mut x = seed | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let refs: Vec<&StrVals<'_>> = cols.iter().collect();
            let g = gather_strs(&refs, &order);
            let mut raw = Vec::new();
            strdict::encode_vals(&mut raw, &g);
            let mut r = Reader::new(&raw);
            let back = strdict::decode_vals(&mut r, order.len()).unwrap();
            r.finish("string column").unwrap();
            for (k, &(p, i)) in order.iter().enumerate() {
                let want = parts[p as usize].1[i as usize].clone();
                prop_assert_eq!(at(&g, k), want.clone());
                prop_assert_eq!(at(&back, k), want);
            }
        }
    }
}
