//! The per-partition trace index. Every block has its own entries, written in the transaction that
//! writes the block and removed in the one that removes it, so the index costs a few B-tree inserts
//! per *block* (never one per span) and is never rewritten as it grows.
//!
//! A block of `rows` rows splits its trace ids into `2^bits` buckets by their top `bits` bits
//! (`bits` = [`Keys::bits_for`]`(rows)`, about [`Keys::ids_per_bucket`] ids per bucket: 256 in
//! files created since format 9, 64 before); each non-empty bucket is one redb value keyed
//! `(org, bits, bucket, stored block)` holding the sorted 24-bit fingerprints (the trace-id bits
//! right after the bucket bits), fixed-width since format 9 (searched by bisection), delta-coded
//! before. The pending blocks `append`
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
//!
//! Files created since format 9 (`trace_keys` = 2) also put about 256 ids in a bucket instead of
//! 64: a full block of 8192 rows then takes 32 values instead of 128. Each value lands on its own
//! leaf, which redb copies whole into the transaction, so a full block cost 128 leaf rewrites
//! (about 60 of the 260 bytes the server wrote per ingested span) and now costs 32
//! (docs/benchmarks.md, "Trace-index buckets of 256 ids"). A lookup reads one value per block,
//! so it reads more pages: 512 per bucket wrote still less but doubled the median lookup at 10M
//! spans, 256 costs it about 15%. A full block now discriminates 29 bits instead of 31.

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
/// Fingerprint width. With the bucket bits a block of 8192 rows discriminates 29 bits (31 in files
/// of 64 ids per bucket): a lookup reads a non-matching block with probability about rows / 2^29
/// per block checked.
pub const FP_BITS: u32 = 24;
/// Target ids per bucket value in files created before format 9 (`trace_keys` absent or 1).
pub const IDS_PER_BUCKET_V8: usize = 64;
/// Target ids per bucket value in files created since format 9 (`trace_keys` = 2): few values
/// per block, since each is a leaf rewrite when written, and small ones (~770 bytes), since a
/// lookup reads one per block.
pub const IDS_PER_BUCKET: usize = 256;

pub type IndexKey = [u8; 15];

/// Bucket bits for a block of `rows` rows, about `ids_per_bucket` ids per bucket.
fn bits_for(rows: usize, ids_per_bucket: usize) -> u8 {
    let per = rows / ids_per_bucket;
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

/// How a file's index keys hold block ids, and how many ids a bucket takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// As they are, 64 ids per bucket (files created before format 7).
    Plain,
    /// Bit-reversed ([`key_block`]), 64 ids per bucket (`trace_keys` = 1: formats 7 and 8).
    Reversed,
    /// Bit-reversed, 256 ids per bucket, fingerprints fixed-width (`trace_keys` = 2: files
    /// created since format 9).
    Wide,
}

