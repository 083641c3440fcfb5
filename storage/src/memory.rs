//! The process allocator (mimalloc, entered through [`Mimalloc`]) and how soon it gives freed
//! memory back to the operating system.
//!
//! The span writer builds and drops a whole group commit at a time (tens of megabytes of span
//! records, columns and rollup blobs), and the ingest queue swings between empty and full. mimalloc
//! 3 keeps freed pages resident for `purge_delay` (1 s by default) before returning them, so at
//! full ingest speed about 50 MB of freed memory is always waiting. Measured with the 2M-span
//! ingest bench (docs/benchmarks.md, "Memory while ingesting" and "The purge delay, now that
//! memory has room"): with the search indexer's document leak fixed, peak RSS is 114-127 MB at
//! 10 ms over 2M spans and about 148 MB over 10M or 20M, against 169-184 MB (2M) and 241 MB (10M)
//! at 1 s; 250 ms takes 10-15% off ingest CPU in the machine's fast state but peaks at 190 MB over
//! 10M spans. Shorter delays cost CPU in page faults on memory handed back and taken again (0.24
//! minor faults per span at 10 ms, 0.04 at 1 s). The binary sets the delay from its config at
//! start-up (`[storage] allocator_purge_delay_ms`, default 10).
//!
//! It also turns transparent huge pages off for the process (`[storage] allocator_huge_pages`,
//! default false). mimalloc asks for huge pages on its arenas; with the short purge delay, memory
//! it hands back is faulted in again as whole 2 MB pages, each zeroed at once (`clear_page_erms`
//! under `do_huge_pmd_anonymous_page` was about 8% of ingest CPU in `perf`), and with huge pages
//! allowed mimalloc purges only whole 2 MB ranges (its `minimal_purge_size`). Without them, peak
//! RSS while ingesting fell by 25-40 MB at no measurable CPU cost (docs/benchmarks.md, "Ingest
//! CPU per span, continued").

use std::alloc::{GlobalAlloc, Layout};
use std::os::raw::{c_long, c_void};

/// The process's allocator: mimalloc, entered through its plain functions when the alignment asked
/// for is one every mimalloc block has anyway.
///
/// Why not `mimalloc::MiMalloc`: it sends every allocation through `mi_malloc_aligned`, whose
/// bundled mimalloc 3 takes its fast path only up to 1 KiB. Larger blocks went through the
/// over-allocating aligned path (about 150-200 instructions each instead of a plain allocation's
/// few dozen), and every call paid an alignment check: about 50 instructions per allocation on
/// average against 32 through `mi_malloc` (docs/benchmarks.md, "The machine's windows, checked
/// against stop 24's binary").
pub struct Mimalloc;

/// Every mimalloc block is aligned to at least a word: its size classes are whole words, and its
/// own `mi_realloc_aligned` takes the plain path for alignments up to `sizeof(uintptr_t)`.
const MIMALLOC_ALIGN_MIN: usize = std::mem::size_of::<usize>();

