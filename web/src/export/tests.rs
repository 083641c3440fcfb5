//! The export writers against the references: every JSON line must be byte for byte
//! `serde_json::to_vec(&span_to_json(..))` of the span the list returns at that position, and every
//! CSV row must hold the same values, guarded against formula injection.

use std::ops::ControlFlow;
use std::sync::Arc;

use mcp_obs_storage::model::*;
use mcp_obs_storage::spans::{SpanFilter, SpanStore, SpanStoreOptions};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::ahead::RenderAhead;
use super::csv::CSV_COLUMNS;
use super::json::{JsonLines, AHEAD_BYTES_MAX, AHEAD_ROWS_MAX};
use super::search::export_search_paged;
use super::{export_to, Format, EXPORT_CHUNK_BYTES};
use crate::span_json::span_to_json;

/// A store in a fresh temporary directory, removed on drop.
struct TempStore {
    dir: std::path::PathBuf,
    store: SpanStore,
}

impl TempStore {
    fn new(block_rows_max: usize) -> TempStore {
        let dir = std::env::temp_dir().join(format!(
            "mcpobs-export-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let store = SpanStore::open(
            &dir,
            SpanStoreOptions {
                block_rows_max,
                ..SpanStoreOptions::default()
            },
        )
        .unwrap();
        TempStore { dir, store }
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Strings that stress escaping: quotes, backslashes, every control character, unicode outside
/// the BMP, spreadsheet formula starters, numbers.
fn text(rng: &mut StdRng) -> String {
    const PIECES: [&str; 18] = [
        "plain",
        "\"q\"",
        "back\\slash",
        "\n",
        "\r\n",
        "\t",
        "\u{0}",
        "\u{1f}",
        "\u{7f}",
        "ünïcode ✓",
        "🚀",
        "=SUM(A1)",
        "+1",
        "-2.5",
        "@x",
        "</script>",
        "'",
        "\u{2028}",
    ];
    let n = rng.gen_range(0..4);
    let mut s: String = (0..n)
        .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
        .collect();
    if rng.gen_bool(0.1) {
        s.push(char::from(rng.gen_range(0u8..32)));
    }
    s
}

fn value(rng: &mut StdRng, depth: u32) -> AttrValue {
    match rng.gen_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => AttrValue::Str(text(rng).into()),
        1 => AttrValue::Bool(rng.gen()),
        2 => AttrValue::Int(match rng.gen_range(0..3) {
            0 => i64::MIN,
            1 => i64::MAX,
            _ => rng.gen_range(-1000..1000),
        }),
        3 => AttrValue::Double(match rng.gen_range(0..7) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => -0.0,
            4 => 1e300,
            5 => 42.0,
            _ => f64::from_bits(rng.gen()),
        }),
        4 => AttrValue::Bytes((0..rng.gen_range(0..6)).map(|_| rng.gen()).collect()),
        5 => AttrValue::Array(
            (0..rng.gen_range(0..4))
                .map(|_| value(rng, depth + 1))
                .collect(),
        ),
        _ => AttrValue::KvList(kvs(rng, depth + 1)),
    }
}

/// Attributes, sometimes with a repeated key (the JSON object keeps the last value).
fn kvs(rng: &mut StdRng, depth: u32) -> Vec<KeyValue> {
    let n = rng.gen_range(0..5);
    (0..n)
        .map(|_| KeyValue {
            key: match rng.gen_range(0..4) {
                0 => "dup".into(),
                1 => text(rng).into(),
                _ => format!("k{}", rng.gen_range(0..6)).into(),
            },
            value: value(rng, depth),
        })
        .collect()
}

fn opt(rng: &mut StdRng, pool: &[&str]) -> Option<Text> {
    match rng.gen_range(0..5) {
        0 => None,
        1 => Some(text(rng).into()),
        _ => Some(pool[rng.gen_range(0..pool.len())].into()),
    }
}

fn span(rng: &mut StdRng, org: OrgId, t0: u64) -> SpanRecord {
    let start = t0 + rng.gen_range(0..3 * DAY_NANOS / 1_000_000_000) * 1_000_000_000;
    let origin = SpanOrigin {
        resource: kvs(rng, 0),
        scope_name: text(rng),
        scope_version: text(rng),
    };
    SpanRecord {
        org_id: org,
        server_id: org * 10 + rng.gen_range(0..3),
        env: if rng.gen_bool(0.3) {
            Env::Test
        } else {
            Env::Live
        },
        trace_id: rng.gen(),
        span_id: rng.gen(),
        parent_span_id: if rng.gen_bool(0.5) { [0; 8] } else { rng.gen() },
        start_unix_nano: start,
        end_unix_nano: match rng.gen_range(0..10) {
            0 => start.saturating_sub(5),
            _ => start + rng.gen_range(0..5_000_000_000u64),
        },
        name: text(rng).into(),
        kind: rng.gen_range(0..7),
        status_code: rng.gen_range(0..4),
        status_message: text(rng),
        flags: rng.gen(),
        trace_state: text(rng),
        sample_probability: match rng.gen_range(0..5) {
            0 => f64::NAN,
            1 => 0.25,
            2 => f64::from_bits(rng.gen()),
            _ => 1.0,
        },
        service_name: text(rng).into(),
        mcp: McpFields {
            method: opt(rng, &["tools/call", "resources/read"]),
            tool: opt(rng, &["search", "=cmd|'/C calc'!A0"]),
            prompt: opt(rng, &["p"]),
            resource_uri: opt(rng, &["file:///x"]),
            request_id: match rng.gen_range(0..3) {
                0 => None,
                1 => Some(rng.gen_range(0..1000u32).to_string().into()),
                _ => opt(rng, &["abc", "007"]),
            },
            session_id: opt(rng, &["s1", "s2"]),
            user_id: opt(rng, &["alice", "@bob"]),
            client_name: opt(rng, &["claude-desktop"]),
            client_version: opt(rng, &["1.4.2"]),
            error_type: opt(rng, &["tool_error", "-32602"]),
            transport: opt(rng, &["stdio"]),
            protocol_version: opt(rng, &["2025-11-25"]),
        },
        attributes: kvs(rng, 0),
        events: (0..rng.gen_range(0..3))
            .map(|_| SpanEvent {
                time_unix_nano: rng.gen(),
                name: text(rng),
                attributes: kvs(rng, 0),
            })
            .collect(),
        links: (0..rng.gen_range(0..3))
            .map(|_| SpanLink {
                trace_id: rng.gen(),
                span_id: rng.gen(),
                trace_state: text(rng),
                attributes: kvs(rng, 0),
            })
            .collect(),
        origin: Arc::new(origin),
        dropped_attributes_count: rng.gen_range(0..3),
        dropped_events_count: rng.gen(),
        dropped_links_count: rng.gen_range(0..2),
    }
}

/// Every page of the span list.
fn list_all(store: &SpanStore, org: OrgId, f: &SpanFilter) -> Vec<SpanRecord> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = store.list(org, f, cursor.as_deref(), 37).unwrap();
        out.extend(p.spans);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn export(store: &SpanStore, org: OrgId, f: &SpanFilter, format: Format, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let stats = export_to(store, org, f, format, chunk, |c| {
        assert!(!c.is_empty());
        out.extend_from_slice(&c);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(!stats.stopped);
    out
}

/// The CSV cell a telemetry string becomes (the analytics guard).
fn guarded(s: &str) -> String {
    crate::analytics::text(s)
}

fn check_csv(csv: &[u8], want: &[SpanRecord]) {
    let mut r = csv::ReaderBuilder::new().from_reader(csv);
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), want.len());
    for (row, s) in rows.iter().zip(want) {
        let j = span_to_json(s);
        let cell = |name: &str| &row[CSV_COLUMNS.iter().position(|c| *c == name).unwrap()];
        assert_eq!(cell("trace_id"), hex::encode(s.trace_id));
        assert_eq!(cell("span_id"), hex::encode(s.span_id));
        let parent = j["parent_span_id"].as_str().unwrap_or("");
        assert_eq!(cell("parent_span_id"), parent);
        assert_eq!(cell("server_id"), s.server_id.to_string());
        assert_eq!(cell("env"), s.env.as_str());
        assert_eq!(cell("name"), guarded(&s.name));
        assert_eq!(cell("kind"), j["kind"].as_str().unwrap());
        assert_eq!(cell("start_time_unix_nano"), s.start_unix_nano.to_string());
        assert_eq!(cell("end_time_unix_nano"), s.end_unix_nano.to_string());
        let d: f64 = cell("duration_ms").parse().unwrap();
        assert_eq!(d, j["duration_ms"].as_f64().unwrap());
        assert_eq!(cell("status_code"), j["status"]["code"].as_str().unwrap());
        assert_eq!(cell("status_message"), guarded(&s.status_message));
        assert_eq!(cell("is_error"), s.is_error().to_string());
        let mcp = s.mcp.named();
        for (name, v) in mcp {
            assert_eq!(
                cell(name),
                v.as_deref().map(guarded).unwrap_or_default(),
                "{name}"
            );
        }
        assert_eq!(cell("service_name"), guarded(&s.service_name));
        match j["sample_probability"].as_f64() {
            Some(p) => assert_eq!(cell("sample_probability").parse::<f64>().unwrap(), p),
            None => assert_eq!(cell("sample_probability"), ""),
        }
        let attrs: Value = serde_json::from_str(cell("attributes")).unwrap();
        let reference: Value =
            serde_json::from_slice(&serde_json::to_vec(&j["attributes"]).unwrap()).unwrap();
        assert_eq!(attrs, reference);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Varied spans over several blocks and days, two orgs; exports of org 1 with and without a
    /// filter equal the span list, line by line and byte by byte.
    #[test]
    fn export_equals_span_list(seed in any::<u64>(), n in 1usize..300, block_rows in 1usize..64,
                               chunk in 1usize..5000) {
        let mut rng = StdRng::seed_from_u64(seed);
        let t = TempStore::new(block_rows);
        let t0 = 20_000 * DAY_NANOS;
        let spans: Vec<SpanRecord> =
            (0..n).map(|_| { let org = 1 + rng.gen_range(0..2); span(&mut rng, org, t0) }).collect();
        for part in spans.chunks(1 + n / 3) {
            t.store.append(part).unwrap();
        }
        let filters = [
            SpanFilter::default(),
            SpanFilter { env: Some(Env::Live), status: Some(mcp_obs_storage::spans::StatusFilter::Error),
                         ..SpanFilter::default() },
            SpanFilter { from_unix_nano: Some(t0 + DAY_NANOS / 2), to_unix_nano: Some(t0 + 2 * DAY_NANOS),
                         tool: Some("search".into()), ..SpanFilter::default() },
        ];
        for f in &filters {
            let want = list_all(&t.store, 1, f);
            let jsonl = export(&t.store, 1, f, Format::JsonLines, chunk);
            let lines: Vec<&[u8]> = jsonl.split(|&b| b == b'\n').collect();
            prop_assert_eq!(lines.len(), want.len() + 1, "one line per span, then nothing");
            prop_assert!(lines[want.len()].is_empty());
            for (line, s) in lines.iter().zip(&want) {
                let reference = serde_json::to_vec(&span_to_json(s)).unwrap();
                // Parsed equality is the contract (both parsed the same way: serde_json's parser
                // rounds some extreme doubles); byte equality holds too (same key order).
                let parsed: Value = serde_json::from_slice(line).unwrap();
                let reparsed: Value = serde_json::from_slice(&reference).unwrap();
                prop_assert_eq!(&parsed, &reparsed);
                prop_assert_eq!(String::from_utf8_lossy(line), String::from_utf8_lossy(&reference));
            }
            check_csv(&export(&t.store, 1, f, Format::Csv, chunk), &want);
        }
        t.store.compact().unwrap();
        let want = list_all(&t.store, 2, &SpanFilter::default());
        let jsonl = export(&t.store, 2, &SpanFilter::default(), Format::JsonLines, 1 << 16);
        prop_assert_eq!(jsonl.split(|&b| b == b'\n').count(), want.len() + 1);
    }
}

/// Every page of the searched span list.
fn search_all(store: &SpanStore, org: OrgId, f: &SpanFilter, q: &str) -> Vec<SpanRecord> {
    let q = store.parse_query(q).unwrap();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = store.search(org, f, &q, cursor.as_deref(), 23).unwrap();
        out.extend(p.spans);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn export_search(
    store: &SpanStore,
    org: OrgId,
    f: &SpanFilter,
    q: &str,
    format: Format,
    (chunk, page): (usize, usize),
) -> Vec<u8> {
    let q = store.parse_query(q).unwrap();
    let mut out = Vec::new();
    let stats = export_search_paged(store, org, f, &q, format, chunk, page, |c| {
        assert!(!c.is_empty());
        out.extend_from_slice(&c);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(!stats.stopped);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// A searched export is the searched list paged to its end, line by line and byte by byte,
    /// never another organization's span; and the CSV rows written from records equal the rows
    /// the scan path writes from blocks for the same spans.
    #[test]
    fn searched_export_equals_searched_list(seed in any::<u64>(), n in 1usize..700,
                                            block_rows in 1usize..64, chunk in 1usize..5000,
                                            page in 1usize..40) {
        let mut rng = StdRng::seed_from_u64(seed);
        let t = TempStore::new(block_rows);
        let t0 = 20_000 * DAY_NANOS;
        let spans: Vec<SpanRecord> =
            (0..n).map(|_| { let org = 1 + rng.gen_range(0..2); span(&mut rng, org, t0) }).collect();
        for part in spans.chunks(1 + n / 3) {
            t.store.append(part).unwrap();
        }
        let f = SpanFilter::default();
        for q in ["search", "alice", "zzz-nothing", "e"] {
            let want = search_all(&t.store, 1, &f, q);
            prop_assert!(want.iter().all(|s| s.org_id == 1));
            let jsonl = export_search(&t.store, 1, &f, q, Format::JsonLines, (chunk, page));
            let lines: Vec<&[u8]> = jsonl.split(|&b| b == b'\n').collect();
            prop_assert_eq!(lines.len(), want.len() + 1, "one line per span, then nothing");
            for (line, s) in lines.iter().zip(&want) {
                let reference = serde_json::to_vec(&span_to_json(s)).unwrap();
                prop_assert_eq!(String::from_utf8_lossy(line), String::from_utf8_lossy(&reference));
            }
            let csv = export_search(&t.store, 1, &f, q, Format::Csv, (chunk, page));
            check_csv(&csv, &want);
        }
        let all = list_all(&t.store, 1, &f);
        let mut by_records = Vec::new();
        super::csv::header(&mut by_records).unwrap();
        super::csv::record_rows(&all, &mut by_records).unwrap();
        let by_blocks = export(&t.store, 1, &f, Format::Csv, 1 << 16);
        prop_assert_eq!(String::from_utf8_lossy(&by_records), String::from_utf8_lossy(&by_blocks));
    }
}

#[test]
fn csv_guard_is_the_analytics_rule() {
    for (raw, cell) in [
        ("=1+2", "'=1+2"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-cmd", "'-cmd"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-2.5", "-2.5"),
        ("+1", "+1"),
        ("plain", "plain"),
        ("", ""),
        ("a=b", "a=b"),
    ] {
        assert_eq!(guarded(raw), cell, "{raw:?}");
    }
}

#[test]
fn empty_export_is_a_header_or_nothing() {
    let t = TempStore::new(8);
    let f = SpanFilter::default();
    assert!(export(&t.store, 1, &f, Format::JsonLines, 100).is_empty());
    let csv = export(&t.store, 1, &f, Format::Csv, 100);
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        format!("{}\n", CSV_COLUMNS.join(","))
    );
}

#[test]
fn a_sink_that_stops_ends_the_export() {
    let t = TempStore::new(16);
    let mut rng = StdRng::seed_from_u64(5);
    let spans: Vec<SpanRecord> = (0..500)
        .map(|_| span(&mut rng, 1, 20_000 * DAY_NANOS))
        .collect();
    t.store.append(&spans).unwrap();
    let mut chunks = 0;
    let stats = export_to(
        &t.store,
        1,
        &SpanFilter::default(),
        Format::JsonLines,
        1000,
        |_| {
            chunks += 1;
            match chunks {
                3 => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        },
    )
    .unwrap();
    assert!(stats.stopped);
    assert_eq!(chunks, 3);
    assert!(stats.rows < 500);
}

#[test]
fn parameters_are_the_span_lists_plus_format() {
    use super::parse_export;
    let p =
        parse_export("server=3&server=4&env=test&from=1000&to=2000&method=m&tool=t&user=u&session=s&error_type=timeout&client=cursor&status=error&min_duration_ms=1.5&trace_id=0102030405060708090a0b0c0d0e0f10&q=search+docs&format=csv").unwrap();
    let (f, format) = (p.filter, p.format);
    assert_eq!(format, Format::Csv);
    assert_eq!(p.q.as_deref(), Some("search docs"));
    assert_eq!(f.server_ids, Some(vec![3, 4]));
    assert_eq!(f.env, Some(Env::Test));
    assert_eq!(
        (f.from_unix_nano, f.to_unix_nano),
        (Some(1_000_000_000), Some(2_000_000_000))
    );
    assert_eq!(f.min_duration_nanos, Some(1_500_000));
    assert_eq!(f.error_type.as_deref(), Some("timeout"));
    assert_eq!(f.client_name.as_deref(), Some("cursor"));
    assert_eq!(f.trace_id.unwrap()[15], 0x10);
    let p = parse_export("q=").unwrap();
    assert_eq!((p.format, p.q), (Format::JsonLines, None));
    for bad in [
        "cursor=c1",
        "limit=5",
        "format=xml",
        "bogus=1",
        "status=maybe",
        "from=x",
    ] {
        assert!(parse_export(bad).is_err(), "{bad}");
    }
    let name = super::file_name("acme corp", &f, Format::Csv);
    assert_eq!(name, "spans-acme_corp-1000-2000.csv");
    let name = super::file_name("default", &SpanFilter::default(), Format::JsonLines);
    assert_eq!(name, "spans-default-earliest-latest.jsonl");
}

/// An export through `export_with` with `threads` render threads, chunks checked for size.
fn export_threads(store: &SpanStore, f: &SpanFilter, chunk: usize, threads: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let stats = super::export_with(store, 1, f, Format::JsonLines, chunk, threads, |c| {
        assert!(!c.is_empty());
        out.extend_from_slice(&c);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(!stats.stopped);
    out
}

/// A compacted store of `n` spans of org 1 from six servers busy at the same times of one day
/// (the merge interleaves their blocks row by row), blocks of `n / 6` rows (several render
/// batches each), every fifth span with an attribute of [`AHEAD_BYTES_MAX`] / 32 bytes (batches
/// cut short by their byte limit).
fn interleaved_store(n: usize, seed: u64) -> TempStore {
    let big = AHEAD_BYTES_MAX / 32;
    // A batch's big rows alone pass the byte limit, so every full batch is cut short.
    assert!(AHEAD_ROWS_MAX / 5 * big > AHEAD_BYTES_MAX);
    let t = TempStore::new(4096);
    let mut rng = StdRng::seed_from_u64(seed);
    let spans: Vec<SpanRecord> = (0..n)
        .map(|i| {
            let mut s = span(&mut rng, 1, 20_000 * DAY_NANOS);
            // Within one day: the servers' rows alternate, a few ties on the start time.
            let d = s.end_unix_nano.saturating_sub(s.start_unix_nano);
            s.start_unix_nano = 20_000 * DAY_NANOS + (i / 7) as u64 * 1_000_000;
            s.end_unix_nano = s.start_unix_nano + d;
            s.server_id = 10 + (i % 6) as u32;
            if i % 5 == 0 {
                s.attributes.push(KeyValue {
                    key: "big".into(),
                    value: AttrValue::Str("x".repeat(big).into()),
                });
            }
            s
        })
        .collect();
    for part in spans.chunks(n / 4 + 1) {
        t.store.append(part).unwrap();
    }
    while t.store.compact().unwrap().blocks_merged > 0 {}
    t
}

#[test]
fn render_thread_output_is_the_single_threaded_output() {
    let t = interleaved_store(9000, 11);
    let filters = [
        SpanFilter::default(),
        SpanFilter {
            env: Some(Env::Live),
            ..SpanFilter::default()
        },
    ];
    for f in &filters {
        let one = export_threads(&t.store, f, EXPORT_CHUNK_BYTES, 0);
        let want = list_all(&t.store, 1, f);
        assert!(want.len() > 4000, "{} spans", want.len());
        assert_eq!(one.iter().filter(|&&b| b == b'\n').count(), want.len());
        // The single-threaded path against the reference, line by line at a few places.
        let lines: Vec<&[u8]> = one.split(|&b| b == b'\n').collect();
        for k in [0, 1, 255, 256, 257, want.len() / 2, want.len() - 1] {
            let reference = serde_json::to_vec(&span_to_json(&want[k])).unwrap();
            assert_eq!(lines[k], &reference[..], "line {k}");
        }
        for chunk in [1, 4096, EXPORT_CHUNK_BYTES] {
            let two = export_threads(&t.store, f, chunk, 1);
            assert!(two == one, "chunk {chunk}: outputs differ");
        }
    }
}

#[test]
fn render_thread_stops_with_the_client() {
    let t = interleaved_store(6000, 12);
    for stop_at in [1, 5, 40] {
        let mut chunks = 0;
        let mut got = Vec::new();
        let stats = super::export_with(
            &t.store,
            1,
            &SpanFilter::default(),
            Format::JsonLines,
            4096,
            1,
            |c| {
                chunks += 1;
                got.extend_from_slice(&c);
                match chunks == stop_at {
                    true => ControlFlow::Break(()),
                    false => ControlFlow::Continue(()),
                }
            },
        )
        .unwrap();
        assert!(stats.stopped);
        assert_eq!(chunks, stop_at);
        assert!(stats.rows < 6000);
        // What was sent is the beginning of the whole export.
        let all = export_threads(&t.store, &SpanFilter::default(), 4096, 0);
        assert_eq!(&all[..got.len()], &got[..]);
    }
}

/// Without a running worker (its thread could not start, or it ended), the scan thread renders
/// every batch itself and never waits.
#[test]
fn render_ahead_without_a_worker_renders_on_the_scan_thread() {
    let t = interleaved_store(3000, 13);
    let want = export_threads(&t.store, &SpanFilter::default(), 1 << 16, 0);
    let ahead = RenderAhead::default();
    let mut got = Vec::new();
    let sink = super::Chunked::new(JsonLines::with_ahead(&ahead), 1 << 16, |c| {
        got.extend_from_slice(&c);
        ControlFlow::Continue(())
    })
    .unwrap();
    let mut sink = sink;
    let stats = t.store.scan(1, &SpanFilter::default(), &mut sink).unwrap();
    assert!(sink.finish().is_continue());
    assert_eq!(stats.rows, 3000);
    assert!(got == want);
    // A worker that ends early (closed before it starts) changes nothing either.
    ahead.close();
    ahead.work();
    let mut again = Vec::new();
    let mut sink = super::Chunked::new(JsonLines::with_ahead(&ahead), 1 << 16, |c| {
        again.extend_from_slice(&c);
        ControlFlow::Continue(())
    })
    .unwrap();
    t.store.scan(1, &SpanFilter::default(), &mut sink).unwrap();
    assert!(sink.finish().is_continue());
    assert!(again == want);
}

/// Batches rendered ahead (here by the worker's step run on the scan thread between chunks, so
/// deterministically) are handed out in place of the scan thread's own rendering, unchanged.
#[test]
fn batches_rendered_ahead_are_the_lines_the_scan_hands_out() {
    let t = interleaved_store(4000, 14);
    let want = export_threads(&t.store, &SpanFilter::default(), 4096, 0);
    for steps in [1, 3, 40] {
        let ahead = RenderAhead::default();
        let mut got = Vec::new();
        let mut sink = super::Chunked::new(JsonLines::with_ahead(&ahead), 4096, |c| {
            got.extend_from_slice(&c);
            for _ in 0..steps {
                ahead.step();
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        t.store.scan(1, &SpanFilter::default(), &mut sink).unwrap();
        assert!(sink.finish().is_continue());
        assert!(ahead.batches_taken_ahead() > 10, "steps {steps}");
        assert!(got == want, "steps {steps}: outputs differ");
    }
}

/// A worker that claims the batch needed soonest and then does not run: the scan thread stops
/// waiting for it, renders it itself, and the late copy is dropped; the output does not change.
#[test]
fn a_stalled_worker_is_not_waited_for() {
    let t = interleaved_store(4000, 15);
    let want = export_threads(&t.store, &SpanFilter::default(), 4096, 0);
    let ahead = RenderAhead::default();
    let mut got = Vec::new();
    let (mut stalled, mut stalls, mut chunks) = (None, 0, 0);
    let mut sink = super::Chunked::new(JsonLines::with_ahead(&ahead), 4096, |c| {
        got.extend_from_slice(&c);
        chunks += 1;
        // Every 20 chunks the stalled claim is finished late and another one stalls.
        if chunks % 20 == 0 {
            if let Some(c) = stalled.take() {
                ahead.finish_stalled(c);
            }
            stalled = ahead.stall();
            stalls += usize::from(stalled.is_some());
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    t.store.scan(1, &SpanFilter::default(), &mut sink).unwrap();
    assert!(sink.finish().is_continue());
    if let Some(c) = stalled.take() {
        ahead.finish_stalled(c);
    }
    assert!(stalls > 5, "{stalls} stalls");
    assert!(got == want, "outputs differ");
}
