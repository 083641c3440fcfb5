//! Block bodies stored as chunks that each just fit one redb leaf. redb puts a value larger than a
//! page on its own run of pages rounded up to a power of two, which wasted ~60% of disk on 300 KB
//! bodies (measured: 171 bytes/span on disk for 45 live); a chunk of [`CHUNK_BYTES`] fits a
//! 16 KiB leaf (four pages) with 76 bytes to spare. Every chunk of a body but the last has
//! the same length, the body's first chunk's, so readers take the 4000-byte chunks (one 4 KiB
//! leaf each) of files written before format 8 as they are (docs/format.md, "redb tables").

use redb::{ReadableTable, Table};

use super::corrupt;
use crate::error::Result;

/// One chunk plus its 12-byte key and redb's leaf overhead (8 bytes for a one-entry leaf) stays
/// under a 16 KiB leaf (four pages).
/// Against 4000-byte chunks in 4 KiB leaves, a quarter of the B-tree inserts, leaf splits and
/// branch rebuilds per body byte: 5.5% fewer instructions per appended span (docs/benchmarks.md,
/// "Body chunks of 16 KiB").
pub const CHUNK_BYTES: usize = 16_288;

/// The chunk length of format 7 and earlier, and the least any body's chunks may have: a damaged
/// first chunk cannot make a reader expect a huge number of chunks.
pub const CHUNK_BYTES_MIN: usize = 4000;

pub type BodyKey = [u8; 12];

/// `[block u64 BE][chunk u32 BE]`.
pub fn body_key(block: u64, chunk: u32) -> BodyKey {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&block.to_be_bytes());
    k[8..].copy_from_slice(&chunk.to_be_bytes());
    k
}

pub fn put(t: &mut Table<&BodyKey, &[u8]>, block: u64, body: &[u8]) -> Result<()> {
    for (i, c) in body.chunks(CHUNK_BYTES).enumerate() {
        let i = u32::try_from(i).map_err(|_| corrupt("body too large"))?;
        t.insert(&body_key(block, i), c)?;
    }
    Ok(())
}

/// The chunk length of a body whose first chunk has `first` bytes, out of `len`: `first` (the
/// whole body when it is one chunk). An error for a first chunk shorter than
/// [`CHUNK_BYTES_MIN`] in a body of several, or longer than the body.
pub fn chunk_bytes_of(block: u64, first: usize, len: usize) -> Result<usize> {
    if first == 0 || first > len || (first < len && first < CHUNK_BYTES_MIN) {
        return Err(corrupt(format!(
            "block {block} first chunk has {first} of {len} bytes"
        )));
    }
    Ok(first)
}

/// The body of `block` and its number of chunks, or `None` if it has no chunk. Chunks must be
/// numbered 0, 1, ... without gaps, none empty, and each but the last as long as the first.
fn get_counted<T: ReadableTable<&'static BodyKey, &'static [u8]>>(
    t: &T,
    block: u64,
    len_hint: usize,
) -> Result<Option<(Vec<u8>, u32)>> {
    let (lo, hi) = (body_key(block, 0), body_key(block, u32::MAX));
    let mut body = crate::bufs::take(len_hint.min(LEN_HINT_BYTES_MAX));
    let mut n = 0u32;
    let mut chunk_len = 0;
    let mut short = false;
    for entry in t.range::<&BodyKey>(&lo..=&hi)? {
        let (k, v) = entry?;
        if k.value()[8..] != n.to_be_bytes() {
            return Err(corrupt(format!("block {block} body chunk {n} missing")));
        }
        let v = v.value();
        if n == 0 {
            chunk_len = v.len();
        } else if short || v.is_empty() || v.len() > chunk_len {
            return Err(corrupt(format!("block {block} body chunk {n} length")));
        }
        // Only the last chunk may be shorter than the first.
        short = v.len() < chunk_len;
        body.extend_from_slice(v);
        n += 1;
    }
    if n > 0 {
        chunk_bytes_of(block, chunk_len, body.len())?;
    }
    Ok((n > 0).then_some((body, n)))
}

/// The body of `block`, or `None` if it has no chunk. Chunks must be numbered 0, 1, ... without
/// gaps, none empty, and each but the last as long as the first.
pub fn get<T: ReadableTable<&'static BodyKey, &'static [u8]>>(
    t: &T,
    block: u64,
) -> Result<Option<Vec<u8>>> {
    get_sized(t, block, 0)
}

/// Reserved at most for a body by [`get_sized`]'s hint (which comes from a block header: trusted
/// for an allocation only this far). Larger bodies grow as they are read.
const LEN_HINT_BYTES_MAX: usize = 16 << 20;

/// [`get`] of a body expected to be `len_hint` bytes long (its header's length): read into a
/// buffer of that size, not one grown chunk by chunk.
pub fn get_sized<T: ReadableTable<&'static BodyKey, &'static [u8]>>(
    t: &T,
    block: u64,
    len_hint: usize,
) -> Result<Option<Vec<u8>>> {
    Ok(get_counted(t, block, len_hint)?.map(|(body, _)| body))
}

/// Removes every chunk of `block`; returns the body it held.
pub fn take(t: &mut Table<&BodyKey, &[u8]>, block: u64) -> Result<Option<Vec<u8>>> {
    let Some((body, n)) = get_counted(t, block, 0)? else {
        return Ok(None);
    };
    for i in 0..n {
        t.remove(&body_key(block, i))?;
    }
    Ok(Some(body))
}

/// Removes every chunk of `block` by key range, without reading them: what deletes a body that
/// is never read again (an organization's purge), even one whose chunks are damaged.
pub fn remove(t: &mut Table<&BodyKey, &[u8]>, block: u64) -> Result<()> {
    let (lo, hi) = (body_key(block, 0), body_key(block, u32::MAX));
    t.retain_in::<&BodyKey, _>(&lo..=&hi, |_, _| false)?;
    Ok(())
}
