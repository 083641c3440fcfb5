//! Text search at scale: builds a store of BENCH_SPANS (default 10,000,000) realistic MCP spans
//! over 90 days, 20 servers, 200 tools, 2,000 users (error spans carry one of a few error
//! messages), indexes it, then measures:
//!
//! - tantivy with one document per span (the design not taken), on the first 200,000 spans;
//! - the index build (`search::indexer::catch_up`, which reads every block back): spans/s,
//!   documents, index bytes per span; and the ingest-side document building alone;
//! - searches for a tool name, a user, an error-message word and a session id: the first page of
//!   100 matches and the 19 pages after it (cursor), p50 and max.
//!
//! Run: `cargo bench -p mcp-obs-storage --bench search` (env BENCH_SPANS, BENCH_DIR to keep the
//! store between runs: an existing store there is reused instead of rebuilt).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mcp_obs_storage::model::*;
use mcp_obs_storage::search::docs::DocBuilder;
use mcp_obs_storage::search::indexer::catch_up;
use mcp_obs_storage::spans::{SpanFilter, SpanStore, SpanStoreOptions};
use rand::{Rng, SeedableRng};

mod common;

use common::*;

const DAYS: u64 = 90;
const BATCH: usize = 20_000;
const MESSAGES: [&str; 4] = [
    "connection refused by upstream",
    "timeout after 30s waiting for index",
    "rate limit exceeded for tenant",
    "invalid argument: path must be absolute",
];