impl Keys {
    /// The layout a file's `meta` table records (its `trace_keys` row).
    fn of(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Keys> {
        match meta.get(KEY_TRACE_KEYS)? {
            None => Ok(Keys::Plain),
            Some(v) if v.value() == 1u32.to_le_bytes() => Ok(Keys::Reversed),
            Some(v) if v.value() == 2u32.to_le_bytes() => Ok(Keys::Wide),
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
            Keys::Reversed | Keys::Wide => key_block(block),
        }
    }

    /// Target ids per bucket value of this layout.
    pub fn ids_per_bucket(self) -> usize {
        match self {
            Keys::Plain | Keys::Reversed => IDS_PER_BUCKET_V8,
            Keys::Wide => IDS_PER_BUCKET,
        }
    }

    /// Bucket bits for a block of `rows` rows indexed by its rows ([`Fanout::ByRows`]).
    pub fn bits_for(self, rows: usize) -> u8 {
        bits_for(rows, self.ids_per_bucket())
    }

    /// Encodes a value of ascending distinct fingerprints in this layout's encoding.
    pub fn encode_fps(self, out: &mut Vec<u8>, fps: impl ExactSizeIterator<Item = u32>) {
        match self {
            Keys::Plain | Keys::Reversed => encode_fps(out, fps),
            Keys::Wide => encode_fps_fixed(out, fps),
        }
    }

    /// Whether a value of this layout holds the fingerprint `want`.
    pub fn contains_fp(self, bytes: &[u8], want: u32) -> Result<bool> {
        match self {
            Keys::Plain | Keys::Reversed => contains_fp(bytes, want),
            Keys::Wide => contains_fp_fixed(bytes, want),
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
    if keys != Keys::Plain {
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
    /// [`Keys::bits_for`] its rows: about [`Keys::ids_per_bucket`] ids per bucket.
    ByRows,
    /// One bucket (`bits` 0), for the pending blocks `append` writes: they live until the next
    /// merge, and each bucket is a B-tree insert now and a remove then, on leaves scattered over
    /// the index (docs/format.md, "Trace index").
    One,
}

/// Indexes the trace ids of a new block. Returns whether it went in one bucket where its rows
/// would take several ([`Fanout::One`] on a block of [`Keys::bits_for`] > 0: `Pending::one_bucket`).
pub fn insert_block(
    txn: &WriteTransaction,
    org: OrgId,
    block: u64,
    traces: &[[u8; 16]],
    fanout: Fanout,
) -> Result<bool> {
    let keys = Keys::write(txn)?;
    let by_rows = keys.bits_for(traces.len());
    let bits = match fanout {
        Fanout::ByRows => by_rows,
        Fanout::One => 0,
    };
    let entries = sorted_entries(traces, bits);
    let fp_mask = (1u64 << FP_BITS) - 1;
    let mut t = txn.open_table(TRACE_INDEX)?;
    let mut value = Vec::with_capacity(keys.ids_per_bucket() * 4);
    for run in entries.chunk_by(|a, b| a >> FP_BITS == b >> FP_BITS) {
        value.clear();
        keys.encode_fps(&mut value, run.iter().map(|e| (e & fp_mask) as u32));
        t.insert(
            &index_key(keys, org, bits, (run[0] >> FP_BITS) as u16, block),
            value.as_slice(),
        )?;
    }
    Ok(bits != by_rows)
}

/// Each trace's (bucket, fingerprint) as one integer, `bucket << FP_BITS | fingerprint`, sorted and
/// deduplicated. The pair is the top `bits + FP_BITS` bits of the trace id, so sorting those bits
/// as one integer orders the pairs as a tuple sort would, at a fraction of the comparisons' cost.
fn sorted_entries(traces: &[[u8; 16]], bits: u8) -> Vec<u64> {
    let shift = 64 - u32::from(bits) - FP_BITS;
    let mut entries: Vec<u64> = traces.iter().map(|t| prefix(t) >> shift).collect();
    // A radix sort, by the 32-bit key when the entries fit (blocks up to 2^8 buckets, i.e. any
    // block of up to 65,536 rows): half the digit histograms of a 64-bit key.
    if u32::from(bits) + FP_BITS <= 32 {
        radsort::sort_by_key(&mut entries, |&e| e as u32);
    } else {
        radsort::sort(&mut entries);
    }
    entries.dedup();
    entries
}

/// The keys a block of `rows` rows may have entries under, whichever [`Fanout`] wrote it: its
/// [`Keys::bits_for`] buckets, then (if that is not already `bits` 0) the one bucket of `bits` 0.
fn block_keys(keys: Keys, org: OrgId, block: u64, rows: usize) -> impl Iterator<Item = IndexKey> {
    let bits = keys.bits_for(rows);
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
    if keys.bits_for(rows) == 0 {
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
            if keys.contains_fp(v.value(), fp)? {
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

/// Width of a fingerprint in a [`Keys::Wide`] value.
const FP_BYTES: usize = 3;

/// `n x u24 BE` of ascending fingerprints ([`Keys::Wide`]): searched by bisection, since a lookup
/// reads one value per block (with 512 ids per bucket, walking the varint deltas made the median
/// lookup at 10M spans 6.3 ms, bisecting 2.7 ms); deltas of fingerprints about 2^24 / 256 apart
/// took 3 bytes each anyway.
fn encode_fps_fixed(out: &mut Vec<u8>, fps: impl ExactSizeIterator<Item = u32>) {
    out.reserve(fps.len() * FP_BYTES);
    for fp in fps {
        out.extend_from_slice(&fp.to_be_bytes()[1..]);
    }
}

fn fp_at(bytes: &[u8], i: usize) -> u32 {
    let b = &bytes[i * FP_BYTES..(i + 1) * FP_BYTES];
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

/// How many fingerprints a [`Keys::Wide`] value holds: at least one, and nothing left over.
fn fixed_count(bytes: &[u8]) -> Result<usize> {
    if bytes.is_empty() || bytes.len() % FP_BYTES != 0 {
        return Err(corrupt("trace index value length"));
    }
    Ok(bytes.len() / FP_BYTES)
}

fn contains_fp_fixed(bytes: &[u8], want: u32) -> Result<bool> {
    let (mut lo, mut hi) = (0, fixed_count(bytes)?);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match fp_at(bytes, mid).cmp(&want) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(true),
        }
    }
    Ok(false)
}

#[cfg(test)]
fn decode_fps_fixed(bytes: &[u8]) -> Result<Vec<u32>> {
    Ok((0..fixed_count(bytes)?).map(|i| fp_at(bytes, i)).collect())
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
        fn fixed_fps_round_trip(mut fps in proptest::collection::vec(0u32..(1 << FP_BITS), 1..700), probe in 0u32..(1 << FP_BITS)) {
            fps.sort_unstable();
            fps.dedup();
            let mut bytes = Vec::new();
            Keys::Wide.encode_fps(&mut bytes, fps.iter().copied());
            prop_assert_eq!(bytes.len(), fps.len() * FP_BYTES);
            prop_assert_eq!(decode_fps_fixed(&bytes).unwrap(), fps.clone());
            for &fp in &fps {
                prop_assert!(Keys::Wide.contains_fp(&bytes, fp).unwrap());
            }
            prop_assert_eq!(Keys::Wide.contains_fp(&bytes, probe).unwrap(), fps.contains(&probe));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), probe in any::<u32>()) {
            let _ = decode_fps(&bytes);
            let _ = contains_fp(&bytes, probe);
            let _ = decode_fps_fixed(&bytes);
            let _ = contains_fp_fixed(&bytes, probe);
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
        for keys in [Keys::Plain, Keys::Reversed] {
            assert_eq!(keys.bits_for(1), 0);
            assert_eq!(keys.bits_for(127), 0);
            assert_eq!(keys.bits_for(128), 1);
            assert_eq!(keys.bits_for(512), 3);
            assert_eq!(keys.bits_for(8192), 7);
            assert_eq!(keys.bits_for(1 << 20), BITS_MAX);
        }
        let wide = Keys::Wide;
        assert_eq!(wide.bits_for(1), 0);
        assert_eq!(wide.bits_for(511), 0);
        assert_eq!(wide.bits_for(512), 1);
        assert_eq!(wide.bits_for(8192), 5);
        assert_eq!(wide.bits_for(1 << 20), BITS_MAX);
    }
}
