//! Links and exports that must mean exactly what the page shows: the export of a text-searched
//! span list, and the analytics `_OTHER` error row's link to the span list.

use serde_json::{json, Value};

use crate::pages::get;
use crate::support::{Client, Harness, Resp};

/// Through every route of the appliance (span reads and export are not in `api::routes`).
async fn api_get(h: &Harness, path: &str, c: &Client) -> Resp {
    h.send_all(h.request("GET", path, c)).await
}

fn attr(k: &str, v: &str) -> Value {
    json!({ "key": k, "value": { "stringValue": v } })
}

/// Ingests `spans` as (method, tool, status code, error.type) with server key `key`.
async fn ingest(h: &Harness, key: &str, spans: &[(&str, &str, u8, Option<&str>)]) {
    let now_ns = mcp_obs_storage::spans::now_unix_nano();
    let spans: Vec<Value> = spans
        .iter()
        .enumerate()
        .map(|(i, (method, tool, status, error_type))| {
            let mut attrs = vec![attr("mcp.method.name", method), attr("gen_ai.tool.name", tool)];
            if let Some(t) = error_type {
                attrs.push(attr("error.type", t));
            }
            let start = now_ns - 60_000_000_000 + i as u64 * 1_000_000;
            json!({ "traceId": format!("{:032x}", i + 1), "spanId": format!("{:016x}", i + 1),
                    "name": format!("{method} {tool}"), "kind": 2,
                    "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + 3_000_000).to_string(),
                    "status": { "code": status }, "attributes": attrs })
        })
        .collect();
    let body = json!({ "resourceSpans": [{ "scopeSpans": [{ "spans": spans }] }] });
    let r = h
        .send_all(
            warp::test::request()
                .method("POST")
                .path("/v1/traces")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("rejected"), "{}", r.text);
}

/// A varied mix: tools and resources, ok and errors with and without a type.
fn mix(n: usize) -> Vec<(&'static str, &'static str, u8, Option<&'static str>)> {
    (0..n)
        .map(|i| match i % 6 {
            0 => ("tools/call", "get_weather", 0, None),
            1 => ("tools/call", "get_weather", 2, Some("timeout")),
            // Status ERROR without a type on a non-tool method stays typeless: `_OTHER`.
            2 => ("resources/read", "get_weather", 2, None),
            3 => ("tools/call", "search_docs", 2, Some("_OTHER")),
            4 => ("resources/read", "search_docs", 2, None),
            _ => ("tools/call", "search_docs", 0, None),
        })
        .collect()
}

#[tokio::test]
async fn the_export_of_a_searched_list_is_that_list() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (_, key) = h.server(&admin, "default", "weather", true).await;
    // More than one search page of the export (256 spans) matches.
    ingest(&h, &key.unwrap(), &mix(700)).await;
    // Another organization with spans the same search would find.
    let (_, bob) = h.user(&admin, "bob").await;
    assert_eq!(
        h.post(
            "/api/v1/orgs",
            &bob,
            json!({ "slug": "acme", "name": "Acme" })
        )
        .await
        .status,
        201
    );
    let (_, bob_key) = h.server(&bob, "acme", "weather", true).await;
    ingest(&h, &bob_key.unwrap(), &mix(30)).await;

    for filters in [
        "q=weather",
        "q=weather&status=error",
        "q=%22search+docs%22&env=live",
        "q=nosuchword",
    ] {
        let mut listed: Vec<Value> = Vec::new();
        let mut cursor = String::new();
        loop {
            let r = api_get(
                &h,
                &format!("/api/v1/orgs/default/spans?{filters}&limit=100{cursor}"),
                &admin,
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text);
            listed.extend(r.json["spans"].as_array().unwrap().iter().cloned());
            match r.json["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        let r = api_get(
            &h,
            &format!("/api/v1/orgs/default/spans/export?{filters}"),
            &admin,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let lines: Vec<Value> = r
            .text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, listed, "{filters}");
        assert!(
            lines.iter().all(|s| s["server_id"] == 1),
            "only this organization's spans"
        );
        let csv = api_get(
            &h,
            &format!("/api/v1/orgs/default/spans/export?{filters}&format=csv"),
            &admin,
        )
        .await;
        assert_eq!(csv.status, 200);
        assert_eq!(
            csv.text.lines().count(),
            listed.len() + 1,
            "{filters}: header + rows"
        );
        if filters == "q=weather" {
            assert!(listed.len() > 256, "{}", listed.len());
        }
    }
    // The searched page offers the export with its search.
    let page = get(&h, "/orgs/default/spans?q=weather&status=error", &admin).await;
    assert!(page
        .text
        .contains("/api/v1/orgs/default/spans/export?q=weather&amp;status=error&amp;format=jsonl"));

    // Not a member: 404 as everywhere; a bad query: 400 before any byte.
    let r = api_get(&h, "/api/v1/orgs/default/spans/export?q=weather", &bob).await;
    assert_eq!(r.status, 404);
    let r = api_get(&h, "/api/v1/orgs/default/spans/export?q=%21%21", &admin).await;
    assert_eq!(r.status, 400, "{}", r.text);
    // Bob's own export finds only his spans.
    let r = api_get(&h, "/api/v1/orgs/acme/spans/export?q=weather", &bob).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text.lines().count(), 15);
}

#[tokio::test]
async fn the_other_error_row_links_to_exactly_its_spans() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (_, key) = h.server(&admin, "default", "weather", true).await;
    let spans = mix(60);
    ingest(&h, &key.unwrap(), &spans).await;

    let page = get(&h, "/orgs/default/analytics", &admin).await;
    assert_eq!(page.status, 200);
    let mut checked = 0;
    for row in page
        .text
        .split("<tr>")
        .filter(|r| r.contains("error_type="))
    {
        let href = row
            .split("href=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&");
        let name = row
            .split("\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_string();
        let count: usize = row
            .split("<td class=\"num\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let query = href.strip_prefix("/orgs/default/spans?").unwrap();
        let r = api_get(
            &h,
            &format!("/api/v1/orgs/default/spans?{query}&limit=1000"),
            &admin,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let listed = r.json["spans"].as_array().unwrap();
        assert_eq!(listed.len(), count, "{name}: {href}");
        checked += 1;
        if name == "_OTHER" {
            // Twenty typeless errors and ten of the literal type `_OTHER`.
            assert_eq!(count, 30);
            assert!(listed.iter().all(|s| s["is_error"] == true));
            let export = api_get(
                &h,
                &format!("/api/v1/orgs/default/spans/export?{query}"),
                &admin,
            )
            .await;
            assert_eq!(export.text.lines().count(), 30);
        }
    }
    assert_eq!(checked, 2, "rows timeout and _OTHER: {}", page.text);
    // The API's errors table says the same.
    let r = api_get(&h, "/api/v1/orgs/default/analytics/errors", &admin).await;
    let row = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["error_type"] == "_OTHER")
        .cloned();
    assert_eq!(row.unwrap()["errors"], 30.0);
}
