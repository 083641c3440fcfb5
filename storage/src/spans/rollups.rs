//! `SpanStore::scan_rollups`: the rollup rows of a time range, read partition by partition (one
//! read transaction per day file, every requested server in it); `scan_overview` likewise for
//! the organization overview's items.

use redb::ReadOnlyTable;

use super::SpanStore;
use crate::error::Result;
use crate::model::{day_of, Env, OrgId, ServerId};
use crate::rollup::{
    overview::Item, scan_partition, scan_partition_blobs, scan_partition_overview, BlobKey, Cube,
    Read, RowRef, ScanRange, ROLLUPS, ROLLUP_DELTAS,
};

type Rollups = ReadOnlyTable<&'static [u8; 15], &'static [u8]>;
type Deltas = ReadOnlyTable<&'static [u8; 23], &'static [u8]>;
/// What `for_each_rollup_day` calls per day file: the day, its rollups and its deltas.
type DayFn<'f> = dyn FnMut(u32, &Rollups, Option<&Deltas>) -> Result<()> + 'f;

impl SpanStore {
    /// Calls `f` with every rollup row (or blob total, per `what`) of `cube` for (org, each of
    /// `servers`, env) whose blob starts in `range` (see [`crate::rollup`] for what a blob covers).
    /// `day_blobs`: days the range covers whole are read from their day blob (tools cube).
    #[allow(clippy::too_many_arguments)]
    pub fn scan_rollups(
        &self,
        org: OrgId,
        servers: &[ServerId],
        env: Env,
        cube: Cube,
        range: ScanRange,
        day_blobs: bool,
        what: Read<'_>,
        f: &mut dyn FnMut(&BlobKey, RowRef<'_>) -> Result<()>,
    ) -> Result<()> {
        self.for_each_rollup_day(servers, range, &mut |day, table, deltas| {
            for &server in servers {
                scan_partition(
                    table,
                    deltas,
                    day,
                    (org, server, env, cube),
                    range,
                    day_blobs,
                    what,
                    f,
                )?;
            }
            Ok(())
        })
    }

    /// Calls `f` with the bytes of every blob of `cube` for (org, each of `servers`, env) that
    /// starts in `range`, rolled days by their hours: the blobs `scan_rollups` parses without day
    /// blobs, for a reader that parses rows itself.
    pub fn scan_rollup_blobs(
        &self,
        org: OrgId,
        servers: &[ServerId],
        env: Env,
        cube: Cube,
        range: ScanRange,
        f: &mut dyn FnMut(&BlobKey, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.for_each_rollup_day(servers, range, &mut |day, table, deltas| {
            for &server in servers {
                scan_partition_blobs(table, deltas, day, (org, server, env, cube), range, f)?;
            }
            Ok(())
        })
    }

    /// Calls `f` with every overview item (per-side totals and calls per tool, tools cube) of
    /// (org, each of `servers`, env) in `range`: whole days from their day overview, the rest
    /// from the blobs.
    pub fn scan_overview(
        &self,
        org: OrgId,
        servers: &[ServerId],
        env: Env,
        range: ScanRange,
        f: &mut dyn FnMut(&BlobKey, Item<'_>) -> Result<()>,
    ) -> Result<()> {
        self.for_each_rollup_day(servers, range, &mut |day, table, deltas| {
            for &server in servers {
                scan_partition_overview(table, deltas, day, (org, server, env), range, f)?;
            }
            Ok(())
        })
    }

    /// Opens the rollup tables of every day file in `range` in turn.
    fn for_each_rollup_day(
        &self,
        servers: &[ServerId],
        range: ScanRange,
        f: &mut DayFn<'_>,
    ) -> Result<()> {
        if range.from_unix_nano >= range.to_unix_nano || servers.is_empty() {
            return Ok(());
        }
        let (lo, hi) = (day_of(range.from_unix_nano), day_of(range.to_unix_nano - 1));
        for day in self.parts.days_between(lo, hi) {
            let Some(p) = self.parts.get(day, false)? else {
                continue;
            };
            let read = p.part.db.begin_read()?;
            let table = match read.open_table(ROLLUPS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let deltas = match read.open_table(ROLLUP_DELTAS) {
                Ok(t) => Some(t),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            };
            f(day, &table, deltas.as_ref())?;
        }
        Ok(())
    }
}
