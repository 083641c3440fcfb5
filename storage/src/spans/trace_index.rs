//! The per-partition trace index. Every block has its own entries, written in the transaction that
//! writes the block and removed in the one that removes it, so the index costs a few B-tree inserts
//! per *block* (never one per span) and is never rewritten as it grows.
//!
//! A block of `rows` rows splits its trace ids into `2^bits` buckets by their top `bits` bits
//! (`bits` = [`bits_for`]`(rows)`, about [`ENTRIES_PER_VALUE`] ids per bucket); each non-empty
//! bucket is one redb value keyed `(org, bits, bucket, stored block)` holding the sorted, delta-coded
//! 24-bit fingerprints (the trace-id bits right after the bucket bits). The pending blocks `append`
//! writes take one bucket whatever their rows ([`Fanout::One`]): they are merged away soon, and
//! compaction rewrites one still pending when its day is finished. A lookup range-scans
//! `(org, bits, bucket_of(trace, bits), *)` for each `bits` in `0..=BITS_MAX`: it reads one value
//! per block of the org (a short one but for pending blocks), never a block body, and only bodies
//! of candidate blocks follow.
//!
//! Files created since format 7 store the block id bit-reversed ([`key_block`]; `meta` row
//! `trace_keys`): new blocks then land all over each bucket's key range instead of at its end.
//! redb splits a full leaf in half, so entries appended at the end of 128 ranges left every leaf
//! half full (51% measured), and scattered ones fill them to about 65-70%: 1.1-1.7 bytes per span
//! less on disk (docs/benchmarks.md). Older files keep their keys: rewriting them in place made
//! redb double a sealed file's length, so each file's own `trace_keys` row says which it has.

use std::collections::BTreeSet;

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::corrupt;
use super::header::Summary;
use super::partition::{split_header_key, HEADERS, KEY_TRACE_KEYS, META, TRACE_INDEX};
use crate::codec::{put_varint, Reader};
use crate::error::Result;
use crate::model::OrgId;

/// Largest bucket width: 1024 buckets (a block of 64k+ rows).
pub const BITS_MAX: u8 = 10;
/// Fingerprint width. With the bucket bits a block of 8192 rows discriminates 31 bits: a lookup
/// reads a non-matching block with probability about rows / 2^31 per block checked.
pub const FP_BITS: u32 = 24;
/// Target ids per bucket value: amortizes the 15-byte key and redb's per-entry overhead.
pub const ENTRIES_PER_VALUE: usize = 64;

pub type IndexKey = [u8; 15];

/// Bucket bits for a block of `rows` rows.
pub fn bits_for(rows: usize) -> u8 {
    let per = rows / ENTRIES_PER_VALUE;
    if per <= 1 {
        0
    } else {
        (usize::BITS - (per - 1).leading_zeros()).min(u32::from(BITS_MAX)) as u8
    }
}

fn prefix(trace: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&trace[..8]);
    u64::from_be_bytes(b)
}

/// Top `bits` bits of the trace id.
pub fn bucket_of(trace: &[u8; 16], bits: u8) -> u16 {
    if bits == 0 {
        0
    } else {
        (prefix(trace) >> (64 - u32::from(bits))) as u16
    }
}

/// The [`FP_BITS`] bits of the trace id after the top `bits`.
pub fn fingerprint(trace: &[u8; 16], bits: u8) -> u32 {
    ((prefix(trace) << bits) >> (64 - FP_BITS)) as u32
}

/// How a file's index keys hold block ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// As they are (files created before format 7).
    Plain,
    /// Bit-reversed ([`key_block`]).
    Reversed,
}

