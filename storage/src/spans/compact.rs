//! `SpanStore::compact`: merges the small blocks of each (day, org, server) into blocks of up to
//! `block_rows_max` rows and moves their trace-index entries into the bucketed tier. Each merge is
//! one write transaction (insert merged block, delete the old ones, update the index), so a crash
//! leaves either the old blocks or the new one, never both and never neither.

use std::collections::{BTreeMap, HashSet};

use redb::{Durability, ReadableTable};

use super::append::check_body;
use super::block::{self, sort_rows, BlockBody};
use super::corrupt;
use super::header::{BlockHeader, FLAG_BUCKETED};
use super::partition::{alloc_block_ids, header_key, split_header_key, BODIES, HEADERS};
use super::registry::OpenPartition;
use super::{trace_index, CompactStats, SpanStore};
use crate::error::Result;
use crate::model::{OrgId, ServerId, SpanRecord};

/// What the plan needs to know of a block: no bitmaps, so planning a day of tiny blocks stays small.
#[derive(Clone, Copy)]
struct Small {
    id: u64,
    rows: usize,
    min_start: u64,
    bucketed: bool,
}

type Plan = Vec<((OrgId, ServerId), Vec<Small>)>;

impl SpanStore {
    /// Merges small blocks everywhere. Safe to run concurrently with `append`, `list` and `trace`.
    pub fn compact(&self) -> Result<CompactStats> {
        let _one = self.compact_lock.lock();
        let mut stats = CompactStats::default();
        for day in self.parts.days_desc() {
            let Some(p) = self.parts.get(day, false)? else {
                continue;
            };
            let before = stats.blocks_written;
            for ((org, server), group) in self.plan(&p)? {
                self.merge(&p, org, server, &group, &mut stats)?;
            }
            stats.partitions += usize::from(stats.blocks_written > before);
        }
        Ok(stats)
    }

    /// Groups of blocks to rewrite, per (org, server): consecutive (by start time) small blocks whose
    /// rows fit in one block, plus any block still indexed in the recent tier.
    fn plan(&self, p: &OpenPartition) -> Result<Plan> {
        let txn = p.part.db.begin_read()?;
        let headers = txn.open_table(HEADERS)?;
        let mut by_owner: BTreeMap<(OrgId, ServerId), Vec<Small>> = BTreeMap::new();
        for entry in headers.iter()? {
            let (k, v) = entry?;
            let (org, server, id) = split_header_key(k.value());
            let h = BlockHeader::decode(v.value())?;
            let small = Small {
                id,
                rows: h.rows as usize,
                min_start: h.min_start,
                bucketed: h.bucketed(),
            };
            if small.rows < self.opts.block_rows_max || !small.bucketed {
                by_owner.entry((org, server)).or_default().push(small);
            }
        }
        let max = self.opts.block_rows_max;
        let mut plan = Vec::new();
        for (owner, mut blocks) in by_owner {
            blocks.sort_by_key(|b| (b.min_start, b.id));
            let mut group: Vec<Small> = Vec::new();
            for b in blocks {
                if group.iter().map(|g| g.rows).sum::<usize>() + b.rows > max {
                    push_group(&mut plan, owner, std::mem::take(&mut group));
                }
                group.push(b);
            }
            push_group(&mut plan, owner, group);
        }
        Ok(plan)
    }

    /// Rewrites one group in one durable transaction.
    fn merge(
        &self,
        p: &OpenPartition,
        org: OrgId,
        server: ServerId,
        group: &[Small],
        stats: &mut CompactStats,
    ) -> Result<()> {
        let _w = p.part.write_lock.lock();
        if p.is_dropped() {
            return Ok(());
        }
        let mut txn = p.part.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let mut records: Vec<SpanRecord> = Vec::new();
        let mut removed_recent = Vec::new();
        {
            let mut headers = txn.open_table(HEADERS)?;
            let mut bodies = txn.open_table(BODIES)?;
            for b in group {
                let h = match headers.remove(&header_key(org, server, b.id))? {
                    Some(v) => BlockHeader::decode(v.value())?,
                    None => return Err(corrupt(format!("planned block {} vanished", b.id))),
                };
                let body = match super::chunks::take(&mut bodies, b.id)? {
                    Some(v) => BlockBody::parse(v)?,
                    None => return Err(corrupt(format!("header without body {}", b.id))),
                };
                if body.org != org || body.server != server || body.rows != h.rows as usize {
                    return Err(corrupt(format!("block {} does not match its header", b.id)));
                }
                let rows: Vec<usize> = (0..body.rows).collect();
                let recs = body.materialize(&rows)?;
                if !h.bucketed() {
                    removed_recent.extend(recs.iter().map(|r| (r.trace_id, b.id)));
                }
                records.extend(recs);
            }
        }
        let mut rows: Vec<&SpanRecord> = records.iter().collect();
        sort_rows(&mut rows);
        let body = block::encode(org, server, &rows, self.opts.zstd_level_compact)?;
        check_body(&body, org, server, rows.len())?;
        let id = alloc_block_ids(&txn, 1)?;
        let header = BlockHeader::of(&rows, body.len(), FLAG_BUCKETED).encode()?;
        txn.open_table(HEADERS)?
            .insert(&header_key(org, server, id), header.as_slice())?;
        super::chunks::put(&mut txn.open_table(BODIES)?, id, &body)?;
        let removed: HashSet<u64> = group.iter().map(|b| b.id).collect();
        let added: Vec<([u8; 16], u64)> = rows.iter().map(|r| (r.trace_id, id)).collect();
        trace_index::reindex(&txn, org, &removed_recent, &removed, &added)?;
        txn.commit()?;
        stats.blocks_merged += group.len();
        stats.blocks_written += 1;
        stats.rows_rewritten += rows.len();
        Ok(())
    }
}

/// A group is worth rewriting if it merges blocks or indexes a block still in the recent tier.
fn push_group(plan: &mut Plan, owner: (OrgId, ServerId), group: Vec<Small>) {
    if group.len() >= 2 || group.iter().any(|b| !b.bucketed) {
        plan.push((owner, group));
    }
}
