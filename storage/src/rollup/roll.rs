//! Merging append deltas into their minute blobs (with the deltas a process keeps in memory for
//! that, [`Unmerged`]), and rolling a finished day's minute blobs into hour blobs (both cubes) and a
//! day blob (tools cube) with its overview, in one durable transaction, so old days keep a few
//! dozen blobs per server instead of 1,440.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::FxHashSet;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata};

use super::blob::Blob;
use super::delta::{DeltaSum, Deltas, OwnedDeltas};
use super::{BlobKey, Cube, Res, ROLLUPS, ROLLUP_DELTAS};
use crate::error::{Result, StorageError};

/// The encode buffer [`apply_deltas`] keeps between merges (they run one at a time per partition;
/// two at once just use two buffers): a busy minute's users blob is megabytes, and a new buffer
/// per merge was a page fault per 4 KB of it.
static ENCODE_BUF: parking_lot::Mutex<Vec<u8>> = parking_lot::Mutex::new(Vec::new());
/// Largest encode buffer kept between merges.
const ENCODE_BUF_BYTES_MAX: usize = 8 << 20;

/// The rollup deltas of one partition that its appends committed through this handle and no merge
/// has taken yet, kept in memory as each append commits. A merge sums them from here instead of
/// decoding from the file every delta this process wrote, which was most of a merge's work
/// (docs/benchmarks.md, "Rollup deltas kept in memory for their merge"). The deltas stay on disk,
/// the durable record, until the merge's transaction removes them; a delta not kept here (left by
/// an earlier process or an earlier handle of the file, committed while the process held
/// [`UNMERGED_ROWS_MAX`] rows, or taken by a merge that failed) is read from the file instead. Owned by the holder of the partition's write lock, like the appends
/// that fill it.
pub struct Unmerged {
    /// Per append, in commit order: its sequence number and its deltas.
    appends: Vec<(u64, OwnedDeltas)>,
    /// Rows (and totals) held in `appends`, counted in [`UNMERGED_ROWS`] too.
    rows: usize,
    /// [`UNMERGED_ROWS_MAX`], smaller in tests.
    rows_max: usize,
}

/// Most rows every [`Unmerged`] of the process holds together (about 300 bytes each, so about
/// 20 MB): past it, appends leave their deltas to be read from the file. The server merges every
/// partition's deltas once `rollup_deltas_bytes_max` (1 MiB, about 20,000 rows) of them wait, so
/// it stays well under; this bounds a store that merges rarely (a bulk load compacted at the end,
/// or a backfill writing to many days at once).
pub const UNMERGED_ROWS_MAX: usize = 65_536;

/// Rows held by every [`Unmerged`] of the process.
static UNMERGED_ROWS: AtomicUsize = AtomicUsize::new(0);

impl Default for Unmerged {
    fn default() -> Self {
        Unmerged::with_rows_max(UNMERGED_ROWS_MAX)
    }
}

impl Unmerged {
    pub fn with_rows_max(rows_max: usize) -> Self {
        Unmerged {
            appends: Vec::new(),
            rows: 0,
            rows_max,
        }
    }

    /// Keeps the deltas one append committed under `seq`, unless the process holds `rows_max`
    /// rows already.
    pub fn add(&mut self, deltas: Deltas<'_>, seq: u64) {
        let rows = deltas.rows();
        // A soft limit: another partition's append may add between the load and the add.
        if UNMERGED_ROWS.load(Ordering::Relaxed).saturating_add(rows) > self.rows_max {
            return;
        }
        self.rows += rows;
        UNMERGED_ROWS.fetch_add(rows, Ordering::Relaxed);
        self.appends.push((seq, deltas.into_owned()));
    }

    /// How many appends' deltas are kept.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.appends.len()
    }

    /// Everything kept so far, leaving this empty (with the same limit).
    pub fn take(&mut self) -> Unmerged {
        std::mem::replace(self, Unmerged::with_rows_max(self.rows_max))
    }

    /// The keys of the deltas kept here, per blob.
    fn keys_by_blob(&self) -> BTreeMap<BlobKey, Vec<[u8; 23]>> {
        let mut out: BTreeMap<BlobKey, Vec<[u8; 23]>> = BTreeMap::new();
        for (seq, d) in &self.appends {
            for key in d.keys() {
                out.entry(*key)
                    .or_default()
                    .push(super::delta_key(key, *seq));
            }
        }
        out
    }

    /// Forgets everything of `org` (its deltas were purged from the file).
    pub fn forget_org(&mut self, org: crate::model::OrgId) {
        let mut freed = 0;
        for (_, d) in &mut self.appends {
            freed += d.forget_org(org);
        }
        self.appends.retain(|(_, d)| !d.is_empty());
        self.rows -= freed;
        UNMERGED_ROWS.fetch_sub(freed, Ordering::Relaxed);
    }
}

impl Drop for Unmerged {
    fn drop(&mut self) {
        UNMERGED_ROWS.fetch_sub(self.rows, Ordering::Relaxed);
    }
}

