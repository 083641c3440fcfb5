//! Owns `DistinctSketch`: the K-minimum-values distinct counter kept per rollup row, the stable
//! string hash it counts, its byte encoding, and `DistinctAccumulator`, the union queries use.
//!
//! # Estimator
//!
//! Values are hashed to uniform 64-bit integers ([`hash_str`]) and the sketch keeps the
//! [`KMV_K`] = 1024 smallest distinct hashes. With fewer than K distinct hashes it holds all of
//! them and the count is exact. Once full, with `h_K` the largest kept (the K-th smallest seen),
//! the estimate is `(K - 1) / (h_K / 2^64)`, the unbiased KMV estimator. Its relative standard
//! error is about `1 / sqrt(K - 2)` = 3.1% for K = 1024 (so 4 standard errors is about 12.5%).
//! A full sketch never reports fewer than K, since at least K distinct hashes were seen.
//!
//! The union of two sketches is the K smallest of the union of their hashes, which is exactly
//! the sketch of the union of their inputs; so rollups merge without loss beyond the estimator's.
//!
//! # Hash
//!
//! [`hash_str`] is stored on disk (inside sketches), so it is defined here bit for bit and must
//! never change:
//!
//! 1. FNV-1a 64 over the UTF-8 bytes: start `h = 0xcbf29ce484222325` (offset basis); for each byte
//!    `h = (h ^ byte) * 0x00000100000001b3` (FNV prime), wrapping.
//! 2. The splitmix64 finalizer, because FNV-1a's high bits are poorly mixed for short, similar
//!    keys and KMV needs the whole 64-bit range uniform:
//!    `h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9;`
//!    `h = (h ^ (h >> 27)) * 0x94d049bb133111eb;`
//!    `h = h ^ (h >> 31)` (wrapping multiplications).
//!
//! Examples: `hash_str("") = 0xf52a15e9a9b5e89b`, `hash_str("a") = 0x02c0bdbf481420f8`.
//!
//! # Encoding
//!
//! Integers are unsigned LEB128 varints: 7 bits per byte, least significant group first, the high
//! bit (0x80) set on every byte except the last, at most 10 bytes (the 10th may only be 0x00 or
//! 0x01).
//!
//! ```text
//! varint(n)          number of hashes, 0..=1024
//! n times, hashes strictly ascending:
//!   varint(delta)    hash minus the previous hash; for the first hash the hash itself;
//!                    later deltas are >= 1 and the running sum must not exceed u64::MAX
//! ```
//!
//! Example: hashes {5, 300} encode to `02 05 a7 02`. A full sketch over n distinct values has
//! deltas around `2^64 / n`, so `ceil((64 - log2(n)) / 7)` bytes per hash: 8 KiB for n below about
//! 32,000, 7 KiB up to about 4 million. Rows with few distinct values stay small.
//!
//! Decoding consumes exactly one sketch from the front of the input; on error the input is left
//! unchanged and nothing is merged. Decoding never panics.

use std::fmt;

use crate::codec::put_varint;

/// Number of minimum hashes kept.
pub const KMV_K: usize = 1024;

/// 2^64 as f64, the size of the hash space.
const HASH_SPACE: f64 = 18_446_744_073_709_551_616.0;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// [`DistinctSketch::merge`] inserts the other sketch's hashes one by one when it has fewer than
/// 1/this of `self`'s: each insert is a binary search and one `memmove` of a tail.
const MERGE_BY_INSERT_RATIO: usize = 64;
/// ... and always when the other sketch has at most this many hashes.
const MERGE_BY_INSERT_MAX: usize = 16;

/// The accumulator sorts its buffer when it reaches this size; 4K amortises each sort over at
/// least 3K inserts.
const COMPACT_AT: usize = 4 * KMV_K;

/// Error from decoding a malformed encoded sketch. Displays as the bare reason: callers add the
/// context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DecodeError {}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

