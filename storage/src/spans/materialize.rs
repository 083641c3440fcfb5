//! Turning selected rows of a decoded block back into `SpanRecord`s: decodes every column once and
//! builds records only for the rows asked for.

use super::block::ColumnRead;
use super::columns::*;
use super::corrupt;
use super::fast;
use crate::codec::{self, bitpack, value, Reader};
use crate::error::Result;
use crate::model::{Env, McpFields, SpanOrigin, SpanRecord, Text};
use std::rc::Rc;
use std::sync::Arc;

impl<T: ColumnRead> Materialize for T {}

/// Turning rows of a block (whole or lazily read) back into records.
pub trait Materialize: ColumnRead {
    /// Records for `rows` (row indexes into this block, any order), in the order given.
    fn materialize(&self, rows: &[usize]) -> Result<Vec<SpanRecord>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if rows.iter().any(|&i| i >= self.rows()) {
            return Err(corrupt("row index past block end"));
        }
        let starts = self.start_times()?;
        let ends = self.row_varints(C_END, 1, rows)?;
        // Only the requested rows of the two widest (raw) columns.
        let traces = self.fixed_rows::<16>(C_TRACE, rows)?;
        let spans = self.fixed_rows::<8>(C_SPAN, rows)?;
        let parents = self.row_parents(rows)?;
        // One byte per row: only the rows asked for are copied out (and envs checked).
        let envs = self
            .fixed_rows::<1>(C_ENV, rows)?
            .into_iter()
            .map(|[b]| Env::from_u8(b).ok_or_else(|| corrupt(format!("env byte {b}"))))
            .collect::<Result<Vec<Env>>>()?;
        let kinds = self.fixed_rows::<1>(C_KIND, rows)?;
        let statuses = self.fixed_rows::<1>(C_STATUS, rows)?;
        let counts = self.row_varints(C_COUNTS, 4, rows)?;
        let probs = self.row_probs(rows)?;
        let origins = self.origins()?;
        let extras = self.row_extras(rows)?;
        // Only the requested rows of each string column (dictionaries are walked, not copied).
        let mut strs: Vec<std::vec::IntoIter<Option<String>>> = StrField::ALL
            .iter()
            .map(|&f| Ok(self.row_strs(f.column(), rows)?.into_iter()))
            .collect::<Result<_>>()?;
        let count = |i: usize, k: usize| {
            u32::try_from(counts[i][k]).map_err(|_| corrupt("count overflows u32"))
        };
        let mut out = Vec::with_capacity(rows.len());
        for (k, &i) in rows.iter().enumerate() {
            let (origin_id, origin) = &origins;
            let origin = origin
                .get(origin_id[i] as usize)
                .cloned()
                .ok_or_else(|| corrupt("origin id past dictionary"))?;
            let mut rec = SpanRecord {
                org_id: self.org(),
                server_id: self.server(),
                env: envs[k],
                trace_id: traces[k],
                span_id: spans[k],
                parent_span_id: parents[k],
                start_unix_nano: starts[i],
                end_unix_nano: starts[i].wrapping_add(codec::unzigzag(ends[k][0]) as u64),
                name: Text::default(),
                kind: kinds[k][0],
                status_code: statuses[k][0],
                status_message: String::new(),
                flags: count(k, 0)?,
                trace_state: String::new(),
                sample_probability: f64::from_bits(u64::from_le_bytes(probs[k])),
                service_name: Text::default(),
                mcp: McpFields::default(),
                attributes: Vec::new(),
                events: Vec::new(),
                links: Vec::new(),
                origin,
                dropped_attributes_count: count(k, 1)?,
                dropped_events_count: count(k, 2)?,
                dropped_links_count: count(k, 3)?,
            };
            for (f, col) in StrField::ALL.iter().zip(&mut strs) {
                let v = col.next().flatten();
                if v.is_none() && !f.optional() {
                    return Err(corrupt(format!("{f:?} is absent in a row")));
                }
                f.set(&mut rec, v.as_deref());
            }
            let mut r = Reader::new(&extras[k]);
            rec.attributes = value::read_kvs(&mut r)?;
            rec.events = value::read_events(&mut r)?;
            rec.links = value::read_links(&mut r)?;
            r.finish("extra row")?;
            out.push(rec);
        }
        Ok(out)
    }

    /// `rows` grouped by row group: (group, [(index into `rows`, row inside the group)]).
    #[allow(clippy::type_complexity)]
    fn by_group(&self, rows: &[usize]) -> Vec<(usize, Vec<(usize, usize)>)> {
        let g_rows = self.group_rows().max(1);
        let mut order: Vec<(usize, usize)> = rows.iter().copied().enumerate().collect();
        order.sort_unstable_by_key(|&(_, i)| i);
        let mut out: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
        for (k, i) in order {
            let g = i / g_rows;
            if out.last().is_none_or(|(lg, _)| *lg != g) {
                out.push((g, Vec::new()));
            }
            if let Some((_, v)) = out.last_mut() {
                v.push((k, i - g * g_rows));
            }
        }
        out
    }

    /// Rows in group `g` of this block.
    fn group_len(&self, g: usize) -> usize {
        let g_rows = self.group_rows();
        g_rows.min(self.rows().saturating_sub(g * g_rows))
    }

    /// The segments of a column stored one segment per row group (plus `extra` leading ones).
    fn group_segments(&self, col: usize, extra: usize) -> Result<Option<usize>> {
        if self.group_rows() == 0 {
            return Ok(None);
        }
        let Some(segs) = self.segments(col)? else {
            return Ok(None);
        };
        if segs.len() != self.rows().div_ceil(self.group_rows()) + extra {
            return Err(corrupt(format!("column {col} has {} segments", segs.len())));
        }
        Ok(Some(segs.len()))
    }

    /// `per_row` varints of each of `rows` of a varint column, decoding only their row groups
    /// when the column is segmented.
    fn row_varints(&self, col: usize, per_row: usize, rows: &[usize]) -> Result<Vec<Vec<u64>>> {
        if self.group_segments(col, 0)?.is_none() {
            return fast::varint_rows(&self.column(col)?, self.rows(), per_row, rows);
        }
        let mut out = vec![Vec::new(); rows.len()];
        for (g, want) in self.by_group(rows) {
            let local: Vec<usize> = want.iter().map(|w| w.1).collect();
            let seg = self.segment(col, g)?;
            let vals = fast::varint_rows(&seg, self.group_len(g), per_row, &local)?;
            for ((k, _), v) in want.into_iter().zip(vals) {
                out[k] = v;
            }
        }
        Ok(out)
    }

    /// Values of each of `rows` of a string column, decompressing only the dictionary segments
    /// and row groups they need when the column is segmented (same checks as `fast::str_rows`
    /// on what is read).
    fn row_strs(&self, col: usize, rows: &[usize]) -> Result<Vec<Option<String>>> {
        let n = self.rows();
        let segs = match self.group_rows() {
            0 => None,
            _ => self.segments(col)?,
        };
        let Some(segs) = segs else {
            return fast::str_rows(&self.column(col)?, n, rows);
        };
        let seg0 = self.segment(col, 0)?;
        let mut r = Reader::new(&seg0);
        let mode = r.u8()?;
        if mode > 1 {
            return Err(corrupt(format!("string column mode {mode}")));
        }
        if mode == 0 {
            // Not `count`: the first segment holds only the first run of the dictionary.
            let d = fast::dict_len(&mut r, n)?;
            let nd = d.div_ceil(DICT_SEGMENT_ENTRIES).max(1);
            if segs.len() != nd + 1 {
                return Err(corrupt(format!(
                    "string column {col} has {} segments",
                    segs.len()
                )));
            }
            let ids = self.segment(col, nd)?;
            let mut ir = Reader::new(&ids);
            let (width, data) = fast::bitpacked(&mut ir, n)?;
            ir.finish("string ids")?;
            // Each dictionary segment read so far: its raw bytes and its entries' ranges.
            #[allow(clippy::type_complexity)]
            let mut parts: Vec<Option<(Rc<Vec<u8>>, Vec<(usize, usize)>)>> = vec![None; nd];
            let mut out = Vec::with_capacity(rows.len());
            for &i in rows {
                let id = fast::get_bits(data, i, width) as usize;
                if id == 0 {
                    out.push(None);
                    continue;
                }
                if id > d {
                    return Err(corrupt(format!("dictionary id {id} > {d}")));
                }
                let s = (id - 1) / DICT_SEGMENT_ENTRIES;
                if parts[s].is_none() {
                    let raw = match s {
                        0 => seg0.clone(),
                        _ => self.segment(col, s)?,
                    };
                    let mut r = Reader::new(&raw);
                    if s == 0 {
                        r.u8()?;
                        r.varint()?;
                    }
                    let count = DICT_SEGMENT_ENTRIES.min(d - s * DICT_SEGMENT_ENTRIES);
                    let mut entries = Vec::with_capacity(count);
                    for _ in 0..count {
                        let e = r.len_bytes()?.len();
                        entries.push((r.position() - e, r.position()));
                    }
                    r.finish("dictionary segment")?;
                    parts[s] = Some((raw, entries));
                }
                let (raw, entries) = parts[s]
                    .as_ref()
                    .ok_or_else(|| corrupt("dictionary segment"))?;
                let (x, y) = entries
                    .get((id - 1) % DICT_SEGMENT_ENTRIES)
                    .copied()
                    .ok_or_else(|| corrupt("dictionary entry"))?;
                // Only the entries returned are checked as UTF-8, as `fast::str_rows` does.
                let v = std::str::from_utf8(&raw[x..y])
                    .map_err(|_| corrupt("dictionary entry is not UTF-8"))?;
                out.push(Some(v.to_owned()));
            }
            return Ok(out);
        }
        // Numeric mode: presence bits, then the values of each row group's present rows.
        let present = bitpack::unpack(&mut r, n)?;
        r.finish("string presence")?;
        if segs.len() != 1 + n.div_ceil(self.group_rows()) {
            return Err(corrupt(format!(
                "string column {col} has {} segments",
                segs.len()
            )));
        }
        let mut out = vec![None; rows.len()];
        for (g, want) in self.by_group(rows) {
            let base = g * self.group_rows();
            let group = &present[base..base + self.group_len(g)];
            if group.iter().any(|&p| p > 1) {
                return Err(corrupt("presence bit"));
            }
            let count = group.iter().filter(|&&p| p == 1).count();
            let vals = fast::varints(&self.segment(col, 1 + g)?, count)?;
            for (k, i) in want {
                if group[i] == 1 {
                    let at = group[..i].iter().filter(|&&p| p == 1).count();
                    out[k] = Some(vals[at].to_string());
                }
            }
        }
        Ok(out)
    }

    /// Sample probability bits of each of `rows`.
    fn row_probs(&self, rows: &[usize]) -> Result<Vec<[u8; 8]>> {
        if self.group_segments(C_PROB, 0)?.is_none() {
            return self.fixed_rows::<8>(C_PROB, rows);
        }
        let mut out = vec![[0u8; 8]; rows.len()];
        for (g, want) in self.by_group(rows) {
            let seg = self.segment(C_PROB, g)?;
            if seg.len() != self.group_len(g) * 8 {
                return Err(corrupt("probability row group length"));
            }
            for (k, i) in want {
                out[k].copy_from_slice(&seg[i * 8..i * 8 + 8]);
            }
        }
        Ok(out)
    }

    /// The encoded (attributes, events, links) of each of `rows`.
    fn row_extras(&self, rows: &[usize]) -> Result<Vec<Vec<u8>>> {
        if self.group_segments(C_EXTRA, 1)?.is_none() {
            let raw = self.column(C_EXTRA)?;
            let all = extra_slices(&raw, self.rows())?;
            return Ok(rows.iter().map(|&i| all[i].to_vec()).collect());
        }
        // Only the lengths of the groups asked for are decoded; the others are skipped.
        let lens_raw = self.segment(C_EXTRA, 0)?;
        let (mut row, mut pos) = (0, 0);
        let mut out = vec![Vec::new(); rows.len()];
        for (g, want) in self.by_group(rows) {
            let base = g * self.group_rows();
            pos = fast::skip_varints(&lens_raw, pos, base - row)?;
            let (group, next) = fast::varints_from(&lens_raw, pos, self.group_len(g))?;
            (row, pos) = (base + group.len(), next);
            let seg = self.segment(C_EXTRA, 1 + g)?;
            let total = group.iter().try_fold(0u64, |a, &l| a.checked_add(l));
            if total != Some(seg.len() as u64) {
                return Err(corrupt("extra row group length"));
            }
            // Offsets fit: they are below the segment's length.
            let mut at = vec![0usize; group.len() + 1];
            for (j, &l) in group.iter().enumerate() {
                at[j + 1] = at[j] + l as usize;
            }
            for (k, i) in want {
                out[k] = seg[at[i]..at[i + 1]].to_vec();
            }
        }
        Ok(out)
    }

    /// Parent span ids of each of `rows` (zeros when absent): one pass over the presence bits
    /// (every bit checked, as `parents` does), reading only the ids of the rows asked for.
    fn row_parents(&self, rows: &[usize]) -> Result<Vec<[u8; 8]>> {
        let raw = self.column(C_PARENT)?;
        let mut r = Reader::new(&raw);
        let n = self.rows();
        let (width, bits) = fast::bitpacked(&mut r, n)?;
        let mut want: Vec<(usize, usize)> = rows.iter().enumerate().map(|(k, &i)| (i, k)).collect();
        want.sort_unstable();
        let mut w = want.iter().peekable();
        // For each wanted present row, its rank among present rows.
        let mut at: Vec<Option<usize>> = vec![None; rows.len()];
        let mut present = 0usize;
        for i in 0..n {
            let p = fast::get_bits(bits, i, width);
            if p > 1 {
                return Err(corrupt("parent presence bit"));
            }
            while let Some(&&(j, k)) = w.peek() {
                if j != i {
                    break;
                }
                at[k] = (p == 1).then_some(present);
                w.next();
            }
            present += p as usize;
        }
        let ids = r.rest();
        if Some(ids.len()) != present.checked_mul(8) {
            return Err(corrupt("parent column length"));
        }
        Ok(at
            .into_iter()
            .map(|a| {
                a.map_or([0; 8], |a| {
                    ids[a * 8..a * 8 + 8].try_into().unwrap_or([0; 8])
                })
            })
            .collect())
    }

    fn parents(&self) -> Result<Vec<[u8; 8]>> {
        let raw = self.column(C_PARENT)?;
        let mut r = Reader::new(&raw);
        let present = bitpack::unpack(&mut r, self.rows())?;
        let mut out = Vec::with_capacity(self.rows());
        for p in present {
            match p {
                0 => out.push([0; 8]),
                1 => out.push(r.array()?),
                _ => return Err(corrupt("parent presence bit")),
            }
        }
        r.finish("parent column")?;
        Ok(out)
    }

    fn origins(&self) -> Result<(Vec<u32>, Vec<Arc<SpanOrigin>>)> {
        let raw = self.column(C_ORIGIN)?;
        let mut r = Reader::new(&raw);
        let n = r.count(3)?;
        let mut dict = Vec::with_capacity(n);
        for _ in 0..n {
            dict.push(Arc::new(value::read_origin(&mut r)?));
        }
        let ids = bitpack::unpack(&mut r, self.rows())?;
        r.finish("origin column")?;
        crate::bufs::give(raw);
        Ok((ids, dict))
    }
}

/// Splits the extras column into one slice per row using its length prefix.
fn extra_slices(raw: &[u8], rows: usize) -> Result<Vec<&[u8]>> {
    let mut r = Reader::new(raw);
    let mut lens = Vec::with_capacity(rows);
    for _ in 0..rows {
        lens.push(usize::try_from(r.varint()?).map_err(|_| corrupt("extra length"))?);
    }
    let mut at = r.position();
    let mut out = Vec::with_capacity(rows);
    for l in lens {
        let end = at
            .checked_add(l)
            .filter(|&e| e <= raw.len())
            .ok_or_else(|| corrupt("extra past end"))?;
        out.push(&raw[at..end]);
        at = end;
    }
    if at != raw.len() {
        return Err(corrupt("extra column trailing bytes"));
    }
    Ok(out)
}
