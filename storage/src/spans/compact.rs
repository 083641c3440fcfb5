//! `SpanStore::compact`: the background part of block maintenance. `append` already merges pending
//! blocks into full ones as soon as they add up to `block_rows_max` rows, so compaction only
//!
//! - merges the pending blocks of an (org, server) once there are [`COMPACT_PENDING_MIN`] of them
//!   (quiet servers that never fill a block), and, in a partition whose day is over (plus
//!   [`SEAL_GRACE_NANOS`]), merges every pending group of two or more blocks into its final form,
//!   and rewrites a lone pending block that `append` indexed in one bucket, so a finished day's
//!   blocks are all indexed by their rows (`trace_index::Fanout`);
//! - seals a finished day: rewrites its live tables into a fresh file and renames it over the old
//!   one (`Registry::seal`), so old partitions carry no free-page slack at all.
//!
//! Each merge is one durable write transaction (take the old blocks, write the merged ones, with
//! their index entries), so a crash leaves either the old blocks or the new ones.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use redb::Durability;

use super::partition::{seal_state, WriteState};
use super::registry::OpenPartition;
use super::write::{merge_write, take_blocks};
use super::{CompactStats, SpanStore};
use crate::error::Result;
use crate::model::{OrgId, ServerId, DAY_NANOS};

/// Pending blocks of one (org, server) in a current partition that make compaction merge them.
pub const COMPACT_PENDING_MIN: usize = 4;
/// How long after its day ends a partition is considered finished (late spans still arrive).
pub const SEAL_GRACE_NANOS: u64 = 30 * 60 * 1_000_000_000;
/// A finished day written since its seal is sealed again once idle this long (or grown enough).
pub const SEAL_IDLE_NANOS: u64 = 10 * 60 * 1_000_000_000;

pub fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Whether `day` ended more than the grace period before `now`.
pub fn is_finished(day: u32, now: u64) -> bool {
    (u64::from(day) + 1)
        .saturating_mul(DAY_NANOS)
        .saturating_add(SEAL_GRACE_NANOS)
        <= now
}

impl SpanStore {
    /// Merges pending blocks and seals finished days. Safe to run concurrently with `append`,
    /// `list` and `trace`.
    pub fn compact(&self) -> Result<CompactStats> {
        let _one = self.compact_lock.lock();
        let mut stats = CompactStats::default();
        let now = now_unix_nano();
        for day in self.parts.days_desc() {
            let Some(p) = self.parts.get(day, false)? else {
                continue;
            };
            let finished = is_finished(day, now);
            let min = if finished { 2 } else { COMPACT_PENDING_MIN };
            let owners: Vec<((OrgId, ServerId), usize)> = {
                let mut w = p.part.write_lock.lock();
                if p.is_dropped() {
                    continue;
                }
                let pending = w.pending(&p.part.db, self.opts.block_rows_max)?;
                pending
                    .iter()
                    .filter_map(|(&owner, v)| {
                        if v.len() >= min {
                            Some((owner, min))
                        } else if finished && v.len() == 1 && v[0].one_bucket {
                            // Rewritten alone: indexed by its rows, as every block of a finished day.
                            Some((owner, 1))
                        } else {
                            None
                        }
                    })
                    .collect()
            };
            let before = stats.blocks_written;
            for (owner, min) in owners {
                self.merge_pending(&p, owner, min, finished, &mut stats)?;
            }
            stats.partitions += usize::from(stats.blocks_written > before);
            if p.rollup_deltas.swap(false, Ordering::AcqRel) {
                stats.rollup_deltas_merged += merge_deltas_of(&p)?;
            }
            // A finished day's minutes are rolled into hours and days right before it is sealed
            // (late spans make it due again, and are rolled then).
            if finished && self.seal_due(day, &p, now)? {
                {
                    let mut w = p.part.write_lock.lock();
                    if p.is_dropped() {
                        continue;
                    }
                    stats.rollup_deltas_merged +=
                        crate::rollup::merge_deltas(&p.part.db, &mut w.rollups)?;
                    stats.rollup_minutes_rolled += crate::rollup::roll_day(&p.part.db)?;
                }
                self.parts.seal(day, &p)?;
            }
        }
        Ok(stats)
    }

