//! Servers, API keys, usage accounting and personal access tokens.

use super::*;

#[test]
fn servers_crud_and_tenancy() {
    let dir = TempDir::new();
    let (meta, admin, default) = bootstrapped(&dir);
    let other = meta.create_org(admin.id, "other", "Other").unwrap();

    let (s1, key) = meta
        .create_server(default.id, &server("payments", true))
        .unwrap();
    let (full, info) = key.expect("telemetry on: first key");
    assert!(full.starts_with("mcpobs_live_"));
    assert_eq!(
        (info.server_id, info.env, info.name.as_str()),
        (s1.id, Env::Live, "default")
    );
    assert_eq!((s1.sampling_rate, s1.capture_arguments), (1.0, false));
    let (s2, key) = meta
        .create_server(default.id, &server("search", false))
        .unwrap();
    assert!(key.is_none());
    assert!(is_conflict(
        meta.create_server(default.id, &server("payments", true))
    ));
    // Names are unique per organization only.
    let (s3, _) = meta
        .create_server(other.id, &server("payments", false))
        .unwrap();
    assert!(is_invalid(meta.create_server(
        default.id,
        &NewServer {
            sampling_rate: 1.5,
            ..server("x", false)
        }
    )));

    let names: Vec<_> = meta
        .servers(default.id)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["payments", "search"]);
    assert_eq!(meta.servers(other.id).unwrap(), std::slice::from_ref(&s3));
    assert_eq!(meta.server_in_org(default.id, s3.id).unwrap(), None);
    assert_eq!(
        meta.server_in_org(other.id, s3.id).unwrap(),
        Some(s3.clone())
    );

    let upd = ServerUpdate {
        name: Some("search".into()),
        ..Default::default()
    };
    assert!(is_conflict(meta.update_server(default.id, s1.id, &upd)));
    assert!(is_not_found(meta.update_server(
        other.id,
        s1.id,
        &ServerUpdate::default()
    )));
    let upd = ServerUpdate {
        name: Some("billing".into()),
        telemetry_enabled: Some(false),
        sampling_rate: Some(0.25),
        capture_arguments: Some(true),
    };
    let s1 = meta.update_server(default.id, s1.id, &upd).unwrap();
    assert_eq!(
        (
            s1.name.as_str(),
            s1.telemetry_enabled,
            s1.sampling_rate,
            s1.capture_arguments
        ),
        ("billing", false, 0.25, true)
    );
    // The old name is free again.
    meta.create_server(default.id, &server("payments", false))
        .unwrap();

    // Delete: only within its org; revokes its keys.
    assert!(is_not_found(meta.delete_server(other.id, s1.id)));
    meta.delete_server(default.id, s1.id).unwrap();
    assert_eq!(meta.server(s1.id).unwrap(), None);
    let rec = meta.api_key_record(&info.key_id).unwrap().unwrap();
    assert!(rec.info.is_revoked());
    let (_, srv) = meta.api_key_auth(&info.key_id).unwrap().unwrap();
    assert!(srv.is_none());
    assert_eq!(meta.server(s2.id).unwrap().unwrap().name, "search");
}

