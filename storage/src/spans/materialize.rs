//! Turning selected rows of a decoded block back into `SpanRecord`s: decodes every column once and
//! builds records only for the rows asked for.

use super::block::ColumnRead;
use super::columns::*;
use super::corrupt;
use super::fast;
use crate::codec::{bitpack, value, Reader};
use crate::error::Result;
use crate::model::{McpFields, SpanOrigin, SpanRecord};
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
        let starts = self.starts()?;
        let ends = self.ends(&starts)?;
        // Only the requested rows of the two widest (raw) columns.
        let traces = self.fixed_rows::<16>(C_TRACE, rows)?;
        let spans = self.fixed_rows::<8>(C_SPAN, rows)?;
        let parents = self.parents()?;
        let envs = self.envs()?;
        let kinds = self.bytes(C_KIND)?;
        let statuses = self.bytes(C_STATUS)?;
        let counts = fast::varint_rows(&self.column(C_COUNTS)?, self.rows(), 4, rows)?;
        let probs = self.fixed::<8>(C_PROB)?;
        let origins = self.origins()?;
        let extras = self.column(C_EXTRA)?;
        let extra_slices = extra_slices(&extras, self.rows())?;
        // Only the requested rows of each string column (dictionaries are walked, not copied).
        let mut strs: Vec<std::vec::IntoIter<Option<String>>> = StrField::ALL
            .iter()
            .map(|&f| Ok(fast::str_rows(&self.column(f.column())?, self.rows(), rows)?.into_iter()))
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
                env: envs[i],
                trace_id: traces[k],
                span_id: spans[k],
                parent_span_id: parents[i],
                start_unix_nano: starts[i],
                end_unix_nano: ends[i],
                name: String::new(),
                kind: kinds[i],
                status_code: statuses[i],
                status_message: String::new(),
                flags: count(k, 0)?,
                trace_state: String::new(),
                sample_probability: f64::from_bits(u64::from_le_bytes(probs[i])),
                service_name: String::new(),
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
                f.set(&mut rec, v);
            }
            let mut r = Reader::new(extra_slices[i]);
            rec.attributes = value::read_kvs(&mut r)?;
            rec.events = value::read_events(&mut r)?;
            rec.links = value::read_links(&mut r)?;
            r.finish("extra row")?;
            out.push(rec);
        }
        Ok(out)
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
