//! The proptest that drives random appends, filters, pagination and compaction and compares every
//! result with a brute-force model over a plain `Vec<SpanRecord>`.

use proptest::prelude::*;

use super::gen::{eq_bits, Gen, DAY0};
use super::{all, opts};
use crate::model::*;
use crate::spans::cursor::RowKey;
use crate::spans::{ScanBlock, ScanSink, SpanFilter, SpanStore, StatusFilter};

pub(super) fn matches(s: &SpanRecord, f: &SpanFilter) -> bool {
    let eq = |want: &Option<String>, have: &Option<Text>| {
        want.as_ref()
            .is_none_or(|w| have.as_deref() == Some(w.as_str()))
    };
    f.server_ids
        .as_ref()
        .is_none_or(|ids| ids.contains(&s.server_id))
        && f.env.is_none_or(|e| e == s.env)
        && f.from_unix_nano.is_none_or(|t| s.start_unix_nano >= t)
        && f.to_unix_nano.is_none_or(|t| s.start_unix_nano < t)
        && eq(&f.method, &s.mcp.method)
        && eq(&f.tool, &s.mcp.tool)
        && eq(&f.user_id, &s.mcp.user_id)
        && eq(&f.session_id, &s.mcp.session_id)
        && f.error_type.as_ref().is_none_or(|want| {
            // The error type analytics groups the span under: errors without one are `_OTHER`.
            let grouped = match &s.mcp.error_type {
                Some(t) => Some(t.as_str()),
                None => s.is_error().then_some("_OTHER"),
            };
            grouped == Some(want.as_str())
        })
        && eq(&f.client_name, &s.mcp.client_name)
        && f.status
            .is_none_or(|st| (st == StatusFilter::Error) == s.is_error())
        && f.min_duration_nanos.is_none_or(|d| s.duration_nanos() >= d)
        && f.trace_id.is_none_or(|t| t == s.trace_id)
}

fn model_list(spans: &[SpanRecord], org: OrgId, f: &SpanFilter) -> Vec<SpanRecord> {
    let mut v: Vec<SpanRecord> = spans
        .iter()
        .filter(|s| s.org_id == org && matches(s, f))
        .cloned()
        .collect();
    v.sort_by_key(|s| std::cmp::Reverse(RowKey::of(s)));
    v
}

pub(super) fn filter(g: &mut Gen, bits: u32, t: [u64; 2]) -> SpanFilter {
    let on = |i: u32| bits & (1 << i) != 0;
    let day0 = u64::from(DAY0) * DAY_NANOS;
    SpanFilter {
        server_ids: on(0).then(|| vec![10, 21, 30 + (t[0] % 3) as u32]),
        env: on(1).then_some(if on(12) { Env::Test } else { Env::Live }),
        from_unix_nano: on(2).then_some(day0 + t[0] % (3 * DAY_NANOS)),
        to_unix_nano: on(3).then_some(day0 + t[1] % (3 * DAY_NANOS)),
        method: on(4).then(|| "tools/call".into()),
        tool: on(5).then(|| if on(13) { "ünïcode" } else { "search" }.into()),
        user_id: on(6).then(|| "alice".into()),
        session_id: on(7).then(|| "s2".into()),
        error_type: on(15).then(|| {
            match (on(16), on(18)) {
                (_, true) => "_OTHER",
                (true, false) => "timeout",
                (false, false) => "tool_error",
            }
            .into()
        }),
        client_name: on(17).then(|| "claude-desktop".into()),
        status: on(8).then_some(if on(14) {
            StatusFilter::Error
        } else {
            StatusFilter::Ok
        }),
        min_duration_nanos: on(9).then_some(t[1] % 5_000_000_000),
        trace_id: on(10).then(|| g.traces[(t[0] % 8) as usize]),
    }
}

fn assert_same(got: &[SpanRecord], want: &[SpanRecord], what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}", what);
    for (a, b) in got.iter().zip(want) {
        prop_assert!(
            eq_bits(a, b),
            "{}: {:?} != {:?}",
            what,
            a.span_id,
            b.span_id
        );
    }
    Ok(())
}

/// Collects what a scan hands out, as records; stops after `stop_after` rows if set.
struct Collect {
    spans: Vec<SpanRecord>,
    stop_after: Option<usize>,
}

impl ScanSink for Collect {
    type Prepared = ();
    fn prepare(&mut self, _: &std::sync::Arc<ScanBlock>, _: &[u32]) -> crate::Result<()> {
        Ok(())
    }
    fn rows(
        &mut self,
        b: &ScanBlock,
        _: &mut (),
        rows: &[u32],
    ) -> crate::Result<std::ops::ControlFlow<()>> {
        for &r in rows {
            self.spans.push(b.record(r as usize)?);
        }
        let stop = self.stop_after.is_some_and(|n| self.spans.len() >= n);
        Ok(match stop {
            true => std::ops::ControlFlow::Break(()),
            false => std::ops::ControlFlow::Continue(()),
        })
    }
}

