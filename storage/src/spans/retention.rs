//! Retention: dropping whole day files nobody may keep any more, purging one organization's rows
//! (blocks, trace index, rollups) from a day other organizations still keep, and keeping the span
//! store under a global disk budget by dropping the oldest days first. A day's search index goes
//! with it: dropping a day closes and deletes its `.idx` directory, purging an organization
//! deletes its documents from the day's index, and the budget counts the index bytes too.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use redb::{Durability, ReadableTable};

use super::chunks;
use super::partition::{split_header_key, BODIES, HEADERS, TRACE_INDEX};
use super::registry::OpenPartition;
use super::SpanStore;
use crate::error::Result;
use crate::model::{OrgId, DAY_NANOS};
use crate::rollup::{ROLLUPS, ROLLUP_DELTAS};

/// What retention enforces, decided by the caller (from the organizations' settings).
#[derive(Clone, Debug)]
pub struct RetentionPolicy {
    pub now_unix_nano: u64,
    /// Retention in days per organization.
    pub org_days: HashMap<OrgId, u32>,
    /// For organizations missing from `org_days` (deleted ones).
    pub default_days: u32,
    /// Span store bytes (every day file and its search index, as `partitions()` reports them) to
    /// stay under by dropping the oldest days; the newest day is never dropped. `None`: no budget.
    pub disk_bytes_max: Option<u64>,
}

impl RetentionPolicy {
    fn days_of(&self, org: OrgId) -> u32 {
        self.org_days
            .get(&org)
            .copied()
            .unwrap_or(self.default_days)
    }

    /// The oldest start time `org` may still see: now minus its retention.
    pub fn floor_of(&self, org: OrgId) -> u64 {
        floor(self.now_unix_nano, self.days_of(org))
    }

    /// Whether every span of `org` in `day` is older than its retention.
    fn expired(&self, org: OrgId, day: u32) -> bool {
        (u64::from(day) + 1) * DAY_NANOS <= self.floor_of(org)
    }
}

