//! Retention and the search index, on real redb files and real tantivy directories: the disk
//! budget counts and drops a day's index with its file, closed day indexes reopen with the same
//! results and watermarks, and purging an organization deletes its documents.

use std::collections::HashMap;

use super::gen::DAY0;
use super::opts;
use crate::model::*;
use crate::search::indexer::catch_up;
use crate::search::{dir_name, SuggestField};
use crate::spans::partition::file_name;
use crate::spans::{RetentionPolicy, SpanFilter, SpanStore, SpanStoreOptions};

fn span_of(org: OrgId, server: ServerId, start: u64, tool: &str) -> SpanRecord {
    let mut g = super::gen::Gen::new(start, 1);
    let mut s = g.span();
    s.org_id = org;
    s.server_id = server;
    s.env = Env::Live;
    s.start_unix_nano = start;
    s.end_unix_nano = start + 1000;
    s.mcp.tool = Some(tool.into());
    s.mcp.user_id = Some(format!("user_{org}").into());
    s.name = format!("tools/call {tool}").into();
    s
}

/// `n` spans of `org` on `day`, tool `tool_d{day - DAY0}_o{org}`, spread over the day.
fn day_spans(org: OrgId, day: u32, n: u64) -> Vec<SpanRecord> {
    let t0 = u64::from(day) * DAY_NANOS;
    let tool = format!("tool_d{}_o{org}", day - DAY0);
    (0..n)
        .map(|i| span_of(org, org * 10, t0 + i * 60_000_000_000, &tool))
        .collect()
}

fn hits(store: &SpanStore, org: OrgId, q: &str) -> Vec<SpanRecord> {
    let q = store.parse_query(q).unwrap();
    store
        .search(org, &SpanFilter::default(), &q, None, 100_000)
        .unwrap()
        .spans
}

#[test]
fn disk_budget_counts_and_drops_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(64)).unwrap();
    for day in DAY0..DAY0 + 3 {
        store.append(&day_spans(1, day, 500)).unwrap();
    }
    catch_up(&store).unwrap();
    let parts = store.partitions().unwrap();
    assert_eq!(parts.len(), 3);
    let files: u64 = parts
        .iter()
        .map(|p| {
            std::fs::metadata(dir.path().join(file_name(p.day)))
                .unwrap()
                .len()
        })
        .sum();
    let total: u64 = parts.iter().map(|p| p.bytes).sum();
    for p in &parts {
        assert!(p.index_bytes > 0, "day {} has an index", p.day);
        let file = std::fs::metadata(dir.path().join(file_name(p.day)))
            .unwrap()
            .len();
        assert_eq!(p.bytes, file + p.index_bytes);
    }
    assert_eq!(hits(&store, 1, "tool_d0_o1").len(), 500);
    // A budget the day files alone meet: only counting the indexes makes it drop the oldest day.
    let budget = files.max(total - parts[0].bytes);
    assert!(budget < total);
    let policy = RetentionPolicy {
        now_unix_nano: u64::from(DAY0 + 3) * DAY_NANOS,
        org_days: HashMap::new(),
        default_days: 90,
        disk_bytes_max: Some(budget),
    };
    let stats = store.apply_retention(&policy).unwrap();
    assert_eq!(stats.partitions_over_budget, 1);
    assert_eq!(stats.bytes_before, total);
    assert!(stats.bytes_after <= budget);
    assert_eq!(
        stats.bytes_after,
        store
            .partitions()
            .unwrap()
            .iter()
            .map(|p| p.bytes)
            .sum::<u64>()
    );
    assert!(!dir.path().join(file_name(DAY0)).exists());
    assert!(!dir.path().join(dir_name(DAY0)).exists());
    assert!(!store.search_index().open_days().contains(&DAY0));
    assert!(hits(&store, 1, "tool_d0_o1").is_empty());
    assert_eq!(hits(&store, 1, "tool_d1_o1").len(), 500);
    // Neither a catch-up, a late commit for the day, nor a read recreates the directory.
    catch_up(&store).unwrap();
    let late = store
        .search_index()
        .commit_day(DAY0, Vec::new(), 1, |d| store.has_day(d))
        .unwrap();
    assert!(!late);
    assert_eq!(store.search_index().watermark(DAY0).unwrap(), 0);
    assert!(!dir.path().join(dir_name(DAY0)).exists());
}

