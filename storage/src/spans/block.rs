//! Encoding of a block body (the columns of up to `block_rows_max` spans of one org and server) and
//! lazy, per-column decoding of it. Layout in docs/format.md, "Block body".

use std::collections::HashMap;

use super::columns::*;
use super::corrupt;
use crate::codec::{self, bitpack, compress, put_varint, strdict, value, Reader};
use crate::error::Result;
use crate::model::{Env, OrgId, ServerId, SpanRecord};

const BODY_MAGIC: [u8; 4] = *b"MOB1";
/// Hard limit on rows per block, whatever the options say: bounds decode allocations.
pub const BLOCK_ROWS_LIMIT: usize = 1 << 20;

/// Orders rows inside a block (and merged blocks): by start time, then ids, so encoding is
/// deterministic and the start column is non-decreasing.
pub fn sort_rows(rows: &mut [&SpanRecord]) {
    rows.sort_by(|a, b| {
        (a.start_unix_nano, a.span_id, a.trace_id).cmp(&(b.start_unix_nano, b.span_id, b.trace_id))
    });
}

/// Encodes sorted `rows`, all of `org`/`server`, into a block body compressed at `level`.
pub fn encode(org: OrgId, server: ServerId, rows: &[&SpanRecord], level: i32) -> Result<Vec<u8>> {
    assert!(!rows.is_empty() && rows.len() <= BLOCK_ROWS_LIMIT);
    debug_assert!(rows
        .windows(2)
        .all(|w| w[0].start_unix_nano <= w[1].start_unix_nano));
    debug_assert!(rows
        .iter()
        .all(|r| r.org_id == org && r.server_id == server));
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(NCOLS);
    let mut raw = Vec::new();
    for col in 0..NCOLS {
        raw.clear();
        encode_column(col, rows, &mut raw);
        let mut frame = Vec::new();
        compress::put_frame(&mut frame, &raw, level)?;
        frames.push(frame);
    }
    let mut body = Vec::with_capacity(frames.iter().map(Vec::len).sum::<usize>() + 64);
    body.extend_from_slice(&BODY_MAGIC);
    body.extend_from_slice(&org.to_le_bytes());
    body.extend_from_slice(&server.to_le_bytes());
    body.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    body.push(NCOLS as u8);
    for f in &frames {
        put_varint(&mut body, f.len() as u64);
    }
    for f in &frames {
        body.extend_from_slice(f);
    }
    Ok(body)
}

fn encode_column(col: usize, rows: &[&SpanRecord], out: &mut Vec<u8>) {
    match col {
        C_START => {
            let mut prev = 0u64;
            for r in rows {
                put_varint(out, r.start_unix_nano - prev);
                prev = r.start_unix_nano;
            }
        }
        // Wrapping difference so that any end (even before start) round-trips exactly.
        C_END => rows.iter().for_each(|r| {
            put_varint(
                out,
                codec::zigzag(r.end_unix_nano.wrapping_sub(r.start_unix_nano) as i64),
            )
        }),
        C_TRACE => rows.iter().for_each(|r| out.extend_from_slice(&r.trace_id)),
        C_SPAN => rows.iter().for_each(|r| out.extend_from_slice(&r.span_id)),
        C_PARENT => {
            // Roots have an all-zero parent: a presence bit instead of 8 zero bytes.
            let present: Vec<u32> = rows
                .iter()
                .map(|r| u32::from(r.parent_span_id != [0; 8]))
                .collect();
            bitpack::pack(out, &present);
            for r in rows.iter().filter(|r| r.parent_span_id != [0; 8]) {
                out.extend_from_slice(&r.parent_span_id);
            }
        }
        C_ENV => rows.iter().for_each(|r| out.push(r.env as u8)),
        C_KIND => rows.iter().for_each(|r| out.push(r.kind)),
        C_STATUS => rows.iter().for_each(|r| out.push(r.status_code)),
        C_COUNTS => rows.iter().for_each(|r| {
            for v in [
                r.flags,
                r.dropped_attributes_count,
                r.dropped_events_count,
                r.dropped_links_count,
            ] {
                put_varint(out, u64::from(v));
            }
        }),
        C_PROB => rows
            .iter()
            .for_each(|r| out.extend_from_slice(&r.sample_probability.to_bits().to_le_bytes())),
        C_ORIGIN => encode_origins(rows, out),
        C_EXTRA => encode_extras(rows, out),
        _ => {
            let f = StrField::ALL[col - C_STR0];
            strdict::encode(out, rows.iter().map(|r| f.get(r)));
        }
    }
}

/// Origins are usually shared by every span of an export: a dictionary of encoded origins.
fn encode_origins(rows: &[&SpanRecord], out: &mut Vec<u8>) {
    let mut dict: Vec<Vec<u8>> = Vec::new();
    let mut index: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut ids = Vec::with_capacity(rows.len());
    let mut enc = Vec::new();
    for r in rows {
        enc.clear();
        value::put_origin(&mut enc, &r.origin);
        let next = dict.len() as u32;
        let id = *index.entry(enc.clone()).or_insert_with(|| {
            dict.push(enc.clone());
            next
        });
        ids.push(id);
    }
    put_varint(out, dict.len() as u64);
    for d in &dict {
        out.extend_from_slice(d);
    }
    bitpack::pack(out, &ids);
}

