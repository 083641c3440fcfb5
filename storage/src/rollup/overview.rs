//! The day overview: a projection of a tools-cube day blob onto what the organization overview
//! asks (per side, the day's totals without distinct sketches, and the calls of each tool), written
//! next to the day blob whenever a day is rolled. The overview of 90 days then reads a few
//! kilobytes per server-day instead of every row and sketch of the day blob (docs/format.md,
//! "Rollups").

use std::collections::BTreeMap;

use super::blob::{
    corrupt, for_each_row, for_each_total, read_fixed, row_ref, Blob, Dims, RowRef, Stats, DIMS,
    D_TOOL, EMPTY_SKETCH, NO_FILTER,
};
use super::{Cube, Side};
use crate::codec::{put_num, put_str, put_varint, Reader};
use crate::error::{Result, StorageError};

const OVERVIEW_VERSION: u8 = 1;

/// What the overview reads of one blob: the totals of a side, or the calls of one tool on a side.
// Items are handed to a callback one at a time and never stored: the size difference is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Item<'a> {
    /// Totals of the blob on one side (dimensions all absent; no distinct sketches).
    Total(RowRef<'a>),
    Tool {
        side: Side,
        tool: &'a str,
        calls: f64,
    },
}

/// Encodes the overview of a tools-cube day blob.
pub fn encode(day: &Blob, start_unix_nano: u64) -> Vec<u8> {
    // Rows in dimension order, so that equal day blobs sum in the same order to equal bytes.
    let mut rows: Vec<(&Dims<Box<str>>, &Stats)> = day.rows.iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut tools: [BTreeMap<&str, f64>; 2] = Default::default();
    for (dims, st) in rows {
        if let Some(t) = &dims.v[D_TOOL] {
            *tools[dims.side as usize].entry(t).or_insert(0.0) += st.calls;
        }
    }
    let empty = Stats::default();
    let sides: Vec<usize> = (0..2)
        .filter(|&i| day.totals[i].is_some() || !tools[i].is_empty())
        .collect();
    let mut out = Vec::with_capacity(64 + tools.iter().map(|t| t.len() * 16).sum::<usize>());
    out.push(OVERVIEW_VERSION);
    out.push(sides.len() as u8);
    for side in sides {
        out.push(side as u8);
        day.totals[side]
            .as_ref()
            .unwrap_or(&empty)
            .encode_fixed(&mut out, start_unix_nano);
        put_varint(&mut out, tools[side].len() as u64);
        for (tool, calls) in &tools[side] {
            put_str(&mut out, tool);
            put_num(&mut out, *calls);
        }
    }
    out
}

/// Calls `f` with every item of an encoded overview.
pub fn for_each_item<'a>(
    bytes: &'a [u8],
    start_unix_nano: u64,
    mut f: impl FnMut(Item<'a>) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != OVERVIEW_VERSION {
        return Err(StorageError::Corrupt(format!(
            "rollup overview version {version}"
        )));
    }
    let n = r.u8()?;
    if n > 2 {
        return Err(corrupt("overview sides"));
    }
    for _ in 0..n {
        let side = Side::from_u8(r.u8()?).ok_or_else(|| corrupt("side"))?;
        let fixed = read_fixed(&mut r, start_unix_nano)?;
        let dims = Dims {
            side,
            v: [None; DIMS],
        };
        f(Item::Total(row_ref(
            dims,
            fixed,
            EMPTY_SKETCH,
            EMPTY_SKETCH,
        )))?;
        // A tool takes at least its length byte and a one-byte number.
        for _ in 0..r.count(2)? {
            let tool = r.str()?;
            let calls = r.num()?;
            f(Item::Tool { side, tool, calls })?;
        }
    }
    r.finish("rollup overview")?;
    Ok(())
}

/// The same items read from a tools-cube blob, for the parts of a range no overview covers
/// (hours at its edges, minutes and deltas not rolled yet): its totals, then each row's calls.
pub fn for_each_item_of_blob<'a>(
    bytes: &'a [u8],
    start_unix_nano: u64,
    mut f: impl FnMut(Item<'a>) -> Result<()>,
) -> Result<()> {
    for_each_total(bytes, Cube::Tools, start_unix_nano, |t| f(Item::Total(t)))?;
    for_each_row(
        bytes,
        Cube::Tools,
        start_unix_nano,
        &NO_FILTER,
        |row| match row.dims.v[D_TOOL] {
            Some(tool) => f(Item::Tool {
                side: row.dims.side,
                tool,
                calls: row.calls,
            }),
            None => Ok(()),
        },
    )
}
