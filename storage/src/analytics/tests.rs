//! Analytics against brute force: random spans (tools, users, clients, errors, sampling weights,
//! sides, envs, servers) are appended to a real store; every answer is compared with the same
//! question computed directly over the spans, before and after compaction rolls minutes into hours
//! and days, and after a reopen.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::model::{
    McpFields, SpanOrigin, SpanRecord, Text, SPAN_KIND_CLIENT, SPAN_KIND_INTERNAL,
    SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET,
};
use crate::rollup::sketch::RELATIVE_ACCURACY;
use crate::rollup::HOUR_NANOS;
use crate::spans::{SpanStore, SpanStoreOptions};

/// 2024-10-04 00:00 UTC: long finished, so compaction rolls it.
const DAY0: u64 = 20_000 * DAY_NANOS;

const TOOLS: [&str; 4] = ["search", "fetch", "write_file", "ünïcode tool"];
/// The last is longer than the users-cube pass keeps inline in its interner's keys.
const USERS: [&str; 5] = [
    "alice",
    "bob",
    "carol",
    "dave",
    "eve.with.a.long.address@example.org",
];
const CLIENTS: [(&str, &str); 3] = [("claude-code", "1.0"), ("cursor", "0.4"), ("cursor", "0.5")];
const WEIGHTS: [f64; 5] = [1.0, 1.0, 0.5, 0.1, 0.3];

#[derive(Clone, Debug)]
struct Spec {
    server: u32,
    test_env: bool,
    minute: u64,
    second_nanos: u64,
    dur: u64,
    tool: Option<usize>,
    user: Option<usize>,
    client: usize,
    session: u8,
    error: u8,
    kind: u8,
    prob: usize,
    method: u8,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            1u32..=3,
            prop::bool::weighted(0.15),
            0u64..(2 * 1440),
            0u64..60_000_000_000,
        ),
        prop_oneof![
            0u64..1000,
            1000u64..10_000_000,
            10_000_000u64..30_000_000_000
        ],
        (
            prop::option::weighted(0.9, 0..TOOLS.len()),
            prop::option::weighted(0.8, 0..USERS.len()),
        ),
        (
            0..CLIENTS.len(),
            0u8..20,
            0u8..10,
            0u8..10,
            0..WEIGHTS.len(),
            0u8..10,
        ),
    )
        .prop_map(
            |(
                (server, test_env, minute, second_nanos),
                dur,
                (tool, user),
                (client, session, error, kind, prob, method),
            )| Spec {
                server,
                test_env,
                minute,
                second_nanos,
                dur,
                tool,
                user,
                client,
                session,
                error,
                kind,
                prob,
                method,
            },
        )
}

fn span(i: usize, s: &Spec) -> SpanRecord {
    let start = DAY0 + s.minute * MINUTE_NANOS + s.second_nanos;
    // method: mostly tools/call; some other methods; 1 in 10 a plain internal span (no method).
    let method: Option<Text> = match s.method {
        0 => None,
        1 => Some("tools/list".into()),
        2 => Some("initialize".into()),
        _ => Some("tools/call".into()),
    };
    let is_call = method.as_deref() == Some("tools/call");
    let (cname, cver) = CLIENTS[s.client];
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    SpanRecord {
        org_id: 1,
        server_id: s.server,
        env: if s.test_env { Env::Test } else { Env::Live },
        trace_id: id,
        span_id: (i as u64 + 1).to_be_bytes(),
        parent_span_id: [0; 8],
        start_unix_nano: start,
        end_unix_nano: start + s.dur,
        name: "x".into(),
        kind: match s.kind {
            0 => SPAN_KIND_CLIENT,
            1 => SPAN_KIND_INTERNAL,
            _ => SPAN_KIND_SERVER,
        },
        status_code: if s.error == 0 {
            STATUS_ERROR
        } else {
            STATUS_UNSET
        },
        status_message: String::new(),
        flags: 0,
        trace_state: String::new(),
        sample_probability: WEIGHTS[s.prob],
        service_name: "svc".into(),
        mcp: McpFields {
            method,
            tool: if is_call {
                s.tool.map(|t| TOOLS[t].into())
            } else {
                None
            },
            user_id: s.user.map(|u| USERS[u].into()),
            session_id: (s.session > 0).then(|| format!("session-{}", s.session % 7).into()),
            client_name: Some(cname.into()),
            client_version: Some(cver.into()),
            protocol_version: Some(
                if s.client == 0 {
                    "2025-06-18"
                } else {
                    "2025-03-26"
                }
                .into(),
            ),
            error_type: match s.error {
                1 => Some("tool_error".into()),
                2 => Some("-32602".into()),
                _ => None,
            },
            ..McpFields::default()
        },
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        origin: Arc::new(SpanOrigin::default()),
        dropped_attributes_count: 0,
        dropped_events_count: 0,
        dropped_links_count: 0,
    }
}

/// The spans a query covers, by brute force.
fn matching<'a>(spans: &'a [SpanRecord], q: &Query, w: &Window) -> Vec<&'a SpanRecord> {
    spans
        .iter()
        .filter(|s| {
            s.is_mcp_request()
                && q.servers.contains(&s.server_id)
                && s.env == q.env
                && crate::rollup::Side::of(s) == q.side
                && s.start_unix_nano >= w.from_unix_nano
                && s.start_unix_nano >= q.floor_unix_nano
                && s.start_unix_nano < w.to_unix_nano
                && q.method
                    .as_ref()
                    .is_none_or(|m| s.mcp.method.as_deref() == Some(m.as_str()))
                && q.tool
                    .as_ref()
                    .is_none_or(|m| s.mcp.tool.as_deref() == Some(m.as_str()))
                && q.user
                    .as_ref()
                    .is_none_or(|m| s.mcp.user_id.as_deref() == Some(m.as_str()))
                && q.client
                    .as_ref()
                    .is_none_or(|m| s.mcp.client_name.as_deref() == Some(m.as_str()))
        })
        .collect()
}

