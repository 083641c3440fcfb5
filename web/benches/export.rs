//! Span export throughput (issue 3: at least 1,000,000 spans/s as JSON Lines).
//!
//! Builds (or reuses) a store of BENCH_SPANS (default 10,000,000) realistic MCP spans over 10 days,
//! 20 servers, 200 tools, 2,000 users, then measures (CPU time counts every thread of the process):
//! - baseline: paging `SpanStore::list` (1,000 per page) + `span_to_json` + `serde_json::to_vec`,
//!   what an export built on the span list would do;
//! - `export_to` (scan + formatting into chunks) as JSON Lines and CSV, every span, no HTTP;
//! - the same over HTTP: `server::serve` on 127.0.0.1, first to a client on a plain TCP socket in
//!   this process (de-chunking the response and counting lines in its read buffer), then to `curl`
//!   writing to /dev/null in its own process (its body length checked against the in-process
//!   export's); client and server share the machine's 2 cores.
//!
//! It runs with the binary's allocator settings: mimalloc, purge delay BENCH_PURGE_DELAY_MS
//! (default 10), no transparent huge pages.
//!
//! Peak RSS is the process's high-water mark during each step (reset before it).
//!
//! Run: `cargo bench -p mcp-obs-web --bench export`. Environment:
//! - BENCH_SPANS; BENCH_DIR keeps the store between runs (an existing store there is reused
//!   instead of rebuilt);
//! - BENCH_BASELINE_SPANS caps the spans the baseline reads, default 1,000,000;
//!   BENCH_SKIP_BASELINE=1 skips it;
//! - BENCH_ONLY=jsonl or csv runs only that format, in process; BENCH_ONLY=http only the HTTP runs
//!   (curl's body length then unchecked); BENCH_HTTP_FORMATS (default `jsonl,csv`) the formats
//!   over HTTP;
//! - BENCH_RENDER_THREADS sets the in-process export's render threads, default
//!   `EXPORT_RENDER_THREADS_MAX`, 0 for the scan thread alone.

#[path = "../../storage/benches/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use mcp_obs_storage::model::DAY_NANOS;
use mcp_obs_storage::spans::{SpanFilter, SpanStore, SpanStoreOptions};
use mcp_obs_storage::MetaStore;
use mcp_obs_web::export::{export_with, Format, EXPORT_CHUNK_BYTES, EXPORT_RENDER_THREADS_MAX};
use mcp_obs_web::span_json::span_to_json;
use mcp_obs_web::state::AppState;
use mcp_obs_web::WebConfig;
use rand::SeedableRng;

/// The binary's allocator (src/main.rs).
#[global_allocator]
static GLOBAL: mcp_obs_storage::memory::Mimalloc = mcp_obs_storage::memory::Mimalloc;