fn bench_span(rng: &mut impl Rng, start: u64) -> SpanRecord {
    let mut s = span(rng, start);
    if s.is_error() {
        s.status_message = MESSAGES[rng.gen_range(0..MESSAGES.len())].into();
    }
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// tantivy with one document per span, text fields as the bucket documents have them.
fn per_span_documents(spans: &[SpanRecord]) -> f64 {
    use tantivy::schema::{Schema, FAST, INDEXED, TEXT};
    let dir = tempfile::tempdir().unwrap();
    let mut b = Schema::builder();
    let org = b.add_u64_field("org", INDEXED | FAST);
    let server = b.add_u64_field("server", INDEXED | FAST);
    let start = b.add_u64_field("start", FAST);
    let text = b.add_text_field("text", TEXT);
    let index = tantivy::Index::create_in_dir(dir.path(), b.build()).unwrap();
    let mut w: tantivy::IndexWriter = index.writer_with_num_threads(1, 32_000_000).unwrap();
    let t = Instant::now();
    for s in spans {
        let mut d = tantivy::TantivyDocument::new();
        d.add_u64(org, u64::from(s.org_id));
        d.add_u64(server, u64::from(s.server_id));
        d.add_u64(start, s.start_unix_nano);
        for v in [
            &s.mcp.tool,
            &s.mcp.user_id,
            &s.mcp.session_id,
            &s.mcp.error_type,
        ]
        .into_iter()
        .flatten()
        {
            d.add_text(text, v);
        }
        d.add_text(text, &s.name);
        d.add_text(text, &s.status_message);
        w.add_document(d).unwrap();
    }
    w.commit().unwrap();
    spans.len() as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total: usize = std::env::var("BENCH_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir: PathBuf = std::env::var("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("mcpobs-bench-search"));
    let day0 = 20_000 * DAY_NANOS;
    let step = DAYS * DAY_NANOS / total as u64;

    // The first 200,000 spans: per-span tantivy documents, and ingest-side document building
    // (BENCH_QUERIES_ONLY=1 skips this, for profiling the queries).
    let queries_only = std::env::var("BENCH_QUERIES_ONLY").is_ok_and(|v| v == "1");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let sample: Vec<SpanRecord> = (0..if queries_only { 0 } else { 200_000.min(total) })
        .map(|i| bench_span(&mut rng, day0 + i as u64 * step))
        .collect();
    if !queries_only {
        println!(
            "tantivy, one document per span: {:.0} docs/s (1 indexing thread)",
            per_span_documents(&sample)
        );
    }
    let t = Instant::now();
    let mut docs = DocBuilder::default();
    for chunk in sample.chunks(BATCH) {
        for s in chunk {
            docs.add_span(s);
        }
    }
    let buckets: usize = docs.days().iter().map(|&d| docs.take_day(d).len()).sum();
    println!(
        "bucket documents from SpanRecords (the indexer's ingest path): {:.0} spans/s, {} spans -> {} documents",
        sample.len() as f64 / t.elapsed().as_secs_f64(),
        sample.len(),
        buckets
    );
    drop(sample);

    if !dir.join("built").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let store = SpanStore::open(&dir, SpanStoreOptions::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let t = Instant::now();
        let mut batch = Vec::with_capacity(BATCH);
        for i in 0..total {
            batch.push(bench_span(&mut rng, day0 + i as u64 * step));
            if batch.len() == BATCH {
                store.append(&batch).unwrap();
                batch.clear();
            }
        }
        if !batch.is_empty() {
            store.append(&batch).unwrap();
        }
        let appended = t.elapsed();
        while store.compact().unwrap().blocks_merged > 0 {}
        println!(
            "build: appended {total} spans in {:.1} s, compacted",
            appended.as_secs_f64()
        );
        drop(store);
        std::fs::write(dir.join("built"), total.to_string()).unwrap();
    }
    // The index is built separately (a store built by an older index version is re-indexed).
    if !dir.join("indexed").exists() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with(".idx") {
                std::fs::remove_dir_all(e.path()).unwrap();
            }
        }
        let store = SpanStore::open(&dir, SpanStoreOptions::default()).unwrap();
        let spans_bytes = dir_bytes(&dir);
        let t = Instant::now();
        catch_up(&store).unwrap();
        let took = t.elapsed();
        let ndocs: u64 = store
            .days()
            .iter()
            .map(|&d| store.search_index().doc_count(d).unwrap())
            .sum();
        let index_bytes = dir_bytes(&dir) - spans_bytes;
        println!(
            "index build from the blocks: {:.1} s, {:.0} spans/s, {} documents ({:.1} spans per document), {:.2} index bytes/span ({} bytes)",
            took.as_secs_f64(),
            total as f64 / took.as_secs_f64(),
            ndocs,
            total as f64 / ndocs as f64,
            index_bytes as f64 / total as f64,
            index_bytes
        );
        drop(store);
        std::fs::write(dir.join("indexed"), total.to_string()).unwrap();
    }

    let store = SpanStore::open(&dir, SpanStoreOptions::default()).unwrap();
    let session = format!("{:032x}", 1234);
    let queries = [
        ("tool name", "tool_17".to_string()),
        ("user", "user-42@example.com".to_string()),
        ("error message word", "refused".to_string()),
        ("session id", session),
        ("no match", "nosuchword".to_string()),
    ];
    // The same rows through the exact-value filters of `list` (no index), for comparison: what
    // reading and materializing 100 spans spread over that many blocks costs in this store.
    for (name, f) in [
        (
            "list, tool filter",
            SpanFilter {
                tool: Some("tool_17".into()),
                ..Default::default()
            },
        ),
        (
            "list, user filter",
            SpanFilter {
                user_id: Some("user-42@example.com".into()),
                ..Default::default()
            },
        ),
        (
            "list, session filter",
            SpanFilter {
                session_id: Some(format!("{:032x}", 1234)),
                ..Default::default()
            },
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let p = store.list(1, &f, None, 100).unwrap();
            times.push(t.elapsed());
            assert_eq!(p.spans.len(), 100);
        }
        println!(
            "{name}: first 100 p50 {:.2} ms, max {:.2} ms",
            ms(percentile(times.clone(), 0.5)),
            ms(*times.iter().max().unwrap())
        );
    }
    for (cold, label) in [(true, "cold (first query after open)"), (false, "warm")] {
        if !cold {
            println!("--- {label}");
        }
        for (name, q) in &queries {
            let q = store.parse_query(q).unwrap();
            if cold {
                let t = Instant::now();
                let p = store
                    .search(1, &SpanFilter::default(), &q, None, 100)
                    .unwrap();
                println!(
                    "{label}, {name}: first 100 in {:.2} ms ({} spans)",
                    ms(t.elapsed()),
                    p.spans.len()
                );
                continue;
            }
            let mut firsts = Vec::new();
            for _ in 0..10 {
                let t = Instant::now();
                let p = store
                    .search(1, &SpanFilter::default(), &q, None, 100)
                    .unwrap();
                firsts.push(t.elapsed());
                assert!(p.spans.len() <= 100);
            }
            let mut pages = Vec::new();
            let mut cursor: Option<String> = None;
            let mut n = 0;
            for _ in 0..20 {
                let t = Instant::now();
                let p = store
                    .search(1, &SpanFilter::default(), &q, cursor.as_deref(), 100)
                    .unwrap();
                pages.push(t.elapsed());
                n += p.spans.len();
                cursor = p.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
            println!(
                "{name}: first 100 p50 {:.2} ms, max {:.2} ms; 20 pages p50 {:.2} ms, max {:.2} ms ({} spans in {} pages)",
                ms(percentile(firsts.clone(), 0.5)),
                ms(*firsts.iter().max().unwrap()),
                ms(percentile(pages.clone(), 0.5)),
                ms(*pages.iter().max().unwrap()),
                n,
                pages.len()
            );
        }
    }
}
