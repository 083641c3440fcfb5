//! Decode + normalize cost per span on one core, without HTTP or storage: the CPU floor of ingest.
//!
//! Run: `cargo bench -p mcp-obs-web --bench otlp` (env BENCH_BATCHES, default 2000 batches of 512).

#[path = "../../tests/common/gen.rs"]
#[allow(dead_code)]
mod gen;

use std::time::Instant;

#[global_allocator]
static GLOBAL: mcp_obs_storage::memory::Mimalloc = mcp_obs_storage::memory::Mimalloc;

use mcp_obs_storage::model::Env;
use mcp_obs_web::otlp::{
    decode_normalize_protobuf, decode_protobuf, normalize, same_normalized, NormalizeLimits, Stamp,
};
use prost::Message;
use rand::SeedableRng;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let batches: usize = std::env::var("BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let now = gen::now_unix_nano();
    let payloads: Vec<Vec<u8>> = (0..batches)
        .map(|i| {
            gen::request(
                &mut rng,
                512,
                now - 3_600_000_000_000 + i as u64 * 1_000_000,
            )
            .0
            .encode_to_vec()
        })
        .collect();
    let stamp = Stamp {
        org_id: 1,
        server_id: 1,
        env: Env::Live,
        oldest_unix_nano: 0,
        newest_unix_nano: u64::MAX,
    };
    let limits = NormalizeLimits::default();
    let spans = (batches * 512) as f64;

    // Batch by batch, as the server does: decode, normalize, then free the records (the ingest
    // writer drops them after the commit; that free is CPU the server pays per span too).
    let (mut decode_s, mut normalize_s, mut drop_s) = (0.0, 0.0, 0.0);
    let mut kept = 0;
    for p in &payloads {
        let t = Instant::now();
        let req = decode_protobuf(p).unwrap();
        let t1 = Instant::now();
        let out = normalize(req, &stamp, &limits);
        let t2 = Instant::now();
        kept += out.spans.len();
        drop(out);
        let t3 = Instant::now();
        decode_s += (t1 - t).as_secs_f64();
        normalize_s += (t2 - t1).as_secs_f64();
        drop_s += (t3 - t2).as_secs_f64();
    }
    assert_eq!(kept, batches * 512);
    println!("otlp: {batches} batches of 512 spans");
    println!(
        "  protobuf decode:  {:.0} spans/s ({:.2} us/span)",
        spans / decode_s,
        decode_s * 1e6 / spans
    );
    println!(
        "  normalize:        {:.0} spans/s ({:.2} us/span)",
        spans / normalize_s,
        normalize_s * 1e6 / spans
    );
    println!(
        "  drop records:     {:.0} spans/s ({:.2} us/span)",
        spans / drop_s,
        drop_s * 1e6 / spans
    );
    println!(
        "  decode+normalize: {:.0} spans/s per core",
        spans / (decode_s + normalize_s)
    );
    println!(
        "  ... + drop:       {:.0} spans/s per core",
        spans / (decode_s + normalize_s + drop_s)
    );

    // The one-pass path the server uses for protobuf bodies: same output, no OTLP structs.
    let (mut fast_s, mut fast_drop_s) = (0.0, 0.0);
    let mut kept = 0;
    for p in &payloads {
        let t = Instant::now();
        let out = decode_normalize_protobuf(p, &stamp, &limits).unwrap();
        let t1 = Instant::now();
        kept += out.normalized.spans.len();
        drop(out);
        let t2 = Instant::now();
        fast_s += (t1 - t).as_secs_f64();
        fast_drop_s += (t2 - t1).as_secs_f64();
    }
    assert_eq!(kept, batches * 512);
    println!(
        "  fast decode+normalize: {:.0} spans/s per core ({:.2} us/span, {:.2}x)",
        spans / fast_s,
        fast_s * 1e6 / spans,
        (decode_s + normalize_s) / fast_s
    );
    println!(
        "  ... + drop:            {:.0} spans/s per core",
        spans / (fast_s + fast_drop_s)
    );
    // Same records as the old path (checked on a sample, outside the timing).
    for p in payloads.iter().take(20) {
        let old = normalize(decode_protobuf(p).unwrap(), &stamp, &limits);
        let new = decode_normalize_protobuf(p, &stamp, &limits).unwrap();
        assert!(same_normalized(&old, &new.normalized));
    }
}
