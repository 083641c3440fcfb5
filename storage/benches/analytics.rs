//! Analytics at scale (issue 3): builds a store of BENCH_SPANS (default 10,000,000) MCP spans over
//! 90 days, 20 servers, 200 tools, 2,000 users (rollups written by `append`, then rolled and sealed
//! by compaction), and measures the analytics questions the dashboard asks, warm and cold.
//!
//! Run: `cargo bench -p mcp-obs-storage --bench analytics` (env BENCH_SPANS; BENCH_DIR keeps the
//! store between runs, default $TMPDIR/mcpobs-bench-analytics; an existing store is reused).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mcp_obs_storage::analytics::{self as an, Query, Window};
use mcp_obs_storage::model::*;
use mcp_obs_storage::rollup::Side;
use mcp_obs_storage::spans::{SpanStore, SpanStoreOptions};

mod common;

use common::*;

const DAYS: u64 = 90;
const BATCH: usize = 20_000;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `f` once cold (first call after open), then BENCH_RUNS (default 30) times; prints cold,
/// p50 and max. BENCH_ONLY=text runs only the questions whose name contains it.
fn measure(name: &str, mut f: impl FnMut()) {
    if std::env::var("BENCH_ONLY").is_ok_and(|o| !name.contains(&o)) {
        return;
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let t = Instant::now();
    f();
    let cold = t.elapsed();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    let max = *times.iter().max().unwrap();
    println!(
        "{name}: first {:.1} ms, p50 {:.1} ms, max {:.1} ms",
        ms(cold),
        ms(percentile(times, 0.5)),
        ms(max)
    );
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
        .unwrap_or_else(|_| std::env::temp_dir().join("mcpobs-bench-analytics"));
    // The 90 days end yesterday, so every day is finished (rolled and sealed), as in production.
    let now = mcp_obs_storage::spans::now_unix_nano();
    let today = now - now % DAY_NANOS;
    let day0 = today - DAYS * DAY_NANOS;
    let step = DAYS * DAY_NANOS / total as u64;
    if !dir.join("built").exists() {
        build_store(&dir, total, day0, step, BATCH);
        std::fs::write(dir.join("built"), format!("{total} {day0}")).unwrap();
    }
    let built = std::fs::read_to_string(dir.join("built")).unwrap();
    let day0: u64 = built
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("BENCH_DIR holds an older build; remove it");
    let end = day0 + DAYS * DAY_NANOS;
    let disk = dir_bytes(&dir);
    println!(
        "disk: {:.1} bytes/span ({} bytes, every file, spans + rollups)",
        disk as f64 / total as f64,
        disk
    );

    let store = SpanStore::open(&dir, SpanStoreOptions::default()).unwrap();
    let q = |servers: Vec<u32>| Query {
        org: 1,
        servers,
        env: Env::Live,
        side: Side::Server,
        from_unix_nano: 0,
        to_unix_nano: 0,
        method: None,
        tool: None,
        user: None,
        client: None,
        floor_unix_nano: 0,
    };
    let one = q(vec![7]);
    let all = q((1..=SERVERS).collect());
    let d30 = Window::resolve(end - 30 * DAY_NANOS, end, now).unwrap();
    let d90 = Window::resolve(end - 90 * DAY_NANOS, end, now).unwrap();
    let h24 = Window::resolve(end - DAY_NANOS, end, now).unwrap();

    let s = an::summary(&store, &one, &d30).unwrap();
    println!(
        "check: one server, 30 days: {} calls, {:?} users, {:?} sessions, p95 {:.1} ms",
        s.current.calls,
        s.current.users,
        s.current.sessions,
        s.current.p95_nanos.unwrap_or(0) as f64 / 1e6
    );
    measure("summary + series + top tools, 30 days, one server", || {
        an::summary(&store, &one, &d30).unwrap();
        an::series(&store, &one, &d30).unwrap();
        an::top_tools(&store, &one, &d30, 20).unwrap();
    });
    measure("summary + series + top tools, 24 hours, one server", || {
        an::summary(&store, &one, &h24).unwrap();
        an::series(&store, &one, &h24).unwrap();
        an::top_tools(&store, &one, &h24, 20).unwrap();
    });
    measure("organization overview, 90 days, 20 servers", || {
        an::overview(&store, &all, &d90).unwrap();
    });
    measure("per-user tool performance, 30 days, one server", || {
        an::user_tools(&store, &one, &d30, 100).unwrap();
    });
    measure("most active users, 30 days, one server", || {
        an::top_users(&store, &one, &d30, 20).unwrap();
    });
    measure("summary filtered by one user, 30 days, all servers", || {
        let mut f = q((1..=SERVERS).collect());
        f.user = Some("user-17@example.com".into());
        an::summary(&store, &f, &d30).unwrap();
    });
    // The analytics page's users-cube tables (users, user x tool, clients, protocols) together.
    measure(
        "users + user x tool + clients in one pass, 30 days, one server",
        || {
            an::user_tables(&store, &one, &d30, 10).unwrap();
        },
    );
    measure(
        "users + user x tool + clients in one pass, 30 days, 20 servers",
        || {
            an::user_tables(&store, &all, &d30, 10).unwrap();
        },
    );
    measure("errors by type + clients, 30 days, one server", || {
        an::errors(&store, &one, &d30, 20).unwrap();
        an::clients(&store, &one, &d30, 20).unwrap();
    });
}
