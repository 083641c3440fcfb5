//! A block body read chunk by chunk on demand: `list` and `trace` fetch the prelude (first chunk)
//! and then only the chunks holding the column frames they decode, and for a column stored raw
//! (trace and span ids, 75% of a block) only the chunks holding the rows they return; a column
//! stored as row groups (segmented frame) is read one segment at a time, and each segment is
//! decompressed once per body (the filter and `materialize` share it).

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use redb::ReadOnlyTable;

use super::block::{read_frames, read_prelude, ColumnRead, BLOCK_ROWS_LIMIT};
use super::chunks::{body_key, chunk_bytes_of, BodyKey};
use super::columns::*;
use super::corrupt;
use super::fast;
use super::header::Summary;
use crate::codec::{compress, Reader};
use crate::error::Result;
use crate::model::{OrgId, ServerId};

pub type BodiesTable = ReadOnlyTable<&'static BodyKey, &'static [u8]>;

thread_local! {
    /// Start columns of bodies dropped on this thread, for the next bodies' start columns: a list
    /// reads the start column of every block it visits, and a fresh 64 KB vector per block was
    /// measured (allocation, page faults) in the user page's profile.
    static START_BUFS: RefCell<Vec<Vec<u64>>> = const { RefCell::new(Vec::new()) };
}

/// Most start column buffers one thread keeps.
const START_BUFS_MAX: usize = 4;
/// Largest start column buffer kept for reuse (128 Ki rows): bounds what one thread holds.
const START_BUF_BYTES_MAX: usize = 1 << 20;

/// Frame codec byte of a column stored uncompressed (docs/format.md, "Block body").
const CODEC_RAW: u8 = 0;
/// Frame codec byte of a column stored as segments (row groups).
const CODEC_SEGMENTED: u8 = 2;
/// Columns of fewer raw bytes than this are read whole even when segmented (measured: per-segment
/// reads of small string columns cost more than decompressing them).
#[cfg(not(test))]
const SEGMENTED_READ_MIN_BYTES: usize = 16 << 10;
/// Tests' blocks are tiny: read every segmented frame by segments there.
#[cfg(test)]
const SEGMENTED_READ_MIN_BYTES: usize = 0;

/// A decompressed segment: (column, segment index, raw bytes).
type RawSegment = (usize, usize, Rc<Vec<u8>>);

pub struct LazyBody {
    table: Arc<BodiesTable>,
    block: u64,
    org: OrgId,
    server: ServerId,
    rows: usize,
    group_rows: usize,
    hash_dicts: bool,
    len: usize,
    /// Bytes per chunk (all but the last): the first chunk's length (docs/format.md).
    chunk_bytes: usize,
    /// Absolute `[start, end)` of each column frame in the body.
    frames: Vec<(usize, usize)>,
    chunks: RefCell<Vec<Option<Vec<u8>>>>,
    starts: OnceCell<Vec<u64>>,
    /// Segment tables parsed so far, by column (`None` inside: a plain frame).
    segs: RefCell<Vec<Option<Option<Vec<compress::Segment>>>>>,
    /// Segments decompressed so far, by (column, segment): the filter's segments (a string
    /// column's first dictionary run and ids) are read again by `materialize`. At most the body's
    /// raw columns in all.
    raw_segs: RefCell<Vec<RawSegment>>,
}

impl LazyBody {
    /// Reads the first chunk and checks the prelude against the header `h` (org, server, rows,
    /// body length): frames must tile exactly `h.body_bytes` bytes.
    pub fn open(table: Arc<BodiesTable>, h: &Summary) -> Result<LazyBody> {
        let len = h.body_bytes as usize;
        if len == 0 {
            return Err(corrupt(format!("block {} has an empty body", h.block)));
        }
        let first = table
            .get(&body_key(h.block, 0))?
            .ok_or_else(|| corrupt(format!("block {} body chunk 0 missing", h.block)))?
            .value()
            .to_vec();
        let chunk_bytes = chunk_bytes_of(h.block, first.len(), len)?;
        let mut chunks = vec![None; len.div_ceil(chunk_bytes)];
        chunks[0] = Some(first);
        let mut body = LazyBody {
            table,
            block: h.block,
            org: h.org,
            server: h.server,
            rows: h.rows as usize,
            group_rows: 0,
            hash_dicts: false,
            len,
            chunk_bytes,
            frames: Vec::new(),
            chunks: RefCell::new(chunks),
            starts: OnceCell::new(),
            segs: RefCell::new(vec![None; NCOLS]),
            raw_segs: RefCell::new(Vec::new()),
        };
        let first = body.read(0, len.min(chunk_bytes))?;
        let mut r = Reader::new(&first);
        let p = read_prelude(&mut r)?;
        if p.org != h.org
            || p.server != h.server
            || p.rows != body.rows
            || p.rows > BLOCK_ROWS_LIMIT
        {
            return Err(corrupt(format!(
                "block {} does not match its header",
                h.block
            )));
        }
        body.frames = read_frames(&mut r, len)?;
        body.group_rows = p.group_rows;
        body.hash_dicts = p.hash_dicts;
        Ok(body)
    }

