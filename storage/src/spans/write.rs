//! Block writes inside one write transaction, shared by `append` and `compact`: writing a block
//! (body chunks, header, trace-index entries), taking pending blocks out, and merging column sets
//! into full blocks plus at most one pending remainder.

use redb::WriteTransaction;

use super::block::{BlockBody, ColumnRead};
use super::cols::Cols;
use super::corrupt;
use super::kept::KeptCols;
use super::partition::{alloc_block_ids, header_key, Pending, BODIES, HEADERS};
use super::trace_index::{self, Fanout};
use super::{chunks, header};
use crate::error::{Result, StorageError};
use crate::model::{OrgId, ServerId};

/// What a merge wrote.
#[derive(Default)]
pub struct Written {
    /// The remainder block (fewer than `rows_max` rows), if any.
    pub pending: Option<Pending>,
    pub blocks: usize,
    pub rows: usize,
    pub bytes: usize,
}

/// Writes `cols` (sorted, non-empty) as one new block of (org, server), its trace ids indexed
/// in `fanout` buckets.
pub fn put_block(
    txn: &WriteTransaction,
    org: OrgId,
    server: ServerId,
    cols: &Cols<'_>,
    level: i32,
    group_rows: usize,
    fanout: Fanout,
) -> Result<(Pending, usize)> {
    let body = check_body(
        cols.encode(org, server, level, group_rows)?,
        org,
        server,
        cols.len(),
    )?;
    let header = cols.header(body.len()).encode()?;
    let id = alloc_block_ids(txn, 1)?;
    txn.open_table(HEADERS)?
        .insert(&header_key(org, server, id), header.as_slice())?;
    chunks::put(&mut txn.open_table(BODIES)?, id, &body)?;
    let body_bytes = body.len();
    crate::bufs::give(body);
    let one_bucket = trace_index::insert_block(txn, org, id, &cols.traces, fanout)?;
    let p = Pending {
        id,
        rows: cols.len() as u32,
        min_start: cols.starts[0],
        one_bucket,
    };
    Ok((p, body_bytes + header.len()))
}

/// The columns of blocks taken out by [`take_blocks`], in the order asked for.
pub struct Taken {
    /// Per block, its columns if they were kept in memory ([`KeptCols`]).
    kept: Vec<Option<Cols<'static>>>,
    /// Per block, its decompressed columns (none if kept) and row count, for [`Cols::from_raw`].
    raws: Vec<(Vec<Vec<u8>>, usize)>,
}

impl Taken {
    /// Each block's column set, in order: kept ones moved out, the others decoded from `raws`.
    pub fn cols(&mut self) -> Result<Vec<Cols<'_>>> {
        let Taken { kept, raws } = self;
        kept.iter_mut()
            .zip(raws.iter())
            .map(|(k, (raw, n))| match k.take() {
                Some(c) => Ok(c),
                // A kept block's columns were moved out by an earlier call.
                None if raw.is_empty() => Err(corrupt("pending block columns taken twice")),
                None => Cols::from_raw(raw, *n),
            })
            .collect()
    }

    /// Gives the decompressed columns back to the thread's pool.
    pub fn recycle(self) {
        for col in self.raws.into_iter().flat_map(|(raw, _)| raw) {
            crate::bufs::give(col);
        }
    }
}

/// Removes `blocks` of (org, server) (header, body, index entries) and returns their columns:
/// those in `kept` from there (their bodies deleted unread), the others read and decompressed.
pub fn take_blocks(
    txn: &WriteTransaction,
    org: OrgId,
    server: ServerId,
    blocks: &[Pending],
    kept: &mut KeptCols,
) -> Result<Taken> {
    let mut out = Taken {
        kept: Vec::with_capacity(blocks.len()),
        raws: Vec::with_capacity(blocks.len()),
    };
    let mut headers = txn.open_table(HEADERS)?;
    let mut bodies = txn.open_table(BODIES)?;
    for b in blocks {
        let rows = match headers.remove(&header_key(org, server, b.id))? {
            Some(v) => header::peek(v.value())?.0 as usize,
            None => return Err(corrupt(format!("pending block {} vanished", b.id))),
        };
        trace_index::remove_block(txn, org, b.id, rows)?;
        if let Some(cols) = kept.take(b.id, rows) {
            chunks::remove(&mut bodies, b.id)?;
            out.kept.push(Some(cols));
            out.raws.push((Vec::new(), rows));
            continue;
        }
        let body = match chunks::take(&mut bodies, b.id)? {
            Some(v) => BlockBody::parse(v)?,
            None => return Err(corrupt(format!("header without body {}", b.id))),
        };
        if body.org != org || body.server != server || body.rows != rows {
            return Err(corrupt(format!("block {} does not match its header", b.id)));
        }
        out.kept.push(None);
        out.raws.push((body.raw_columns()?, rows));
    }
    Ok(out)
}

/// Merges `parts` (each sorted) and writes them as blocks of `rows_max` rows at `level_full`; the
/// remainder, if any, becomes one block at `level_rest`; both with row groups of `group_rows`.
#[allow(clippy::too_many_arguments)]
pub fn merge_write(
    txn: &WriteTransaction,
    org: OrgId,
    server: ServerId,
    parts: &[Cols<'_>],
    rows_max: usize,
    level_full: i32,
    level_rest: i32,
    group_rows: usize,
) -> Result<Written> {
    let mut w = Written::default();
    let total: usize = parts.iter().map(Cols::len).sum();
    if total == 0 {
        return Ok(w);
    }
    let write = |cols: &Cols<'_>, w: &mut Written| -> Result<()> {
        let full = cols.len() >= rows_max;
        let (p, bytes) = put_block(
            txn,
            org,
            server,
            cols,
            if full { level_full } else { level_rest },
            group_rows,
            Fanout::ByRows,
        )?;
        if !full {
            w.pending = Some(p);
        }
        w.blocks += 1;
        w.rows += cols.len();
        w.bytes += bytes;
        Ok(())
    };
    if parts.len() == 1 && total <= rows_max {
        write(&parts[0], &mut w)?;
        return Ok(w);
    }
    let order = if parts.len() == 1 {
        (0..total as u32).map(|i| (0, i)).collect()
    } else {
        Cols::merged_order(parts)
    };
    for chunk in order.chunks(rows_max) {
        write(&Cols::gather(parts, chunk), &mut w)?;
    }
    crate::bufs::give(order);
    Ok(w)
}

/// Re-reads what was just encoded before it is written: a block that would not decode must never
/// reach the disk. Returns the body unchanged (parsed in place, not copied).
pub fn check_body(body: Vec<u8>, org: OrgId, server: ServerId, rows: usize) -> Result<Vec<u8>> {
    let parsed = BlockBody::parse(body)?;
    if parsed.org != org
        || parsed.server != server
        || parsed.rows != rows
        || parsed.starts()?.len() != rows
    {
        return Err(StorageError::Corrupt(
            "encoded block does not read back".into(),
        ));
    }
    Ok(parsed.into_data())
}
