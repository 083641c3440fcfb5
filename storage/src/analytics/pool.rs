//! The users-cube pass's large buffers (dense cells, sketch arena, pair lists), kept between
//! passes up to [`PASS_POOL_BYTES_MAX`].
//!
//! Why: a 30-day pass at 2,000 users x 200 tools fills about 15 MB of buffers per part. The
//! binary returns freed memory to the OS after 10 ms (`[storage] allocator_purge_delay_ms`, which
//! keeps ingest's resident set small), so without a pool every analytics page faults those
//! megabytes in again page by page and copies them each time a vector doubles: about a third of
//! the page's time. A pooled buffer is cleared (length 0) and keeps its capacity, so the next pass
//! writes into memory that is already there.

use parking_lot::Mutex;

/// Most bytes of capacity the pool keeps between passes (all sets together). A set that would
/// take the pool past it is freed instead. This is memory the appliance keeps resident once an
/// analytics page has been shown: two sets at the benchmark's cardinality (about 30 MB).
pub(super) const PASS_POOL_BYTES_MAX: usize = 48 << 20;

/// Most sets the pool keeps (a pass takes one per part).
const POOL_SETS_MAX: usize = super::users::PASS_THREADS_MAX * 2;

/// A (user id, tool id, calls, errors) row of the pair table.
pub(super) type PairRow = (u32, u32, f64, f64);
/// A (user id, tool id) pair and its (calls, errors).
pub(super) type PairCounts = ((u32, u32), (f64, f64));

/// One part's buffers. Every vector comes out of the pool empty; `cells` and `seen` keep their
/// inner vectors (empty, with their capacity) so that a tool's cells are reused too.
#[derive(Default)]
pub(super) struct Buffers {
    /// Per tool id, a (calls, errors) cell per user id.
    pub cells: Vec<Vec<[f64; 2]>>,
    /// Per tool id, a bit per user id.
    pub seen: Vec<Vec<u64>>,
    /// Encoded latency sketches, and (user id, tool id, offset) of each.
    pub sketch_bytes: Vec<u8>,
    pub sketch_refs: Vec<(u32, u32, u32)>,
    /// A blob's pair rows before they are added to the cells; a part's rows when merged.
    pub rows: Vec<PairRow>,
    /// The pairs a part summed, listed once at the end.
    pub counts: Vec<PairCounts>,
}

impl Buffers {
    /// Bytes of capacity held.
    fn bytes(&self) -> usize {
        use std::mem::size_of;
        let cells: usize = self.cells.iter().map(Vec::capacity).sum();
        let seen: usize = self.seen.iter().map(Vec::capacity).sum();
        cells * size_of::<[f64; 2]>()
            + self.cells.capacity() * size_of::<Vec<[f64; 2]>>()
            + seen * size_of::<u64>()
            + self.seen.capacity() * size_of::<Vec<u64>>()
            + self.sketch_bytes.capacity()
            + self.sketch_refs.capacity() * size_of::<(u32, u32, u32)>()
            + self.rows.capacity() * size_of::<PairRow>()
            + self.counts.capacity() * size_of::<PairCounts>()
    }

    fn clear(&mut self) {
        self.cells.iter_mut().for_each(Vec::clear);
        self.seen.iter_mut().for_each(Vec::clear);
        self.sketch_bytes.clear();
        self.sketch_refs.clear();
        self.rows.clear();
        self.counts.clear();
    }
}

struct Pool {
    sets: Vec<(usize, Buffers)>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    sets: Vec::new(),
    bytes: 0,
});

/// `n` sets of buffers, the largest first (the first part absorbs the others, so its buffers
/// grow the most); new empty sets where the pool has too few.
pub(super) fn take(n: usize) -> Vec<Buffers> {
    let mut pool = POOL.lock();
    let p = &mut *pool;
    p.sets.sort_by_key(|&(bytes, _)| std::cmp::Reverse(bytes));
    let k = n.min(p.sets.len());
    let out: Vec<Buffers> = p.sets.drain(..k).map(|(_, b)| b).collect();
    p.bytes = p.sets.iter().map(|&(bytes, _)| bytes).sum();
    drop(pool);
    let mut out = out;
    out.resize_with(n, Buffers::default);
    out
}

/// Keeps `b`, cleared, for a later pass if the pool stays within [`PASS_POOL_BYTES_MAX`] and
/// [`POOL_SETS_MAX`]; frees it otherwise.
pub(super) fn give(mut b: Buffers) {
    give_within(&mut b, PASS_POOL_BYTES_MAX);
}

fn give_within(b: &mut Buffers, bytes_max: usize) {
    let bytes = b.bytes();
    if bytes == 0 {
        return;
    }
    let mut pool = POOL.lock();
    if pool.sets.len() < POOL_SETS_MAX && pool.bytes + bytes <= bytes_max {
        b.clear();
        pool.bytes += bytes;
        pool.sets.push((bytes, std::mem::take(b)));
    }
}

/// Bytes the pool holds now.
#[cfg(test)]
pub(super) fn held_bytes() -> usize {
    POOL.lock().bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> Buffers {
        Buffers {
            cells: vec![vec![[1.0, 2.0]; 1000], vec![[3.0, 4.0]; 10]],
            seen: vec![vec![7; 16], vec![1]],
            sketch_bytes: vec![9; 500],
            sketch_refs: vec![(1, 2, 3)],
            rows: vec![(1, 2, 3.0, 4.0)],
            counts: vec![((1, 2), (3.0, 4.0))],
        }
    }

    #[test]
    fn cleared_buffers_keep_their_capacity_and_their_tools() {
        let mut b = filled();
        let bytes = b.bytes();
        assert!(bytes >= 1010 * 16 + 17 * 8 + 500);
        b.clear();
        assert_eq!(b.bytes(), bytes);
        assert_eq!(
            (b.cells.len(), b.seen.len()),
            (2, 2),
            "a tool's vectors are kept"
        );
        assert!(b.cells.iter().all(Vec::is_empty));
        assert!(b.seen.iter().all(Vec::is_empty));
        assert!(b.cells[0].capacity() >= 1000);
        assert!(b.sketch_bytes.is_empty() && b.sketch_refs.is_empty());
        assert!(b.rows.is_empty() && b.counts.is_empty());
    }

    #[test]
    fn a_set_past_the_cap_is_not_kept() {
        let mut b = filled();
        let bytes = b.bytes();
        give_within(&mut b, bytes - 1);
        assert_eq!(b.bytes(), bytes, "still the caller's: freed when dropped");
        assert_eq!(b.rows.len(), 1, "not cleared either");
        // Within the cap it moves into the pool (other tests share the pool, so no more is
        // asserted of its contents).
        give_within(&mut b, usize::MAX);
        assert!(b.bytes() == 0 || POOL.lock().sets.len() == POOL_SETS_MAX);
    }

    #[test]
    fn take_returns_the_number_asked_for_empty_and_largest_first() {
        give(filled());
        let sets = take(3);
        assert_eq!(sets.len(), 3);
        let sizes: Vec<usize> = sets.iter().map(Buffers::bytes).collect();
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        for s in &sets {
            assert!(s.sketch_bytes.is_empty() && s.rows.is_empty() && s.counts.is_empty());
            assert!(s.cells.iter().all(Vec::is_empty) && s.seen.iter().all(Vec::is_empty));
        }
        for s in sets {
            give(s);
        }
        assert!(held_bytes() <= PASS_POOL_BYTES_MAX);
    }
}
