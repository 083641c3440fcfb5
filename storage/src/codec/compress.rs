//! zstd framing of one column: `[codec u8][raw_len varint][stored_len varint][stored bytes]`, where
//! codec 0 stores raw bytes (used when zstd would not save anything) and codec 1 a zstd frame.

use std::cell::RefCell;

use super::Result;
use super::{corrupt, put_varint, Reader};

const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// No column of a block may inflate beyond this: a bound on what a damaged length can allocate.
pub const RAW_BYTES_MAX: usize = 256 << 20;

thread_local! {
    /// One zstd compression context (and output buffer) per thread, kept between calls: creating a
    /// context per column costs more than compressing a small column.
    static CCTX: RefCell<Option<(i32, zstd::bulk::Compressor<'static>, Vec<u8>)>> =
        const { RefCell::new(None) };
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Appends `raw` framed, compressed at `level` if that makes it smaller.
pub fn put_frame(out: &mut Vec<u8>, raw: &[u8], level: i32) -> std::io::Result<()> {
    debug_assert!(raw.len() <= RAW_BYTES_MAX);
    // Tiny inputs never win against the ~10 bytes of zstd frame overhead.
    if raw.len() < 32 {
        put_varint_frame(out, raw, None);
        return Ok(());
    }
    CCTX.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _, _)| *l != level) {
            *c = Some((level, zstd::bulk::Compressor::new(level)?, Vec::new()));
        }
        let Some((_, cctx, buf)) = c.as_mut() else {
            unreachable!()
        };
        buf.clear();
        buf.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        cctx.compress_to_buffer(raw, buf)?;
        put_varint_frame(out, raw, Some(buf));
        Ok(())
    })
}

fn decompress(stored: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        let Some(dctx) = d.as_mut() else {
            unreachable!()
        };
        let mut out = Vec::with_capacity(raw_len);
        dctx.decompress_to_buffer(stored, &mut out)?;
        Ok(out)
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
        RAW if stored.len() == raw_len => Ok(stored.to_vec()),
        RAW => Err(corrupt("raw column length mismatch")),
        ZSTD => {
            let raw = decompress(stored, raw_len).map_err(|e| corrupt(format!("zstd: {e}")))?;
            if raw.len() != raw_len {
                return Err(corrupt("decompressed length mismatch"));
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
        fn round_trip(raw in proptest::collection::vec(any::<u8>(), 0..2000), repeat in 1usize..50, level in 1i32..10) {
            let raw: Vec<u8> = raw.iter().copied().cycle().take(raw.len() * repeat).collect();
            let mut out = Vec::new();
            put_frame(&mut out, &raw, level).unwrap();
            let mut r = Reader::new(&out);
            prop_assert_eq!(read_frame(&mut r).unwrap(), raw);
            prop_assert!(r.finish("t").is_ok());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_frame(&mut Reader::new(&bytes));
        }
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
    }
}
