//! Pending blocks' columns kept in memory (`spans::kept`) merge into exactly the blocks that a
//! merge reading the same pending blocks back from the file writes.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use redb::ReadableTable;

use super::gen::{Gen, DAY0};
use super::opts;
use crate::model::*;
use crate::spans::chunks::{body_key, BodyKey};
use crate::spans::compact::now_unix_nano;
use crate::spans::partition::{BODIES, HEADERS, META, TRACE_INDEX};
use crate::spans::registry::OpenPartition;
use crate::spans::retention::RetentionPolicy;
use crate::spans::{SpanStore, SpanStoreOptions};

fn handles(store: &SpanStore) -> Vec<(u32, Arc<OpenPartition>)> {
    store
        .partitions()
        .unwrap()
        .iter()
        .map(|i| (i.day, store.parts.get(i.day, false).unwrap().unwrap()))
        .collect()
}

/// The file's copies of spoiled blocks: (day, chunk key) to the chunk's bytes.
type Saved = HashMap<(u32, BodyKey), Vec<u8>>;

/// Overwrites the body chunks of every kept block with junk, saving them first: a merge that read
/// such a block back instead of taking its kept columns would fail on the junk.
fn spoil_kept(store: &SpanStore, saved: &mut Saved) {
    for (day, p) in handles(store) {
        let w = p.part.write_lock.lock();
        // No transaction when there is nothing to do: an extra commit changes the file's length,
        // which decides whether compaction seals a finished day, and the two stores must agree.
        if w.kept.ids().is_empty() {
            continue;
        }
        let txn = p.part.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(BODIES).unwrap();
            for id in w.kept.ids() {
                let (lo, hi) = (body_key(id, 0), body_key(id, u32::MAX));
                let chunks: Vec<(BodyKey, Vec<u8>)> = t
                    .range::<&BodyKey>(&lo..=&hi)
                    .unwrap()
                    .map(|e| {
                        let (k, v) = e.unwrap();
                        (*k.value(), v.value().to_vec())
                    })
                    .collect();
                for (k, v) in chunks {
                    if let std::collections::hash_map::Entry::Vacant(e) = saved.entry((day, k)) {
                        t.insert(&k, vec![0xAB; v.len()].as_slice()).unwrap();
                        e.insert(v);
                    }
                }
            }
        }
        txn.commit().unwrap();
    }
}

/// Puts back the saved chunks that are still in the file (a merge deleted the others).
fn restore(store: &SpanStore, saved: &mut Saved) {
    for (day, p) in handles(store) {
        let _w = p.part.write_lock.lock();
        if !saved.keys().any(|(d, _)| *d == day) {
            continue;
        }
        let txn = p.part.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(BODIES).unwrap();
            for ((d, k), v) in saved.iter() {
                if *d == day && t.get(k).unwrap().is_some() {
                    t.insert(k, v.as_slice()).unwrap();
                }
            }
        }
        txn.commit().unwrap();
    }
    saved.clear();
}

/// A table's entries as bytes.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every entry of a table with fixed-size keys, as bytes.
macro_rules! dump {
    ($db:expr, $def:expr) => {{
        let txn = $db.begin_read().unwrap();
        let t = txn.open_table($def).unwrap();
        t.iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect::<Entries>()
    }};
}

/// Every span table of every partition: headers, bodies, trace index and meta.
fn tables(store: &SpanStore) -> Vec<(u32, Vec<Entries>)> {
    handles(store)
        .into_iter()
        .map(|(day, p)| {
            let db = &p.part.db;
            let meta = {
                let txn = db.begin_read().unwrap();
                let t = txn.open_table(META).unwrap();
                t.iter()
                    .unwrap()
                    .map(|e| {
                        let (k, v) = e.unwrap();
                        (k.value().as_bytes().to_vec(), v.value().to_vec())
                    })
                    .collect()
            };
            (
                day,
                vec![
                    dump!(db, HEADERS),
                    dump!(db, BODIES),
                    dump!(db, TRACE_INDEX),
                    meta,
                ],
            )
        })
        .collect()
}

fn kept_taken(store: &SpanStore) -> u64 {
    handles(store)
        .iter()
        .map(|(_, p)| p.part.write_lock.lock().kept.taken())
        .sum()
}

/// A batch of `n` spans of `servers` servers of organizations 1 and 2, on `day`; some request ids
/// and users are numbers, some not (numeric and dictionary string columns meet in merges).
fn batch(
    g: &mut Gen,
    rng: &mut rand::rngs::StdRng,
    n: usize,
    servers: u32,
    day: u32,
) -> Vec<SpanRecord> {
    (0..n)
        .map(|_| {
            let mut s = g.span();
            s.org_id = rng.gen_range(1..=2);
            s.server_id = s.org_id * 10 + rng.gen_range(0..servers);
            let offset = s.start_unix_nano % DAY_NANOS;
            s.start_unix_nano = u64::from(day) * DAY_NANOS + offset;
            s.end_unix_nano = s.start_unix_nano + rng.gen_range(0..1_000_000_000);
            match rng.gen_range(0..5) {
                0 => s.mcp.request_id = Some(format!("req-{}", rng.gen_range(0..50)).into()),
                1 => s.mcp.request_id = Some("007".into()),
                2 => s.mcp.user_id = Some(rng.gen_range(0..20).to_string().into()),
                _ => {}
            }
            s
        })
        .collect()
}