/// `scan` with at most `live_max` decoded blocks: (records, stats).
fn scan_all(
    store: &SpanStore,
    org: OrgId,
    f: &SpanFilter,
    live_max: usize,
    stop_after: Option<usize>,
) -> (Vec<SpanRecord>, crate::spans::ScanStats) {
    let mut c = Collect {
        spans: Vec::new(),
        stop_after,
    };
    let stats = store.scan_capped(org, f, &mut c, live_max).unwrap();
    (c.spans, stats)
}

fn check(
    store: &SpanStore,
    g: &mut Gen,
    spans: &[SpanRecord],
    filters: &[(u32, [u64; 2])],
    page: usize,
) -> Result<(), TestCaseError> {
    for &(bits, t) in filters {
        let f = filter(g, bits, t);
        for org in 1..=3 {
            let want = model_list(spans, org, &f);
            assert_same(&all(store, org, &f, page), &want, &format!("{f:?}"))?;
            // The bulk scan hands out exactly the list's rows in the list's order, however few
            // blocks it may keep decoded.
            for live_max in [1, 2, 64] {
                let (got, stats) = scan_all(store, org, &f, live_max, None);
                assert_same(&got, &want, &format!("scan (live {live_max}) {f:?}"))?;
                prop_assert_eq!(stats.rows as usize, want.len());
                prop_assert!(!stats.stopped);
            }
            if want.len() > 1 {
                let (got, stats) = scan_all(store, org, &f, 2, Some(page.min(want.len() - 1)));
                prop_assert!(stats.stopped);
                prop_assert!(got.len() >= page.min(want.len() - 1) && got.len() < want.len() + 1);
                assert_same(&got, &want[..got.len()], "stopped scan")?;
            }
        }
    }
    for trace in g.traces.clone() {
        for org in 1..=3 {
            let mut want: Vec<SpanRecord> = spans
                .iter()
                .filter(|s| s.org_id == org && s.trace_id == trace)
                .cloned()
                .collect();
            want.sort_by_key(|s| (s.start_unix_nano, s.span_id, s.server_id));
            assert_same(&store.trace(org, &trace).unwrap(), &want, "trace")?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn list_trace_compact_match_model(
        seed in any::<u64>(),
        batches in proptest::collection::vec(1usize..60, 1..5),
        filters in proptest::collection::vec((any::<u32>(), any::<[u64; 2]>()), 1..8),
        page in 1usize..30,
        block_rows in 2usize..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::open(dir.path(), opts(block_rows)).unwrap();
        let mut g = Gen::new(seed, 3);
        let mut spans = Vec::new();
        for (i, n) in batches.iter().enumerate() {
            let batch: Vec<SpanRecord> = (0..*n).map(|_| g.span()).collect();
            store.append(&batch).unwrap();
            spans.extend(batch);
            if i == 1 {
                store.compact().unwrap();
            }
        }
        // Unfiltered listing always runs, whatever the random filters are.
        let mut filters = filters;
        filters.push((0, [0, 0]));
        check(&store, &mut g, &spans, &filters, page)?;
        store.compact().unwrap();
        check(&store, &mut g, &spans, &filters, page)?;
    }
}

/// A scan keeps its decoded blocks' vectors in pools (`crate::bufs::scope`) and decodes later
/// blocks into them: with blocks large enough to be pooled (4,096 rows), few blocks live at once
/// (so blocks are dropped and decoded again) and three servers interleaving, the scan hands out
/// exactly the span list, and keeps nothing once it returns.
#[test]
fn scans_decoding_into_pooled_vectors_equal_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), opts(4096)).unwrap();
    let mut g = Gen::new(31, 1);
    for round in 0..10 {
        let batch: Vec<SpanRecord> = (0..1500)
            .map(|i| {
                let mut s = g.span();
                (s.org_id, s.server_id) = (1, 10 + (i + round) % 3);
                s
            })
            .collect();
        store.append(&batch).unwrap();
    }
    store.compact().unwrap();
    let want = all(&store, 1, &SpanFilter::default(), 1000);
    assert_eq!(want.len(), 15_000);
    for live_max in [1, 2, 64] {
        let (got, stats) = scan_all(&store, 1, &SpanFilter::default(), live_max, None);
        assert_eq!(got.len(), want.len(), "live_max {live_max}");
        for (a, b) in got.iter().zip(&want) {
            assert!(eq_bits(a, b), "live_max {live_max}: {:?}", a.span_id);
        }
        assert!(stats.blocks_read >= 3);
        assert_eq!(crate::bufs::pooled_bytes(), 0, "nothing kept past the scan");
    }
}
