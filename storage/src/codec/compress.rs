//! zstd framing of one column: `[codec u8][raw_len varint][stored_len varint][stored bytes]`, where
//! codec 0 stores raw bytes (used when zstd would not save anything), codec 1 a zstd frame, and
//! codec 2 a segmented frame: the raw bytes cut at offsets the encoder chose (row-group
//! boundaries), each segment stored raw or as its own zstd frame, so a reader that needs a few
//! rows decompresses only the segments holding them. Concatenated, the segments are the column.

use std::cell::RefCell;

use super::Result;
use super::{corrupt, put_varint, DecodeError, Reader};

const RAW: u8 = 0;
const ZSTD: u8 = 1;
const SEGMENTED: u8 = 2;
/// Most segments one segmented frame may have: bounds the segment table a reader parses.
pub const SEGMENTS_MAX: usize = 4096;
/// Most bytes one segment table entry takes (codec byte and two varints of at most 10 bytes).
pub const SEGMENT_ENTRY_BYTES_MAX: usize = 21;
/// No column of a block may inflate beyond this: a bound on what a damaged length can allocate.
pub const RAW_BYTES_MAX: usize = 256 << 20;

/// Frames shorter than this are stored raw at the fast (negative) zstd levels: zstd's set-up of
/// a frame (entropy tables, about 20,000 instructions) costs more than writing the few hundred
/// bytes it would save, and a pending block's small columns are rewritten at the next merge.
pub const FAST_LEVEL_RAW_BYTES_MAX: usize = 1024;

/// Most compression levels whose contexts one thread keeps (an append writes pending blocks at
/// one level and full blocks at another in the same transaction).
const CCTX_LEVELS_MAX: usize = 4;

/// A thread's zstd compression contexts, one per level recently used, and its output buffer.
#[derive(Default)]
struct Compressors {
    by_level: Vec<(i32, zstd::bulk::Compressor<'static>)>,
    buf: Vec<u8>,
}

thread_local! {
    /// The zstd compression contexts (and output buffer) of this thread, kept between calls:
    /// creating a context costs more than compressing a small column, and one context per level
    /// (not one switched between levels) keeps alternating levels from rebuilding it each time.
    static CCTX: RefCell<Compressors> = RefCell::new(Compressors::default());
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    /// One output buffer per thread for [`read_frame_with`], kept between calls (a column read
    /// for every block of a scan otherwise allocates, and faults in, a fresh buffer each time).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Largest buffer [`read_frame_with`] keeps between calls: bounds what one thread holds.
const SCRATCH_BYTES_MAX: usize = 1 << 20;

/// Appends `raw` framed, compressed at `level` if that makes it smaller.
pub fn put_frame(out: &mut Vec<u8>, raw: &[u8], level: i32) -> std::io::Result<()> {
    debug_assert!(raw.len() <= RAW_BYTES_MAX);
    // Tiny inputs never win against the ~10 bytes of zstd frame overhead. At the fast (negative)
    // levels, used for pending blocks that are merged away soon, small frames stay raw too.
    if raw.len() < 32 || (level < 0 && raw.len() < FAST_LEVEL_RAW_BYTES_MAX) {
        put_varint_frame(out, raw, None);
        return Ok(());
    }
    CCTX.with(|c| {
        let c = &mut *c.borrow_mut();
        let at = match c.by_level.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                if c.by_level.len() >= CCTX_LEVELS_MAX {
                    c.by_level.remove(0);
                }
                c.by_level
                    .push((level, zstd::bulk::Compressor::new(level)?));
                c.by_level.len() - 1
            }
        };
        let (cctx, buf) = (&mut c.by_level[at].1, &mut c.buf);
        buf.clear();
        buf.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        cctx.compress_to_buffer(raw, buf)?;
        put_varint_frame(out, raw, Some(buf));
        Ok(())
    })
}

