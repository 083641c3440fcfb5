//! Encoding of a block body (the columns of up to `block_rows_max` spans of one org and server) and
//! lazy, per-column decoding of it. Layout in docs/format.md, "Block body".

use std::borrow::Cow;
use std::rc::Rc;

use super::columns::*;
use super::corrupt;
use crate::codec::{self, compress, Reader};
use crate::error::Result;
use crate::model::{Env, OrgId, ServerId, SpanRecord};

/// Bodies written since format 6: as `MOB3`, and the dictionaries of the header's bitmap fields
/// (method, tool, user, session) are in hash order, so a filter finds its value's id from the
/// header bitmap's rank instead of walking the dictionary.
pub const BODY_MAGIC: [u8; 4] = *b"MOB4";
/// Bodies of format 5: the prelude also holds the row-group size; dictionaries in first-appearance
/// order.
const BODY_MAGIC_V3: [u8; 4] = *b"MOB3";
/// Bodies of formats 2 to 4: no row groups.
const BODY_MAGIC_V2: [u8; 4] = *b"MOB2";
/// Hard limit on rows per block, whatever the options say: bounds decode allocations.
pub const BLOCK_ROWS_LIMIT: usize = 1 << 20;

/// Orders rows inside a block (and merged blocks): by start time, then ids, so encoding is
/// deterministic and the start column is non-decreasing.
pub fn sort_rows(rows: &mut [&SpanRecord]) {
    rows.sort_by(|a, b| {
        (a.start_unix_nano, a.span_id, a.trace_id).cmp(&(b.start_unix_nano, b.span_id, b.trace_id))
    });
}

/// A block body read from disk, decoded one column at a time on demand.
pub struct BlockBody {
    pub org: OrgId,
    pub server: ServerId,
    pub rows: usize,
    group_rows: usize,
    hash_dicts: bool,
    data: Vec<u8>,
    frames: Vec<(usize, usize)>,
}

/// The fixed prelude of a body: org, server, rows, and rows per row group (0: none).
pub(super) struct Prelude {
    pub org: OrgId,
    pub server: ServerId,
    pub rows: usize,
    pub group_rows: usize,
    /// `MOB4`: the bitmap fields' dictionaries are in hash order (`hash_order`).
    pub hash_dicts: bool,
}

/// Reads the prelude: magic, then org, server and row count, then (`MOB3`, `MOB4`) rows per row
/// group.
pub(super) fn read_prelude(r: &mut Reader<'_>) -> Result<Prelude> {
    let magic = r.array::<4>()?;
    if magic != BODY_MAGIC && magic != BODY_MAGIC_V3 && magic != BODY_MAGIC_V2 {
        return Err(corrupt("block body magic"));
    }
    let (org, server, rows) = (r.u32_le()?, r.u32_le()?, r.u32_le()? as usize);
    let group_rows = match magic == BODY_MAGIC_V2 {
        false => r.u32_le()? as usize,
        true => 0,
    };
    if group_rows > BLOCK_ROWS_LIMIT {
        return Err(corrupt(format!("row group of {group_rows} rows")));
    }
    Ok(Prelude {
        org,
        server,
        rows,
        group_rows,
        hash_dicts: magic == BODY_MAGIC,
    })
}

/// The frame directory after the prelude: column count, then one length per column. Returns each
/// column's byte range in a body of `body_len` bytes, which the frames must fill exactly.
pub(super) fn read_frames(r: &mut Reader<'_>, body_len: usize) -> Result<Vec<(usize, usize)>> {
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
            .filter(|&e| e <= body_len)
            .ok_or_else(|| corrupt("frame past end"))?;
        frames.push((at, end));
        at = end;
    }
    if at != body_len {
        return Err(corrupt("block body trailing bytes"));
    }
    Ok(frames)
}

impl BlockBody {
    /// Parses the fixed prelude and the frame directory; columns stay compressed.
    pub fn parse(data: Vec<u8>) -> Result<BlockBody> {
        let mut r = Reader::new(&data);
        let Prelude {
            org,
            server,
            rows,
            group_rows,
            hash_dicts,
        } = read_prelude(&mut r)?;
        if rows == 0 || rows > BLOCK_ROWS_LIMIT {
            return Err(corrupt(format!("block row count {rows}")));
        }
        let frames = read_frames(&mut r, data.len())?;
        Ok(BlockBody {
            org,
            server,
            rows,
            group_rows,
            hash_dicts,
            data,
            frames,
        })
    }

    /// The encoded body this was parsed from.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// The stored frame of column `col` (tests read its segments one by one).
    #[cfg(test)]
    pub(super) fn frame(&self, col: usize) -> &[u8] {
        let (a, b) = self.frames[col];
        &self.data[a..b]
    }

