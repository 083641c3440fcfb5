//! Text search against a brute-force scan of the stored spans: random spans with varied text,
//! random queries and filters, in every index state (nothing indexed, fully indexed, indexed
//! then appended to and compacted), plus suggestions, tenancy, the indexer thread and
//! `drop_partition`.

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::gen::{eq_bits, Gen};
use super::model_check::{filter, matches};
use super::opts;
use crate::model::*;
use crate::search::analyzer::{analyzer, tokens_into};
use crate::search::docs::SEARCH_FIELDS;
use crate::search::indexer::{self, catch_up, IndexerOptions};
use crate::search::{dir_name, SuggestField, TextQuery};
use crate::spans::cursor::RowKey;
use crate::spans::{SpanFilter, SpanStore};

const TOOLS: [&str; 6] = [
    "search_docs",
    "fetch-url",
    "Search",
    "ünïcode_tool",
    "tool_17",
    "tool_1",
];
const USERS: [&str; 5] = [
    "user-17@example.com",
    "alice",
    "12345",
    "bob.smith",
    "user-1@example.com",
];
const SESSIONS: [&str; 3] = ["4711", "4712", "s-4711"];
const STATUS: [&str; 4] = [
    "",
    "connection refused",
    "Timeout after 30s",
    "ÉCHEC de connexion",
];
const ERRORS: [&str; 3] = ["tool_error", "-32602", "TimeoutError"];
const NAMES: [&str; 4] = [
    "tools/call search_docs",
    "tools/call tool_17",
    "resources/read",
    "span 1",
];
const PROMPTS: [&str; 2] = ["summarize", "code-review"];
const RESOURCES: [&str; 2] = ["file:///tmp/a.txt", "https://example.com/docs/Search"];
const QUERIES: [&str; 26] = [
    "search",
    "docs",
    "search_docs",
    "tool_17",
    "17",
    "user-17",
    "example.com",
    "\"connection refused\"",
    "connection",
    "timeout",
    "30s",
    "échec",
    "ÉCHEC",
    "12345",
    "4711",
    "tool_error",
    "32602",
    "-32602",
    "summarize",
    "file",
    "a.txt",
    "nomatch",
    "tools/call",
    "1",
    "refused connection",
    "Search docs",
];

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> Option<&'a str> {
    if rng.gen_bool(0.25) {
        None
    } else {
        Some(xs[rng.gen_range(0..xs.len())])
    }
}

/// A span of `Gen` with varied searchable text.
fn texty(g: &mut Gen, rng: &mut StdRng) -> SpanRecord {
    let mut s = g.span();
    let own = |v: Option<&str>| v.map(Text::from);
    s.mcp.tool = own(pick(rng, &TOOLS));
    s.mcp.user_id = own(pick(rng, &USERS));
    s.mcp.session_id = own(pick(rng, &SESSIONS));
    s.mcp.prompt = own(pick(rng, &PROMPTS));
    s.mcp.resource_uri = own(pick(rng, &RESOURCES));
    s.mcp.error_type = own(pick(rng, &ERRORS).filter(|_| rng.gen_bool(0.3)));
    s.status_message = pick(rng, &STATUS).unwrap_or("").into();
    s.name = pick(rng, &NAMES).unwrap_or("other").into();
    s
}

fn toks(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    tokens_into(&mut analyzer(), v, &mut out);
    out
}

/// The specification: every term is a contiguous token run inside one searched value.
fn text_matches(s: &SpanRecord, q: &TextQuery) -> bool {
    let values: Vec<Vec<String>> = SEARCH_FIELDS
        .iter()
        .filter_map(|f| f.get(s))
        .map(toks)
        .collect();
    q.terms().iter().all(|t| {
        values
            .iter()
            .any(|v| v.windows(t.len()).any(|w| w == t.as_slice()))
    })
}

