//! Servers and API keys: shown once, never listed, verified with a cache that revocation and
//! telemetry switches cut through at once; `/v1/config`; usage accounting.

use mcp_obs_storage::model::Env;
use mcp_obs_web::auth::{flush_key_usage, record_key_usage, verify_api_key};
use mcp_obs_web::ApiError;
use serde_json::json;
use warp::http::{HeaderMap, HeaderValue};

use crate::support::{key_headers, Client, Harness};

fn key_id(key: &str) -> &str {
    let random = key.rsplit('_').next().unwrap();
    &random[..8]
}

#[tokio::test]
async fn server_creation_shows_the_key_once() {
    let h = Harness::new();
    let admin = h.admin().await;
    let r = h
        .post(
            "/api/v1/orgs/default/servers",
            &admin,
            json!({ "name": "payments", "telemetry_enabled": true, "sampling_rate": 0.5, "capture_arguments": true }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let server = &r.json["server"];
    assert_eq!(
        (
            server["sampling_rate"].as_f64(),
            server["capture_arguments"].as_bool()
        ),
        (Some(0.5), Some(true))
    );
    let key = r.json["api_key"]["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("mcpobs_live_") && key.len() == "mcpobs_live_".len() + 40);
    assert_eq!(
        r.json["api_key"]["prefix"],
        format!("mcpobs_live_{}", key_id(&key))
    );
    assert_eq!(r.json["api_key"]["env"], "live");
    let id = server["id"].as_u64().unwrap();

    let keys = h
        .get(&format!("/api/v1/orgs/default/servers/{id}/keys"), &admin)
        .await;
    assert_eq!(keys.status, 200);
    let listed = &keys.json["keys"][0];
    assert_eq!(listed["id"], key_id(&key));
    assert!(listed.get("key").is_none());
    assert!(!keys.text.contains(&key[20..]), "secret leaked in listing");
    assert_eq!(listed["usage"], json!({ "requests": 0, "spans": 0 }));
    assert_eq!(
        (
            listed["revoked"].as_bool(),
            listed["last_used_at_ms"].is_null()
        ),
        (Some(false), true)
    );
    for path in [
        format!("/api/v1/orgs/default/servers/{id}"),
        "/api/v1/orgs/default/servers".into(),
    ] {
        assert!(!h.get(&path, &admin).await.text.contains(&key[20..]));
    }

    // Telemetry off: no key. Test keys on request.
    let r = h
        .post(
            "/api/v1/orgs/default/servers",
            &admin,
            json!({ "name": "quiet", "telemetry_enabled": false }),
        )
        .await;
    assert_eq!((r.status, r.json["api_key"].is_null()), (201, true));
    let r = h
        .post(
            &format!("/api/v1/orgs/default/servers/{id}/keys"),
            &admin,
            json!({ "name": "ci", "env": "test" }),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.json["api_key"]["key"]
        .as_str()
        .unwrap()
        .starts_with("mcpobs_test_"));
    let dup = h
        .post(
            "/api/v1/orgs/default/servers",
            &admin,
            json!({ "name": "payments" }),
        )
        .await;
    assert_eq!(dup.status, 409);
}

#[tokio::test]
async fn verify_api_key_caches_but_revocation_is_immediate() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (server, key) = h.server(&admin, "default", "s", true).await;
    let key = key.unwrap();
    let ctx = verify_api_key(&h.state, &key_headers(&key)).await.unwrap();
    assert_eq!(
        (ctx.server_id, ctx.env, ctx.key_id.as_str()),
        (server, Env::Live, key_id(&key))
    );
    assert_eq!((ctx.sampling_rate, ctx.capture_arguments), (1.0, false));
    assert_eq!(
        ctx.org_id,
        h.state.meta.org_by_slug("default").unwrap().unwrap().id
    );
    assert_eq!(h.state.keys.len(), 1, "verified key is cached");
    // x-api-key works too, and a cached key id with another secret is still refused.
    let mut alt = HeaderMap::new();
    alt.insert("x-api-key", HeaderValue::from_str(&key).unwrap());
    assert!(verify_api_key(&h.state, &alt).await.is_ok());
    let forged = forged(&key);
    assert!(matches!(
        verify_api_key(&h.state, &key_headers(&forged)).await,
        Err(ApiError::Unauthorized(_))
    ));
    // The same key id presented as a test key is not the key.
    let other_env = key.replacen("mcpobs_live_", "mcpobs_test_", 1);
    assert!(matches!(
        verify_api_key(&h.state, &key_headers(&other_env)).await,
        Err(ApiError::Unauthorized(_))
    ));

    let r = h
        .delete(
            &format!(
                "/api/v1/orgs/default/servers/{server}/keys/{}",
                key_id(&key)
            ),
            &admin,
        )
        .await;
    assert_eq!(
        (r.status, r.json["api_key"]["revoked"].as_bool()),
        (200, Some(true))
    );
    assert!(r.json["api_key"]["revoked_at_ms"].is_u64());
    assert!(matches!(
        verify_api_key(&h.state, &key_headers(&key)).await,
        Err(ApiError::Unauthorized(_))
    ));

    // Revoked behind the cache's back (directly in the store): refused at once as well.
    let r = h
        .post(
            &format!("/api/v1/orgs/default/servers/{server}/keys"),
            &admin,
            json!({ "name": "k2" }),
        )
        .await;
    let key2 = r.json["api_key"]["key"].as_str().unwrap().to_string();
    verify_api_key(&h.state, &key_headers(&key2)).await.unwrap();
    let org = h.state.meta.org_by_slug("default").unwrap().unwrap();
    h.state
        .meta
        .revoke_api_key(org.id, server, key_id(&key2))
        .unwrap();
    assert!(matches!(
        verify_api_key(&h.state, &key_headers(&key2)).await,
        Err(ApiError::Unauthorized(_))
    ));

    for missing in [
        HeaderMap::new(),
        key_headers("mcpobs_live_tooshort"),
        key_headers(""),
    ] {
        assert!(matches!(
            verify_api_key(&h.state, &missing).await,
            Err(ApiError::Unauthorized(_))
        ));
    }
}

/// A burst of requests with a key nobody verified yet (an SDK's first batches, several exporters
/// starting at once) runs argon2 once, not once per request; a wrong secret is still refused and
/// verified on its own.
#[tokio::test]
async fn a_burst_with_a_new_key_verifies_it_once() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (_, key) = h.server(&admin, "default", "s", true).await;
    let key = key.unwrap();
    let before = h.state.keys.verifications();
    let headers = key_headers(&key);
    let burst = (0..8).map(|_| verify_api_key(&h.state, &headers));
    for r in futures_util::future::join_all(burst).await {
        r.unwrap();
    }
    assert_eq!(h.state.keys.verifications() - before, 1);
    // Cached from now on: no further run.
    verify_api_key(&h.state, &headers).await.unwrap();
    assert_eq!(h.state.keys.verifications() - before, 1);
    let forged = forged(&key);
    assert!(matches!(
        verify_api_key(&h.state, &key_headers(&forged)).await,
        Err(ApiError::Unauthorized(_))
    ));
    assert_eq!(h.state.keys.verifications() - before, 2);
}

#[tokio::test]
async fn telemetry_switch_and_server_deletion() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (server, key) = h.server(&admin, "default", "s", true).await;
    let key = key.unwrap();
    let path = format!("/api/v1/orgs/default/servers/{server}");
    verify_api_key(&h.state, &key_headers(&key)).await.unwrap();
    let r = h
        .patch(&path, &admin, json!({ "telemetry_enabled": false }))
        .await;
    assert_eq!(r.status, 200);
    let err = verify_api_key(&h.state, &key_headers(&key))
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 403);
    let r = h
        .patch(
            &path,
            &admin,
            json!({ "telemetry_enabled": true, "sampling_rate": 0.1 }),
        )
        .await;
    assert_eq!(r.json["server"]["sampling_rate"], 0.1);
    assert_eq!(
        verify_api_key(&h.state, &key_headers(&key))
            .await
            .unwrap()
            .sampling_rate,
        0.1
    );

    assert_eq!(h.delete(&path, &admin).await.status, 204);
    assert_eq!(h.get(&path, &admin).await.status, 404);
    let err = verify_api_key(&h.state, &key_headers(&key))
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 401);
}