fn weight(s: &SpanRecord) -> f64 {
    crate::rollup::weight_of(s)
}

/// The exact weighted lower quantile: the smallest duration whose cumulative weight reaches q * W.
fn exact_quantile(spans: &[&SpanRecord], q: f64) -> Option<u64> {
    let mut v: Vec<(u64, f64)> = spans
        .iter()
        .map(|s| (s.duration_nanos(), weight(s)))
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by_key(|x| x.0);
    let total: f64 = v.iter().map(|x| x.1).sum();
    let target = q * total - 1e-9 * total;
    let mut cum = 0.0;
    for (d, w) in &v {
        cum += w;
        if cum >= target {
            return Some(*d);
        }
    }
    v.last().map(|x| x.0)
}

/// `a` and `b` equal but for the order their sums were added in.
fn same_user_tables(a: &UserTables, b: &UserTables, what: &str) {
    let users = |t: &UserTables| -> Vec<(String, u64, u64)> {
        t.users
            .iter()
            .map(|r| (r.user.clone(), r.tools, r.last_unix_nano))
            .collect()
    };
    assert_eq!(users(a), users(b), "{what}: users");
    for (x, y) in a.users.iter().zip(&b.users) {
        assert!(
            close(x.calls, y.calls) && close(x.errors, y.errors),
            "{what}: {x:?} {y:?}"
        );
    }
    let pairs = |t: &UserTables| -> Vec<(String, String, Option<u64>)> {
        t.user_tools
            .iter()
            .map(|r| (r.user.clone(), r.tool.clone(), r.p95_nanos))
            .collect()
    };
    assert_eq!(pairs(a), pairs(b), "{what}: user x tool");
    for (x, y) in a.user_tools.iter().zip(&b.user_tools) {
        assert!(
            close(x.calls, y.calls) && close(x.errors, y.errors),
            "{what}: {x:?} {y:?}"
        );
    }
    let clients = |t: &UserTables| -> Vec<(Option<String>, Option<String>, u64, u64)> {
        t.clients
            .iter()
            .map(|r| (r.name.clone(), r.version.clone(), r.users, r.last_unix_nano))
            .collect()
    };
    assert_eq!(
        clients(a),
        clients(b),
        "{what}: clients {:?} {:?}",
        a.clients,
        b.clients
    );
    for (x, y) in a.clients.iter().zip(&b.clients) {
        assert!(
            close(x.calls, y.calls) && close(x.errors, y.errors),
            "{what}: {x:?} {y:?}"
        );
    }
    let protocols = |t: &UserTables| -> Vec<(Option<String>, u64)> {
        t.protocols
            .iter()
            .map(|r| (r.version.clone(), r.last_unix_nano))
            .collect()
    };
    assert_eq!(protocols(a), protocols(b), "{what}: protocols");
    for (x, y) in a.protocols.iter().zip(&b.protocols) {
        assert!(close(x.calls, y.calls), "{what}: {x:?} {y:?}");
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn check_quantile(got: Option<u64>, spans: &[&SpanRecord], q: f64, what: &str) {
    let want = exact_quantile(spans, q);
    match (got, want) {
        (None, None) => {}
        (Some(g), Some(w)) => {
            let err = (g as f64 - w as f64).abs();
            assert!(
                err <= RELATIVE_ACCURACY * w as f64 + 1e-9,
                "{what}: p{q} got {g}, exact {w}"
            );
        }
        _ => panic!("{what}: p{q} got {got:?}, exact {want:?}"),
    }
}

fn check_totals(t: &Totals, spans: &[&SpanRecord], what: &str) {
    let calls: f64 = spans.iter().map(|s| weight(s)).sum();
    let errors: f64 = spans
        .iter()
        .filter(|s| s.is_error())
        .map(|s| weight(s))
        .sum();
    let dur: f64 = spans
        .iter()
        .map(|s| weight(s) * s.duration_nanos() as f64)
        .sum();
    assert!(
        close(t.calls, calls),
        "{what}: calls {} vs {calls}",
        t.calls
    );
    assert_eq!(t.spans, spans.len() as u64, "{what}: spans");
    assert!(
        close(t.errors, errors),
        "{what}: errors {} vs {errors}",
        t.errors
    );
    match t.avg_nanos {
        Some(a) => assert!(
            close(a * calls, dur) || (a * calls - dur).abs() < 1e-6 * dur,
            "{what}: avg"
        ),
        None => assert!(spans.is_empty(), "{what}: avg missing"),
    }
    let users: BTreeSet<&str> = spans
        .iter()
        .filter_map(|s| s.mcp.user_id.as_deref())
        .collect();
    let sessions: BTreeSet<&str> = spans
        .iter()
        .filter_map(|s| s.mcp.session_id.as_deref())
        .collect();
    if let Some(u) = t.users {
        assert_eq!(u, users.len() as u64, "{what}: distinct users");
    }
    if let Some(s) = t.sessions {
        assert_eq!(s, sessions.len() as u64, "{what}: distinct sessions");
    }
    for (q, got) in [(0.5, t.p50_nanos), (0.95, t.p95_nanos), (0.99, t.p99_nanos)] {
        check_quantile(got, spans, q, what);
    }
}

fn check_all(store: &SpanStore, spans: &[SpanRecord], q: &Query, w: &Window, stage: &str) {
    // summary, current window and previous window
    let s = summary(store, q, w).unwrap();
    assert!(
        s.current.users.is_some() && s.current.sessions.is_some(),
        "{stage}: summary counts users and sessions"
    );
    check_totals(
        &s.current,
        &matching(spans, q, w),
        &format!("{stage} summary"),
    );
    check_totals(
        &s.previous,
        &matching(spans, q, &w.previous()),
        &format!("{stage} previous"),
    );

    // series: every bucket equals brute force over its own range
    let pts = series(store, q, w).unwrap();
    assert!(!pts.is_empty());
    let mut covered = 0.0;
    for p in &pts {
        let bw = Window {
            from_unix_nano: p.start_unix_nano.max(w.from_unix_nano),
            to_unix_nano: (p.start_unix_nano + w.bucket_nanos).min(w.to_unix_nano),
            ..*w
        };
        let m = matching(spans, q, &bw);
        let calls: f64 = m.iter().map(|s| weight(s)).sum();
        assert!(
            close(p.calls, calls),
            "{stage} series bucket {}: {} vs {calls}",
            p.start_unix_nano,
            p.calls
        );
        check_quantile(p.p95_nanos, &m, 0.95, &format!("{stage} series p95"));
        covered += p.calls;
    }
    assert!(
        close(covered, s.current.calls),
        "{stage}: series sums to summary"
    );

    // top tools
    let m = matching(spans, q, w);
    let tools = top_tools(store, q, w, 100).unwrap();
    let mut by_tool: BTreeMap<&str, Vec<&SpanRecord>> = BTreeMap::new();
    for s in &m {
        if let Some(t) = &s.mcp.tool {
            by_tool.entry(t).or_default().push(s);
        }
    }
    assert_eq!(tools.len(), by_tool.len(), "{stage}: tool count");
    for t in &tools {
        let sp = &by_tool[t.tool.as_str()];
        check_totals(&t.totals, sp, &format!("{stage} tool {}", t.tool));
        assert_eq!(
            t.last_unix_nano,
            sp.iter().map(|s| s.start_unix_nano).max().unwrap()
        );
    }
    for pair in tools.windows(2) {
        assert!(
            pair[0].totals.calls >= pair[1].totals.calls,
            "{stage}: tools sorted"
        );
    }

    // users
    let users = top_users(store, q, w, 100).unwrap();
    let mut by_user: BTreeMap<&str, Vec<&SpanRecord>> = BTreeMap::new();
    for s in &m {
        if let Some(u) = &s.mcp.user_id {
            by_user.entry(u).or_default().push(s);
        }
    }
    assert_eq!(users.len(), by_user.len(), "{stage}: user count");
    for u in &users {
        let sp = &by_user[u.user.as_str()];
        let calls: f64 = sp.iter().map(|s| weight(s)).sum();
        let tools: BTreeSet<&str> = sp.iter().filter_map(|s| s.mcp.tool.as_deref()).collect();
        assert!(close(u.calls, calls), "{stage}: user {} calls", u.user);
        assert_eq!(
            u.tools,
            tools.len() as u64,
            "{stage}: user {} tools",
            u.user
        );
    }

    // user x tool, with a limit that cuts
    let ut = user_tools(store, q, w, 5).unwrap();
    // Without room for the sketches of one pass, the second pass gives the same answer.
    assert_eq!(
        user_tools_capped(store, q, w, 5, 0).unwrap(),
        ut,
        "{stage}: user x tool, two passes"
    );
    let mut pairs: BTreeMap<(&str, &str), Vec<&SpanRecord>> = BTreeMap::new();
    for s in &m {
        if let (Some(u), Some(t)) = (&s.mcp.user_id, &s.mcp.tool) {
            pairs.entry((u, t)).or_default().push(s);
        }
    }
    assert_eq!(ut.len(), pairs.len().min(5), "{stage}: user x tool count");
    let mut calls_sorted: Vec<f64> = pairs
        .values()
        .map(|v| v.iter().map(|s| weight(s)).sum())
        .collect();
    calls_sorted.sort_by(|a, b| b.total_cmp(a));
    // Most calls first; ties (in millionths of a call) by user, then tool.
    for r in ut.windows(2) {
        fn key(x: &UserToolRow) -> (i64, &str, &str) {
            (-((x.calls * 1e6).round() as i64), &x.user, &x.tool)
        }
        assert!(key(&r[0]) < key(&r[1]), "{stage}: user x tool order");
    }
    for (row, want_calls) in ut.iter().zip(&calls_sorted) {
        assert!(
            close(row.calls, *want_calls),
            "{stage}: user x tool ranking"
        );
        let sp = &pairs[&(row.user.as_str(), row.tool.as_str())];
        check_quantile(row.p95_nanos, sp, 0.95, &format!("{stage} user x tool"));
    }

    // the users-cube tables in one pass: each equal to its own question
    let t = user_tables(store, q, w, 5).unwrap();
    assert_eq!(
        t.users,
        top_users(store, q, w, 5).unwrap(),
        "{stage}: users, one pass"
    );
    assert_eq!(t.user_tools, ut, "{stage}: user x tool, one pass");
    // Passes reuse the buffers earlier passes (of any query, in any test) left in the pool.
    assert_eq!(
        user_tables(store, q, w, 5).unwrap(),
        t,
        "{stage}: the same pass again, on pooled buffers"
    );
    // The fallbacks for huge cardinalities give the same tables: pairs in a hash map from the
    // start or moved there mid-pass, clients' users in hash sets from the start or mid-pass.
    let all = users::Want {
        users: true,
        user_tools: true,
        clients: true,
    };
    for (dense_cells, client_bits_bytes) in [(0, 0), (3, 8), (40, 16)] {
        let limits = users::Limits {
            dense_cells,
            client_bits_bytes,
            ..users::LIMITS
        };
        assert_eq!(
            users::pass(store, q, w, 5, all, &limits).unwrap(),
            t,
            "{stage}: users-cube tables with limits {limits:?}"
        );
    }
    // Cut into parts on their own threads and merged, the same tables (sums in another order).
    for (threads, part_nanos_min) in [(1, u64::MAX), (2, MINUTE_NANOS), (3, 1)] {
        let limits = users::Limits {
            threads,
            part_nanos_min,
            ..users::LIMITS
        };
        let got = users::pass(store, q, w, 5, all, &limits).unwrap();
        let what = format!("{stage}: users-cube tables in {threads} parts");
        same_user_tables(&got, &t, &what);
    }
    let (c5, p5) = clients(store, q, w, 5).unwrap();
    assert_eq!(
        (t.clients, t.protocols),
        (c5, p5),
        "{stage}: clients, one pass"
    );

    // errors by type
    let errs = errors(store, q, w, 100).unwrap();
    let mut by_type: BTreeMap<String, Vec<&SpanRecord>> = BTreeMap::new();
    for s in &m {
        if s.is_error() {
            let t = s
                .mcp
                .error_type
                .clone()
                .unwrap_or_else(|| crate::rollup::ERROR_TYPE_UNSPECIFIED.into());
            by_type.entry(t.to_string()).or_default().push(s);
        }
    }
    assert_eq!(errs.len(), by_type.len(), "{stage}: error types");
    for e in &errs {
        let sp = &by_type[&e.error_type];
        let n: f64 = sp.iter().map(|s| weight(s)).sum();
        assert!(close(e.errors, n), "{stage}: errors of {}", e.error_type);
        let latest = sp
            .iter()
            .max_by_key(|s| (s.start_unix_nano, s.trace_id, s.span_id))
            .unwrap();
        assert_eq!(
            e.example.unwrap().trace_id,
            latest.trace_id,
            "{stage}: example trace"
        );
    }

    // clients and protocol versions
    let (clients, protos) = clients(store, q, w, 100).unwrap();
    let c_calls: f64 = clients.iter().map(|c| c.calls).sum();
    let p_calls: f64 = protos.iter().map(|c| c.calls).sum();
    assert!(
        close(c_calls, s.current.calls) && close(p_calls, s.current.calls),
        "{stage}: clients"
    );
    for c in &clients {
        let sp: Vec<&SpanRecord> = m
            .iter()
            .copied()
            .filter(|s| {
                s.mcp.client_name.as_deref() == c.name.as_deref()
                    && s.mcp.client_version.as_deref() == c.version.as_deref()
            })
            .collect();
        let calls: f64 = sp.iter().map(|s| weight(s)).sum();
        assert!(close(c.calls, calls), "{stage}: client {:?}", c.name);
        let errors: f64 = sp.iter().filter(|s| s.is_error()).map(|s| weight(s)).sum();
        assert!(
            close(c.errors, errors),
            "{stage}: client {:?} errors",
            c.name
        );
        // Fewer than 1,024 users: the distinct count is exact.
        let users: BTreeSet<&str> = sp.iter().filter_map(|s| s.mcp.user_id.as_deref()).collect();
        assert_eq!(
            c.users,
            users.len() as u64,
            "{stage}: client {:?} users",
            c.name
        );
    }

    // overview: per server
    let o = overview(store, q, w).unwrap();
    assert_eq!(o.servers.len(), q.servers.len());
    for row in &o.servers {
        let one = Query {
            servers: vec![row.server],
            ..q.clone()
        };
        check_totals(
            &row.totals,
            &matching(spans, &one, w),
            &format!("{stage} overview server {}", row.server),
        );
    }
    check_totals(&o.totals, &m, &format!("{stage} overview totals"));
    let mut tool_calls: BTreeMap<&str, f64> = BTreeMap::new();
    for s in &m {
        if let Some(t) = &s.mcp.tool {
            *tool_calls.entry(t).or_default() += weight(s);
        }
    }
    match &o.most_called_tool {
        None => assert!(tool_calls.is_empty(), "{stage}: overview most called tool"),
        Some((tool, calls)) => {
            let max = tool_calls.values().copied().fold(0.0, f64::max);
            assert!(
                close(*calls, max) && close(tool_calls[tool.as_str()], *calls),
                "{stage}: overview most called tool {tool} {calls}, brute force {tool_calls:?}"
            );
        }
    }
}

fn queries() -> Vec<Query> {
    let base = Query {
        servers: vec![1, 2, 3],
        ..fixture_query()
    };
    vec![
        base.clone(),
        Query {
            servers: vec![2],
            ..base.clone()
        },
        Query {
            env: Env::Test,
            ..base.clone()
        },
        Query {
            side: crate::rollup::Side::Client,
            ..base.clone()
        },
        Query {
            tool: Some(TOOLS[0].into()),
            ..base.clone()
        },
        Query {
            user: Some(USERS[1].into()),
            ..base.clone()
        },
        Query {
            user: Some(USERS[2].into()),
            tool: Some(TOOLS[1].into()),
            client: Some("cursor".into()),
            ..base.clone()
        },
        Query {
            method: Some("tools/list".into()),
            ..base.clone()
        },
        // Retention: nothing before 10:00 of day 0 (hour-aligned, so blob starts and span starts
        // agree at every granularity).
        Query {
            floor_unix_nano: DAY0 + 10 * HOUR_NANOS,
            ..base.clone()
        },
        Query {
            floor_unix_nano: DAY0 + 34 * HOUR_NANOS,
            user: Some(USERS[0].into()),
            ..base.clone()
        },
        Query {
            tool: Some("no such tool".into()),
            ..base
        },
    ]
}

fn run(specs: &[Spec], ranges: &[(u64, u64)]) {
    let spans: Vec<SpanRecord> = specs.iter().enumerate().map(|(i, s)| span(i, s)).collect();
    let dir = tempfile::tempdir().unwrap();
    // Deltas due after every append: merged after every third one, so the minutes below are read
    // from merged blobs and outstanding deltas together.
    let opts = SpanStoreOptions {
        rollup_deltas_bytes_max: 1,
        ..SpanStoreOptions::default()
    };
    let store = SpanStore::open(dir.path(), opts).unwrap();
    // Several appends, so blobs are merged with what is stored.
    for (i, chunk) in spans.chunks(37).enumerate() {
        store.append(chunk).unwrap();
        if i % 3 == 2 {
            assert!(store.rollup_deltas_due());
            store.merge_rollup_deltas().unwrap();
            assert!(!store.rollup_deltas_due());
        }
    }
    // Asked with a `now` inside day 0, neither day is finished: minute granularity, minute blobs.
    let open_now = DAY0 + 12 * HOUR_NANOS;
    for &(a, b) in ranges {
        let w =
            Window::resolve(DAY0 + a * MINUTE_NANOS, DAY0 + b * MINUTE_NANOS, open_now).unwrap();
        assert_eq!(w.granularity_nanos, MINUTE_NANOS);
        for q in queries() {
            check_all(&store, &spans, &q, &w, "minutes");
        }
    }
    // Compaction (real clock: both days long finished) rolls minutes into hours and days, then
    // seals. Every answer at hour granularity must still equal brute force, also after a reopen.
    let stats = store.compact().unwrap();
    assert_eq!(
        stats.rollup_minutes_rolled > 0,
        spans.iter().any(|s| s.is_mcp_request()),
        "compaction rolls the minutes"
    );
    let now = crate::spans::now_unix_nano();
    let check_rolled = |st: &SpanStore, stage: &str| {
        for &(a, b) in ranges {
            let w = Window::resolve(DAY0 + a * MINUTE_NANOS, DAY0 + b * MINUTE_NANOS, now).unwrap();
            assert_eq!(w.granularity_nanos, HOUR_NANOS);
            for q in queries() {
                check_all(st, &spans, &q, &w, stage);
            }
        }
    };
    check_rolled(&store, "rolled");
    drop(store);
    let store = SpanStore::open(dir.path(), SpanStoreOptions::default()).unwrap();
    check_rolled(&store, "reopened");
    // Late spans into a rolled day land in minute blobs again and are counted once.
    let late: Vec<SpanRecord> = spans
        .iter()
        .take(20)
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            s.span_id = (1_000_000 + i as u64).to_be_bytes();
            s
        })
        .collect();
    store.append(&late).unwrap();
    let mut all = spans.clone();
    all.extend(late);
    for &(a, b) in ranges {
        let w = Window::resolve(DAY0 + a * MINUTE_NANOS, DAY0 + b * MINUTE_NANOS, now).unwrap();
        for q in queries() {
            check_all(&store, &all, &q, &w, "late");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn rollups_equal_brute_force(
        specs in prop::collection::vec(spec(), 0..400),
        ranges in prop::collection::vec((0u64..2880, 1u64..2880), 1..4),
    ) {
        let mut ranges: Vec<(u64, u64)> = ranges.into_iter().map(|(a, len)| (a, (a + len).min(2880).max(a + 1))).collect();
        // Both days whole, so every case also reads day blobs and day overviews once rolled.
        ranges.push((0, 2880));
        run(&specs, &ranges);
    }
}

#[test]
fn whole_days_use_day_blobs_and_agree() {
    // Two full days of one call per minute: a 2-day window reads day blobs, a window starting at
    // 01:00 reads hours; both must agree with brute force.
    let specs: Vec<Spec> = (0..2880)
        .map(|m| Spec {
            server: 1 + (m % 3) as u32,
            test_env: false,
            minute: m,
            second_nanos: 7,
            dur: 1000 + m * 1000,
            tool: Some((m % 4) as usize),
            user: Some((m % 5) as usize),
            client: (m % 3) as usize,
            session: (m % 20) as u8,
            error: (m % 10) as u8,
            kind: 5,
            prob: (m % 5) as usize,
            method: 5,
        })
        .collect();
    run(&specs, &[(0, 2880), (60, 2880), (0, 1440), (1380, 1500)]);
}

/// Delta merges running beside appends (read from a snapshot, written under the write lock) count
/// every span exactly once: none lost between the read and the write, none merged twice.
#[test]
fn delta_merges_beside_appends_count_every_span_once() {
    let specs: Vec<Spec> = (0..3000u64)
        .map(|i| Spec {
            server: 1 + (i % 2) as u32,
            test_env: false,
            minute: (i * 7) % 50,
            second_nanos: i * 13,
            dur: 1000 + (i % 97) * 1000,
            tool: Some((i % 4) as usize),
            user: Some((i % 5) as usize),
            client: (i % 3) as usize,
            session: (i % 20) as u8,
            error: (i % 10) as u8,
            kind: 5,
            prob: (i % 5) as usize,
            method: 5,
        })
        .collect();
    let spans: Vec<SpanRecord> = specs.iter().enumerate().map(|(i, s)| span(i, s)).collect();
    let dir = tempfile::tempdir().unwrap();
    let opts = SpanStoreOptions {
        rollup_deltas_bytes_max: 1,
        ..SpanStoreOptions::default()
    };
    let store = Arc::new(SpanStore::open(dir.path(), opts).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let merger = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut merged = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                merged += store.merge_rollup_deltas().unwrap();
            }
            merged
        })
    };
    for chunk in spans.chunks(10) {
        store.append(chunk).unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let merged = merger.join().unwrap();
    assert!(merged > 0, "the merger ran beside the appends");
    let w = Window::resolve(DAY0, DAY0 + 60 * MINUTE_NANOS, DAY0 + 12 * HOUR_NANOS).unwrap();
    for q in queries() {
        check_all(&store, &spans, &q, &w, "beside appends");
    }
    store.merge_rollup_deltas().unwrap();
    for q in queries() {
        check_all(&store, &spans, &q, &w, "all merged");
    }
}

