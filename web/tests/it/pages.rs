//! The dashboard pages through every route of the appliance: sign-in redirects, every page's
//! status and headers, CSRF on forms, organization isolation, show-once keys, spans shown after
//! ingest, and HTML snapshots (`UPDATE_SNAPSHOTS=1` rewrites them).

use std::path::PathBuf;

use serde_json::json;

use crate::support::{Client, Harness, Resp, ADMIN_PASSWORD};

/// A browser-like request: the session cookie, and for POST a form body with `fields`.
pub(crate) async fn page(
    h: &Harness,
    method: &str,
    path: &str,
    c: &Client,
    fields: &[(&str, &str)],
) -> Resp {
    let mut req = h
        .request(
            method,
            path,
            &Client {
                csrf: None,
                ..c.clone()
            },
        )
        .header("host", "obs.example:4318");
    if method == "POST" {
        req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap());
    }
    h.send_all(req).await
}

pub(crate) async fn get(h: &Harness, path: &str, c: &Client) -> Resp {
    page(h, "GET", path, c, &[]).await
}

/// Creates user `name` and adds them to `default` as a member through the members form.
async fn member_of_default(h: &Harness, admin: &Client, name: &str) -> Client {
    let (_, c) = h.user(admin, name).await;
    let fields = [("username", name), ("role", "member")];
    let r = post(h, "/orgs/default/members", admin, &fields).await;
    assert_eq!(r.status, 303, "{}", r.text);
    c
}

/// POST with the session's CSRF token as the form field, as the pages' forms send it.
pub(crate) async fn post(h: &Harness, path: &str, c: &Client, fields: &[(&str, &str)]) -> Resp {
    let csrf = c.csrf.clone().unwrap_or_default();
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    page(h, "POST", path, c, &all).await
}

pub(crate) fn location(r: &Resp) -> &str {
    r.headers
        .get("location")
        .map_or("", |v| v.to_str().unwrap())
}