fn open(dir: &std::path::Path, kept_bytes_max: usize) -> SpanStore {
    SpanStore::open(
        dir,
        SpanStoreOptions {
            pending_kept_bytes_max: kept_bytes_max,
            ..opts(256)
        },
    )
    .unwrap()
}

/// The step sequence of one case: appends of (rows, servers), compactions, and (on a finished day)
/// organization 2's spans purged by retention.
#[derive(Clone, Debug)]
enum Step {
    Append(usize, u32),
    Compact,
    Purge,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1usize..200, 1u32..4).prop_map(|(n, s)| Step::Append(n, s)),
        1 => Just(Step::Compact),
        1 => Just(Step::Purge),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The same steps on two stores: one keeps pending blocks' columns (none, some or all of
    /// them, by its byte limit; none on a finished day), the other reads every merged block back
    /// from the file. Kept blocks'
    /// bodies are spoiled in the file, so a merge that read one back would fail. At the end (the
    /// spoiled bodies still pending put back) both files hold the same headers, bodies, trace
    /// index and counters, byte for byte.
    #[test]
    fn pending_columns_kept_in_memory_merge_as_the_blocks_read_back(
        seed in any::<u64>(),
        today in any::<bool>(),
        kept_bytes_max in prop_oneof![Just(0usize), Just(100_000), Just(usize::MAX)],
        steps in proptest::collection::vec(step(), 1..30),
    ) {
        // Today: pending blocks are kept, and compaction merges them and never seals. A finished
        // day: nothing is kept; compaction merges every pending block and seals the file.
        let day = if today { day_of(now_unix_nano()) } else { DAY0 };
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (kept, reread) = (open(da.path(), kept_bytes_max), open(db.path(), 0));
        let mut g = Gen::new(seed, 1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut saved = Saved::new();
        for s in &steps {
            match *s {
                Step::Append(n, servers) => {
                    let b = batch(&mut g, &mut rng, n, servers, day);
                    kept.append(&b).unwrap();
                    reread.append(&b).unwrap();
                }
                // Seals (compaction and retention on a finished day) copy the file, but a
                // finished day keeps nothing, so no spoiled body is ever copied.
                Step::Compact => {
                    kept.compact().unwrap();
                    reread.compact().unwrap();
                }
                Step::Purge if !today => {
                    let policy = RetentionPolicy {
                        now_unix_nano: u64::from(day + 3) * DAY_NANOS,
                        org_days: [(2, 1)].into_iter().collect(),
                        default_days: 100_000,
                        disk_bytes_max: None,
                    };
                    kept.apply_retention(&policy).unwrap();
                    reread.apply_retention(&policy).unwrap();
                }
                Step::Purge => {}
            }
            spoil_kept(&kept, &mut saved);
            for (_, p) in handles(&kept) {
                let w = p.part.write_lock.lock();
                prop_assert!(w.kept.bytes() <= kept_bytes_max);
                prop_assert_eq!(w.kept.bytes(), w.kept.bytes_now());
                // A finished day keeps nothing: it is sealed at the next compaction.
                prop_assert!(today || w.kept.ids().is_empty());
                // Nothing kept that is not pending (purged and merged blocks are forgotten).
                if let Some(pending) = w.pending.as_ref() {
                    let live: Vec<u64> = pending.values().flatten().map(|b| b.id).collect();
                    prop_assert!(w.kept.ids().iter().all(|id| live.contains(id)));
                }
            }
        }
        prop_assert_eq!(kept_taken(&reread), 0);
        restore(&kept, &mut saved);
        prop_assert!(tables(&kept) == tables(&reread), "the files differ");
    }
}

/// Three 100-row appends into 256-row blocks (today): the third merges the first two pending
/// blocks, both taken from memory (their bodies spoiled in the file), and every span reads back.
#[test]
fn a_merge_takes_kept_blocks_and_reads_none_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), usize::MAX);
    let mut g = Gen::new(5, 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut saved = Saved::new();
    let mut all = Vec::new();
    for i in 0..3 {
        let mut b = batch(&mut g, &mut rng, 100, 1, day_of(now_unix_nano()));
        for s in &mut b {
            (s.org_id, s.server_id) = (1, 10);
        }
        store.append(&b).unwrap();
        all.extend(b);
        if i < 2 {
            spoil_kept(&store, &mut saved);
        }
    }
    assert_eq!(
        kept_taken(&store),
        2,
        "both pending blocks came from memory"
    );
    restore(&store, &mut saved);
    for s in &all {
        let got = store.trace(s.org_id, &s.trace_id).unwrap();
        assert!(got.iter().any(|x| super::eq_bits(x, s)));
    }
}
