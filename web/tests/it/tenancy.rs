//! Tenant isolation: nothing of organization A is visible or changeable for a user of
//! organization B, whatever path they try.

use serde_json::json;

use crate::support::Harness;

#[tokio::test]
async fn another_tenant_gets_404_everywhere() {
    let h = Harness::new();
    let a_owner = h.admin().await;
    let (a_server, a_key) = h.server(&a_owner, "default", "payments", true).await;
    let a_key = a_key.unwrap();
    let a_key_id = &a_key["mcpobs_live_".len()..][..8];
    let (_, b_owner) = h.user(&a_owner, "bea").await;
    assert_eq!(
        h.post(
            "/api/v1/orgs",
            &b_owner,
            json!({ "slug": "org-b", "name": "B" })
        )
        .await
        .status,
        201
    );
    let (b_server, _) = h.server(&b_owner, "org-b", "mine", false).await;

    let a = "/api/v1/orgs/default";
    let gets = [
        a.to_string(),
        format!("{a}/members"),
        format!("{a}/servers"),
        format!("{a}/servers/{a_server}"),
        format!("{a}/servers/{a_server}/keys"),
        format!("{a}/servers/{b_server}"),
        "/api/v1/orgs/no-such-org".to_string(),
    ];
    for path in &gets {
        let r = h.get(path, &b_owner).await;
        assert_eq!(r.status, 404, "GET {path}: {}", r.text);
        assert_eq!(r.json["error"]["message"], "organization not found");
    }
    let writes = [
        (
            "POST",
            format!("{a}/servers"),
            Some(json!({ "name": "evil" })),
        ),
        (
            "POST",
            format!("{a}/members"),
            Some(json!({ "username": "bea", "role": "owner" })),
        ),
        ("PATCH", a.to_string(), Some(json!({ "name": "pwned" }))),
        (
            "PATCH",
            format!("{a}/servers/{a_server}"),
            Some(json!({ "telemetry_enabled": false })),
        ),
        ("DELETE", format!("{a}/servers/{a_server}"), None),
        (
            "POST",
            format!("{a}/servers/{a_server}/keys"),
            Some(json!({ "name": "evil" })),
        ),
        (
            "DELETE",
            format!("{a}/servers/{a_server}/keys/{a_key_id}"),
            None,
        ),
    ];
    for (method, path, body) in &writes {
        let r = h.call(method, path, &b_owner, body.clone()).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
    }

    // Org A's server id under org B's own path: 404 as well.
    let b = "/api/v1/orgs/org-b";
    let cross = [
        ("GET", format!("{b}/servers/{a_server}"), None),
        (
            "PATCH",
            format!("{b}/servers/{a_server}"),
            Some(json!({ "sampling_rate": 0.0 })),
        ),
        ("DELETE", format!("{b}/servers/{a_server}"), None),
        ("GET", format!("{b}/servers/{a_server}/keys"), None),
        (
            "POST",
            format!("{b}/servers/{a_server}/keys"),
            Some(json!({ "name": "evil" })),
        ),
        (
            "DELETE",
            format!("{b}/servers/{a_server}/keys/{a_key_id}"),
            None,
        ),
        (
            "DELETE",
            format!("{b}/servers/{b_server}/keys/{a_key_id}"),
            None,
        ),
    ];
    for (method, path, body) in &cross {
        let r = h.call(method, path, &b_owner, body.clone()).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
    }

    // Org A is untouched.
    let servers = h.get(&format!("{a}/servers"), &a_owner).await;
    assert_eq!(servers.json["servers"].as_array().unwrap().len(), 1);
    let s = &servers.json["servers"][0];
    assert_eq!(
        (
            s["name"].as_str(),
            s["telemetry_enabled"].as_bool(),
            s["sampling_rate"].as_f64()
        ),
        (Some("payments"), Some(true), Some(1.0))
    );
    let keys = h
        .get(&format!("{a}/servers/{a_server}/keys"), &a_owner)
        .await;
    assert_eq!(keys.json["keys"].as_array().unwrap().len(), 1);
    assert_eq!(keys.json["keys"][0]["revoked"], false);
    assert_eq!(h.get(a, &a_owner).await.json["org"]["name"], "Default");
    let members = h.get(&format!("{a}/members"), &a_owner).await;
    assert_eq!(members.json["members"].as_array().unwrap().len(), 1);
    // And B sees only its own organization.
    let orgs = h.get("/api/v1/orgs", &b_owner).await;
    assert_eq!(orgs.json["orgs"].as_array().unwrap().len(), 1);
    assert_eq!(orgs.json["orgs"][0]["slug"], "org-b");
}
