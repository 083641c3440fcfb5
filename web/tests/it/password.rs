//! Changing one's own password: through `POST /api/v1/session/password` and the `/account` form.
//! The current password is required, CSRF applies, other sessions end and the caller's stays.

use serde_json::json;

use crate::pages::{get, location, post};
use crate::support::{Client, Harness, ADMIN_PASSWORD};

const NEW_PASSWORD: &str = "a brand new password";

fn change(current: &str, new: &str) -> serde_json::Value {
    json!({ "current_password": current, "new_password": new })
}

#[tokio::test]
async fn the_api_needs_the_current_password_and_ends_other_sessions() {
    let h = Harness::new();
    let me = h.admin().await;
    let other = h.admin().await;
    let path = "/api/v1/session/password";

    let r = h
        .post(
            path,
            &me.without_csrf(),
            change(ADMIN_PASSWORD, NEW_PASSWORD),
        )
        .await;
    assert_eq!(r.status, 403, "CSRF: {}", r.text);
    let r = h
        .post(path, &me, change("wrong password", NEW_PASSWORD))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json["error"]["message"],
        "the current password is not correct"
    );
    let r = h.post(path, &me, change(ADMIN_PASSWORD, "short")).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = h
        .post(path, &me, json!({ "current_password": ADMIN_PASSWORD }))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = h
        .post(
            path,
            &Client::anonymous(),
            change(ADMIN_PASSWORD, NEW_PASSWORD),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = h.get(path, &me).await;
    assert_eq!(r.status, 405);
    // Nothing changed so far: the other session still works, the old password still signs in.
    assert_eq!(h.get("/api/v1/session", &other).await.status, 200);

    let r = h
        .post(path, &me, change(ADMIN_PASSWORD, NEW_PASSWORD))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!({ "sessions_ended": 1 }));
    assert!(!r.text.contains(NEW_PASSWORD) && !r.text.contains(ADMIN_PASSWORD));
    assert_eq!(
        h.get("/api/v1/session", &me).await.status,
        200,
        "mine stays"
    );
    assert_eq!(
        h.get("/api/v1/session", &other).await.status,
        401,
        "the other ended"
    );
    let old = h
        .post(
            "/api/v1/session",
            &Client::anonymous(),
            json!({ "username": "admin", "password": ADMIN_PASSWORD }),
        )
        .await;
    assert_eq!(old.status, 401);
    h.login("admin", NEW_PASSWORD).await;
}

#[tokio::test]
async fn a_token_caller_changes_it_too_and_every_session_ends() {
    let h = Harness::new();
    let session = h.admin().await;
    let r = h
        .post("/api/v1/tokens", &session, json!({ "name": "script" }))
        .await;
    let pat = Client::token(r.json["token"]["token"].as_str().unwrap());
    let r = h
        .post(
            "/api/v1/session/password",
            &pat,
            change(ADMIN_PASSWORD, NEW_PASSWORD),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["sessions_ended"], 1);
    assert_eq!(h.get("/api/v1/session", &session).await.status, 401);
    assert_eq!(
        h.get("/api/v1/session", &pat).await.status,
        200,
        "tokens stay"
    );
}

#[tokio::test]
async fn the_account_page_changes_it_with_clear_errors() {
    let h = Harness::new();
    let me = h.admin().await;
    let other = h.admin().await;

    let page = get(&h, "/account", &me).await;
    assert_eq!(page.status, 200);
    for want in [
        "action=\"/account\"",
        "<label for=\"current-password\">",
        "<label for=\"new-password\">",
        "<label for=\"confirm-password\">",
        "href=\"/account\" aria-current=\"page\"",
    ] {
        assert!(page.text.contains(want), "{want} in {}", page.text);
    }
    // Every page links to it from the user's name in the header.
    let tokens = get(&h, "/tokens", &me).await;
    assert!(tokens.text.contains("href=\"/account\""));
    let signed_out = get(&h, "/account", &Client::anonymous()).await;
    assert_eq!(signed_out.status, 303);
    assert_eq!(location(&signed_out), "/login?next=%2Faccount");

    let fields = |current: &'static str, new: &'static str, again: &'static str| {
        [
            ("current_password", current),
            ("new_password", new),
            ("confirm_password", again),
        ]
    };
    let no_csrf = crate::pages::page(
        &h,
        "POST",
        "/account",
        &me,
        &fields(ADMIN_PASSWORD, NEW_PASSWORD, NEW_PASSWORD),
    )
    .await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.text);
    for (f, status, message) in [
        (
            fields("wrong password", NEW_PASSWORD, NEW_PASSWORD),
            400,
            "the current password is not correct",
        ),
        (
            fields(ADMIN_PASSWORD, NEW_PASSWORD, "something else"),
            400,
            "the new password and its repetition differ",
        ),
        (
            fields(ADMIN_PASSWORD, "short", "short"),
            400,
            "password must be 8-1024 bytes",
        ),
    ] {
        let r = post(&h, "/account", &me, &f).await;
        assert_eq!(r.status, status, "{}", r.text);
        assert!(r.text.contains(message), "{message} in {}", r.text);
        assert!(
            !r.text.contains(ADMIN_PASSWORD) && !r.text.contains(NEW_PASSWORD),
            "no password echoed"
        );
    }
    assert_eq!(
        get(&h, "/account", &other).await.status,
        200,
        "nothing changed yet"
    );

    let ok = post(
        &h,
        "/account",
        &me,
        &fields(ADMIN_PASSWORD, NEW_PASSWORD, NEW_PASSWORD),
    )
    .await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    assert_eq!(location(&ok), "/account?password=changed");
    let after = get(&h, "/account?password=changed", &me).await;
    assert_eq!(after.status, 200);
    assert!(after.text.contains("Your password was changed"));
    let gone = get(&h, "/account", &other).await;
    assert_eq!(gone.status, 303, "the other session was signed out");
    h.login("admin", NEW_PASSWORD).await;
}

/// A user whose initial password an owner chose changes it like anyone else.
#[tokio::test]
async fn an_owner_set_password_is_the_current_one() {
    let h = Harness::new();
    let admin = h.admin().await;
    let r = post(
        &h,
        "/orgs/default/members",
        &admin,
        &[
            ("username", "mia"),
            ("role", "member"),
            ("create", "1"),
            ("password", "set-by-owner"),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let mia = h.login("mia", "set-by-owner").await;
    let r = h
        .post(
            "/api/v1/session/password",
            &mia,
            change("set-by-owner", "mias own secret"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["sessions_ended"], 0);
    h.login("mia", "mias own secret").await;
}