const DAYS: u64 = 10;
const BATCH: usize = 20_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total = common::env_usize("BENCH_SPANS", 10_000_000);
    common::binary_allocator_settings();
    let dir: PathBuf = std::env::var("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("mcpobs-bench-export"));
    let spans_dir = dir.join("spans");
    if !dir.join("built").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let store = SpanStore::open(&spans_dir, SpanStoreOptions::default()).unwrap();
        let day0 = 20_000 * DAY_NANOS;
        let step = DAYS * DAY_NANOS / total as u64;
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let t = Instant::now();
        let mut batch = Vec::with_capacity(BATCH);
        for i in 0..total {
            batch.push(common::span(&mut rng, day0 + i as u64 * step));
            if batch.len() == BATCH {
                store.append(&batch).unwrap();
                batch.clear();
            }
        }
        if !batch.is_empty() {
            store.append(&batch).unwrap();
        }
        while store.compact().unwrap().blocks_merged > 0 {}
        println!("build: {total} spans in {:.1} s", t.elapsed().as_secs_f64());
        drop(store);
        std::fs::write(dir.join("built"), total.to_string()).unwrap();
    }
    let store = Arc::new(SpanStore::open(&spans_dir, SpanStoreOptions::default()).unwrap());
    if std::env::var("BENCH_SKIP_BASELINE").is_err() {
        baseline(&store, total);
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let threads = common::env_usize("BENCH_RENDER_THREADS", EXPORT_RENDER_THREADS_MAX);
    // Body bytes of each format in process, which the HTTP clients must receive too.
    let mut expected = Vec::new();
    for format in [Format::JsonLines, Format::Csv] {
        if !only.is_empty() && only != format.extension() {
            continue;
        }
        reset_peak_rss();
        let rss0 = rss_kb();
        let t = Instant::now();
        let cpu0 = process_cpu_secs();
        let main0 = thread_cpu_secs();
        let mut bytes = 0usize;
        let stats = export_with(
            &store,
            1,
            &SpanFilter::default(),
            format,
            EXPORT_CHUNK_BYTES,
            threads,
            |c| {
                bytes += c.len();
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let cpu = process_cpu_secs() - cpu0;
        let main_cpu = thread_cpu_secs() - main0;
        assert_eq!(stats.rows as usize, total);
        expected.push((format.extension(), bytes));
        println!(
            "export_to {format:?}, {threads} render threads: {} spans in {secs:.2} s = {:.0} spans/s, {:.0} spans per CPU-second (CPU {cpu:.2} s, {main_cpu:.2} s of it on the scan thread; {:.0} MB/s, {:.0} bytes/span, {} block reads), RSS {} MB before, peak {} MB, load {}",
            stats.rows,
            stats.rows as f64 / secs,
            stats.rows as f64 / cpu,
            bytes as f64 / secs / 1e6,
            bytes as f64 / stats.rows as f64,
            stats.blocks_read,
            rss0 / 1024,
            peak_rss_kb() / 1024,
            load_avg()
        );
    }
    if only.is_empty() || only == "http" {
        over_http(&dir, store, total, &expected);
    }
}

/// CPU time (user + system) of the calling thread, from /proc (USER_HZ = 100).
fn thread_cpu_secs() -> f64 {
    cpu_secs("/proc/thread-self/stat")
}

/// CPU time (user + system) of every thread of the process, from /proc (USER_HZ = 100): the
/// export may render on a second thread, and both count.
fn process_cpu_secs() -> f64 {
    cpu_secs("/proc/self/stat")
}

fn cpu_secs(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// The 1-minute load average, from /proc/loadavg.
fn load_avg() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().next().unwrap_or("?").to_string()
}

/// Resets the process's peak RSS (VmHWM) to its current RSS.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}

fn rss_kb() -> u64 {
    status_kb("VmRSS:")
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Serves the store over HTTP in this process and exports each format twice: to a plain TCP client
/// in this process, then to `curl`; both must receive as many bytes as the in-process export
/// produced, when it ran.
fn over_http(dir: &Path, store: Arc<SpanStore>, total: usize, expected: &[(&str, usize)]) {
    let meta = MetaStore::open(dir.join("meta.redb")).unwrap();
    let _ = meta.bootstrap(Some("bench-password-1234")).unwrap();
    let org = meta.org_by_slug("default").unwrap().unwrap();
    assert_eq!(org.id, 1, "the bench store holds org 1's spans");
    // The spans start at day 20,000 (October 2024): the longest retention keeps them visible (the
    // export clamps to it, as the span list does).
    let longest = mcp_obs_storage::meta::OrgUpdate {
        // The maximum (`RETENTION_DAYS_MAX`, not public).
        retention_days: Some(3650),
        ..Default::default()
    };
    meta.update_org(org.id, &longest).unwrap();
    let admin = meta.user_by_username("admin").unwrap().unwrap();
    let session = meta.create_session(admin.id, 3600).unwrap();
    let (ingest, _writer) = mcp_obs_web::ingest::queue::IngestQueue::start(
        Arc::clone(&store),
        16,
        10_000,
        10_000,
        None,
    )
    .unwrap();
    let state = Arc::new(AppState::new(
        Arc::new(meta),
        store,
        ingest,
        WebConfig::default(),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(mcp_obs_web::server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let cookie = format!("mcpobs_session={}", session.token);
    let formats = std::env::var("BENCH_HTTP_FORMATS").unwrap_or_else(|_| "jsonl,csv".into());
    for format in formats.split(',') {
        let want = expected.iter().find(|(f, _)| *f == format).map(|e| e.1);
        let path = format!("/api/v1/orgs/default/spans/export?format={format}");
        for client in ["socket", "curl"] {
            reset_peak_rss();
            let rss0 = rss_kb();
            let t = Instant::now();
            let cpu0 = process_cpu_secs();
            let (bytes, rows) = if client == "socket" {
                let mut conn = std::net::TcpStream::connect(addr).unwrap();
                write!(
                    conn,
                    "GET {path} HTTP/1.1\r\nHost: bench\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let (bytes, lines) = read_chunked(conn);
                let rows = if format == "csv" { lines - 1 } else { lines };
                assert_eq!(rows, total, "{format}: rows received");
                (bytes, rows)
            } else {
                // curl counts no lines: the body's length must be the in-process export's.
                (curl_bytes(&format!("http://{addr}{path}"), &cookie), total)
            };
            let secs = t.elapsed().as_secs_f64();
            let cpu = process_cpu_secs() - cpu0;
            if let Some(want) = want {
                assert_eq!(bytes, want, "{format} through {client}: body bytes");
            }
            println!(
                "HTTP {format} ({client} client): {rows} spans in {secs:.2} s = {:.0} spans/s ({:.0} MB/s), {:.0} spans per CPU-second of this process (the server{}), RSS (this process) {} MB before, peak {} MB, load {}",
                rows as f64 / secs,
                bytes as f64 / secs / 1e6,
                rows as f64 / cpu,
                if client == "socket" { " and the socket client" } else { " alone" },
                rss0 / 1024,
                peak_rss_kb() / 1024,
                load_avg()
            );
        }
    }
    let _ = stop.send(());
    let _ = rt.block_on(server);
}

/// Reads an HTTP/1.1 response with a chunked body: (body bytes, newlines in the body). Lines are
/// counted in the reader's own buffer (`fill_buf`/`consume`), so the body is copied once, from the
/// socket, as a client writing it to a file or a pipe would.
fn read_chunked(conn: std::net::TcpStream) -> (usize, usize) {
    let mut r = BufReader::with_capacity(1 << 20, conn);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "status: {line}");
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let (mut bytes, mut lines) = (0, 0);
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let mut left = usize::from_str_radix(line.trim_end(), 16).unwrap();
        if left == 0 {
            return (bytes, lines);
        }
        bytes += left;
        while left > 0 {
            let buf = r.fill_buf().unwrap();
            assert!(!buf.is_empty(), "the response ended inside a chunk");
            let n = left.min(buf.len());
            lines += memchr::memchr_iter(b'\n', &buf[..n]).count();
            r.consume(n);
            left -= n;
        }
        line.clear();
        r.read_line(&mut line).unwrap();
    }
}

/// Fetches `url` with `curl` into /dev/null (another process, as a user's export would run):
/// the body bytes curl received.
fn curl_bytes(url: &str, cookie: &str) -> usize {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}"])
        .args(["--cookie", cookie, url])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn baseline(store: &SpanStore, total: usize) {
    // Baseline: the span list's path, page after page.
    let cap = common::env_usize("BENCH_BASELINE_SPANS", 1_000_000).min(total);
    let f = SpanFilter::default();
    let t = Instant::now();
    let (mut n, mut bytes) = (0usize, 0usize);
    let mut cursor: Option<String> = None;
    while n < cap {
        let page = store.list(1, &f, cursor.as_deref(), 1000).unwrap();
        for s in &page.spans {
            let mut line = serde_json::to_vec(&span_to_json(s)).unwrap();
            line.push(b'\n');
            bytes += line.len();
        }
        n += page.spans.len();
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "baseline list pages + span_to_json: {n} spans in {secs:.2} s = {:.0} spans/s ({:.0} MB/s, {:.0} bytes/span)",
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        bytes as f64 / n as f64
    );
}
