//! Per-thread pools of spare vectors for the span writer's per-block work: the columns it builds,
//! gathers and encodes for every block are a few megabytes each time, and with the allocator's
//! short purge delay (`memory`) a fresh vector of that size is a page fault per 4 KB touched
//! (about 3 µs each on this VM; `Cols::gather` alone was 39% of the writer's faults,
//! docs/benchmarks.md, "Page faults on the writer's per-block vectors").
//!
//! Scans use them too: a scan decodes block after block into vectors of about the same sizes,
//! and `ScanBlock` gives its vectors back on drop (an export's page faults fell by about half,
//! docs/benchmarks.md, "Strings checked a word at a time, varints gathered by shifts, pools for
//! the scan's blocks").
//!
//! Only threads that call [`enable_on_this_thread`] (the span writer, benches), or hold a
//! [`scope`] (a scan, for its length: it runs on a shared thread that must not keep vectors
//! afterwards), keep vectors; elsewhere [`take`] is `Vec::with_capacity` and [`give`] drops. A
//! thread keeps at most [`POOL_BYTES_MAX_PER_THREAD`] bytes of spare capacity, in vectors of at
//! least [`POOL_VEC_BYTES_MIN`] bytes (smaller ones come from the allocator's small pages, which
//! stay resident anyway).

use std::cell::{Cell, RefCell};
use std::mem::size_of;

/// Most bytes of spare vector capacity one thread keeps across all its pools: about twice what
/// one merge into a full block of 8,192 rows uses.
pub const POOL_BYTES_MAX_PER_THREAD: usize = 12 << 20;
/// Vectors of fewer bytes than this are neither kept nor handed out.
pub const POOL_VEC_BYTES_MIN: usize = 16 << 10;
/// Most vectors one pool (element type) keeps.
const POOL_VECS_MAX: usize = 48;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static POOLED_BYTES: Cell<usize> = const { Cell::new(0) };
}

/// Lets this thread keep the vectors given back (the span writer's thread calls this once).
pub fn enable_on_this_thread() {
    ENABLED.with(|e| e.set(true));
}

/// Pools enabled on this thread for as long as the returned guard lives (a scan on a thread of a
/// shared pool, which must not keep vectors afterwards); dropping it drops what they keep, unless
/// pools were already enabled when it was made.
pub fn scope() -> Scope {
    let was_enabled = ENABLED.with(|e| e.replace(true));
    Scope { was_enabled }
}

/// See [`scope`].
#[must_use]
pub struct Scope {
    was_enabled: bool,
}

impl Drop for Scope {
    fn drop(&mut self) {
        if !self.was_enabled {
            ENABLED.with(|e| e.set(false));
            clear_pools();
        }
    }
}

/// Bytes of spare capacity this thread holds now.
pub fn pooled_bytes() -> usize {
    POOLED_BYTES.with(Cell::get)
}

/// An element type with a pool per thread. Only plain `Copy` data: a pooled vector is cleared,
/// never dropped element by element.
pub trait Pooled: Copy + 'static {
    /// Runs `f` on this thread's pool; `None` once the thread is tearing its pools down.
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> Option<R>;
}

macro_rules! pooled {
    ($($t:ty => $pool:ident),* $(,)?) => {
        $(
            thread_local! {
                static $pool: RefCell<Vec<Vec<$t>>> = const { RefCell::new(Vec::new()) };
            }
            impl Pooled for $t {
                fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> Option<R> {
                    $pool.try_with(|p| f(&mut p.borrow_mut())).ok()
                }
            }
        )*

        /// Drops every vector this thread's pools keep.
        fn clear_pools() {
            $(
                let _ = $pool.try_with(|p| p.borrow_mut().clear());
            )*
            POOLED_BYTES.with(|b| b.set(0));
        }
    };
}

pooled! {
    u8 => POOL_U8,
    [u8; 1] => POOL_ID1,
    u32 => POOL_U32,
    u64 => POOL_U64,
    usize => POOL_USIZE,
    [u8; 8] => POOL_ID8,
    [u8; 16] => POOL_ID16,
    [u64; 4] => POOL_U64X4,
    [u32; 4] => POOL_U32X4,
    (u32, u32) => POOL_PAIRS,
    Option<u64> => POOL_OPT_U64,
    (u64, [u8; 8], [u8; 16], u32, u32) => POOL_ORDER_KEYS,
}

