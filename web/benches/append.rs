//! The span writer's CPU per span on one thread, without HTTP: the ingest bench's spans (decoded
//! by the server's own protobuf path) appended as group commits of 4 requests, with the store's
//! periodic compaction (rollup deltas merged, small blocks merged) run every
//! `BENCH_COMPACT_EVERY` appends as the server's 10 s timer does at full speed. Thread CPU time
//! (`/proc/thread-self/schedstat`) rather than wall time, so a busy machine moves it less than the
//! end-to-end bench; use this to compare two builds of the writer, and `cargo bench --bench
//! ingest` for the figure the target is about.
//!
//! Run: `cargo bench -p mcp-obs-web --bench append` (env BENCH_SPANS, default 1,000,000;
//! BENCH_COMPACT_EVERY, default 850 appends, about 10 s of the end-to-end bench's rate;
//! BENCH_GROUP, requests per group commit, default 4).

#[path = "../../tests/common/gen.rs"]
#[allow(dead_code)]
mod gen;

#[global_allocator]
static GLOBAL: mcp_obs_storage::memory::Mimalloc = mcp_obs_storage::memory::Mimalloc;

use mcp_obs_storage::model::{Env, SpanRecord};
use mcp_obs_storage::spans::{SpanStore, SpanStoreOptions};
use mcp_obs_web::otlp::{decode_normalize_protobuf, NormalizeLimits, Stamp};
use prost::Message;
use rand::SeedableRng;

const BATCH: usize = 512;
/// Default requests per group commit (`BENCH_GROUP`): the end-to-end bench's 4 clients each have
/// one request in flight.
const GROUP: usize = 4;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds this thread has run on a CPU.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // The binary's allocator setting (`allocator_purge_delay_ms` default): freed pages coming back
    // between commits are part of the writer's cost.
    mcp_obs_storage::memory::set_allocator_purge_delay_ms(10);
    // As the binary's span writer thread does (BENCH_NO_POOL=1 leaves it off, for comparisons).
    if std::env::var_os("BENCH_NO_POOL").is_none() {
        mcp_obs_storage::bufs::enable_on_this_thread();
    }
    let total = env_usize("BENCH_SPANS", 1_000_000) / BATCH * BATCH;
    let compact_every = env_usize("BENCH_COMPACT_EVERY", 850).max(1);
    let dir = std::env::temp_dir().join(format!("mcpobs-bench-append-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stamp = Stamp {
        org_id: 1,
        server_id: 1,
        env: Env::Live,
        oldest_unix_nano: 0,
        newest_unix_nano: u64::MAX,
    };
    let limits = NormalizeLimits::default();
    let group = env_usize("BENCH_GROUP", GROUP).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    // Spans an hour old at 1 ms per request: one partition, as in the end-to-end bench.
    let now = gen::now_unix_nano();
    let groups: Vec<Vec<SpanRecord>> = (0..total / BATCH)
        .map(|i| {
            let body = gen::request(
                &mut rng,
                BATCH,
                now - 3_600_000_000_000 + i as u64 * 1_000_000,
            )
            .0
            .encode_to_vec();
            decode_normalize_protobuf(&body, &stamp, &limits)
                .unwrap()
                .normalized
                .spans
        })
        .collect::<Vec<_>>()
        .chunks(group)
        .map(|c| c.concat())
        .collect();

    let store = SpanStore::open(&dir, SpanStoreOptions::default()).unwrap();
    let (mut append_ns, mut compact_ns) = (0u64, 0u64);
    for (i, g) in groups.into_iter().enumerate() {
        let t = thread_cpu_ns();
        store.append(&g).unwrap();
        // The server frees the records after the commit, on the writer thread.
        drop(g);
        append_ns += thread_cpu_ns() - t;
        if (i + 1) % compact_every == 0 {
            let t = thread_cpu_ns();
            store.compact().unwrap();
            compact_ns += thread_cpu_ns() - t;
        }
    }
    let t = thread_cpu_ns();
    store.compact().unwrap();
    compact_ns += thread_cpu_ns() - t;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);

    let per = |ns: u64| ns as f64 / total as f64 / 1e3;
    println!("append: {total} spans in group commits of {group}x{BATCH}, compaction every {compact_every} commits");
    println!(
        "  append (spans, trace index, rollup deltas, commit): {:.3} us/span",
        per(append_ns)
    );
    println!(
        "  compaction (rollup deltas, small blocks):           {:.3} us/span",
        per(compact_ns)
    );
    println!(
        "  both: {:.3} us/span, {:.0} spans per CPU-second",
        per(append_ns + compact_ns),
        total as f64 / ((append_ns + compact_ns) as f64 / 1e9)
    );
}
