//! Reading rollup rows of one partition for a time range: which blobs cover the range without
//! counting anything twice (minute blobs not yet rolled, hour blobs, or the day blob).

use redb::ReadOnlyTable;

use super::blob::{for_each_row, for_each_total, DimFilter};
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
    day: u32,
    (org, server, env, cube): (OrgId, ServerId, Env, Cube),
    range: ScanRange,
    day_blobs: bool,
    read: Read<'_>,
    f: &mut dyn FnMut(&BlobKey, RowRef<'_>) -> Result<()>,
) -> Result<()> {
    let day_start = u64::from(day) * DAY_NANOS;
    let from = range.from_unix_nano.max(day_start);
    let to = range.to_unix_nano.min(day_start + DAY_NANOS);
    if from >= to {
        return Ok(());
    }
    let whole_day = from == day_start && to == day_start + DAY_NANOS;
    let rolled = if day_blobs && whole_day && cube == Cube::Tools {
        Res::Day
    } else {
        Res::Hour
    };
    for res in [rolled, Res::Minute] {
        let key = |nanos: u64| {
            BlobKey {
                org,
                server,
                env,
                cube,
                res,
                // Ceiling: a blob starting before `from` is not in the range.
                start_minute: super::minute_of(
                    nanos.div_ceil(super::MINUTE_NANOS) * super::MINUTE_NANOS,
                ),
            }
            .encode()
        };
        let (lo, hi) = (key(from), key(to));
        for e in table.range::<&[u8; 15]>(&lo..&hi)? {
            let (k, v) = e?;
            let Some(bk) = BlobKey::decode(k.value()) else {
                continue;
            };
            let start = bk.start_unix_nano();
            match read {
                Read::Rows(filter) => {
                    for_each_row(v.value(), cube, start, filter, |row| f(&bk, row))?
                }
                Read::Totals => for_each_total(v.value(), cube, start, |row| f(&bk, row))?,
            }
        }
    }
    Ok(())
}
