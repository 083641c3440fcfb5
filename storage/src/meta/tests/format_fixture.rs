//! A `meta.redb` written by the released format version 1 (tests/data/meta-v1.redb, made by the
//! binary's quick start: org `default`, owner `admin`, server `weather` with one live key) must keep
//! opening and reading the same way. If this fails, the format changed: bump FORMAT_VERSION, add a
//! fixture for the new version, and describe the change in docs/format.md.

use super::*;

const ADMIN_PASSWORD: &str = "quickstart-pass-1";
/// The fixture's only API key. It exists nowhere but in this throwaway file.
const FIXTURE_KEY: &str = "mcpobs_live_eIAAPFcKvkRF9BrMVBKGIyAaWHkxErZi2u1ivgGP";

#[test]
fn format_v1_fixture_opens_and_reads() {
    let dir = TempDir::new();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/meta-v1.redb");
    std::fs::copy(fixture, dir.file()).unwrap();
    let meta = MetaStore::open(dir.file()).unwrap();

    let org = meta.org_by_slug("default").unwrap().expect("org default");
    let admin = meta
        .check_login("admin", ADMIN_PASSWORD)
        .unwrap()
        .expect("admin logs in");
    assert_eq!(meta.role(org.id, admin.id).unwrap(), Some(Role::Owner));
    assert!(meta.check_login("admin", "wrong").unwrap().is_none());

    let servers = meta.servers(org.id).unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].name, "weather");
    assert!(servers[0].telemetry_enabled);

    let parsed = secret::parse_key(FIXTURE_KEY).unwrap();
    let rec = meta
        .api_key_record(parsed.key_id)
        .unwrap()
        .expect("key record");
    assert_eq!(rec.info.server_id, servers[0].id);
    assert_eq!(rec.info.env, Env::Live);
    assert!(secret::verify_secret(&rec.hash, FIXTURE_KEY));
    // Bootstrap must see a non-empty store and do nothing.
    assert!(meta.bootstrap(Some("other")).unwrap().is_none());
}
