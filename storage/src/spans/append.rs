//! `SpanStore::append`: groups spans by (day, org, server) and writes one block per group (split at
//! `block_rows_max`), plus the rollup deltas, in one durable write transaction per partition file.

use std::collections::BTreeMap;

use redb::{Durability, ReadableTable};

use super::block::sort_rows;
use super::cols::Cols;
use super::partition::{decode_u64, Pending, WriteState, KEY_NEXT_BLOCK, META};
use super::registry::OpenPartition;
use super::trace_index::Fanout;
use super::write::{merge_write, put_block, take_blocks};
use super::{AppendStats, SpanStore};
use crate::error::{Result, StorageError};
use crate::model::{day_of, OrgId, ServerId, SpanRecord};
use crate::rollup::Deltas;

type Groups<'a> = BTreeMap<(OrgId, ServerId), Vec<&'a SpanRecord>>;

/// Most pending blocks one (org, server) keeps in a partition before `append` merges the smaller
/// half of them (size-tiered, so a row is rewritten O(log) times even under tiny appends).
pub const PENDING_BLOCKS_MAX: usize = 16;

impl SpanStore {
    /// Durably stores `spans`; returns after every touched partition committed with fsync. The
    /// spans are visible to `trace` and `list` as soon as it returns.
    pub fn append(&self, spans: &[SpanRecord]) -> Result<AppendStats> {
        self.append_parts(&[spans])
    }

    /// [`SpanStore::append`] of the spans of every part, together: the ingest writer passes each
    /// request's spans where they are, instead of moving them into one vector first (a copy of
    /// about 270 bytes per span).
    pub fn append_parts(&self, parts: &[&[SpanRecord]]) -> Result<AppendStats> {
        let mut by_day: BTreeMap<u32, Groups<'_>> = BTreeMap::new();
        for s in parts.iter().copied().flatten() {
            by_day
                .entry(day_of(s.start_unix_nano))
                .or_default()
                .entry((s.org_id, s.server_id))
                .or_default()
                .push(s);
        }
        let mut stats = AppendStats {
            spans: parts.iter().map(|p| p.len()).sum(),
            ..AppendStats::default()
        };
        for (day, mut groups) in by_day {
            for rows in groups.values_mut() {
                sort_rows(rows);
            }
            // A partition dropped between lookup and lock is retried once on a fresh file.
            for attempt in 0.. {
                let p = self
                    .parts
                    .get(day, true)?
                    .ok_or_else(|| StorageError::NotFound(format!("day {day}")))?;
                if self.write_day(day, &p, &groups, &mut stats)? {
                    break;
                }
                if attempt > 0 {
                    return Err(StorageError::Invalid(format!(
                        "partition {day} dropped during append"
                    )));
                }
            }
            stats.partitions += 1;
        }
        Ok(stats)
    }

    /// Writes all groups of one day in one transaction. `Ok(false)` if the partition was dropped.
    ///
    /// Per (org, server): when the pending (not yet full) blocks plus the new rows reach
    /// `block_rows_max`, they are merged right here, in the same transaction, into full blocks
    /// plus at most one pending remainder; otherwise the rows become one more pending block (the
    /// smaller half of the pending blocks is merged with them when there are too many). So a row
    /// is rewritten about once, pending rows per (org, server) stay under one block, and the file
    /// is settled whenever an append returns.
    fn write_day(
        &self,
        day: u32,
        p: &OpenPartition,
        groups: &Groups<'_>,
        stats: &mut AppendStats,
    ) -> Result<bool> {
        let mut w = p.part.write_lock.lock();
        if p.is_dropped() {
            return Ok(false);
        }
        let max = self.opts.block_rows_max;
        let (lvl_append, lvl_full) = (self.opts.zstd_level_append, self.opts.zstd_level_compact);
        let groups_rows = self.opts.row_group_rows;
        w.pending(&p.part.db, max)?;
        let WriteState { pending, kept, .. } = &mut *w;
        let pending = pending.get_or_insert_with(Default::default);
        let mut txn = p.part.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let mut updates: Vec<((OrgId, ServerId), Vec<Pending>)> = Vec::with_capacity(groups.len());
        let (mut blocks, mut bytes) = (0, 0);
        // The new pending blocks' columns, kept once the transaction has committed.
        let mut to_keep: Vec<(u64, Cols<'_>)> = Vec::new();
        for (&(org, server), rows) in groups {
            let new = Cols::from_records(rows);
            let mut pend = pending.get(&(org, server)).cloned().unwrap_or_default();
            let pend_rows: usize = pend.iter().map(|b| b.rows as usize).sum();
            let merge: Vec<Pending> = if pend_rows + new.len() >= max {
                std::mem::take(&mut pend)
            } else if pend.len() >= PENDING_BLOCKS_MAX {
                pend.sort_by_key(|b| (b.rows, b.id));
                pend.drain(..PENDING_BLOCKS_MAX / 2).collect()
            } else {
                Vec::new()
            };
            if merge.is_empty() && new.len() < max {
                let (b, n) = put_block(
                    &txn,
                    org,
                    server,
                    &new,
                    lvl_append,
                    groups_rows,
                    Fanout::One,
                )?;
                pend.push(b);
                to_keep.push((b.id, new));
                blocks += 1;
                bytes += n;
            } else {
                let mut taken = take_blocks(&txn, org, server, &merge, kept)?;
                let mut parts = taken.cols()?;
                parts.push(new);
                let out = merge_write(
                    &txn,
                    org,
                    server,
                    &parts,
                    max,
                    lvl_full,
                    lvl_append,
                    groups_rows,
                )?;
                drop(parts);
                taken.recycle();
                pend.extend(out.pending);
                blocks += out.blocks;
                bytes += out.bytes;
            }
            pend.sort_by_key(|b| (b.min_start, b.id));
            updates.push(((org, server), pend));
        }
        // Rollups change in the same transaction as the spans: they can never disagree.
        let mut deltas = Deltas::default();
        for rows in groups.values() {
            for s in rows {
                deltas.add(s);
            }
        }
        // A sequence number unique to this transaction (block ids are never reused).
        let seq = super::partition::alloc_block_ids(&txn, 1)?;
        let delta_bytes = deltas.write_deltas(&txn, seq)?;
        bytes += delta_bytes;
        p.rollup_deltas
            .store(true, std::sync::atomic::Ordering::Release);
        let next = match txn.open_table(META)?.get(KEY_NEXT_BLOCK)? {
            Some(v) => decode_u64(v.value())?,
            None => return Err(StorageError::Corrupt("meta lacks next_block_id".into())),
        };
        txn.commit()?;
        stats.watermarks.push((day, next));
        p.note_write(bytes);
        self.delta_bytes
            .fetch_add(delta_bytes as u64, std::sync::atomic::Ordering::Relaxed);
        for (owner, list) in updates {
            if list.is_empty() {
                pending.remove(&owner);
            } else {
                pending.insert(owner, list);
            }
        }
        // A finished day is sealed (and its handle's kept columns dropped) at the next
        // compaction: late spans there keep nothing, so memory stays with today's few handles.
        if !super::compact::is_finished(day, super::compact::now_unix_nano()) {
            for (id, cols) in to_keep {
                kept.keep(id, cols, self.opts.pending_kept_bytes_max);
            }
        }
        // Summed in memory for the next merge, which then need not read them back.
        w.rollups.add(deltas, seq);
        stats.blocks += blocks;
        stats.bytes_written += bytes;
        Ok(true)
    }
}
