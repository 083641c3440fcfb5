//! Dashboard render times against a large store: the analytics page for 30 days (one server and
//! the whole organization), the overview, and the trace view of a 200-span trace, each through
//! every route of the appliance (`server::routes`, session cookie, HTML out) in process.
//!
//! The span store is the analytics benchmark's (BENCH_SPANS, default 10,000,000, over the 90 days
//! before today, 20 servers, 200 tools, 2,000 users, 5% errors); BENCH_DIR (default
//! `$TMPDIR/mcpobs-bench-pages`) keeps it between runs, and a directory built by
//! `cargo bench -p mcp-obs-storage --bench analytics` can be copied there. One 200-span trace is
//! appended to today. BENCH_RUNS (default 20) requests per page. It runs with the binary's
//! allocator settings: mimalloc, purge delay BENCH_PURGE_DELAY_MS (default 10), no transparent
//! huge pages. BENCH_ONLY (a part of a page's name, e.g. `one server`) measures only the pages
//! whose names contain it. BENCH_PAUSE_MS (default 0) waits that long before each request (not
//! timed), as a person reloading a page would, so the allocator has handed freed memory back.
//!
//! Run: `cargo bench -p mcp-obs-web --bench pages`.

#[path = "../../storage/benches/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_obs_storage::meta::{HashCost, MetaOptions, NewServer, META_FILE_NAME};
use mcp_obs_storage::model::DAY_NANOS;
use mcp_obs_storage::spans::{SpanStore, SpanStoreOptions};
use mcp_obs_storage::MetaStore;
use mcp_obs_web::state::AppState;
use mcp_obs_web::WebConfig;
use rand::SeedableRng;

/// The binary's allocator (src/main.rs), so that the pages' times include what it costs.
#[global_allocator]
static GLOBAL: mcp_obs_storage::memory::Mimalloc = mcp_obs_storage::memory::Mimalloc;

/// The analytics benchmark's layout: 90 days, appended in batches of 20,000.
const DAYS: u64 = 90;
const BATCH: usize = 20_000;
const TRACE_SPANS: usize = 200;
const PASSWORD: &str = "bench-password-1";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total = common::env_usize("BENCH_SPANS", 10_000_000);
    let runs = common::env_usize("BENCH_RUNS", 20);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let pause = Duration::from_millis(common::env_usize("BENCH_PAUSE_MS", 0) as u64);
    common::binary_allocator_settings();
    let dir: PathBuf = std::env::var("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("mcpobs-bench-pages"));
    let now = mcp_obs_storage::spans::now_unix_nano();
    if !dir.join("built").exists() {
        let day0 = now - now % DAY_NANOS - DAYS * DAY_NANOS;
        common::build_store(&dir, total, day0, DAYS * DAY_NANOS / total as u64, BATCH);
        std::fs::write(dir.join("built"), format!("{total} {day0}")).unwrap();
    }
    let spans = Arc::new(SpanStore::open(&dir, SpanStoreOptions::default()).unwrap());
    let trace_id = append_trace(&spans, now);

    let meta_dir =
        std::env::temp_dir().join(format!("mcpobs-bench-pages-meta-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&meta_dir);
    std::fs::create_dir_all(&meta_dir).unwrap();
    let meta = MetaStore::open_with(
        meta_dir.join(META_FILE_NAME),
        MetaOptions {
            hash_cost: HashCost::Low,
        },
    )
    .unwrap();
    meta.bootstrap(Some(PASSWORD)).unwrap();
    for s in 1..=common::SERVERS {
        let new = NewServer {
            name: format!("server-{s}"),
            telemetry_enabled: false,
            ..NewServer::default()
        };
        meta.create_server(1, &new).unwrap();
    }
    let (ingest, _writer) = mcp_obs_web::ingest::queue::IngestQueue::start(
        Arc::clone(&spans),
        16,
        10_000,
        10_000,
        None,
    )
    .unwrap();
    let state = Arc::new(AppState::new(
        Arc::new(meta),
        spans,
        ingest,
        WebConfig::default(),
    ));
    let routes = mcp_obs_web::server::routes(Arc::clone(&state));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    rt.block_on(async {
        let login = warp::test::request()
            .method("POST")
            .path("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            // The sign-in form's pre-session token: any value, the same in cookie and field.
            .header("cookie", "mcpobs_login_csrf=bench")
            .body(format!(
                "username=admin&password={PASSWORD}&next=%2F&login_csrf=bench"
            ))
            .reply(&routes)
            .await;
        let cookie = login.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        println!("{total} spans, {runs} requests per page (server render time, in process)");
        println!("| page | target | first | p50 | max | HTML bytes |");
        println!("|---|---|---|---|---|---|");
        for (name, path, target) in [
            (
                "analytics, 30 days, one server",
                "/orgs/default/servers/1?range=30d".to_string(),
                "≤ 50 ms",
            ),
            (
                "analytics, 30 days, all servers",
                "/orgs/default/analytics?range=30d".into(),
                "—",
            ),
            (
                "analytics, 24 hours, one server",
                "/orgs/default/servers/1?range=24h".into(),
                "—",
            ),
            ("overview, 30 days", "/orgs/default?range=30d".into(), "—"),
            (
                "trace view, 200 spans",
                format!("/orgs/default/traces/{trace_id}"),
                "≤ 20 ms",
            ),
            (
                "span list, first page, one tool",
                "/orgs/default/spans?tool=tool_7".into(),
                "—",
            ),
        ] {
            if !name.contains(only.as_str()) {
                continue;
            }
            let mut times = Vec::with_capacity(runs);
            let mut bytes = 0;
            for _ in 0..runs {
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                let t = Instant::now();
                let r = warp::test::request()
                    .path(&path)
                    .header("cookie", &cookie)
                    .reply(&routes)
                    .await;
                times.push(t.elapsed());
                assert_eq!(
                    r.status(),
                    200,
                    "{path}: {}",
                    String::from_utf8_lossy(r.body())
                );
                bytes = r.body().len();
            }
            let first = times[0];
            let max = times.iter().copied().max().unwrap_or_default();
            println!(
                "| {name} | {target} | {} | {} | {} | {bytes} |",
                ms(first),
                ms(common::percentile(times, 0.5)),
                ms(max)
            );
        }
    });
    println!(
        "assets: {} bytes of CSS + JS (budget {})",
        mcp_obs_web::pages::asset_bytes(),
        mcp_obs_web::pages::ASSET_BYTES_MAX
    );
    let _ = std::fs::remove_dir_all(&meta_dir);
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A trace of one server span and 199 children, an hour ago, unless one is already there.
fn append_trace(store: &SpanStore, now: u64) -> String {
    let trace_id = [0x7au8; 16];
    if !store.trace(1, &trace_id).unwrap().is_empty() {
        return hex::encode(trace_id);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(200);
    let start = now - 3_600_000_000_000;
    let spans: Vec<_> = (0..TRACE_SPANS)
        .map(|i| {
            let mut s = common::span(&mut rng, start + i as u64 * 1_000_000);
            s.server_id = 1;
            s.trace_id = trace_id;
            s.span_id = (i as u64 + 1).to_be_bytes();
            if i > 0 {
                s.parent_span_id = 1u64.to_be_bytes();
                s.mcp.method = None;
                s.name = format!("step {i}").into();
            }
            s
        })
        .collect();
    store.append(&spans).unwrap();
    hex::encode(trace_id)
}