#[test]
fn api_keys_create_verify_list_revoke() {
    let dir = TempDir::new();
    let (meta, admin, default) = bootstrapped(&dir);
    let other = meta.create_org(admin.id, "other", "Other").unwrap();
    let (s, _) = meta.create_server(default.id, &server("s", false)).unwrap();
    let (full, info) = meta
        .create_api_key(default.id, s.id, Env::Test, "ci")
        .unwrap();
    let parsed = parse_key(&full).unwrap();
    assert_eq!(parsed.kind, KeyKind::Api(Env::Test));
    assert_eq!(parsed.key_id, info.key_id);
    assert_eq!(info.prefix, format!("mcpobs_test_{}", info.key_id));
    assert!(is_not_found(meta.create_api_key(
        other.id,
        s.id,
        Env::Live,
        "x"
    )));
    assert!(is_invalid(meta.create_api_key(
        default.id,
        s.id,
        Env::Live,
        ""
    )));

    let (rec, srv) = meta.api_key_auth(&info.key_id).unwrap().unwrap();
    assert_eq!(srv.unwrap().id, s.id);
    assert!(verify_secret(&rec.hash, &full));
    assert!(!verify_secret(
        &rec.hash,
        &full.replace(parsed.key_id, "00000000")
    ));
    assert!(!rec.hash.contains(&full[full.len() - 32..]));

    let (_, second) = meta
        .create_api_key(default.id, s.id, Env::Live, "prod")
        .unwrap();
    let listed = meta.list_api_keys(default.id, s.id).unwrap();
    // Listing is by creation time; keys made in the same millisecond tie-break by key id.
    let mut names = listed.iter().map(|k| k.name.as_str()).collect::<Vec<_>>();
    names.sort_unstable();
    assert_eq!(names, ["ci", "prod"]);
    assert!(is_not_found(meta.list_api_keys(other.id, s.id)));

    assert!(is_not_found(meta.revoke_api_key(
        other.id,
        s.id,
        &info.key_id
    )));
    let revoked = meta.revoke_api_key(default.id, s.id, &info.key_id).unwrap();
    let at = revoked.revoked_at_ms.expect("revoked");
    // Idempotent: the first revocation time stays.
    let again = meta.revoke_api_key(default.id, s.id, &info.key_id).unwrap();
    assert_eq!(again.revoked_at_ms, Some(at));
    assert!(meta
        .api_key_record(&info.key_id)
        .unwrap()
        .unwrap()
        .info
        .is_revoked());
    assert!(!meta
        .api_key_record(&second.key_id)
        .unwrap()
        .unwrap()
        .info
        .is_revoked());
    assert!(meta.api_key_record("nokeyid0").unwrap().is_none());
}

#[test]
fn key_usage_is_batched_and_monotonic() {
    let dir = TempDir::new();
    let (meta, _, default) = bootstrapped(&dir);
    let (s, first) = meta.create_server(default.id, &server("s", true)).unwrap();
    let a = first.unwrap().1.key_id;
    let b = meta
        .create_api_key(default.id, s.id, Env::Live, "b")
        .unwrap()
        .1
        .key_id;
    let usage = |key_id: &str, at, requests, spans| KeyUsage {
        key_id: key_id.into(),
        last_used_at_ms: at,
        requests,
        spans,
    };
    let n = meta
        .record_key_usage(&[
            usage(&a, 1_000, 2, 10),
            usage(&b, 2_000, 1, 5),
            usage("unknown0", 5, 1, 1),
        ])
        .unwrap();
    assert_eq!(n, 2);
    meta.record_key_usage(&[usage(&a, 500, 1, 1)]).unwrap();
    assert_eq!(meta.record_key_usage(&[]).unwrap(), 0);
    let keys = meta.list_api_keys(default.id, s.id).unwrap();
    let ka = keys.iter().find(|k| k.key_id == a).unwrap();
    assert_eq!(
        (ka.requests, ka.spans, ka.last_used_at_ms),
        (3, 11, Some(1_000))
    );
    let kb = keys.iter().find(|k| k.key_id == b).unwrap();
    assert_eq!(
        (kb.requests, kb.spans, kb.last_used_at_ms),
        (1, 5, Some(2_000))
    );
}

#[test]
fn personal_access_tokens() {
    let dir = TempDir::new();
    let (meta, admin, _) = bootstrapped(&dir);
    let bob = meta.create_user("bob", None, "password1").unwrap();
    let (full, info) = meta.create_pat(admin.id, "laptop").unwrap();
    assert!(full.starts_with(&format!("mcpobs_pat_{}", info.key_id)));
    assert_eq!(parse_key(&full).unwrap().kind, KeyKind::Pat);
    let (rec, user) = meta.pat_auth(&info.key_id).unwrap().unwrap();
    assert_eq!(user.unwrap().id, admin.id);
    assert!(verify_secret(&rec.hash, &full));
    assert_eq!(
        meta.list_pats(admin.id).unwrap(),
        std::slice::from_ref(&info)
    );
    assert!(meta.list_pats(bob.id).unwrap().is_empty());
    assert!(is_not_found(meta.revoke_pat(bob.id, &info.key_id)));
    meta.record_usage(
        &[],
        &[KeyUsage {
            key_id: info.key_id.clone(),
            last_used_at_ms: 42,
            requests: 1,
            spans: 0,
        }],
    )
    .unwrap();
    let revoked = meta.revoke_pat(admin.id, &info.key_id).unwrap();
    assert!(revoked.is_revoked());
    assert_eq!(revoked.last_used_at_ms, Some(42));
    assert!(meta
        .pat_record(&info.key_id)
        .unwrap()
        .unwrap()
        .info
        .is_revoked());
}