#[test]
fn window_resolution() {
    let now = DAY0 + 10 * HOUR_NANOS + 17 * MINUTE_NANOS;
    // Today only: minute granularity; 10 h 17 min in 5-minute buckets is 124 points.
    let w = Window::resolve(DAY0 + 3, now, now).unwrap();
    assert_eq!(w.granularity_nanos, MINUTE_NANOS);
    assert_eq!(w.from_unix_nano, DAY0);
    assert_eq!(w.to_unix_nano, now.div_ceil(MINUTE_NANOS) * MINUTE_NANOS);
    assert_eq!(w.bucket_nanos, 5 * MINUTE_NANOS);
    // 24 h reaching into yesterday (finished): hours.
    let w = Window::resolve(now - DAY_NANOS, now, now).unwrap();
    assert_eq!(w.granularity_nanos, HOUR_NANOS);
    assert_eq!(w.from_unix_nano % HOUR_NANOS, 0);
    assert_eq!(w.bucket_nanos, HOUR_NANOS);
    // 30 and 90 days.
    assert_eq!(
        Window::resolve(now - 30 * DAY_NANOS, now, now)
            .unwrap()
            .bucket_nanos,
        6 * HOUR_NANOS
    );
    assert_eq!(
        Window::resolve(now - 90 * DAY_NANOS, now, now)
            .unwrap()
            .bucket_nanos,
        12 * HOUR_NANOS
    );
    assert!(Window::resolve(now, now, now).is_err());
    assert!(Window::resolve(0, 500 * DAY_NANOS, now).is_err());
    let w = Window::resolve(now - 7 * DAY_NANOS, now, now).unwrap();
    assert_eq!(w.previous().to_unix_nano, w.from_unix_nano);
}

