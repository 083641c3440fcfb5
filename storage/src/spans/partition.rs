//! One day partition: its file name, its redb tables, and opening it with the format-version check.

use std::path::Path;

use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};
use rustc_hash::FxHashMap;

use crate::error::{Result, StorageError};

/// Version of everything inside a partition file (tables, header and body layouts).
pub const FORMAT_VERSION: u32 = 9;

/// `"format_version"` -> u32 LE; `"next_block_id"` -> u64 LE; `"sealed_next_block"` -> u64 LE.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `[org u32 BE][server u32 BE][block u64 BE]` -> encoded `BlockHeader`.
pub const HEADERS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("headers");
/// `[block u64 BE][chunk u32 BE]` -> a chunk of the block body, all but the last of one length
/// (16,288 bytes since format 8, 4000 before; see `chunks`).
pub const BODIES: TableDefinition<&[u8; 12], &[u8]> = TableDefinition::new("bodies");
/// `[org u32 BE][bits u8][bucket u16 BE][block u64 BE, reversed in files with `trace_keys`]` ->
/// sorted trace fingerprints of that block in that bucket (see `trace_index`).
pub const TRACE_INDEX: TableDefinition<&[u8; 15], &[u8]> = TableDefinition::new("trace_index");

pub const KEY_VERSION: &str = "format_version";
pub const KEY_NEXT_BLOCK: &str = "next_block_id";
/// `next_block_id` when the file was last written by the sealed rewrite (absent: never sealed).
pub const KEY_SEALED_AT: &str = "sealed_next_block";
/// `u32 LE` 2: the file's trace-index keys hold block ids bit-reversed and its blocks put about
/// 256 ids in a bucket, fixed-width (every file created since format 9); 1: reversed, 64 ids per
/// bucket (files created by formats 7 and 8); absent: as they are, 64 per bucket (older files).
pub const KEY_TRACE_KEYS: &str = "trace_keys";

/// A block of one (org, server) with fewer than `block_rows_max` rows: a merge candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub id: u64,
    pub rows: u32,
    pub min_start: u64,
    /// Its trace ids are in one bucket where by its rows they would take several
    /// ([`super::trace_index::Fanout::One`]): compaction rewrites such a block on a finished day.
    pub one_bucket: bool,
}

/// Pending blocks per (org, server). Only touched under the partition's write lock.
pub type PendingMap = FxHashMap<(u32, u32), Vec<Pending>>;

/// State owned by the holder of the partition's write lock.
#[derive(Default)]
pub struct WriteState {
    /// Loaded on first write (scan of the headers table), then kept in step with every commit.
    pub pending: Option<PendingMap>,
    /// The rollup deltas appends committed through this handle, summed until a merge takes them.
    pub rollups: crate::rollup::Unmerged,
    /// Decoded columns of the pending blocks appends wrote through this handle.
    pub kept: super::kept::KeptCols,
}

pub struct Partition {
    pub db: Database,
    /// Serializes write transactions of append, compact and seal on this file (redb would block
    /// anyway; holding our own lock keeps the order explicit and guards the pending-block map).
    pub write_lock: Mutex<WriteState>,
}

impl Partition {
    /// Opens (creating if `create`) the partition file of `day` and checks its format version.
    pub fn open(dir: &Path, day: u32, cache_bytes: usize, create: bool) -> Result<Partition> {
        let path = dir.join(file_name(day));
        if !create && !path.exists() {
            return Err(StorageError::NotFound(format!(
                "partition {}",
                file_name(day)
            )));
        }
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)?;
        let p = Partition {
            db,
            write_lock: Mutex::new(WriteState::default()),
        };
        p.check_or_init_version()?;
        Ok(p)
    }

    fn check_or_init_version(&self) -> Result<()> {
        // Read first: an existing partition must not pay a write commit (and fsync) per open.
        let read = self.db.begin_read()?;
        let found = match read.open_table(META) {
            Ok(meta) => match meta.get(KEY_VERSION)? {
                Some(v) => Some(decode_u32(v.value())?),
                None => None,
            },
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        drop(read);
        match found {
            Some(FORMAT_VERSION) => Ok(()),
            // Older files are upgraded in place: 2 (no rollups table; rebuilt from the spans),
            // 3 (no day overviews; written from the day blobs), 4 (no row groups), 5
            // (dictionaries in first-appearance order), 6 (no `trace_keys` row), 7 (bodies in
            // 4000-byte chunks) and 8 (64 trace ids per index bucket): their blocks, chunks and
            // trace-index keys stay as they are, readers take every kind.
            Some(2) => super::upgrade::from_v2(&self.db),
            Some(3) => super::upgrade::from_v3(&self.db),
            Some(4..=8) => super::upgrade::renumber(&self.db),
            Some(found) => Err(StorageError::FormatVersion {
                found,
                supported: FORMAT_VERSION,
            }),
            None => self.init(),
        }
    }

    /// Writes the meta rows and creates every table, so readers never meet a missing table.
    fn init(&self) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if meta.get(KEY_VERSION)?.is_none() {
                meta.insert(KEY_VERSION, FORMAT_VERSION.to_le_bytes().as_slice())?;
                meta.insert(KEY_NEXT_BLOCK, 0u64.to_le_bytes().as_slice())?;
                meta.insert(KEY_TRACE_KEYS, 2u32.to_le_bytes().as_slice())?;
            }
            txn.open_table(HEADERS)?;
            txn.open_table(BODIES)?;
            txn.open_table(TRACE_INDEX)?;
            txn.open_table(crate::rollup::ROLLUPS)?;
            txn.open_table(crate::rollup::ROLLUP_DELTAS)?;
        }
        txn.commit()?;
        Ok(())
    }
}

