//! The set of day partitions of a store directory and the bounded map of open redb handles.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::partition::{file_name, parse_file_name, Partition};
use super::PartitionInfo;
use crate::error::Result;

/// An open partition plus the flag that `drop_partition` sets so a writer that obtained the
/// handle before the drop does not write into a deleted file.
pub struct OpenPartition {
    pub part: Partition,
    pub dropped: AtomicBool,
}

impl OpenPartition {
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
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
    open_max: usize,
    inner: Mutex<Inner>,
}

impl Registry {
    pub fn open(dir: &Path, cache_bytes: usize, open_max: usize) -> Result<Registry> {
        std::fs::create_dir_all(dir)?;
        let mut days = BTreeSet::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(day) = entry?.file_name().to_str().and_then(parse_file_name) {
                days.insert(day);
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
            open_max,
            inner: Mutex::new(inner),
        })
    }

    /// Days present, newest first.
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
        let part = Partition::open(&self.dir, day, self.cache_bytes, create)?;
        let p = Arc::new(OpenPartition {
            part,
            dropped: AtomicBool::new(false),
        });
        g.days.insert(day);
        g.open.insert(day, (p.clone(), tick));
        evict_idle(&mut g.open, self.open_max);
        Ok(Some(p))
    }

    pub fn infos(&self) -> Result<Vec<PartitionInfo>> {
        let days: Vec<u32> = self.inner.lock().days.iter().copied().collect();
        let mut out = Vec::with_capacity(days.len());
        for day in days {
            match std::fs::metadata(self.dir.join(file_name(day))) {
                Ok(m) => out.push(PartitionInfo {
                    day,
                    bytes: m.len(),
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
            let _w = p.part.write_lock.lock();
            p.dropped.store(true, Ordering::Release);
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
