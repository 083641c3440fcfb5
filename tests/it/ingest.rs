//! OTLP ingest through the real binary: encodings, every error status, limits, fixtures, read-back.

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::gen::{self, now_unix_nano};
use crate::harness::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn setup(tag: &str) -> (TempDir, Server, Session, u64, String) {
    setup_with(tag, None)
}

/// A fresh appliance (optionally with a config file), a logged-in admin, one server and its key.
fn setup_with(tag: &str, config_toml: Option<&str>) -> (TempDir, Server, Session, u64, String) {
    let dir = TempDir::new(tag);
    let srv = Server::start_with(
        dir.path(),
        StartOptions {
            config_toml,
            ..Default::default()
        },
    );
    let s = login(&srv, "admin", ADMIN_PASSWORD).unwrap_or_else(|r| panic!("login: {}", r.text()));
    let (server_id, key) = s.create_server(&srv, "default", tag);
    (dir, srv, s, server_id, key)
}

fn trace(srv: &Server, s: &Session, trace_id: &[u8]) -> Resp {
    s.get(
        srv,
        &format!("/api/v1/orgs/default/traces/{}", hex::encode(trace_id)),
    )
}

fn assert_span_readable(srv: &Server, s: &Session, e: &gen::Expected, server_id: u64) {
    let r = trace(srv, s, &e.trace_id);
    assert_eq!(
        r.status,
        200,
        "trace {}: {}",
        hex::encode(e.trace_id),
        r.text()
    );
    let v = r.json();
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span["span_id"], hex::encode(e.span_id));
    assert_eq!(span["server_id"], server_id);
    assert_eq!(span["env"], "live");
    assert_eq!(span["mcp"]["method"], "tools/call");
    assert_eq!(span["mcp"]["tool"], e.tool.as_str());
    assert_eq!(span["mcp"]["user_id"], e.user.as_str());
    assert_eq!(span["is_error"], e.is_error);
    assert_eq!(span["start_time_unix_nano"], e.start_unix_nano.to_string());
    assert_eq!(span["resource"]["service.name"], "weather-server");
}