impl WriteState {
    /// The pending-block map, loading it from the headers table on first use.
    pub fn pending(&mut self, db: &Database, rows_max: usize) -> Result<&mut PendingMap> {
        if self.pending.is_none() {
            let mut map = PendingMap::default();
            let txn = db.begin_read()?;
            let headers = txn.open_table(HEADERS)?;
            let index = txn.open_table(TRACE_INDEX)?;
            let keys = super::trace_index::Keys::read(&txn)?;
            for entry in headers.iter()? {
                let (k, v) = entry?;
                let (org, server, id) = split_header_key(k.value());
                let (rows, min_start) = super::header::peek(v.value())?;
                if (rows as usize) < rows_max {
                    map.entry((org, server)).or_default().push(Pending {
                        id,
                        rows,
                        min_start,
                        one_bucket: super::trace_index::in_one_bucket(
                            &index,
                            keys,
                            org,
                            id,
                            rows as usize,
                        )?,
                    });
                }
            }
            self.pending = Some(map);
        }
        Ok(self.pending.get_or_insert_with(PendingMap::default))
    }
}

/// `next_block_id` and `sealed_next_block` of a partition.
pub fn seal_state(db: &Database) -> Result<(u64, Option<u64>)> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let next = match meta.get(KEY_NEXT_BLOCK)? {
        Some(v) => decode_u64(v.value())?,
        None => return Err(StorageError::Corrupt("meta lacks next_block_id".into())),
    };
    let sealed = match meta.get(KEY_SEALED_AT)? {
        Some(v) => Some(decode_u64(v.value())?),
        None => None,
    };
    Ok((next, sealed))
}

fn decode_u32(b: &[u8]) -> Result<u32> {
    Ok(u32::from_le_bytes(
        b.try_into()
            .map_err(|_| StorageError::Corrupt("meta u32".into()))?,
    ))
}

pub fn decode_u64(b: &[u8]) -> Result<u64> {
    Ok(u64::from_le_bytes(
        b.try_into()
            .map_err(|_| StorageError::Corrupt("meta u64".into()))?,
    ))
}

/// Allocates `n` consecutive block ids in `txn` (ids are never reused within a file).
pub fn alloc_block_ids(txn: &redb::WriteTransaction, n: u64) -> Result<u64> {
    let mut meta = txn.open_table(META)?;
    let first = match meta.get(KEY_NEXT_BLOCK)? {
        Some(v) => decode_u64(v.value())?,
        None => return Err(StorageError::Corrupt("meta lacks next_block_id".into())),
    };
    let next = first
        .checked_add(n)
        .ok_or_else(|| StorageError::Corrupt("block id overflow".into()))?;
    meta.insert(KEY_NEXT_BLOCK, next.to_le_bytes().as_slice())?;
    Ok(first)
}

pub fn header_key(org: u32, server: u32, block: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&org.to_be_bytes());
    k[4..8].copy_from_slice(&server.to_be_bytes());
    k[8..].copy_from_slice(&block.to_be_bytes());
    k
}

pub fn split_header_key(k: &[u8; 16]) -> (u32, u32, u64) {
    let org = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
    let server = u32::from_be_bytes([k[4], k[5], k[6], k[7]]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[8..]);
    (org, server, u64::from_be_bytes(b))
}

/// The temporary file the sealed rewrite of `day` is built in (removed at open if left behind).
pub fn tmp_file_name(day: u32) -> String {
    format!("{}.tmp", file_name(day))
}

/// `YYYY-MM-DD.redb` of a UTC day number.
pub fn file_name(day: u32) -> String {
    let (y, m, d) = civil_from_days(i64::from(day));
    format!("{y:04}-{m:02}-{d:02}.redb")
}

/// The day of a partition file name, or `None` for any other file.
pub fn parse_file_name(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".redb")?;
    let b = stem.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = stem[..4].parse().ok()?;
    let m: u32 = stem[5..7].parse().ok()?;
    let d: u32 = stem[8..].parse().ok()?;
    let day = u32::try_from(days_from_civil(y, m, d)).ok()?;
    // Reject non-canonical names such as 2024-02-31 so one day maps to exactly one file.
    (file_name(day) == name).then_some(day)
}

/// Howard Hinnant's `civil_from_days`: proleptic Gregorian date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The inverse of [`civil_from_days`]: days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(file_name(0), "1970-01-01.redb");
        assert_eq!(file_name(19_723), "2024-01-01.redb");
        assert_eq!(file_name(19_782), "2024-02-29.redb");
        for day in (0..40_000).step_by(7) {
            assert_eq!(parse_file_name(&file_name(day)), Some(day));
        }
        for bad in [
            "2024-02-30.redb",
            "2024-1-01.redb",
            "meta.redb",
            "2024-01-01.redb.tmp",
            "x",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }
}
