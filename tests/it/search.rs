//! Text search and suggestions through the real binary: `q` on the span list (with filters and
//! cursors), `/suggest`, limits answered with 400, tenancy, and a kill -9 right after
//! acknowledged ingest with the index's commits held back: after the restart the indexer
//! re-reads from its watermark and search and suggestions find everything.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::gen::{self, kv, now_unix_nano, Expected};
use crate::harness::*;

/// Every span of a search, following cursors.
fn search_all(srv: &Server, s: &Session, org: &str, query: &str, page: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/orgs/{org}/spans?{query}&limit={page}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = s.get(srv, &path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = r.json();
        let spans = v["spans"].as_array().unwrap();
        assert!(spans.len() <= page);
        out.extend(spans.iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn trace_ids(spans: &[Value]) -> BTreeSet<String> {
    spans
        .iter()
        .map(|s| s["trace_id"].as_str().unwrap().to_string())
        .collect()
}

fn suggest(srv: &Server, s: &Session, org: &str, query: &str) -> Resp {
    s.get(srv, &format!("/api/v1/orgs/{org}/suggest?{query}"))
}

fn suggest_values(srv: &Server, s: &Session, org: &str, query: &str) -> Vec<String> {
    let r = suggest(srv, s, org, query);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Polls suggestions until they equal `want` (the index lags by a commit interval or so).
fn wait_for_suggestions(srv: &Server, s: &Session, org: &str, query: &str, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = suggest_values(srv, s, org, query);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "suggestions {query}: got {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post(srv: &Server, key: &str, req: &ExportTraceServiceRequest) {
    let r = post_traces(
        srv,
        Some(key),
        "application/x-protobuf",
        false,
        &req.encode_to_vec(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Replaces the value of attribute `key` on every span of `req`.
fn set_attr(req: &mut ExportTraceServiceRequest, key: &str, value: &str) {
    for span in &mut req.resource_spans[0].scope_spans[0].spans {
        for a in &mut span.attributes {
            if a.key == key {
                *a = kv(key, value);
            }
        }
        if key == "gen_ai.tool.name" {
            span.name = format!("tools/call {value}");
        }
    }
}

#[test]
fn search_and_suggest_through_the_api() {
    let dir = TempDir::new("search");
    let srv = Server::start(dir.path());
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    let (_, key) = admin.create_server(&srv, "default", "search-server");
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let t0 = now_unix_nano() - 60_000_000_000;
    let mut all: Vec<Expected> = Vec::new();
    for i in 0..6u64 {
        let (req, exp) = gen::request(&mut rng, 100, t0 + i * 200_000_000);
        post(&srv, &key, &req);
        all.extend(exp);
    }
    // Searching right after the 200, before the index commits, already finds everything:
    // blocks above the index watermark are verified directly.
    let want: BTreeSet<String> = all
        .iter()
        .filter(|e| e.tool == "search_docs")
        .map(|e| hex::encode(e.trace_id))
        .collect();
    assert!(!want.is_empty());
    let got = search_all(&srv, &admin, "default", "q=search_docs", 7);
    assert_eq!(trace_ids(&got), want);
    for s in &got {
        assert_eq!(s["mcp"]["tool"], "search_docs", "{s}");
    }
    // Newest first.
    let starts: Vec<u64> = got
        .iter()
        .map(|s| s["start_time_unix_nano"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]));
    // Combined with filters; phrase and word semantics.
    let errors: BTreeSet<String> = all
        .iter()
        .filter(|e| e.tool == "search_docs" && e.is_error)
        .map(|e| hex::encode(e.trace_id))
        .collect();
    let got = search_all(&srv, &admin, "default", "q=search_docs&status=error", 50);
    assert_eq!(trace_ids(&got), errors);
    let user = &all[0].user;
    let by_user: BTreeSet<String> = all
        .iter()
        .filter(|e| &e.user == user)
        .map(|e| hex::encode(e.trace_id))
        .collect();
    let got = search_all(
        &srv,
        &admin,
        "default",
        &format!("q={}", user.to_uppercase()),
        1000,
    );
    assert_eq!(trace_ids(&got), by_user);
    assert!(search_all(&srv, &admin, "default", "q=nosuchword", 10).is_empty());

    // Limits: 400 with a message.
    for bad in [
        format!("q={}", "x".repeat(513)),
        "q=%21%21%21".to_string(),
        format!(
            "q={}",
            (0..17)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join("+")
        ),
    ] {
        let r = admin.get(&srv, &format!("/api/v1/orgs/default/spans?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "bad_request");
    }
    for bad in [
        "field=method",
        "prefix=a",
        "field=tool&limit=0",
        "field=tool&limit=101",
        "field=tool&server=x",
        "field=tool&zzz=1",
    ] {
        assert_eq!(suggest(&srv, &admin, "default", bad).status, 400, "{bad}");
    }

    // Suggestions come from the index: they appear within a commit interval or two.
    let tools: Vec<String> = ["search_docs", "send_email", "summarize"]
        .iter()
        .map(|s| s.to_string())
        .filter(|t| all.iter().any(|e| &e.tool == t))
        .collect();
    wait_for_suggestions(&srv, &admin, "default", "field=tool&prefix=S", &tools);
    let mut users: Vec<String> = all.iter().map(|e| e.user.clone()).collect();
    users.sort();
    users.dedup();
    users.truncate(5);
    wait_for_suggestions(
        &srv,
        &admin,
        "default",
        "field=user&prefix=user-&limit=5",
        &users,
    );

    // Tenancy: bob's organization has its own tool; neither side sees the other's values.
    let r = admin.send(
        &srv,
        "POST",
        "/api/v1/users",
        json!({ "username": "bob", "email": "bob@example.com", "password": "bobs-long-password" }),
    );
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
    let bob = login(&srv, "bob", "bobs-long-password").unwrap();
    let r = bob.send(
        &srv,
        "POST",
        "/api/v1/orgs",
        json!({ "slug": "beta", "name": "Beta" }),
    );
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
    let (beta_server, key_b) = bob.create_server(&srv, "beta", "beta-server");
    let (mut req, exp_b) = gen::request(&mut rng, 50, t0);
    set_attr(&mut req, "gen_ai.tool.name", "beta_only_tool");
    set_attr(&mut req, "enduser.id", "beta-user");
    post(&srv, &key_b, &req);
    let beta_ids: BTreeSet<String> = exp_b.iter().map(|e| hex::encode(e.trace_id)).collect();
    assert_eq!(
        trace_ids(&search_all(&srv, &bob, "beta", "q=beta_only_tool", 20)),
        beta_ids
    );
    wait_for_suggestions(
        &srv,
        &bob,
        "beta",
        "field=tool",
        &["beta_only_tool".to_string()],
    );
    wait_for_suggestions(&srv, &bob, "beta", "field=user", &["beta-user".to_string()]);
    // Org default sees none of it, even naming beta's server.
    assert!(search_all(&srv, &admin, "default", "q=beta_only_tool", 20).is_empty());
    assert!(search_all(
        &srv,
        &admin,
        "default",
        &format!("q=beta&server={beta_server}"),
        20
    )
    .is_empty());
    for q in [
        "field=tool&prefix=beta",
        "field=user&prefix=beta",
        &format!("field=tool&server={beta_server}"),
    ] {
        assert!(suggest_values(&srv, &admin, "default", q).is_empty(), "{q}");
    }
    // Bob sees nothing of org default: its values are not in his suggestions or searches.
    assert!(search_all(&srv, &bob, "beta", "q=search_docs", 20).is_empty());
    assert_eq!(
        suggest_values(&srv, &bob, "beta", "field=tool"),
        ["beta_only_tool"]
    );
    assert_eq!(
        suggest_values(&srv, &bob, "beta", "field=user"),
        ["beta-user"]
    );
    // And cannot ask org default at all (404, as for a missing organization).
    assert_eq!(suggest(&srv, &bob, "default", "field=tool").status, 404);
    assert_eq!(
        bob.get(&srv, "/api/v1/orgs/default/spans?q=search_docs")
            .status,
        404
    );
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn search_finds_everything_after_kill_9() {
    let dir = TempDir::new("search-crash");
    // The first run never commits its index on time: everything acknowledged is unindexed when
    // it is killed.
    let slow = "[storage]\nsearch_commit_interval_ms = 600000\n";
    let srv = Server::start_with(
        dir.path(),
        StartOptions {
            config_toml: Some(slow),
            ..StartOptions::default()
        },
    );
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    let (_, key) = admin.create_server(&srv, "default", "crash-search");
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let t0 = now_unix_nano() - 30_000_000_000;
    let mut users = Vec::new();
    let mut ids = BTreeSet::new();
    for k in 0..40u64 {
        let (mut req, exp) = gen::request(&mut rng, 25, t0 + k * 30_000_000);
        let user = format!("crash-user-{k:03}");
        set_attr(&mut req, "enduser.id", &user);
        post(&srv, &key, &req);
        users.push(user);
        ids.extend(exp.iter().map(|e| hex::encode(e.trace_id)));
    }
    srv.kill9();

    let srv = Server::start(dir.path());
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    // Suggestions are answered from the index only: they are complete once the restart has
    // re-indexed every block above the (empty) watermark.
    wait_for_suggestions(
        &srv,
        &admin,
        "default",
        "field=user&prefix=crash-user&limit=100",
        &users,
    );
    let got = search_all(&srv, &admin, "default", "q=crash", 1000);
    assert_eq!(trace_ids(&got), ids);
    for user in [&users[0], &users[17], &users[39]] {
        let got = search_all(&srv, &admin, "default", &format!("q={user}"), 100);
        assert_eq!(got.len(), 25, "{user}");
    }
    // A graceful stop commits; the next start has nothing to re-read and still finds it all.
    assert_eq!(srv.terminate(), Some(0));
    let srv = Server::start(dir.path());
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    assert_eq!(
        suggest_values(
            &srv,
            &admin,
            "default",
            "field=user&prefix=crash-user-03&limit=100"
        ),
        users[30..40].to_vec()
    );
    assert_eq!(
        trace_ids(&search_all(&srv, &admin, "default", "q=crash", 1000)),
        ids
    );
    assert_eq!(srv.terminate(), Some(0));
}
