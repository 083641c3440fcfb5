//! Span store tests against real redb files: a brute-force `Vec<SpanRecord>` model for list, trace
//! and compaction, plus isolation, cursor validation, format version, drop and corruption checks.

mod gen;
mod kept_check;
mod model_check;
mod retention;
mod search_check;
mod search_retention;

use std::sync::Arc;

use redb::ReadableTableMetadata;

use super::partition::{file_name, seal_state, tmp_file_name, BODIES, HEADERS, META, TRACE_INDEX};
use super::*;
use crate::error::StorageError;
use crate::model;
use gen::{eq_bits, Gen};
use materialize::Materialize;

/// Options with blocks of `block_rows_max` rows and row groups of about a third of that, so
/// that small test blocks have row groups too (reads by segment, the last group shorter).
pub(super) fn opts(block_rows_max: usize) -> SpanStoreOptions {
    SpanStoreOptions {
        block_rows_max,
        row_group_rows: (block_rows_max / 3).max(1),
        ..SpanStoreOptions::default()
    }
}

fn all(store: &SpanStore, org: u32, f: &SpanFilter, page: usize) -> Vec<SpanRecord> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = store.list(org, f, cursor.as_deref(), page).unwrap();
        assert!(p.spans.len() <= page);
        out.extend(p.spans);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[test]
fn round_trip_extreme_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(8192)).unwrap();
    let mut g = Gen::new(7, 1);
    let mut spans: Vec<SpanRecord> = (0..50).map(|_| g.span()).collect();
    spans[0].sample_probability = f64::from_bits(0x7ff8_0000_dead_beef);
    spans[1].end_unix_nano = spans[1].start_unix_nano - 5;
    spans[2].start_unix_nano = u64::MAX;
    spans[2].end_unix_nano = 0;
    spans[3].name = "ünï✓ode 🚀".repeat(1000).into();
    spans[4].parent_span_id = [0xff; 8];
    spans[5].flags = u32::MAX;
    spans[5].dropped_links_count = u32::MAX;
    store.append(&spans).unwrap();
    for round in 0..2 {
        for s in &spans {
            let got = store.trace(s.org_id, &s.trace_id).unwrap();
            let found = got.iter().any(|x| eq_bits(x, s));
            assert!(found, "round {round}: span {:?} lost", s.span_id);
        }
        store.compact().unwrap();
    }
}

#[test]
fn org_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(4)).unwrap();
    let mut g = Gen::new(3, 1);
    let mut spans = Vec::new();
    for i in 0..40u32 {
        let mut s = g.span();
        s.org_id = 1 + i % 2;
        s.trace_id = [9; 16]; // the same trace id in both orgs
        s.mcp.tool = Some("shared".into());
        spans.push(s);
    }
    store.append(&spans).unwrap();
    for compacted in [false, true] {
        for org in [1, 2, 3] {
            let t = store.trace(org, &[9; 16]).unwrap();
            assert!(t.iter().all(|s| s.org_id == org));
            assert_eq!(
                t.len(),
                if org == 3 { 0 } else { 20 },
                "compacted {compacted}"
            );
            let f = SpanFilter {
                tool: Some("shared".into()),
                ..SpanFilter::default()
            };
            let l = all(&store, org, &f, 7);
            assert!(l.iter().all(|s| s.org_id == org));
            assert_eq!(l.len(), t.len());
        }
        store.compact().unwrap();
    }
}

#[test]
fn bad_cursor_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(16)).unwrap();
    let non_hex = format!("c1{}", "g".repeat(80));
    let zero_dups = format!("c1{}", "0".repeat(80));
    for c in ["", "zzz", "c1", "c1zz", &non_hex, &zero_dups] {
        let r = store.list(1, &SpanFilter::default(), Some(c), 10);
        assert!(matches!(r, Err(StorageError::Invalid(_))), "{c:?}");
    }
}

#[test]
fn format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(5, 1);
    let span = g.span();
    {
        let store = SpanStore::open(dir.path(), opts(16)).unwrap();
        store.append(std::slice::from_ref(&span)).unwrap();
    }
    let path = dir
        .path()
        .join(file_name(model::day_of(span.start_unix_nano)));
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("format_version", 99u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = SpanStore::open(dir.path(), opts(16)).unwrap();
    let r = store.trace(span.org_id, &span.trace_id);
    assert!(
        matches!(
            r,
            Err(StorageError::FormatVersion {
                found: 99,
                supported: FORMAT_VERSION
            })
        ),
        "{r:?}"
    );
    let r = store.list(span.org_id, &SpanFilter::default(), None, 10);
    assert!(matches!(r, Err(StorageError::FormatVersion { .. })));
}