/// Every append delta of a partition, merged per minute blob: built without the partition's write
/// lock ([`read_deltas`]), so appends go on meanwhile, and written under it ([`apply_deltas`]),
/// which then only merges one blob per key into the stored one.
pub struct DeltaMerge {
    /// Per blob key: the deltas merged, and the delta keys they came from.
    groups: BTreeMap<BlobKey, (Blob, Vec<[u8; 23]>)>,
}

/// Merges every delta of `db` into one blob per minute (`None`: there are none): those `take`
/// hands over from memory, and the rest read from the file. `take` is called once the snapshot is
/// open, so every delta the snapshot holds was either kept in memory by then (and is handed over)
/// or is read here: none is counted twice or left out. Needs no lock: deltas are only added (with
/// new sequence numbers) by appends, and only removed by [`apply_deltas`] and retention's purge,
/// which the caller serializes with this (the store's compaction lock).
pub fn read_deltas(db: &Database, take: impl FnOnce() -> Unmerged) -> Result<Option<DeltaMerge>> {
    let read = db.begin_read()?;
    let mut sums = take();
    let deltas = match read.open_table(ROLLUP_DELTAS) {
        Ok(t) if !t.is_empty()? => Some(t),
        Ok(_) | Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    // Deltas kept in memory may be newer than the snapshot, which then may hold none.
    if deltas.is_none() && sums.appends.is_empty() {
        return Ok(None);
    }
    let mut kept_keys = sums.keys_by_blob();
    let covered: FxHashSet<[u8; 23]> = kept_keys.values().flatten().copied().collect();
    let mut groups: BTreeMap<BlobKey, (Blob, Vec<[u8; 23]>)> = BTreeMap::new();
    // Deltas sort by their blob key: merge each run into one blob.
    let mut run: Option<(BlobKey, Blob, Vec<[u8; 23]>)> = None;
    let in_file = deltas.as_ref().map(|t| t.iter()).transpose()?;
    for e in in_file.into_iter().flatten() {
        let (k, v) = e?;
        let full: [u8; 23] = *k.value();
        if covered.contains(&full) {
            continue;
        }
        let head: [u8; 15] = full[..15].try_into().expect("23-byte key");
        let key = BlobKey::decode(&head)
            .ok_or_else(|| StorageError::Corrupt("rollup delta key".into()))?;
        match &mut run {
            Some((rk, blob, keys)) if *rk == key => {
                blob.merge_encoded(v.value(), key.cube, key.start_unix_nano())?;
                keys.push(full);
            }
            _ => {
                if let Some((rk, blob, keys)) = run.take() {
                    groups.insert(rk, (blob, keys));
                }
                let blob = Blob::decode(v.value(), key.cube, key.start_unix_nano())?;
                run = Some((key, blob, vec![full]));
            }
        }
    }
    if let Some((rk, blob, keys)) = run {
        groups.insert(rk, (blob, keys));
    }
    // The deltas kept in memory, summed by ids, then added to what the file gave for the same
    // blob (in that order whatever the deltas' ages: sums may differ in the last bits from adding
    // every delta in sequence order).
    let mut sum = DeltaSum::default();
    for (_, d) in std::mem::take(&mut sums.appends) {
        sum.add(d);
    }
    for (key, blob) in sum.into_blobs() {
        let keys = kept_keys.remove(&key).unwrap_or_default();
        match groups.entry(key) {
            Entry::Vacant(e) => {
                e.insert((blob, keys));
            }
            Entry::Occupied(mut e) => {
                let (old, old_keys) = e.get_mut();
                old.merge(blob);
                old_keys.extend(keys);
            }
        }
    }
    Ok(Some(DeltaMerge { groups }))
}

/// Merges `m` into the stored minute blobs and deletes its deltas, in one durable transaction.
/// Returns how many deltas were merged. The caller holds the partition's write lock. A group
/// whose deltas are no longer all there was purged by retention since it was read: it is dropped,
/// never written back. On error nothing is written, and the deltas (still on disk, no longer kept
/// in memory) are read from the file by the next merge.
pub fn apply_deltas(db: &Database, m: DeltaMerge) -> Result<usize> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    let mut n = 0;
    // One encode buffer for every blob of this merge, and kept for the next merge (any thread).
    let mut buf = std::mem::take(&mut *ENCODE_BUF.lock());
    {
        let mut deltas = txn.open_table(ROLLUP_DELTAS)?;
        let mut table = txn.open_table(ROLLUPS)?;
        for (key, (mut blob, keys)) in m.groups {
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

/// Merges every append delta (those kept in `unmerged`, which this empties, and those only in
/// the file) into its minute blob and deletes the deltas, in one durable transaction. Returns how
/// many deltas were merged (0: none, nothing written). The caller holds the partition's write
/// lock, which `unmerged` is part of.
pub fn merge_deltas(db: &Database, unmerged: &mut Unmerged) -> Result<usize> {
    match read_deltas(db, || unmerged.take())? {
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
