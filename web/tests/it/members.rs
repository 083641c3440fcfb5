//! Creating a user together with their membership: one storage transaction for the JSON API and
//! the members page alike, so a failure leaves neither a user nor a membership behind.

use serde_json::json;

use crate::pages::post;
use crate::support::Harness;

fn member_names(h: &Harness, org: u32) -> Vec<String> {
    let members = h.state.meta.members(org).unwrap();
    members.into_iter().map(|m| m.user.username).collect()
}

#[tokio::test]
async fn the_api_creates_user_and_membership_at_once() {
    let h = Harness::new();
    let admin = h.admin().await;
    let path = "/api/v1/orgs/default/members";
    let r = h
        .post(path, &admin, json!({ "username": "Mia", "role": "admin", "password": "initial-secret", "email": "mia@example.com" }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["member"]["user"]["username"], "mia");
    assert_eq!(r.json["member"]["role"], "admin");
    assert!(!r.text.contains("initial-secret"));
    h.login("mia", "initial-secret").await;

    // A taken username or email, or a bad password: 409/400 and nothing of the attempt remains.
    for (body, status) in [
        (
            json!({ "username": "admin", "role": "member", "password": "initial-secret" }),
            409,
        ),
        (
            json!({ "username": "noa", "role": "member", "password": "initial-secret", "email": "MIA@example.com" }),
            409,
        ),
        (
            json!({ "username": "noa", "role": "member", "password": "short" }),
            400,
        ),
        (
            json!({ "username": "noa", "role": "member", "email": "noa@example.com" }),
            400,
        ),
    ] {
        let r = h.post(path, &admin, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert!(
            h.state.meta.user_by_username("noa").unwrap().is_none(),
            "{body}"
        );
    }
    assert_eq!(member_names(&h, 1), ["admin", "mia"]);
    let r = h
        .post(
            path,
            &admin.without_csrf(),
            json!({ "username": "noa", "role": "member", "password": "initial-secret" }),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(h.state.meta.user_by_username("noa").unwrap().is_none());
}

#[tokio::test]
async fn another_organizations_owner_cannot_create_members_here() {
    let h = Harness::new();
    let admin = h.admin().await;
    let (_, bob) = h.user(&admin, "bob").await;
    let r = h
        .post(
            "/api/v1/orgs",
            &bob,
            json!({ "slug": "acme", "name": "Acme" }),
        )
        .await;
    assert_eq!(r.status, 201);
    let body = json!({ "username": "eve", "role": "owner", "password": "initial-secret" });
    let r = h
        .post("/api/v1/orgs/default/members", &bob, body.clone())
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let fields = [
        ("username", "eve"),
        ("role", "owner"),
        ("create", "1"),
        ("password", "initial-secret"),
    ];
    let r = post(&h, "/orgs/default/members", &bob, &fields).await;
    assert_eq!(r.status, 404);
    assert!(h.state.meta.user_by_username("eve").unwrap().is_none());
    // In their own organization it works.
    let r = h.post("/api/v1/orgs/acme/members", &bob, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let acme = h.state.meta.org_by_slug("acme").unwrap().unwrap();
    assert_eq!(member_names(&h, acme.id), ["bob", "eve"]);
    assert_eq!(member_names(&h, 1), ["admin"]);
}

#[tokio::test]
async fn the_page_leaves_no_user_without_membership() {
    let h = Harness::new();
    let admin = h.admin().await;
    let add = |name: &'static str, email: &'static str| {
        [
            ("username", name),
            ("role", "member"),
            ("create", "1"),
            ("email", email),
            ("password", ""),
        ]
    };
    let r = post(
        &h,
        "/orgs/default/members",
        &admin,
        &add("mia", "mia@example.com"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The email is taken: the form comes back, and neither user nor membership exists.
    let r = post(
        &h,
        "/orgs/default/members",
        &admin,
        &add("noa", "Mia@Example.com"),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("email already exists") && r.text.contains("value=\"noa\""));
    assert!(h.state.meta.user_by_username("noa").unwrap().is_none());
    // The username is taken (an existing user of this organization): nothing changes.
    let r = post(&h, "/orgs/default/members", &admin, &add("mia", "")).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(member_names(&h, 1), ["admin", "mia"]);
}
