//! Span store at scale: builds a store of BENCH_SPANS (default 10,000,000) realistic MCP spans over
//! 10 days, 20 servers, 200 tools, 2,000 users, then measures start-up (open), trace lookup by id
//! and filtered pages of 100, and bytes on disk per span.
//!
//! Run: `cargo bench -p mcp-obs-storage --bench query` (env BENCH_SPANS, BENCH_DIR to keep the
//! store between runs: an existing store there is reused instead of rebuilt; BENCH_ONLY=user runs
//! only the pages whose name contains `user`, for profiling one query; BENCH_REPEAT=n walks each
//! page sequence n times, the percentiles then over all n x 20 pages, for A/B runs on a busy
//! machine).

use std::path::PathBuf;
use std::time::Instant;

use mcp_obs_storage::model::*;
use mcp_obs_storage::spans::{SpanFilter, SpanStore, SpanStoreOptions, StatusFilter};
use rand::SeedableRng;

mod common;

use common::*;

const DAYS: u64 = 10;
const BATCH: usize = 20_000;

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
    let mut probe_ids = Vec::new();
    if !dir.join("built").exists() {
        build_store(&dir, total, day0, step, BATCH);
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
    // BENCH_ONLY=user runs only the pages whose name contains it (for profiling one query).
    let only = std::env::var("BENCH_ONLY").ok();
    let repeat: usize = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .clamp(1, 1000);
    for (name, f) in filters {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..repeat {
            let mut cursor: Option<String> = None;
            for _ in 0..20 {
                let c = thread_cpu();
                let t = Instant::now();
                let page = store.list(1, &f, cursor.as_deref(), 100).unwrap();
                times.push(t.elapsed());
                if let (Some(a), Some(b)) = (c, thread_cpu()) {
                    cpu.push(b.saturating_sub(a));
                }
                cursor = page.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
        }
        println!(
            "page of 100, {name}: p50 {:.2} ms, max {:.2} ms ({} pages)",
            percentile(times.clone(), 0.5).as_secs_f64() * 1e3,
            times.iter().max().unwrap().as_secs_f64() * 1e3,
            times.len()
        );
        if !cpu.is_empty() {
            println!(
                "  (thread CPU time per page: p50 {:.2} ms, max {:.2} ms)",
                percentile(cpu.clone(), 0.5).as_secs_f64() * 1e3,
                cpu.iter().max().unwrap().as_secs_f64() * 1e3,
            );
        }
    }
}

/// CPU time this thread has run (`CLOCK_THREAD_CPUTIME_ID`): on a shared machine it moves far
/// less with the load than the wall-clock time does.
fn thread_cpu() -> Option<std::time::Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}