    /// The start column, decoded once and kept (into a buffer of an earlier body when this
    /// thread has one).
    pub fn start_col(&self) -> Result<&[u64]> {
        if self.starts.get().is_none() {
            let (a, b) = self.frames[C_START];
            let frame = self.read(a, b)?;
            let mut r = Reader::new(&frame);
            let mut v = START_BUFS
                .with(|p| p.borrow_mut().pop())
                .unwrap_or_default();
            compress::read_frame_with(&mut r, |raw| {
                fast::start_times_into(raw, self.rows, &mut v)
            })?;
            r.finish("column frame")?;
            let _ = self.starts.set(v);
        }
        Ok(self.starts.get().map_or(&[][..], Vec::as_slice))
    }

    /// Fetches the chunks `c0..=c1` not fetched yet (one range scan).
    fn fetch(&self, c0: usize, c1: usize) -> Result<()> {
        let mut chunks = self.chunks.borrow_mut();
        let Some(first) = (c0..=c1).find(|&c| chunks[c].is_none()) else {
            return Ok(());
        };
        let last = (first..=c1)
            .rev()
            .find(|&c| chunks[c].is_none())
            .unwrap_or(first);
        let (lo, hi) = (
            body_key(self.block, first as u32),
            body_key(self.block, last as u32),
        );
        let mut want = first;
        for entry in self.table.range::<&BodyKey>(&lo..=&hi)? {
            let (k, v) = entry?;
            if k.value()[8..] != (want as u32).to_be_bytes() {
                break;
            }
            if chunks[want].is_none() {
                let expect = self.chunk_bytes.min(self.len - want * self.chunk_bytes);
                if v.value().len() != expect {
                    return Err(corrupt(format!(
                        "block {} chunk {want} has {} bytes",
                        self.block,
                        v.value().len()
                    )));
                }
                chunks[want] = Some(v.value().to_vec());
            }
            want += 1;
        }
        if want <= last {
            return Err(corrupt(format!(
                "block {} body chunk {want} missing",
                self.block
            )));
        }
        Ok(())
    }

    /// Bytes `[a, b)` of the body.
    fn read(&self, a: usize, b: usize) -> Result<Vec<u8>> {
        debug_assert!(a <= b && b <= self.len);
        let mut out = Vec::with_capacity(b - a);
        if a == b {
            return Ok(out);
        }
        let (c0, c1) = (a / self.chunk_bytes, (b - 1) / self.chunk_bytes);
        self.fetch(c0, c1)?;
        let chunks = self.chunks.borrow();
        for c in c0..=c1 {
            let base = c * self.chunk_bytes;
            let data = chunks[c].as_deref().unwrap_or(&[]);
            let (x, y) = (a.max(base) - base, b.min(base + data.len()) - base);
            out.extend_from_slice(&data[x..y]);
        }
        Ok(out)
    }

    /// For a column stored raw, the body offset of its first data byte.
    fn raw_data_at(&self, col: usize, expect_len: usize) -> Result<Option<usize>> {
        let (a, b) = self.frames[col];
        let head = self.read(a, b.min(a + 21))?;
        let mut r = Reader::new(&head);
        if r.u8()? != CODEC_RAW {
            return Ok(None);
        }
        let raw_len = r.varint()?;
        let stored_len = r.varint()?;
        let at = a + r.position();
        if raw_len != expect_len as u64 || stored_len != raw_len || b - at != expect_len {
            return Err(corrupt(format!("raw column {col} length mismatch")));
        }
        Ok(Some(at))
    }
}

