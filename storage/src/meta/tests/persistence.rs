//! Sessions, what reaches the disk, reopening and the format version.

use super::*;

#[test]
fn sessions_expire_and_store_no_token() {
    let dir = TempDir::new();
    let (meta, admin, _) = bootstrapped(&dir);
    let s = meta.create_session(admin.id, 60).unwrap();
    assert_eq!(s.token.len(), 64);
    assert_ne!(s.token, s.csrf_token);
    let live = meta.session(&s.token).unwrap().expect("live");
    assert_eq!(
        (live.user_id, live.csrf_token.as_str()),
        (admin.id, s.csrf_token.as_str())
    );
    assert!(meta
        .session_at(&s.token, s.expires_at_ms)
        .unwrap()
        .is_none());
    assert!(meta.session("not-a-token").unwrap().is_none());
    assert!(is_not_found(meta.create_session(999, 60)));

    let gone = meta.create_session(admin.id, 0).unwrap();
    assert!(meta.session(&gone.token).unwrap().is_none());
    meta.delete_session(&s.token).unwrap();
    assert!(meta.session(&s.token).unwrap().is_none());
    meta.delete_session(&s.token).unwrap();
    // The zero-ttl session is purged (maybe already by a later create_session).
    meta.purge_expired_sessions(now_ms() + 1).unwrap();
    drop(meta);
    // Only digests are on disk.
    let bytes = std::fs::read(dir.file()).unwrap();
    let needle = s.token.as_bytes();
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn data_survives_reopen_and_format_version_is_checked() {
    let dir = TempDir::new();
    let key_id;
    {
        let (meta, admin, default) = bootstrapped(&dir);
        let (_, key) = meta.create_server(default.id, &server("s", true)).unwrap();
        key_id = key.unwrap().1.key_id;
        meta.create_pat(admin.id, "t").unwrap();
    }
    let meta = store(&dir);
    let admin = meta
        .check_login("admin", "admin-password")
        .unwrap()
        .unwrap();
    assert_eq!(meta.list_pats(admin.id).unwrap().len(), 1);
    assert!(meta.api_key_record(&key_id).unwrap().is_some());
    // Ids keep counting after reopen.
    let bob = meta.create_user("bob", None, "password1").unwrap();
    assert_eq!(bob.id, admin.id + 1);
    meta.write(|txn| {
        txn.open_table(tables::META)?
            .insert(tables::K_FORMAT_VERSION, 99)?;
        Ok(())
    })
    .unwrap();
    drop(meta);
    match MetaStore::open_with(dir.file(), FAST) {
        Err(StorageError::FormatVersion {
            found: 99,
            supported: FORMAT_VERSION,
        }) => {}
        other => panic!("expected a format version error, got {other:?}"),
    }
}
