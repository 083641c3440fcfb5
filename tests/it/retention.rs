//! Retention through the real binary: an organization's retention hides older data at once (span
//! list, traces, analytics, ingest), the background task deletes its day files and gives the space
//! back, other organizations keep theirs, and the disk budget drops the oldest days first.

use std::time::{Duration, Instant};

use prost::Message;
use rand::SeedableRng;
use serde_json::json;

use crate::gen::{self, now_unix_nano};
use crate::harness::*;

const DAY: u64 = 86_400_000_000_000;

fn day_files(dir: &TempDir) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.path().join("data/spans"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".redb"))
        .collect();
    v.sort();
    v
}

fn file_of(start_unix_nano: u64) -> String {
    // YYYY-MM-DD of a unix day, as the span store names its files.
    let days = (start_unix_nano / DAY) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}.redb")
}

fn count(srv: &Server, s: &Session, org: &str) -> usize {
    crate::analytics::all_spans(srv, s, org).len()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn retention_hides_then_deletes_and_the_budget_drops_oldest_days() {
    let dir = TempDir::new("retention");
    // First without the background task (it would run in an hour), so that what the API hides is
    // hidden by the API itself.
    let config = "[storage]\nretention_interval_ms = 300\n";
    let srv = Server::start_with(
        dir.path(),
        StartOptions {
            config_toml: Some("[storage]\nretention_interval_ms = 3600000\n"),
            ..StartOptions::default()
        },
    );
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    let (_, key) = admin.create_server(&srv, "default", "kept-briefly");
    // A second organization that keeps the default 90 days.
    admin.send(
        &srv,
        "POST",
        "/api/v1/orgs",
        json!({ "slug": "other", "name": "Other" }),
    );
    let (_, other_key) = admin.create_server(&srv, "other", "kept-long");

    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let now = now_unix_nano();
    let old = now - 5 * DAY;
    let recent = now - 3_600_000_000_000;
    let mut old_trace = String::new();
    for (k, start, n) in [(&key, old, 30), (&key, recent, 20), (&other_key, old, 10)] {
        let (req, exp) = gen::request(&mut rng, n, start);
        if start == old && k == &key {
            old_trace = hex::encode(exp[0].trace_id);
        }
        let r = post_traces(
            &srv,
            Some(k),
            "application/x-protobuf",
            false,
            &req.encode_to_vec(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(count(&srv, &admin, "default"), 50);
    let old_file = file_of(old);
    assert!(day_files(&dir).contains(&old_file));

    // The owner shortens retention to 2 days: older data disappears from every read at once.
    let r = admin.send(
        &srv,
        "PATCH",
        "/api/v1/orgs/default",
        json!({ "retention_days": 2 }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(count(&srv, &admin, "default"), 20, "span list");
    let t = admin.get(&srv, &format!("/api/v1/orgs/default/traces/{old_trace}"));
    assert_eq!(t.status, 404, "trace past retention");
    let sum = admin
        .get(&srv, "/api/v1/orgs/default/analytics/summary?range=7d")
        .json();
    assert_eq!(sum["current"]["spans"], 20, "analytics: {sum}");
    let export = admin.get(&srv, "/api/v1/orgs/default/spans/export?format=jsonl");
    assert_eq!(export.status, 200);
    assert_eq!(export.text().lines().count(), 20, "export");
    // Ingest refuses spans older than the organization's retention.
    let (req, _) = gen::request(&mut rng, 3, now - 4 * DAY);
    let r = post_traces(
        &srv,
        Some(&key),
        "application/x-protobuf",
        false,
        &req.encode_to_vec(),
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("retention"), "{}", r.text());
    assert!(day_files(&dir).contains(&old_file), "nothing deleted yet");
    assert_eq!(srv.terminate(), Some(0));

    let srv = Server::start_with(
        dir.path(),
        StartOptions {
            config_toml: Some(config),
            ..StartOptions::default()
        },
    );
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    // The background task purges this organization from the old day, which the other
    // organization still keeps; its data is untouched.
    wait_until("the purge", || {
        srv.log().contains("retention: organizations purged")
    });
    assert_eq!(count(&srv, &admin, "other"), 10);
    assert!(day_files(&dir).contains(&old_file));
    // When the other organization shortens its retention too, the whole day file goes.
    let r = admin.send(
        &srv,
        "PATCH",
        "/api/v1/orgs/other",
        json!({ "retention_days": 1 }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until("the day file deleted", || {
        !day_files(&dir).contains(&old_file)
    });
    assert_eq!(count(&srv, &admin, "other"), 0);
    assert_eq!(count(&srv, &admin, "default"), 20);
    assert_eq!(srv.terminate(), Some(0));

    // Disk budget: days 3, 2 and 1 ago (within both retentions again), then a 1-byte budget
    // keeps only the newest day file.
    let srv = Server::start_with(
        dir.path(),
        StartOptions {
            config_toml: Some(config),
            ..StartOptions::default()
        },
    );
    let admin = login(&srv, "admin", ADMIN_PASSWORD).unwrap();
    admin.send(
        &srv,
        "PATCH",
        "/api/v1/orgs/default",
        json!({ "retention_days": 90 }),
    );
    for d in [3, 2, 1] {
        let (req, _) = gen::request(&mut rng, 10, now - d * DAY);
        let r = post_traces(
            &srv,
            Some(&key),
            "application/x-protobuf",
            false,
            &req.encode_to_vec(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(day_files(&dir).len() >= 3);
    assert_eq!(srv.terminate(), Some(0));
    let srv = Server::start_with(
        dir.path(),
        StartOptions {
            config_toml: Some("[storage]\nretention_interval_ms = 300\ndisk_bytes_max = 1\n"),
            ..StartOptions::default()
        },
    );
    wait_until("the budget applied", || day_files(&dir).len() == 1);
    let newest = file_of(recent.max(now - DAY));
    assert_eq!(
        day_files(&dir),
        vec![newest.clone()],
        "the newest day stays"
    );
    assert!(srv.log().contains("disk budget"));
    assert_eq!(srv.terminate(), Some(0));
}