    pub(super) fn column(&self, col: usize) -> Result<Vec<u8>> {
        let (a, b) = self.frames[col];
        let mut r = Reader::new(&self.data[a..b]);
        let raw = compress::read_frame(&mut r)?;
        r.finish("column frame")?;
        Ok(raw)
    }
}

impl BlockBody {
    /// Hands the body's bytes to this thread's pools (`bufs`) once its columns are decoded.
    pub fn recycle(self) {
        crate::bufs::give(self.data);
    }
}

impl ColumnRead for BlockBody {
    fn rows(&self) -> usize {
        self.rows
    }
    fn group_rows(&self) -> usize {
        self.group_rows
    }
    fn hash_dicts(&self) -> bool {
        self.hash_dicts
    }
    fn org(&self) -> OrgId {
        self.org
    }
    fn server(&self) -> ServerId {
        self.server
    }
    fn column(&self, col: usize) -> Result<Vec<u8>> {
        BlockBody::column(self, col)
    }
}

/// Column access shared by a whole parsed body ([`BlockBody`]) and a body read chunk by chunk on
/// demand (`lazy::LazyBody`): only [`ColumnRead::column`] differs (plus optional fast paths).
pub trait ColumnRead {
    fn rows(&self) -> usize;
    /// Rows per row group of the segmented columns; 0 when the block has none.
    fn group_rows(&self) -> usize;
    /// Whether the dictionaries of the header's bitmap fields are in hash order (`MOB4`).
    fn hash_dicts(&self) -> bool;
    fn org(&self) -> OrgId;
    fn server(&self) -> ServerId;
    /// The decompressed bytes of column `col`.
    fn column(&self, col: usize) -> Result<Vec<u8>>;

    /// The segments of column `col` when it is a segmented frame and reading them one by one
    /// pays (a body read lazily); `None` means read it whole with [`ColumnRead::column`].
    fn segments(&self, _col: usize) -> Result<Option<Vec<compress::Segment>>> {
        Ok(None)
    }

    /// The raw bytes of segment `k` of column `col` (only called after `segments` gave some); a
    /// lazy body keeps them, so the filter and `materialize` decompress a segment once.
    fn segment(&self, col: usize, k: usize) -> Result<Rc<Vec<u8>>> {
        Err(corrupt(format!(
            "column {col} segment {k} read from a whole body"
        )))
    }

    fn varints(&self, col: usize, per_row: usize) -> Result<Vec<u64>> {
        let raw = self.column(col)?;
        let v = super::fast::varints(&raw, self.rows() * per_row);
        crate::bufs::give(raw);
        v
    }

    fn starts(&self) -> Result<Vec<u64>> {
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

    /// The start column, borrowed when the body keeps it decoded (a lazy body does).
    fn start_times(&self) -> Result<Cow<'_, [u64]>> {
        Ok(Cow::Owned(self.starts()?))
    }

    fn ends(&self, starts: &[u64]) -> Result<Vec<u64>> {
        let mut v = self.varints(C_END, 1)?;
        for (x, s) in v.iter_mut().zip(starts) {
            *x = s.wrapping_add(codec::unzigzag(*x) as u64);
        }
        Ok(v)
    }

    fn fixed<const N: usize>(&self, col: usize) -> Result<Vec<[u8; N]>>
    where
        [u8; N]: crate::bufs::Pooled,
    {
        let raw = self.column(col)?;
        if raw.len() != self.rows() * N {
            return Err(corrupt(format!(
                "fixed column {col} has {} bytes",
                raw.len()
            )));
        }
        let mut out = crate::bufs::take(self.rows());
        out.extend(raw.chunks_exact(N).map(|c| c.try_into().unwrap_or([0; N])));
        crate::bufs::give(raw);
        Ok(out)
    }

    /// Values of a fixed-width column at `rows` only (a lazy body reads just their chunks when
    /// the column is stored raw).
    fn fixed_rows<const N: usize>(&self, col: usize, rows: &[usize]) -> Result<Vec<[u8; N]>>
    where
        [u8; N]: crate::bufs::Pooled,
    {
        let all = self.fixed::<N>(col)?;
        rows.iter()
            .map(|&i| {
                all.get(i)
                    .copied()
                    .ok_or_else(|| corrupt("row past block end"))
            })
            .collect()
    }

    fn trace_ids(&self) -> Result<Vec<[u8; 16]>> {
        self.fixed(C_TRACE)
    }

    /// One byte per row (env, kind, status).
    fn bytes(&self, col: usize) -> Result<Vec<u8>> {
        Ok(self.fixed::<1>(col)?.into_iter().map(|[b]| b).collect())
    }

    fn envs(&self) -> Result<Vec<Env>> {
        self.bytes(C_ENV)?
            .into_iter()
            .map(|b| Env::from_u8(b).ok_or_else(|| corrupt(format!("env byte {b}"))))
            .collect()
    }
}