#[test]
fn closed_day_indexes_reopen_with_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let mut o: SpanStoreOptions = opts(64);
    o.search.open_days_max = 2;
    let store = SpanStore::open(dir.path(), o).unwrap();
    let days: Vec<u32> = (DAY0..DAY0 + 6).collect();
    for &day in &days {
        store.append(&day_spans(1, day, 200)).unwrap();
        store.append(&day_spans(2, day, 100)).unwrap();
    }
    catch_up(&store).unwrap();
    let queries = [
        "tools/call",
        "tool_d0_o1",
        "tool_d5_o1",
        "user_1",
        "tool_d3_o2",
    ];
    let before: Vec<Vec<[u8; 8]>> = queries
        .iter()
        .flat_map(|q| [1, 2].map(|org| hits(&store, org, q).iter().map(|s| s.span_id).collect()))
        .collect();
    let marks: Vec<u64> = days
        .iter()
        .map(|&d| store.search_index().watermark(d).unwrap())
        .collect();
    assert!(marks.iter().all(|&w| w > 0));
    let suggest_before = store
        .suggest(1, SuggestField::Tool, "tool_", None, 0, 100)
        .unwrap();
    // Writers just committed keep their days open; closing them lets the bound apply.
    store.search_index().close_writers_except(&[]).unwrap();
    assert!(store.search_index().open_days().len() <= 2);
    // Closed days report their watermark without reopening.
    let again: Vec<u64> = days
        .iter()
        .map(|&d| store.search_index().watermark(d).unwrap())
        .collect();
    assert_eq!(again, marks);
    assert!(store.search_index().open_days().len() <= 2);
    // Searches reopen what they need and find the same spans, within the bound.
    let after: Vec<Vec<[u8; 8]>> = queries
        .iter()
        .flat_map(|q| [1, 2].map(|org| hits(&store, org, q).iter().map(|s| s.span_id).collect()))
        .collect();
    assert_eq!(after, before);
    assert_eq!(before[0].len(), 1200);
    assert_eq!(
        store
            .suggest(1, SuggestField::Tool, "tool_", None, 0, 100)
            .unwrap(),
        suggest_before
    );
    assert!(store.search_index().open_days().len() <= 2);
    // A closed day gets new rows: the catch-up reopens it from its remembered watermark.
    let oldest = days[0];
    for &d in &days[4..] {
        store.search_index().doc_count(d).unwrap();
    }
    assert_eq!(store.search_index().open_days(), days[4..]);
    let mut late = day_spans(1, oldest, 10);
    for s in &mut late {
        s.mcp.tool = Some("late_tool".into());
        s.start_unix_nano += 30_000_000_000;
        s.span_id[0] ^= 0x5a;
    }
    store.append(&late).unwrap();
    assert_eq!(catch_up(&store).unwrap(), vec![oldest]);
    assert!(store.search_index().watermark(oldest).unwrap() > marks[0]);
    assert_eq!(hits(&store, 1, "late_tool").len(), 10);
    store.search_index().close_writers_except(&[]).unwrap();
    assert!(store.search_index().open_days().len() <= 2);
    // Reopening the whole store finds the same committed watermarks.
    let marks_now: Vec<u64> = days
        .iter()
        .map(|&d| store.search_index().watermark(d).unwrap())
        .collect();
    drop(store);
    let store = SpanStore::open(dir.path(), opts(64)).unwrap();
    let reopened: Vec<u64> = days
        .iter()
        .map(|&d| store.search_index().watermark(d).unwrap())
        .collect();
    assert_eq!(reopened, marks_now);
    assert!(catch_up(&store).unwrap().is_empty());
}

#[test]
fn purge_deletes_the_organizations_documents() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(64)).unwrap();
    for day in [DAY0, DAY0 + 1] {
        store.append(&day_spans(1, day, 300)).unwrap();
        store.append(&day_spans(2, day, 300)).unwrap();
    }
    catch_up(&store).unwrap();
    let ix = store.search_index();
    let docs_before = ix.doc_count(DAY0).unwrap();
    let tools = |org| {
        ix.suggest(&[DAY0], SuggestField::Tool, org, None, "", 100)
            .unwrap()
    };
    assert_eq!(tools(1), ["tool_d0_o1"]);
    assert_eq!(tools(2), ["tool_d0_o2"]);
    let mark = ix.watermark(DAY0).unwrap();
    // Day 0 is past org 1's retention (1 day), not org 2's (90).
    let policy = RetentionPolicy {
        now_unix_nano: u64::from(DAY0 + 2) * DAY_NANOS + 1,
        org_days: HashMap::from([(1, 1), (2, 90)]),
        default_days: 90,
        disk_bytes_max: None,
    };
    let stats = store.apply_retention(&policy).unwrap();
    assert_eq!((stats.partitions_expired, stats.org_days_purged), (0, 1));
    assert!(stats.index_docs_purged > 0);
    assert_eq!(
        ix.doc_count(DAY0).unwrap(),
        docs_before - stats.index_docs_purged
    );
    assert!(tools(1).is_empty());
    assert_eq!(tools(2), ["tool_d0_o2"]);
    // The watermark stays: the remaining rows are still covered.
    assert_eq!(ix.watermark(DAY0).unwrap(), mark);
    let q = store.parse_query("tool_d0_o1").unwrap();
    let c = ix.candidates(DAY0, 1, None, None, &q, 0, u64::MAX).unwrap();
    assert!(c.ranges.is_some_and(|r| r.values().all(Vec::is_empty)));
    assert!(hits(&store, 1, "tool_d0_o1").is_empty());
    assert_eq!(hits(&store, 1, "tool_d1_o1").len(), 300);
    assert_eq!(hits(&store, 2, "tool_d0_o2").len(), 300);
    assert!(!ix.open_days().is_empty());
    // Idempotent; and the purge's writer was closed again.
    let again = store.apply_retention(&policy).unwrap();
    assert_eq!((again.org_days_purged, again.index_docs_purged), (0, 0));
    ix.close_writers_except(&[]).unwrap();
}
