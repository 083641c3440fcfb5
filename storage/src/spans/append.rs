//! `SpanStore::append`: groups spans by (day, org, server) and writes one block per group (split at
//! `block_rows_max`) in one durable write transaction per partition file.

use std::collections::BTreeMap;

use redb::Durability;

use super::block::{self, sort_rows};
use super::header::BlockHeader;
use super::partition::{alloc_block_ids, header_key, BODIES, HEADERS};
use super::registry::OpenPartition;
use super::{trace_index, AppendStats, SpanStore};
use crate::error::{Result, StorageError};
use crate::model::{day_of, OrgId, ServerId, SpanRecord};

type Groups<'a> = BTreeMap<(OrgId, ServerId), Vec<&'a SpanRecord>>;

impl SpanStore {
    /// Durably stores `spans`; returns after every touched partition committed with fsync. The
    /// spans are visible to `trace` and `list` as soon as it returns.
    pub fn append(&self, spans: &[SpanRecord]) -> Result<AppendStats> {
        let mut by_day: BTreeMap<u32, Groups<'_>> = BTreeMap::new();
        for s in spans {
            by_day
                .entry(day_of(s.start_unix_nano))
                .or_default()
                .entry((s.org_id, s.server_id))
                .or_default()
                .push(s);
        }
        let mut stats = AppendStats {
            spans: spans.len(),
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
                if self.write_day(&p, &groups, &mut stats)? {
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
    fn write_day(
        &self,
        p: &OpenPartition,
        groups: &Groups<'_>,
        stats: &mut AppendStats,
    ) -> Result<bool> {
        let _w = p.part.write_lock.lock();
        if p.is_dropped() {
            return Ok(false);
        }
        let max = self.opts.block_rows_max;
        let nblocks: usize = groups.values().map(|g| g.len().div_ceil(max)).sum();
        let mut txn = p.part.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let mut id = alloc_block_ids(&txn, nblocks as u64)?;
        let (mut blocks, mut bytes) = (0, 0);
        {
            let mut headers = txn.open_table(HEADERS)?;
            let mut bodies = txn.open_table(BODIES)?;
            for (&(org, server), rows) in groups {
                for chunk in rows.chunks(max) {
                    let body = block::encode(org, server, chunk, self.opts.zstd_level_append)?;
                    check_body(&body, org, server, chunk.len())?;
                    let header = BlockHeader::of(chunk, body.len(), 0).encode()?;
                    headers.insert(&header_key(org, server, id), header.as_slice())?;
                    super::chunks::put(&mut bodies, id, &body)?;
                    trace_index::insert_recent(&txn, org, id, chunk.iter().map(|r| &r.trace_id))?;
                    bytes += body.len() + header.len();
                    blocks += 1;
                    id += 1;
                }
            }
        }
        txn.commit()?;
        stats.blocks += blocks;
        stats.bytes_written += bytes;
        Ok(true)
    }
}

/// Re-reads what was just encoded before it is written: a block that would not decode must never
/// reach the disk.
pub(super) fn check_body(body: &[u8], org: OrgId, server: ServerId, rows: usize) -> Result<()> {
    let parsed = block::BlockBody::parse(body.to_vec())?;
    if parsed.org != org
        || parsed.server != server
        || parsed.rows != rows
        || parsed.starts()?.len() != rows
    {
        return Err(StorageError::Corrupt(
            "encoded block does not read back".into(),
        ));
    }
    Ok(())
}
