//! `SpanStore::list`: newest-first filtered listing. Walks partitions newest first and, inside one,
//! blocks by descending max start time; skips blocks by header; decodes only the columns a filter
//! needs; stops as soon as no unread block can beat the rows already found.

use redb::ReadTransaction;

use super::block::BlockBody;
use super::columns::{StrField, C_STATUS};
use super::corrupt;
use super::cursor::{Cursor, RowKey};
use super::header::BlockHeader;
use super::partition::{header_key, split_header_key, BODIES, HEADERS};
use super::{trace_index, SpanFilter, SpanPage, SpanStore, StatusFilter};
use crate::error::Result;
use crate::model::{day_of, OrgId, SpanRecord, STATUS_ERROR};

/// Most spans one page may hold, whatever the caller asks: bounds the memory of one query.
pub const LIST_LIMIT_MAX: usize = 10_000;

/// One matching row: its order key, the block body it lives in (index into `Scan::bodies`), its row.
struct Hit {
    key: RowKey,
    body: usize,
    row: usize,
}

/// State of one `list` call: the best `need` hits so far and the bodies they point into.
struct Scan<'a> {
    org: OrgId,
    f: &'a SpanFilter,
    lo: u64,
    top: u64,
    cursor: Option<Cursor>,
    need: usize,
    hits: Vec<Hit>,
    bodies: Vec<Option<BlockBody>>,
}

impl SpanStore {
    /// Spans of `org` matching `filter`, newest first, at most `limit` (capped at
    /// [`LIST_LIMIT_MAX`]), continuing after `cursor`. A malformed cursor is `StorageError::Invalid`.
    pub fn list(
        &self,
        org: OrgId,
        filter: &SpanFilter,
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
            f: filter,
            lo,
            top,
            cursor,
            need,
            hits: Vec::new(),
            bodies: Vec::new(),
        };
        for day in self.parts.days_desc() {
            if day > day_of(top) {
                continue;
            }
            if day < day_of(lo) || scan.hits.len() >= need {
                break;
            }
            let Some(p) = self.parts.get(day, false)? else {
                continue;
            };
            let txn = p.part.db.begin_read()?;
            scan.partition(&txn)?;
        }
        scan.finish(limit)
    }
}

