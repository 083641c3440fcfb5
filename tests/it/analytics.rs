//! The analytics API through the real binary: spans sent over OTLP (some sampled), every table
//! compared with the same numbers computed from the span list API, CSV, parameter errors, and
//! organization isolation.

use std::collections::{BTreeMap, BTreeSet};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::gen::{self, now_unix_nano};
use crate::harness::*;

/// Every stored span of `org`, through the span list API.
pub fn all_spans(srv: &Server, s: &Session, org: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/orgs/{org}/spans?limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = s.get(srv, &path);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        out.extend(v["spans"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

fn weight(s: &Value) -> f64 {
    1.0 / s["sample_probability"].as_f64().unwrap()
}

/// A window that covers every span sent in the last hours (analytics align it outward).
fn range_query() -> String {
    let now_ms = now_unix_nano() / 1_000_000;
    format!("from={}&to={}", now_ms - 6 * 3_600_000, now_ms + 60_000)
}

/// The analytics summary and top tools of `org` equal brute force over its stored spans (server
/// side, env live, MCP requests only).
pub fn check_rollups_match_spans(srv: &Server, s: &Session, org: &str) {
    let spans: Vec<Value> = all_spans(srv, s, org)
        .into_iter()
        .filter(|x| x["mcp"]["method"].is_string() && x["kind"] != "client" && x["env"] == "live")
        .collect();
    let q = range_query();
    let sum = s.get(srv, &format!("/api/v1/orgs/{org}/analytics/summary?{q}"));
    assert_eq!(sum.status, 200, "{}", sum.text());
    let cur = &sum.json()["current"];
    let calls: f64 = spans.iter().map(weight).sum();
    let errors: f64 = spans
        .iter()
        .filter(|x| x["is_error"] == true)
        .map(weight)
        .sum();
    assert_eq!(
        cur["spans"].as_u64().unwrap(),
        spans.len() as u64,
        "stored spans"
    );
    assert!(
        close(cur["calls"].as_f64().unwrap(), calls),
        "calls {cur} vs {calls}"
    );
    assert!(
        close(cur["errors"].as_f64().unwrap(), errors),
        "errors {cur} vs {errors}"
    );
    let users: BTreeSet<&str> = spans
        .iter()
        .filter_map(|x| x["mcp"]["user_id"].as_str())
        .collect();
    if users.len() < 1024 {
        assert_eq!(
            cur["users"].as_u64().unwrap(),
            users.len() as u64,
            "distinct users"
        );
    }
    let mut by_tool: BTreeMap<&str, f64> = BTreeMap::new();
    for x in &spans {
        if let Some(t) = x["mcp"]["tool"].as_str() {
            *by_tool.entry(t).or_default() += weight(x);
        }
    }
    let tools = s
        .get(
            srv,
            &format!("/api/v1/orgs/{org}/analytics/tools?{q}&limit=1000"),
        )
        .json();
    let got: BTreeMap<String, f64> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tool"].as_str().unwrap().to_string(),
                t["calls"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), by_tool.len(), "tools: {got:?} vs {by_tool:?}");
    for (t, c) in by_tool {
        assert!(close(got[t], c), "tool {t}: {} vs {c}", got[t]);
    }
}

fn set_probability(span: &mut opentelemetry_proto::tonic::trace::v1::Span, p: f64) {
    span.attributes.push(KeyValue {
        key: "mcpobs.sample.probability".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::DoubleValue(p)),
        }),
        ..Default::default()
    });
}