/// Creates server `name` through the form; returns (id, the page that showed the key).
async fn create_server(h: &Harness, c: &Client, name: &str) -> (u32, Resp) {
    let r = post(
        h,
        "/orgs/default/servers",
        c,
        &[("name", name), ("telemetry_enabled", "on")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let servers = h.state.meta.servers(1).unwrap();
    let id = servers.iter().find(|s| s.name == name).unwrap().id;
    (id, r)
}

fn shown_key(r: &Resp) -> String {
    let start = r.text.find("id=\"new-key\">").expect("key shown") + "id=\"new-key\">".len();
    r.text[start..start + "mcpobs_live_".len() + 40].to_string()
}

#[tokio::test]
async fn signed_out_visits_go_to_sign_in_and_back() {
    let h = Harness::new();
    let anon = Client::anonymous();
    for path in [
        "/",
        "/orgs/default",
        "/orgs/default/analytics?range=7d",
        "/tokens",
        "/orgs/default/servers/1/settings",
    ] {
        let r = get(&h, path, &anon).await;
        assert_eq!(r.status, 303, "{path}");
        let next = serde_urlencoded::to_string([("next", path)]).unwrap();
        assert_eq!(location(&r), format!("/login?{next}"), "{path}");
    }
    let r = get(&h, "/login?next=%2Forgs%2Fdefault", &anon).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains(r#"name="next" value="/orgs/default""#));

    // Login CSRF: a sign-in POST must carry the token of a form this site rendered, as cookie and
    // field alike; without it nothing is checked, and a fresh form comes back.
    let token = h.login_token().await;
    let other = h.login_token().await;
    assert_ne!(token, other, "a new token per rendering");
    let sign_in = |cookie: Option<&str>, field: Option<&str>, password: &str, next: &str| {
        let mut fields = vec![
            ("username", "admin"),
            ("password", password),
            ("next", next),
        ];
        if let Some(f) = field {
            fields.push(("login_csrf", f));
        }
        let mut req = h
            .request("POST", "/login", &anon)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&fields).unwrap());
        if let Some(c) = cookie {
            req = req.header("cookie", format!("mcpobs_login_csrf={c}"));
        }
        h.send_all(req)
    };
    for (cookie, field) in [
        (None, None),
        (None, Some(token.as_str())),
        (Some(token.as_str()), None),
        (Some(token.as_str()), Some(other.as_str())),
        (Some(""), Some("")),
    ] {
        let r = sign_in(cookie, field, ADMIN_PASSWORD, "/orgs/default").await;
        assert_eq!(r.status, 403, "{cookie:?} {field:?}");
        assert!(r.text.contains("sign-in form has expired"), "{}", r.text);
        assert!(r.text.contains(r#"name="next" value="/orgs/default""#));
        let fresh = r.headers["set-cookie"].to_str().unwrap();
        assert!(
            fresh.starts_with("mcpobs_login_csrf=")
                && fresh.contains("HttpOnly")
                && fresh.contains("SameSite=Lax")
                && fresh.contains("Path=/login"),
            "{fresh}"
        );
        assert!(!fresh.contains(&token), "a fresh token with the fresh form");
    }

    let bad = sign_in(Some(&token), Some(&token), "nope", "/orgs/default").await;
    assert_eq!(bad.status, 401);
    assert!(
        bad.text.contains("invalid username or password"),
        "{}",
        bad.text
    );
    assert!(!bad.text.contains("nope"), "the password is never echoed");

    let ok = sign_in(Some(&token), Some(&token), ADMIN_PASSWORD, "//evil.example").await;
    assert_eq!(ok.status, 303);
    assert_eq!(location(&ok), "/", "an off-site next is ignored");
    let cookie = ok.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("mcpobs_session=") && cookie.contains("HttpOnly"));
}

#[tokio::test]
async fn every_page_renders_with_strict_headers() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (id, _) = create_server(&h, &admin, "weather").await;
    let key_id = h.state.meta.list_api_keys(1, id).unwrap()[0].key_id.clone();
    for path in [
        "/orgs/default".to_string(),
        "/orgs/default/analytics".into(),
        "/orgs/default/analytics?range=custom&from_date=2025-01-01&to_date=2025-01-31&env=test"
            .into(),
        format!("/orgs/default/servers/{id}?range=90d"),
        format!("/orgs/default/servers/{id}/settings"),
        format!("/orgs/default/servers/{id}/guide"),
        format!("/orgs/default/servers/{id}/keys/new"),
        format!("/orgs/default/servers/{id}/keys/{key_id}/revoke"),
        "/orgs/default/servers/new".into(),
        "/orgs/default/spans?tool=x&status=error&min_duration_ms=".into(),
        "/orgs/default/members".into(),
        "/tokens".into(),
    ] {
        let r = get(&h, &path, &admin).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.headers["x-frame-options"], "DENY");
        assert_eq!(r.headers["cache-control"], "no-store");
        assert!(
            !r.text.contains("<script>") && !r.text.contains(" style="),
            "{path}: inline script or style"
        );
        for form in r.text.split("<form").skip(1) {
            let head = &form[..form.find('>').unwrap()];
            if head.contains(r#"method="post""#) {
                assert!(
                    form.contains(r#"name="csrf""#),
                    "{path}: a form without its CSRF field"
                );
            }
        }
    }
    // Malformed parameters are readable errors, not stack traces.
    let r = get(&h, "/orgs/default/analytics?range=1y", &admin).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("range must be 24h, 7d, 30d, 90d or custom"));
    let r = get(&h, "/orgs/default/traces/xyz", &admin).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("trace id must be 32 hex characters"));
}