impl Scan<'_> {
    fn partition(&mut self, txn: &ReadTransaction) -> Result<()> {
        let mut cands = self.candidates(txn)?;
        cands.sort_by_key(|c| std::cmp::Reverse(c.1.max_start));
        let bodies = txn.open_table(BODIES)?;
        for (server, h, id) in cands.into_iter().map(|(k, h)| (k.0, h, k.1)) {
            if self.hits.len() >= self.need && h.max_start < self.hits[self.need - 1].key.start {
                break;
            }
            let body = match super::chunks::get(&bodies, id)? {
                Some(v) => BlockBody::parse(v)?,
                None => return Err(corrupt(format!("header without body {id}"))),
            };
            if body.org != self.org || body.server != server || body.rows != h.rows as usize {
                return Err(corrupt(format!("block {id} does not match its header")));
            }
            let rows = filter_rows(&body, self.f, self.lo, self.top, self.cursor)?;
            if rows.is_empty() {
                continue;
            }
            let b = self.bodies.len();
            self.bodies.push(Some(body));
            self.hits
                .extend(rows.into_iter().map(|(key, row)| Hit { key, body: b, row }));
            self.hits.sort_by_key(|h| std::cmp::Reverse(h.key));
            self.hits.truncate(self.need);
            self.release_unreferenced();
        }
        Ok(())
    }

    /// Headers of the org (or of the filtered servers) that may hold a matching row.
    fn candidates(&self, txn: &ReadTransaction) -> Result<Vec<((u32, u64), BlockHeader)>> {
        let headers = txn.open_table(HEADERS)?;
        let servers: Vec<(u32, u32)> = match &self.f.server_ids {
            Some(ids) => ids.iter().map(|&s| (s, s)).collect(),
            None => vec![(0, u32::MAX)],
        };
        let traced = match &self.f.trace_id {
            Some(t) => Some(trace_index::lookup(txn, self.org, t)?),
            None => None,
        };
        let mut out = Vec::new();
        for (s0, s1) in servers {
            let (a, b) = (
                header_key(self.org, s0, 0),
                header_key(self.org, s1, u64::MAX),
            );
            for entry in headers.range::<&[u8; 16]>(&a..=&b)? {
                let (k, v) = entry?;
                let (_, server, id) = split_header_key(k.value());
                if traced.as_ref().is_some_and(|t| !t.contains(&id)) {
                    continue;
                }
                let h = BlockHeader::decode(v.value())?;
                if h.may_match(self.f, self.lo, self.top) {
                    out.push(((server, id), h));
                }
            }
        }
        Ok(out)
    }

    /// Frees bodies no kept hit points into, so memory stays at most `need` hits' blocks.
    fn release_unreferenced(&mut self) {
        let mut used = vec![false; self.bodies.len()];
        for h in &self.hits {
            used[h.body] = true;
        }
        for (b, u) in self.bodies.iter_mut().zip(used) {
            if !u {
                *b = None;
            }
        }
    }

    fn finish(mut self, limit: usize) -> Result<SpanPage> {
        if let Some(c) = self.cursor {
            // Rows equal to the cursor key come first; the first `dups` of them were returned already.
            let mut seen = 0;
            self.hits.retain(|h| {
                let skip = h.key == c.last && seen < c.dups;
                seen += u32::from(skip);
                !skip
            });
        }
        let next_cursor = (self.hits.len() > limit).then(|| {
            let last = self.hits[limit - 1].key;
            let mut dups = self.hits[..limit].iter().filter(|h| h.key == last).count() as u32;
            if let Some(c) = self.cursor.filter(|c| c.last == last) {
                dups += c.dups;
            }
            Cursor { last, dups }.encode()
        });
        self.hits.truncate(limit);
        let mut out: Vec<Option<SpanRecord>> = vec![None; self.hits.len()];
        for (b, body) in self.bodies.iter().enumerate() {
            let Some(body) = body else { continue };
            let (pos, rows): (Vec<usize>, Vec<usize>) = self
                .hits
                .iter()
                .enumerate()
                .filter(|(_, h)| h.body == b)
                .map(|(i, h)| (i, h.row))
                .unzip();
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

/// Rows of `body` that match `f`, start in `[lo, top]` and come after the cursor. Decodes a column
/// only while rows remain, and only the columns the filter names.
fn filter_rows(
    body: &BlockBody,
    f: &SpanFilter,
    lo: u64,
    top: u64,
    cursor: Option<Cursor>,
) -> Result<Vec<(RowKey, usize)>> {
    let starts = body.starts()?;
    let mut sel: Vec<usize> = (0..body.rows)
        .filter(|&i| (lo..=top).contains(&starts[i]))
        .collect();
    if let (Some(d), false) = (f.min_duration_nanos, sel.is_empty()) {
        let ends = body.ends(&starts)?;
        sel.retain(|&i| ends[i].saturating_sub(starts[i]) >= d);
    }
    if let (Some(env), false) = (f.env, sel.is_empty()) {
        let envs = body.envs()?;
        sel.retain(|&i| envs[i] == env);
    }
    if let (Some(st), false) = (f.status, sel.is_empty()) {
        let status = body.bytes(C_STATUS)?;
        let err_type = body.strs(StrField::ErrorType)?;
        let want_err = st == StatusFilter::Error;
        sel.retain(|&i| (status[i] == STATUS_ERROR || err_type.ids[i] != 0) == want_err);
    }
    let wanted = [
        (&f.method, StrField::Method),
        (&f.tool, StrField::Tool),
        (&f.user_id, StrField::UserId),
        (&f.session_id, StrField::SessionId),
    ];
    for (want, field) in wanted {
        let (Some(v), false) = (want, sel.is_empty()) else {
            continue;
        };
        let col = body.strs(field)?;
        match col.id_of(v) {
            Some(id) => sel.retain(|&i| col.ids[i] == id),
            None => sel.clear(),
        }
    }
    if sel.is_empty() {
        return Ok(Vec::new());
    }
    let traces = body.trace_ids()?;
    if let Some(t) = &f.trace_id {
        sel.retain(|&i| traces[i] == *t);
    }
    let spans = body.span_ids()?;
    let keys = sel.into_iter().map(|i| {
        (
            RowKey {
                start: starts[i],
                server: body.server,
                trace: traces[i],
                span: spans[i],
            },
            i,
        )
    });
    Ok(keys
        .filter(|(k, _)| cursor.is_none_or(|c| *k <= c.last))
        .collect())
}