fn model_search(
    spans: &[SpanRecord],
    org: OrgId,
    f: &SpanFilter,
    q: &TextQuery,
) -> Vec<SpanRecord> {
    let mut v: Vec<SpanRecord> = spans
        .iter()
        .filter(|s| s.org_id == org && matches(s, f) && text_matches(s, q))
        .cloned()
        .collect();
    v.sort_by_key(|s| std::cmp::Reverse(RowKey::of(s)));
    v
}

fn search_all(
    store: &SpanStore,
    org: OrgId,
    f: &SpanFilter,
    q: &TextQuery,
    page: usize,
) -> Vec<SpanRecord> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = store.search(org, f, q, cursor.as_deref(), page).unwrap();
        assert!(p.spans.len() <= page);
        out.extend(p.spans);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn model_suggest(
    spans: &[SpanRecord],
    org: OrgId,
    field: SuggestField,
    prefix: &str,
    limit: usize,
) -> Vec<String> {
    let prefix = prefix.to_lowercase();
    let set: BTreeSet<(String, String)> = spans
        .iter()
        .filter(|s| s.org_id == org)
        .filter_map(|s| match field {
            SuggestField::Tool => s.mcp.tool.as_deref().map(String::from),
            SuggestField::User => s.mcp.user_id.as_deref().map(String::from),
        })
        .filter(|v| !v.is_empty() && v.to_lowercase().starts_with(&prefix))
        .map(|v| (v.to_lowercase(), v))
        .collect();
    set.into_iter().map(|x| x.1).take(limit).collect()
}

fn check(
    store: &SpanStore,
    g: &mut Gen,
    spans: &[SpanRecord],
    queries: &[(usize, usize, u32, [u64; 2])],
    page: usize,
    what: &str,
) -> Result<(), TestCaseError> {
    for &(a, b, bits, t) in queries {
        let text = if b % 3 == 0 {
            QUERIES[a % QUERIES.len()].to_string()
        } else {
            format!(
                "{} {}",
                QUERIES[a % QUERIES.len()],
                QUERIES[b % QUERIES.len()]
            )
        };
        let q = store.parse_query(&text).unwrap();
        // Half the queries without other filters, so matches are plentiful.
        let f = if bits % 2 == 0 {
            SpanFilter::default()
        } else {
            filter(g, bits, t)
        };
        for org in 1..=3 {
            let got = search_all(store, org, &f, &q, page);
            let want = model_search(spans, org, &f, &q);
            prop_assert_eq!(
                got.len(),
                want.len(),
                "{} q={:?} org={} {:?}",
                what,
                text,
                org,
                f
            );
            for (x, y) in got.iter().zip(&want) {
                prop_assert!(
                    eq_bits(x, y),
                    "{}: q={:?} {:?} != {:?}",
                    what,
                    text,
                    x.span_id,
                    y.span_id
                );
            }
        }
    }
    Ok(())
}

