//! Reading rollup rows of one partition for a time range: which blobs cover the range without
//! counting anything twice (minute blobs not yet rolled, hour blobs, or the day blob or its
//! overview).

use redb::ReadOnlyTable;

use super::blob::{for_each_row, for_each_total, DimFilter};
use super::overview::{self, Item};
use super::{BlobKey, Cube, Res};
use crate::error::Result;
use crate::model::{Env, OrgId, ServerId, DAY_NANOS};

pub use super::blob::RowRef;

/// A time range, `[from, to)` on span start time, in nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanRange {
    pub from_unix_nano: u64,
    pub to_unix_nano: u64,
}

/// What to read from each blob.
#[derive(Clone, Copy, Debug)]
pub enum Read<'f> {
    /// Rows matching the filter.
    Rows(&'f DimFilter<'f>),
    /// The per-side totals (tools cube only; dimensions all absent).
    Totals,
}

/// Calls `f` with every row (or total, per `read`) of (org, server, env, cube) in partition `day`
/// whose blob starts in `range`. A rolled blob counts where it starts: an hour blob belongs to
/// the range if its hour starts in it, so callers align ranges to hours for rolled days.
/// `day_blobs`: read the day blob (tools cube) instead of its hours when `range` covers the day.
#[allow(clippy::too_many_arguments)]
pub fn scan_partition(
    table: &ReadOnlyTable<&'static [u8; 15], &'static [u8]>,
    deltas: Option<&ReadOnlyTable<&'static [u8; 23], &'static [u8]>>,
    day: u32,
    (org, server, env, cube): (OrgId, ServerId, Env, Cube),
    range: ScanRange,
    day_blobs: bool,
    read: Read<'_>,
    f: &mut dyn FnMut(&BlobKey, RowRef<'_>) -> Result<()>,
) -> Result<()> {
    let rolled = if day_blobs && cube == Cube::Tools {
        Rolled::Day(Res::Day)
    } else {
        Rolled::Hours
    };
    scan_blobs(
        table,
        deltas,
        day,
        (org, server, env, cube),
        range,
        rolled,
        &mut |bk, bytes| {
            let start = bk.start_unix_nano();
            match read {
                Read::Rows(filter) => for_each_row(bytes, cube, start, filter, |row| f(bk, row)),
                Read::Totals => for_each_total(bytes, cube, start, |row| f(bk, row)),
            }
        },
    )
}

/// Calls `f` with the bytes of every blob of (org, server, env, cube) in partition `day` whose
/// bucket starts in `range`, rolled days by their hours (what [`scan_partition`] parses without
/// day blobs), for readers that parse the rows themselves.
pub fn scan_partition_blobs(
    table: &ReadOnlyTable<&'static [u8; 15], &'static [u8]>,
    deltas: Option<&ReadOnlyTable<&'static [u8; 23], &'static [u8]>>,
    day: u32,
    (org, server, env, cube): (OrgId, ServerId, Env, Cube),
    range: ScanRange,
    f: &mut dyn FnMut(&BlobKey, &[u8]) -> Result<()>,
) -> Result<()> {
    scan_blobs(
        table,
        deltas,
        day,
        (org, server, env, cube),
        range,
        Rolled::Hours,
        f,
    )
}

/// Calls `f` with the overview items (per-side totals, calls per tool) of the tools cube of
/// (org, server, env) in partition `day` for `range`: a day the range covers whole from its day
/// overview, everything else (hours at the edges, minutes and deltas not rolled) from its blobs.
pub fn scan_partition_overview(
    table: &ReadOnlyTable<&'static [u8; 15], &'static [u8]>,
    deltas: Option<&ReadOnlyTable<&'static [u8; 23], &'static [u8]>>,
    day: u32,
    (org, server, env): (OrgId, ServerId, Env),
    range: ScanRange,
    f: &mut dyn FnMut(&BlobKey, Item<'_>) -> Result<()>,
) -> Result<()> {
    scan_blobs(
        table,
        deltas,
        day,
        (org, server, env, Cube::Tools),
        range,
        Rolled::Day(Res::DayOverview),
        &mut |bk, bytes| {
            let start = bk.start_unix_nano();
            if bk.res == Res::DayOverview {
                overview::for_each_item(bytes, start, |item| f(bk, item))
            } else {
                overview::for_each_item_of_blob(bytes, start, |item| f(bk, item))
            }
        },
    )
}

/// Where the rolled part of a day is read from.
#[derive(Clone, Copy)]
enum Rolled {
    Hours,
    /// This whole-day key kind when the range covers the whole day, else the hours.
    Day(Res),
}

/// Calls `visit` with every blob of (org, server, env, cube) in partition `day` that starts in
/// `range` and is not counted twice: the rolled blobs (per `rolled`), then the minute blobs not
/// rolled yet, then the append deltas not merged yet.
fn scan_blobs(
    table: &ReadOnlyTable<&'static [u8; 15], &'static [u8]>,
    deltas: Option<&ReadOnlyTable<&'static [u8; 23], &'static [u8]>>,
    day: u32,
    (org, server, env, cube): (OrgId, ServerId, Env, Cube),
    range: ScanRange,
    rolled: Rolled,
    visit: &mut dyn FnMut(&BlobKey, &[u8]) -> Result<()>,
) -> Result<()> {
    let day_start = u64::from(day) * DAY_NANOS;
    let from = range.from_unix_nano.max(day_start);
    let to = range.to_unix_nano.min(day_start + DAY_NANOS);
    if from >= to {
        return Ok(());
    }
    let whole_day = from == day_start && to == day_start + DAY_NANOS;
    let rolled = match rolled {
        Rolled::Day(res) if whole_day => res,
        _ => Res::Hour,
    };
    let key = |res: Res, nanos: u64| BlobKey {
        org,
        server,
        env,
        cube,
        res,
        // Ceiling: a blob starting before `from` is not in the range.
        start_minute: super::minute_of(nanos.div_ceil(super::MINUTE_NANOS) * super::MINUTE_NANOS),
    };
    for res in [rolled, Res::Minute] {
        let (lo, hi) = (key(res, from).encode(), key(res, to).encode());
        for e in table.range::<&[u8; 15]>(&lo..&hi)? {
            let (k, v) = e?;
            if let Some(bk) = BlobKey::decode(k.value()) {
                visit(&bk, v.value())?;
            }
        }
    }
    // Append deltas not merged yet (minute blobs of recent appends).
    if let Some(deltas) = deltas {
        let (lo, hi) = (
            super::delta_key(&key(Res::Minute, from), 0),
            super::delta_key(&key(Res::Minute, to), 0),
        );
        for e in deltas.range::<&[u8; 23]>(&lo..&hi)? {
            let (k, v) = e?;
            let k15: [u8; 15] = k.value()[..15].try_into().expect("23-byte key");
            if let Some(bk) = BlobKey::decode(&k15) {
                visit(&bk, v.value())?;
            }
        }
    }
    Ok(())
}