fn splitmix64_finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Stable 64-bit hash of a string for distinct counting (FNV-1a 64 + splitmix64 finalizer; see
/// the module doc). Stored on disk: never change it.
pub fn hash_str(s: &str) -> u64 {
    splitmix64_finalize(fnv1a64(s.as_bytes()))
}

/// The varint reader of `sketch`, with this module's error type.
fn get_varint(input: &mut &[u8]) -> Result<u64, DecodeError> {
    super::sketch::get_varint(input).map_err(|e| DecodeError(e.0))
}

/// Parses one encoded sketch, calling `visit(hash)` for each hash in ascending order.
/// `input` advances only on success.
fn walk(input: &mut &[u8], mut visit: impl FnMut(u64)) -> Result<(), DecodeError> {
    let mut buf = *input;
    let n = get_varint(&mut buf)?;
    if n > KMV_K as u64 {
        return Err(DecodeError("more than KMV_K hashes"));
    }
    // Each hash takes at least one byte: reject impossible counts before anyone allocates for them.
    if n > buf.len() as u64 {
        return Err(DecodeError("truncated hashes"));
    }
    let mut prev: Option<u64> = None;
    for _ in 0..n {
        let delta = get_varint(&mut buf)?;
        let h = match prev {
            None => delta,
            Some(_) if delta == 0 => return Err(DecodeError("hashes not strictly ascending")),
            Some(p) => p
                .checked_add(delta)
                .ok_or(DecodeError("hash overflows u64"))?,
        };
        visit(h);
        prev = Some(h);
    }
    *input = buf;
    Ok(())
}

/// Skips one encoded sketch at the front of `input`, validating it like [`DistinctSketch::decode`].
pub fn skip_encoded(input: &mut &[u8]) -> Result<(), DecodeError> {
    walk(input, |_| {})
}

/// Estimate from the sorted, deduplicated K smallest hashes.
fn estimate_sorted(hashes: &[u64]) -> u64 {
    match hashes.get(KMV_K - 1) {
        None => hashes.len() as u64,
        Some(&kth) => {
            let est = (KMV_K - 1) as f64 / (kth as f64 / HASH_SPACE);
            // `as` saturates: kth == 0 cannot happen with K distinct hashes, but would give
            // u64::MAX rather than a panic.
            (est.round() as u64).max(KMV_K as u64)
        }
    }
}

/// K-minimum-values distinct counter; see the module doc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DistinctSketch {
    /// Sorted ascending, no duplicates, at most `KMV_K`.
    hashes: Vec<u64>,
}

impl DistinctSketch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one hash (from [`hash_str`] or any uniform 64-bit hash). O(1) when the sketch is full
    /// and `h` is not below the current maximum (the common case for large inputs); otherwise a
    /// binary search (O(log K)) plus, when `h` is kept, a shift of the tail of an at most 8 KiB
    /// array (one `memmove`, chosen over a tree to keep the sorted Vec the encoding walks).
    pub fn insert(&mut self, h: u64) {
        let full = self.hashes.len() >= KMV_K;
        match self.hashes.last() {
            Some(&max) if full && h >= max => return,
            Some(&max) if h > max => {
                self.hashes.push(h);
                return;
            }
            None => {
                self.hashes.push(h);
                return;
            }
            Some(_) => {}
        }
        if let Err(pos) = self.hashes.binary_search(&h) {
            if full {
                // h < max, so pos < K and stays valid after dropping the max.
                self.hashes.pop();
            }
            self.hashes.insert(pos, h);
        }
    }

    /// Union: afterwards `self` is the sketch of both inputs together.
    pub fn merge(&mut self, other: &DistinctSketch) {
        if other.hashes.is_empty() {
            return;
        }
        // A few hashes (a batch's delta row, the common case in compaction), or few against many:
        // inserting each one shifts part of `self` at most once (and costs nothing once `self` is
        // full and the hash is above its maximum), where the full merge below allocates a new
        // vector and copies all of `self` into it.
        let n = other.hashes.len();
        if n <= MERGE_BY_INSERT_MAX || n * MERGE_BY_INSERT_RATIO < self.hashes.len() {
            other.hashes.iter().for_each(|&h| self.insert(h));
            return;
        }
        let (a, b) = (&self.hashes, &other.hashes);
        let mut out = Vec::with_capacity((a.len() + b.len()).min(KMV_K));
        let (mut i, mut j) = (0, 0);
        while out.len() < KMV_K && (i < a.len() || j < b.len()) {
            let next = match (a.get(i), b.get(j)) {
                (Some(&x), Some(&y)) if x < y => {
                    i += 1;
                    x
                }
                (Some(&x), Some(&y)) if x > y => {
                    j += 1;
                    y
                }
                (Some(&x), Some(_)) => {
                    i += 1;
                    j += 1;
                    x
                }
                (Some(&x), None) => {
                    i += 1;
                    x
                }
                (None, Some(&y)) => {
                    j += 1;
                    y
                }
                (None, None) => break,
            };
            out.push(next);
        }
        self.hashes = out;
    }

    /// Exact count below K distinct hashes, otherwise the KMV estimate (module doc).
    pub fn estimate(&self) -> u64 {
        estimate_sorted(&self.hashes)
    }

    /// Number of hashes kept (at most `KMV_K`), not the estimate.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Appends the encoding (module doc) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.hashes.len() as u64);
        let mut prev = 0u64;
        for &h in &self.hashes {
            put_varint(out, h - prev);
            prev = h;
        }
    }

    /// Decodes one sketch from the front of `input` and advances past it (unchanged on error).
    pub fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
        let mut hashes = Vec::new();
        // Exact capacity (sketches are kept per row), bounded so a corrupt count cannot
        // over-allocate.
        let mut peek = *input;
        if let Ok(n) = get_varint(&mut peek) {
            hashes.reserve_exact(n.min(KMV_K as u64).min(peek.len() as u64) as usize);
        }
        walk(input, |h| hashes.push(h))?;
        Ok(Self { hashes })
    }

    /// [`DistinctSketch::decode`] into `self`, reusing its allocation (for scratch sketches that
    /// are merged elsewhere right after). On error `self` holds part of the input.
    pub fn decode_into(&mut self, input: &mut &[u8]) -> Result<(), DecodeError> {
        self.hashes.clear();
        walk(input, |h| self.hashes.push(h))
    }
}

