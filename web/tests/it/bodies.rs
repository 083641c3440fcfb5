//! Request bodies and routing edges: 415 without JSON content type, 400 for bad JSON or
//! invalid values, 413 over the cap (with and without Content-Length), 405, fall-through.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warp::Filter;

use crate::support::Harness;

#[tokio::test]
async fn content_type_json_syntax_and_validation() {
    let h = Harness::new();
    let admin = h.admin().await;
    let path = "/api/v1/orgs/default/servers";
    let no_type = h.request("POST", path, &admin).body(r#"{"name":"s"}"#);
    assert_eq!(h.send(no_type).await.status, 415);
    let text = h
        .request("POST", path, &admin)
        .header("content-type", "text/plain")
        .body(r#"{"name":"s"}"#);
    assert_eq!(h.send(text).await.status, 415);
    let broken = h
        .request("POST", path, &admin)
        .header("content-type", "application/json")
        .body(r#"{"name":"#);
    let r = h.send(broken).await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    for (body, needle) in [
        (
            json!({ "name": "s", "sampling_rate": 1.5 }),
            "sampling_rate",
        ),
        (
            json!({ "name": "s", "sampling_rate": "high" }),
            "invalid type",
        ),
        (json!({ "name": "" }), "name"),
        (json!({ "name": "s", "colour": "red" }), "unknown field"),
        (json!({}), "missing field"),
    ] {
        let r = h.post(path, &admin, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let msg = r.json["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let r = h
        .post(
            "/api/v1/orgs",
            &admin,
            json!({ "slug": "Not A Slug", "name": "x" }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("slug"));
    let r = h
        .post(
            "/api/v1/users",
            &admin,
            json!({ "username": "ok", "password": "short" }),
        )
        .await;
    assert_eq!(r.status, 400);
    // Nothing was created by any of these.
    assert_eq!(h.get(path, &admin).await.json["servers"], json!([]));
}

#[tokio::test]
async fn body_cap_with_content_length() {
    let config = mcp_obs_web::WebConfig {
        api_body_bytes_max: 256,
        ..Default::default()
    };
    let h = Harness::with_config(config);
    let admin = h.admin().await;
    let r = h
        .post(
            "/api/v1/orgs/default/servers",
            &admin,
            json!({ "name": "x".repeat(300) }),
        )
        .await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
}

/// A chunked body (no Content-Length) over a real socket is cut off at the cap as well.
#[tokio::test]
async fn body_cap_without_content_length_over_tcp() {
    let config = mcp_obs_web::WebConfig {
        api_body_bytes_max: 256,
        ..Default::default()
    };
    let h = Harness::with_config(config);
    let admin = h.admin().await;
    let (addr, server) = warp::serve(h.routes.clone()).bind_ephemeral(([127, 0, 0, 1], 0));
    tokio::spawn(server);

    let send_chunked = |chunks: Vec<String>| {
        let cookie = admin.cookie.clone().unwrap();
        let csrf = admin.csrf.clone().unwrap();
        async move {
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /api/v1/orgs/default/servers HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\nCookie: mcpobs_session={cookie}\r\nX-CSRF-Token: {csrf}\r\nConnection: close\r\n\r\n"
            );
            conn.write_all(head.as_bytes()).await.unwrap();
            for c in &chunks {
                // The server may answer 413 and close before all chunks are written.
                if conn
                    .write_all(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let _ = conn.write_all(b"0\r\n\r\n").await;
            let mut out = Vec::new();
            let _ = conn.read_to_end(&mut out).await;
            String::from_utf8_lossy(&out).into_owned()
        }
    };
    let big = vec![
        r#"{"name":""#.to_string(),
        "x".repeat(200),
        "y".repeat(200),
        r#""}"#.to_string(),
    ];
    let resp = send_chunked(big).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    let small = vec![r#"{"name":"#.to_string(), r#""chunked"}"#.to_string()];
    let resp = send_chunked(small).await;
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
}

#[tokio::test]
async fn methods_and_foreign_paths() {
    let h = Harness::new();
    let admin = h.admin().await;
    let r = h.call("PUT", "/api/v1/orgs", &admin, Some(json!({}))).await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    // Paths that are not ours are rejected so other route groups (span reads) can take them.
    for path in [
        "/api/v1/orgs/default/spans",
        "/api/v1/orgs/default/traces/abc",
        "/v1/traces",
        "/",
    ] {
        let matched = warp::test::request().path(path).matches(&h.routes).await;
        assert!(!matched, "{path} should fall through");
    }
    let with_fallback = h.routes.clone().or(warp::any().map(|| "fallback"));
    let resp = warp::test::request()
        .method("POST")
        .path("/api/v1/orgs/default/spans")
        .body("x")
        .reply(&with_fallback)
        .await;
    assert_eq!(resp.body().as_ref(), b"fallback");
}
