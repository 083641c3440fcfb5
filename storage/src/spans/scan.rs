//! `SpanStore::scan`: every span of an org that matches a filter, in the span list's order (newest
//! first by [`RowKey`]), handed to a [`ScanSink`] in runs of rows of whole decoded blocks. This is
//! the bulk path behind export: no cursor, no re-planning per page, no `SpanRecord` per row.
//!
//! Per day partition (newest day first) the matching blocks are ordered by max start time and
//! merged: a block is opened (read, filtered, decoded whole) as soon as it may hold a row at least
//! as new as the best row not yet handed out, and the block holding that row hands out every row
//! it has before the next best row of another block (usually all of its rows at once, as blocks of
//! one server rarely overlap in time). At most [`SCAN_LIVE_BLOCKS_MAX`] blocks are kept decoded;
//! when more overlap, the one needed last is dropped and decoded again when its turn comes, so
//! memory stays bounded whatever the size of the result.

use std::collections::BinaryHeap;
use std::ops::ControlFlow;
use std::sync::Arc;

use redb::{ReadOnlyTable, ReadTransaction};

use super::block::{BlockBody, ColumnRead, BLOCK_ROWS_LIMIT};
use super::chunks::{self, BodyKey};
use super::corrupt;
use super::cursor::RowKey;
use super::decoded::ScanBlock;
use super::header::{bitmaps_match, filter_uses_bitmaps, Summary};
use super::list::filter_mask;
use super::partition::{header_key, BODIES, HEADERS};
use super::registry::OpenPartition;
use super::{trace_index, SpanFilter, SpanStore};
use crate::error::Result;
use crate::model::{day_of, OrgId};

/// Decoded blocks one scan keeps at most (each about 160 bytes per row, ~1.3 MB for a full block
/// of 8,192 rows). More overlapping blocks cost decoding again, not memory.
pub const SCAN_LIVE_BLOCKS_MAX: usize = 64;

/// Receives the rows of a [`SpanStore::scan`].
pub trait ScanSink {
    /// What the sink derives once per decoded block (for example each distinct string rendered
    /// once); kept while the block is, dropped with it.
    type Prepared;

    /// Called before the first run of `block`; `order` is every row the scan will still hand out
    /// from it, in order (so a sink may work ahead on them, on another thread too: hence the
    /// `Arc`; a sink that keeps a clone keeps the block's memory past the scan's own limit). A
    /// block dropped for room and decoded again is prepared again, with the rows it has left.
    fn prepare(&mut self, block: &Arc<ScanBlock>, order: &[u32]) -> Result<Self::Prepared>;

    /// Rows of `block` (indexes into it), in scan order. `Break` ends the scan at once.
    fn rows(
        &mut self,
        block: &ScanBlock,
        prepared: &mut Self::Prepared,
        rows: &[u32],
    ) -> Result<ControlFlow<()>>;
}

/// What one scan did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Rows handed to the sink.
    pub rows: u64,
    /// Block bodies read from disk (a block read again after being dropped counts again).
    pub blocks_read: u64,
    /// The sink asked to stop before the end.
    pub stopped: bool,
}

impl SpanStore {
    /// Every span of `org` matching `filter`, newest first in exactly the order `list` pages
    /// through them, handed to `sink` block by block. Reads day partitions one at a time, each
    /// in one read transaction (a snapshot: spans appended meanwhile to a day being read are not
    /// seen).
    pub fn scan<S: ScanSink>(
        &self,
        org: OrgId,
        filter: &SpanFilter,
        sink: &mut S,
    ) -> Result<ScanStats> {
        self.scan_capped(org, filter, sink, SCAN_LIVE_BLOCKS_MAX)
    }

    /// [`SpanStore::scan`] keeping at most `live_max` blocks decoded (tests use tiny caps).
    pub(super) fn scan_capped<S: ScanSink>(
        &self,
        org: OrgId,
        filter: &SpanFilter,
        sink: &mut S,
        live_max: usize,
    ) -> Result<ScanStats> {
        // Blocks are decoded one after another into vectors of about the same sizes: kept in
        // pools for the scan's length, they are reused rather than faulted in afresh (with the
        // allocator's short purge delay, freed memory is often back with the OS by the next
        // block). Dropped with the scan.
        let _pools = crate::bufs::scope();
        let mut stats = ScanStats::default();
        let lo = filter.from_unix_nano.unwrap_or(0);
        let top = match filter.to_unix_nano {
            Some(0) => return Ok(stats),
            Some(to) => to - 1,
            None => u64::MAX,
        };
        if lo > top {
            return Ok(stats);
        }
        for day in self.parts.days_desc() {
            if day > day_of(top) {
                continue;
            }
            if day < day_of(lo) {
                break;
            }
            let Some(p) = self.parts.get(day, false)? else {
                continue;
            };
            let txn = p.part.db.begin_read()?;
            let Some(mut d) = DayScan::plan(&p, &txn, org, filter, lo, top, live_max.max(1))?
            else {
                continue;
            };
            if d.run(sink, &mut stats)?.is_break() {
                stats.stopped = true;
                break;
            }
        }
        Ok(stats)
    }
}

