//! Retention against a real store: expired days deleted, one organization purged from a day others
//! keep (blocks, trace index and rollups), space given back, the disk budget, and idempotence.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};

use super::gen::{Gen, DAY0};
use super::*;
use crate::model::{day_of, DAY_NANOS};
use crate::rollup::{Cube, ScanRange, NO_FILTER};

fn rollup_rows(store: &SpanStore, org: u32, day: u32) -> usize {
    let mut n = 0;
    let servers: Vec<u32> = (org * 10..org * 10 + 3).collect();
    for env in [Env::Live, Env::Test] {
        store
            .scan_rollups(
                org,
                &servers,
                env,
                Cube::Users,
                ScanRange {
                    from_unix_nano: u64::from(day) * DAY_NANOS,
                    to_unix_nano: u64::from(day + 1) * DAY_NANOS,
                },
                false,
                crate::rollup::Read::Rows(&NO_FILTER),
                &mut |_, _| {
                    n += 1;
                    Ok(())
                },
            )
            .unwrap();
    }
    n
}

#[test]
fn retention_drops_purges_and_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(64)).unwrap();
    let mut g = Gen::new(5, 5);
    // Incompressible payloads make each day file larger than redb's minimum file size, so that
    // giving space back shows in the file sizes.
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let spans: Vec<SpanRecord> = (0..10_000)
        .map(|_| {
            let mut s = g.span();
            let payload: String = (0..3000)
                .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
                .collect();
            s.attributes.push(crate::model::KeyValue {
                key: "payload".into(),
                value: crate::model::AttrValue::Str(payload.into()),
            });
            s
        })
        .collect();
    store.append(&spans).unwrap();
    store.compact().unwrap();
    let days: Vec<u32> = (DAY0..DAY0 + 5).collect();
    let count = |store: &SpanStore, org: u32, day: u32| {
        let f = SpanFilter {
            from_unix_nano: Some(u64::from(day) * DAY_NANOS),
            to_unix_nano: Some(u64::from(day + 1) * DAY_NANOS),
            ..SpanFilter::default()
        };
        all(store, org, &f, 1000).len()
    };
    for &d in &days {
        for org in 1..=3 {
            assert!(count(&store, org, d) > 0 && rollup_rows(&store, org, d) > 0);
        }
    }
    // now = end of day 4 + 1 h. Org 1 keeps 2 days, org 2 keeps 4, org 3 keeps 1 (so day 3 and
    // older are past org 3's retention, day 2 and older past org 1's, day 0 past org 2's).
    let now = u64::from(DAY0 + 5) * DAY_NANOS + 3_600_000_000_000;
    let policy = RetentionPolicy {
        now_unix_nano: now,
        org_days: HashMap::from([(1, 2), (2, 4), (3, 1)]),
        default_days: 90,
        disk_bytes_max: None,
    };
    let sizes_before: HashMap<u32, u64> = store
        .partitions()
        .unwrap()
        .iter()
        .map(|p| (p.day, p.bytes))
        .collect();
    let stats = store.apply_retention(&policy).unwrap();
    assert_eq!(
        stats.partitions_expired, 1,
        "day 0 is past every organization's retention"
    );
    assert!(!dir.path().join(partition::file_name(DAY0)).exists());
    // Day 1 and 2: orgs 1 and 3 purged; day 3: org 3 purged.
    assert_eq!(stats.org_days_purged, 5);
    for &d in &days[1..] {
        for org in 1..=3 {
            let keep = u64::from(d + 1) * DAY_NANOS > policy.floor_of(org);
            assert_eq!(count(&store, org, d) > 0, keep, "org {org} day {d} spans");
            assert_eq!(
                rollup_rows(&store, org, d) > 0,
                keep,
                "org {org} day {d} rollups"
            );
        }
    }
    // Trace lookups of purged spans find nothing; kept ones still work.
    for s in spans
        .iter()
        .filter(|s| day_of(s.start_unix_nano) != DAY0)
        .take(300)
    {
        let got = store.trace(s.org_id, &s.trace_id).unwrap();
        let keep = u64::from(day_of(s.start_unix_nano) + 1) * DAY_NANOS > policy.floor_of(s.org_id);
        assert_eq!(got.iter().any(|x| x.span_id == s.span_id), keep);
    }
    // Space came back: purged days are smaller files now.
    for p in store.partitions().unwrap() {
        if p.day < DAY0 + 3 {
            assert!(
                p.bytes < sizes_before[&p.day],
                "day {} {} -> {}",
                p.day,
                sizes_before[&p.day],
                p.bytes
            );
        }
    }
    // Idempotent.
    let again = store.apply_retention(&policy).unwrap();
    assert_eq!((again.partitions_expired, again.org_days_purged), (0, 0));
    // Appends to a purged day keep working (the pending-block map forgot the purged blocks).
    let late: Vec<SpanRecord> = spans
        .iter()
        .filter(|s| s.org_id == 2 && day_of(s.start_unix_nano) == DAY0 + 2)
        .take(5)
        .map(|s| {
            let mut s = s.clone();
            s.span_id = [9; 8];
            s
        })
        .collect();
    store.append(&late).unwrap();
    store.compact().unwrap();

    // Disk budget: keep only what fits, newest first; the newest day always stays.
    let parts = store.partitions().unwrap();
    let newest_two: u64 = parts.iter().rev().take(2).map(|p| p.bytes).sum();
    let budget = RetentionPolicy {
        disk_bytes_max: Some(newest_two),
        org_days: HashMap::new(),
        ..policy.clone()
    };
    let stats = store.apply_retention(&budget).unwrap();
    assert_eq!(stats.partitions_over_budget, parts.len() - 2);
    assert!(stats.bytes_after <= newest_two);
    let tiny = RetentionPolicy {
        disk_bytes_max: Some(1),
        ..budget
    };
    store.apply_retention(&tiny).unwrap();
    assert_eq!(
        store.partitions().unwrap().len(),
        1,
        "the newest day is never dropped"
    );
}