/// Organization 1, server 1, live, server side, no filter (the format fixtures' one server).
fn fixture_query() -> Query {
    Query {
        org: 1,
        servers: vec![1],
        env: Env::Live,
        side: crate::rollup::Side::Server,
        from_unix_nano: 0,
        to_unix_nano: 0,
        method: None,
        tool: None,
        user: None,
        client: None,
        floor_unix_nano: 0,
    }
}

/// Every span of organization 1, through the span list.
/// A copy of the fixture day file `tests/data/<version>/2026-11-20.redb` in a fresh directory,
/// opened: (the directory, the file, the store).
fn open_fixture(version: &str) -> (tempfile::TempDir, std::path::PathBuf, SpanStore) {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(version)
        .join("2026-11-20.redb");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("2026-11-20.redb");
    std::fs::copy(fixture, &path).unwrap();
    let store = SpanStore::open(dir.path(), SpanStoreOptions::default()).unwrap();
    (dir, path, store)
}

/// Every span of `spans` is found by its trace id (upgraded files keep their trace-index keys, and
/// are read by their own layout), and a trace id absent from the file finds nothing.
fn assert_traces_found(store: &SpanStore, spans: &[SpanRecord]) {
    for s in spans {
        let got = store.trace(1, &s.trace_id).unwrap();
        assert!(
            got.iter().any(|g| g.span_id == s.span_id),
            "trace {:02x?} found",
            s.trace_id
        );
    }
    assert!(store.trace(1, &[0xab; 16]).unwrap().is_empty());
}