#[test]
fn drop_partition_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(11, 3);
    let spans: Vec<SpanRecord> = (0..60).map(|_| g.span()).collect();
    let days: std::collections::BTreeSet<u32> = spans
        .iter()
        .map(|s| model::day_of(s.start_unix_nano))
        .collect();
    assert_eq!(days.len(), 3);
    let victim = *days.iter().next().unwrap();
    {
        let store = SpanStore::open(dir.path(), opts(16)).unwrap();
        store.append(&spans).unwrap();
        assert_eq!(
            store
                .partitions()
                .unwrap()
                .iter()
                .map(|p| p.day)
                .collect::<Vec<_>>(),
            days.iter().copied().collect::<Vec<_>>()
        );
        store.drop_partition(victim).unwrap();
        store.drop_partition(victim).unwrap(); // idempotent
        assert!(!dir.path().join(file_name(victim)).exists());
    }
    let store = SpanStore::open(dir.path(), opts(16)).unwrap();
    let infos = store.partitions().unwrap();
    assert_eq!(infos.len(), 2);
    assert!(infos.iter().all(|p| p.day != victim && p.bytes > 0));
    for org in 1..=3 {
        let listed = all(&store, org, &SpanFilter::default(), 50);
        let expected = spans
            .iter()
            .filter(|s| s.org_id == org && model::day_of(s.start_unix_nano) != victim)
            .count();
        assert_eq!(listed.len(), expected);
    }
    // Appending to the dropped day creates a fresh, empty-but-for-this partition.
    let back = spans
        .iter()
        .find(|s| model::day_of(s.start_unix_nano) == victim)
        .unwrap();
    store.append(std::slice::from_ref(back)).unwrap();
    let f = SpanFilter {
        from_unix_nano: Some(u64::from(victim) * model::DAY_NANOS),
        to_unix_nano: Some(u64::from(victim + 1) * model::DAY_NANOS),
        ..SpanFilter::default()
    };
    assert_eq!(all(&store, back.org_id, &f, 10).len(), 1);
}

#[test]
fn corrupt_body_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(16)).unwrap();
    let mut g = Gen::new(13, 1);
    let span = g.span();
    store.append(std::slice::from_ref(&span)).unwrap();
    let p = store
        .parts
        .get(model::day_of(span.start_unix_nano), false)
        .unwrap()
        .unwrap();
    let txn = p.part.db.begin_write().unwrap();
    {
        let mut bodies = txn.open_table(BODIES).unwrap();
        let body = chunks::get(&bodies, 0).unwrap().unwrap();
        for cut in [body.len() - 1, body.len() / 2, 3] {
            assert!(block::BlockBody::parse(body[..cut].to_vec())
                .and_then(|b| b.materialize(&[0]))
                .is_err());
        }
        let mut flipped = body.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        chunks::take(&mut bodies, 0).unwrap();
        chunks::put(&mut bodies, 0, &flipped).unwrap();
    }
    txn.commit().unwrap();
    let r = store.trace(span.org_id, &span.trace_id);
    assert!(matches!(r, Err(StorageError::Corrupt(_))), "{r:?}");
}

/// Bodies read back whatever their chunk length (4000 bytes before format 8, 16,288 since), and a
/// body whose chunks disagree in length is corrupt, never misread; `take` removes every chunk.
#[test]
fn body_chunks_of_either_length_read_back_and_bad_lengths_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(dir.path().join("chunks.redb")).unwrap();
    let body: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let exact = &body[..chunks::CHUNK_BYTES]; // one whole chunk
    let exact3: Vec<u8> = body
        .iter()
        .cycle()
        .take(3 * chunks::CHUNK_BYTES)
        .copied()
        .collect();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(BODIES).unwrap();
        chunks::put(&mut t, 1, &body).unwrap();
        assert_eq!(chunks::get(&t, 1).unwrap().unwrap(), body);
        // Written as format 7 did.
        for (i, c) in body.chunks(chunks::CHUNK_BYTES_MIN).enumerate() {
            t.insert(&chunks::body_key(2, i as u32), c).unwrap();
        }
        assert_eq!(chunks::get(&t, 2).unwrap().unwrap(), body);
        // Exact multiples of the chunk length, and a body shorter than any chunk.
        chunks::put(&mut t, 3, exact).unwrap();
        chunks::put(&mut t, 4, &exact3).unwrap();
        chunks::put(&mut t, 5, &body[..100]).unwrap();
        assert_eq!(chunks::get(&t, 3).unwrap().unwrap(), exact);
        assert_eq!(chunks::get(&t, 4).unwrap().unwrap(), exact3);
        assert_eq!(chunks::get(&t, 5).unwrap().unwrap(), &body[..100]);
        // Lengths that no writer produces.
        let bad: [&[usize]; 5] = [
            &[16_288, 100, 16_288],
            &[100, 100],
            &[4000, 4001],
            &[4000, 4000, 0],
            &[0],
        ];
        for (n, lens) in bad.iter().enumerate() {
            let block = 10 + n as u64;
            for (i, &l) in lens.iter().enumerate() {
                t.insert(&chunks::body_key(block, i as u32), &body[..l])
                    .unwrap();
            }
            let r = chunks::get(&t, block).map(|b| b.map(|b| b.len()));
            assert!(
                matches!(r, Err(StorageError::Corrupt(_))),
                "{lens:?}: {r:?}"
            );
            // A purge removes them all the same, without reading them.
            chunks::remove(&mut t, block).unwrap();
            assert!(
                chunks::get(&t, block).unwrap().is_none(),
                "{lens:?} removed"
            );
        }
        for block in 1..=5 {
            assert!(chunks::take(&mut t, block).unwrap().is_some());
            assert!(
                chunks::get(&t, block).unwrap().is_none(),
                "block {block} taken"
            );
        }
        assert_eq!(t.len().unwrap(), 0, "nothing left");
    }
    txn.commit().unwrap();
    assert!(
        chunks::chunk_bytes_of(1, 3999, 8000).is_err(),
        "a short first chunk"
    );
    assert_eq!(chunks::chunk_bytes_of(1, 3999, 3999).unwrap(), 3999);
}

