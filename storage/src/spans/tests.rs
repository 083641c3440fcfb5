//! Span store tests against real redb files: a brute-force `Vec<SpanRecord>` model for list, trace
//! and compaction, plus isolation, cursor validation, format version, drop and corruption checks.

mod gen;
mod model_check;

use std::sync::Arc;

use redb::ReadableTableMetadata;

use super::partition::{file_name, BODIES, META, TRACE_RECENT};
use super::*;
use crate::error::StorageError;
use crate::model;
use gen::{eq_bits, Gen};

pub(super) fn opts(block_rows_max: usize) -> SpanStoreOptions {
    SpanStoreOptions {
        block_rows_max,
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
    spans[3].name = "ünï✓ode 🚀".repeat(1000);
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
            .insert("format_version", 2u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = SpanStore::open(dir.path(), opts(16)).unwrap();
    let r = store.trace(span.org_id, &span.trace_id);
    assert!(
        matches!(
            r,
            Err(StorageError::FormatVersion {
                found: 2,
                supported: 1
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

#[test]
fn compaction_empties_recent_index_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(64)).unwrap();
    let mut g = Gen::new(17, 1);
    for _ in 0..20 {
        let batch: Vec<SpanRecord> = (0..10).map(|_| g.span()).collect();
        let st = store.append(&batch).unwrap();
        assert_eq!(st.spans, 10);
        assert!(st.blocks >= 1 && st.partitions == 1);
    }
    let stats = store.compact().unwrap();
    assert!(
        stats.blocks_merged > stats.blocks_written && stats.rows_rewritten == 200,
        "{stats:?}"
    );
    let day = store.partitions().unwrap()[0].day;
    let p = store.parts.get(day, false).unwrap().unwrap();
    let txn = p.part.db.begin_read().unwrap();
    assert_eq!(txn.open_table(TRACE_RECENT).unwrap().len().unwrap(), 0);
    // A second run finds nothing left to merge.
    assert_eq!(store.compact().unwrap().blocks_written, 0);
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
