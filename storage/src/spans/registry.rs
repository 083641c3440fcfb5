//! The set of day partitions of a store directory and the bounded map of open redb handles.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use redb::{Database, Durability, ReadTransaction, ReadableTable, TableDefinition};

use super::compact::now_unix_nano;
use super::corrupt;
use super::header::Summary;
use super::partition::{
    decode_u64, file_name, parse_file_name, seal_state, split_header_key, tmp_file_name, Partition,
    BODIES, HEADERS, KEY_NEXT_BLOCK, KEY_SEALED_AT, META,
};
use super::PartitionInfo;
use crate::error::Result;
use crate::model::day_of;

/// An open partition plus the flag that `drop_partition` sets so a writer that obtained the
/// handle before the drop does not write into a deleted file.
pub struct OpenPartition {
    pub part: Partition,
    pub dropped: AtomicBool,
    /// Bytes written through this handle (appends and merges): what decides when a finished day
    /// that keeps receiving late spans is sealed again.
    pub written: AtomicU64,
    /// Unix nanos of the last write through this handle (0: none since it was opened).
    pub last_write: AtomicU64,
    /// Set by appends that wrote rollup deltas, cleared by compaction when it merges them (deltas
    /// left by a crash are read all the same, and merged with the next ones).
    pub rollup_deltas: AtomicBool,
    /// Header summaries of the file (see [`OpenPartition::summaries`]), with the `next_block_id`
    /// they were read at.
    summaries: Mutex<Option<(u64, Arc<Vec<Summary>>)>>,
}

impl OpenPartition {
    fn new(part: Partition) -> OpenPartition {
        OpenPartition {
            part,
            dropped: AtomicBool::new(false),
            written: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            rollup_deltas: AtomicBool::new(false),
            summaries: Mutex::new(None),
        }
    }

    /// The fixed part of every block header of the file as seen by `txn`, in key order (org,
    /// server, block). Cached: the set of blocks only changes in a transaction that allocates a
    /// block id (appends and merges write at least one block; nothing else removes one but a
    /// sealed rewrite or a drop, which replace the handle), so `next_block_id` identifies it.
    pub fn summaries(&self, txn: &ReadTransaction) -> Result<Arc<Vec<Summary>>> {
        let next = match txn.open_table(META)?.get(KEY_NEXT_BLOCK)? {
            Some(v) => decode_u64(v.value())?,
            None => return Err(corrupt("meta lacks next_block_id")),
        };
        if let Some((at, s)) = &*self.summaries.lock() {
            if *at == next {
                return Ok(s.clone());
            }
        }
        let mut out = Vec::new();
        for entry in txn.open_table(HEADERS)?.iter()? {
            let (k, v) = entry?;
            out.push(Summary::decode(split_header_key(k.value()), v.value())?);
        }
        let out = Arc::new(out);
        let mut g = self.summaries.lock();
        // Keep the newest state when two readers race.
        if g.as_ref().is_none_or(|(at, _)| *at <= next) {
            *g = Some((next, out.clone()));
        }
        Ok(out)
    }

    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    pub fn note_write(&self, bytes: usize) {
        self.written.fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_write.store(now_unix_nano(), Ordering::Relaxed);
    }
}

struct Inner {
    days: BTreeSet<u32>,
    open: HashMap<u32, (Arc<OpenPartition>, u64)>,
    tick: u64,
}

pub struct Registry {
    dir: PathBuf,
    cache_bytes: usize,
    /// Cache of the partitions of today and yesterday (where appends and merges happen).
    cache_bytes_current: usize,
    open_max: usize,
    inner: Mutex<Inner>,
}

