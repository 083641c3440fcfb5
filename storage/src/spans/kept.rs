//! The columns of pending blocks that appends wrote through this partition handle, kept decoded
//! until the merge that takes the blocks, which then neither reads nor decompresses nor decodes
//! them. The file's blocks stay the durable record: a block not kept here (written by an earlier
//! process, past the byte limit, on a finished day, or taken by a merge whose transaction failed)
//! is read back as before.

use rustc_hash::FxHashMap;

use super::cols::Cols;
use super::partition::PendingMap;

/// Decoded columns by block id. Owned by the holder of the partition's write lock.
#[derive(Default)]
pub struct KeptCols {
    /// Each block's columns and their heap bytes.
    by_block: FxHashMap<u64, (Cols<'static>, usize)>,
    bytes: usize,
    /// Blocks handed to merges from here, since this handle opened.
    taken: u64,
}

impl KeptCols {
    /// Keeps `cols`, the rows of the pending block `id` just committed, unless that would hold
    /// more than `bytes_max` heap bytes.
    pub fn keep(&mut self, id: u64, cols: Cols<'_>, bytes_max: usize) {
        if self.bytes >= bytes_max {
            return;
        }
        let cols = cols.into_owned();
        let n = cols.heap_bytes();
        if self.bytes + n > bytes_max {
            return;
        }
        self.bytes += n;
        self.by_block.insert(id, (cols, n));
    }

    /// The kept columns of block `id` (forgotten here), if it has `rows` rows.
    pub fn take(&mut self, id: u64, rows: usize) -> Option<Cols<'static>> {
        let (c, n) = self.by_block.remove(&id)?;
        self.bytes -= n;
        // Block ids are never reused, so a kept block always has its header's rows; checked
        // anyway, since the file is what counts.
        let c = (c.len() == rows).then_some(c)?;
        self.taken += 1;
        Some(c)
    }

    /// Forgets every block no longer pending (merged, purged): called after anything that removes
    /// pending blocks without taking them here.
    pub fn retain_pending(&mut self, pending: &PendingMap) {
        if self.by_block.is_empty() {
            return;
        }
        let live: rustc_hash::FxHashSet<u64> = pending.values().flatten().map(|b| b.id).collect();
        self.by_block.retain(|id, _| live.contains(id));
        self.bytes = self.by_block.values().map(|(_, n)| n).sum();
    }

    pub fn clear(&mut self) {
        self.by_block.clear();
        self.bytes = 0;
    }

    /// Heap bytes held, as counted when each block was kept.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// The kept blocks' ids.
    #[cfg(test)]
    pub fn ids(&self) -> Vec<u64> {
        self.by_block.keys().copied().collect()
    }

    /// The heap bytes of the kept columns, counted now.
    #[cfg(test)]
    pub fn bytes_now(&self) -> usize {
        self.by_block.values().map(|(c, _)| c.heap_bytes()).sum()
    }
}
