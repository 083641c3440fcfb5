//! End-to-end ingest benchmark against the real release binary: several concurrent clients POST
//! realistic 512-span protobuf batches; we report spans per server CPU-second (utime+stime of the
//! server process from /proc), wall throughput, peak RSS, and bytes on disk per span.
//!
//! Run: `cargo bench --bench ingest` (env: BENCH_SPANS, default 2,000,000; BENCH_CLIENTS, default 4;
//! BENCH_BIN, another `mcp-obs` binary to measure instead of this build's, for A/B comparisons;
//! BENCH_KEEP_DATA=1 keeps the data directory and prints its path, to see where the bytes are).

#[path = "../tests/common/gen.rs"]
#[allow(dead_code)]
mod gen;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use rand::SeedableRng;
use serde_json::{json, Value};

const BATCH: usize = 512;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process in seconds, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat_cpu_seconds(&stat_fields(&stat))
}

/// The fields of a `/proc/.../stat` line after the command name (which may hold spaces), so
/// field `n` of proc(5) is at index `n - 3`.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect()
}

/// utime + stime (fields 14 and 15) in seconds.
fn stat_cpu_seconds(f: &[&str]) -> f64 {
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// stime alone (field 15) in seconds: the kernel's share of [`stat_cpu_seconds`].
fn stat_system_seconds(f: &[&str]) -> f64 {
    f[12].parse::<f64>().unwrap() / 100.0
}

/// [`stat_system_seconds`] of a process.
fn system_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat_system_seconds(&stat_fields(&stat))
}

/// Minor page faults of a process so far (field 10 of /proc/<pid>/stat): memory the allocator
/// handed back to the kernel and touched again shows up here, not in instruction counts.
fn minor_faults(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat_fields(&stat)[7].parse().unwrap()
}

/// Bytes the process has passed to write-like system calls (`wchar` in /proc/<pid>/io): mostly
/// what redb and the search index write, rewrites included; logs and socket writes count too,
/// so it is approximate.
fn written_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds and the kernel's share of them per thread name (tokio workers and the like
/// summed), from /proc/<pid>/task.
fn thread_cpu(pid: u32) -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in rd.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let name = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()]
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_string();
        let f = stat_fields(&stat);
        let e = out.entry(name).or_insert((0.0, 0.0));
        e.0 += stat_cpu_seconds(&f);
        e.1 += stat_system_seconds(&f);
    }
    out
}

/// CPU time of the calling thread in seconds (`/proc/thread-self/schedstat`, nanoseconds on CPU).
fn thread_cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse::<f64>().unwrap() / 1e9
}