#[test]
fn analytics_equal_brute_force_and_stay_in_their_organization() {
    let dir = TempDir::new("analytics");
    let srv = Server::start(dir.path());
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    let (server_a, key_a) = admin.create_server(&srv, "default", "alpha");
    let (server_b, key_b) = admin.create_server(&srv, "default", "bravo");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let t0 = now_unix_nano() - 3_600_000_000_000;
    for (key, n) in [(&key_a, 6), (&key_b, 3)] {
        for batch in 0..n {
            let (mut req, _) = gen::request(&mut rng, 200, t0 + batch * 300_000_000_000);
            for span in &mut req.resource_spans[0].scope_spans[0].spans {
                if rng.gen_bool(0.3) {
                    set_probability(span, [0.5, 0.1, 0.25][rng.gen_range(0..3)]);
                }
            }
            let r = post_traces(
                &srv,
                Some(key),
                "application/x-protobuf",
                false,
                &req.encode_to_vec(),
            );
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    check_rollups_match_spans(&srv, &admin, "default");

    // One server, a tool filter, a user filter: each equals brute force over the span list.
    let spans = all_spans(&srv, &admin, "default");
    let q = range_query();
    let tool = spans[0]["mcp"]["tool"].as_str().unwrap().to_string();
    let user = spans[0]["mcp"]["user_id"].as_str().unwrap().to_string();
    for (filter, keep) in [
        (
            format!("server={server_a}"),
            Box::new(|x: &Value| x["server_id"] == server_a) as Box<dyn Fn(&Value) -> bool>,
        ),
        (
            format!("tool={tool}"),
            Box::new(|x: &Value| x["mcp"]["tool"] == tool.as_str()),
        ),
        (
            format!("user={}", user.replace('@', "%40")),
            Box::new(|x: &Value| x["mcp"]["user_id"] == user.as_str()),
        ),
    ] {
        let want: f64 = spans.iter().filter(|x| keep(x)).map(weight).sum();
        let v = admin
            .get(
                &srv,
                &format!("/api/v1/orgs/default/analytics/summary?{q}&{filter}"),
            )
            .json();
        assert!(
            close(v["current"]["calls"].as_f64().unwrap(), want),
            "{filter}: {v} vs {want}"
        );
        assert!(v["current"]["sampled"] == true, "weights applied");
        // The series adds up to the summary.
        let pts = admin
            .get(
                &srv,
                &format!("/api/v1/orgs/default/analytics/series?{q}&{filter}"),
            )
            .json();
        let total: f64 = pts["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["calls"].as_f64().unwrap())
            .sum();
        assert!(close(total, want), "{filter}: series {total} vs {want}");
    }

    // The other tables answer, as JSON and as CSV.
    for table in [
        "users",
        "user-tools",
        "clients",
        "protocols",
        "errors",
        "overview",
    ] {
        let r = admin.get(&srv, &format!("/api/v1/orgs/default/analytics/{table}?{q}"));
        assert_eq!(r.status, 200, "{table}: {}", r.text());
        let r = admin.get(
            &srv,
            &format!("/api/v1/orgs/default/analytics/{table}?{q}&format=csv"),
        );
        assert_eq!(r.status, 200, "{table} csv: {}", r.text());
        assert!(r.content_type.starts_with("text/csv"), "{}", r.content_type);
        assert!(
            r.text().lines().count() >= 2,
            "{table} csv has a header and rows"
        );
    }
    let o = admin
        .get(
            &srv,
            &format!("/api/v1/orgs/default/analytics/overview?{q}"),
        )
        .json();
    assert_eq!(o["servers"].as_array().unwrap().len(), 2);
    assert_eq!(o["most_used_server"]["server_id"], server_a, "{o}");
    let errors = admin
        .get(&srv, &format!("/api/v1/orgs/default/analytics/errors?{q}"))
        .json();
    let first = &errors["errors"][0];
    assert_eq!(first["error_type"], "tool_error");
    // The example trace is a real stored error span.
    let trace = first["example"]["trace_id"].as_str().unwrap();
    let t = admin
        .get(&srv, &format!("/api/v1/orgs/default/traces/{trace}"))
        .json();
    assert_eq!(t["spans"][0]["mcp"]["error_type"], "tool_error");

    // Ranges and parameters.
    for range in ["24h", "7d", "30d", "90d"] {
        let r = admin.get(
            &srv,
            &format!("/api/v1/orgs/default/analytics/summary?range={range}"),
        );
        assert_eq!(r.status, 200, "{range}");
        assert!(close(
            r.json()["current"]["spans"].as_f64().unwrap(),
            spans.len() as f64
        ));
    }
    for bad in [
        "range=1y",
        "env=prod",
        "bogus=1",
        "limit=0",
        "from=5&to=1",
        "range=7d&from=1",
        "format=xml",
    ] {
        let r = admin.get(
            &srv,
            &format!("/api/v1/orgs/default/analytics/summary?{bad}"),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    assert_eq!(
        admin
            .get(&srv, "/api/v1/orgs/default/analytics/nonsense")
            .status,
        404
    );
    let test_env = admin
        .get(
            &srv,
            &format!("/api/v1/orgs/default/analytics/summary?{q}&env=test"),
        )
        .json();
    assert_eq!(
        test_env["current"]["spans"], 0,
        "live spans are not test analytics"
    );

    // Another organization sees none of it.
    let r = admin.send(
        &srv,
        "POST",
        "/api/v1/users",
        serde_json::json!({ "username": "bob", "email": "bob@example.com", "password": "bobs-long-password" }),
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    let bob = login(&srv, "bob", "bobs-long-password").unwrap();
    let r = bob.send(
        &srv,
        "POST",
        "/api/v1/orgs",
        serde_json::json!({ "slug": "beta", "name": "Beta" }),
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    for path in [
        format!("/api/v1/orgs/default/analytics/summary?{q}"),
        format!("/api/v1/orgs/default/analytics/overview?{q}&format=csv"),
        format!("/api/v1/orgs/beta/analytics/summary?{q}&server={server_a}"),
    ] {
        assert_eq!(bob.get(&srv, &path).status, 404, "{path}");
    }
    let own = bob
        .get(&srv, &format!("/api/v1/orgs/beta/analytics/overview?{q}"))
        .json();
    assert_eq!(own["servers"].as_array().unwrap().len(), 0);
    assert_eq!(own["totals"]["spans"], 0);
    let _ = server_b;
}