fn day_partition(store: &SpanStore) -> Arc<registry::OpenPartition> {
    let day = store.partitions().unwrap()[0].day;
    store.parts.get(day, false).unwrap().unwrap()
}

fn pending_counts(store: &SpanStore) -> Vec<usize> {
    let p = day_partition(store);
    let mut w = p.part.write_lock.lock();
    let map = w.pending(&p.part.db, store.opts.block_rows_max).unwrap();
    map.values().map(Vec::len).collect()
}

/// Reads every table of the (single) partition file straight from a fresh handle.
fn table_lens(path: &std::path::Path) -> (u64, u64) {
    use redb::ReadableTableMetadata;
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    (
        txn.open_table(HEADERS).unwrap().len().unwrap(),
        txn.open_table(TRACE_INDEX).unwrap().len().unwrap(),
    )
}

/// The file's trace index is in the layout of format 9 (reversed block ids, 256 ids per bucket):
/// `meta` says so, every entry's stored block id, reversed back, is a block of the file, and
/// every block has entries.
fn assert_reversed_index(p: &registry::OpenPartition) {
    use super::trace_index::Keys;
    assert_index_layout(p, Keys::Wide);
}

/// As [`assert_reversed_index`], for the layout `keys` (a file of an older format keeps its own).
fn assert_index_layout(p: &registry::OpenPartition, keys: super::trace_index::Keys) {
    use super::trace_index::{key_block, Keys};
    use redb::ReadableTable;
    let txn = p.part.db.begin_read().unwrap();
    assert_eq!(Keys::read(&txn).unwrap(), keys);
    let blocks: std::collections::BTreeSet<u64> = txn
        .open_table(HEADERS)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| super::partition::split_header_key(e.unwrap().0.value()).2)
        .collect();
    let mut indexed = std::collections::BTreeSet::new();
    for e in txn.open_table(TRACE_INDEX).unwrap().iter().unwrap() {
        let k = *e.unwrap().0.value();
        let block = key_block(u64::from_be_bytes(k[7..].try_into().unwrap()));
        assert!(blocks.contains(&block), "entry of block {block}");
        indexed.insert(block);
    }
    assert_eq!(indexed, blocks, "every block is indexed");
}

#[test]
fn append_merges_full_blocks_and_compaction_seals() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(64)).unwrap();
    let mut g = Gen::new(17, 1);
    let mut spans = Vec::new();
    let mut written = 0;
    for _ in 0..20 {
        let batch: Vec<SpanRecord> = (0..10)
            .map(|i| {
                let mut s = g.span();
                (s.org_id, s.server_id) = (1 + i % 2, 10 + i % 2);
                s
            })
            .collect();
        let st = store.append(&batch).unwrap();
        assert_eq!(st.spans, 10);
        assert!(st.blocks >= 1 && st.partitions == 1);
        written += st.blocks;
        spans.extend(batch);
    }
    // Each append added a pending block or merged pending ones into full blocks of 64 rows:
    // fewer blocks exist than were written, and pending rows per owner stay under one block.
    let p = day_partition(&store);
    let headers = {
        let txn = p.part.db.begin_read().unwrap();
        txn.open_table(HEADERS).unwrap().len().unwrap() as usize
    };
    assert!(headers < written, "{headers} < {written}");
    assert_reversed_index(&p);
    drop(p);
    // The day is long over: compaction merges what is pending and seals the file.
    let stats = store.compact().unwrap();
    assert!(stats.blocks_merged >= stats.blocks_written, "{stats:?}");
    assert!(pending_counts(&store).iter().all(|&n| n <= 1));
    let p = day_partition(&store);
    let (next, sealed) = seal_state(&p.part.db).unwrap();
    assert_eq!(sealed, Some(next));
    // The sealed rewrite copied the index block by block, in the same layout.
    assert_reversed_index(&p);
    drop(p);
    // A second run finds nothing left to do, and the file is not rewritten again.
    let path = dir
        .path()
        .join(file_name(store.partitions().unwrap()[0].day));
    let ino = std::fs::metadata(&path).unwrap();
    assert_eq!(store.compact().unwrap(), CompactStats::default());
    let ino2 = std::fs::metadata(&path).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&ino),
        std::os::unix::fs::MetadataExt::ino(&ino2)
    );
    for s in &spans {
        let got = store.trace(s.org_id, &s.trace_id).unwrap();
        assert!(got.iter().any(|x| eq_bits(x, s)));
    }
    let total: usize = (1..=3)
        .map(|org| all(&store, org, &SpanFilter::default(), 100).len())
        .sum();
    assert_eq!(total, spans.len());
}

/// The (bits, block) of every trace-index entry of the file, block ids reversed back.
fn index_entries(p: &registry::OpenPartition) -> Vec<(u8, u64)> {
    use redb::ReadableTable;
    let txn = p.part.db.begin_read().unwrap();
    let t = txn.open_table(TRACE_INDEX).unwrap();
    t.iter()
        .unwrap()
        .map(|e| {
            let k = *e.unwrap().0.value();
            let stored = u64::from_be_bytes(k[7..].try_into().unwrap());
            (k[4], super::trace_index::key_block(stored))
        })
        .collect()
}

