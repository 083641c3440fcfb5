//! `SpanStore::list`: newest-first filtered listing. Walks partitions newest first and, inside one,
//! the (cached) header summaries by descending max start time, skipping blocks by header fields
//! and then by bitmaps (read only for blocks that could still contribute). For each block read,
//! only the start column and the filtered columns are fetched, rows are taken newest first until
//! `need` are certain, and a block whose max start is below the `need`-th best start so far ends
//! the walk. Trace and span ids (the tie-breakers of the order, 75% of a block) are then read for
//! the surviving rows only, and only the rows returned are materialized.

use std::sync::Arc;

use redb::ReadTransaction;

use super::block::ColumnRead;
use super::columns::{StrField, C_SPAN, C_STATUS, C_TRACE};
use super::corrupt;
use super::cursor::{Cursor, RowKey};
use super::fast;
use super::header::{bitmaps_match, filter_uses_bitmaps, Ranks, Summary};
use super::lazy::LazyBody;
use super::materialize::Materialize;
use super::partition::{header_key, BODIES, HEADERS};
use super::registry::OpenPartition;
use super::textscan::{self, in_intervals, intervals, overlap_fields};
use super::{trace_index, SpanFilter, SpanPage, SpanStore, StatusFilter};
use crate::codec::strdict::{self, StrVals};
use crate::codec::Reader;
use crate::error::Result;
use crate::model::{day_of, OrgId, SpanRecord, STATUS_ERROR};
use crate::rollup::ERROR_TYPE_UNSPECIFIED;
use crate::search::{DayCandidates, Interval, Matcher, TextQuery};

/// Most spans one page may hold, whatever the caller asks: bounds the memory of one query.
pub const LIST_LIMIT_MAX: usize = 10_000;

/// A matching row whose start time may place it in the page: the block body it lives in (index
/// into `Scan::bodies`), its row, and its trace and span ids once read.
struct Cand {
    start: u64,
    body: usize,
    row: usize,
    ids: Option<([u8; 16], [u8; 8])>,
}

/// State of one `list` call: every matching row with a start time at least the `need`-th best
/// (ties kept, since the ids that break them are read last) and the bodies they point into.
struct Scan<'a> {
    org: OrgId,
    /// Text search: the verifier every row must pass (same analyzer as the index).
    text: Option<Matcher>,
    f: &'a SpanFilter,
    lo: u64,
    top: u64,
    cursor: Option<Cursor>,
    need: usize,
    /// Sorted by descending start after each block.
    cands: Vec<Cand>,
    bodies: Vec<Option<LazyBody>>,
}