/// `now` minus `days` days (the retention floor for an organization keeping `days`).
pub fn floor(now_unix_nano: u64, days: u32) -> u64 {
    now_unix_nano.saturating_sub(u64::from(days) * DAY_NANOS)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionStats {
    /// Day files deleted because no organization keeps them any more.
    pub partitions_expired: usize,
    /// (organization, day) pairs whose rows were purged from a day others keep.
    pub org_days_purged: usize,
    /// Search index documents deleted with those purges.
    pub index_docs_purged: u64,
    /// Day files deleted to meet the disk budget.
    pub partitions_over_budget: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl SpanStore {
    /// Applies `policy` once. Safe to run beside appends, queries and compaction: a purge is one
    /// write transaction on a finished day followed by a sealed rewrite, which gives the space
    /// back to the file system.
    pub fn apply_retention(&self, policy: &RetentionPolicy) -> Result<RetentionStats> {
        let _one = self.compact_lock.lock();
        let mut stats = RetentionStats {
            bytes_before: self.partitions()?.iter().map(|p| p.bytes).sum(),
            ..RetentionStats::default()
        };
        let today = crate::model::day_of(policy.now_unix_nano);
        for day in self.parts.days_between(0, today.saturating_sub(1)) {
            let Some(p) = self.parts.get(day, false)? else {
                continue;
            };
            let orgs = orgs_in(&p)?;
            let expired: Vec<OrgId> = orgs
                .iter()
                .copied()
                .filter(|&o| policy.expired(o, day))
                .collect();
            if expired.is_empty() {
                continue;
            }
            if expired.len() == orgs.len() {
                drop(p);
                self.drop_partition(day)?;
                stats.partitions_expired += 1;
                tracing::info!(
                    day,
                    "retention: day file dropped (past every organization's retention)"
                );
                continue;
            }
            for &org in &expired {
                purge_org(&p, org)?;
                stats.org_days_purged += 1;
                // After the file: the index is derived data, and search verifies every candidate
                // against the file, so a failure here (or a crash before it) leaves only dead
                // documents, which go with the day.
                match self.search.purge_org(day, org) {
                    Ok(n) => stats.index_docs_purged += n,
                    Err(e) => tracing::warn!(
                        day,
                        org,
                        error = %e,
                        "retention: purging the search index failed; its documents stay until the day goes"
                    ),
                }
            }
            // The purge freed pages inside the file; the sealed rewrite returns them.
            self.parts.seal(day, &p)?;
            tracing::info!(day, orgs = ?expired, "retention: organizations purged from day file");
        }
        if let Some(max) = policy.disk_bytes_max {
            let mut parts = self.partitions()?;
            let mut total: u64 = parts.iter().map(|p| p.bytes).sum();
            while total > max && parts.len() > 1 {
                let oldest = parts.remove(0);
                self.drop_partition(oldest.day)?;
                total -= oldest.bytes;
                stats.partitions_over_budget += 1;
                tracing::warn!(
                    day = oldest.day,
                    bytes = oldest.bytes,
                    budget = max,
                    index_bytes = oldest.index_bytes,
                    "retention: day file and index dropped to stay within the disk budget"
                );
            }
        }
        stats.bytes_after = self.partitions()?.iter().map(|p| p.bytes).sum();
        Ok(stats)
    }
}

/// Organizations with blocks or rollups in the file.
fn orgs_in(p: &OpenPartition) -> Result<BTreeSet<OrgId>> {
    let read = p.part.db.begin_read()?;
    let mut orgs = BTreeSet::new();
    // Keys start with the org (u32 BE): jump from one org to the next instead of reading every key.
    let headers = read.open_table(HEADERS)?;
    let mut next = 0u32;
    loop {
        let mut lo = [0u8; 16];
        lo[..4].copy_from_slice(&next.to_be_bytes());
        let Some(e) = headers.range::<&[u8; 16]>(&lo..)?.next() else {
            break;
        };
        let (org, _, _) = split_header_key(e?.0.value());
        orgs.insert(org);
        match org.checked_add(1) {
            Some(n) => next = n,
            None => break,
        }
    }
    let rollups = match read.open_table(ROLLUPS) {
        Ok(t) => Some(t),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(t) = rollups {
        let mut next = 0u32;
        loop {
            let mut lo = [0u8; 15];
            lo[..4].copy_from_slice(&next.to_be_bytes());
            let Some(e) = t.range::<&[u8; 15]>(&lo..)?.next() else {
                break;
            };
            let (k, _) = e?;
            let k = k.value();
            let org = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
            orgs.insert(org);
            match org.checked_add(1) {
                Some(n) => next = n,
                None => break,
            }
        }
    }
    Ok(orgs)
}

/// Removes every block (header, body chunks), trace-index entry and rollup blob of `org` from
/// the file, in one durable transaction, and forgets its pending blocks.
fn purge_org(p: &Arc<OpenPartition>, org: OrgId) -> Result<()> {
    let mut w = p.part.write_lock.lock();
    if p.is_dropped() {
        return Ok(());
    }
    let mut txn = p.part.db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        let lo16 = prefix::<16>(org);
        let hi16 = prefix_end::<16>(org);
        let mut headers = txn.open_table(HEADERS)?;
        let mut blocks = Vec::new();
        for e in headers.range::<&[u8; 16]>(&lo16..=&hi16)? {
            blocks.push(split_header_key(e?.0.value()).2);
        }
        headers.retain_in::<&[u8; 16], _>(&lo16..=&hi16, |_, _| false)?;
        let mut bodies = txn.open_table(BODIES)?;
        for id in blocks {
            chunks::remove(&mut bodies, id)?;
        }
        txn.open_table(TRACE_INDEX)?
            .retain_in::<&[u8; 15], _>(&prefix::<15>(org)..=&prefix_end::<15>(org), |_, _| false)?;
        txn.open_table(ROLLUPS)?
            .retain_in::<&[u8; 15], _>(&prefix::<15>(org)..=&prefix_end::<15>(org), |_, _| false)?;
        txn.open_table(ROLLUP_DELTAS)?
            .retain_in::<&[u8; 23], _>(&prefix::<23>(org)..=&prefix_end::<23>(org), |_, _| false)?;
    }
    txn.commit()?;
    let ws = &mut *w;
    if let Some(pending) = ws.pending.as_mut() {
        pending.retain(|&(o, _), _| o != org);
        ws.kept.retain_pending(pending);
    }
    w.rollups.forget_org(org);
    Ok(())
}

/// The smallest key of `org`: its id big-endian, then zeros.
fn prefix<const N: usize>(org: OrgId) -> [u8; N] {
    let mut k = [0u8; N];
    k[..4].copy_from_slice(&org.to_be_bytes());
    k
}

/// The largest key of `org`: its id big-endian, then 0xff bytes (used as an inclusive bound).
fn prefix_end<const N: usize>(org: OrgId) -> [u8; N] {
    let mut k = [0xffu8; N];
    k[..4].copy_from_slice(&org.to_be_bytes());
    k
}