/// A pending block that `append` writes has its trace ids in one bucket (`bits` 0) however many
/// rows it has; the blocks a merge writes have `bits_for(rows)` buckets; every span is found by
/// its trace id in either; a merge removes the pending blocks' entries, and a pending block
/// indexed by rows (as format 7 wrote them) is removed as cleanly.
#[test]
fn pending_blocks_are_indexed_in_one_bucket_and_merged_away_cleanly() {
    use super::trace_index::{insert_block, Fanout, Keys};
    let bits_for = |rows| Keys::Wide.bits_for(rows);
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(4096)).unwrap();
    let mut g = Gen::new(31, 1);
    let mut spans: Vec<SpanRecord> = Vec::new();
    let batch = |g: &mut Gen| -> Vec<SpanRecord> {
        (0..1200)
            .map(|_| {
                let mut s = g.span();
                (s.org_id, s.server_id) = (1, 10);
                s
            })
            .collect()
    };
    let found = |store: &SpanStore, spans: &[SpanRecord]| {
        for s in spans {
            let got = store.trace(s.org_id, &s.trace_id).unwrap();
            assert!(got.iter().any(|x| eq_bits(x, s)));
        }
    };
    for _ in 0..3 {
        let b = batch(&mut g);
        store.append(&b).unwrap();
        spans.extend(b);
    }
    let p = day_partition(&store);
    let entries = index_entries(&p);
    assert_eq!(entries.len(), 3, "one entry per pending block: {entries:?}");
    assert!(entries.iter().all(|&(bits, _)| bits == 0));
    assert!(
        bits_for(1200) > 0,
        "by rows, 1,200 rows would take several buckets"
    );
    assert_reversed_index(&p);
    found(&store, &spans);
    // Re-index one pending block as format 7 did (by rows): the merge must remove those too.
    // The first batch's block: the smallest id.
    let (old_block, old_rows) = {
        let mut w = p.part.write_lock.lock();
        let map = w.pending(&p.part.db, 4096).unwrap();
        let b = *map
            .values()
            .next()
            .unwrap()
            .iter()
            .min_by_key(|b| b.id)
            .unwrap();
        (b.id, b.rows as usize)
    };
    {
        let txn = p.part.db.begin_write().unwrap();
        super::trace_index::remove_block(&txn, 1, old_block, old_rows).unwrap();
        let traces: Vec<[u8; 16]> = spans[..old_rows].iter().map(|s| s.trace_id).collect();
        insert_block(&txn, 1, old_block, &traces, Fanout::ByRows).unwrap();
        txn.commit().unwrap();
    }
    let by_rows = index_entries(&p)
        .iter()
        .filter(|&&(bits, b)| b == old_block && bits > 0)
        .count();
    assert!(
        by_rows > 1,
        "the block is indexed by rows now ({by_rows} buckets)"
    );
    found(&store, &spans);
    drop(p);
    // The fourth batch makes 4,800 rows: one full block of 4,096 and a remainder of 704.
    let b = batch(&mut g);
    store.append(&b).unwrap();
    spans.extend(b);
    let p = day_partition(&store);
    assert_reversed_index(&p);
    let entries = index_entries(&p);
    let full_bits = bits_for(4096);
    assert_eq!(
        entries
            .iter()
            .filter(|&&(bits, _)| bits == full_bits)
            .count(),
        1 << full_bits,
        "the full block by rows: {entries:?}"
    );
    assert!(
        entries
            .iter()
            .all(|&(bits, _)| bits == full_bits || bits == bits_for(704)),
        "only the merge's blocks are left: {entries:?}"
    );
    drop(p);
    found(&store, &spans);
    assert_eq!(
        all(&store, 1, &SpanFilter::default(), 500).len(),
        spans.len()
    );
}

/// A finished day's lone pending block, indexed in one bucket by `append`, is rewritten by
/// compaction and indexed by its rows, like every other block of a finished day; compaction then
/// has nothing left to do, and every span is still found by its trace id.
#[test]
fn compaction_reindexes_a_finished_days_lone_pending_block() {
    use super::trace_index::Keys;
    let bits_for = |rows| Keys::Wide.bits_for(rows);
    // Known from the append itself, and (after a reopen) from the index when the partition's
    // pending blocks are loaded.
    for reopen in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SpanStore::open(dir.path(), opts(2048)).unwrap();
        let mut g = Gen::new(37, 1);
        let spans: Vec<SpanRecord> = (0..1200)
            .map(|_| {
                let mut s = g.span();
                (s.org_id, s.server_id) = (1, 10);
                s
            })
            .collect();
        store.append(&spans).unwrap();
        let p = day_partition(&store);
        assert_eq!(index_entries(&p).len(), 1, "one bucket while pending");
        drop(p);
        if reopen {
            drop(store);
            store = SpanStore::open(dir.path(), opts(2048)).unwrap();
        }
        let stats = store.compact().unwrap();
        assert_eq!(stats.blocks_merged, 1, "{stats:?}");
        let p = day_partition(&store);
        let entries = index_entries(&p);
        assert!(
            entries.len() > 1 && entries.iter().all(|&(bits, _)| bits == bits_for(1200)),
            "indexed by rows: {entries:?}"
        );
        assert_reversed_index(&p);
        drop(p);
        for s in &spans {
            let got = store.trace(s.org_id, &s.trace_id).unwrap();
            assert!(got.iter().any(|x| eq_bits(x, s)));
        }
        assert_eq!(store.compact().unwrap(), CompactStats::default());
    }
}

