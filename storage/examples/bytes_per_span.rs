//! Generates realistic MCP spans (~11 attributes, 8 tools, 37 users, 5% errors, one single-span
//! trace per request), ingests them in group commits with periodic compaction, and prints on-disk
//! bytes per span (every partition file counted) plus append, trace and list timings.
//!
//! `cargo run --release -p mcp-obs-storage --example bytes_per_span -- [spans] [zstd_level_compact] [days]`

use std::time::Instant;

use mcp_obs_storage::model::*;
use mcp_obs_storage::spans::{SpanFilter, SpanStore, SpanStoreOptions, StatusFilter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOOLS: [&str; 8] = [
    "search_docs",
    "fetch_url",
    "read_file",
    "write_file",
    "run_query",
    "list_issues",
    "create_issue",
    "summarize",
];
const BATCH: usize = 500;
const COMPACT_EVERY_BATCHES: usize = 20;

fn kv(key: &str, value: AttrValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
    }
}

fn span(rng: &mut StdRng, i: u64, t0: u64, spacing_nanos: u64) -> SpanRecord {
    let start = t0 + i * spacing_nanos + rng.gen_range(0..spacing_nanos);
    let user = rng.gen_range(0..37u32);
    let tool = TOOLS[rng.gen_range(0..TOOLS.len())];
    let error = rng.gen_bool(0.05);
    let dur: u64 = (rng.gen_range(1.0f64..3000.0).powf(1.5) * 1000.0) as u64;
    let session = format!("sess-{user:02}-{}", rng.gen_range(0..4u32));
    SpanRecord {
        org_id: 1,
        server_id: 1 + (user % 3),
        env: Env::Live,
        trace_id: rng.gen(),
        span_id: rng.gen(),
        parent_span_id: [0; 8],
        start_unix_nano: start,
        end_unix_nano: start + dur,
        name: format!("tools/call {tool}").into(),
        kind: SPAN_KIND_SERVER,
        status_code: if error { STATUS_ERROR } else { STATUS_UNSET },
        status_message: if error {
            "tool raised an exception".into()
        } else {
            String::new()
        },
        flags: 1,
        trace_state: String::new(),
        sample_probability: 1.0,
        service_name: "acme-mcp".into(),
        mcp: McpFields {
            method: Some("tools/call".into()),
            tool: Some(tool.into()),
            request_id: Some(rng.gen_range(1..400u32).to_string().into()),
            session_id: Some(session.into()),
            user_id: Some(format!("user-{user}@example.com").into()),
            client_name: Some(
                if user % 2 == 0 {
                    "claude-desktop"
                } else {
                    "cursor"
                }
                .into(),
            ),
            client_version: Some("1.4.2".into()),
            error_type: error.then(|| "tool_error".into()),
            transport: Some("tcp".into()),
            protocol_version: Some("2025-06-18".into()),
            ..McpFields::default()
        },
        attributes: vec![
            kv("server.address", AttrValue::Str("mcp.acme.internal".into())),
            kv("server.port", AttrValue::Int(443)),
            kv("network.protocol.name", AttrValue::Str("http".into())),
            kv(
                "gen_ai.operation.name",
                AttrValue::Str("execute_tool".into()),
            ),
            kv(
                "mcp.tool.result.size",
                AttrValue::Int(rng.gen_range(0..20_000)),
            ),
        ],
        events: Vec::new(),
        links: Vec::new(),
        origin: SpanOrigin {
            resource: vec![
                kv("service.name", AttrValue::Str("acme-mcp".into())),
                kv("service.version", AttrValue::Str("2.3.1".into())),
                kv("telemetry.sdk.language", AttrValue::Str("python".into())),
                kv(
                    "host.name",
                    AttrValue::Str(format!("mcp-{}", user % 3).into()),
                ),
            ],
            scope_name: "opentelemetry.instrumentation.mcp".into(),
            scope_version: "0.47.0".into(),
        }
        .into(),
        dropped_attributes_count: 0,
        dropped_events_count: 0,
        dropped_links_count: 0,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map_or(Ok(200_000), |s| s.parse())?;
    let level: i32 = args.get(2).map_or(Ok(9), |s| s.parse())?;
    let days: u64 = args.get(3).map_or(Ok(1), |s| s.parse())?;
    let dir = std::env::temp_dir().join(format!("mcp-obs-bps-{}", std::process::id()));
    let opts = SpanStoreOptions {
        zstd_level_compact: level,
        ..SpanStoreOptions::default()
    };
    let store = SpanStore::open(&dir, opts)?;
    let mut rng = StdRng::seed_from_u64(42);
    // The last day is today, so the partitions being written behave as in production (today's is
    // not sealed; earlier days are, by compaction).
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        / DAY_NANOS;
    let t0 = (today + 1 - days) * DAY_NANOS;
    // Today's spans end now at the latest (the day is only partly over).
    let now_in_day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        % DAY_NANOS;
    let spacing = ((days - 1) * DAY_NANOS + now_in_day) / n;
    let mut traces = Vec::new();
    let t = Instant::now();
    let mut append_secs = 0.0;
    let (mut batch_no, mut i) = (0, 0u64);
    while i < n {
        let batch: Vec<SpanRecord> = (i..(i + BATCH as u64).min(n))
            .map(|j| span(&mut rng, j, t0, spacing))
            .collect();
        if batch_no % 50 == 0 {
            traces.push(batch[0].trace_id);
        }
        let a = Instant::now();
        store.append(&batch)?;
        append_secs += a.elapsed().as_secs_f64();
        i += batch.len() as u64;
        batch_no += 1;
        if batch_no % COMPACT_EVERY_BATCHES == 0 {
            store.compact()?;
        }
    }
    let c = Instant::now();
    store.compact()?;
    let final_compact = c.elapsed();
    let bytes: u64 = store.partitions()?.iter().map(|p| p.bytes).sum();
    println!(
        "spans {n}, zstd level {level}, partitions {}",
        store.partitions()?.len()
    );
    println!(
        "total {:.1}s, append {:.1}s ({:.0} spans/s), final compact {:?}",
        t.elapsed().as_secs_f64(),
        append_secs,
        n as f64 / append_secs,
        final_compact
    );
    println!(
        "bytes on disk {bytes}, bytes/span {:.1}",
        bytes as f64 / n as f64
    );
    let q = Instant::now();
    for tr in &traces {
        assert_eq!(store.trace(1, tr)?.len(), 1);
    }
    println!(
        "trace by id: {:?} avg over {}",
        q.elapsed() / traces.len() as u32,
        traces.len()
    );
    let filters = [
        ("unfiltered", SpanFilter::default()),
        (
            "tool",
            SpanFilter {
                tool: Some("fetch_url".into()),
                ..SpanFilter::default()
            },
        ),
        (
            "user+error",
            SpanFilter {
                user_id: Some("user-7@example.com".into()),
                status: Some(StatusFilter::Error),
                ..SpanFilter::default()
            },
        ),
        (
            "slow>100ms",
            SpanFilter {
                min_duration_nanos: Some(100_000_000),
                ..SpanFilter::default()
            },
        ),
    ];
    for (name, f) in &filters {
        let q = Instant::now();
        let p1 = store.list(1, f, None, 100)?;
        let first = q.elapsed();
        let q = Instant::now();
        let p2 = store.list(1, f, p1.next_cursor.as_deref(), 100)?;
        println!(
            "list 100 {name}: first page {first:?} ({} spans), second page {:?} ({} spans)",
            p1.spans.len(),
            q.elapsed(),
            p2.spans.len()
        );
    }
    drop(store);
    // What the files would take if redb gave free pages back: separates live data from slack.
    let mut compacted = 0;
    for e in std::fs::read_dir(&dir)? {
        let path = e?.path();
        let mut db = redb::Database::open(&path)?;
        live_bytes(&db, n)?;
        let st = db.begin_write()?.stats()?;
        println!(
            "redb: stored {} metadata {} fragmented {} leaf pages {} branch pages {}",
            st.stored_bytes(),
            st.metadata_bytes(),
            st.fragmented_bytes(),
            st.leaf_pages(),
            st.branch_pages()
        );
        let did = db.compact()?;
        println!("redb compact did work: {did}");
        drop(db);
        compacted += std::fs::metadata(&path)?.len();
    }
    println!(
        "after redb file compaction: bytes/span {:.1}",
        compacted as f64 / n as f64
    );
    if std::env::var_os("KEEP").is_none() {
        std::fs::remove_dir_all(&dir)?;
    } else {
        println!("kept {}", dir.display());
    }
    Ok(())
}

/// Sums key and value bytes per table: the data itself, without redb page overhead.
fn live_bytes(db: &redb::Database, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
    let txn = db.begin_read()?;
    let bodies = txn.open_table(TableDefinition::<&[u8; 12], &[u8]>::new("bodies"))?;
    let headers = txn.open_table(TableDefinition::<&[u8; 16], &[u8]>::new("headers"))?;
    let buckets = txn.open_table(TableDefinition::<&[u8; 15], &[u8]>::new("trace_index"))?;
    let mut sums = [0usize; 3];
    for e in bodies.iter()? {
        sums[0] += e?.1.value().len() + 12;
    }
    for e in headers.iter()? {
        sums[1] += e?.1.value().len() + 16;
    }
    for e in buckets.iter()? {
        sums[2] += e?.1.value().len() + 15;
    }
    let per = |b: usize| b as f64 / n as f64;
    println!(
        "live bytes/span: bodies {:.1} ({} chunks), headers {:.2} ({} blocks), trace index {:.1} ({} values)",
        per(sums[0]), bodies.len()?, per(sums[1]), headers.len()?, per(sums[2]), buckets.len()?
    );
    Ok(())
}