impl Keys {
    /// The layout a file's `meta` table records (its `trace_keys` row).
    fn of(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Keys> {
        match meta.get(KEY_TRACE_KEYS)? {
            None => Ok(Keys::Plain),
            Some(v) if v.value() == 1u32.to_le_bytes() => Ok(Keys::Reversed),
            Some(_) => Err(corrupt("meta trace_keys")),
        }
    }

    /// The layout of the file `txn` reads.
    pub fn read(txn: &ReadTransaction) -> Result<Keys> {
        Keys::of(&txn.open_table(META)?)
    }

    /// The layout of the file `txn` writes.
    pub fn write(txn: &WriteTransaction) -> Result<Keys> {
        Keys::of(&txn.open_table(META)?)
    }

    /// `block` as stored in a key of this layout; its own inverse.
    fn stored(self, block: u64) -> u64 {
        match self {
            Keys::Plain => block,
            Keys::Reversed => key_block(block),
        }
    }
}

/// The block id as stored in a [`Keys::Reversed`] key: bit-reversed, which is its own inverse.
pub fn key_block(block: u64) -> u64 {
    block.reverse_bits()
}

pub fn index_key(keys: Keys, org: OrgId, bits: u8, bucket: u16, block: u64) -> IndexKey {
    key_with_stored_block(org, bits, bucket, keys.stored(block))
}

/// [`index_key`] of a block id already in its stored form.
fn key_with_stored_block(org: OrgId, bits: u8, bucket: u16, stored: u64) -> IndexKey {
    let mut k = [0u8; 15];
    k[..4].copy_from_slice(&org.to_be_bytes());
    k[4] = bits;
    k[5..7].copy_from_slice(&bucket.to_be_bytes());
    k[7..].copy_from_slice(&stored.to_be_bytes());
    k
}

/// Copies the index of the file `read` reads into the one `txn` writes, for the sealed rewrite:
/// block by block in block-id order (from the headers) rather than in key order. With
/// [`Keys::Reversed`] that scatters the inserts over every bucket's range, as appends do, and the
/// leaves fill to about 65-70%, where a key-order copy appends to each leaf until it splits in
/// half and leaves them all half full. Plain files are copied in key order (the same either way).
/// Entries are written and removed with their blocks, so every one is reached from a header; if
/// the counts still differ, the rest is copied in key order, so nothing is ever dropped.
pub fn copy_for_seal(read: &ReadTransaction, txn: &WriteTransaction) -> Result<()> {
    let src = match read.open_table(TRACE_INDEX) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let keys = Keys::read(read)?;
    let mut dst = txn.open_table(TRACE_INDEX)?;
    let mut copied = 0u64;
    if keys == Keys::Reversed {
        let mut blocks: Vec<(u64, OrgId, u32)> = Vec::new();
        for e in read.open_table(HEADERS)?.iter()? {
            let (k, v) = e?;
            let s = Summary::decode(split_header_key(k.value()), v.value())?;
            blocks.push((s.block, s.org, s.rows));
        }
        blocks.sort_unstable();
        for (block, org, rows) in blocks {
            for k in block_keys(keys, org, block, rows as usize) {
                if let Some(v) = src.get(&k)? {
                    dst.insert(&k, v.value())?;
                    copied += 1;
                }
            }
        }
    }
    if copied != src.len()? {
        for e in src.iter()? {
            let (k, v) = e?;
            dst.insert(k.value(), v.value())?;
        }
    }
    Ok(())
}

/// How many buckets a new block's ids go in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fanout {
    /// [`bits_for`] its rows: about [`ENTRIES_PER_VALUE`] ids per bucket.
    ByRows,
    /// One bucket (`bits` 0), for the pending blocks `append` writes: they live until the next
    /// merge, and each bucket is a B-tree insert now and a remove then, on leaves scattered over
    /// the index (docs/format.md, "Trace index").
    One,
}

/// Indexes the trace ids of a new block.
pub fn insert_block(
    txn: &WriteTransaction,
    org: OrgId,
    block: u64,
    traces: &[[u8; 16]],
    fanout: Fanout,
) -> Result<()> {
    let bits = match fanout {
        Fanout::ByRows => bits_for(traces.len()),
        Fanout::One => 0,
    };
    let entries = sorted_entries(traces, bits);
    let fp_mask = (1u64 << FP_BITS) - 1;
    let keys = Keys::write(txn)?;
    let mut t = txn.open_table(TRACE_INDEX)?;
    let mut value = Vec::with_capacity(ENTRIES_PER_VALUE * 4);
    for run in entries.chunk_by(|a, b| a >> FP_BITS == b >> FP_BITS) {
        value.clear();
        encode_fps(&mut value, run.iter().map(|e| (e & fp_mask) as u32));
        t.insert(
            &index_key(keys, org, bits, (run[0] >> FP_BITS) as u16, block),
            value.as_slice(),
        )?;
    }
    Ok(())
}

/// Each trace's (bucket, fingerprint) as one integer, `bucket << FP_BITS | fingerprint`, sorted and
/// deduplicated. The pair is the top `bits + FP_BITS` bits of the trace id, so sorting those bits
/// as one integer orders the pairs as a tuple sort would, at a fraction of the comparisons' cost.
fn sorted_entries(traces: &[[u8; 16]], bits: u8) -> Vec<u64> {
    let shift = 64 - u32::from(bits) - FP_BITS;
    let mut entries: Vec<u64> = traces.iter().map(|t| prefix(t) >> shift).collect();
    entries.sort_unstable();
    entries.dedup();
    entries
}

/// The keys a block of `rows` rows may have entries under, whichever [`Fanout`] wrote it: its
/// [`bits_for`] buckets, then (if that is not already `bits` 0) the one bucket of `bits` 0.
fn block_keys(keys: Keys, org: OrgId, block: u64, rows: usize) -> impl Iterator<Item = IndexKey> {
    let bits = bits_for(rows);
    let by_rows = (0..(1u32 << bits)).map(move |b| index_key(keys, org, bits, b as u16, block));
    let one = (bits != 0).then(|| index_key(keys, org, 0, 0, block));
    by_rows.chain(one)
}

/// Whether a block of `rows` rows is indexed in one bucket ([`Fanout::One`]) where
/// [`Fanout::ByRows`] would take several: read once per pending block when a partition's pending
/// blocks are loaded (`Pending::one_bucket`), from the index table and key layout opened once.
pub fn in_one_bucket(
    index: &redb::ReadOnlyTable<&'static IndexKey, &'static [u8]>,
    keys: Keys,
    org: OrgId,
    block: u64,
    rows: usize,
) -> Result<bool> {
    if bits_for(rows) == 0 {
        return Ok(false);
    }
    Ok(index.get(&index_key(keys, org, 0, 0, block))?.is_some())
}