/// Fast union of many (encoded) sketches for queries: keeps the K smallest seen with a threshold
/// so most hashes are rejected in O(1).
///
/// Candidates are appended to a buffer and the buffer is sorted, deduplicated and cut to K
/// whenever it reaches 4K entries; once K distinct hashes are known, anything at or above the
/// K-th smallest can never be kept and is rejected with one comparison.
#[derive(Clone, Debug, Default)]
pub struct DistinctAccumulator {
    /// Candidates, unsorted past the last compaction.
    buf: Vec<u64>,
    /// K-th smallest distinct hash known so far, once K are known.
    threshold: Option<u64>,
}

impl DistinctAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, h: u64) {
        if self.threshold.is_some_and(|t| h >= t) {
            return;
        }
        self.buf.push(h);
        if self.buf.len() >= COMPACT_AT {
            self.compact();
        }
    }

    pub fn add_sketch(&mut self, s: &DistinctSketch) {
        for &h in &s.hashes {
            // Ascending: once one hash is rejected, all the rest are too.
            if self.threshold.is_some_and(|t| h >= t) {
                break;
            }
            self.buf.push(h);
        }
        self.maybe_compact();
    }

    /// Merges an encoded sketch straight from bytes, consuming it like [`DistinctSketch::decode`].
    /// On error nothing is merged and `input` is unchanged.
    pub fn add_encoded(&mut self, input: &mut &[u8]) -> Result<(), DecodeError> {
        // No compaction until the whole sketch is validated, so an error can be undone by
        // truncating.
        let start = self.buf.len();
        let threshold = self.threshold;
        let buf = &mut self.buf;
        let result = walk(input, |h| {
            if threshold.is_none_or(|t| h < t) {
                buf.push(h);
            }
        });
        if result.is_err() {
            self.buf.truncate(start);
        }
        self.maybe_compact();
        result
    }

    /// Same value as [`DistinctSketch::estimate`] on the union of everything added.
    pub fn estimate(&self) -> u64 {
        estimate_sorted(&self.sorted())
    }

    /// The union as a sketch (equal to merging all added sketches).
    pub fn to_sketch(&self) -> DistinctSketch {
        DistinctSketch {
            hashes: self.sorted(),
        }
    }

    /// Adds the union into `sketch` and leaves the accumulator empty.
    pub fn settle_into(&mut self, sketch: &mut DistinctSketch) {
        if self.buf.is_empty() {
            return;
        }
        let mut hashes = std::mem::take(&mut self.buf);
        self.threshold = None;
        sort_dedup_truncate(&mut hashes);
        if sketch.is_empty() {
            sketch.hashes = hashes;
        } else {
            sketch.merge(&DistinctSketch { hashes });
        }
    }

    fn sorted(&self) -> Vec<u64> {
        let mut v = self.buf.clone();
        sort_dedup_truncate(&mut v);
        v
    }

    fn maybe_compact(&mut self) {
        if self.buf.len() >= COMPACT_AT {
            self.compact();
        }
    }

    fn compact(&mut self) {
        sort_dedup_truncate(&mut self.buf);
        if let Some(&kth) = self.buf.get(KMV_K - 1) {
            self.threshold = Some(kth);
        }
    }
}