fn all_spans(store: &SpanStore) -> Vec<SpanRecord> {
    let f = crate::spans::SpanFilter::default();
    let mut spans = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = store.list(1, &f, cursor.as_deref(), 1000).unwrap();
        spans.extend(p.spans);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    spans
}

/// A day file written by the released format 2 (no rollups; made by
/// `tests/data/spans-v2/make-fixture.py` with the stop-7 binary): opening it upgrades it in place,
/// rebuilding its rollups from its spans, and every answer equals brute force over those spans.
#[test]
fn format_2_file_is_upgraded_with_rollups_rebuilt() {
    let (_dir, path, store) = open_fixture("spans-v2");
    let day = 1_795_132_800 * 1_000_000_000u64;
    let spans = all_spans(&store);
    assert_eq!(spans.len(), 60, "the fixture's spans read back");
    assert!(
        spans.iter().any(|s| s.sample_probability < 1.0),
        "fixture has sampled spans"
    );
    let now = crate::spans::now_unix_nano();
    let base = fixture_query();
    let w = Window::resolve(day, day + DAY_NANOS, now).unwrap();
    let s = summary(&store, &base, &w).unwrap();
    assert_eq!(s.current.spans, 60);
    assert_traces_found(&store, &spans);
    check_all(&store, &spans, &base, &w, "upgraded");
    check_all(
        &store,
        &spans,
        &Query {
            user: Some("alice".into()),
            ..base.clone()
        },
        &w,
        "upgraded",
    );
    store.compact().unwrap();
    check_all(&store, &spans, &base, &w, "upgraded+rolled");
    drop(store);
    // The upgrade is durable: the file now says the current version and opens without rebuilding.
    assert_current_version(&path);
}