// SAFETY: each method forwards to mimalloc with the layout's size. For alignments up to
// MIMALLOC_ALIGN_MIN the plain functions already return blocks that aligned (see the constant);
// larger ones go through mimalloc's aligned functions, which honour any power-of-two alignment
// (`Layout` guarantees a power of two). `mi_free` and `mi_realloc` accept blocks from either kind
// of call. Null is returned on exhaustion, as `GlobalAlloc` asks.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIMALLOC_ALIGN_MIN {
            // SAFETY: a plain allocation of `size` bytes; any size is accepted.
            unsafe { libmimalloc_sys::mi_malloc(layout.size()) as *mut u8 }
        } else {
            // SAFETY: `align` is a power of two (a `Layout` invariant).
            unsafe { libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIMALLOC_ALIGN_MIN {
            // SAFETY: as in `alloc`, zeroed.
            unsafe { libmimalloc_sys::mi_zalloc(layout.size()) as *mut u8 }
        } else {
            // SAFETY: as in `alloc`.
            unsafe { libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned (the `GlobalAlloc` contract),
        // i.e. a mimalloc block, which `mi_free` takes whatever call made it.
        unsafe { libmimalloc_sys::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MIMALLOC_ALIGN_MIN {
            // SAFETY: `ptr` is a mimalloc block (the contract); the result is word-aligned.
            unsafe { libmimalloc_sys::mi_realloc(ptr as *mut c_void, new_size) as *mut u8 }
        } else {
            // SAFETY: as above, keeping the layout's (power-of-two) alignment.
            unsafe {
                libmimalloc_sys::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align())
                    as *mut u8
            }
        }
    }
}

/// `mi_option_purge_delay` in the bundled mimalloc 3 (`mimalloc.h`, `mi_option_e`); the Rust
/// bindings name no constant for it. The test below checks the number against the option's
/// documented default, so a mimalloc upgrade that renumbers the enum fails the build's tests.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// `mi_option_allow_thp` in the same enum (checked like the one above).
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// mimalloc's default purge delay, in milliseconds.
pub const ALLOCATOR_PURGE_DELAY_MS_DEFAULT: u32 = 1000;

/// Sets how many milliseconds freed memory stays with the allocator before it is returned to the
/// OS (0: at once). Affects the process's global mimalloc; harmless when another allocator is the
/// global one (the option is then simply unused).
pub fn set_allocator_purge_delay_ms(ms: u32) {
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; it takes no pointers,
    // may be called from any thread at any time, and the option number is checked by the test.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, c_long::from(ms)) }
}

/// The allocator's current purge delay in milliseconds.
pub fn allocator_purge_delay_ms() -> c_long {
    // SAFETY: `mi_option_get` reads an integer from mimalloc's option table; no pointers.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
}

/// Allows or forbids transparent huge pages for the whole process: mimalloc stops (or resumes)
/// asking for them on new memory, and `prctl(PR_SET_THP_DISABLE)` makes the kernel back no
/// mapping of the process with them, including memory mimalloc reserved before this call.
pub fn set_transparent_huge_pages(allow: bool) -> std::io::Result<()> {
    // SAFETY: as in `set_allocator_purge_delay_ms`: an integer option, no pointers.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, c_long::from(allow)) }
    let disable: libc::c_ulong = if allow { 0 } else { 1 };
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument (the unused ones must be 0); it only
    // sets a flag on this process's memory descriptor and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, disable, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the kernel may back this process's memory with transparent huge pages.
pub fn transparent_huge_pages() -> std::io::Result<bool> {
    // SAFETY: PR_GET_THP_DISABLE takes no arguments (they must be 0) and returns the flag.
    let r = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every alignment from 1 to 4 KiB, with sizes below, at and past it and not multiples of it
    /// (a `Layout` allows those), many blocks alive at once so some land at odd offsets: each
    /// block is aligned, writable, zeroed when asked, and keeps its bytes through growing and
    /// shrinking reallocations.
    #[test]
    fn blocks_are_aligned_zeroed_and_kept_through_realloc() {
        let a = Mimalloc;
        let mut live: Vec<(*mut u8, Layout)> = Vec::new();
        for shift in 0..=12 {
            let align = 1usize << shift;
            for size in [
                1,
                3,
                7,
                8,
                9,
                24,
                40,
                1000,
                1025,
                5000,
                70_000,
                align,
                align + 8,
            ] {
                let layout = Layout::from_size_align(size, align).unwrap();
                for round in 0..8u8 {
                    let zeroed = round % 2 == 0;
                    // SAFETY: non-zero size; the block is freed below with the same layout.
                    let p = unsafe {
                        if zeroed {
                            a.alloc_zeroed(layout)
                        } else {
                            a.alloc(layout)
                        }
                    };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    // SAFETY: `p` holds `size` bytes.
                    let bytes = unsafe { std::slice::from_raw_parts_mut(p, size) };
                    if zeroed {
                        assert!(bytes.iter().all(|&b| b == 0));
                    }
                    bytes.fill(round.wrapping_add(shift as u8));
                    live.push((p, layout));
                }
            }
        }
        for (p, layout) in live {
            let fill = {
                // SAFETY: `p` holds `layout.size()` bytes, written above.
                let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
                assert!(bytes.iter().all(|&b| b == bytes[0]));
                bytes[0]
            };
            let mut cur = (p, layout);
            for new_size in [layout.size() * 3 + 5, layout.size().div_ceil(2)] {
                let kept = cur.1.size().min(new_size);
                // SAFETY: `cur` is a live block of this allocator with its layout; new_size > 0.
                let q = unsafe { a.realloc(cur.0, cur.1, new_size) };
                assert!(!q.is_null());
                assert_eq!(q as usize % layout.align(), 0);
                // SAFETY: the first `kept` bytes were carried over.
                let bytes = unsafe { std::slice::from_raw_parts(q, kept) };
                assert!(bytes.iter().all(|&b| b == fill));
                cur = (
                    q,
                    Layout::from_size_align(new_size, layout.align()).unwrap(),
                );
            }
            // SAFETY: `cur` is live, with its layout.
            unsafe { a.dealloc(cur.0, cur.1) };
        }
    }

    #[test]
    fn purge_delay_option_number_is_right() {
        // Unless the environment overrides it, the option starts at mimalloc's documented default:
        // a renumbered enum would read some other option (show_stats 0, verbose 0, ...).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(
                allocator_purge_delay_ms(),
                c_long::from(ALLOCATOR_PURGE_DELAY_MS_DEFAULT)
            );
        }
        set_allocator_purge_delay_ms(7);
        assert_eq!(allocator_purge_delay_ms(), 7);
        set_allocator_purge_delay_ms(ALLOCATOR_PURGE_DELAY_MS_DEFAULT);
    }

    #[test]
    fn allow_thp_option_number_is_right_and_huge_pages_toggle() {
        // One test, as the flags are process-wide. mimalloc's documented default for `allow_thp`
        // on Linux is 1; its neighbours in the enum default to 16
        // (`page_cross_thread_max_reclaim`) and 0 (`minimal_purge_size`).
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            // SAFETY: reads an integer option.
            assert_eq!(
                unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP) },
                1
            );
        }
        set_transparent_huge_pages(false).unwrap();
        assert!(!transparent_huge_pages().unwrap());
        // SAFETY: reads an integer option.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP) },
            0
        );
        set_transparent_huge_pages(true).unwrap();
        assert!(transparent_huge_pages().unwrap());
    }
}
