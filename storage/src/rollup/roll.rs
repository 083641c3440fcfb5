//! Rolling a finished day's minute blobs into hour blobs (both cubes) and a day blob (tools cube)
//! with its overview, in one durable transaction, so old days keep a few dozen blobs per server
//! instead of 1,440.

use std::collections::BTreeMap;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata};

use super::blob::Blob;
use super::{BlobKey, Cube, Res, ROLLUPS, ROLLUP_DELTAS};
use crate::error::{Result, StorageError};

/// The encode buffer [`apply_deltas`] keeps between merges (they run one at a time per partition;
/// two at once just use two buffers): a busy minute's users blob is megabytes, and a new buffer
/// per merge was a page fault per 4 KB of it.
static ENCODE_BUF: parking_lot::Mutex<Vec<u8>> = parking_lot::Mutex::new(Vec::new());
/// Largest encode buffer kept between merges.
const ENCODE_BUF_BYTES_MAX: usize = 8 << 20;

/// Every append delta of a partition as read from one snapshot, merged per minute blob: built
/// without the partition's write lock ([`read_deltas`]), so appends go on meanwhile, and written
/// under it ([`apply_deltas`]), which then only merges one blob per key into the stored one.
pub struct DeltaMerge {
    /// Per blob key, in key order: the deltas merged, and the delta keys they came from.
    groups: Vec<(BlobKey, Blob, Vec<[u8; 23]>)>,
}

/// Reads and merges every delta in `db` (`None`: there are none). Needs no lock: deltas are only
/// added (with new sequence numbers) by appends, and only removed by [`apply_deltas`] and
/// retention's purge, which the caller serializes with this (the store's compaction lock).
pub fn read_deltas(db: &Database) -> Result<Option<DeltaMerge>> {
    let read = db.begin_read()?;
    let deltas = match read.open_table(ROLLUP_DELTAS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if deltas.is_empty()? {
        return Ok(None);
    }
    // Deltas sort by their blob key: merge each run into one blob.
    let mut groups: Vec<(BlobKey, Blob, Vec<[u8; 23]>)> = Vec::new();
    for e in deltas.iter()? {
        let (k, v) = e?;
        let full: [u8; 23] = *k.value();
        let head: [u8; 15] = full[..15].try_into().expect("23-byte key");
        let key = BlobKey::decode(&head)
            .ok_or_else(|| StorageError::Corrupt("rollup delta key".into()))?;
        match groups.last_mut() {
            Some((gk, gb, keys)) if *gk == key => {
                gb.merge_encoded(v.value(), key.cube, key.start_unix_nano())?;
                keys.push(full);
            }
            _ => groups.push((
                key,
                Blob::decode(v.value(), key.cube, key.start_unix_nano())?,
                vec![full],
            )),
        }
    }
    Ok(Some(DeltaMerge { groups }))
}

/// Merges `m` into the stored minute blobs and deletes its deltas, in one durable transaction.
/// Returns how many deltas were merged. The caller holds the partition's write lock. A group
/// whose deltas are no longer all there was purged by retention since it was read: it is dropped,
/// never written back.
pub fn apply_deltas(db: &Database, m: DeltaMerge) -> Result<usize> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    let mut n = 0;
    // One encode buffer for every blob of this merge, and kept for the next merge (any thread).
    let mut buf = std::mem::take(&mut *ENCODE_BUF.lock());
    {
        let mut deltas = txn.open_table(ROLLUP_DELTAS)?;
        let mut table = txn.open_table(ROLLUPS)?;
        for (key, mut blob, keys) in m.groups {
            let mut all = true;
            for k in &keys {
                all &= deltas.remove(k)?.is_some();
            }
            if !all {
                continue;
            }
            n += keys.len();
            let k = key.encode();
            let start = key.start_unix_nano();
            if let Some(v) = table.get(&k)? {
                blob.merge_encoded(v.value(), key.cube, start)?;
            }
            blob.encode_into(&mut buf, key.cube, start);
            table.insert(&k, buf.as_slice())?;
        }
    }
    txn.commit()?;
    if buf.capacity() <= ENCODE_BUF_BYTES_MAX {
        *ENCODE_BUF.lock() = buf;
    }
    Ok(n)
}

/// Merges every append delta into its minute blob and deletes the deltas, in one durable
/// transaction. Returns how many deltas were merged (0: none, nothing written). The caller holds
/// the partition's write lock.
pub fn merge_deltas(db: &Database) -> Result<usize> {
    match read_deltas(db)? {
        Some(m) => apply_deltas(db, m),
        None => Ok(0),
    }
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