/// Appends `raw` as a segmented frame cut at `cuts` (strictly increasing offsets inside
/// `(0, raw.len())`), each segment compressed at `level` when that makes it smaller.
pub fn put_frame_segmented(
    out: &mut Vec<u8>,
    raw: &[u8],
    cuts: &[usize],
    level: i32,
) -> std::io::Result<()> {
    debug_assert!(cuts.windows(2).all(|w| w[0] < w[1]));
    debug_assert!(cuts.iter().all(|&c| c > 0 && c < raw.len()));
    debug_assert!(cuts.len() < SEGMENTS_MAX);
    let mut table = Vec::with_capacity(4 + cuts.len() * 8);
    let mut data = crate::bufs::take(raw.len() / 4);
    put_varint(&mut table, cuts.len() as u64 + 1);
    let bounds = std::iter::once(0)
        .chain(cuts.iter().copied())
        .zip(cuts.iter().copied().chain(std::iter::once(raw.len())));
    let mut seg = crate::bufs::take(raw.len() / cuts.len().max(1));
    for (a, b) in bounds {
        seg.clear();
        put_frame(&mut seg, &raw[a..b], level)?;
        // `put_frame` wrote [codec][raw_len][stored_len][stored]: the table keeps the first three.
        let mut r = Reader::new(&seg);
        let at = (|| -> Result<usize> {
            r.u8()?;
            r.varint()?;
            r.varint()?;
            Ok(r.position())
        })()
        .map_err(std::io::Error::other)?;
        table.extend_from_slice(&seg[..at]);
        data.extend_from_slice(&seg[at..]);
    }
    out.push(SEGMENTED);
    put_varint(out, raw.len() as u64);
    put_varint(out, (table.len() + data.len()) as u64);
    out.extend_from_slice(&table);
    out.extend_from_slice(&data);
    crate::bufs::give(data);
    crate::bufs::give(seg);
    Ok(())
}

/// One segment of a segmented frame: its codec, its raw byte range in the column, and the range
/// of its stored bytes counted from the start of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub codec: u8,
    pub raw: (usize, usize),
    pub stored: (usize, usize),
}

/// The layout of a frame from its first bytes (`head`, at least the codec, lengths and, for a
/// segmented frame, the whole segment table; `frame_len` is the whole frame's length): `None` for
/// a plain frame (codec 0 or 1), else its segments. Checks that segments tile the raw length and
/// the stored bytes exactly.
pub fn segments(head: &[u8], frame_len: usize) -> Result<Option<Vec<Segment>>> {
    let mut r = Reader::new(head);
    let codec = r.u8()?;
    if codec != SEGMENTED {
        return Ok(None);
    }
    let raw_len = usize::try_from(r.varint()?).map_err(|_| corrupt("segmented raw length"))?;
    let stored_len = usize::try_from(r.varint()?).map_err(|_| corrupt("segmented length"))?;
    let body_at = r.position();
    if raw_len > RAW_BYTES_MAX || body_at.checked_add(stored_len) != Some(frame_len) {
        return Err(corrupt("segmented frame length mismatch"));
    }
    let n = r.varint()?;
    if n == 0 || n > SEGMENTS_MAX as u64 {
        return Err(corrupt(format!("segmented frame with {n} segments")));
    }
    let mut entries = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let c = r.u8()?;
        let raw = usize::try_from(r.varint()?).map_err(|_| corrupt("segment length"))?;
        let stored = usize::try_from(r.varint()?).map_err(|_| corrupt("segment length"))?;
        if c > ZSTD || (c == RAW && raw != stored) {
            return Err(corrupt("segment codec or length"));
        }
        entries.push((c, raw, stored));
    }
    let (mut raw_at, mut stored_at) = (0usize, r.position());
    let mut out = Vec::with_capacity(entries.len());
    for (codec, raw, stored) in entries {
        let raw_end = raw_at
            .checked_add(raw)
            .filter(|&e| e <= raw_len)
            .ok_or_else(|| corrupt("segments exceed the raw length"))?;
        let stored_end = stored_at
            .checked_add(stored)
            .filter(|&e| e <= frame_len)
            .ok_or_else(|| corrupt("segments exceed the frame"))?;
        out.push(Segment {
            codec,
            raw: (raw_at, raw_end),
            stored: (stored_at, stored_end),
        });
        (raw_at, stored_at) = (raw_end, stored_end);
    }
    if raw_at != raw_len || stored_at != frame_len {
        return Err(corrupt("segments do not tile the frame"));
    }
    Ok(Some(out))
}

