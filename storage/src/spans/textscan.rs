//! Text search over the span store: `SpanStore::search` (the filtered list restricted to spans
//! matching a query, verified per block with the index's analyzer), `SpanStore::suggest`, and
//! the block reader the search indexer catches up with (`SpanStore::index_blocks_from`).
//!
//! Verification works on a block's dictionaries: each distinct value of each searched field is
//! analyzed once into the set of query terms it matches (a bit mask); a row matches when the OR
//! of its fields' masks has every bit. A block whose dictionaries together miss a term is skipped
//! without looking at its rows.

use super::block::ColumnRead;
use super::header::Summary;
use super::lazy::LazyBody;
use super::partition::{decode_u64, BODIES, KEY_NEXT_BLOCK, META};
use super::{corrupt, SpanFilter, SpanPage, SpanStore};
use crate::codec::strdict::{self, StrVals};
use crate::codec::Reader;
use crate::error::Result;
use crate::model::{day_of, OrgId, ServerId};
use crate::search::docs::{DocBuilder, SEARCH_FIELDS};
use crate::search::{DayCandidates, Interval, Matcher, QueryError, SuggestField, TextQuery};

impl SpanStore {
    /// Parses a search query with this store's limits.
    pub fn parse_query(&self, q: &str) -> Result<TextQuery, QueryError> {
        TextQuery::parse(q, self.search.limits())
    }

    /// Spans of `org` matching `filter` and the text query `q`, newest first, at most `limit`,
    /// continuing after `cursor` (the same cursor as [`SpanStore::list`]).
    pub fn search(
        &self,
        org: OrgId,
        filter: &SpanFilter,
        q: &TextQuery,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SpanPage> {
        self.scan_text(org, filter, Some(q), cursor, limit)
    }

    /// Distinct values of `field` in `org` (and `server`) starting with `prefix` (ASCII and
    /// Unicode case-insensitive), sorted case-insensitively, at most `limit` (capped by
    /// `SearchOptions::suggest_limit_max`), from the days that end after `from_unix_nano` (the
    /// organization's retention floor). From the index: values ingested in the last seconds
    /// may be missing.
    pub fn suggest(
        &self,
        org: OrgId,
        field: SuggestField,
        prefix: &str,
        server: Option<ServerId>,
        from_unix_nano: u64,
        limit: usize,
    ) -> Result<Vec<String>> {
        let first = day_of(from_unix_nano);
        let days: Vec<u32> = self
            .parts
            .days_desc()
            .into_iter()
            .filter(|&d| d >= first)
            .collect();
        self.search
            .suggest(&days, field, org, server, prefix, limit)
    }

    /// Adds the searched values of every block of `day` with an id of at least `from` to `docs`;
    /// returns the file's `next_block_id` read in the same transaction (every row not added is in
    /// a block below `from`), or `None` if the day has no file.
    pub fn index_blocks_from(
        &self,
        day: u32,
        from: u64,
        docs: &mut DocBuilder,
    ) -> Result<Option<u64>> {
        let Some(p) = self.parts.get(day, false)? else {
            return Ok(None);
        };
        let txn = p.part.db.begin_read()?;
        let next = match txn.open_table(META)?.get(KEY_NEXT_BLOCK)? {
            Some(v) => decode_u64(v.value())?,
            None => return Err(corrupt("meta lacks next_block_id")),
        };
        if next <= from {
            return Ok(Some(next));
        }
        let sums = p.summaries(&txn)?;
        let bodies = std::sync::Arc::new(txn.open_table(BODIES)?);
        for s in sums.iter().filter(|s| s.block >= from) {
            let body = LazyBody::open(bodies.clone(), s)?;
            index_block(&body, s, docs)?;
        }
        Ok(Some(next))
    }
}

fn index_block(body: &LazyBody, s: &Summary, docs: &mut DocBuilder) -> Result<()> {
    let starts = body.start_col()?.to_vec();
    let envs = body.envs()?;
    let cols = SEARCH_FIELDS
        .iter()
        .map(|f| body.column(f.column()))
        .collect::<Result<Vec<_>>>()?;
    let vals = cols
        .iter()
        .map(|raw| decode_strs(raw, body.rows()))
        .collect::<Result<Vec<_>>>()?;
    let mut num = String::new();
    for (i, &start) in starts.iter().enumerate() {
        let key = DocBuilder::key(s.org, s.server, envs[i] as u8, start);
        let b = docs.bucket(key, start);
        for (f, v) in SEARCH_FIELDS.iter().zip(&vals) {
            match v {
                StrVals::Dict { dict, ids } => match ids[i] {
                    0 => {}
                    id => DocBuilder::add_value(b, *f, &dict[id as usize - 1]),
                },
                StrVals::Num(n) => {
                    if let Some(x) = n[i] {
                        use std::fmt::Write;
                        num.clear();
                        let _ = write!(num, "{x}");
                        DocBuilder::add_value(b, *f, &num);
                    }
                }
            }
        }
    }
    Ok(())
}

fn decode_strs(raw: &[u8], rows: usize) -> Result<StrVals<'_>> {
    let mut r = Reader::new(raw);
    let v = strdict::decode_vals(&mut r, rows)?;
    r.finish("string column")?;
    Ok(v)
}