impl Drop for LazyBody {
    fn drop(&mut self) {
        let Some(v) = self.starts.take() else { return };
        if v.capacity() * 8 <= START_BUF_BYTES_MAX {
            // `try_with`: a body dropped while the thread's locals are torn down just frees it.
            let _ = START_BUFS.try_with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < START_BUFS_MAX {
                    p.push(v);
                }
            });
        }
    }
}

impl ColumnRead for LazyBody {
    fn group_rows(&self) -> usize {
        self.group_rows
    }
    fn hash_dicts(&self) -> bool {
        self.hash_dicts
    }
    fn segments(&self, col: usize) -> Result<Option<Vec<compress::Segment>>> {
        if let Some(known) = &self.segs.borrow()[col] {
            return Ok(known.clone());
        }
        let (a, b) = self.frames[col];
        // Codec byte, two lengths and the segment count first; then the whole table.
        let head = self.read(a, b.min(a + 32))?;
        let mut r = Reader::new(&head);
        let parsed = if r.u8()? != CODEC_SEGMENTED {
            None
        } else if r.varint()? < SEGMENTED_READ_MIN_BYTES as u64 {
            // A small column costs less decompressed whole than segment by segment (one
            // allocation, copy and table parse per segment); whole reads are always correct.
            None
        } else {
            r.varint()?;
            let n = usize::try_from(r.varint()?)
                .map_err(|_| corrupt("segment count"))?
                .min(compress::SEGMENTS_MAX);
            let want = r.position() + n * compress::SEGMENT_ENTRY_BYTES_MAX;
            let head = self.read(a, b.min(a + want))?;
            compress::segments(&head, b - a)?
        };
        self.segs.borrow_mut()[col] = Some(parsed.clone());
        Ok(parsed)
    }

    fn segment(&self, col: usize, k: usize) -> Result<Rc<Vec<u8>>> {
        if let Some((_, _, raw)) = self
            .raw_segs
            .borrow()
            .iter()
            .find(|s| (s.0, s.1) == (col, k))
        {
            return Ok(raw.clone());
        }
        let segs = self.segments(col)?;
        let s = segs
            .as_ref()
            .and_then(|s| s.get(k))
            .ok_or_else(|| corrupt(format!("column {col} has no segment {k}")))?;
        let a = self.frames[col].0;
        let stored = self.read(a + s.stored.0, a + s.stored.1)?;
        let raw = Rc::new(compress::read_segment(s, &stored)?);
        self.raw_segs.borrow_mut().push((col, k, raw.clone()));
        Ok(raw)
    }

    fn rows(&self) -> usize {
        self.rows
    }
    fn org(&self) -> OrgId {
        self.org
    }
    fn server(&self) -> ServerId {
        self.server
    }

    fn column(&self, col: usize) -> Result<Vec<u8>> {
        let (a, b) = self.frames[col];
        let frame = self.read(a, b)?;
        let mut r = Reader::new(&frame);
        let raw = compress::read_frame(&mut r)?;
        r.finish("column frame")?;
        Ok(raw)
    }

    fn starts(&self) -> Result<Vec<u64>> {
        Ok(self.start_col()?.to_vec())
    }

    fn start_times(&self) -> Result<Cow<'_, [u64]>> {
        Ok(Cow::Borrowed(self.start_col()?))
    }

    fn fixed_rows<const N: usize>(&self, col: usize, rows: &[usize]) -> Result<Vec<[u8; N]>>
    where
        [u8; N]: crate::bufs::Pooled,
    {
        if rows.iter().any(|&i| i >= self.rows) {
            return Err(corrupt("row past block end"));
        }
        let Some(at) = self.raw_data_at(col, self.rows * N)? else {
            let all = self.fixed::<N>(col)?;
            return Ok(rows.iter().map(|&i| all[i]).collect());
        };
        rows.iter()
            .map(|&i| {
                let v = self.read(at + i * N, at + (i + 1) * N)?;
                v.try_into().map_err(|_| corrupt("fixed row"))
            })
            .collect()
    }
}