#[test]
fn protobuf_json_and_gzip_round_trip() {
    let (_dir, srv, s, server_id, key) = setup("roundtrip");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let now = now_unix_nano() - 60_000_000_000;

    let (req, exp_pb) = gen::request(&mut rng, 20, now);
    let r = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        false,
        &req.encode_to_vec(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type, "application/x-protobuf");
    let resp = ExportTraceServiceResponse::decode(r.body.as_slice()).unwrap();
    assert!(resp.partial_success.is_none() || resp.partial_success.unwrap().rejected_spans == 0);

    let (req, exp_json) = gen::request(&mut rng, 20, now + 1_000_000_000);
    let r = post_traces(
        &srv,
        Some(&key),
        "application/json",
        false,
        &crate::otlp_json::to_json(&req),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type, "application/json");
    let v = r.json();
    assert!(
        v.get("partialSuccess").is_none() || v["partialSuccess"]["rejectedSpans"] == "0",
        "{v}"
    );

    let (req, exp_gz) = gen::request(&mut rng, 20, now + 2_000_000_000);
    let r = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        true,
        &gzip(&req.encode_to_vec()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (req, exp_jgz) = gen::request(&mut rng, 20, now + 3_000_000_000);
    let r = post_traces(
        &srv,
        Some(&key),
        "application/json",
        true,
        &gzip(&crate::otlp_json::to_json(&req)),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    for e in exp_pb
        .iter()
        .chain(&exp_json)
        .chain(&exp_gz)
        .chain(&exp_jgz)
    {
        assert_span_readable(&srv, &s, e, server_id);
    }

    // The list returns all 80, newest first, across pages.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/orgs/default/spans?limit=30".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let v = s.get(&srv, &path).json();
        for span in v["spans"].as_array().unwrap() {
            seen.push(
                span["start_time_unix_nano"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 80);
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "not newest first");

    // Filters: tool, user, status, server, method, min duration.
    let all: Vec<&gen::Expected> = exp_pb
        .iter()
        .chain(&exp_json)
        .chain(&exp_gz)
        .chain(&exp_jgz)
        .collect();
    let tool = &all[0].tool;
    let v = s
        .get(
            &srv,
            &format!("/api/v1/orgs/default/spans?limit=1000&tool={tool}"),
        )
        .json();
    assert_eq!(
        v["spans"].as_array().unwrap().len(),
        all.iter().filter(|e| &e.tool == tool).count()
    );
    let user = &all[0].user;
    let v = s
        .get(
            &srv,
            &format!(
                "/api/v1/orgs/default/spans?limit=1000&user={}",
                urlencode(user)
            ),
        )
        .json();
    assert_eq!(
        v["spans"].as_array().unwrap().len(),
        all.iter().filter(|e| &e.user == user).count()
    );
    let v = s
        .get(&srv, "/api/v1/orgs/default/spans?limit=1000&status=error")
        .json();
    assert_eq!(
        v["spans"].as_array().unwrap().len(),
        all.iter().filter(|e| e.is_error).count()
    );
    let v = s
        .get(
            &srv,
            &format!("/api/v1/orgs/default/spans?limit=1000&server={server_id}&method=tools/call"),
        )
        .json();
    assert_eq!(v["spans"].as_array().unwrap().len(), 80);
    let v = s
        .get(
            &srv,
            "/api/v1/orgs/default/spans?limit=1000&method=tools/list",
        )
        .json();
    assert_eq!(v["spans"].as_array().unwrap().len(), 0);
    let from_ms = (now + 1_000_000_000) / 1_000_000;
    let to_ms = (now + 2_000_000_000) / 1_000_000;
    let v = s
        .get(
            &srv,
            &format!("/api/v1/orgs/default/spans?limit=1000&from={from_ms}&to={to_ms}"),
        )
        .json();
    assert_eq!(v["spans"].as_array().unwrap().len(), 20);
    let r = s.get(&srv, "/api/v1/orgs/default/spans?bogus=1");
    assert_eq!(r.status, 400);
    let r = s.get(&srv, "/api/v1/orgs/default/spans?cursor=not-a-cursor");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = trace(&srv, &s, &[9u8; 16]);
    assert_eq!(r.status, 404);
}

fn urlencode(s: &str) -> String {
    s.replace('@', "%40")
}

fn grpc_status(r: &Resp) -> (i64, String) {
    if r.content_type.starts_with("application/json") {
        let v = r.json();
        (
            v["code"].as_i64().unwrap_or(-1),
            v["message"].as_str().unwrap_or("").to_string(),
        )
    } else {
        // google.rpc.Status: field 1 code (int32), field 2 message (string).
        #[derive(Clone, PartialEq, prost::Message)]
        struct Status {
            #[prost(int32, tag = "1")]
            code: i32,
            #[prost(string, tag = "2")]
            message: String,
        }
        let st = Status::decode(r.body.as_slice()).expect("google.rpc.Status body");
        (st.code as i64, st.message)
    }
}

#[test]
fn every_error_status() {
    let (_dir, srv, s, server_id, key) = setup_with(
        "errors",
        Some("[web]\nbody_bytes_max = 200000\nspans_per_request_max = 100\nretention_days = 30\n"),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let (req, _) = gen::request(&mut rng, 5, now_unix_nano() - 1_000_000_000);
    let pb = req.encode_to_vec();

    // 401: missing, malformed, unknown key.
    for k in [
        None,
        Some("nope"),
        Some("mcpobs_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let r = post_traces(&srv, k, "application/x-protobuf", false, &pb);
        assert_eq!(r.status, 401, "{k:?}: {}", r.text());
        assert_eq!(grpc_status(&r).0, 16);
    }
    // x-api-key is accepted too.
    let r = to_resp(
        agent()
            .post(&srv.url("/v1/traces"))
            .set("content-type", "application/x-protobuf")
            .set("x-api-key", &key)
            .send_bytes(&pb),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // 415: other content types and encodings.
    let r = post_traces(&srv, Some(&key), "text/plain", false, &pb);
    assert_eq!(r.status, 415);
    let r = to_resp(
        agent()
            .post(&srv.url("/v1/traces"))
            .set("content-type", "application/x-protobuf")
            .set("content-encoding", "br")
            .set("authorization", &format!("Bearer {key}"))
            .send_bytes(&pb),
    );
    assert_eq!(r.status, 415);
    // 400: undecodable protobuf, JSON and gzip; body in the request's encoding.
    let r = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        false,
        b"\xff\xff\xff\xff",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.content_type, "application/x-protobuf");
    assert_eq!(grpc_status(&r).0, 3);
    let r = post_traces(&srv, Some(&key), "application/json", false, b"{not json");
    assert_eq!(r.status, 400);
    assert_eq!(grpc_status(&r).0, 3);
    let r = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        true,
        b"not gzip at all",
    );
    assert_eq!(r.status, 400);
    // 413: body over the limit, decompressed body over the limit, too many spans.
    let r = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        false,
        &vec![0u8; 200_001],
    );
    assert_eq!(r.status, 413);
    let bomb = gzip(&vec![0u8; 5_000_000]);
    assert!(bomb.len() < 200_000);
    let r = post_traces(&srv, Some(&key), "application/x-protobuf", true, &bomb);
    assert_eq!(r.status, 413);
    let (big, _) = gen::request(&mut rng, 101, now_unix_nano() - 1_000_000_000);
    let r = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        false,
        &big.encode_to_vec(),
    );
    assert_eq!(r.status, 413, "{}", r.text());

    // partial_success: bad ids, end before start, outside retention; the good span is stored.
    let (mut req, exp) = gen::request(&mut rng, 5, now_unix_nano() - 1_000_000_000);
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans[0].trace_id = vec![1, 2, 3];
    spans[1].span_id = vec![0; 8];
    spans[2].end_time_unix_nano = spans[2].start_time_unix_nano - 1;
    spans[3].start_time_unix_nano = now_unix_nano() - 40 * 86_400 * 1_000_000_000;
    spans[3].end_time_unix_nano = spans[3].start_time_unix_nano + 1;
    let r = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        false,
        &req.encode_to_vec(),
    );
    assert_eq!(r.status, 200);
    let ps = ExportTraceServiceResponse::decode(r.body.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(ps.rejected_spans, 4);
    assert!(!ps.error_message.is_empty());
    let r = post_traces(
        &srv,
        Some(&key),
        "application/json",
        false,
        &crate::otlp_json::to_json(&req),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["partialSuccess"]["rejectedSpans"], "4");
    let r = s.get(
        &srv,
        &format!(
            "/api/v1/orgs/default/traces/{}",
            hex::encode(exp[4].trace_id)
        ),
    );
    assert_eq!(r.status, 200);

    // An empty request is fine.
    let r = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        false,
        &ExportTraceServiceRequest::default().encode_to_vec(),
    );
    assert_eq!(r.status, 200);

    // 403: telemetry disabled for the server.
    let r = s.send(
        &srv,
        "PATCH",
        &format!("/api/v1/orgs/default/servers/{server_id}"),
        json!({ "telemetry_enabled": false }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_traces(&srv, Some(&key), "application/x-protobuf", false, &pb);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(grpc_status(&r).0, 7);
}

#[test]
fn revocation_is_immediate_and_cors_preflight() {
    let (_dir, srv, s, server_id, key) = setup("revoke");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let (req, _) = gen::request(&mut rng, 3, now_unix_nano() - 1_000_000_000);
    let pb = req.encode_to_vec();
    for _ in 0..3 {
        assert_eq!(
            post_traces(&srv, Some(&key), "application/x-protobuf", false, &pb).status,
            200
        );
    }
    let keys = s
        .get(
            &srv,
            &format!("/api/v1/orgs/default/servers/{server_id}/keys"),
        )
        .json();
    let list = keys["keys"].as_array().expect("keys array");
    assert_eq!(list.len(), 1);
    assert!(
        !keys.to_string().contains(&key),
        "listing must never show the secret"
    );
    let key_id = list[0]["id"].as_str().unwrap().to_string();
    let r = s.send(
        &srv,
        "DELETE",
        &format!("/api/v1/orgs/default/servers/{server_id}/keys/{key_id}"),
        Value::Null,
    );
    assert!(r.status == 200 || r.status == 204, "{}", r.text());
    let r = post_traces(&srv, Some(&key), "application/x-protobuf", false, &pb);
    assert_eq!(r.status, 401);

    let r = to_resp(
        agent()
            .request("OPTIONS", &srv.url("/v1/traces"))
            .set("origin", "http://localhost:3000")
            .set("access-control-request-method", "POST")
            .set(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .call(),
    );
    assert!(r.status == 204 || r.status == 200);
    let r2 = agent()
        .request("OPTIONS", &srv.url("/v1/traces"))
        .call()
        .unwrap();
    assert_eq!(r2.header("access-control-allow-origin"), Some("*"));
    assert!(r2
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));
}

/// Every real payload captured from MCP libraries is accepted and normalized.
#[test]
fn real_fixture_payloads() {
    // Fixture timestamps are fixed; allow any age so the test keeps passing as time goes by.
    let (_dir, srv, s, _, key) = setup_with("fixtures", Some("[web]\nretention_days = 36500\n"));
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    let mut posted = 0;
    for entry in std::fs::read_dir(&fixtures).expect("../shared/fixtures") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".meta.json") {
            continue;
        }
        let meta: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let body = std::fs::read(fixtures.join(meta["body_file"].as_str().unwrap())).unwrap();
        let ct = meta["content_type"].as_str().unwrap();
        let gz = meta["content_encoding"].as_str() == Some("gzip");
        let r = post_traces(&srv, Some(&key), ct, gz, &body);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        posted += 1;
    }
    assert!(posted >= 11, "expected every fixture, posted {posted}");
    // The fastmcp server spans carry tool, session and protocol; check a few canonical values.
    let v = s
        .get(
            &srv,
            "/api/v1/orgs/default/spans?limit=1000&tool=get_weather&method=tools/call",
        )
        .json();
    let spans = v["spans"].as_array().unwrap();
    assert!(spans.len() >= 5, "{}", spans.len());
    assert!(spans.iter().all(|s| s["mcp"]["tool"] == "get_weather"));
    let v = s
        .get(
            &srv,
            "/api/v1/orgs/default/spans?limit=1000&status=error&tool=fail_tool",
        )
        .json();
    let errs = v["spans"].as_array().unwrap();
    assert!(!errs.is_empty());
    assert!(errs.iter().any(|s| s["mcp"]["error_type"] == "tool_error"));
    let v = s
        .get(
            &srv,
            "/api/v1/orgs/default/spans?limit=1000&method=resources/read&status=error",
        )
        .json();
    assert!(v["spans"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["mcp"]["error_type"] == "-32602"));
}

/// A full ingest queue answers 429 with Retry-After at once, and loses nothing it acknowledged.
#[test]
fn backpressure_is_429_with_retry_after() {
    // One waiting request at most, one request per commit: concurrent senders must overflow.
    let (_dir, srv, s, _, key) = setup_with("backpressure", Some("[web]\ningest_queue_requests_max = 1\ngroup_commit_spans_max = 1\nretry_after_secs = 2\n"));
    let url = srv.url("/v1/traces");
    let mut handles = Vec::new();
    for t in 0..8u64 {
        let (key, url) = (key.clone(), url.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(100 + t);
            let mut out = Vec::new();
            for _ in 0..25 {
                let (req, exp) = gen::request(&mut rng, 200, now_unix_nano() - 1_000_000_000);
                let r = to_resp(
                    agent()
                        .post(&url)
                        .set("content-type", "application/x-protobuf")
                        .set("authorization", &format!("Bearer {key}"))
                        .send_bytes(&req.encode_to_vec()),
                );
                out.push((r.status, r.retry_after.clone(), grpc_status(&r).0, exp));
            }
            out
        }));
    }
    let results: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let throttled: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert!(!throttled.is_empty(), "no request was throttled");
    for (status, retry_after, code, _) in &results {
        assert!(
            *status == 200 || *status == 429,
            "unexpected status {status}"
        );
        if *status == 429 {
            assert_eq!(retry_after.as_deref(), Some("2"));
            assert_eq!(*code, 8);
        }
    }
    for (_, _, _, exp) in results.iter().filter(|r| r.0 == 200).take(10) {
        let r = s.get(
            &srv,
            &format!(
                "/api/v1/orgs/default/traces/{}",
                hex::encode(exp[0].trace_id)
            ),
        );
        assert_eq!(r.status, 200);
    }
}