/// The rows of `a..b` (index `i - a`) that pass `mask` (`None`: all) and match the text query;
/// `None` when none does. Fields are read one at a time and only for rows not yet decided; a
/// dictionary value is analyzed at most once per block, and only if a row being checked uses it.
///
/// `fields` (bit `i` = `SEARCH_FIELDS[i]`) names the only fields that can hold a term in these
/// rows (what the index said); the others are not read.
pub fn text_mask(
    body: &LazyBody,
    m: &mut Matcher,
    a: usize,
    b: usize,
    mask: Option<Vec<bool>>,
    fields: u8,
) -> Result<Option<Vec<bool>>> {
    let full = m.full();
    let mut out = mask.unwrap_or_else(|| vec![true; b - a]);
    let mut acc = vec![0u64; b - a];
    let mut open: Vec<usize> = (0..b - a).filter(|&k| out[k]).collect();
    for (i, f) in SEARCH_FIELDS.iter().enumerate() {
        if open.is_empty() {
            break;
        }
        if fields & (1 << i) == 0 {
            continue;
        }
        let raw = body.column(f.column())?;
        match decode_strs(&raw, body.rows())? {
            StrVals::Dict { dict, ids } => {
                let mut memo: Vec<Option<u64>> = vec![None; dict.len()];
                for &k in &open {
                    let id = ids[a + k] as usize;
                    if id != 0 {
                        acc[k] |= *memo[id - 1].get_or_insert_with(|| m.value_mask(&dict[id - 1]));
                    }
                }
            }
            StrVals::Num(n) => {
                for &k in &open {
                    if let Some(x) = n[a + k] {
                        acc[k] |= m.num_mask(x);
                    }
                }
            }
        }
        // A row that has every term is decided; the others need the next fields.
        open.retain(|&k| acc[k] != full);
    }
    for k in open {
        out[k] = false;
    }
    Ok(out.iter().any(|&x| x).then_some(out))
}

/// The candidate intervals that restrict block `s` (it is below the index watermark and the
/// index named ranges): `Some(&[])` when none of its server's buckets can match.
pub fn intervals<'a>(cands: Option<&'a DayCandidates>, s: &Summary) -> Option<&'a [Interval]> {
    let c = cands?;
    if s.block >= c.watermark {
        return None;
    }
    let ranges = c.ranges.as_ref()?;
    Some(ranges.get(&s.server).map_or(&[][..], Vec::as_slice))
}

/// The union of the field masks of the intervals of sorted disjoint `iv` that meet `[lo, hi]`
/// (0: none does).
pub fn overlap_fields(iv: &[Interval], lo: u64, hi: u64) -> u8 {
    if lo > hi {
        return 0;
    }
    let k = iv.partition_point(|x| x.1 < lo);
    iv[k..]
        .iter()
        .take_while(|x| x.0 <= hi)
        .fold(0, |acc, x| acc | x.2)
}

/// Whether `t` lies in one of `iv` (sorted, disjoint).
pub fn in_intervals(iv: &[Interval], t: u64) -> bool {
    let k = iv.partition_point(|x| x.1 < t);
    iv.get(k).is_some_and(|x| x.0 <= t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_tests() {
        let iv = [(10, 20, 1), (30, 40, 4)];
        assert_eq!(overlap_fields(&iv, 0, 10), 1);
        assert_eq!(overlap_fields(&iv, 20, 25), 1);
        assert_eq!(overlap_fields(&iv, 21, 29), 0);
        assert_eq!(overlap_fields(&iv, 21, 30), 4);
        assert_eq!(overlap_fields(&iv, 0, 100), 5);
        assert_eq!(overlap_fields(&iv, 41, 50), 0);
        assert_eq!(overlap_fields(&[], 0, u64::MAX), 0);
        assert_eq!(overlap_fields(&iv, 30, 20), 0);
        assert!(in_intervals(&iv, 35));
        assert!(in_intervals(&iv, 10));
        assert!(!in_intervals(&iv, 25));
    }
}
