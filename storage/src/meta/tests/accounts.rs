//! Bootstrap, users, organizations and memberships.

use super::*;

#[test]
fn bootstrap_runs_once_and_generates_a_password() {
    let dir = TempDir::new();
    let meta = store(&dir);
    let b = meta
        .bootstrap(None)
        .unwrap()
        .expect("empty store bootstraps");
    assert_eq!(
        (b.org_slug.as_str(), b.username.as_str()),
        ("default", "admin")
    );
    let password = b.password_generated.expect("generated");
    assert_eq!(password.len(), 20);
    assert!(secret::is_base62(&password));
    let admin = meta
        .check_login("admin", &password)
        .unwrap()
        .expect("login");
    let orgs = meta.orgs_of_user(admin.id).unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(
        (orgs[0].0.name.as_str(), orgs[0].1),
        ("Default", Role::Owner)
    );
    assert_eq!(orgs[0].0.retention_days, 90);
    // Second start, also after reopening: nothing happens.
    assert!(meta.bootstrap(Some("other-password")).unwrap().is_none());
    drop(meta);
    let meta = store(&dir);
    assert!(meta.bootstrap(None).unwrap().is_none());
    assert!(meta
        .check_login("admin", "other-password")
        .unwrap()
        .is_none());
    assert_eq!(meta.all_orgs().unwrap().len(), 1);
}

#[test]
fn bootstrap_with_given_password_and_standard_argon2id() {
    let dir = TempDir::new();
    let meta = MetaStore::open(dir.file()).unwrap();
    assert!(is_invalid(meta.bootstrap(Some(""))));
    let b = meta.bootstrap(Some("pw")).unwrap().unwrap();
    assert!(b.password_generated.is_none());
    assert!(meta.check_login("admin", "pw").unwrap().is_some());
    assert!(meta.check_login("admin", "pw2").unwrap().is_none());
    let user = meta.user_by_username("admin").unwrap().unwrap();
    // Production keys are argon2id v19 with the default (OWASP) parameters.
    let (key, info) = {
        let org = meta.org_by_slug("default").unwrap().unwrap();
        let (s, _) = meta.create_server(org.id, &server("s", false)).unwrap();
        meta.create_api_key(org.id, s.id, Env::Live, "k").unwrap()
    };
    let rec = meta.api_key_record(&info.key_id).unwrap().unwrap();
    assert!(rec.hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(verify_secret(&rec.hash, &key));
    assert_eq!(user.username, "admin");
}

#[test]
fn users_are_unique_and_validated() {
    let dir = TempDir::new();
    let meta = store(&dir);
    let alice = meta
        .create_user("alice", Some("Alice@Example.com"), "password1")
        .unwrap();
    assert_eq!(alice.email.as_deref(), Some("Alice@Example.com"));
    assert!(is_conflict(meta.create_user("alice", None, "password1")));
    assert!(is_conflict(meta.create_user(
        "alice2",
        Some("alice@example.COM"),
        "password1"
    )));
    assert!(is_invalid(meta.create_user("Alice", None, "password1")));
    assert!(is_invalid(meta.create_user(
        "bob",
        Some("nope"),
        "password1"
    )));
    assert!(is_invalid(meta.create_user("bob", None, "short")));
    // Login by username or email, case-insensitively.
    assert_eq!(
        meta.check_login("ALICE", "password1").unwrap().unwrap().id,
        alice.id
    );
    assert_eq!(
        meta.check_login("alice@example.com", "password1")
            .unwrap()
            .unwrap()
            .id,
        alice.id
    );
    assert!(meta.check_login("alice", "password2").unwrap().is_none());
    assert!(meta.check_login("nobody", "password1").unwrap().is_none());
    assert_eq!(meta.user(alice.id).unwrap(), Some(alice));
    assert_eq!(meta.user(999).unwrap(), None);
}

#[test]
fn orgs_and_membership_rules() {
    let dir = TempDir::new();
    let (meta, admin, default) = bootstrapped(&dir);
    let bob = meta.create_user("bob", None, "password1").unwrap();
    let acme = meta.create_org(bob.id, "acme", "Acme Inc").unwrap();
    assert!(is_conflict(meta.create_org(admin.id, "acme", "Other")));
    assert!(is_invalid(meta.create_org(admin.id, "Bad Slug", "x")));
    assert!(is_invalid(meta.create_org(admin.id, "ok", "")));
    assert!(is_not_found(meta.create_org(999, "ghost", "Ghost")));
    assert_eq!(meta.role(acme.id, bob.id).unwrap(), Some(Role::Owner));
    assert_eq!(meta.role(acme.id, admin.id).unwrap(), None);
    assert_eq!(meta.role(default.id, bob.id).unwrap(), None);

    // Memberships.
    meta.add_member(acme.id, admin.id, Role::Member).unwrap();
    assert!(is_conflict(meta.add_member(acme.id, admin.id, Role::Admin)));
    assert!(is_not_found(meta.add_member(acme.id, 999, Role::Admin)));
    let mut slugs: Vec<_> = meta
        .orgs_of_user(admin.id)
        .unwrap()
        .into_iter()
        .map(|(o, r)| (o.slug, r))
        .collect();
    slugs.sort();
    assert_eq!(
        slugs,
        [
            ("acme".to_string(), Role::Member),
            ("default".to_string(), Role::Owner)
        ]
    );
    let (org, role) = meta.org_and_role("acme", admin.id).unwrap().unwrap();
    assert_eq!((org.id, role), (acme.id, Some(Role::Member)));
    assert!(meta.org_and_role("nope", admin.id).unwrap().is_none());

    // The last owner can be neither demoted nor removed; with a second owner both work.
    assert!(is_invalid(meta.set_role(acme.id, bob.id, Role::Admin)));
    assert!(is_invalid(meta.remove_member(acme.id, bob.id)));
    meta.set_role(acme.id, admin.id, Role::Owner).unwrap();
    meta.set_role(acme.id, bob.id, Role::Admin).unwrap();
    assert!(is_invalid(meta.remove_member(acme.id, admin.id)));
    meta.remove_member(acme.id, bob.id).unwrap();
    assert!(is_not_found(meta.remove_member(acme.id, bob.id)));
    assert!(is_not_found(meta.set_role(acme.id, bob.id, Role::Owner)));
    assert!(meta.orgs_of_user(bob.id).unwrap().is_empty());
    let members = meta.members(acme.id).unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].user.id, members[0].role),
        (admin.id, Role::Owner)
    );

    let updated = meta
        .update_org(
            acme.id,
            &OrgUpdate {
                name: Some("Acme".into()),
                retention_days: Some(30),
            },
        )
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.retention_days),
        ("Acme", 30)
    );
    assert!(is_invalid(meta.update_org(
        acme.id,
        &OrgUpdate {
            retention_days: Some(0),
            ..Default::default()
        }
    )));
    assert_eq!(meta.org(acme.id).unwrap(), Some(updated));
}