#[tokio::test]
async fn sdk_config_endpoint() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (server, key) = h.server(&admin, "default", "s", true).await;
    let key = key.unwrap();
    let get_config = |headers: HeaderMap| {
        let mut req = h.request("GET", "/v1/config", &Client::anonymous());
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        h.send(req)
    };
    let r = get_config(key_headers(&key)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({ "server_id": server, "env": "live", "telemetry_enabled": true, "sampling_rate": 1.0,
                "capture_arguments": false, "refresh_interval_secs": 60 })
    );
    h.patch(
        &format!("/api/v1/orgs/default/servers/{server}"),
        &admin,
        json!({ "telemetry_enabled": false, "capture_arguments": true, "sampling_rate": 0.25 }),
    )
    .await;
    let r = get_config(key_headers(&key)).await;
    assert_eq!(
        (
            r.json["telemetry_enabled"].as_bool(),
            r.json["capture_arguments"].as_bool(),
            r.json["sampling_rate"].as_f64()
        ),
        (Some(false), Some(true), Some(0.25))
    );
    let r = get_config(HeaderMap::new()).await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // Session cookies are not API keys.
    let mut req = h.request("GET", "/v1/config", &admin);
    req = req.header("x-api-key", "nope");
    assert_eq!(h.send(req).await.status, 401);
}

#[tokio::test]
async fn key_usage_accumulates_and_flushes_in_one_batch() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (server, key) = h.server(&admin, "default", "s", true).await;
    let key = key.unwrap();
    let ctx = verify_api_key(&h.state, &key_headers(&key)).await.unwrap();
    record_key_usage(&h.state, &ctx.key_id, 10);
    record_key_usage(&h.state, &ctx.key_id, 5);
    let path = format!("/api/v1/orgs/default/servers/{server}/keys");
    // Listings include usage not yet flushed.
    let listed = h.get(&path, &admin).await.json["keys"][0].clone();
    assert_eq!(listed["usage"], json!({ "requests": 2, "spans": 15 }));
    assert!(listed["last_used_at_ms"].is_u64());

    assert_eq!(flush_key_usage(&h.state).unwrap(), 1);
    assert_eq!(flush_key_usage(&h.state).unwrap(), 0);
    let stored = h
        .state
        .meta
        .api_key_record(&ctx.key_id)
        .unwrap()
        .unwrap()
        .info;
    assert_eq!((stored.requests, stored.spans), (2, 15));
    assert_eq!(
        h.get(&path, &admin).await.json["keys"][0]["usage"],
        json!({ "requests": 2, "spans": 15 })
    );
}

/// `key` with its last character changed: the same key id, another secret.
fn forged(key: &str) -> String {
    let last = key.chars().last().unwrap();
    format!(
        "{}{}",
        &key[..key.len() - 1],
        if last == 'x' { 'y' } else { 'x' }
    )
}