#[tokio::test]
async fn assets_are_served_by_hash_and_cached() {
    let h = Harness::new();
    let anon = Client::anonymous();
    let r = get(&h, &mcp_obs_web::pages::css_url(), &anon).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/css; charset=utf-8");
    assert_eq!(
        r.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let js = get(&h, &mcp_obs_web::pages::js_url(), &anon).await;
    assert_eq!(js.status, 200);
    assert!(r.text.len() + js.text.len() <= mcp_obs_web::pages::ASSET_BYTES_MAX);
    assert_eq!(
        get(&h, "/assets/app-0000000000000000.css", &anon)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn forms_need_the_session_csrf_token() {
    let h = Harness::new();
    let admin = h.admin().await;
    let fields = [("name", "sneaky"), ("telemetry_enabled", "on")];
    let none = page(&h, "POST", "/orgs/default/servers", &admin, &fields).await;
    assert_eq!(none.status, 403);
    assert!(none.text.contains("reload the page"), "{}", none.text);
    let mut wrong = vec![("csrf", "0000")];
    wrong.extend_from_slice(&fields);
    assert_eq!(
        page(&h, "POST", "/orgs/default/servers", &admin, &wrong)
            .await
            .status,
        403
    );
    let logout = page(&h, "POST", "/logout", &admin, &[]).await;
    assert_eq!(logout.status, 403, "sign-out is a form too");
    assert!(h.state.meta.servers(1).unwrap().is_empty());
    // With the token it works, and sign-out ends the session.
    create_server(&h, &admin, "weather").await;
    let out = post(&h, "/logout", &admin, &[]).await;
    assert_eq!((out.status, location(&out)), (303, "/login"));
    assert_eq!(get(&h, "/orgs/default", &admin).await.status, 303);
}

#[tokio::test]
async fn other_organizations_are_not_found_and_roles_are_checked() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (id, _) = create_server(&h, &admin, "weather").await;
    let (_, eve) = h.user(&admin, "eve").await;
    let r = h
        .post(
            "/api/v1/orgs",
            &eve,
            json!({ "slug": "evecorp", "name": "Eve Corp" }),
        )
        .await;
    assert_eq!(r.status, 201);
    for path in [
        "/orgs/default".to_string(),
        "/orgs/default/analytics".into(),
        format!("/orgs/default/servers/{id}"),
        format!("/orgs/default/servers/{id}/settings"),
        format!("/orgs/default/servers/{id}/guide"),
        "/orgs/default/spans".into(),
        "/orgs/default/members".into(),
        "/orgs/default/traces/5b8efff798038103d269b633813fc60c".into(),
        "/orgs/nonexistent".into(),
    ] {
        let r = get(&h, &path, &eve).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.text.contains("organization not found"), "{path}");
    }
    let r = post(
        &h,
        &format!("/orgs/default/servers/{id}/delete"),
        &eve,
        &[("confirm_name", "weather")],
    )
    .await;
    assert_eq!(r.status, 404);
    // Eve's own organization works, and its switcher lists only hers.
    let own = get(&h, "/orgs/evecorp", &eve).await;
    assert_eq!(own.status, 200);
    assert!(!own.text.contains("/orgs/default"));
    // A user in two organizations gets the switcher with both.
    let r = h
        .post(
            "/api/v1/orgs/evecorp/members",
            &eve,
            json!({ "username": "admin", "role": "member" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let both = get(&h, "/orgs/default", &admin).await;
    assert!(both.text.contains(r#"<details class="switcher">"#));
    assert!(both.text.contains(r#"href="/orgs/evecorp""#) && both.text.contains("(member)"));

    // A plain member may look but not change.
    let (_, bob) = h.user(&admin, "bob").await;
    let r = post(
        &h,
        "/orgs/default/members",
        &admin,
        &[("username", "bob"), ("role", "member")],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(
        get(&h, &format!("/orgs/default/servers/{id}/settings"), &bob)
            .await
            .status,
        200
    );
    let r = post(&h, "/orgs/default/servers", &bob, &[("name", "bobs")]).await;
    assert_eq!(r.status, 403);
    assert!(r.text.contains("requires the admin role"));
    assert_eq!(get(&h, "/orgs/default/servers/new", &bob).await.status, 403);
}

#[tokio::test]
async fn keys_are_shown_once_and_revoked_through_forms() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (id, created) = create_server(&h, &admin, "weather").await;
    let key = shown_key(&created);
    assert!(created.text.contains("shown only this once"));
    assert!(
        created.text.contains(&format!("api_key=&quot;{key}&quot;")),
        "the Python snippet has the key"
    );
    assert!(
        created
            .text
            .contains("endpoint=&quot;http://obs.example:4318&quot;"),
        "and this appliance's address"
    );
    assert!(created
        .text
        .contains(&format!("Authorization=Bearer {key}")));
    for path in [
        format!("/orgs/default/servers/{id}/settings"),
        format!("/orgs/default/servers/{id}/guide"),
    ] {
        let r = get(&h, &path, &admin).await;
        assert!(
            !r.text.contains(&key[12..]),
            "{path} shows the secret again"
        );
    }
    let second = post(
        &h,
        &format!("/orgs/default/servers/{id}/keys"),
        &admin,
        &[("name", "ci"), ("env", "test")],
    )
    .await;
    assert_eq!(second.status, 200);
    let test_key = second.text[second.text.find("mcpobs_test_").unwrap()..][..52].to_string();
    let keys = h.state.meta.list_api_keys(1, id).unwrap();
    let ci = keys.iter().find(|k| k.name == "ci").unwrap();
    assert!(test_key.contains(&ci.key_id));
    let r = post(
        &h,
        &format!("/orgs/default/servers/{id}/keys/{}/revoke", ci.key_id),
        &admin,
        &[],
    )
    .await;
    assert_eq!(
        (r.status, location(&r)),
        (303, format!("/orgs/default/servers/{id}/settings").as_str())
    );
    assert!(h
        .state
        .meta
        .list_api_keys(1, id)
        .unwrap()
        .iter()
        .find(|k| k.name == "ci")
        .unwrap()
        .is_revoked());
}

#[tokio::test]
async fn settings_rename_and_delete_with_the_name() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (id, _) = create_server(&h, &admin, "weather").await;
    let settings = format!("/orgs/default/servers/{id}/settings");
    let r = post(
        &h,
        &settings,
        &admin,
        &[
            ("action", "telemetry"),
            ("sampling_rate", "1"),
            ("sampling_slider", "0.25"),
            ("capture_arguments", "on"),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let s = h.state.meta.server_in_org(1, id).unwrap().unwrap();
    assert_eq!(
        (s.telemetry_enabled, s.sampling_rate, s.capture_arguments),
        (false, 0.25, true)
    );
    let r = post(
        &h,
        &settings,
        &admin,
        &[
            ("action", "telemetry"),
            ("telemetry_enabled", "on"),
            ("sampling_rate", "2"),
        ],
    )
    .await;
    assert_eq!(r.status, 400, "an invalid rate is shown on the page");
    assert!(r.text.contains("role=\"alert\""));
    let r = post(
        &h,
        &settings,
        &admin,
        &[("action", "rename"), ("name", "forecast")],
    )
    .await;
    assert_eq!(r.status, 303);
    let delete = format!("/orgs/default/servers/{id}/delete");
    let r = post(&h, &delete, &admin, &[("confirm_name", "weather")]).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("type its name (forecast) exactly"));
    let r = post(&h, &delete, &admin, &[("confirm_name", "forecast")]).await;
    assert_eq!((r.status, location(&r)), (303, "/orgs/default"));
    assert!(h.state.meta.servers(1).unwrap().is_empty());
}

#[tokio::test]
async fn ingested_calls_show_in_analytics_span_list_and_trace() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (id, created) = create_server(&h, &admin, "weather").await;
    let key = shown_key(&created);
    let now_ns = mcp_obs_storage::spans::now_unix_nano();
    let span = |i: u64, parent: &str, name: &str, attrs: serde_json::Value| {
        json!({ "traceId": "5b8efff798038103d269b633813fc60c", "spanId": format!("00000000000000{:02x}", i + 1),
                "parentSpanId": parent, "name": name, "kind": 2,
                "startTimeUnixNano": (now_ns - 60_000_000_000 + i * 1_000_000).to_string(),
                "endTimeUnixNano": (now_ns - 60_000_000_000 + i * 1_000_000 + 5_000_000).to_string(),
                "attributes": attrs })
    };
    let attrs = json!([{ "key": "mcp.method.name", "value": { "stringValue": "tools/call" } },
                       { "key": "gen_ai.tool.name", "value": { "stringValue": "get_weather" } },
                       { "key": "enduser.id", "value": { "stringValue": "ada@example.com" } },
                       { "key": "mcp.client.name", "value": { "stringValue": "cursor" } },
                       { "key": "error.type", "value": { "stringValue": "timeout" } }]);
    let body = json!({ "resourceSpans": [{ "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": "weather" } }] },
        "scopeSpans": [{ "spans": [span(0, "", "tools/call get_weather", attrs), span(1, "0000000000000001", "fetch upstream", json!([]))] }] }] });
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

    let a = get(&h, &format!("/orgs/default/servers/{id}"), &admin).await;
    assert_eq!(a.status, 200);
    assert!(
        a.text.contains("get_weather") && a.text.contains("ada@example.com"),
        "{}",
        a.text
    );
    assert!(
        a.text.contains("<svg") && a.text.contains("<title>"),
        "charts with hover titles"
    );
    assert!(
        a.text.contains(&format!(
            "/orgs/default/spans?server={id}&amp;env=live&amp;from="
        )),
        "rows link to the span list"
    );
    // Error-type and client rows link to the span list narrowed to them.
    for want in [
        "&amp;status=error&amp;error_type=timeout\"",
        "&amp;client=cursor\"",
    ] {
        assert!(a.text.contains(want), "{want} in {}", a.text);
    }
    for (q, n) in [
        ("error_type=timeout", 1),
        ("error_type=tool_error", 0),
        ("client=cursor", 1),
        ("client=claude-desktop", 0),
        (
            "status=error&error_type=timeout&client=cursor&tool=get_weather",
            1,
        ),
    ] {
        let l = get(&h, &format!("/orgs/default/spans?{q}"), &admin).await;
        assert_eq!(l.status, 200, "{q}");
        assert_eq!(l.text.matches(">Trace</a>").count(), n, "{q}");
    }
    let l = get(&h, "/orgs/default/spans?error_type=timeout&client=", &admin).await;
    assert!(
        l.text.contains("name=\"error_type\" value=\"timeout\""),
        "the form keeps the filter"
    );
    let list = get(
        &h,
        &format!("/orgs/default/spans?server={id}&tool=get_weather"),
        &admin,
    )
    .await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.text.matches(">Trace</a>").count(),
        1,
        "one tools/call span"
    );
    assert!(list.text.contains("format=csv") && list.text.contains("format=jsonl"));
    // Text search from the page's search box: the child span (id …02) by its name, the parent
    // (id …01) by its user; rows link to their span in the trace.
    for (q, expect, other) in [
        (
            "upstream",
            "#span-0000000000000002",
            "#span-0000000000000001",
        ),
        ("ada", "#span-0000000000000001", "#span-0000000000000002"),
    ] {
        let found = get(&h, &format!("/orgs/default/spans?q={q}"), &admin).await;
        assert_eq!(found.status, 200, "{}", found.text);
        assert_eq!(found.text.matches(">Trace</a>").count(), 1, "q={q}");
        assert!(
            found.text.contains(expect) && !found.text.contains(other),
            "q={q}"
        );
        assert!(
            found
                .text
                .contains(&format!("/spans/export?q={q}&amp;format=csv")),
            "the export of a searched list carries its search"
        );
    }
    let none = get(&h, "/orgs/default/spans?q=nosuchword", &admin).await;
    assert!(none.text.contains("No spans match these filters."));
    let t = get(
        &h,
        "/orgs/default/traces/5b8efff798038103d269b633813fc60c",
        &admin,
    )
    .await;
    assert_eq!(t.status, 200);
    assert!(
        t.text.contains("fetch upstream") && t.text.contains("class=\"indent d1\""),
        "child nested under its parent"
    );
    assert!(t.text.contains("ada@example.com") && t.text.contains("service.name"));
}

/// Replaces what changes between runs (tokens, keys, times, hashes, ids) so snapshots compare.
fn normalize(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let b = html.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Runs of 16+ hex digits: CSRF tokens, asset hashes, trace/span ids.
        let hex = b[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
        if hex >= 16 {
            out.push_str("HEX");
            i += hex;
            continue;
        }
        if b[i..].starts_with(b"mcpobs_") {
            let n = b[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            out.push_str("MCPOBS_SECRET");
            i += n;
            continue;
        }
        let c = b[i];
        if c.is_ascii_digit() {
            let n = b[i..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || matches!(c, b'-' | b':' | b' '))
                .count();
            let run = &html[i..i + n];
            if run.len() >= 8 && run.contains('-') || run.trim().len() >= 12 {
                out.push_str("TIME");
                i += n;
                continue;
            }
        }
        let ch = html[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    // The series bucket of a default (last 24 h) window depends on the wall clock: until
    // `SEAL_GRACE` after midnight UTC yesterday is not rolled to hours yet, so the window stays
    // at minute granularity and the bucket is 10 min instead of 1 h.
    let out = match out.find("one point per ") {
        Some(at) => {
            let from = at + "one point per ".len();
            let to = from + out[from..].find('.').unwrap_or(0);
            format!("{}BUCKET{}", &out[..from], &out[to..])
        }
        None => out,
    };
    out.replace("><", ">\n<")
}

fn check_snapshot(name: &str, html: &str) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/it/snapshots/{name}.html"));
    let got = normalize(html);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_SNAPSHOTS=1", path.display()));
    assert!(
        want == got,
        "snapshot {name} differs (UPDATE_SNAPSHOTS=1 rewrites it):\n{got}"
    );
}

#[tokio::test]
async fn html_snapshots() {
    let h = Harness::new();
    let anon = Client::anonymous();
    check_snapshot("login", &get(&h, "/login", &anon).await.text);
    let admin = h.admin().await;
    check_snapshot(
        "overview-empty",
        &get(&h, "/orgs/default", &admin).await.text,
    );
    check_snapshot(
        "new-server",
        &get(&h, "/orgs/default/servers/new", &admin).await.text,
    );
    let (id, created) = create_server(&h, &admin, "weather").await;
    // Key ids are random and appear in revoke links.
    let key_id = h.state.meta.list_api_keys(1, id).unwrap()[0].key_id.clone();
    check_snapshot("server-created", &created.text.replace(&key_id, "KEYID"));
    for (name, path) in [
        ("overview", "/orgs/default".to_string()),
        ("settings", format!("/orgs/default/servers/{id}/settings")),
        ("guide", format!("/orgs/default/servers/{id}/guide")),
        ("analytics-empty", format!("/orgs/default/servers/{id}")),
        ("spans-empty", "/orgs/default/spans".into()),
        ("members", "/orgs/default/members".into()),
        ("tokens", "/tokens".into()),
        ("account", "/account".into()),
        ("not-found", "/orgs/nope".into()),
    ] {
        let text = get(&h, &path, &admin).await.text.replace(&key_id, "KEYID");
        check_snapshot(name, &text);
    }
}

#[tokio::test]
async fn members_and_tokens_through_forms() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (bob_id, bob) = h.user(&admin, "bob").await;
    let r = post(
        &h,
        "/orgs/default/members",
        &admin,
        &[("username", "nobody"), ("role", "member")],
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(
        r.text.contains("There is no user named nobody") && r.text.contains("Add a member"),
        "shown on the page"
    );
    assert!(
        r.text.contains(r#"name="create" value="1" checked"#)
            && r.text.contains(r#"value="nobody""#),
        "the form comes back ready to create them"
    );
    let r = post(
        &h,
        "/orgs/default/members",
        &admin,
        &[("username", "bob"), ("role", "member")],
    )
    .await;
    assert_eq!((r.status, location(&r)), (303, "/orgs/default/members"));
    let role = format!("/orgs/default/members/{bob_id}/role");
    assert_eq!(
        post(&h, &role, &bob, &[("role", "owner")]).await.status,
        403,
        "members cannot promote themselves"
    );
    assert_eq!(
        post(&h, &role, &admin, &[("role", "admin")]).await.status,
        303
    );
    assert_eq!(
        h.state.meta.role(1, bob_id).unwrap(),
        Some(mcp_obs_storage::meta::Role::Admin)
    );
    let r = post(
        &h,
        &format!("/orgs/default/members/{bob_id}/remove"),
        &admin,
        &[],
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(h.state.meta.role(1, bob_id).unwrap(), None);

    let r = post(&h, "/tokens", &bob, &[("name", "script")]).await;
    assert_eq!(r.status, 200);
    let start = r.text.find("mcpobs_pat_").expect("token shown once");
    let token = r.text[start..].split('<').next().unwrap().to_string();
    let listed = get(&h, "/tokens", &bob).await;
    assert!(!listed.text.contains(&token), "never shown again");
    assert_eq!(
        h.get("/api/v1/session", &Client::token(&token))
            .await
            .status,
        200
    );
    let id = h.state.meta.list_pats(bob_id).unwrap()[0].key_id.clone();
    assert_eq!(
        post(&h, &format!("/tokens/{id}/revoke"), &admin, &[])
            .await
            .status,
        404,
        "someone else's token"
    );
    assert_eq!(
        post(&h, &format!("/tokens/{id}/revoke"), &bob, &[])
            .await
            .status,
        303
    );
    assert_eq!(
        h.get("/api/v1/session", &Client::token(&token))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn owners_create_users_on_the_members_page() {
    let h = Harness::new();
    let admin = h.admin().await;
    let add = |fields: Vec<(&'static str, &'static str)>, c: Client| {
        let h = &h;
        async move {
            let mut all = vec![("role", "member")];
            all.extend(fields);
            post(h, "/orgs/default/members", &c, &all).await
        }
    };

    // A generated initial password, shown once in the POST response.
    let r = add(
        vec![
            ("username", "Mia"),
            ("create", "1"),
            ("email", "mia@example.com"),
        ],
        admin.clone(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.text.contains("shown only this once"), "{}", r.text);
    let start = r.text.find("id=\"initial-password\">").unwrap() + "id=\"initial-password\">".len();
    let password = r.text[start..].split('<').next().unwrap().to_string();
    assert_eq!(password.len(), 20);
    let mia = h
        .state
        .meta
        .user_by_username("mia")
        .unwrap()
        .expect("created, lowercased");
    assert_eq!(mia.email.as_deref(), Some("mia@example.com"));
    assert_eq!(
        h.state.meta.role(1, mia.id).unwrap(),
        Some(mcp_obs_storage::meta::Role::Member)
    );
    let mia_client = h.login("mia", &password).await;
    let listed = get(&h, "/orgs/default/members", &admin).await;
    assert!(
        listed.text.contains("mia") && !listed.text.contains(&password),
        "never shown again"
    );

    // A password the owner sets: nothing to show, back to the list.
    let r = add(
        vec![
            ("username", "noa"),
            ("create", "1"),
            ("password", "owner-chose-this"),
        ],
        admin.clone(),
    )
    .await;
    assert_eq!((r.status, location(&r)), (303, "/orgs/default/members"));
    h.login("noa", "owner-chose-this").await;

    // Mistakes come back on the form, and nothing is created.
    for (fields, status, says) in [
        (vec![("username", "mia"), ("create", "1")], 409, "already"),
        (
            vec![("username", "short"), ("create", "1"), ("password", "x")],
            400,
            "password",
        ),
        (
            vec![("username", "-bad name"), ("create", "1")],
            400,
            "username",
        ),
    ] {
        let r = add(fields.clone(), admin.clone()).await;
        assert_eq!(r.status, status, "{fields:?}: {}", r.text);
        assert!(
            r.text.contains(says) && r.text.contains("Add a member"),
            "{fields:?}: {}",
            r.text
        );
    }
    assert!(h.state.meta.user_by_username("short").unwrap().is_none());

    // Only owners: a member (and an admin, who may create users through the API) cannot.
    let (_, bob) = h.user(&admin, "bob").await;
    assert_eq!(
        add(vec![("username", "bob"), ("role", "admin")], admin.clone())
            .await
            .status,
        303
    );
    let bob_id = h.state.meta.user_by_username("bob").unwrap().unwrap().id;
    assert_eq!(
        post(
            &h,
            &format!("/orgs/default/members/{bob_id}/role"),
            &admin,
            &[("role", "admin")]
        )
        .await
        .status,
        303
    );
    for c in [bob, mia_client] {
        let r = add(vec![("username", "eve"), ("create", "1")], c).await;
        assert_eq!(r.status, 403);
        assert!(h.state.meta.user_by_username("eve").unwrap().is_none());
    }
}

#[tokio::test]
async fn error_pages_keep_the_navigation_for_signed_in_users() {
    let h = Harness::new();
    let admin = h.admin().await;
    let bob = member_of_default(&h, &admin, "bob").await;
    let in_layout = |r: &Resp, status: u16, org_nav: bool, what: &str| {
        assert_eq!(r.status, status, "{what}: {}", r.text);
        assert!(
            r.text.contains(r#"aria-label="Main""#)
                && r.text.contains(r#"action="/logout""#)
                && r.text.contains(r#"href="/tokens""#),
            "{what}: the navigation header"
        );
        assert_eq!(
            r.text.contains(r#"href="/orgs/default/analytics""#),
            org_nav,
            "{what}: the organization's links"
        );
        assert!(r.text.contains(&format!("<h1>{status} ")), "{what}");
        assert!(
            !r.text.contains("panicked") && !r.text.contains("src/"),
            "{what}"
        );
    };
    let trace = "/orgs/default/traces/5b8efff798038103d269b633813fc60c";
    in_layout(&get(&h, trace, &admin).await, 404, true, "missing trace");
    in_layout(
        &get(&h, "/orgs/default/nothing", &admin).await,
        404,
        true,
        "no such page",
    );
    in_layout(
        &get(&h, "/orgs/default/servers/x", &admin).await,
        404,
        true,
        "bad id",
    );
    in_layout(
        &get(&h, "/tokens/x/y", &admin).await,
        404,
        false,
        "no such page",
    );
    in_layout(
        &get(&h, "/orgs/default/servers/new", &bob).await,
        403,
        true,
        "member",
    );
    in_layout(
        &page(
            &h,
            "POST",
            "/orgs/default/members",
            &admin,
            &[("username", "x")],
        )
        .await,
        403,
        true,
        "no CSRF token",
    );
    // Another organization's 404 names nothing of it: the same page as a missing one.
    h.post(
        "/api/v1/orgs",
        &admin,
        json!({ "slug": "acme", "name": "Acme Inc" }),
    )
    .await;
    let theirs = get(&h, "/orgs/acme/spans", &bob).await;
    in_layout(&theirs, 404, false, "non-member");
    assert!(!theirs.text.contains("Acme") && !theirs.text.contains("/orgs/acme/"));
    let missing = get(&h, "/orgs/nope/spans", &bob).await;
    assert_eq!(
        theirs.text.replace("acme", "X"),
        missing.text.replace("nope", "X")
    );
    // Signed out, an unknown page still asks to sign in first (it reveals nothing).
    let anon = get(&h, "/orgs/default/nothing", &Client::anonymous()).await;
    assert_eq!(anon.status, 303);
}

#[tokio::test]
async fn create_server_is_a_dialog_on_the_overview_with_the_page_behind_it() {
    let h = Harness::new();
    let admin = h.admin().await;
    let r = get(&h, "/orgs/default", &admin).await;
    assert_eq!(r.status, 200);
    // The link goes to the form's own page without script and opens the dialog with it.
    assert!(r.text.contains(
        r#"href="/orgs/default/servers/new" data-dialog="new-server">New MCP server</a>"#
    ));
    assert!(r
        .text
        .contains(r#"<dialog id="new-server" aria-labelledby="new-server-title">"#));
    assert!(r
        .text
        .contains(r#"<form class="stack" method="post" action="/orgs/default/servers">"#));
    assert!(r.text.contains(r#"id="new-server-name""#) && !r.text.contains(r#"id="name""#));
    assert_eq!(
        get(&h, "/orgs/default/servers/new", &admin).await.status,
        200
    );
    // Members cannot create servers: neither link nor dialog.
    let bob = member_of_default(&h, &admin, "bob").await;
    let r = get(&h, "/orgs/default", &bob).await;
    assert!(!r.text.contains("<dialog") && !r.text.contains("/servers/new"));
}
