//! Span export through the real binary: JSON Lines and CSV equal the span list (same spans, same
//! order, same fields) with and without filters, members may export, other organizations get 404
//! and never see a span of another, a large export streams to the end, a client that goes away
//! stops the export, and a slow download does not hold up a graceful shutdown.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use prost::Message;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::gen::{self, now_unix_nano};
use crate::harness::*;

/// GET with a session cookie: (status, content type, content disposition, body).
fn get_export(srv: &Server, s: &Session, path: &str) -> (u16, String, String, Vec<u8>) {
    let r = agent().get(&srv.url(path)).set("cookie", &s.cookie).call();
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = r.status();
    let ctype = r.header("content-type").unwrap_or("").to_string();
    let disp = r.header("content-disposition").unwrap_or("").to_string();
    let mut body = Vec::new();
    r.into_reader().read_to_end(&mut body).unwrap();
    (status, ctype, disp, body)
}

/// The JSON Lines export of `org` with `query`.
fn export_jsonl(srv: &Server, s: &Session, org: &str, query: &str) -> Vec<Value> {
    let path = format!("/api/v1/orgs/{org}/spans/export?format=jsonl&{query}");
    let (status, ctype, _, body) = get_export(srv, s, &path);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    assert_eq!(ctype, "application/x-ndjson");
    let text = String::from_utf8(body).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "every line ends");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The CSV export of `org` with `query`, as header + rows.
