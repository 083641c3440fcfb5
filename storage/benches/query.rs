//! Span store at scale: builds a store of BENCH_SPANS (default 10,000,000) realistic MCP spans over
//! 10 days, 20 servers, 200 tools, 2,000 users, then measures start-up (open), trace lookup by id
//! and filtered pages of 100, and bytes on disk per span.
//!
//! Run: `cargo bench -p mcp-obs-storage --bench query` (env BENCH_SPANS, BENCH_DIR to keep the
//! store between runs: an existing store there is reused instead of rebuilt).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mcp_obs_storage::model::*;
use mcp_obs_storage::spans::{SpanFilter, SpanStore, SpanStoreOptions, StatusFilter};
use rand::{Rng, SeedableRng};

const DAYS: u64 = 10;
const SERVERS: u32 = 20;
const TOOLS: usize = 200;
const USERS: usize = 2000;
const BATCH: usize = 20_000;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: AttrValue::Str(v.into()),
    }
}

fn span(rng: &mut impl Rng, start: u64) -> SpanRecord {
    let tool = rng.gen_range(0..TOOLS);
    let user = rng.gen_range(0..USERS);
    let err = rng.gen_bool(0.05);
    SpanRecord {
        org_id: 1,
        server_id: 1 + rng.gen_range(0..SERVERS),
        env: Env::Live,
        trace_id: rng.gen(),
        span_id: rng.gen(),
        parent_span_id: [0; 8],
        start_unix_nano: start,
        end_unix_nano: start + rng.gen_range(200_000..80_000_000),
        name: format!("tools/call tool_{tool}"),
        kind: SPAN_KIND_SERVER,
        status_code: if err { STATUS_ERROR } else { STATUS_UNSET },
        status_message: String::new(),
        flags: 256,
        trace_state: String::new(),
        sample_probability: 1.0,
        service_name: "bench-server".into(),
        mcp: McpFields {
            method: Some("tools/call".into()),
            tool: Some(format!("tool_{tool}")),
            request_id: Some(rng.gen_range(1..10_000).to_string()),
            session_id: Some(format!("{:032x}", rng.gen_range(0..5_000u32))),
            user_id: Some(format!("user-{user}@example.com")),
            client_name: Some("claude-desktop".into()),
            client_version: Some("1.4.2".into()),
            error_type: err.then(|| "tool_error".into()),
            transport: Some("tcp".into()),
            protocol_version: Some("2025-11-25".into()),
            ..Default::default()
        },
        attributes: vec![kv("gen_ai.operation.name", "execute_tool")],
        events: vec![],
        links: vec![],
        origin: SpanOrigin {
            resource: vec![
                kv("service.name", "bench-server"),
                kv("telemetry.sdk.language", "python"),
            ],
            scope_name: "mcp-python-sdk".into(),
            scope_version: String::new(),
        }
        .into(),
        dropped_attributes_count: 0,
        dropped_events_count: 0,
        dropped_links_count: 0,
    }
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() {
                        dir_bytes(&e.path())
                    } else {
                        m.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
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
        .unwrap_or_else(|_| std::env::temp_dir().join("mcpobs-bench-query"));
    let day0 = 20_000 * DAY_NANOS;
    let step = DAYS * DAY_NANOS / total as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut probe_ids = Vec::new();
    if !dir.join("built").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let store = SpanStore::open(&dir, SpanStoreOptions::default()).unwrap();
        let t = Instant::now();
        let mut batch = Vec::with_capacity(BATCH);
        for i in 0..total {
            batch.push(span(&mut rng, day0 + i as u64 * step));
            if batch.len() == BATCH {
                store.append(&batch).unwrap();
                batch.clear();
            }
        }
        if !batch.is_empty() {
            store.append(&batch).unwrap();
        }
        let appended = t.elapsed();
        let t = Instant::now();
        while store.compact().unwrap().blocks_merged > 0 {}
        println!(
            "build: appended {total} spans in {:.1} s ({:.0} spans/s), compacted in {:.1} s",
            appended.as_secs_f64(),
            total as f64 / appended.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        drop(store);
        std::fs::write(dir.join("built"), total.to_string()).unwrap();
    }
    // Probe ids: regenerate the same random stream.
    let mut rng2 = rand::rngs::StdRng::seed_from_u64(9);
    for i in 0..total {
        let s = span(&mut rng2, day0 + i as u64 * step);
        if i % (total / 1000).max(1) == 0 {
            probe_ids.push(s.trace_id);
        }
    }
    let disk = dir_bytes(&dir);
    println!(
        "disk: {:.1} bytes/span ({} bytes, every file)",
        disk as f64 / total as f64,
        disk
    );

    let t = Instant::now();
    let store = SpanStore::open(&dir, SpanStoreOptions::default()).unwrap();
    let open = t.elapsed();
    let t = Instant::now();
    let first = store.trace(1, &probe_ids[0]).unwrap();
    assert_eq!(first.len(), 1);
    println!(
        "start-up: open {:.2} ms, first trace lookup (cold) {:.2} ms",
        open.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );

    let mut times = Vec::new();
    for id in &probe_ids {
        let t = Instant::now();
        let r = store.trace(1, id).unwrap();
        times.push(t.elapsed());
        assert_eq!(r.len(), 1);
    }
    println!(
        "trace by id ({} lookups): p50 {:.3} ms, p99 {:.3} ms",
        times.len(),
        percentile(times.clone(), 0.5).as_secs_f64() * 1e3,
        percentile(times, 0.99).as_secs_f64() * 1e3
    );

    let filters: Vec<(&str, SpanFilter)> = vec![
        ("no filter", SpanFilter::default()),
        (
            "server",
            SpanFilter {
                server_ids: Some(vec![7]),
                ..Default::default()
            },
        ),
        (
            "tool",
            SpanFilter {
                tool: Some("tool_17".into()),
                ..Default::default()
            },
        ),
        (
            "user",
            SpanFilter {
                user_id: Some("user-42@example.com".into()),
                ..Default::default()
            },
        ),
        (
            "server+status=error",
            SpanFilter {
                server_ids: Some(vec![3]),
                status: Some(StatusFilter::Error),
                ..Default::default()
            },
        ),
        (
            "min_duration 79ms",
            SpanFilter {
                min_duration_nanos: Some(79_000_000),
                ..Default::default()
            },
        ),
    ];
    for (name, f) in filters {
        let mut times = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let t = Instant::now();
            let page = store.list(1, &f, cursor.as_deref(), 100).unwrap();
            times.push(t.elapsed());
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        println!(
            "page of 100, {name}: p50 {:.2} ms, max {:.2} ms ({} pages)",
            percentile(times.clone(), 0.5).as_secs_f64() * 1e3,
            times.iter().max().unwrap().as_secs_f64() * 1e3,
            times.len()
        );
    }
}