/// A day file written by format 3 (rolled and sealed, without day overviews; made by
/// `tests/data/spans-v3/make-fixture.py` with the binary of commit 55a9a53): opening it writes the
/// overview of each day blob, and every answer (the overview of the whole day reads the day
/// overview) equals brute force over its spans.
#[test]
fn format_3_file_is_upgraded_with_day_overviews() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/spans-v3/2026-11-20.redb"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("2026-11-20.redb");
    std::fs::copy(fixture, &path).unwrap();
    let overviews = |path: &std::path::Path| {
        use redb::ReadableTable;
        let db = redb::Database::open(path).unwrap();
        let read = db.begin_read().unwrap();
        let t = read.open_table(crate::rollup::ROLLUPS).unwrap();
        let mut n = 0;
        for e in t.iter().unwrap() {
            let k = crate::rollup::BlobKey::decode(e.unwrap().0.value()).unwrap();
            n += usize::from(k.res == crate::rollup::Res::DayOverview);
        }
        n
    };
    assert_eq!(overviews(&path), 0, "format 3 has no day overviews");
    let store = SpanStore::open(dir.path(), SpanStoreOptions::default()).unwrap();
    let day = 1_795_132_800 * 1_000_000_000u64;
    let spans = all_spans(&store);
    assert_eq!(spans.len(), 60, "the fixture's spans read back");
    assert_traces_found(&store, &spans);
    let now = crate::spans::now_unix_nano();
    let base = fixture_query();
    for (from, to) in [(day, day + DAY_NANOS), (day + HOUR_NANOS, day + DAY_NANOS)] {
        let w = Window::resolve(from, to, now).unwrap();
        check_all(&store, &spans, &base, &w, "format 3 upgraded");
    }
    drop(store);
    assert_eq!(overviews(&path), 1, "one day blob, one day overview");
    assert_current_version(&path);
}