/// A rough gauge of how fast the machine runs right now: CPU time per span of a fixed piece of
/// work (prost decoding the first 64 payloads, 3 times) on this thread. The VM's speed moves the
/// same work by up to 1.7x between windows; the gauge is short and single-threaded, so it follows
/// the window only roughly (docs/benchmarks.md).
fn machine_gauge_us(payloads: &[Vec<u8>]) -> f64 {
    let some = &payloads[..payloads.len().min(64)];
    let t0 = thread_cpu_seconds();
    let mut spans = 0usize;
    for _ in 0..3 {
        for p in some {
            let req = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(p.as_slice()).unwrap();
            spans += req
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum::<usize>();
        }
    }
    (thread_cpu_seconds() - t0) * 1e6 / spans.max(1) as f64
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (apparent length, allocated bytes) of every file below `p`. redb grows files by doubling and
/// leaves the new part as a hole, so the apparent length overstates what the disk holds.
fn dir_bytes(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            let (len, alloc) = if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                (m.len(), m.blocks() * 512)
            };
            total.0 += len;
            total.1 += alloc;
        }
    }
    total
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench --no-run`-style probes
    }
    let total_spans = env_usize("BENCH_SPANS", 2_000_000);
    let clients = env_usize("BENCH_CLIENTS", 4);
    let dir = std::env::temp_dir().join(format!("mcpobs-bench-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mcp-obs").into());
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log",
            "warn",
            "--data",
        ])
        .arg(dir.join("data"))
        .env("MCPOBS_ADMIN_PASSWORD", "bench-password-123")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start mcp-obs");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let l = lines.next().expect("server exited").unwrap();
        if let Some(b) = l.strip_prefix("mcp-obs listening on ") {
            break b.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();

    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let login = agent
        .post(&format!("{base}/api/v1/session"))
        .send_json(json!({"username": "admin", "password": "bench-password-123"}))
        .unwrap();
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = login.into_json::<Value>().unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let created: Value = agent
        .post(&format!("{base}/api/v1/orgs/default/servers"))
        .set("cookie", &cookie)
        .set("x-csrf-token", &csrf)
        .send_json(json!({"name": "bench", "telemetry_enabled": true}))
        .unwrap()
        .into_json()
        .unwrap();
    let key = created["api_key"]["key"].as_str().unwrap().to_string();

    // Pre-encode the payloads so client CPU does not compete with the server during the run.
    let batches = total_spans / BATCH;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let start_ns = gen::now_unix_nano() - 3_600_000_000_000;
    let payloads: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..batches)
            .map(|i| {
                gen::request(&mut rng, BATCH, start_ns + i as u64 * 1_000_000)
                    .0
                    .encode_to_vec()
            })
            .collect(),
    );
    let wire_bytes: usize = payloads.iter().map(Vec::len).sum();

    let gauge_before = machine_gauge_us(&payloads);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_seconds(pid);
    let sys0 = system_seconds(pid);
    let faults0 = minor_faults(pid);
    let written0 = written_bytes(pid);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (payloads, next, key, url) = (
                Arc::clone(&payloads),
                Arc::clone(&next),
                key.clone(),
                format!("{base}/v1/traces"),
            );
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(60))
                    .build();
                let mut latencies_us = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= payloads.len() {
                        break;
                    }
                    let sent = Instant::now();
                    loop {
                        let r = agent
                            .post(&url)
                            .set("content-type", "application/x-protobuf")
                            .set("authorization", &format!("Bearer {key}"))
                            .send_bytes(&payloads[i]);
                        match r {
                            Ok(_) => break,
                            Err(ureq::Error::Status(429 | 503, _)) => {
                                std::thread::sleep(Duration::from_millis(5))
                            }
                            Err(e) => panic!("ingest failed: {e}"),
                        }
                    }
                    latencies_us.push(sent.elapsed().as_micros() as u64);
                }
                latencies_us
            })
        })
        .collect();
    let mut latencies_us: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let wall = t0.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    let latency_ms = |q: f64| {
        latencies_us
            .get(((latencies_us.len() as f64 - 1.0) * q) as usize)
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    // Background work that follows the acknowledgements (the search indexer commits about once a
    // second) is part of the cost: let it finish before reading the CPU counters.
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_seconds(pid) - cpu0;
    let sys = system_seconds(pid) - sys0;
    let faults = minor_faults(pid) - faults0;
    let written = written_bytes(pid) - written0;
    let threads = thread_cpu(pid);
    let spans = batches * BATCH;
    let rss_peak_mb = status_kb(pid, "VmHWM:") as f64 / 1024.0;
    let gauge_after = machine_gauge_us(&payloads);
    let ready: Value = agent
        .get(&format!("{base}/readyz"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let commits = ready["group_commits"].as_u64().unwrap_or(0);

    // Stop gracefully (drain, compaction state as left), then measure disk.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    let disk = dir_bytes(&dir.join("data"));

    println!("ingest: {spans} spans in {batches} requests of {BATCH}, {clients} clients");
    println!(
        "  wire bytes/span:         {:.1}",
        wire_bytes as f64 / spans as f64
    );
    println!(
        "  wall throughput:         {:.0} spans/s",
        spans as f64 / wall
    );
    println!(
        "  request latency:         p50 {:.2} ms, p99 {:.2} ms (sent to acknowledged, 429 retries included)",
        latency_ms(0.5),
        latency_ms(0.99)
    );
    println!(
        "  machine gauge:           {gauge_before:.3} µs/span before, {gauge_after:.3} after (prost decode on the bench's thread; lower is a faster window)"
    );
    println!("  server CPU:              {cpu:.2} s ({sys:.2} s of it in the kernel)");
    println!("  spans per server CPU-s:  {:.0}", spans as f64 / cpu);
    let by_thread: Vec<String> = threads
        .iter()
        .filter(|(_, s)| s.0 >= 0.05)
        .map(|(n, s)| format!("{n} {:.2} ({:.2} sys)", s.0, s.1))
        .collect();
    println!("  CPU s by thread (since start): {}", by_thread.join(", "));
    println!(
        "  group commits:           {commits} ({:.0} spans each)",
        spans as f64 / commits.max(1) as f64
    );
    println!("  peak RSS:                {rss_peak_mb:.1} MB");
    println!(
        "  minor page faults:       {faults} ({:.3} per span)",
        faults as f64 / spans as f64
    );
    println!(
        "  bytes written/span:      {:.1} (write system calls, rewrites included)",
        written as f64 / spans as f64
    );
    println!(
        "  disk bytes/span, every file: {:.1} allocated ({:.1} apparent length)",
        disk.1 as f64 / spans as f64,
        disk.0 as f64 / spans as f64
    );
    if std::env::var_os("BENCH_KEEP_DATA").is_some() {
        println!("  data kept in {}", dir.join("data").display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