/// The (rows, bucket bits) of every block of the file, the bits being those of its index entries
/// (one value per block: a block's entries all share their bits).
fn block_index_bits(p: &registry::OpenPartition) -> Vec<(u32, u8)> {
    use redb::ReadableTable;
    let txn = p.part.db.begin_read().unwrap();
    let mut rows = std::collections::BTreeMap::new();
    for e in txn.open_table(HEADERS).unwrap().iter().unwrap() {
        let (k, v) = e.unwrap();
        let key = super::partition::split_header_key(k.value());
        let s = super::header::Summary::decode(key, v.value()).unwrap();
        rows.insert(s.block, s.rows);
    }
    let mut bits = std::collections::BTreeMap::new();
    for (b, block) in index_entries(p) {
        let prev = bits.insert(block, b);
        assert!(
            prev.is_none_or(|p| p == b),
            "block {block}: bits {prev:?} and {b}"
        );
    }
    rows.iter().map(|(block, &n)| (n, bits[block])).collect()
}

/// A day file written by format 8 (`storage/tests/data/spans-v8/`, from
/// `examples/format_fixture.rs` at commit d7c31ea: blocks of 256 rows, trace-index buckets of
/// about 64 ids) keeps its bucket width after the upgrade to format 9: blocks merged into it are
/// indexed 64 ids per bucket too (by rows, 256 rows take 4 buckets, where 256 per bucket would
/// take 1), the sealed rewrite copies them, merges leave no entry behind, and every span is found
/// by its trace id.
#[test]
fn format_8_file_keeps_its_trace_index_buckets() {
    use super::trace_index::Keys;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("2026-11-20.redb");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/spans-v8/2026-11-20.redb"
        ),
        &path,
    )
    .unwrap();
    let store = SpanStore::open(dir.path(), opts(256)).unwrap();
    let p = day_partition(&store);
    assert_index_layout(&p, Keys::Reversed);
    let before = block_index_bits(&p);
    assert!(
        before.iter().any(|&(rows, bits)| rows == 256 && bits == 2),
        "the fixture has full blocks in 4 buckets: {before:?}"
    );
    assert_eq!(Keys::Wide.bits_for(256), 0);
    drop(p);
    let mut spans = all(&store, 1, &SpanFilter::default(), 500);
    assert_eq!(spans.len(), 600, "the fixture's spans read back");
    // 2,000 late spans: merged with what is pending into full blocks of 256 rows.
    let late: Vec<SpanRecord> = (0..2000u32)
        .map(|i| {
            let mut s = spans[i as usize % spans.len()].clone();
            let id = i.to_be_bytes();
            s.trace_id = [0x7d; 16];
            s.trace_id[..4].copy_from_slice(&id);
            s.span_id[..4].copy_from_slice(&id);
            s.start_unix_nano += 1 + u64::from(i);
            s.end_unix_nano += 1 + u64::from(i);
            s
        })
        .collect();
    store.append(&late).unwrap();
    spans.extend(late);
    let by_rows = |p: &registry::OpenPartition| {
        block_index_bits(p)
            .into_iter()
            .filter(|&(rows, _)| rows == 256)
            .collect::<Vec<_>>()
    };
    let p = day_partition(&store);
    assert_index_layout(&p, Keys::Reversed);
    let full = by_rows(&p);
    assert!(
        full.len() > before.iter().filter(|&&(rows, _)| rows == 256).count()
            && full.iter().all(|&(_, bits)| bits == 2),
        "new full blocks in the file's own buckets: {full:?}"
    );
    drop(p);
    // The day is long finished: compaction merges what is pending; the sealed rewrite (forced:
    // the file grew by less than it waits for) copies the index block by block.
    store.compact().unwrap();
    let p = day_partition(&store);
    let day = store.partitions().unwrap()[0].day;
    assert!(store.parts.seal(day, &p).unwrap());
    drop(p);
    let p = day_partition(&store);
    let (next, sealed) = seal_state(&p.part.db).unwrap();
    assert_eq!(sealed, Some(next));
    assert_index_layout(&p, Keys::Reversed);
    assert!(
        block_index_bits(&p)
            .iter()
            .all(|&(rows, bits)| bits == Keys::Reversed.bits_for(rows as usize)),
        "every block of the finished day indexed by its rows, 64 ids per bucket"
    );
    drop(p);
    for s in &spans {
        let got = store.trace(s.org_id, &s.trace_id).unwrap();
        assert!(got.iter().any(|x| eq_bits(x, s)), "trace of {s:?}");
    }
    assert_eq!(
        all(&store, 1, &SpanFilter::default(), 500).len(),
        spans.len()
    );
    drop(store);
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let v = txn
        .open_table(META)
        .unwrap()
        .get(super::partition::KEY_VERSION)
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(v, FORMAT_VERSION.to_le_bytes());
}

#[test]
fn merges_with_pooled_vectors_read_back_exactly() {
    // The span writer's thread reuses column vectors (`crate::bufs`; each test runs on its own
    // thread): columns built in vectors used by earlier merges must store exactly what fresh
    // vectors do. Blocks of 4,096 rows so the vectors are large enough to be pooled.
    crate::bufs::enable_on_this_thread();
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(4096)).unwrap();
    let mut g = Gen::new(29, 1);
    let mut spans = Vec::new();
    for round in 0..12 {
        let batch: Vec<SpanRecord> = (0..1500)
            .map(|i| {
                let mut s = g.span();
                (s.org_id, s.server_id) = (1, 10 + (i + round) % 2);
                s
            })
            .collect();
        store.append(&batch).unwrap();
        spans.extend(batch);
        if round == 3 {
            assert!(crate::bufs::pooled_bytes() > 0, "merges gave vectors back");
        }
    }
    let got = all(&store, 1, &SpanFilter::default(), 1000);
    assert_eq!(got.len(), spans.len());
    let mut want: std::collections::HashMap<([u8; 16], [u8; 8]), Vec<&SpanRecord>> =
        std::collections::HashMap::new();
    for s in &spans {
        want.entry((s.trace_id, s.span_id)).or_default().push(s);
    }
    for r in &got {
        let same = want
            .get_mut(&(r.trace_id, r.span_id))
            .expect("a stored span");
        let at = same
            .iter()
            .position(|s| eq_bits(r, s))
            .expect("stored exactly");
        same.swap_remove(at);
    }
}