fn sort_dedup_truncate(v: &mut Vec<u64>) {
    v.sort_unstable();
    v.dedup();
    v.truncate(KMV_K);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(s: &DistinctSketch) -> Vec<u8> {
        let mut out = Vec::new();
        s.encode(&mut out);
        out
    }

    fn sketch_of(hashes: &[u64]) -> DistinctSketch {
        let mut s = DistinctSketch::new();
        for &h in hashes {
            s.insert(h);
        }
        s
    }

    /// The K smallest distinct values, computed the obvious way.
    fn reference(hashes: &[u64]) -> Vec<u64> {
        let mut v = hashes.to_vec();
        sort_dedup_truncate(&mut v);
        v
    }

    /// Hash lists with duplicates, clustered small values, and full-range values, long enough to
    /// fill the sketch.
    fn hashes_strategy() -> impl Strategy<Value = Vec<u64>> {
        prop_oneof![
            prop::collection::vec(any::<u64>(), 0..3000),
            prop::collection::vec(0u64..2000, 0..3000),
            prop::collection::vec(prop_oneof![0u64..50, any::<u64>()], 0..200),
        ]
    }

    #[test]
    fn hash_is_frozen() {
        // Published FNV-1a 64 test vectors and the first splitmix64 output for seed 0.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        assert_eq!(splitmix64_finalize(0x9e3779b97f4a7c15), 0xe220a8397b1dcdaf);
        assert_eq!(hash_str(""), 0xf52a15e9a9b5e89b);
        assert_eq!(hash_str("a"), 0x02c0bdbf481420f8);
        assert_eq!(hash_str("foobar"), 0x404da9e3b74078c2);
        assert_eq!(hash_str("GET /api/users"), 0x27320d1390c9a224);
    }

    #[test]
    fn golden_encoding() {
        assert_eq!(
            encoded(&sketch_of(&[300, 5, 5])),
            vec![0x02, 0x05, 0xa7, 0x02]
        );
        assert_eq!(encoded(&DistinctSketch::new()), vec![0x00]);
    }

    #[test]
    fn exact_below_k() {
        for n in [0usize, 1, 10, 500, KMV_K - 1] {
            let mut s = DistinctSketch::new();
            for round in 0..3 {
                for i in 0..n {
                    s.insert(hash_str(&format!("user-{i}")));
                }
                assert_eq!(s.estimate(), n as u64, "n {n} round {round}");
            }
            assert_eq!(s.len(), n);
            assert_eq!(s.is_empty(), n == 0);
        }
    }

    #[test]
    fn estimate_within_four_standard_errors() {
        let tolerance = 4.0 / ((KMV_K - 2) as f64).sqrt();
        for prefix in ["user-", "trace/", ""] {
            for n in [2000u64, 10_000, 100_000] {
                let mut s = DistinctSketch::new();
                let mut acc = DistinctAccumulator::new();
                for i in 0..n {
                    let h = hash_str(&format!("{prefix}{i}"));
                    s.insert(h);
                    acc.insert(h);
                    s.insert(h); // duplicates never count
                }
                let est = s.estimate();
                let err = (est as f64 - n as f64).abs() / n as f64;
                assert!(err <= tolerance, "{prefix} n {n} est {est} err {err}");
                assert_eq!(acc.estimate(), est);
            }
        }
    }

    #[test]
    fn full_sketch_reports_at_least_k() {
        let top: Vec<u64> = (0..KMV_K as u64).map(|i| u64::MAX - i).collect();
        assert_eq!(sketch_of(&top).estimate(), KMV_K as u64);
    }

    #[test]
    fn decode_rejects_malformed() {
        let too_many = {
            let mut v = Vec::new();
            put_varint(&mut v, KMV_K as u64 + 1);
            v.extend(std::iter::repeat_n(1u8, KMV_K + 1));
            v
        };
        let cases: &[&[u8]] = &[
            &[],
            &[0x02, 0x05],
            &[0x02, 0x05, 0x00], // not ascending
            &[
                0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01,
            ], // overflow
            &[
                0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ], // varint too big
            &[0xff, 0xff, 0x03],
            &too_many,
        ];
        for &case in cases {
            let mut input = case;
            assert!(DistinctSketch::decode(&mut input).is_err(), "{case:?}");
            assert_eq!(input, case, "input untouched on error");
            assert!(skip_encoded(&mut input).is_err());
            let mut acc = DistinctAccumulator::new();
            acc.insert(7);
            assert!(acc.add_encoded(&mut input).is_err());
            assert_eq!(acc.to_sketch(), sketch_of(&[7]), "nothing merged on error");
        }
        let mut max = &[
            0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ][..];
        assert_eq!(DistinctSketch::decode(&mut max), Ok(sketch_of(&[u64::MAX])));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Hashes gathered in an accumulator and settled into a sketch (empty or not) make the
        /// sketch that inserting them one by one makes, past `KMV_K` too.
        #[test]
        fn settled_hashes_are_the_hashes_inserted(
            first in proptest::collection::vec(any::<u64>(), 0..50),
            more in proptest::collection::vec(0u64..5_000, 0..3_000),
        ) {
            let mut inserted = DistinctSketch::new();
            let mut settled = DistinctSketch::new();
            for &h in &first {
                inserted.insert(h);
                settled.insert(h);
            }
            let mut acc = DistinctAccumulator::new();
            for &h in &more {
                inserted.insert(h);
                acc.insert(h);
            }
            acc.settle_into(&mut settled);
            prop_assert_eq!(&settled, &inserted);
            // And the accumulator is left empty.
            let mut again = settled.clone();
            acc.settle_into(&mut again);
            prop_assert_eq!(again, settled);
        }

        #[test]
        fn insert_keeps_k_smallest(hashes in hashes_strategy()) {
            let s = sketch_of(&hashes);
            prop_assert_eq!(&s.hashes, &reference(&hashes));
        }

        #[test]
        fn merge_equals_union(a in hashes_strategy(), b in hashes_strategy()) {
            let mut merged = sketch_of(&a);
            merged.merge(&sketch_of(&b));
            let all: Vec<u64> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(&merged, &sketch_of(&all));
            prop_assert_eq!(merged.estimate(), sketch_of(&all).estimate());
        }

        #[test]
        fn merging_a_few_into_many_equals_union(
            a in prop::collection::vec(any::<u64>(), 0..3000),
            b in prop::collection::vec(any::<u64>(), 1..12),
        ) {
            let mut merged = sketch_of(&a);
            merged.merge(&sketch_of(&b));
            let all: Vec<u64> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(&merged.hashes, &reference(&all));
        }

        #[test]
        fn round_trip(hashes in hashes_strategy()) {
            let s = sketch_of(&hashes);
            let mut bytes = encoded(&s);
            bytes.extend_from_slice(b"rest");
            let mut input = &bytes[..];
            prop_assert_eq!(&DistinctSketch::decode(&mut input).unwrap(), &s);
            prop_assert_eq!(input, &b"rest"[..]);
            let mut input = &bytes[..];
            skip_encoded(&mut input).unwrap();
            prop_assert_eq!(input, &b"rest"[..]);
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut a = &bytes[..];
            let decoded = DistinctSketch::decode(&mut a);
            let mut b = &bytes[..];
            let skipped = skip_encoded(&mut b);
            let mut c = &bytes[..];
            let mut acc = DistinctAccumulator::new();
            let added = acc.add_encoded(&mut c);
            prop_assert_eq!(decoded.is_ok(), skipped.is_ok());
            prop_assert_eq!(decoded.is_ok(), added.is_ok());
            prop_assert_eq!(a.len(), b.len());
            prop_assert_eq!(a.len(), c.len());
            if let Ok(s) = decoded {
                prop_assert!(s.len() <= KMV_K);
                prop_assert!(s.hashes.windows(2).all(|w| w[0] < w[1]));
                prop_assert_eq!(acc.to_sketch(), s);
            }
        }

        #[test]
        fn decode_never_panics_on_mutated_sketches(
            hashes in hashes_strategy(),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = encoded(&sketch_of(&hashes));
            for (pos, byte) in flips {
                let len = bytes.len();
                bytes[pos % len] = byte;
            }
            let mut input = &bytes[..];
            if let Ok(s) = DistinctSketch::decode(&mut input) {
                prop_assert!(s.len() <= KMV_K);
                prop_assert!(s.hashes.windows(2).all(|w| w[0] < w[1]));
            }
        }

        #[test]
        fn accumulator_equals_merged_sketch(
            parts in prop::collection::vec(hashes_strategy(), 0..8),
            loose in prop::collection::vec(any::<u64>(), 0..5000),
        ) {
            let mut merged = DistinctSketch::new();
            let mut via_sketch = DistinctAccumulator::new();
            let mut via_bytes = DistinctAccumulator::new();
            let mut stream = Vec::new();
            for p in &parts {
                let s = sketch_of(p);
                merged.merge(&s);
                via_sketch.add_sketch(&s);
                s.encode(&mut stream);
            }
            let mut input = &stream[..];
            while !input.is_empty() {
                via_bytes.add_encoded(&mut input).unwrap();
            }
            for &h in &loose {
                merged.insert(h);
                via_sketch.insert(h);
                via_bytes.insert(h);
            }
            prop_assert_eq!(&via_sketch.to_sketch(), &merged);
            prop_assert_eq!(&via_bytes.to_sketch(), &merged);
            prop_assert_eq!(via_bytes.estimate(), merged.estimate());
        }
    }
}
