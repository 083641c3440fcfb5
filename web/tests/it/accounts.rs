//! Login, sessions, cookies, CSRF and personal access tokens.

use serde_json::json;

use crate::support::{Client, Harness, ADMIN_PASSWORD};

#[tokio::test]
async fn login_sets_a_strict_cookie_and_returns_csrf() {
    let h = Harness::new();
    let r = h
        .post(
            "/api/v1/session",
            &Client::anonymous(),
            json!({ "username": "admin", "password": ADMIN_PASSWORD }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    for part in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        &format!("Max-Age={}", h.state.config.session_ttl_secs),
    ] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Secure"));
    assert_eq!(r.json["user"]["username"], "admin");
    assert_eq!(r.json["orgs"][0]["slug"], "default");
    assert_eq!(r.json["orgs"][0]["role"], "owner");
    assert!(r.json["csrf_token"].as_str().unwrap().len() >= 32);
    assert!(r.json["expires_at_ms"].as_u64().unwrap() > 0);
    assert!(!r.text.contains(ADMIN_PASSWORD));

    let session = h.admin().await;
    let me = h.get("/api/v1/session", &session).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json["user"]["username"], "admin");
    assert_eq!(me.json["auth"], "session");
    assert_eq!(me.json["csrf_token"], session.csrf.clone().unwrap());
    assert_eq!(me.json["orgs"][0]["role"], "owner");
}

#[tokio::test]
async fn secure_cookie_when_configured() {
    let config = mcp_obs_web::WebConfig {
        cookie_secure: true,
        session_ttl_secs: 120,
        ..Default::default()
    };
    let h = Harness::with_config(config);
    let r = h
        .post(
            "/api/v1/session",
            &Client::anonymous(),
            json!({ "username": "admin", "password": ADMIN_PASSWORD }),
        )
        .await;
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("; Secure") && cookie.contains("Max-Age=120"),
        "{cookie}"
    );
}

#[tokio::test]
async fn bad_logins_and_missing_auth_are_401() {
    let h = Harness::new();
    let anon = Client::anonymous();
    let wrong = h
        .post(
            "/api/v1/session",
            &anon,
            json!({ "username": "admin", "password": "nope" }),
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json["error"]["code"], "unauthorized");
    assert!(wrong.headers.get("set-cookie").is_none());
    let unknown = h
        .post(
            "/api/v1/session",
            &anon,
            json!({ "username": "ghost", "password": "nope" }),
        )
        .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(
        unknown.json["error"]["message"],
        wrong.json["error"]["message"]
    );
    let empty = h
        .post("/api/v1/session", &anon, json!({ "password": "x" }))
        .await;
    assert_eq!(empty.status, 400);
    assert_eq!(h.get("/api/v1/session", &anon).await.status, 401);
    assert_eq!(h.get("/api/v1/orgs", &anon).await.status, 401);
    let forged = Client {
        cookie: Some("0".repeat(64)),
        ..Client::default()
    };
    assert_eq!(h.get("/api/v1/orgs", &forged).await.status, 401);
}

#[tokio::test]
async fn login_by_email() {
    let h = Harness::new();
    let admin = h.admin().await;
    let r = h
        .post(
            "/api/v1/users",
            &admin,
            json!({ "username": "Eve", "email": "eve@example.com", "password": "password-123" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["user"]["username"], "eve");
    let r = h
        .post(
            "/api/v1/session",
            &Client::anonymous(),
            json!({ "email": "EVE@example.com", "password": "password-123" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A new user belongs to no organization until an owner adds them.
    assert_eq!(r.json["orgs"], json!([]));
}

#[tokio::test]
async fn session_writes_need_the_csrf_token() {
    let h = Harness::new();
    let admin = h.admin().await;
    let body = json!({ "slug": "acme", "name": "Acme" });
    let r = h
        .post("/api/v1/orgs", &admin.without_csrf(), body.clone())
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let wrong = Client {
        csrf: Some("f".repeat(64)),
        ..admin.clone()
    };
    assert_eq!(
        h.post("/api/v1/orgs", &wrong, body.clone()).await.status,
        403
    );
    // Nothing changed.
    assert!(h.state.meta.org_by_slug("acme").unwrap().is_none());
    let orgs = h.get("/api/v1/orgs", &admin.without_csrf()).await;
    assert_eq!(orgs.json["orgs"].as_array().unwrap().len(), 1);
    // Same for deletes: logout without the token keeps the session.
    assert_eq!(
        h.delete("/api/v1/session", &admin.without_csrf())
            .await
            .status,
        403
    );
    assert_eq!(h.get("/api/v1/session", &admin).await.status, 200);

    let r = h.post("/api/v1/orgs", &admin, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["org"]["role"], "owner");
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let h = Harness::new();
    let admin = h.admin().await;
    let r = h.delete("/api/v1/session", &admin).await;
    assert_eq!(r.status, 204);
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("mcpobs_session=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    assert_eq!(h.get("/api/v1/session", &admin).await.status, 401);
}

#[tokio::test]
async fn personal_access_tokens_authenticate_without_csrf() {
    let h = Harness::new();
    let admin = h.admin().await;
    let r = h
        .post("/api/v1/tokens", &admin, json!({ "name": "laptop" }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = r.json["token"]["token"].as_str().unwrap().to_string();
    let id = r.json["token"]["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("mcpobs_pat_"));
    assert_eq!(r.json["token"]["prefix"], format!("mcpobs_pat_{id}"));

    let pat = Client::token(&token);
    let me = h.get("/api/v1/session", &pat).await;
    assert_eq!((me.status, me.json["auth"].as_str()), (200, Some("token")));
    assert!(me.json.get("csrf_token").is_none());
    // Writes with a token need no CSRF header.
    assert_eq!(
        h.post(
            "/api/v1/orgs",
            &pat,
            json!({ "slug": "via-pat", "name": "P" })
        )
        .await
        .status,
        201
    );

    let list = h.get("/api/v1/tokens", &pat).await;
    assert_eq!(list.json["tokens"][0]["id"], id.as_str());
    assert!(list.json["tokens"][0]["last_used_at_ms"].is_u64());
    assert!(!list.text.contains(&token));

    // Another user can neither see nor revoke it.
    let (_, bob) = h.user(&admin, "bob").await;
    assert_eq!(
        h.get("/api/v1/tokens", &bob).await.json["tokens"],
        json!([])
    );
    assert_eq!(
        h.delete(&format!("/api/v1/tokens/{id}"), &bob).await.status,
        404
    );

    // Malformed and wrong-secret bearers are 401, also once the right one is cached.
    let wrong_secret = format!(
        "{}{}",
        &token[..token.len() - 1],
        if token.ends_with('a') { 'b' } else { 'a' }
    );
    for bad in ["mcpobs_pat_short", wrong_secret.as_str(), "garbage"] {
        assert_eq!(
            h.get("/api/v1/session", &Client::token(bad)).await.status,
            401,
            "{bad}"
        );
    }

    let r = h.delete(&format!("/api/v1/tokens/{id}"), &pat).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["token"]["revoked"], true);
    assert_eq!(h.get("/api/v1/session", &pat).await.status, 401);
}