/// [`read_frame`], handing the raw bytes to `f` instead of returning them: a zstd frame is
/// decompressed into a per-thread buffer kept between calls (a raw or segmented frame goes
/// through `read_frame`). Same checks.
pub fn read_frame_with<T, E: From<DecodeError>>(
    r: &mut Reader<'_>,
    f: impl FnOnce(&[u8]) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let mut peek = Reader::new(r.rest());
    let codec = peek.u8()?;
    if codec != ZSTD {
        return f(&read_frame(r)?);
    }
    let raw_len = peek.varint()?;
    if raw_len > RAW_BYTES_MAX as u64 {
        return Err(corrupt(format!("column of {raw_len} bytes exceeds the limit")).into());
    }
    let raw_len = raw_len as usize;
    let stored = peek.len_bytes()?;
    r.bytes(peek.position())?;
    // Taken out while `f` runs, so `f` may read frames itself.
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    buf.clear();
    buf.reserve(raw_len);
    decompress_into(stored, &mut buf).map_err(|e| corrupt(format!("zstd: {e}")))?;
    if buf.len() != raw_len {
        return Err(corrupt("decompressed length mismatch").into());
    }
    let out = f(&buf);
    if buf.capacity() <= SCRATCH_BYTES_MAX {
        SCRATCH.with(|s| *s.borrow_mut() = buf);
    }
    out
}

/// The raw bytes of one segment from its stored bytes.
pub fn read_segment(seg: &Segment, stored: &[u8]) -> Result<Vec<u8>> {
    let raw_len = seg.raw.1 - seg.raw.0;
    if stored.len() != seg.stored.1 - seg.stored.0 {
        return Err(corrupt("segment stored length mismatch"));
    }
    match seg.codec {
        RAW => Ok(stored.to_vec()),
        _ => {
            let raw = decompress(stored, raw_len).map_err(|e| corrupt(format!("zstd: {e}")))?;
            if raw.len() != raw_len {
                return Err(corrupt("decompressed length mismatch"));
            }
            Ok(raw)
        }
    }
}

fn decompress(stored: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    let mut out = crate::bufs::take(raw_len);
    decompress_into(stored, &mut out)?;
    Ok(out)
}

/// Decompresses `stored` into `out`'s spare capacity with this thread's zstd context.
fn decompress_into(stored: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        let Some(dctx) = d.as_mut() else {
            unreachable!()
        };
        dctx.decompress_to_buffer(stored, out)?;
        Ok(())
    })
}

fn put_varint_frame(out: &mut Vec<u8>, raw: &[u8], packed: Option<&[u8]>) {
    match packed {
        Some(p) if p.len() < raw.len() => {
            out.push(ZSTD);
            put_varint(out, raw.len() as u64);
            put_varint(out, p.len() as u64);
            out.extend_from_slice(p);
        }
        _ => {
            out.push(RAW);
            put_varint(out, raw.len() as u64);
            put_varint(out, raw.len() as u64);
            out.extend_from_slice(raw);
        }
    }
}

