//! Shared by the storage benchmarks: realistic MCP `tools/call` spans (20 servers, 200 tools,
//! 2,000 users, 5% errors) and small measuring helpers.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use mcp_obs_storage::spans::{SpanStore, SpanStoreOptions};
use rand::SeedableRng;

use mcp_obs_storage::model::*;
use rand::Rng;

pub const SERVERS: u32 = 20;
pub const TOOLS: usize = 200;
pub const USERS: usize = 2000;

/// A benchmark setting from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The binary's default `[storage] allocator_purge_delay_ms` (src/config.rs): freed memory goes
/// back to the OS after 10 ms, so fresh buffers are faulted in again as in the server.
pub const BINARY_PURGE_DELAY_MS: usize = 10;

/// The binary's allocator settings (src/main.rs), for benches whose global allocator is mimalloc
/// as the binary's is: purge delay BENCH_PURGE_DELAY_MS (default [`BINARY_PURGE_DELAY_MS`]) and no
/// transparent huge pages (`[storage] allocator_huge_pages = false`).
pub fn binary_allocator_settings() {
    let purge_ms = env_usize("BENCH_PURGE_DELAY_MS", BINARY_PURGE_DELAY_MS);
    mcp_obs_storage::memory::set_allocator_purge_delay_ms(purge_ms.try_into().unwrap_or(u32::MAX));
    if let Err(e) = mcp_obs_storage::memory::set_transparent_huge_pages(false) {
        eprintln!("huge pages stay as they are: {e}");
    }
}

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: AttrValue::Str(v.into()),
    }
}

pub fn span(rng: &mut impl Rng, start: u64) -> SpanRecord {
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
        name: format!("tools/call tool_{tool}").into(),
        kind: SPAN_KIND_SERVER,
        status_code: if err { STATUS_ERROR } else { STATUS_UNSET },
        status_message: String::new(),
        flags: 256,
        trace_state: String::new(),
        sample_probability: 1.0,
        service_name: "bench-server".into(),
        mcp: McpFields {
            method: Some("tools/call".into()),
            tool: Some(format!("tool_{tool}").into()),
            request_id: Some(rng.gen_range(1..10_000).to_string().into()),
            session_id: Some(format!("{:032x}", rng.gen_range(0..5_000u32)).into()),
            user_id: Some(format!("user-{user}@example.com").into()),
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

pub fn dir_bytes(p: &Path) -> u64 {
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

pub fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

/// Builds a fresh store in `dir`: `total` spans from `span` (seed 9), `step` nanoseconds apart from
/// `day0`, appended in batches of `batch`, then compacted until nothing merges; prints the timings.
pub fn build_store(dir: &Path, total: usize, day0: u64, step: u64, batch: usize) {
    let _ = std::fs::remove_dir_all(dir);
    let store = SpanStore::open(dir, SpanStoreOptions::default()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let t = Instant::now();
    let mut spans = Vec::with_capacity(batch);
    for i in 0..total {
        spans.push(span(&mut rng, day0 + i as u64 * step));
        if spans.len() == batch {
            store.append(&spans).unwrap();
            spans.clear();
        }
    }
    if !spans.is_empty() {
        store.append(&spans).unwrap();
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
}