    /// Whether the rollup deltas appended since the last merge have reached
    /// `rollup_deltas_bytes_max`: then [`SpanStore::merge_rollup_deltas`] is due, before the next
    /// compaction. Cheap enough to poll often.
    pub fn rollup_deltas_due(&self) -> bool {
        self.delta_bytes.load(Ordering::Relaxed) >= self.opts.rollup_deltas_bytes_max
    }

    /// Merges the rollup deltas of every open partition that has some into their minute blobs:
    /// read and merged from a snapshot while appends go on, then written in one short durable
    /// transaction per partition under its write lock. Returns how many deltas were merged.
    pub fn merge_rollup_deltas(&self) -> Result<usize> {
        let _one = self.compact_lock.lock();
        self.delta_bytes.store(0, Ordering::Relaxed);
        let mut n = 0;
        for p in self.parts.open_handles() {
            if p.rollup_deltas.swap(false, Ordering::AcqRel) {
                n += merge_deltas_of(&p)?;
            }
        }
        Ok(n)
    }

    /// A finished day is sealed when it changed since its last seal and either was never sealed,
    /// or has been idle for [`SEAL_IDLE_NANOS`], or grew by a quarter of its file since: late
    /// spans trickling into yesterday cost a rewrite now and then, never one per compaction.
    fn seal_due(&self, day: u32, p: &OpenPartition, now: u64) -> Result<bool> {
        let (next, sealed) = seal_state(&p.part.db)?;
        let Some(sealed) = sealed else {
            return Ok(true);
        };
        if sealed == next {
            return Ok(false);
        }
        let idle = now.saturating_sub(p.last_write.load(Ordering::Relaxed)) >= SEAL_IDLE_NANOS;
        let grown =
            p.written.load(Ordering::Relaxed).saturating_mul(4) >= self.parts.file_bytes(day);
        Ok(idle || grown)
    }

    /// Merges every pending block of `owner` in one durable transaction, if there are at least
    /// `min` of them.
    fn merge_pending(
        &self,
        p: &Arc<OpenPartition>,
        (org, server): (OrgId, ServerId),
        min: usize,
        finished: bool,
        stats: &mut CompactStats,
    ) -> Result<()> {
        let mut w = p.part.write_lock.lock();
        if p.is_dropped() {
            return Ok(());
        }
        let max = self.opts.block_rows_max;
        w.pending(&p.part.db, max)?;
        let WriteState { pending, kept, .. } = &mut *w;
        let pending = pending.get_or_insert_with(Default::default);
        let list = match pending.get(&(org, server)) {
            Some(l) if l.len() >= min => l.clone(),
            _ => return Ok(()),
        };
        let mut txn = p.part.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let mut taken = take_blocks(&txn, org, server, &list, kept)?;
        let parts = taken.cols()?;
        let level_rest = if finished {
            self.opts.zstd_level_compact
        } else {
            self.opts.zstd_level_append
        };
        let out = merge_write(
            &txn,
            org,
            server,
            &parts,
            max,
            self.opts.zstd_level_compact,
            level_rest,
            self.opts.row_group_rows,
        )?;
        txn.commit()?;
        p.note_write(out.bytes);
        match out.pending {
            Some(b) => pending.insert((org, server), vec![b]),
            None => pending.remove(&(org, server)),
        };
        stats.blocks_merged += list.len();
        stats.blocks_written += out.blocks;
        stats.rows_rewritten += out.rows;
        Ok(())
    }
}

/// Merges the rollup deltas of `p` (see [`SpanStore::merge_rollup_deltas`]); the caller holds the
/// compaction lock, which keeps every other remover of deltas out.
fn merge_deltas_of(p: &OpenPartition) -> Result<usize> {
    let m = crate::rollup::read_deltas(&p.part.db, || p.part.write_lock.lock().rollups.take())?;
    let Some(m) = m else {
        return Ok(0);
    };
    let _w = p.part.write_lock.lock();
    if p.is_dropped() {
        return Ok(0);
    }
    crate::rollup::apply_deltas(&p.part.db, m)
}
