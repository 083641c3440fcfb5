//! Turning selected rows of a decoded block back into `SpanRecord`s: decodes every column once and
//! builds records only for the rows asked for.

use super::block::BlockBody;
use super::columns::*;
use super::corrupt;
use crate::codec::{bitpack, strdict::StrColumn, value, Reader};
use crate::error::Result;
use crate::model::{McpFields, SpanOrigin, SpanRecord};

impl BlockBody {
    /// Records for `rows` (row indexes into this block, any order), in the order given.
    pub fn materialize(&self, rows: &[usize]) -> Result<Vec<SpanRecord>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if rows.iter().any(|&i| i >= self.rows) {
            return Err(corrupt("row index past block end"));
        }
        let starts = self.starts()?;
        let ends = self.ends(&starts)?;
        let traces = self.trace_ids()?;
        let spans = self.span_ids()?;
        let parents = self.parents()?;
        let envs = self.envs()?;
        let kinds = self.bytes(C_KIND)?;
        let statuses = self.bytes(C_STATUS)?;
        let counts = self.varints(C_COUNTS, 4)?;
        let probs = self.fixed::<8>(C_PROB)?;
        let origins = self.origins()?;
        let extras = self.column(C_EXTRA)?;
        let extra_slices = extra_slices(&extras, self.rows)?;
        let strs: Vec<StrColumn> = StrField::ALL
            .iter()
            .map(|&f| self.strs(f))
            .collect::<Result<_>>()?;
        let count = |i: usize, k: usize| {
            u32::try_from(counts[i * 4 + k]).map_err(|_| corrupt("count overflows u32"))
        };
        let mut out = Vec::with_capacity(rows.len());
        for &i in rows {
            let (origin_id, origin) = &origins;
            let origin = origin
                .get(origin_id[i] as usize)
                .cloned()
                .ok_or_else(|| corrupt("origin id past dictionary"))?;
            let mut rec = SpanRecord {
                org_id: self.org,
                server_id: self.server,
                env: envs[i],
                trace_id: traces[i],
                span_id: spans[i],
                parent_span_id: parents[i],
                start_unix_nano: starts[i],
                end_unix_nano: ends[i],
                name: String::new(),
                kind: kinds[i],
                status_code: statuses[i],
                status_message: String::new(),
                flags: count(i, 0)?,
                trace_state: String::new(),
                sample_probability: f64::from_bits(u64::from_le_bytes(probs[i])),
                service_name: String::new(),
                mcp: McpFields::default(),
                attributes: Vec::new(),
                events: Vec::new(),
                links: Vec::new(),
                origin,
                dropped_attributes_count: count(i, 1)?,
                dropped_events_count: count(i, 2)?,
                dropped_links_count: count(i, 3)?,
            };
            for (f, col) in StrField::ALL.iter().zip(&strs) {
                f.set(&mut rec, col.get(i).map(str::to_owned));
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
        let present = bitpack::unpack(&mut r, self.rows)?;
        let mut out = Vec::with_capacity(self.rows);
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

    fn origins(&self) -> Result<(Vec<u32>, Vec<SpanOrigin>)> {
        let raw = self.column(C_ORIGIN)?;
        let mut r = Reader::new(&raw);
        let n = r.count(3)?;
        let mut dict = Vec::with_capacity(n);
        for _ in 0..n {
            dict.push(value::read_origin(&mut r)?);
        }
        let ids = bitpack::unpack(&mut r, self.rows)?;
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