#[test]
fn create_member_is_one_transaction() {
    let dir = TempDir::new();
    let (meta, admin, default) = bootstrapped(&dir);
    let carol = meta
        .create_member(
            default.id,
            "carol",
            Some("c@example.com"),
            "password1",
            Role::Admin,
        )
        .unwrap();
    assert_eq!(meta.role(default.id, carol.id).unwrap(), Some(Role::Admin));
    assert_eq!(
        meta.check_login("carol", "password1").unwrap(),
        Some(carol.clone())
    );
    // A taken username or email, or a missing organization (checked after the user row is
    // written): nothing of the attempt remains.
    assert!(is_conflict(meta.create_member(
        default.id,
        "admin",
        None,
        "password1",
        Role::Member
    )));
    assert!(is_conflict(meta.create_member(
        default.id,
        "dave",
        Some("C@example.com"),
        "password1",
        Role::Member
    )));
    assert!(is_not_found(meta.create_member(
        999,
        "dave",
        None,
        "password1",
        Role::Member
    )));
    assert!(is_invalid(meta.create_member(
        default.id,
        "dave",
        None,
        "short",
        Role::Member
    )));
    assert_eq!(meta.user_by_username("dave").unwrap(), None);
    assert!(meta.check_login("dave", "password1").unwrap().is_none());
    let names: Vec<String> = meta
        .members(default.id)
        .unwrap()
        .into_iter()
        .map(|m| m.user.username)
        .collect();
    assert_eq!(names, ["admin", "carol"]);
    assert_eq!(meta.role(default.id, admin.id).unwrap(), Some(Role::Owner));
    // The id the failed attempts would have used was not consumed either.
    let erin = meta.create_user("erin", None, "password1").unwrap();
    assert_eq!(erin.id, carol.id + 1);
}

#[test]
fn password_change_checks_the_current_one_and_ends_other_sessions() {
    let dir = TempDir::new();
    let (meta, admin, _) = bootstrapped(&dir);
    let bob = meta.create_user("bob", None, "password1").unwrap();
    let mine = meta.create_session(admin.id, 3600).unwrap();
    let other = meta.create_session(admin.id, 3600).unwrap();
    let bobs = meta.create_session(bob.id, 3600).unwrap();

    let wrong = meta.change_password(admin.id, "not-it", "new-password", Some(&mine.token));
    assert_eq!(wrong.unwrap(), PasswordChange::WrongCurrentPassword);
    assert!(is_invalid(meta.change_password(
        admin.id,
        "admin-password",
        "short",
        None
    )));
    assert!(meta.session(&other.token).unwrap().is_some());
    assert!(meta
        .check_login("admin", "admin-password")
        .unwrap()
        .is_some());

    let done = meta
        .change_password(
            admin.id,
            "admin-password",
            "new-password",
            Some(&mine.token),
        )
        .unwrap();
    assert_eq!(done, PasswordChange::Changed { sessions_ended: 1 });
    assert!(meta.session(&mine.token).unwrap().is_some());
    assert!(meta.session(&other.token).unwrap().is_none());
    assert!(meta.session(&bobs.token).unwrap().is_some());
    assert!(meta
        .check_login("admin", "admin-password")
        .unwrap()
        .is_none());
    assert!(meta.check_login("admin", "new-password").unwrap().is_some());
    // Expiry index entries went with the sessions: a purge finds only the live ones' entries.
    assert_eq!(meta.purge_expired_sessions(u64::MAX).unwrap(), 2);

    // Without a session to keep (a token caller) every session ends.
    let s = meta.create_session(bob.id, 3600).unwrap();
    let done = meta
        .change_password(bob.id, "password1", "password2", None)
        .unwrap();
    assert_eq!(done, PasswordChange::Changed { sessions_ended: 1 });
    assert!(meta.session(&s.token).unwrap().is_none());
    assert!(is_not_found(meta.change_password(
        999,
        "x",
        "password2",
        None
    )));
}