/// A day file written by format 4 (blocks without row groups, `"MOB2"` bodies; the format-3
/// fixture opened, and so upgraded, by `SpanStore::open` of commit aae5fbe): opening it only
/// writes the new version, its old blocks read back as they are, and every answer equals brute
/// force.
#[test]
fn format_4_file_is_read_and_upgraded() {
    let (_dir, path, store) = open_fixture("spans-v4");
    let day = 1_795_132_800 * 1_000_000_000u64;
    let spans = all_spans(&store);
    assert_eq!(spans.len(), 60, "the fixture's spans read back");
    assert_traces_found(&store, &spans);
    let now = crate::spans::now_unix_nano();
    let w = Window::resolve(day, day + DAY_NANOS, now).unwrap();
    check_all(&store, &spans, &fixture_query(), &w, "format 4 upgraded");
    drop(store);
    assert_current_version(&path);
}

/// A day file written by format 5 (`"MOB3"` bodies with row groups of 64 rows, dictionaries in
/// first-appearance order; made by `examples/format_fixture.rs` at commit c6fea64): opening it
/// only writes the new version; its blocks read back as they are, filters on the bitmap fields
/// (which take the hash-ordered shortcut only on `"MOB4"` bodies) equal brute force, and so does
/// every analytics answer.
#[test]
fn format_5_file_is_read_and_upgraded() {
    use crate::spans::SpanFilter;
    let (_dir, path, store) = open_fixture("spans-v5");
    let day = 1_795_132_800 * 1_000_000_000u64;
    let spans = all_spans(&store);
    assert_eq!(spans.len(), 600, "the fixture's spans read back");
    assert_traces_found(&store, &spans);
    type Field = fn(&SpanRecord) -> Option<&str>;
    let filters: [(&str, Field); 3] = [
        ("user-7@example.com", |s| s.mcp.user_id.as_deref()),
        ("tool_3", |s| s.mcp.tool.as_deref()),
        ("sess-11", |s| s.mcp.session_id.as_deref()),
    ];
    for (k, (value, get)) in filters.iter().enumerate() {
        let mut f = SpanFilter::default();
        match k {
            0 => f.user_id = Some(value.to_string()),
            1 => f.tool = Some(value.to_string()),
            _ => f.session_id = Some(value.to_string()),
        }
        let want: Vec<&SpanRecord> = spans.iter().filter(|s| get(s) == Some(*value)).collect();
        assert!(!want.is_empty(), "{value} is in the fixture");
        let got = store.list(1, &f, None, 1000).unwrap().spans;
        assert_eq!(got.len(), want.len(), "{value}");
        assert!(got.iter().zip(&want).all(|(a, b)| a == *b), "{value}");
    }
    let now = crate::spans::now_unix_nano();
    let w = Window::resolve(day, day + DAY_NANOS, now).unwrap();
    check_all(&store, &spans, &fixture_query(), &w, "format 5 upgraded");
    drop(store);
    assert_current_version(&path);
}

