//! Writes a small day file in the current span store format, for the format-fixture tests
//! (`storage/tests/data/spans-vN/`): 600 spans of one org and server on 2026-11-20, in blocks of
//! at most 256 rows with row groups of 64 (so every segmented column kind is present), 40 users,
//! 12 tools and 30 sessions, compacted. Deterministic (seeded).
//!
//! `cargo run --release -p mcp-obs-storage --example format_fixture -- <empty dir>`, then copy
//! `<dir>/2026-11-20.redb`.

use mcp_obs_storage::model::*;
use mcp_obs_storage::spans::{SpanStore, SpanStoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// 2026-11-20T00:00:00Z.
const DAY0_NANOS: u64 = 1_795_132_800 * 1_000_000_000;

fn span(rng: &mut StdRng, i: u64) -> SpanRecord {
    let start = DAY0_NANOS + 3_600_000_000_000 + i * 7_000_000_000 + rng.gen_range(0..1000);
    let user = rng.gen_range(0..40u32);
    let tool = rng.gen_range(0..12u32);
    let error = rng.gen_bool(0.1);
    SpanRecord {
        org_id: 1,
        server_id: 1,
        env: Env::Live,
        trace_id: rng.gen(),
        span_id: rng.gen(),
        parent_span_id: if rng.gen_bool(0.3) { rng.gen() } else { [0; 8] },
        start_unix_nano: start,
        end_unix_nano: start + rng.gen_range(1_000..900_000_000),
        name: format!("tools/call tool_{tool}").into(),
        kind: SPAN_KIND_SERVER,
        status_code: if error { STATUS_ERROR } else { STATUS_UNSET },
        status_message: String::new(),
        flags: 1,
        trace_state: String::new(),
        sample_probability: if rng.gen_bool(0.2) { 0.5 } else { 1.0 },
        service_name: "fixture-mcp".into(),
        mcp: McpFields {
            method: Some("tools/call".into()),
            tool: Some(format!("tool_{tool}").into()),
            request_id: Some(rng.gen_range(1..5000u32).to_string().into()),
            session_id: Some(format!("sess-{}", rng.gen_range(0..30u32)).into()),
            user_id: Some(format!("user-{user}@example.com").into()),
            client_name: Some("claude-desktop".into()),
            client_version: Some("1.4.2".into()),
            error_type: error.then(|| "tool_error".into()),
            transport: Some("stdio".into()),
            protocol_version: Some("2025-06-18".into()),
            ..McpFields::default()
        },
        attributes: vec![KeyValue {
            key: "mcp.tool.result.size".into(),
            value: AttrValue::Int(rng.gen_range(0..20_000)),
        }],
        events: Vec::new(),
        links: Vec::new(),
        origin: SpanOrigin {
            resource: vec![KeyValue {
                key: "service.name".into(),
                value: AttrValue::Str("fixture-mcp".into()),
            }],
            scope_name: "fixture".into(),
            scope_version: "1".into(),
        }
        .into(),
        dropped_attributes_count: 0,
        dropped_events_count: 0,
        dropped_links_count: 0,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: format_fixture <empty dir>")?;
    let opts = SpanStoreOptions {
        block_rows_max: 256,
        row_group_rows: 64,
        ..SpanStoreOptions::default()
    };
    let store = SpanStore::open(std::path::Path::new(&dir), opts)?;
    let mut rng = StdRng::seed_from_u64(5);
    let spans: Vec<SpanRecord> = (0..600).map(|i| span(&mut rng, i)).collect();
    for batch in spans.chunks(100) {
        store.append(batch)?;
    }
    while store.compact()?.blocks_merged > 0 {}
    println!("wrote {} spans to {dir}", spans.len());
    Ok(())
}