/// Reads one frame and returns the raw bytes.
pub fn read_frame(r: &mut Reader<'_>) -> Result<Vec<u8>> {
    let start = r.rest();
    let codec = r.u8()?;
    let raw_len = r.varint()?;
    if raw_len > RAW_BYTES_MAX as u64 {
        return Err(corrupt(format!(
            "column of {raw_len} bytes exceeds the limit"
        )));
    }
    let raw_len = raw_len as usize;
    let stored = r.len_bytes()?;
    match codec {
        RAW if stored.len() == raw_len => {
            let mut v = crate::bufs::take(raw_len);
            v.extend_from_slice(stored);
            Ok(v)
        }
        RAW => Err(corrupt("raw column length mismatch")),
        ZSTD => {
            let raw = decompress(stored, raw_len).map_err(|e| corrupt(format!("zstd: {e}")))?;
            if raw.len() != raw_len {
                return Err(corrupt("decompressed length mismatch"));
            }
            Ok(raw)
        }
        SEGMENTED => {
            let frame = &start[..start.len() - r.remaining()];
            let segs = segments(frame, frame.len())?.ok_or_else(|| corrupt("segmented frame"))?;
            let mut raw = crate::bufs::take(raw_len);
            for s in &segs {
                raw.extend_from_slice(&read_segment(s, &frame[s.stored.0..s.stored.1])?);
            }
            Ok(raw)
        }
        other => Err(corrupt(format!("unknown column codec {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(raw in proptest::collection::vec(any::<u8>(), 0..2000), repeat in 1usize..50, level in -5i32..10) {
            let raw: Vec<u8> = raw.iter().copied().cycle().take(raw.len() * repeat).collect();
            let mut out = Vec::new();
            put_frame(&mut out, &raw, level).unwrap();
            let mut r = Reader::new(&out);
            prop_assert_eq!(read_frame(&mut r).unwrap(), raw.clone());
            prop_assert!(r.finish("t").is_ok());
            let mut r = Reader::new(&out);
            prop_assert_eq!(read_frame_with(&mut r, |b| Ok::<_, DecodeError>(b.to_vec())).unwrap(), raw);
            prop_assert!(r.finish("t").is_ok());
        }

        #[test]
        fn segmented_round_trip(raw in proptest::collection::vec(0u8..4, 2..3000), cuts in proptest::collection::vec(any::<usize>(), 0..20)) {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| 1 + c % (raw.len() - 1)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut out = vec![9u8];
            put_frame_segmented(&mut out, &raw, &cuts, 3).unwrap();
            let frame = &out[1..];
            let mut r = Reader::new(frame);
            prop_assert_eq!(&read_frame(&mut r).unwrap(), &raw);
            prop_assert!(r.finish("t").is_ok());
            let segs = segments(frame, frame.len()).unwrap().unwrap();
            prop_assert_eq!(segs.len(), cuts.len() + 1);
            for s in &segs {
                prop_assert_eq!(read_segment(s, &frame[s.stored.0..s.stored.1]).unwrap(), raw[s.raw.0..s.raw.1].to_vec());
            }
            for cut in [1, frame.len() / 2, frame.len() - 1] {
                let _ = segments(&frame[..cut], frame.len());
                prop_assert!(read_frame(&mut Reader::new(&frame[..cut])).is_err());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_frame(&mut Reader::new(&bytes));
            let _ = read_frame_with(&mut Reader::new(&bytes), |b| Ok::<_, DecodeError>(b.len()));
            let _ = segments(&bytes, bytes.len());
            let mut seg = vec![SEGMENTED];
            seg.extend_from_slice(&bytes);
            let _ = read_frame(&mut Reader::new(&seg));
            let _ = segments(&seg, seg.len());
        }
    }

    /// At the fast levels a frame under `FAST_LEVEL_RAW_BYTES_MAX` stays raw; longer ones, and
    /// every frame of 32 bytes or more at the regular levels, are compressed when that helps.
    #[test]
    fn fast_levels_keep_small_frames_raw() {
        let codec = |n: usize, level: i32| {
            let mut out = Vec::new();
            put_frame(&mut out, &vec![7u8; n], level).unwrap();
            assert_eq!(read_frame(&mut Reader::new(&out)).unwrap(), vec![7u8; n]);
            out[0]
        };
        assert_eq!(codec(FAST_LEVEL_RAW_BYTES_MAX - 1, -1), RAW);
        assert_eq!(codec(FAST_LEVEL_RAW_BYTES_MAX, -1), ZSTD);
        assert_eq!(codec(FAST_LEVEL_RAW_BYTES_MAX - 1, 1), ZSTD);
        assert_eq!(codec(31, 3), RAW);
        assert_eq!(codec(64, 3), ZSTD);
    }

    #[test]
    fn compresses_and_detects_lies() {
        let raw = vec![7u8; 10_000];
        let mut out = Vec::new();
        put_frame(&mut out, &raw, 3).unwrap();
        assert!(out.len() < 100);
        // Claim one byte more than the frame holds.
        let mut lie = vec![ZSTD];
        put_varint(&mut lie, 10_001);
        let mut r = Reader::new(&out[1..]);
        let _ = r.varint().unwrap();
        lie.extend_from_slice(&out[1 + r.position()..]);
        assert!(read_frame(&mut Reader::new(&lie)).is_err());
        assert!(read_frame_with(&mut Reader::new(&lie), |_| Ok::<_, DecodeError>(())).is_err());
    }
}