fn export_csv(
    srv: &Server,
    s: &Session,
    org: &str,
    query: &str,
) -> (Vec<String>, Vec<Vec<String>>) {
    let path = format!("/api/v1/orgs/{org}/spans/export?format=csv&{query}");
    let (status, ctype, _, body) = get_export(srv, s, &path);
    assert_eq!(status, 200, "{path}");
    assert_eq!(ctype, "text/csv; charset=utf-8");
    let mut r = csv::Reader::from_reader(body.as_slice());
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// Every page of the span list of `org` with `query`.
fn list(srv: &Server, s: &Session, org: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/orgs/{org}/spans?limit=1000&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = s.get(srv, &path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = r.json();
        out.extend(v["spans"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// CSV rows hold the list's values, column by column.
fn check_csv(header: &[String], rows: &[Vec<String>], want: &[Value]) {
    assert_eq!(header[..3], ["trace_id", "span_id", "parent_span_id"]);
    assert_eq!(rows.len(), want.len());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (row, s) in rows.iter().zip(want) {
        let cell = |name: &str| row[col(name)].as_str();
        assert_eq!(cell("trace_id"), s["trace_id"]);
        assert_eq!(cell("span_id"), s["span_id"]);
        assert_eq!(
            cell("parent_span_id"),
            s["parent_span_id"].as_str().unwrap_or("")
        );
        assert_eq!(cell("server_id"), s["server_id"].to_string());
        assert_eq!(cell("env"), s["env"]);
        assert_eq!(cell("name"), s["name"]);
        assert_eq!(cell("kind"), s["kind"]);
        assert_eq!(cell("start_time_unix_nano"), s["start_time_unix_nano"]);
        assert_eq!(cell("end_time_unix_nano"), s["end_time_unix_nano"]);
        let d: f64 = cell("duration_ms").parse().unwrap();
        assert_eq!(d, s["duration_ms"].as_f64().unwrap());
        assert_eq!(cell("status_code"), s["status"]["code"]);
        assert_eq!(cell("is_error"), s["is_error"].to_string());
        for f in [
            "method",
            "tool",
            "request_id",
            "session_id",
            "user_id",
            "client_name",
        ] {
            assert_eq!(cell(f), s["mcp"][f].as_str().unwrap_or(""), "{f}");
        }
        assert_eq!(cell("service_name"), s["service_name"]);
        let p: f64 = cell("sample_probability").parse().unwrap();
        assert_eq!(p, s["sample_probability"].as_f64().unwrap());
        let attrs: Value = serde_json::from_str(cell("attributes")).unwrap();
        assert_eq!(attrs, s["attributes"]);
    }
}

fn post(srv: &Server, key: &str, req: &[u8]) {
    let r = post_traces(srv, Some(key), "application/x-protobuf", false, req);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn export_equals_the_span_list_and_stays_in_its_organization() {
    let dir = TempDir::new("export");
    let srv = Server::start(dir.path());
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    let (server_a, key_a) = admin.create_server(&srv, "default", "alpha");
    let (server_a2, key_a2) = admin.create_server(&srv, "default", "alpha-two");
    for (name, email) in [("bob", "bob@example.com"), ("carol", "carol@example.com")] {
        let r = admin.send(
            &srv,
            "POST",
            "/api/v1/users",
            json!({ "username": name, "email": email, "password": "a-long-password-1" }),
        );
        assert!(r.status == 200 || r.status == 201, "{}", r.text());
    }
    let r = admin.send(
        &srv,
        "POST",
        "/api/v1/orgs/default/members",
        json!({ "username": "carol", "role": "member" }),
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    let carol = login(&srv, "carol", "a-long-password-1").unwrap();
    let bob = login(&srv, "bob", "a-long-password-1").unwrap();
    let r = bob.send(
        &srv,
        "POST",
        "/api/v1/orgs",
        json!({ "slug": "beta", "name": "Beta" }),
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    let (server_b, key_b) = bob.create_server(&srv, "beta", "beta-server");

    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let t0 = now_unix_nano() - 3_600_000_000_000;
    let mut sent_a = 0;
    for i in 0..4 {
        let (req, exp) = gen::request(&mut rng, 300, t0 + i * 400_000_000);
        let body = req.encode_to_vec();
        post(&srv, &key_a, &body);
        // The very same spans (same ids) in another organization: they must never show here.
        post(&srv, &key_b, &body);
        sent_a += exp.len();
    }
    let (req, exp2) = gen::request(&mut rng, 200, t0 + 100_000_000);
    post(&srv, &key_a2, &req.encode_to_vec());

    // A member exports everything: the same spans as the list, in the same order, same fields.
    let want = list(&srv, &carol, "default", "");
    assert_eq!(want.len(), sent_a + exp2.len());
    let (status, _, disp, _) = get_export(&srv, &carol, "/api/v1/orgs/default/spans/export");
    assert_eq!(status, 200);
    assert_eq!(
        disp,
        "attachment; filename=\"spans-default-earliest-latest.jsonl\""
    );
    let got = export_jsonl(&srv, &carol, "default", "");
    assert_eq!(got, want, "JSON Lines export equals the span list");
    let servers: BTreeSet<u64> = got
        .iter()
        .map(|s| s["server_id"].as_u64().unwrap())
        .collect();
    assert_eq!(servers, BTreeSet::from([server_a, server_a2]));
    let (header, rows) = export_csv(&srv, &carol, "default", "");
    check_csv(&header, &rows, &want);

    // Filters mean what they mean in the list.
    let probe = &want[want.len() / 2];
    let from_ms = t0 / 1_000_000 + 500;
    let filters = [
        format!("server={server_a2}"),
        format!("server={server_a}&server={server_a2}&status=error"),
        "tool=get_weather&status=ok".to_string(),
        format!("user={}", probe["mcp"]["user_id"].as_str().unwrap()),
        format!("session={}", probe["mcp"]["session_id"].as_str().unwrap()),
        "method=tools/call&min_duration_ms=40.5".to_string(),
        format!("from={from_ms}&to={}", from_ms + 700),
        format!("trace_id={}", probe["trace_id"].as_str().unwrap()),
        "error_type=tool_error".to_string(),
        "client=claude-desktop&tool=get_weather".to_string(),
        "env=test".to_string(),
        format!("server={server_b}"),
    ];
    for (k, q) in filters.iter().enumerate() {
        let want = list(&srv, &carol, "default", q);
        // All but the last two (test env, another org's server) select something, not all.
        assert_eq!(
            want.is_empty(),
            k >= filters.len() - 2,
            "{q}: {} spans",
            want.len()
        );
        assert!(want.len() < sent_a + exp2.len(), "{q}");
        let got = export_jsonl(&srv, &carol, "default", q);
        assert_eq!(got.len(), want.len(), "{q}");
        assert_eq!(got, want, "{q}");
        let (header, rows) = export_csv(&srv, &carol, "default", q);
        check_csv(&header, &rows, &want);
    }
    assert!(list(&srv, &carol, "default", &filters[0]).len() == exp2.len());
    // Every generated error carries `error.type` tool_error; every span the one client name.
    assert_eq!(
        list(&srv, &carol, "default", "error_type=tool_error"),
        list(&srv, &carol, "default", "status=error")
    );
    assert!(list(&srv, &carol, "default", "error_type=timeout").is_empty());
    assert!(list(&srv, &carol, "default", "client=cursor").is_empty());
    let (_, _, disp, _) = get_export(
        &srv,
        &carol,
        &format!(
            "/api/v1/orgs/default/spans/export?format=csv&{}",
            filters[6]
        ),
    );
    assert_eq!(
        disp,
        format!(
            "attachment; filename=\"spans-default-{from_ms}-{}.csv\"",
            from_ms + 700
        )
    );

    // Bob is no member of default: 404, as for an organization that does not exist.
    for path in [
        "/api/v1/orgs/default/spans/export",
        "/api/v1/orgs/default/spans/export?format=csv",
        "/api/v1/orgs/nope/spans/export",
    ] {
        let (status, _, _, body) = get_export(&srv, &bob, path);
        assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
    }
    let anonymous = agent()
        .get(&srv.url("/api/v1/orgs/default/spans/export"))
        .call();
    assert_eq!(to_resp(anonymous).status, 401);
    for bad in [
        "cursor=c1",
        "limit=10",
        "format=xml",
        "bogus=1",
        "status=maybe",
        "from=soon",
    ] {
        let path = format!("/api/v1/orgs/default/spans/export?{bad}");
        let (status, ctype, _, _) = get_export(&srv, &carol, &path);
        assert_eq!(status, 400, "{bad}");
        assert_eq!(ctype, "application/json");
    }
    // Bob's own export holds his copies only, on his server.
    let own = export_jsonl(&srv, &bob, "beta", "");
    assert_eq!(own.len(), sent_a);
    assert!(own.iter().all(|s| s["server_id"] == server_b));
    assert_eq!(own, list(&srv, &bob, "beta", ""));
    assert!(export_jsonl(&srv, &bob, "beta", &format!("server={server_a}")).is_empty());
}

#[test]
fn a_large_export_streams_to_the_end_and_stops_when_the_client_or_the_server_leaves() {
    let dir = TempDir::new("export-large");
    let srv = Server::start(dir.path());
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    let (_, key) = admin.create_server(&srv, "default", "busy");
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    let t0 = now_unix_nano() - 3_600_000_000_000;
    let (batches, per) = (100usize, 500usize);
    for i in 0..batches {
        let (req, _) = gen::request(&mut rng, per, t0 + i as u64 * per as u64 * 1_000_000);
        post(&srv, &key, &req.encode_to_vec());
    }
    let total = batches * per;

    let got = export_jsonl(&srv, &admin, "default", "");
    assert_eq!(got.len(), total);
    let ids: BTreeSet<&str> = got.iter().map(|s| s["span_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), total, "every span once");
    let starts: Vec<u64> = got
        .iter()
        .map(|s| s["start_time_unix_nano"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let (_, rows) = export_csv(&srv, &admin, "default", "");
    assert_eq!(rows.len(), total);

    // A client that reads a little and hangs up stops the export (tens of MB would not fit in
    // the socket buffers, so the producer is still running when the connection goes).
    let addr = srv.base.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "GET /api/v1/orgs/default/spans/export HTTP/1.1\r\nHost: t\r\nCookie: {}\r\n\r\n",
        admin.cookie
    )
    .unwrap();
    let mut first = vec![0u8; 64 << 10];
    conn.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"));
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !srv
        .log()
        .contains("span export stopped: the client went away")
    {
        assert!(
            Instant::now() < deadline,
            "export did not stop:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server goes on serving exports.
    let q = "tool=get_weather&status=error";
    assert_eq!(
        export_jsonl(&srv, &admin, "default", q),
        list(&srv, &admin, "default", q)
    );
}