/// An empty vector with room for at least `cap` elements: the smallest pooled one that fits, or
/// a new one.
pub fn take<T: Pooled>(cap: usize) -> Vec<T> {
    if cap.saturating_mul(size_of::<T>()) >= POOL_VEC_BYTES_MIN && ENABLED.with(Cell::get) {
        let found = T::with_pool(|p| best_fit(p, cap)).flatten();
        if let Some(v) = found {
            POOLED_BYTES.with(|b| b.set(b.get() - bytes_of(&v)));
            return v;
        }
    }
    Vec::with_capacity(cap)
}

/// Removes from `spare` and returns the vector with the least capacity of at least `cap` (the
/// search [`take`] makes; other pools of spare vectors use it too).
pub fn best_fit<T>(spare: &mut Vec<Vec<T>>, cap: usize) -> Option<Vec<T>> {
    let i = spare
        .iter()
        .enumerate()
        .filter(|(_, v)| v.capacity() >= cap)
        .min_by_key(|(_, v)| v.capacity())
        .map(|(i, _)| i)?;
    Some(spare.swap_remove(i))
}

/// Keeps `v`'s allocation for a later [`take`] on this thread, within the limits; else drops it.
pub fn give<T: Pooled>(mut v: Vec<T>) {
    let bytes = bytes_of(&v);
    if bytes < POOL_VEC_BYTES_MIN || !ENABLED.with(Cell::get) {
        return;
    }
    if pooled_bytes() + bytes > POOL_BYTES_MAX_PER_THREAD {
        return;
    }
    v.clear();
    let kept = T::with_pool(|p| {
        if p.len() >= POOL_VECS_MAX {
            return false;
        }
        p.push(v);
        true
    })
    .unwrap_or(false);
    if kept {
        POOLED_BYTES.with(|b| b.set(b.get() + bytes));
    }
}

fn bytes_of<T>(v: &Vec<T>) -> usize {
    v.capacity() * size_of::<T>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_vectors_are_reused_and_bounded() {
        // A fresh thread: pooling is per thread and off until enabled.
        std::thread::spawn(|| {
            give(take::<u64>(10_000));
            assert_eq!(pooled_bytes(), 0, "off until enabled");
            enable_on_this_thread();
            let mut v: Vec<u64> = take(10_000);
            v.extend(0..10_000u64);
            let at2 = v.as_ptr();
            give(v);
            assert!(pooled_bytes() >= 80_000);
            let again: Vec<u64> = take(5_000);
            assert_eq!(again.as_ptr(), at2, "the pooled allocation comes back");
            assert!(again.is_empty() && again.capacity() >= 10_000);
            assert_eq!(pooled_bytes(), 0);
            // Too small to pool, or too big for the thread's budget: dropped.
            give(Vec::<u8>::with_capacity(100));
            give(Vec::<u8>::with_capacity(POOL_BYTES_MAX_PER_THREAD + 1));
            assert_eq!(pooled_bytes(), 0);
            // A larger request than anything pooled gets a new vector.
            give(again);
            let big: Vec<u64> = take(1_000_000);
            assert!(big.capacity() >= 1_000_000);
            assert!(pooled_bytes() >= 80_000, "the small one stays pooled");
            // At most POOL_VECS_MAX vectors per type.
            for _ in 0..POOL_VECS_MAX + 5 {
                give(Vec::<u32>::with_capacity(8_192));
            }
            let n = u32::with_pool(|p| p.len()).unwrap();
            assert_eq!(n, POOL_VECS_MAX);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_scope_keeps_vectors_only_while_it_lives() {
        std::thread::spawn(|| {
            {
                let _pools = scope();
                give(Vec::<u64>::with_capacity(10_000));
                give(Vec::<[u32; 4]>::with_capacity(10_000));
                assert!(pooled_bytes() >= 240_000);
            }
            assert_eq!(pooled_bytes(), 0, "dropped with the scope");
            assert_eq!(u64::with_pool(|p| p.len()), Some(0));
            give(Vec::<u64>::with_capacity(10_000));
            assert_eq!(pooled_bytes(), 0, "off again");
            // Inside a thread that pools anyway, a scope leaves its pools alone.
            enable_on_this_thread();
            give(Vec::<u64>::with_capacity(10_000));
            drop(scope());
            assert!(pooled_bytes() >= 80_000);
        })
        .join()
        .unwrap();
    }
}