/// `[rows x len varint][rows x (attributes, events, links)]`: the lengths let one row be decoded
/// without parsing the rows before it.
fn encode_extras(rows: &[&SpanRecord], out: &mut Vec<u8>) {
    let mut data = Vec::new();
    for r in rows {
        let before = data.len();
        value::put_kvs(&mut data, &r.attributes);
        value::put_events(&mut data, &r.events);
        value::put_links(&mut data, &r.links);
        put_varint(out, (data.len() - before) as u64);
    }
    out.extend_from_slice(&data);
}

/// A block body read from disk, decoded one column at a time on demand.
pub struct BlockBody {
    pub org: OrgId,
    pub server: ServerId,
    pub rows: usize,
    data: Vec<u8>,
    frames: Vec<(usize, usize)>,
}

impl BlockBody {
    /// Parses the fixed prelude and the frame directory; columns stay compressed.
    pub fn parse(data: Vec<u8>) -> Result<BlockBody> {
        let mut r = Reader::new(&data);
        if r.array::<4>()? != BODY_MAGIC {
            return Err(corrupt("block body magic"));
        }
        let org = r.u32_le()?;
        let server = r.u32_le()?;
        let rows = r.u32_le()? as usize;
        if rows == 0 || rows > BLOCK_ROWS_LIMIT {
            return Err(corrupt(format!("block row count {rows}")));
        }
        if r.u8()? as usize != NCOLS {
            return Err(corrupt("block column count"));
        }
        let mut lens = [0usize; NCOLS];
        for l in &mut lens {
            *l = usize::try_from(r.varint()?).map_err(|_| corrupt("frame length"))?;
        }
        let mut frames = Vec::with_capacity(NCOLS);
        let mut at = r.position();
        for l in lens {
            let end = at
                .checked_add(l)
                .filter(|&e| e <= data.len())
                .ok_or_else(|| corrupt("frame past end"))?;
            frames.push((at, end));
            at = end;
        }
        if at != data.len() {
            return Err(corrupt("block body trailing bytes"));
        }
        Ok(BlockBody {
            org,
            server,
            rows,
            data,
            frames,
        })
    }

    pub(super) fn column(&self, col: usize) -> Result<Vec<u8>> {
        let (a, b) = self.frames[col];
        let mut r = Reader::new(&self.data[a..b]);
        let raw = compress::read_frame(&mut r)?;
        r.finish("column frame")?;
        Ok(raw)
    }

    pub(super) fn varints(&self, col: usize, per_row: usize) -> Result<Vec<u64>> {
        let raw = self.column(col)?;
        let mut r = Reader::new(&raw);
        let mut out = Vec::with_capacity(self.rows * per_row);
        for _ in 0..self.rows * per_row {
            out.push(r.varint()?);
        }
        r.finish("varint column")?;
        Ok(out)
    }

    pub fn starts(&self) -> Result<Vec<u64>> {
        let mut v = self.varints(C_START, 1)?;
        let mut acc = 0u64;
        for x in &mut v {
            acc = acc
                .checked_add(*x)
                .ok_or_else(|| corrupt("start time overflow"))?;
            *x = acc;
        }
        Ok(v)
    }

    pub fn ends(&self, starts: &[u64]) -> Result<Vec<u64>> {
        let mut v = self.varints(C_END, 1)?;
        for (x, s) in v.iter_mut().zip(starts) {
            *x = s.wrapping_add(codec::unzigzag(*x) as u64);
        }
        Ok(v)
    }

    pub(super) fn fixed<const N: usize>(&self, col: usize) -> Result<Vec<[u8; N]>> {
        let raw = self.column(col)?;
        if raw.len() != self.rows * N {
            return Err(corrupt(format!(
                "fixed column {col} has {} bytes",
                raw.len()
            )));
        }
        Ok(raw
            .chunks_exact(N)
            .map(|c| c.try_into().unwrap_or([0; N]))
            .collect())
    }

    pub fn trace_ids(&self) -> Result<Vec<[u8; 16]>> {
        self.fixed(C_TRACE)
    }

    pub fn span_ids(&self) -> Result<Vec<[u8; 8]>> {
        self.fixed(C_SPAN)
    }

    /// One byte per row (env, kind, status).
    pub fn bytes(&self, col: usize) -> Result<Vec<u8>> {
        Ok(self.fixed::<1>(col)?.into_iter().map(|[b]| b).collect())
    }

    pub fn strs(&self, f: StrField) -> Result<strdict::StrColumn> {
        let raw = self.column(f.column())?;
        let mut r = Reader::new(&raw);
        let col = strdict::StrColumn::decode(&mut r, self.rows)?;
        r.finish("string column")?;
        if !f.optional() && col.ids.contains(&0) {
            return Err(corrupt(format!("{f:?} is absent in a row")));
        }
        Ok(col)
    }

    pub fn envs(&self) -> Result<Vec<Env>> {
        self.bytes(C_ENV)?
            .into_iter()
            .map(|b| Env::from_u8(b).ok_or_else(|| corrupt(format!("env byte {b}"))))
            .collect()
    }
}