fn check_suggest(store: &SpanStore, spans: &[SpanRecord]) -> Result<(), TestCaseError> {
    for org in 1..=3 {
        for field in [SuggestField::Tool, SuggestField::User] {
            for (prefix, limit) in [
                ("", 100),
                ("s", 100),
                ("U", 1),
                ("user-1", 100),
                ("ü", 5),
                ("zz", 3),
            ] {
                let got = store.suggest(org, field, prefix, None, 0, limit).unwrap();
                let want = model_suggest(spans, org, field, prefix, limit);
                prop_assert_eq!(got, want, "org {} {:?} {:?}", org, field, prefix);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Search equals the brute-force scan whatever the index state: nothing indexed (every
    /// block verified directly), fully indexed, and indexed then appended to and compacted
    /// (merged blocks above the watermark hold rows that are also indexed).
    #[test]
    fn search_equals_brute_force(
        seed in any::<u64>(),
        batches in proptest::collection::vec(1usize..80, 2..5),
        queries in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u32>(), any::<[u64; 2]>()), 1..6),
        page in 1usize..40,
        block_rows in 2usize..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::open(dir.path(), opts(block_rows)).unwrap();
        let mut g = Gen::new(seed, 3);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut spans = Vec::new();
        let (first, rest) = batches.split_at(batches.len() / 2);
        for n in first {
            let batch: Vec<SpanRecord> = (0..*n).map(|_| texty(&mut g, &mut rng)).collect();
            store.append(&batch).unwrap();
            spans.extend(batch);
        }
        check(&store, &mut g, &spans, &queries, page, "unindexed")?;
        catch_up(&store).unwrap();
        check(&store, &mut g, &spans, &queries, page, "indexed")?;
        check_suggest(&store, &spans)?;
        for n in rest {
            let batch: Vec<SpanRecord> = (0..*n).map(|_| texty(&mut g, &mut rng)).collect();
            store.append(&batch).unwrap();
            spans.extend(batch);
        }
        store.compact().unwrap();
        check(&store, &mut g, &spans, &queries, page, "partly indexed, compacted")?;
        catch_up(&store).unwrap();
        check(&store, &mut g, &spans, &queries, page, "re-indexed")?;
        check_suggest(&store, &spans)?;
    }
}

fn span_of(org: OrgId, server: ServerId, start: u64, tool: &str, user: &str) -> SpanRecord {
    let mut g = Gen::new(start, 1);
    let mut s = g.span();
    s.org_id = org;
    s.server_id = server;
    s.env = Env::Live;
    s.start_unix_nano = start;
    s.end_unix_nano = start + 1000;
    s.mcp.tool = Some(tool.into());
    s.mcp.user_id = Some(user.into());
    s.name = format!("tools/call {tool}").into();
    s
}

#[test]
fn tenancy_org_b_never_sees_org_a() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(64)).unwrap();
    let t0 = u64::from(super::gen::DAY0) * DAY_NANOS;
    let mut spans = Vec::new();
    for i in 0..200u64 {
        spans.push(span_of(
            1,
            10,
            t0 + i * 1_000_000_000,
            "secret_tool_a",
            "alice-a",
        ));
        spans.push(span_of(
            2,
            20,
            t0 + i * 1_000_000_000,
            "public_tool_b",
            "bob-b",
        ));
    }
    store.append(&spans).unwrap();
    for indexed in [false, true] {
        if indexed {
            catch_up(&store).unwrap();
        }
        for q in ["secret", "secret_tool_a", "alice", "tools/call"] {
            let q = store.parse_query(q).unwrap();
            let b = store
                .search(2, &SpanFilter::default(), &q, None, 1000)
                .unwrap();
            assert!(b.spans.iter().all(|s| s.org_id == 2), "indexed={indexed}");
            // Even naming org A's server as a filter yields nothing.
            let f = SpanFilter {
                server_ids: Some(vec![10]),
                ..SpanFilter::default()
            };
            assert!(store
                .search(2, &f, &q, None, 1000)
                .unwrap()
                .spans
                .is_empty());
        }
        let a = store
            .search(
                1,
                &SpanFilter::default(),
                &store.parse_query("secret").unwrap(),
                None,
                1000,
            )
            .unwrap();
        assert_eq!(a.spans.len(), 200);
    }
    for field in [SuggestField::Tool, SuggestField::User] {
        for server in [None, Some(10), Some(20)] {
            let got = store.suggest(2, field, "", server, 0, 100).unwrap();
            assert!(
                got.iter().all(|v| v == "public_tool_b" || v == "bob-b"),
                "{got:?}"
            );
        }
    }
    assert_eq!(
        store
            .suggest(2, SuggestField::Tool, "", Some(10), 0, 100)
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store
            .suggest(1, SuggestField::Tool, "SEC", None, 0, 100)
            .unwrap(),
        ["secret_tool_a"]
    );
    assert_eq!(
        store
            .suggest(1, SuggestField::User, "", Some(10), 0, 100)
            .unwrap(),
        ["alice-a"]
    );
}

