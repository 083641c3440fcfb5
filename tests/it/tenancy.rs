//! Tenant isolation through the real binary: organizations never see each other's data, keys only
//! write into their own server, and session writes need the CSRF token.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use rand::SeedableRng;
use serde_json::json;

use crate::gen::{self, kv, now_unix_nano};
use crate::harness::*;

#[test]
fn organizations_are_isolated() {
    let dir = TempDir::new("tenancy");
    let srv = Server::start(dir.path());
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    let (server_a, key_a) = admin.create_server(&srv, "default", "alpha-server");
    let (server_a2, _key_a2) = admin.create_server(&srv, "default", "alpha-second");

    // A second user, who creates their own organization.
    let r = admin.send(
        &srv,
        "POST",
        "/api/v1/users",
        json!({ "username": "bob", "email": "bob@example.com", "password": "bobs-long-password" }),
    );
    assert!(
        r.status == 201 || r.status == 200,
        "create user: {}",
        r.text()
    );
    let bob = login(&srv, "bob", "bobs-long-password").unwrap();
    let r = bob.send(
        &srv,
        "POST",
        "/api/v1/orgs",
        json!({ "slug": "beta", "name": "Beta" }),
    );
    assert!(
        r.status == 201 || r.status == 200,
        "create org: {}",
        r.text()
    );
    let (server_b, key_b) = bob.create_server(&srv, "beta", "beta-server");

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let t0 = now_unix_nano() - 10_000_000_000;
    let (mut req_a, exp_a) = gen::request(&mut rng, 10, t0);
    // The payload tries to claim another server and org: it must not matter.
    let res = req_a.resource_spans[0].resource.as_mut().unwrap();
    res.attributes
        .push(kv("mcpobs.server_id", &server_a2.to_string()));
    res.attributes.push(kv("mcpobs.org", "beta"));
    let r = post_traces(
        &srv,
        Some(&key_a),
        "application/x-protobuf",
        false,
        &req_a.encode_to_vec(),
    );
    assert_eq!(r.status, 200);
    let (req_b, exp_b) = gen::request(&mut rng, 10, t0);
    let r = post_traces(
        &srv,
        Some(&key_b),
        "application/x-protobuf",
        false,
        &req_b.encode_to_vec(),
    );
    assert_eq!(r.status, 200);

    // Bob sees none of default's data or settings, and cannot create anything there.
    for path in [
        "/api/v1/orgs/default/spans".to_string(),
        format!(
            "/api/v1/orgs/default/traces/{}",
            hex::encode(exp_a[0].trace_id)
        ),
        "/api/v1/orgs/default/servers".to_string(),
        format!("/api/v1/orgs/default/servers/{server_a}"),
        format!("/api/v1/orgs/default/servers/{server_a}/keys"),
        "/api/v1/orgs/default/members".to_string(),
    ] {
        let r = bob.get(&srv, &path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
    let r = bob.send(
        &srv,
        "POST",
        "/api/v1/orgs/default/servers",
        json!({ "name": "intruder", "telemetry_enabled": true }),
    );
    assert_eq!(r.status, 404);
    let r = bob.send(
        &srv,
        "POST",
        &format!("/api/v1/orgs/default/servers/{server_a}/keys"),
        json!({ "name": "k", "env": "live" }),
    );
    assert_eq!(r.status, 404);
    // A server of org A addressed under org B's path is not found either.
    let r = bob.get(&srv, &format!("/api/v1/orgs/beta/servers/{server_a}/keys"));
    assert_eq!(r.status, 404);
    let servers = admin.get(&srv, "/api/v1/orgs/default/servers").json();
    assert!(!servers.to_string().contains("intruder"));

    // Bob's trace id space is his own: a's trace through beta is 404, his own is there.
    let r = bob.get(
        &srv,
        &format!(
            "/api/v1/orgs/beta/traces/{}",
            hex::encode(exp_a[0].trace_id)
        ),
    );
    assert_eq!(r.status, 404);
    let r = bob.get(
        &srv,
        &format!(
            "/api/v1/orgs/beta/traces/{}",
            hex::encode(exp_b[0].trace_id)
        ),
    );
    assert_eq!(r.status, 200);
    let v = bob.get(&srv, "/api/v1/orgs/beta/spans?limit=1000").json();
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 10);
    assert!(spans.iter().all(|s| s["server_id"] == server_b));

    // Key A wrote only into server A, whatever the payload said.
    let v = admin
        .get(&srv, "/api/v1/orgs/default/spans?limit=1000")
        .json();
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 10);
    assert!(spans.iter().all(|s| s["server_id"] == server_a));
    let v = admin
        .get(
            &srv,
            &format!("/api/v1/orgs/default/spans?server={server_a2}"),
        )
        .json();
    assert_eq!(v["spans"].as_array().unwrap().len(), 0);
    let _ = KeyValue::default();
}

#[test]
fn session_writes_need_csrf() {
    let dir = TempDir::new("csrf");
    let srv = Server::start(dir.path());
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    let r = admin.send_without_csrf(
        &srv,
        "POST",
        "/api/v1/orgs/default/servers",
        json!({ "name": "no-csrf", "telemetry_enabled": true }),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let servers = admin.get(&srv, "/api/v1/orgs/default/servers");
    assert_eq!(servers.status, 200);
    assert!(!servers.text().contains("no-csrf"));
    // With the token it works.
    admin.create_server(&srv, "default", "with-csrf");
    assert!(admin
        .get(&srv, "/api/v1/orgs/default/servers")
        .text()
        .contains("with-csrf"));
    // Unauthenticated API access is 401.
    let r = to_resp(agent().get(&srv.url("/api/v1/orgs/default/spans")).call());
    assert_eq!(r.status, 401);
    // Cookie flags.
    let r = to_resp(
        agent()
            .post(&srv.url("/api/v1/session"))
            .send_json(json!({ "username": "admin", "password": ADMIN_PASSWORD })),
    );
    let cookie = r
        .set_cookie
        .iter()
        .find(|c| c.starts_with("mcpobs_session="))
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        cookie.contains("httponly") && cookie.contains("samesite") && cookie.contains("max-age"),
        "{cookie}"
    );
    // A wrong password is 401.
    assert_eq!(
        login(&srv, "admin", "wrong").err().map(|r| r.status),
        Some(401)
    );
}
