//! Rolling a finished day's minute blobs into hour blobs (both cubes) and a day blob (tools cube)
//! with its overview, in one durable transaction, so old days keep a few dozen blobs per server
//! instead of 1,440.

use std::collections::BTreeMap;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata};

use super::blob::Blob;
use super::{BlobKey, Cube, Res, ROLLUPS, ROLLUP_DELTAS};
use crate::error::{Result, StorageError};

/// Merges every append delta into its minute blob and deletes the deltas, in one durable
/// transaction. Returns how many deltas were merged (0: none, nothing written). The caller holds
/// the partition's write lock.
pub fn merge_deltas(db: &Database) -> Result<usize> {
    {
        let read = db.begin_read()?;
        match read.open_table(ROLLUP_DELTAS) {
            Ok(t) => {
                if t.is_empty()? {
                    return Ok(0);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
    }
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    let mut n = 0;
    {
        let mut deltas = txn.open_table(ROLLUP_DELTAS)?;
        let mut table = txn.open_table(ROLLUPS)?;
        // Deltas sort by their blob key: merge each run into one blob, then into the stored one.
        let mut current: Option<(BlobKey, Blob)> = None;
        let flush = |cur: Option<(BlobKey, Blob)>,
                     table: &mut redb::Table<'_, &'static [u8; 15], &'static [u8]>|
         -> Result<()> {
            if let Some((key, mut blob)) = cur {
                let k = key.encode();
                let start = key.start_unix_nano();
                if let Some(v) = table.get(&k)? {
                    blob.merge(Blob::decode(v.value(), key.cube, start)?);
                }
                table.insert(&k, blob.encode(key.cube, start).as_slice())?;
            }
            Ok(())
        };
        for e in deltas.iter()? {
            let (k, v) = e?;
            let k: [u8; 15] = k.value()[..15].try_into().expect("23-byte key");
            let key = BlobKey::decode(&k)
                .ok_or_else(|| StorageError::Corrupt("rollup delta key".into()))?;
            let blob = Blob::decode(v.value(), key.cube, key.start_unix_nano())?;
            n += 1;
            match current.as_mut() {
                Some((ck, cb)) if *ck == key => cb.merge(blob),
                _ => {
                    flush(current.take(), &mut table)?;
                    current = Some((key, blob));
                }
            }
        }
        flush(current.take(), &mut table)?;
        deltas.retain(|_, _| false)?;
    }
    txn.commit()?;
    Ok(n)
}

/// Rolls every minute blob in `db` up (merge the deltas first: rolling reads minute blobs only). Returns how many minute blobs were rolled (0: nothing to
/// do, no transaction was written). The caller holds the partition's write lock.
pub fn roll_day(db: &Database) -> Result<usize> {
    let minutes: Vec<BlobKey> = {
        let read = db.begin_read()?;
        let table = match read.open_table(ROLLUPS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut keys = Vec::new();
        for e in table.iter()? {
            let (k, _) = e?;
            let key = BlobKey::decode(k.value())
                .ok_or_else(|| StorageError::Corrupt("rollup key".into()))?;
            if key.res == Res::Minute {
                keys.push(key);
            }
        }
        keys
    };
    if minutes.is_empty() {
        return Ok(0);
    }
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        let mut table = txn.open_table(ROLLUPS)?;
        // Keys sort by (org, server, env, cube, res, start): one owner's minutes are contiguous,
        // so only one owner's hour and day blobs are held in memory at a time.
        let mut targets: BTreeMap<BlobKey, Blob> = BTreeMap::new();
        let mut owner = None;
        for key in &minutes {
            let this = (key.org, key.server, key.env, key.cube);
            if owner != Some(this) {
                flush(&mut table, &mut targets)?;
                owner = Some(this);
            }
            let blob = match table.remove(&key.encode())? {
                Some(v) => Blob::decode(v.value(), key.cube, key.start_unix_nano())?,
                None => continue,
            };
            let hour = BlobKey {
                res: Res::Hour,
                start_minute: key.start_minute - key.start_minute % 60,
                ..*key
            };
            if key.cube == Cube::Tools {
                let day = BlobKey {
                    res: Res::Day,
                    start_minute: key.start_minute - key.start_minute % 1440,
                    ..*key
                };
                targets.entry(day).or_default().merge(blob.clone());
            }
            targets.entry(hour).or_default().merge(blob);
        }
        flush(&mut table, &mut targets)?;
    }
    txn.commit()?;
    Ok(minutes.len())
}

/// Merges each target blob with what is stored under its key and writes it back; a day blob's
/// overview is rewritten from the merged day blob, so the two always agree.
fn flush(
    table: &mut redb::Table<'_, &'static [u8; 15], &'static [u8]>,
    targets: &mut BTreeMap<BlobKey, Blob>,
) -> Result<()> {
    for (key, mut blob) in std::mem::take(targets) {
        let k = key.encode();
        let start = key.start_unix_nano();
        if let Some(v) = table.get(&k)? {
            blob.merge(Blob::decode(v.value(), key.cube, start)?);
        }
        if key.res == Res::Day {
            put_overview(table, &key, &blob)?;
        }
        table.insert(&k, blob.encode(key.cube, start).as_slice())?;
    }
    Ok(())
}

/// Writes the overview of the tools-cube day blob `day` stored under `key`.
fn put_overview(
    table: &mut redb::Table<'_, &'static [u8; 15], &'static [u8]>,
    key: &BlobKey,
    day: &Blob,
) -> Result<()> {
    debug_assert!(key.cube == Cube::Tools && key.res == Res::Day);
    let ov = BlobKey {
        res: Res::DayOverview,
        ..*key
    };
    let bytes = super::overview::encode(day, key.start_unix_nano());
    table.insert(&ov.encode(), bytes.as_slice())?;
    Ok(())
}

/// Writes the overview of every day blob in `table` (upgrading a format-3 file, which has none).
/// Returns how many were written.
pub fn write_overviews(
    table: &mut redb::Table<'_, &'static [u8; 15], &'static [u8]>,
) -> Result<usize> {
    let mut days = Vec::new();
    for e in table.iter()? {
        let (k, _) = e?;
        let key =
            BlobKey::decode(k.value()).ok_or_else(|| StorageError::Corrupt("rollup key".into()))?;
        if key.res == Res::Day {
            days.push(key);
        }
    }
    for key in &days {
        let blob = match table.get(&key.encode())? {
            Some(v) => Blob::decode(v.value(), key.cube, key.start_unix_nano())?,
            None => continue,
        };
        put_overview(table, key, &blob)?;
    }
    Ok(days.len())
}