impl Registry {
    pub fn open(
        dir: &Path,
        cache_bytes: usize,
        cache_bytes_current: usize,
        open_max: usize,
    ) -> Result<Registry> {
        std::fs::create_dir_all(dir)?;
        let mut days = BTreeSet::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(day) = parse_file_name(name) {
                days.insert(day);
            } else if name
                .strip_suffix(".tmp")
                .and_then(parse_file_name)
                .is_some()
            {
                // A sealed rewrite that did not reach its rename: the original is intact.
                std::fs::remove_file(dir.join(name))?;
            }
        }
        let inner = Inner {
            days,
            open: HashMap::new(),
            tick: 0,
        };
        Ok(Registry {
            dir: dir.to_path_buf(),
            cache_bytes,
            cache_bytes_current,
            open_max,
            inner: Mutex::new(inner),
        })
    }

    /// Days present, newest first.
    /// Days with a file in `lo..=hi`, oldest first.
    pub fn days_between(&self, lo: u32, hi: u32) -> Vec<u32> {
        if lo > hi {
            return Vec::new();
        }
        self.inner.lock().days.range(lo..=hi).copied().collect()
    }

    pub fn has_day(&self, day: u32) -> bool {
        self.inner.lock().days.contains(&day)
    }

    /// The partitions open now (no file is opened).
    pub fn open_handles(&self) -> Vec<Arc<OpenPartition>> {
        self.inner
            .lock()
            .open
            .values()
            .map(|(p, _)| p.clone())
            .collect()
    }

    pub fn days_desc(&self) -> Vec<u32> {
        self.inner.lock().days.iter().rev().copied().collect()
    }

    /// The open handle of `day`, opening (and with `create`, creating) its file. `None` if the day
    /// has no file and `create` is false.
    pub fn get(&self, day: u32, create: bool) -> Result<Option<Arc<OpenPartition>>> {
        let mut g = self.inner.lock();
        g.tick += 1;
        let tick = g.tick;
        if let Some((p, used)) = g.open.get_mut(&day) {
            *used = tick;
            return Ok(Some(p.clone()));
        }
        if !create && !g.days.contains(&day) {
            return Ok(None);
        }
        // Opening under the lock keeps one handle per file (redb refuses a second one).
        let part = Partition::open(&self.dir, day, self.cache_for(day), create)?;
        let p = Arc::new(OpenPartition::new(part));
        g.days.insert(day);
        g.open.insert(day, (p.clone(), tick));
        evict_idle(&mut g.open, self.open_max);
        Ok(Some(p))
    }

    fn cache_for(&self, day: u32) -> usize {
        let today = day_of(now_unix_nano());
        if day + 1 >= today {
            self.cache_bytes_current.max(self.cache_bytes)
        } else {
            self.cache_bytes
        }
    }

    /// Rewrites the partition file of `day` (open as `p`) with only its live tables, then renames
    /// it over the old one. Steps, each crash-safe: (1) under the write lock, copy every table
    /// into `<file>.tmp` and commit it durably; (2) under the registry lock and the write lock
    /// again, check that nothing was written meanwhile (else drop the copy: the next compaction
    /// retries), rename, fsync the directory, and swap the handle. A crash before the rename
    /// leaves the old file (the tmp file is deleted at open); after it, the complete new one.
    /// Readers holding the old handle finish on the old, unlinked file; writers holding it see
    /// it marked dropped and retry on the new one. Returns whether the file was replaced.
    pub fn seal(&self, day: u32, p: &Arc<OpenPartition>) -> Result<bool> {
        let tmp = self.dir.join(tmp_file_name(day));
        let next = {
            let _w = p.part.write_lock.lock();
            if p.is_dropped() {
                return Ok(false);
            }
            let (next, _) = seal_state(&p.part.db)?;
            if let Err(e) = copy_live(&p.part.db, &tmp, next) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            next
        };
        let mut g = self.inner.lock();
        let current = g.open.get(&day).is_some_and(|(cur, _)| Arc::ptr_eq(cur, p));
        let mut w = p.part.write_lock.lock();
        if !current || p.is_dropped() || seal_state(&p.part.db)?.0 != next {
            drop(w);
            std::fs::remove_file(&tmp)?;
            return Ok(false);
        }
        std::fs::rename(&tmp, self.dir.join(file_name(day)))?;
        sync_dir(&self.dir)?;
        p.dropped.store(true, Ordering::Release);
        // The new file's handle reads the copied deltas from disk: free the old handle's copies
        // now rather than when its last holder lets go.
        drop(w.rollups.take());
        w.kept.clear();
        drop(w);
        let part = Partition::open(&self.dir, day, self.cache_for(day), false)?;
        g.tick += 1;
        let tick = g.tick;
        g.open
            .insert(day, (Arc::new(OpenPartition::new(part)), tick));
        Ok(true)
    }

    /// Size of the partition file of `day` (0 if absent).
    pub fn file_bytes(&self, day: u32) -> u64 {
        std::fs::metadata(self.dir.join(file_name(day))).map_or(0, |m| m.len())
    }

    pub fn infos(&self) -> Result<Vec<PartitionInfo>> {
        let days: Vec<u32> = self.inner.lock().days.iter().copied().collect();
        let mut out = Vec::with_capacity(days.len());
        for day in days {
            match std::fs::metadata(self.dir.join(file_name(day))) {
                Ok(m) => out.push(PartitionInfo {
                    day,
                    bytes: m.len(),
                    index_bytes: 0,
                }),
                // Dropped between the snapshot and the stat.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    pub fn drop_day(&self, day: u32) -> Result<()> {
        let mut g = self.inner.lock();
        if let Some((p, _)) = g.open.remove(&day) {
            // Wait for a running append/compaction, then make late writers retry on a new file.
            let mut w = p.part.write_lock.lock();
            p.dropped.store(true, Ordering::Release);
            drop(w.rollups.take());
            w.kept.clear();
        }
        g.days.remove(&day);
        match std::fs::remove_file(self.dir.join(file_name(day))) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Closes least recently used handles nobody else holds until at most `max` are open. Handles in
/// use stay open (the bound is then exceeded briefly), which is what keeps memory bounded without
/// ever closing a file under a reader.
fn evict_idle(open: &mut HashMap<u32, (Arc<OpenPartition>, u64)>, max: usize) {
    if open.len() <= max {
        return;
    }
    let mut idle: Vec<(u64, u32)> = open
        .iter()
        .filter(|(_, (p, _))| Arc::strong_count(p) == 1)
        .map(|(d, (_, used))| (*used, *d))
        .collect();
    idle.sort_unstable();
    let excess = open.len() - max;
    for (_, day) in idle.into_iter().take(excess) {
        open.remove(&day);
    }
}

/// Copies the live tables of `src` into a new file at `tmp` (replacing any), marks it sealed at
/// `next` and commits durably.
fn copy_live(src: &Database, tmp: &Path, next: u64) -> Result<()> {
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let dst = Database::builder().set_cache_size(4 << 20).create(tmp)?;
    let read = src.begin_read()?;
    let mut txn = dst.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        let mut meta = txn.open_table(META)?;
        for e in read.open_table(META)?.iter()? {
            let (k, v) = e?;
            meta.insert(k.value(), v.value())?;
        }
        meta.insert(KEY_SEALED_AT, next.to_le_bytes().as_slice())?;
        copy_table(&read, &txn, HEADERS)?;
        copy_table(&read, &txn, BODIES)?;
        super::trace_index::copy_for_seal(&read, &txn)?;
        copy_table(&read, &txn, crate::rollup::ROLLUPS)?;
        copy_table(&read, &txn, crate::rollup::ROLLUP_DELTAS)?;
    }
    txn.commit()?;
    drop(dst);
    // redb fsynced the commit; make sure the file's data is durable before it is renamed.
    std::fs::File::open(tmp)?.sync_all()?;
    Ok(())
}

fn copy_table<const N: usize>(
    read: &redb::ReadTransaction,
    txn: &redb::WriteTransaction,
    def: TableDefinition<&'static [u8; N], &'static [u8]>,
) -> Result<()> {
    let mut dst = txn.open_table(def)?;
    let src = match read.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for e in src.iter()? {
        let (k, v) = e?;
        dst.insert(k.value(), v.value())?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
