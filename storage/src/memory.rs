//! How soon the process allocator (mimalloc) gives freed memory back to the operating system.
//!
//! The span writer builds and drops a whole group commit at a time (tens of megabytes of span
//! records, columns and rollup blobs), and the ingest queue swings between empty and full. mimalloc
//! 3 keeps freed pages resident for `purge_delay` (1 s by default) before returning them, so at
//! full ingest speed about 50 MB of freed memory is always waiting. Measured with the 2M-span
//! ingest bench (docs/benchmarks.md, "Memory while ingesting"): peak RSS 218-260 MB at 1 s,
//! 193-216 MB at 10 ms, 175 MB at 0, which costs about 15% more ingest CPU (page faults on memory
//! handed back and taken again). The binary sets the delay from its config at start-up
//! (`[storage] allocator_purge_delay_ms`, default 10).

use std::os::raw::c_long;

/// `mi_option_purge_delay` in the bundled mimalloc 3 (`mimalloc.h`, `mi_option_e`); the Rust
/// bindings name no constant for it. The test below checks the number against the option's
/// documented default, so a mimalloc upgrade that renumbers the enum fails the build's tests.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