/// The indexer thread: batches fed after `append` become searchable and suggestible, the
/// watermark reaches the file's `next_block_id`, a dropped batch (over the queue bound) is
/// recovered from the store, and `drop_partition` removes the index directory.
#[test]
fn indexer_thread_feed_loss_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SpanStore::open(dir.path(), opts(64)).unwrap());
    let opts = IndexerOptions {
        commit_interval_ms: 20,
        queue_spans_max: 150,
        ..IndexerOptions::default()
    };
    let (feed, handle) = indexer::start(Arc::clone(&store), opts).unwrap();
    let day = super::gen::DAY0;
    let t0 = u64::from(day) * DAY_NANOS;
    let mut total = 0;
    for round in 0..6u64 {
        // 100 spans per batch, 150 allowed waiting: some batches are dropped when the indexer
        // is behind, and recovered by its catch-up.
        let batch: Vec<SpanRecord> = (0..100u64)
            .map(|i| {
                span_of(
                    1,
                    10,
                    t0 + (round * 100 + i) * 1_000_000_000,
                    &format!("tool_{round}"),
                    "u",
                )
            })
            .collect();
        let stats = store.append(&batch).unwrap();
        feed.send(
            crate::search::docs::DocBuilder::of_spans(&batch),
            batch.len(),
            stats.watermarks,
        );
        total += 100;
    }
    let next = store
        .index_blocks_from(day, u64::MAX, &mut Default::default())
        .unwrap()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.search_index().watermark(day).unwrap() < next {
        assert!(
            std::time::Instant::now() < deadline,
            "indexer did not catch up"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let tools = store
        .suggest(1, SuggestField::Tool, "tool_", None, 0, 100)
        .unwrap();
    assert_eq!(
        tools,
        (0..6).map(|r| format!("tool_{r}")).collect::<Vec<_>>()
    );
    let q = store.parse_query("tools/call").unwrap();
    assert_eq!(
        store
            .search(1, &SpanFilter::default(), &q, None, 10_000)
            .unwrap()
            .spans
            .len(),
        total
    );
    drop(feed);
    handle.join().unwrap();
    let idx = dir.path().join(dir_name(day));
    assert!(idx.is_dir());
    store.drop_partition(day).unwrap();
    assert!(!idx.exists());
    assert!(store
        .search(1, &SpanFilter::default(), &q, None, 10)
        .unwrap()
        .spans
        .is_empty());
    // Reopening with an orphan index directory (a crash between the two deletions) removes it.
    drop(store);
    std::fs::create_dir_all(&idx).unwrap();
    let _store = SpanStore::open(dir.path(), super::opts(64)).unwrap();
    assert!(!idx.exists());
}

/// Documents built per request (by ingest workers) and merged by the indexer hold the same values
/// per bucket as documents built from all spans at once, and no document exceeds DOC_SPANS_MAX.
#[test]
fn merged_request_documents_equal_one_builder() {
    use crate::search::docs::{BucketKey, DocBuilder, DOC_SPANS_MAX};
    use std::collections::BTreeMap;
    let t0 = u64::from(super::gen::DAY0) * DAY_NANOS;
    let mut rng = StdRng::seed_from_u64(7);
    // Two busy buckets (so documents close at DOC_SPANS_MAX) and a few sparse ones.
    let spans: Vec<SpanRecord> = (0..(3 * DOC_SPANS_MAX + 500))
        .map(|i| {
            let start = t0 + (i % 2) * 3_600_000_000_000 + rng.gen_range(0..1_000_000_000);
            let tool = format!("tool_{}", rng.gen_range(0..50));
            let user = format!("user_{}", rng.gen_range(0..500));
            span_of(1, 1 + (i % 3) as u32, start, &tool, &user)
        })
        .collect();
    type Union = BTreeMap<BucketKey, Vec<BTreeSet<String>>>;
    fn union(docs: Vec<(BucketKey, crate::search::docs::BucketValues)>) -> (Union, u64) {
        let mut out = Union::new();
        let mut spans = 0;
        for (k, v) in docs {
            assert!(v.spans <= DOC_SPANS_MAX, "document of {} spans", v.spans);
            spans += v.spans;
            let e = out
                .entry(k)
                .or_insert_with(|| vec![BTreeSet::new(); v.values.len()]);
            for (set, vals) in e.iter_mut().zip(v.values) {
                set.extend(vals.into_iter().map(String::from));
            }
        }
        (out, spans)
    }
    let whole = union(DocBuilder::of_spans(&spans));
    let mut merged = DocBuilder::default();
    let mut at = 0;
    while at < spans.len() {
        let n = rng.gen_range(1..700).min(spans.len() - at);
        for (k, v) in DocBuilder::of_spans(&spans[at..at + n]) {
            merged.merge(k, v);
        }
        at += n;
    }
    let merged = union(merged.into_parts());
    assert_eq!(whole.1, spans.len() as u64);
    assert_eq!(merged.1, spans.len() as u64);
    assert_eq!(whole.0, merged.0);
}

/// A bucket busier than DOC_SPANS_MAX spans closes documents; every one of them is indexed, by
/// the catch-up and by the indexer thread alike, and the indexer's builder is left empty. (Closed
/// documents were once never taken: values only they held were unsearchable, and the indexer
/// kept them in memory for good.)
#[test]
fn busy_bucket_closed_documents_are_indexed_and_freed() {
    use crate::search::docs::{DocBuilder, DOC_SPANS_MAX};
    let day = super::gen::DAY0;
    let t0 = u64::from(day) * DAY_NANOS;
    let n = 2 * DOC_SPANS_MAX + 300;
    let needles = [0, DOC_SPANS_MAX - 1, DOC_SPANS_MAX + 7, n - 1];
    // One ten-minute bucket of one server: spans 100 ms apart.
    let spans: Vec<SpanRecord> = (0..n)
        .map(|i| {
            let tool = if needles.contains(&i) {
                format!("needle_{i}")
            } else {
                "common_tool".to_string()
            };
            span_of(1, 10, t0 + i * 100_000_000, &tool, "u")
        })
        .collect();
    let found = |store: &SpanStore, i: u64| {
        let q = store.parse_query(&format!("needle_{i}")).unwrap();
        search_all(store, 1, &SpanFilter::default(), &q, 100).len()
    };

    // The builder gives back every document of a day, closed ones included.
    let mut b = DocBuilder::default();
    for s in &spans {
        b.add_span(s);
    }
    let docs = b.take_day(day);
    assert_eq!(docs.len(), 3, "two closed documents and the open one");
    assert_eq!(docs.iter().map(|d| d.1.spans).sum::<u64>(), n);
    assert!(b.is_empty());

    // Catch-up (start, after a loss).
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(512)).unwrap();
    store.append(&spans).unwrap();
    catch_up(&store).unwrap();
    for i in needles {
        assert_eq!(found(&store, i), 1, "needle_{i} after catch-up");
    }

    // The indexer thread, fed request by request as ingest does.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SpanStore::open(dir.path(), opts(512)).unwrap());
    // No timed commit before the feed is dropped: every batch is merged into the builder first,
    // so its documents close at DOC_SPANS_MAX (commits every few batches would take the open
    // documents before any closed, and the test would pass on the old `take_day` too).
    let opts = IndexerOptions {
        commit_interval_ms: 600_000,
        ..IndexerOptions::default()
    };
    // One span of the day before, so the thread's start-up catch-up leaves a watermark to wait
    // for: once it has run, no later re-read covers for a document the thread failed to commit.
    let before = span_of(1, 10, t0 - DAY_NANOS, "earlier_tool", "u");
    store.append(std::slice::from_ref(&before)).unwrap();
    let (feed, handle) = indexer::start(Arc::clone(&store), opts).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.search_index().watermark(day - 1).unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "start-up catch-up");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for chunk in spans.chunks(500) {
        let stats = store.append(chunk).unwrap();
        feed.send(DocBuilder::of_spans(chunk), chunk.len(), stats.watermarks);
    }
    drop(feed);
    handle.join().unwrap();
    for i in needles {
        assert_eq!(found(&store, i), 1, "needle_{i} from the indexer thread");
    }
}