impl SpanStore {
    /// Spans of `org` matching `filter`, newest first, at most `limit` (capped at
    /// `LIST_LIMIT_MAX`), continuing after `cursor`. A malformed cursor is `StorageError::Invalid`.
    pub fn list(
        &self,
        org: OrgId,
        filter: &SpanFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SpanPage> {
        self.scan_text(org, filter, None, cursor, limit)
    }

    /// [`SpanStore::list`], restricted to spans matching `text` (see `search`) when given: per
    /// day, the index names the buckets that may match; blocks below the index watermark are
    /// read only inside those buckets, blocks at or above it (not yet indexed) entirely.
    pub(super) fn scan_text(
        &self,
        org: OrgId,
        filter: &SpanFilter,
        text: Option<&TextQuery>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SpanPage> {
        let cursor = cursor.map(Cursor::decode).transpose()?;
        let limit = limit.min(LIST_LIMIT_MAX);
        let lo = filter.from_unix_nano.unwrap_or(0);
        let mut top = match filter.to_unix_nano {
            Some(0) => return Ok(SpanPage::default()),
            Some(to) => to - 1,
            None => u64::MAX,
        };
        if let Some(c) = cursor {
            top = top.min(c.last.start);
        }
        if limit == 0 || lo > top {
            return Ok(SpanPage::default());
        }
        let dups = cursor.map_or(0, |c| c.dups as usize);
        let need = limit + 1 + dups;
        let mut scan = Scan {
            org,
            text: text.map(Matcher::new),
            f: filter,
            lo,
            top,
            cursor,
            need,
            cands: Vec::new(),
            bodies: Vec::new(),
        };
        for day in self.parts.days_desc() {
            if day > day_of(top) {
                continue;
            }
            // Rows of an older day all start before every row found so far.
            if day < day_of(lo) || scan.cands.len() >= need {
                break;
            }
            let Some(p) = self.parts.get(day, false)? else {
                continue;
            };
            let cands = text.map(|q| {
                let servers = filter.server_ids.as_deref();
                self.search
                    .candidates(day, org, servers, filter.env, q, lo, scan.top)
                    .unwrap_or_else(|e| {
                        // The index is only a shortcut: without it, every block is verified.
                        tracing::warn!(day, error = %e, "search index unusable, scanning the day");
                        DayCandidates::default()
                    })
            });
            let txn = p.part.db.begin_read()?;
            scan.partition(&p, &txn, cands.as_ref())?;
        }
        scan.finish(limit)
    }
}

impl Scan<'_> {
    /// Start time of the `need`-th best row so far: rows starting earlier cannot be listed.
    fn threshold(&self) -> Option<u64> {
        self.cands.get(self.need - 1).map(|c| c.start)
    }

    fn partition(
        &mut self,
        p: &OpenPartition,
        txn: &ReadTransaction,
        cands: Option<&DayCandidates>,
    ) -> Result<()> {
        let sums = p.summaries(txn)?;
        let org = self.org;
        let a = sums.partition_point(|s| s.org < org);
        let b = sums.partition_point(|s| s.org <= org);
        let traced = match &self.f.trace_id {
            Some(t) => Some(trace_index::lookup(txn, org, t)?),
            None => None,
        };
        let mut blocks: Vec<&Summary> = sums[a..b]
            .iter()
            .filter(|s| {
                self.f
                    .server_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&s.server))
                    && traced.as_ref().is_none_or(|t| t.contains(&s.block))
                    && s.may_match(self.f, self.lo, self.top)
                    && intervals(cands, s).is_none_or(|iv| {
                        overlap_fields(iv, s.min_start.max(self.lo), s.max_start.min(self.top)) != 0
                    })
            })
            .collect();
        if blocks.is_empty() {
            return Ok(());
        }
        blocks.sort_by_key(|s| std::cmp::Reverse(s.max_start));
        let bodies = Arc::new(txn.open_table(BODIES)?);
        let headers = match filter_uses_bitmaps(self.f) {
            true => Some(txn.open_table(HEADERS)?),
            false => None,
        };
        for s in blocks {
            let t = self.threshold();
            if t.is_some_and(|t| s.max_start < t) {
                break;
            }
            let mut ranks: Ranks = [None; 4];
            if let Some(h) = &headers {
                match h.get(&header_key(org, s.server, s.block))? {
                    Some(v) => match bitmaps_match(v.value(), self.f)? {
                        Some(r) => ranks = r,
                        None => continue,
                    },
                    None => return Err(corrupt(format!("header of block {} vanished", s.block))),
                }
            }
            let body = LazyBody::open(bodies.clone(), s)?;
            self.block(body, t, intervals(cands, s), &ranks)?;
        }
        Ok(())
    }

    /// Adds the rows of `body` that can still make the page, newest first.
    fn block(
        &mut self,
        body: LazyBody,
        threshold: Option<u64>,
        ivs: Option<&[Interval]>,
        ranks: &Ranks,
    ) -> Result<()> {
        let starts = body.start_col()?;
        let from = self.lo.max(threshold.unwrap_or(0));
        let a = starts.partition_point(|&s| s < from);
        let b = starts.partition_point(|&s| s <= self.top);
        if a >= b {
            return Ok(());
        }
        let Some(mut mask) = filter_mask(&body, starts, self.f, a, b, ranks)? else {
            return Ok(());
        };
        // Fields the index says can hold a term in these rows (all, for unindexed blocks).
        let fields = ivs.map_or(u8::MAX, |iv| overlap_fields(iv, starts[a], starts[b - 1]));
        if let Some(iv) = ivs {
            let m = mask.get_or_insert_with(|| vec![true; b - a]);
            for (k, x) in m.iter_mut().enumerate() {
                *x = *x && in_intervals(iv, starts[a + k]);
            }
        }
        if let Some(m) = self.text.as_mut() {
            match textscan::text_mask(&body, m, a, b, mask, fields)? {
                Some(t) => mask = Some(t),
                None => return Ok(()),
            }
        }
        let b_idx = self.bodies.len();
        let mut taken: Vec<Cand> = Vec::new();
        for i in (a..b).rev() {
            let start = starts[i];
            // Rows of this block older than its `need`-th match cannot be listed; equal starts
            // still can (ids break the tie).
            if taken.len() >= self.need && start < taken[self.need - 1].start {
                break;
            }
            if !mask.as_ref().is_none_or(|m| m[i - a]) {
                continue;
            }
            let mut ids = None;
            if let Some(c) = self.cursor.filter(|c| c.last.start == start) {
                let trace = body.fixed_rows::<16>(C_TRACE, &[i])?[0];
                let span = body.fixed_rows::<8>(C_SPAN, &[i])?[0];
                let key = RowKey {
                    start,
                    server: body.server(),
                    trace,
                    span,
                };
                if key > c.last {
                    continue;
                }
                ids = Some((trace, span));
            }
            taken.push(Cand {
                start,
                body: b_idx,
                row: i,
                ids,
            });
        }
        if taken.is_empty() {
            return Ok(());
        }
        self.bodies.push(Some(body));
        self.cands.extend(taken);
        self.cands.sort_by_key(|c| std::cmp::Reverse(c.start));
        if let Some(t) = self.threshold() {
            let keep = self.cands.partition_point(|c| c.start >= t);
            self.cands.truncate(keep);
        }
        self.release_unreferenced();
        Ok(())
    }

    /// Frees bodies no kept row points into, so memory stays at most `need` rows' blocks.
    fn release_unreferenced(&mut self) {
        let mut used = vec![false; self.bodies.len()];
        for c in &self.cands {
            used[c.body] = true;
        }
        for (b, u) in self.bodies.iter_mut().zip(used) {
            if !u {
                *b = None;
            }
        }
    }

    fn finish(mut self, limit: usize) -> Result<SpanPage> {
        // The ids of the surviving rows, a few chunks per block.
        for (b, body) in self.bodies.iter().enumerate() {
            let Some(body) = body else { continue };
            let (pos, rows): (Vec<usize>, Vec<usize>) = self
                .cands
                .iter()
                .enumerate()
                .filter(|(_, c)| c.body == b && c.ids.is_none())
                .map(|(i, c)| (i, c.row))
                .unzip();
            if rows.is_empty() {
                continue;
            }
            let traces = body.fixed_rows::<16>(C_TRACE, &rows)?;
            let spans = body.fixed_rows::<8>(C_SPAN, &rows)?;
            for (k, i) in pos.into_iter().enumerate() {
                self.cands[i].ids = Some((traces[k], spans[k]));
            }
        }
        let mut hits: Vec<(RowKey, usize, usize)> = Vec::with_capacity(self.cands.len());
        for c in &self.cands {
            let (trace, span) = c.ids.ok_or_else(|| corrupt("row without ids"))?;
            let server = match &self.bodies[c.body] {
                Some(b) => b.server(),
                None => return Err(corrupt("row without body")),
            };
            let key = RowKey {
                start: c.start,
                server,
                trace,
                span,
            };
            hits.push((key, c.body, c.row));
        }
        hits.sort_by_key(|h| std::cmp::Reverse(h.0));
        hits.truncate(self.need);
        if let Some(c) = self.cursor {
            // Rows equal to the cursor key come first; the first `dups` of them were returned already.
            let mut seen = 0;
            hits.retain(|h| {
                let skip = h.0 == c.last && seen < c.dups;
                seen += u32::from(skip);
                !skip
            });
        }
        let next_cursor = (hits.len() > limit).then(|| {
            let last = hits[limit - 1].0;
            let mut dups = hits[..limit].iter().filter(|h| h.0 == last).count() as u32;
            if let Some(c) = self.cursor.filter(|c| c.last == last) {
                dups += c.dups;
            }
            Cursor { last, dups }.encode()
        });
        hits.truncate(limit);
        let mut out: Vec<Option<SpanRecord>> = vec![None; hits.len()];
        for (b, body) in self.bodies.iter().enumerate() {
            let Some(body) = body else { continue };
            let (pos, rows): (Vec<usize>, Vec<usize>) = hits
                .iter()
                .enumerate()
                .filter(|(_, h)| h.1 == b)
                .map(|(i, h)| (i, h.2))
                .unzip();
            if rows.is_empty() {
                continue;
            }
            for (i, rec) in pos.into_iter().zip(body.materialize(&rows)?) {
                out[i] = Some(rec);
            }
        }
        let spans = out
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| corrupt("hit without body"))?;
        Ok(SpanPage { spans, next_cursor })
    }
}