/// A day file written by format 6 (trace-index keys with the block id as it is; made by
/// `examples/format_fixture.rs` at commit 0763d4f): opening it only writes the new version; every
/// span is found by its trace id, a new block is indexed in the file's own key layout beside the
/// old ones, and every analytics answer equals brute force.
#[test]
fn format_6_file_is_read_and_upgraded() {
    let (_dir, path, store) = open_fixture("spans-v6");
    let day = 1_795_132_800 * 1_000_000_000u64;
    let mut spans = all_spans(&store);
    assert_eq!(spans.len(), 600, "the fixture's spans read back");
    assert_traces_found(&store, &spans);
    // A late span lands in a new block of the upgraded file; old and new are both found.
    let mut late = spans[17].clone();
    late.trace_id = [0x5c; 16];
    late.span_id = [0x5c; 8];
    store.append(std::slice::from_ref(&late)).unwrap();
    spans.push(late);
    spans.sort_by_key(|s| std::cmp::Reverse((s.start_unix_nano, s.span_id, s.trace_id)));
    assert_traces_found(&store, &spans);
    let now = crate::spans::now_unix_nano();
    let w = Window::resolve(day, day + DAY_NANOS, now).unwrap();
    check_all(&store, &spans, &fixture_query(), &w, "format 6 upgraded");
    drop(store);
    assert_current_version(&path);
}

/// The chunk lengths of block `block`'s body in the day file at `path`, in order.
fn body_chunk_lens(path: &std::path::Path, block: u64) -> Vec<usize> {
    let db = redb::Database::open(path).unwrap();
    let read = db.begin_read().unwrap();
    let t = read.open_table(crate::spans::BODIES).unwrap();
    let mut lo = [0u8; 12];
    lo[..8].copy_from_slice(&block.to_be_bytes());
    let mut hi = lo;
    hi[8..].copy_from_slice(&u32::MAX.to_be_bytes());
    t.range::<&[u8; 12]>(&lo..=&hi)
        .unwrap()
        .map(|e| e.unwrap().1.value().len())
        .collect()
}

/// The largest block id in the day file at `path`.
fn last_block(path: &std::path::Path) -> u64 {
    use redb::ReadableTable;
    let db = redb::Database::open(path).unwrap();
    let read = db.begin_read().unwrap();
    let t = read.open_table(crate::spans::BODIES).unwrap();
    let (k, _) = t.last().unwrap().unwrap();
    u64::from_be_bytes(k.value()[..8].try_into().unwrap())
}

/// A day file written by format 7 (bodies in 4000-byte chunks; made by
/// `examples/format_fixture.rs` at commit 8211839): opening it only writes the new version; its
/// blocks of several 4000-byte chunks read back, a block appended to it is written in 16,288-byte
/// chunks beside them, and spans of both, found by trace id and listed, equal what was written;
/// every analytics answer equals brute force. Compaction then rewrites old and new together.
#[test]
fn format_7_file_is_read_and_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("2026-11-20.redb");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/spans-v7/2026-11-20.redb"
        ),
        &path,
    )
    .unwrap();
    let multi_chunk = |lens: &[usize], chunk: usize| lens.len() > 1 && lens[0] == chunk;
    assert!(
        (0..=last_block(&path))
            .any(|b| multi_chunk(&body_chunk_lens(&path, b), crate::spans::CHUNK_BYTES_MIN)),
        "the fixture has bodies of several 4000-byte chunks"
    );
    let open = || SpanStore::open(dir.path(), SpanStoreOptions::default()).unwrap();
    let store = open();
    let day = 1_795_132_800 * 1_000_000_000u64;
    let mut spans = all_spans(&store);
    assert_eq!(spans.len(), 600, "the fixture's spans read back");
    assert_traces_found(&store, &spans);
    // 2,000 late spans: one new block whose body takes several chunks of the new length.
    let mut late: Vec<SpanRecord> = (0..2000u32)
        .map(|i| {
            let mut s = spans[i as usize % spans.len()].clone();
            let id = i.to_be_bytes();
            s.trace_id = [0x7c; 16];
            s.trace_id[..4].copy_from_slice(&id);
            s.span_id = [0x7c; 8];
            s.span_id[..4].copy_from_slice(&id);
            s.start_unix_nano += 1 + u64::from(i);
            s.end_unix_nano += 1 + u64::from(i);
            s
        })
        .collect();
    store.append(&late).unwrap();
    drop(store);
    let new = body_chunk_lens(&path, last_block(&path));
    assert!(
        multi_chunk(&new, crate::spans::CHUNK_BYTES),
        "a new body in chunks of the new length: {new:?}"
    );
    let store = open();
    spans.append(&mut late);
    spans.sort_by_key(|s| std::cmp::Reverse((s.start_unix_nano, s.span_id, s.trace_id)));
    let listed = all_spans(&store);
    assert_eq!(listed.len(), spans.len());
    assert!(listed.iter().zip(&spans).all(|(a, b)| a == b), "listed");
    assert_traces_found(&store, &spans);
    let now = crate::spans::now_unix_nano();
    let w = Window::resolve(day, day + DAY_NANOS, now).unwrap();
    check_all(&store, &spans, &fixture_query(), &w, "format 7 upgraded");
    store.compact().unwrap();
    assert_eq!(all_spans(&store).len(), spans.len(), "after compaction");
    assert_traces_found(&store, &spans);
    drop(store);
    assert_current_version(&path);
}

/// The day file at `path` says the current `FORMAT_VERSION`.
fn assert_current_version(path: &std::path::Path) {
    let db = redb::Database::open(path).unwrap();
    let read = db.begin_read().unwrap();
    let meta = read
        .open_table(crate::spans::partition_meta_table())
        .unwrap();
    let v = meta.get("format_version").unwrap().unwrap();
    assert_eq!(
        v.value(),
        crate::spans::FORMAT_VERSION.to_le_bytes().as_slice()
    );
}