#[test]
fn tiny_appends_keep_pending_blocks_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(100_000)).unwrap();
    let mut g = Gen::new(23, 1);
    let mut spans = Vec::new();
    for _ in 0..300 {
        let mut s = g.span();
        s.org_id = 1;
        s.server_id = 10;
        store.append(std::slice::from_ref(&s)).unwrap();
        spans.push(s);
    }
    let counts = pending_counts(&store);
    assert!(
        counts.iter().all(|&n| n <= append::PENDING_BLOCKS_MAX),
        "{counts:?}"
    );
    assert_eq!(all(&store, 1, &SpanFilter::default(), 1000).len(), 300);
    for s in spans.iter().step_by(7) {
        let want = spans.iter().filter(|x| x.trace_id == s.trace_id).count();
        assert_eq!(store.trace(1, &s.trace_id).unwrap().len(), want);
    }
}

#[test]
fn leftover_seal_tmp_file_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(29, 1);
    let spans: Vec<SpanRecord> = (0..50).map(|_| g.span()).collect();
    let day = model::day_of(spans[0].start_unix_nano);
    {
        let store = SpanStore::open(dir.path(), opts(16)).unwrap();
        store.append(&spans).unwrap();
    }
    let path = dir.path().join(file_name(day));
    let tmp = dir.path().join(tmp_file_name(day));
    // A crash at any step before the rename leaves some prefix of the tmp file: garbage, an
    // empty file, or a complete copy. None of them may be read, and open removes it.
    for content in [
        &b""[..],
        &b"garbage"[..],
        &std::fs::read(&path).unwrap()[..],
    ] {
        std::fs::write(&tmp, content).unwrap();
        let store = SpanStore::open(dir.path(), opts(16)).unwrap();
        assert!(!tmp.exists());
        assert_eq!(store.partitions().unwrap().len(), 1);
        let total: usize = (1..=3)
            .map(|org| all(&store, org, &SpanFilter::default(), 100).len())
            .sum();
        assert_eq!(total, spans.len());
    }
    // A crash after the rename leaves the sealed file, which is a complete partition.
    {
        let store = SpanStore::open(dir.path(), opts(16)).unwrap();
        store.compact().unwrap();
    }
    let (headers, index) = table_lens(&path);
    assert!(headers > 0 && index > 0);
    let store = SpanStore::open(dir.path(), opts(16)).unwrap();
    for s in &spans {
        let got = store.trace(s.org_id, &s.trace_id).unwrap();
        assert!(got.iter().any(|x| eq_bits(x, s)));
    }
}

#[test]
fn seal_while_a_reader_holds_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(8)).unwrap();
    let mut g = Gen::new(31, 1);
    let spans: Vec<SpanRecord> = (0..100).map(|_| g.span()).collect();
    store.append(&spans).unwrap();
    let old = day_partition(&store);
    let snapshot = old.part.db.begin_read().unwrap();
    store.compact().unwrap();
    assert!(old.is_dropped(), "the sealed rewrite replaced the handle");
    // The old handle still reads its (unlinked) file consistently.
    let n: u64 = redb::ReadableTableMetadata::len(&snapshot.open_table(HEADERS).unwrap()).unwrap();
    assert!(n > 0);
    drop(snapshot);
    drop(old);
    // Appends after the seal go to the new file and are found.
    let mut late = g.span();
    late.start_unix_nano = spans[0].start_unix_nano;
    late.end_unix_nano = late.start_unix_nano + 1;
    store.append(std::slice::from_ref(&late)).unwrap();
    assert_eq!(
        store
            .trace(late.org_id, &late.trace_id)
            .unwrap()
            .iter()
            .filter(|x| eq_bits(x, &late))
            .count(),
        1
    );
    store.compact().unwrap();
    let total: usize = (1..=3)
        .map(|org| all(&store, org, &SpanFilter::default(), 100).len())
        .sum();
    assert_eq!(total, spans.len() + 1);
}

#[test]
fn concurrent_append_compact_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SpanStore::open(dir.path(), opts(32)).unwrap());
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut g = Gen::new(19, 1);
            for _ in 0..15 {
                let batch: Vec<SpanRecord> = (0..20).map(|_| g.span()).collect();
                store.append(&batch).unwrap();
            }
        })
    };
    let compactor = {
        let store = store.clone();
        std::thread::spawn(move || {
            for _ in 0..10 {
                store.compact().unwrap();
            }
        })
    };
    for _ in 0..10 {
        for org in 1..=3 {
            let l = all(&store, org, &SpanFilter::default(), 25);
            assert!(l
                .windows(2)
                .all(|w| w[0].start_unix_nano >= w[1].start_unix_nano));
        }
    }
    writer.join().unwrap();
    compactor.join().unwrap();
    let total: usize = (1..=3)
        .map(|org| all(&store, org, &SpanFilter::default(), 100).len())
        .sum();
    assert_eq!(total, 300);
}

