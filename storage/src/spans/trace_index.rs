//! The per-partition trace index, in two tiers. `trace_recent` holds one 20-byte key per (trace,
//! block) for blocks written by `append`; compaction moves entries into `trace_buckets`, where each
//! (org, 10-bit trace prefix) bucket is one sorted, delta-coded list of (32-bit fingerprint, block),
//! about 5 bytes per span. Lookups read one bucket plus one short key range per partition.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::corrupt;
use super::partition::{TRACE_BUCKETS, TRACE_RECENT};
use crate::codec::{put_varint, Reader};
use crate::error::Result;
use crate::model::OrgId;

pub const BUCKET_BITS: u32 = 10;

pub fn recent_key(org: OrgId, trace: &[u8; 16], block: u64) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..4].copy_from_slice(&org.to_be_bytes());
    k[4..12].copy_from_slice(&trace[..8]);
    k[12..].copy_from_slice(&block.to_be_bytes());
    k
}

/// Top `BUCKET_BITS` bits of the trace id.
pub fn bucket_of(trace: &[u8; 16]) -> u16 {
    u16::from_be_bytes([trace[0], trace[1]]) >> (16 - BUCKET_BITS)
}

/// Bits 16..48 of the trace id: with the bucket, 42 bits discriminate, so a false positive (one
/// extra block read, then dropped by the exact id check) is rare.
pub fn fingerprint(trace: &[u8; 16]) -> u32 {
    u32::from_be_bytes([trace[2], trace[3], trace[4], trace[5]])
}

fn bucket_key(org: OrgId, bucket: u16) -> [u8; 6] {
    let mut k = [0u8; 6];
    k[..4].copy_from_slice(&org.to_be_bytes());
    k[4..].copy_from_slice(&bucket.to_be_bytes());
    k
}

/// Adds the (trace, block) pairs of a freshly appended block to the recent tier.
pub fn insert_recent<'a>(
    txn: &WriteTransaction,
    org: OrgId,
    block: u64,
    traces: impl Iterator<Item = &'a [u8; 16]>,
) -> Result<()> {
    let mut t = txn.open_table(TRACE_RECENT)?;
    for tr in traces {
        t.insert(&recent_key(org, tr, block), ())?;
    }
    Ok(())
}

/// Compaction's index update for one org: drops entries of `removed` blocks (recent keys are given
/// exactly; bucket entries are found by block id) and adds `added` (trace, block) pairs to buckets.
pub fn reindex(
    txn: &WriteTransaction,
    org: OrgId,
    removed_recent: &[([u8; 16], u64)],
    removed: &HashSet<u64>,
    added: &[([u8; 16], u64)],
) -> Result<()> {
    let mut recent = txn.open_table(TRACE_RECENT)?;
    for (tr, b) in removed_recent {
        recent.remove(&recent_key(org, tr, *b))?;
    }
    let mut by_bucket: BTreeMap<u16, Vec<(u32, u64)>> = BTreeMap::new();
    for (tr, b) in added {
        by_bucket
            .entry(bucket_of(tr))
            .or_default()
            .push((fingerprint(tr), *b));
    }
    let mut buckets = txn.open_table(TRACE_BUCKETS)?;
    for (bucket, new) in by_bucket {
        let key = bucket_key(org, bucket);
        let mut entries = match buckets.get(&key)? {
            Some(v) => decode_bucket(v.value())?,
            None => Vec::new(),
        };
        entries.retain(|(_, b)| !removed.contains(b));
        entries.extend(new);
        entries.sort_unstable();
        entries.dedup();
        buckets.insert(&key, encode_bucket(&entries).as_slice())?;
    }
    Ok(())
}

/// Blocks of this partition that may hold spans of `trace` in `org` (a superset; callers check ids).
pub fn lookup(txn: &ReadTransaction, org: OrgId, trace: &[u8; 16]) -> Result<BTreeSet<u64>> {
    let mut blocks = BTreeSet::new();
    let recent = txn.open_table(TRACE_RECENT)?;
    let lo = recent_key(org, trace, 0);
    let hi = recent_key(org, trace, u64::MAX);
    for entry in recent.range::<&[u8; 20]>(&lo..=&hi)? {
        let (k, _) = entry?;
        let k = k.value();
        blocks.insert(u64::from_be_bytes([
            k[12], k[13], k[14], k[15], k[16], k[17], k[18], k[19],
        ]));
    }
    let buckets = txn.open_table(TRACE_BUCKETS)?;
    if let Some(v) = buckets.get(&bucket_key(org, bucket_of(trace)))? {
        let fp = fingerprint(trace);
        let entries = decode_bucket(v.value())?;
        let first = entries.partition_point(|(f, _)| *f < fp);
        blocks.extend(
            entries[first..]
                .iter()
                .take_while(|(f, _)| *f == fp)
                .map(|(_, b)| *b),
        );
    }
    Ok(blocks)
}

/// `[n_blocks][first block, then deltas][n_entries][entries: fp delta, block index]`, entries sorted
/// by (fp, block). The block list is a per-bucket dictionary so entries carry a 1-byte index.
pub fn encode_bucket(entries: &[(u32, u64)]) -> Vec<u8> {
    let blocks: Vec<u64> = entries
        .iter()
        .map(|e| e.1)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = Vec::with_capacity(entries.len() * 5 + blocks.len() * 3 + 4);
    put_varint(&mut out, blocks.len() as u64);
    let mut prev = 0;
    for &b in &blocks {
        put_varint(&mut out, b - prev);
        prev = b;
    }
    put_varint(&mut out, entries.len() as u64);
    let mut prev_fp = 0;
    for &(fp, b) in entries {
        put_varint(&mut out, u64::from(fp - prev_fp));
        prev_fp = fp;
        put_varint(&mut out, blocks.partition_point(|&x| x < b) as u64);
    }
    out
}

pub fn decode_bucket(bytes: &[u8]) -> Result<Vec<(u32, u64)>> {
    let mut r = Reader::new(bytes);
    let nb = r.count(1)?;
    let mut blocks = Vec::with_capacity(nb);
    let mut prev = 0u64;
    for _ in 0..nb {
        prev = prev
            .checked_add(r.varint()?)
            .ok_or_else(|| corrupt("bucket block id overflow"))?;
        blocks.push(prev);
    }
    let ne = r.count(2)?;
    let mut entries = Vec::with_capacity(ne);
    let mut fp = 0u32;
    for _ in 0..ne {
        fp = fp
            .checked_add(r.varint_u32()?)
            .ok_or_else(|| corrupt("bucket fingerprint overflow"))?;
        let idx = r.varint()?;
        let b = usize::try_from(idx)
            .ok()
            .and_then(|i| blocks.get(i))
            .ok_or_else(|| corrupt("bucket block index"))?;
        entries.push((fp, *b));
    }
    r.finish("trace bucket")?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bucket_round_trip(mut entries in proptest::collection::vec((any::<u32>(), 0u64..1_000_000), 0..300)) {
            entries.sort_unstable();
            entries.dedup();
            let bytes = encode_bucket(&entries);
            prop_assert_eq!(decode_bucket(&bytes).unwrap(), entries);
        }

        #[test]
        fn bucket_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_bucket(&bytes);
        }
    }
}
