//! Role checks: members read, admins manage servers and keys, owners manage members and the
//! organization; the last owner stays.

use serde_json::json;

use crate::support::Harness;

#[tokio::test]
async fn member_admin_owner_permissions() {
    let h = Harness::new();
    let owner = h.admin().await;
    let (mia_id, mia) = h.user(&owner, "mia").await;
    let (adam_id, adam) = h.user(&owner, "adam").await;
    // Not yet members: the organization does not exist for them.
    assert_eq!(h.get("/api/v1/orgs/default", &mia).await.status, 404);
    // Only owners add members.
    let r = h
        .post(
            "/api/v1/orgs/default/members",
            &owner,
            json!({ "username": "mia", "role": "member" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["member"]["role"], "member");
    let r = h
        .post(
            "/api/v1/orgs/default/members",
            &owner,
            json!({ "username": "adam", "role": "admin" }),
        )
        .await;
    assert_eq!(r.status, 201);
    let dup = h
        .post(
            "/api/v1/orgs/default/members",
            &owner,
            json!({ "username": "adam", "role": "admin" }),
        )
        .await;
    assert_eq!(dup.status, 409);
    let ghost = h
        .post(
            "/api/v1/orgs/default/members",
            &owner,
            json!({ "username": "ghost", "role": "admin" }),
        )
        .await;
    assert_eq!(ghost.status, 404);
    let bad_role = h
        .post(
            "/api/v1/orgs/default/members",
            &owner,
            json!({ "username": "mia", "role": "god" }),
        )
        .await;
    assert_eq!(bad_role.status, 400);

    // Member: reads, cannot create servers or users.
    assert_eq!(
        h.get("/api/v1/orgs/default", &mia).await.json["org"]["role"],
        "member"
    );
    assert_eq!(
        h.get("/api/v1/orgs/default/servers", &mia).await.status,
        200
    );
    assert_eq!(
        h.get("/api/v1/orgs/default/members", &mia).await.status,
        200
    );
    let r = h
        .post("/api/v1/orgs/default/servers", &mia, json!({ "name": "s" }))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "forbidden");
    assert_eq!(
        h.post(
            "/api/v1/users",
            &mia,
            json!({ "username": "x", "password": "password-123" })
        )
        .await
        .status,
        403
    );

    // Admin: servers and keys yes; members and org settings no.
    let (server, _) = h.server(&adam, "default", "s", true).await;
    let keys = format!("/api/v1/orgs/default/servers/{server}/keys");
    assert_eq!(
        h.post(&keys, &adam, json!({ "name": "k2" })).await.status,
        201
    );
    assert_eq!(
        h.post(&keys, &mia, json!({ "name": "k3" })).await.status,
        403
    );
    assert_eq!(
        h.get(&keys, &mia).await.json["keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let member_path = format!("/api/v1/orgs/default/members/{mia_id}");
    assert_eq!(
        h.patch(&member_path, &adam, json!({ "role": "owner" }))
            .await
            .status,
        403
    );
    assert_eq!(h.delete(&member_path, &adam).await.status, 403);
    assert_eq!(
        h.post(
            "/api/v1/orgs/default/members",
            &adam,
            json!({ "username": "admin", "role": "member" })
        )
        .await
        .status,
        403
    );
    assert_eq!(
        h.patch("/api/v1/orgs/default", &adam, json!({ "name": "X" }))
            .await
            .status,
        403
    );
    assert_eq!(
        h.post(
            "/api/v1/users",
            &adam,
            json!({ "username": "newbie", "password": "password-123" })
        )
        .await
        .status,
        201
    );

    // Owner: everything, except dropping the last owner.
    let r = h
        .patch(
            "/api/v1/orgs/default",
            &owner,
            json!({ "name": "Main", "retention_days": 30 }),
        )
        .await;
    assert_eq!(
        (r.status, r.json["org"]["retention_days"].as_u64()),
        (200, Some(30))
    );
    let r = h
        .patch(&member_path, &owner, json!({ "role": "admin" }))
        .await;
    assert_eq!(
        (r.status, r.json["member"]["role"].as_str()),
        (200, Some("admin"))
    );
    assert_eq!(
        h.delete(&format!("/api/v1/orgs/default/members/{adam_id}"), &owner)
            .await
            .status,
        204
    );
    assert_eq!(
        h.get("/api/v1/orgs/default/servers", &adam).await.status,
        404
    );
    let me = h.get("/api/v1/session", &owner).await.json["user"]["id"]
        .as_u64()
        .unwrap();
    let r = h
        .patch(
            &format!("/api/v1/orgs/default/members/{me}"),
            &owner,
            json!({ "role": "member" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("owner"));
    assert_eq!(
        h.delete(&format!("/api/v1/orgs/default/members/{me}"), &owner)
            .await
            .status,
        400
    );
    let members = h.get("/api/v1/orgs/default/members", &owner).await;
    let roles: Vec<_> = members.json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(roles, ["owner", "admin"]);
}