/// A block taking part in the merge of one day.
struct Entry<P> {
    sum: Summary,
    /// Next position in the block's scan order.
    pos: usize,
    /// Key of the row at `pos`.
    head: RowKey,
    /// The decoded block and its matching rows in scan order; `None` while dropped for room.
    live: Option<(Arc<ScanBlock>, Vec<u32>)>,
    prepared: Option<P>,
}

struct DayScan<'a, P> {
    org: OrgId,
    f: &'a SpanFilter,
    lo: u64,
    top: u64,
    bodies: ReadOnlyTable<&'static BodyKey, &'static [u8]>,
    headers: Option<ReadOnlyTable<&'static [u8; 16], &'static [u8]>>,
    /// Blocks that may match, by descending max start; `next` is the first not opened yet.
    cands: Vec<Summary>,
    next: usize,
    entries: Vec<Option<Entry<P>>>,
    /// (head key, entry index) of every open entry.
    heap: BinaryHeap<(RowKey, usize)>,
    live: usize,
    live_max: usize,
}

impl<'a, P> DayScan<'a, P> {
    fn plan(
        p: &OpenPartition,
        txn: &ReadTransaction,
        org: OrgId,
        f: &'a SpanFilter,
        lo: u64,
        top: u64,
        live_max: usize,
    ) -> Result<Option<DayScan<'a, P>>> {
        let sums = p.summaries(txn)?;
        let own =
            &sums[sums.partition_point(|s| s.org < org)..sums.partition_point(|s| s.org <= org)];
        let traced = match &f.trace_id {
            Some(t) => Some(trace_index::lookup(txn, org, t)?),
            None => None,
        };
        let mut cands: Vec<Summary> = own
            .iter()
            .filter(|s| {
                f.server_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&s.server))
                    && traced.as_ref().is_none_or(|t| t.contains(&s.block))
                    && s.may_match(f, lo, top)
            })
            .copied()
            .collect();
        if cands.is_empty() {
            return Ok(None);
        }
        cands.sort_by_key(|s| std::cmp::Reverse(s.max_start));
        Ok(Some(DayScan {
            org,
            f,
            lo,
            top,
            bodies: txn.open_table(BODIES)?,
            headers: match filter_uses_bitmaps(f) {
                true => Some(txn.open_table(HEADERS)?),
                false => None,
            },
            cands,
            next: 0,
            entries: Vec::new(),
            heap: BinaryHeap::new(),
            live: 0,
            live_max,
        }))
    }

    fn run<S: ScanSink<Prepared = P>>(
        &mut self,
        sink: &mut S,
        stats: &mut ScanStats,
    ) -> Result<ControlFlow<()>> {
        loop {
            // Open every block that may hold a row at least as new as the best head.
            while let Some(s) = self.cands.get(self.next).copied() {
                if self.heap.peek().is_some_and(|h| s.max_start < h.0.start) {
                    break;
                }
                self.next += 1;
                self.open(s, stats)?;
            }
            // The best head stays on top of the heap while its block hands out its run: its
            // next head then replaces it in place (one sift down, instead of a pop and a push).
            let Some(&(_, idx)) = self.heap.peek() else {
                return Ok(ControlFlow::Continue(()));
            };
            self.ensure_live(idx, sink, stats)?;
            // The second best head: the larger of the top's children. This reads std's heap
            // layout (`as_slice` promises no order); the model check's scans against the brute
            // force would fail if that layout ever changed.
            let bound_key = match self.heap.as_slice() {
                [_, a, b, ..] => Some(a.0.max(b.0)),
                [_, a] => Some(a.0),
                _ => None,
            };
            let bound_start = self.cands.get(self.next).map(|s| s.max_start);
            let Some(e) = self.entries[idx].as_mut() else {
                return Err(corrupt("scan entry vanished"));
            };
            let (Some((block, order)), Some(prep)) = (e.live.as_ref(), e.prepared.as_mut()) else {
                return Err(corrupt("scan entry not decoded"));
            };
            // The head is the best row of all; the rows after it follow while they stay above
            // every other block's head and every block not opened yet.
            let mut end = e.pos + 1;
            // The key of the row at `end` when the run stops before the block's end (built once:
            // runs are mostly one row long when servers interleave).
            let mut next = None;
            while end < order.len() {
                let k = row_key(block, order[end]);
                if bound_key.is_some_and(|b| k <= b) || bound_start.is_some_and(|b| k.start <= b) {
                    next = Some(k);
                    break;
                }
                end += 1;
            }
            stats.rows += (end - e.pos) as u64;
            let flow = sink.rows(block, prep, &order[e.pos..end])?;
            e.pos = end;
            if let Some(k) = next {
                e.head = k;
                if let Some(mut top) = self.heap.peek_mut() {
                    *top = (k, idx);
                }
            } else {
                self.heap.pop();
                self.entries[idx] = None;
                self.live -= 1;
            }
            if flow.is_break() {
                return Ok(flow);
            }
        }
    }

    /// Reads, filters and decodes block `s`; adds it to the merge if any row matches.
    fn open(&mut self, s: Summary, stats: &mut ScanStats) -> Result<()> {
        if let Some(h) = &self.headers {
            match h.get(&header_key(self.org, s.server, s.block))? {
                Some(v) if bitmaps_match(v.value(), self.f)?.is_some() => {}
                Some(_) => return Ok(()),
                None => return Err(corrupt(format!("header of block {} vanished", s.block))),
            }
        }
        let Some((block, order)) = self.load(&s, stats)? else {
            return Ok(());
        };
        let head = row_key(&block, order[0]);
        let idx = self.entries.len();
        self.entries.push(Some(Entry {
            sum: s,
            pos: 0,
            head,
            live: Some((block, order)),
            prepared: None,
        }));
        self.heap.push((head, idx));
        self.live += 1;
        self.make_room(None);
        Ok(())
    }

    /// Makes entry `idx` decoded and prepared (decoding it again if it was dropped for room).
    fn ensure_live<S: ScanSink<Prepared = P>>(
        &mut self,
        idx: usize,
        sink: &mut S,
        stats: &mut ScanStats,
    ) -> Result<()> {
        let Some(e) = self.entries[idx].as_ref() else {
            return Err(corrupt("scan entry vanished"));
        };
        if e.live.is_none() {
            let sum = e.sum;
            let Some(loaded) = self.load(&sum, stats)? else {
                return Err(corrupt(format!(
                    "block {} changed during a scan",
                    sum.block
                )));
            };
            if let Some(e) = self.entries[idx].as_mut() {
                e.live = Some(loaded);
            }
            self.live += 1;
            self.make_room(Some(idx));
        }
        let Some(e) = self.entries[idx].as_mut() else {
            return Err(corrupt("scan entry vanished"));
        };
        if let (Some((block, order)), None) = (&e.live, &e.prepared) {
            e.prepared = Some(sink.prepare(block, &order[e.pos..])?);
        }
        Ok(())
    }

    /// While more than `live_max` blocks are decoded, drops the one whose head comes last
    /// (never `keep`).
    fn make_room(&mut self, keep: Option<usize>) {
        while self.live > self.live_max {
            let victim = self
                .entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.as_ref().map(|e| (i, e)))
                .filter(|(i, e)| Some(*i) != keep && e.live.is_some())
                .min_by_key(|(_, e)| e.head)
                .map(|(i, _)| i);
            let Some(e) = victim.and_then(|v| self.entries[v].as_mut()) else {
                return;
            };
            e.live = None;
            e.prepared = None;
            self.live -= 1;
        }
    }

    /// Block `s` decoded, with its rows that match in scan order (descending key); `None` when
    /// no row matches.
    fn load(
        &self,
        s: &Summary,
        stats: &mut ScanStats,
    ) -> Result<Option<(Arc<ScanBlock>, Vec<u32>)>> {
        let data = chunks::get_sized(&self.bodies, s.block, s.body_bytes as usize)?
            .ok_or_else(|| corrupt(format!("block {} has no body", s.block)))?;
        stats.blocks_read += 1;
        if data.len() != s.body_bytes as usize {
            return Err(corrupt(format!("block {} body length", s.block)));
        }
        let body = BlockBody::parse(data)?;
        if body.org != s.org
            || body.server != s.server
            || body.rows != s.rows as usize
            || body.rows > BLOCK_ROWS_LIMIT
        {
            return Err(corrupt(format!(
                "block {} does not match its header",
                s.block
            )));
        }
        let starts = body.starts()?;
        let a = starts.partition_point(|&t| t < self.lo);
        let b = starts.partition_point(|&t| t <= self.top);
        if a >= b {
            return Ok(None);
        }
        // Whole bodies: the dictionary walk costs little next to decoding every column.
        let Some(mask) = filter_mask(&body, &starts, self.f, a, b, &[None; 4])? else {
            return Ok(None);
        };
        let mut rows: Vec<u32> = (a..b)
            .rev()
            .filter(|&i| mask.as_ref().is_none_or(|m| m[i - a]))
            .map(|i| i as u32)
            .collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let block = ScanBlock::decode(&body, starts)?;
        body.recycle();
        // Rows are stored by (start, span id, trace id); the order breaks ties by trace id
        // first. Already sorted but for such ties, so this sort is one pass.
        rows.sort_by_key(|&r| std::cmp::Reverse(row_key(&block, r)));
        Ok(Some((Arc::new(block), rows)))
    }
}

fn row_key(b: &ScanBlock, row: u32) -> RowKey {
    let i = row as usize;
    RowKey {
        start: b.start(i),
        server: b.server(),
        trace: *b.trace_id(i),
        span: *b.span_id(i),
    }
}