/// A parsed body read one segment at a time, as `lazy::LazyBody` reads one from redb.
struct BySegment(block::BlockBody);

impl block::ColumnRead for BySegment {
    fn rows(&self) -> usize {
        self.0.rows
    }
    fn group_rows(&self) -> usize {
        self.0.group_rows()
    }
    fn hash_dicts(&self) -> bool {
        self.0.hash_dicts()
    }
    fn org(&self) -> model::OrgId {
        self.0.org
    }
    fn server(&self) -> model::ServerId {
        self.0.server
    }
    fn column(&self, col: usize) -> crate::Result<Vec<u8>> {
        self.0.column(col)
    }
    fn segments(&self, col: usize) -> crate::Result<Option<Vec<crate::codec::compress::Segment>>> {
        let f = self.0.frame(col);
        Ok(crate::codec::compress::segments(f, f.len())?)
    }
    fn segment(&self, col: usize, k: usize) -> crate::Result<std::rc::Rc<Vec<u8>>> {
        let f = self.0.frame(col);
        let segs = crate::codec::compress::segments(f, f.len())?.unwrap_or_default();
        let s = segs.get(k).ok_or_else(|| corrupt("no such segment"))?;
        Ok(std::rc::Rc::new(crate::codec::compress::read_segment(
            s,
            &f[s.stored.0..s.stored.1],
        )?))
    }
}

/// Rows of a block with row groups read segment by segment (what `list` and `trace` do) equal the
/// rows read from whole columns and the records written, for any row-group size and any rows.
#[test]
fn row_group_reads_equal_whole_column_reads() {
    use block::{sort_rows, BlockBody, ColumnRead};
    use columns::{C_END, C_EXTRA, C_STR0};
    let mut g = Gen::new(11, 1);
    let mut spans: Vec<SpanRecord> = (0..300).map(|_| g.span()).collect();
    for (i, s) in spans.iter_mut().enumerate() {
        (s.org_id, s.server_id) = (1, 10);
        // A numeric string column (request ids) with values in some row groups only.
        s.mcp.request_id = (i % 50 < 20).then(|| (i * 7).to_string().into());
    }
    let mut refs: Vec<&SpanRecord> = spans.iter().collect();
    sort_rows(&mut refs);
    let cols = cols::Cols::from_records(&refs);
    for group in [0, 1, 7, 64, 299, 300, 1024] {
        let body = BlockBody::parse(cols.encode(1, 10, 3, group).unwrap()).unwrap();
        let grouped = group > 0 && group < 300;
        assert_eq!(body.group_rows(), if grouped { group } else { 0 });
        let seg = BySegment(BlockBody::parse(cols.encode(1, 10, 3, group).unwrap()).unwrap());
        for col in [C_END, C_EXTRA, C_STR0] {
            assert_eq!(
                seg.segments(col).unwrap().is_some(),
                grouped,
                "column {col}"
            );
        }
        let all: Vec<usize> = (0..300).collect();
        let whole = body.materialize(&all).unwrap();
        for (a, b) in whole.iter().zip(&refs) {
            assert!(eq_bits(a, b), "group {group}: whole read differs");
        }
        for rows in [
            all.clone(),
            vec![299, 0, 150, 150, 7],
            vec![64],
            (0..300).step_by(37).rev().collect(),
        ] {
            let got = seg.materialize(&rows).unwrap();
            for (r, rec) in rows.iter().zip(&got) {
                assert!(eq_bits(rec, &whole[*r]), "group {group}: row {r} differs");
            }
        }
    }
}

/// A block header's hash bitmaps hold exactly the hashes of the values present in each bitmap
/// field (built from sorted hashes, they must equal inserting every row's value one by one):
/// repeated values, absent values and hundreds of distinct sessions.
#[test]
fn header_bitmaps_hold_each_present_value_once() {
    use block::sort_rows;
    let mut g = Gen::new(29, 1);
    let mut spans: Vec<SpanRecord> = (0..2000).map(|_| g.span()).collect();
    for (i, s) in spans.iter_mut().enumerate() {
        (s.org_id, s.server_id) = (1, 10);
        s.mcp.session_id = (i % 5 != 0).then(|| format!("session-{}", (i * 3) % 700).into());
        s.mcp.user_id = (i % 3 != 0).then(|| format!("user-{}", i % 37).into());
    }
    let mut refs: Vec<&SpanRecord> = spans.iter().collect();
    sort_rows(&mut refs);
    let header = cols::Cols::from_records(&refs).header(0);
    for (bit, field) in header::BITMAP_FIELDS.into_iter().enumerate() {
        let mut want = roaring::RoaringBitmap::new();
        for r in &refs {
            if let Some(v) = field.get(r) {
                want.insert(crate::codec::hash32(v));
            }
        }
        assert_eq!(header.bitmaps[bit], want, "{field:?}");
    }
    let sessions = header::BITMAP_FIELDS
        .iter()
        .position(|f| *f == columns::StrField::SessionId)
        .unwrap();
    assert!(header.bitmaps[sessions].len() > 500, "hundreds of sessions");
}