/// Which of rows `a..b` of `body` match the column filters of `f` (index `i - a`): `Ok(None)` when
/// the block cannot match at all, `Some(None)` when `f` filters no column. Decodes only the
/// columns `f` names, and stops as soon as no row is left. `ranks` (from the block header, all
/// `None` if it was not read) lets a bitmap field of a `MOB4` body skip its dictionary walk.
#[allow(clippy::type_complexity)]
pub(super) fn filter_mask(
    body: &impl ColumnRead,
    starts: &[u64],
    f: &SpanFilter,
    a: usize,
    b: usize,
    ranks: &Ranks,
) -> Result<Option<Option<Vec<bool>>>> {
    let mut mask: Option<Vec<bool>> = None;
    // Applies one per-row predicate; false when no row is left.
    fn and(mask: &mut Option<Vec<bool>>, a: usize, b: usize, p: impl Fn(usize) -> bool) -> bool {
        let m = mask.get_or_insert_with(|| vec![true; b - a]);
        for (k, x) in m.iter_mut().enumerate() {
            *x = *x && p(a + k);
        }
        m.iter().any(|&x| x)
    }
    if let Some(d) = f.min_duration_nanos {
        let ends = body.ends(starts)?;
        if !and(&mut mask, a, b, |i| ends[i].saturating_sub(starts[i]) >= d) {
            return Ok(None);
        }
    }
    if let Some(env) = f.env {
        let envs = body.envs()?;
        if !and(&mut mask, a, b, |i| envs[i] == env) {
            return Ok(None);
        }
    }
    if let Some(st) = f.status {
        let status = body.bytes(C_STATUS)?;
        let raw = body.column(StrField::ErrorType.column())?;
        let err_type = decode_strs(&raw, body.rows())?;
        let want_err = st == StatusFilter::Error;
        let ok = and(&mut mask, a, b, |i| {
            (status[i] == STATUS_ERROR || err_type.present(i)) == want_err
        });
        if !ok {
            return Ok(None);
        }
    }
    // `_OTHER` is the error type analytics groups an error without `error.type` under (and a
    // literal `_OTHER`), so the filter names exactly what that row counts.
    let error_type = match f.error_type.as_deref() {
        Some(ERROR_TYPE_UNSPECIFIED) => {
            let status = body.bytes(C_STATUS)?;
            let raw = body.column(StrField::ErrorType.column())?;
            let named = fast::str_match(&raw, body.rows(), ERROR_TYPE_UNSPECIFIED)?;
            let err_type = decode_strs(&raw, body.rows())?;
            let ok = and(&mut mask, a, b, |i| {
                named.matches(i) || (status[i] == STATUS_ERROR && !err_type.present(i))
            });
            if !ok {
                return Ok(None);
            }
            &None
        }
        _ => &f.error_type,
    };
    let wanted = [
        (&f.method, StrField::Method, ranks[0]),
        (&f.tool, StrField::Tool, ranks[1]),
        (&f.user_id, StrField::UserId, ranks[2]),
        (&f.session_id, StrField::SessionId, ranks[3]),
        // Not summarized in the block headers' bitmaps (adding them would change the header
        // format): these two are decided from the column alone.
        (error_type, StrField::ErrorType, None),
        (&f.client_name, StrField::ClientName, None),
    ];
    for (want, field, rank) in wanted {
        let Some(v) = want else { continue };
        if let Some(pos) = rank {
            if let Some(hit) = fast::str_match_ranked(body, field.column(), pos, v)? {
                if !and(&mut mask, a, b, |i| hit[i]) {
                    return Ok(None);
                }
                continue;
            }
        }
        let raw = body.column(field.column())?;
        let m = fast::str_match(&raw, body.rows(), v)?;
        let ok = !matches!(m, fast::StrMatch::Absent) && and(&mut mask, a, b, |i| m.matches(i));
        if !ok {
            return Ok(None);
        }
    }
    if let Some(t) = &f.trace_id {
        let traces = body.trace_ids()?;
        if !and(&mut mask, a, b, |i| traces[i] == *t) {
            return Ok(None);
        }
    }
    Ok(Some(mask))
}

fn decode_strs(raw: &[u8], rows: usize) -> Result<StrVals<'_>> {
    let mut r = Reader::new(raw);
    let v = strdict::decode_vals(&mut r, rows)?;
    r.finish("string column")?;
    Ok(v)
}