/// Removes the entries of a block of `rows` rows.
pub fn remove_block(txn: &WriteTransaction, org: OrgId, block: u64, rows: usize) -> Result<()> {
    let keys = Keys::write(txn)?;
    let mut t = txn.open_table(TRACE_INDEX)?;
    for k in block_keys(keys, org, block, rows) {
        t.remove(&k)?;
    }
    Ok(())
}

/// Blocks of this partition that may hold spans of `trace` in `org` (a superset; callers check ids).
pub fn lookup(txn: &ReadTransaction, org: OrgId, trace: &[u8; 16]) -> Result<BTreeSet<u64>> {
    let mut blocks = BTreeSet::new();
    let keys = Keys::read(txn)?;
    let t = txn.open_table(TRACE_INDEX)?;
    for bits in 0..=BITS_MAX {
        let bucket = bucket_of(trace, bits);
        let fp = fingerprint(trace, bits);
        let (lo, hi) = (
            key_with_stored_block(org, bits, bucket, 0),
            key_with_stored_block(org, bits, bucket, u64::MAX),
        );
        for entry in t.range::<&IndexKey>(&lo..=&hi)? {
            let (k, v) = entry?;
            if contains_fp(v.value(), fp)? {
                let k = k.value();
                let mut b = [0u8; 8];
                b.copy_from_slice(&k[7..]);
                blocks.insert(keys.stored(u64::from_be_bytes(b)));
            }
        }
    }
    Ok(blocks)
}

/// `varint n, n x varint delta` of ascending fingerprints (first delta from 0).
pub fn encode_fps(out: &mut Vec<u8>, fps: impl ExactSizeIterator<Item = u32>) {
    put_varint(out, fps.len() as u64);
    let mut prev = 0;
    for fp in fps {
        put_varint(out, u64::from(fp - prev));
        prev = fp;
    }
}

fn contains_fp(bytes: &[u8], want: u32) -> Result<bool> {
    let mut r = Reader::new(bytes);
    let n = r.count(1)?;
    let mut fp = 0u32;
    for _ in 0..n {
        fp = fp
            .checked_add(r.varint_u32()?)
            .ok_or_else(|| corrupt("trace index fingerprint overflow"))?;
        if fp >= want {
            return Ok(fp == want);
        }
    }
    Ok(false)
}

#[cfg(test)]
pub fn decode_fps(bytes: &[u8]) -> Result<Vec<u32>> {
    let mut r = Reader::new(bytes);
    let n = r.count(1)?;
    let mut out = Vec::with_capacity(n);
    let mut fp = 0u32;
    for _ in 0..n {
        fp = fp
            .checked_add(r.varint_u32()?)
            .ok_or_else(|| corrupt("trace index fingerprint overflow"))?;
        out.push(fp);
    }
    r.finish("trace index value")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fps_round_trip(mut fps in proptest::collection::vec(0u32..(1 << FP_BITS), 0..300), probe in 0u32..(1 << FP_BITS)) {
            fps.sort_unstable();
            fps.dedup();
            let mut bytes = Vec::new();
            encode_fps(&mut bytes, fps.iter().copied());
            prop_assert_eq!(decode_fps(&bytes).unwrap(), fps.clone());
            prop_assert_eq!(contains_fp(&bytes, probe).unwrap(), fps.contains(&probe));
        }

        #[test]
        fn entries_are_the_sorted_bucket_fingerprint_pairs(
            traces in proptest::collection::vec(any::<[u8; 16]>(), 1..600),
            bits in 0u8..=BITS_MAX,
        ) {
            let mut want: Vec<(u16, u32)> = traces
                .iter()
                .map(|t| (bucket_of(t, bits), fingerprint(t, bits)))
                .collect();
            want.sort_unstable();
            want.dedup();
            let got: Vec<(u16, u32)> = sorted_entries(&traces, bits)
                .iter()
                .map(|e| ((e >> FP_BITS) as u16, (e & ((1 << FP_BITS) - 1)) as u32))
                .collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), probe in any::<u32>()) {
            let _ = decode_fps(&bytes);
            let _ = contains_fp(&bytes, probe);
        }

        #[test]
        fn bucket_and_fingerprint_split_the_prefix(trace in any::<[u8; 16]>(), bits in 0u8..=BITS_MAX) {
            let p = prefix(&trace);
            let joined = (u64::from(bucket_of(&trace, bits)) << FP_BITS) | u64::from(fingerprint(&trace, bits));
            prop_assert_eq!(joined, p >> (64 - FP_BITS - u32::from(bits)));
        }
    }

    #[test]
    fn bits_grow_with_rows() {
        assert_eq!(bits_for(1), 0);
        assert_eq!(bits_for(127), 0);
        assert_eq!(bits_for(128), 1);
        assert_eq!(bits_for(512), 3);
        assert_eq!(bits_for(8192), 7);
        assert_eq!(bits_for(1 << 20), BITS_MAX);
    }
}