/// `MOB4` keeps the bitmap fields' dictionaries in hash order, so a filter finds its value's id
/// from the header bitmap's rank: for every value of a block the ranked match equals the rows
/// holding it, a wrong position falls back (`None`), and `filter_mask` gives the same rows with
/// and without ranks (also for values the block does not hold). Short user ids make the
/// dictionary hold more entries than its first segment has bytes.
#[test]
fn ranked_filter_equals_dictionary_walk() {
    use block::{sort_rows, BlockBody, ColumnRead};
    use columns::StrField;
    let mut g = Gen::new(23, 1);
    let n = 3000;
    let mut spans: Vec<SpanRecord> = (0..n).map(|_| g.span()).collect();
    for (i, s) in spans.iter_mut().enumerate() {
        (s.org_id, s.server_id) = (1, 10);
        s.mcp.user_id = (i % 7 != 0).then(|| format!("u{}", (i * 13) % 1500).into());
        s.mcp.tool = Some(format!("tool_{}", i % 40).into());
    }
    let mut refs: Vec<&SpanRecord> = spans.iter().collect();
    sort_rows(&mut refs);
    let cols = cols::Cols::from_records(&refs);
    let header = cols.header(0);
    let body = BySegment(BlockBody::parse(cols.encode(1, 10, 3, 256).unwrap()).unwrap());
    assert!(body.hash_dicts());
    let every: Vec<usize> = (0..n).collect();
    for (a, b) in body.materialize(&every).unwrap().iter().zip(&refs) {
        assert!(eq_bits(a, b), "rows read back by segment");
    }
    let starts = body.starts().unwrap();
    for (field, bit) in [(StrField::UserId, 2), (StrField::Tool, 1)] {
        let mut values: Vec<String> = refs
            .iter()
            .filter_map(|r| field.get(r).map(str::to_owned))
            .collect();
        values.sort();
        values.dedup();
        let d = values.len() as u64;
        values.push("not-in-block".into());
        for v in &values {
            let want: Vec<bool> = refs.iter().map(|r| field.get(r) == Some(v)).collect();
            let h = crate::codec::hash32(v);
            let mut ranks = [None; 4];
            if header.bitmaps[bit].contains(h) {
                let pos = header.bitmaps[bit].rank(h) - 1;
                ranks[bit] = Some(pos);
                let hit = fast::str_match_ranked(&body, field.column(), pos, v).unwrap();
                assert_eq!(hit.as_ref(), Some(&want), "{field:?} {v}");
                let wrong = fast::str_match_ranked(&body, field.column(), (pos + 1) % d, v);
                assert_eq!(wrong.unwrap(), None, "{field:?} {v}: wrong position");
            }
            let mut f = SpanFilter::default();
            match field {
                StrField::UserId => f.user_id = Some(v.clone()),
                _ => f.tool = Some(v.clone()),
            }
            let with = list::filter_mask(&body, &starts, &f, 0, n, &ranks).unwrap();
            let without = list::filter_mask(&body, &starts, &f, 0, n, &[None; 4]).unwrap();
            assert_eq!(with, without, "{field:?} {v}");
            let rows: Vec<bool> = match &with {
                Some(Some(m)) => m.clone(),
                _ => vec![false; n],
            };
            assert_eq!(rows, want, "{field:?} {v}");
        }
    }
}

/// `list` keeps a lazy body's decompressed segments (the user filter's dictionary run and ids are
/// read again by `materialize`), reuses start column buffers across bodies, and materializes only
/// the rows' groups of the extras lengths and parents: over sealed blocks of 900 rows in row
/// groups of 300, with user dictionaries of several segments, paging by user (page sizes 1, 7
/// and 100), by tool, by duration and unfiltered returns exactly the brute-force model's rows.
#[test]
fn list_with_shared_segments_equals_model() {
    use super::cursor::RowKey;
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(900)).unwrap();
    let mut g = Gen::new(29, 1);
    let mut spans = Vec::new();
    for b in 0..6 {
        let batch: Vec<SpanRecord> = (0..1000)
            .map(|i| {
                let mut s = g.span();
                (s.org_id, s.server_id) = (1, 10 + (i + b) % 2);
                // About 700 distinct users per block: three dictionary segments of 256.
                s.mcp.user_id =
                    (i % 9 != 0).then(|| format!("user-{}", (i * 7 + b * 13) % 2000).into());
                s
            })
            .collect();
        store.append(&batch).unwrap();
        spans.extend(batch);
    }
    store.compact().unwrap();
    let model = |f: &SpanFilter| {
        let mut v: Vec<&SpanRecord> = spans
            .iter()
            .filter(|s| s.org_id == 1 && model_check::matches(s, f))
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(RowKey::of(s)));
        v
    };
    let mut filters = vec![
        SpanFilter::default(),
        SpanFilter {
            tool: Some("search".into()),
            ..Default::default()
        },
        SpanFilter {
            min_duration_nanos: Some(1_000_000_000),
            ..Default::default()
        },
    ];
    // Users of the first, a middle and the last dictionary segments (hash order), and one absent.
    for u in [7, 300, 1111, 1999, 5000] {
        filters.push(SpanFilter {
            user_id: Some(format!("user-{u}")),
            ..Default::default()
        });
    }
    let mut seen_user_rows = 0;
    for f in &filters {
        let want = model(f);
        if f.user_id.is_some() {
            seen_user_rows += want.len();
        }
        for page in [1, 7, 100] {
            let got = all(&store, 1, f, page);
            assert_eq!(got.len(), want.len(), "{f:?} page {page}");
            for (a, b) in got.iter().zip(&want) {
                assert!(eq_bits(a, b), "{f:?} page {page}");
            }
        }
    }
    assert!(seen_user_rows > 0, "the user filters must match some rows");
}
