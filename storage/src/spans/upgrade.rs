//! In-place upgrades of older partition files to the current format, each in one durable
//! transaction (a crash leaves the file at its old version, and the next open starts over):
//! format 2 (no rollups) has its rollups rebuilt from its spans; format 3 (no day overviews) has
//! the overview of each tools-cube day blob written; formats 4 (no row groups), 5 (dictionaries
//! in first-appearance order), 6 (trace-index keys of one layout only), 7 (bodies in 4000-byte
//! chunks) and 8 (64 trace ids per index bucket) only get the new version number, since every
//! reader takes `MOB2`, `MOB3` and `MOB4` bodies and compaction writes `MOB4` into whatever it
//! rewrites, a file's `trace_keys` row (or its absence) keeps saying how its trace-index keys and
//! buckets are laid out (`trace_index`), and readers take a body's chunk length from its first
//! chunk (`chunks`).

use redb::{Database, Durability, ReadableTable};

use super::block::BlockBody;
use super::chunks;
use super::corrupt;
use super::materialize::Materialize;
use super::partition::{BODIES, FORMAT_VERSION, HEADERS, KEY_VERSION, META};
use crate::error::Result;
use crate::rollup::{write_overviews, Deltas, ROLLUPS};

pub fn from_v2(db: &Database) -> Result<()> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        txn.open_table(ROLLUPS)?;
        let blocks: Vec<u64> = {
            let headers = txn.open_table(HEADERS)?;
            let mut ids = Vec::new();
            for e in headers.iter()? {
                let (k, _) = e?;
                let k = k.value();
                ids.push(u64::from_be_bytes(
                    k[8..16].try_into().map_err(|_| corrupt("header key"))?,
                ));
            }
            ids
        };
        for id in blocks {
            let body = {
                let bodies = txn.open_table(BODIES)?;
                chunks::get(&bodies, id)?
                    .ok_or_else(|| corrupt(format!("block {id} has no body")))?
            };
            let body = BlockBody::parse(body)?;
            let all: Vec<usize> = (0..body.rows).collect();
            let spans = body.materialize(&all)?;
            // One block at a time keeps memory bounded on big days.
            let mut deltas = Deltas::default();
            for s in &spans {
                deltas.add(s);
            }
            deltas.merge_into(&txn)?;
        }
        txn.open_table(crate::rollup::ROLLUP_DELTAS)?;
        let mut meta = txn.open_table(META)?;
        meta.insert(KEY_VERSION, FORMAT_VERSION.to_le_bytes().as_slice())?;
        // Not sealed any more: the next compaction of a finished day rolls the rebuilt minute
        // rollups into hours, days and day overviews, and seals it again.
        meta.remove(super::partition::KEY_SEALED_AT)?;
    }
    txn.commit()?;
    Ok(())
}

pub fn from_v3(db: &Database) -> Result<()> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        write_overviews(&mut txn.open_table(ROLLUPS)?)?;
        let mut meta = txn.open_table(META)?;
        meta.insert(KEY_VERSION, FORMAT_VERSION.to_le_bytes().as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Formats 4 to 8: only the version number changes.
pub fn renumber(db: &Database) -> Result<()> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(KEY_VERSION, FORMAT_VERSION.to_le_bytes().as_slice())?;
    }
    txn.commit()?;
    Ok(())
}
