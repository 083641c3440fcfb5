//! Owns `LatencySketch`: the weighted, mergeable, 1%-accurate latency quantile sketch kept per
//! rollup row, its byte encoding, `SketchAccumulator`, the dense form queries merge rows into, and
//! `SketchSum`, the appended form the writer and the delta merge sum many small sketches in.
//!
//! # Buckets
//!
//! This is a DDSketch-style log-bucket sketch: every duration `v` (in nanoseconds) is counted
//! in one bucket, each bucket keeps only a total weight, and each bucket has one
//! representative value `rep` that is reported for every value in it. The guarantee, for every
//! `u64` value `v` in a bucket (checked exhaustively by the tests, at both ends of every bucket):
//!
//! ```text
//! |rep - v| <= RELATIVE_ACCURACY * v        (exactly, in integer arithmetic: 100 * |rep - v| <= v)
//! ```
//!
//! * `v = 0` has a bucket of its own, reported as 0.
//! * For `v >= 1` the buckets are runs of consecutive integers `lo..=hi`. Key 0 starts at `lo = 1`.
//!   A representative may be at most `r_max = floor(101 * lo / 100)` (1% above `lo`); the bucket
//!   extends to the largest `hi` with `99 * hi <= 100 * r_max`, i.e. `hi = floor(100 * r_max / 99)`
//!   (so `r_max` is at most 1% below `hi`): the widest run of integers one integer representative
//!   can serve within 1%. The next key starts at `hi + 1`. The representative is
//!   `(ceil(99 * hi / 100) + r_max) / 2`, the middle of the integers that serve both ends (a range
//!   that is never empty by construction).
//! * All arithmetic is integer (`u128`), so the buckets are identical on every platform and Rust
//!   version, which matters because keys are stored on disk. The boundaries are computed at
//!   compile time. There are [`NUM_KEYS`] = 2085 keys (0..=2084); the last bucket ends at
//!   `u64::MAX`.
//! * Values 1..=98 each get a bucket of their own (exact); above that the bucket width ratio
//!   `hi / lo` quickly approaches `gamma = (1 + a) / (1 - a) = 101 / 99`, as in DDSketch.
//!
//! Why not the textbook `key = ceil(ln(v) / ln(gamma))`, `rep = round(2 gamma^k / (gamma + 1))`:
//! in real numbers that rep is within `a * v` of every value in the bucket, but the bound is tight
//! at both ends, so a bucket holding the integers `lo..=hi` only admits an integer rep when
//! `[0.99 * hi, 1.01 * lo]` contains an integer. For 652 of the 2072 non-empty `ln` buckets it
//! does not, at every magnitude (the first is `{58, 59}`, key 204: a rep of 58 or 59 is 1 ns, 1.7%,
//! off for the other). Those keys would also depend on the platform's `ln` near boundaries. The
//! integer buckets above have neither problem.
//!
//! # Quantiles
//!
//! [`LatencySketch::quantile`] is the weighted lower quantile: the representative of the bucket
//! holding the smallest item `x` with `weight(items <= x) >= q * W - 1e-9 * W`. The `1e-9 * W`
//! slack absorbs f64 summation-order differences, so exact cases like `q = 0.5` of 4 equal
//! weights come out the same whichever order the weights were added in. Since buckets are ordered
//! and the bucket totals sum the same items, that bucket is the bucket of the exact answer, so the
//! result is within [`RELATIVE_ACCURACY`] of it.
//!
//! # Encoding
//!
//! Every integer is an unsigned LEB128 varint: 7 bits per byte, least significant group first,
//! the high bit (0x80) set on every byte except the last, at most 10 bytes (the 10th byte may only
//! be 0x00 or 0x01).
//!
//! A *weight* is one of:
//! * an f64 that is exactly an integer `n` in `[0, 2^52)` with the sign bit clear: `varint(n << 1)`
//!   (low bit 0; weight 1.0 is the single byte `0x02`);
//! * any other f64: the byte `0x01` (that is `varint(1)`), then the 8 bytes of the IEEE-754 value,
//!   little-endian. On decode it must be finite and not negative (sign bit clear).
//!
//! Any other tag (odd varint other than 1), or an integer form with `n >= 2^52`, is invalid.
//!
//! A *sketch* is, in order:
//!
//! ```text
//! varint(n)          number of keys with weight, 0..=2085
//! weight             weight of the zero bucket (value 0 ns); 0 if none
//! n times, keys strictly ascending:
//!   varint(delta)    key minus the previous key; for the first key the key itself (may be 0);
//!                    later deltas are >= 1; every key is <= 2084
//!   weight           the key's weight, > 0
//! ```
//!
//! Example: weight 1 at 0 ns, weight 2 at 1000 ns (key 211), weight 1/0.3 at 2000 ns (key 246)
//! encodes to `02 02 d3 01 04 23 01 <3.3333333333333335 as 8 bytes LE>` (15 bytes).
//! With integral weights a one-key row takes 5 bytes and each further key 2-3 more.
//!
//! Decoding consumes exactly one sketch from the front of the input; on error the input is left
//! unchanged and nothing is merged. Decoding never panics.

use std::fmt;

use crate::codec::put_varint;

/// Relative accuracy of every reported value: within 1% of the true quantile item.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// `1 / RELATIVE_ACCURACY`; the bucket construction uses it in exact integer arithmetic.
const ACCURACY_DENOMINATOR: u128 = 100;

/// Number of keys for values >= 1 (keys are `0..NUM_KEYS`). Part of the on-disk format.
pub const NUM_KEYS: usize = count_keys();

/// Slack on the quantile threshold, relative to the total weight (see the module doc).
const QUANTILE_EPSILON: f64 = 1e-9;

/// Integral weights below this use the short varint form; 2^52 keeps `n << 1` well inside a u64
/// and every such integer exactly representable.
const INT_WEIGHT_LIMIT: u64 = 1 << 52;

/// First value of each bucket, ascending; `LOWER[0] == 1`. Computed at compile time.
static LOWER: [u64; NUM_KEYS] = build_lower();

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

/// Upper limit for the representative of the bucket starting at `lo`: 1% above `lo`.
const fn rep_max(lo: u64) -> u128 {
    (ACCURACY_DENOMINATOR + 1) * lo as u128 / ACCURACY_DENOMINATOR
}

/// Start of the bucket after the one starting at `lo` (may exceed `u64::MAX`): one past the
/// largest `hi` with `(1 - a) * hi <= rep_max(lo)`.
const fn next_lower(lo: u64) -> u128 {
    ACCURACY_DENOMINATOR * rep_max(lo) / (ACCURACY_DENOMINATOR - 1) + 1
}

const fn count_keys() -> usize {
    let mut lo: u128 = 1;
    let mut n = 0;
    while lo <= u64::MAX as u128 {
        n += 1;
        lo = next_lower(lo as u64);
    }
    n
}

const fn build_lower() -> [u64; NUM_KEYS] {
    let mut table = [0u64; NUM_KEYS];
    let mut lo: u64 = 1;
    let mut k = 0;
    while k < NUM_KEYS {
        table[k] = lo;
        let next = next_lower(lo);
        // Only the last iteration overflows, and its value is never stored.
        lo = if next > u64::MAX as u128 {
            u64::MAX
        } else {
            next as u64
        };
        k += 1;
    }
    table
}

/// Key of a value `v >= 1`.
fn key_of(v: u64) -> u16 {
    // LOWER[0] == 1 <= v, so the partition point is >= 1; NUM_KEYS < 2^16.
    (LOWER.partition_point(|&lo| lo <= v).saturating_sub(1)) as u16
}

/// Last value of bucket `key`.
fn upper_of(key: usize) -> u64 {
    match LOWER.get(key + 1) {
        Some(&next) => next - 1,
        None => u64::MAX,
    }
}

/// Representative value of `key` (0 for keys out of range, which decoding never produces).
fn representative(key: usize) -> u64 {
    let Some(&lo) = LOWER.get(key) else {
        return 0;
    };
    let hi = upper_of(key) as u128;
    let r_min = ((ACCURACY_DENOMINATOR - 1) * hi).div_ceil(ACCURACY_DENOMINATOR);
    let r_max = rep_max(lo).min(u64::MAX as u128);
    ((r_min + r_max) / 2) as u64
}

/// Value reported for a dense index (0 = zero bucket, `k + 1` = key `k`).
fn value_of_index(index: usize) -> u64 {
    match index.checked_sub(1) {
        None => 0,
        Some(key) => representative(key),
    }
}

/// Sum in ascending index order, from +0.0 (`Iterator::sum` for f64 starts from -0.0 in recent
/// Rust versions and from +0.0 in older ones, which would show up in an empty total). Skipping
/// zeros changes no bit of the result (x + 0.0 == x) but spares the dense accumulator ~2000
/// dependent additions.
fn sum_weights(weights: impl Iterator<Item = f64>) -> f64 {
    weights.filter(|&w| w > 0.0).fold(0.0, |acc, w| acc + w)
}

/// Shared quantile rule over `(dense index, weight)` pairs in ascending index order.
/// Both the sketch and the accumulator sum in the same order, so they agree bit for bit.
fn quantile_of<I>(items: I, q: f64) -> Option<u64>
where
    I: Iterator<Item = (usize, f64)> + Clone,
{
    if q.is_nan() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let total = sum_weights(items.clone().map(|(_, w)| w));
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let threshold = q * total - QUANTILE_EPSILON * total;
    let mut cum = 0.0;
    let mut last = None;
    for (index, w) in items {
        // Zero weights (an empty zero bucket) are not items; skipping them keeps q = 0 the minimum.
        if w > 0.0 {
            cum += w;
            last = Some(index);
            if cum >= threshold {
                return Some(value_of_index(index));
            }
        }
    }
    // Only reachable when the total overflowed to infinity: report the maximum.
    last.map(value_of_index)
}

/// Reads one LEB128 varint from the front of `input` (shared with `kmv`).
pub(super) fn get_varint(input: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let (&byte, rest) = input.split_first().ok_or(DecodeError("truncated varint"))?;
        *input = rest;
        // The 10th byte holds only bit 63; anything more overflows (or never terminates).
        if shift == 63 && byte > 1 {
            return Err(DecodeError("varint overflows u64"));
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// Weights use the codec's number encoding (`codec::put_num`), the same one rollup rows use.
fn put_weight(out: &mut Vec<u8>, w: f64) {
    crate::codec::put_num(out, w);
}

fn get_weight(input: &mut &[u8]) -> Result<f64, DecodeError> {
    let tag = get_varint(input)?;
    if tag & 1 == 0 {
        let n = tag >> 1;
        if n >= INT_WEIGHT_LIMIT {
            return Err(DecodeError("integer weight out of range"));
        }
        Ok(n as f64)
    } else if tag == 1 {
        let (bytes, rest) = input
            .split_first_chunk::<8>()
            .ok_or(DecodeError("truncated f64 weight"))?;
        *input = rest;
        let w = f64::from_le_bytes(*bytes);
        if !w.is_finite() || w.is_sign_negative() {
            return Err(DecodeError("weight not finite and non-negative"));
        }
        Ok(w)
    } else {
        Err(DecodeError("unknown weight tag"))
    }
}

/// Parses one encoded sketch, calling `visit(dense index, weight)` for the zero bucket (index 0,
/// always, possibly with weight 0) and then each key `k` (index `k + 1`) in ascending order.
/// `input` advances only on success.
fn walk(input: &mut &[u8], mut visit: impl FnMut(usize, f64)) -> Result<(), DecodeError> {
    let mut buf = *input;
    let n = get_varint(&mut buf)?;
    if n > NUM_KEYS as u64 {
        return Err(DecodeError("too many keys"));
    }
    visit(0, get_weight(&mut buf)?);
    let mut prev: Option<u64> = None;
    for _ in 0..n {
        let delta = get_varint(&mut buf)?;
        let key = match prev {
            None => delta,
            Some(_) if delta == 0 => return Err(DecodeError("keys not strictly ascending")),
            Some(p) => p.saturating_add(delta),
        };
        if key >= NUM_KEYS as u64 {
            return Err(DecodeError("key out of range"));
        }
        let w = get_weight(&mut buf)?;
        if w == 0.0 {
            return Err(DecodeError("key with zero weight"));
        }
        visit(key as usize + 1, w);
        prev = Some(key);
    }
    *input = buf;
    Ok(())
}

/// Skips one encoded sketch at the front of `input`, validating it like [`LatencySketch::decode`].
pub fn skip_encoded(input: &mut &[u8]) -> Result<(), DecodeError> {
    walk(input, |_, _| {})
}

/// [`LatencySketch::merge`] looks each of the other sketch's keys up when it has fewer than 1/this
/// of `self`'s, instead of walking both lists.
const MERGE_BY_SEARCH_RATIO: usize = 8;

/// Weighted latency quantile sketch; see the module doc for buckets, accuracy and encoding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencySketch {
    /// Weight of value 0.
    zero: f64,
    /// `(key, weight)`, keys strictly ascending, weights > 0. Sparse because a rollup row usually
    /// holds 1-10 keys; 16 bytes per key.
    bins: Vec<(u16, f64)>,
}

impl LatencySketch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `value_nanos` with `weight` (1 / sampling probability). Weights that are not finite
    /// and positive are ignored: they carry no information and would poison every sum.
    pub fn add(&mut self, value_nanos: u64, weight: f64) {
        self.add_key(Self::key_of_value(value_nanos), weight);
    }

    /// The bucket `value_nanos` falls in (`None` for 0, which is counted apart), for
    /// [`LatencySketch::add_key`]: a span added to several sketches looks its bucket up once.
    pub fn key_of_value(value_nanos: u64) -> Option<u16> {
        (value_nanos != 0).then(|| key_of(value_nanos))
    }

    /// [`LatencySketch::add`] of a value whose [`LatencySketch::key_of_value`] is `key`.
    pub fn add_key(&mut self, key: Option<u16>, weight: f64) {
        if !(weight > 0.0 && weight.is_finite()) {
            return;
        }
        let Some(key) = key else {
            self.zero += weight;
            return;
        };
        match self.bins.binary_search_by_key(&key, |&(k, _)| k) {
            Ok(i) => self.bins[i].1 += weight,
            Err(i) => self.bins.insert(i, (key, weight)),
        }
    }

    /// Adds `other`'s weights into `self`. Per key the result is `self + other`, the same order a
    /// [`SketchAccumulator`] uses.
    pub fn merge(&mut self, other: &LatencySketch) {
        if other.bins.is_empty() {
            // A row's sketch summed apart ([`SketchSum`]) leaves an empty one to merge.
            self.zero += other.zero;
            return;
        }
        // A few keys into many (a batch's delta row into the minute's row, the common case in
        // compaction): a binary search per key instead of a pass over all of `self`'s keys.
        if other.bins.len() * MERGE_BY_SEARCH_RATIO < self.bins.len() {
            self.zero += other.zero;
            for &(key, w) in &other.bins {
                match self.bins.binary_search_by_key(&key, |b| b.0) {
                    Ok(i) => self.bins[i].1 += w,
                    Err(i) => self.bins.insert(i, (key, w)),
                }
            }
            return;
        }
        self.merge_scan(other);
    }

    /// [`LatencySketch::merge`] by one pass over both key lists.
    fn merge_scan(&mut self, other: &LatencySketch) {
        self.zero += other.zero;
        let (a, b) = (&self.bins, &other.bins);
        // Count keys missing from self, so the union can be built in place without a new Vec.
        let (mut i, mut j, mut missing) = (0, 0, 0);
        while j < b.len() {
            if i < a.len() && a[i].0 < b[j].0 {
                i += 1;
            } else {
                if i >= a.len() || a[i].0 != b[j].0 {
                    missing += 1;
                }
                j += 1;
            }
        }
        if missing == 0 {
            // Common case for rollups of one operation: same keys, just add.
            let mut i = 0;
            for &(key, w) in b {
                while self.bins[i].0 != key {
                    i += 1;
                }
                self.bins[i].1 += w;
            }
            return;
        }
        // Merge from the back into the grown vector so no element is overwritten before it is read.
        let old_len = self.bins.len();
        self.bins.resize(old_len + missing, (0, 0.0));
        let (mut i, mut j, mut w) = (old_len, b.len(), old_len + missing);
        while j > 0 {
            let (bk, bw) = b[j - 1];
            if i > 0 && self.bins[i - 1].0 > bk {
                self.bins[w - 1] = self.bins[i - 1];
                i -= 1;
            } else if i > 0 && self.bins[i - 1].0 == bk {
                self.bins[w - 1] = (bk, self.bins[i - 1].1 + bw);
                i -= 1;
                j -= 1;
            } else {
                self.bins[w - 1] = (bk, bw);
                j -= 1;
            }
            w -= 1;
        }
        // Entries 0..i of self are already in place.
    }

    /// Sum of all weights.
    pub fn total_weight(&self) -> f64 {
        sum_weights(self.items().map(|(_, w)| w))
    }

    pub fn is_empty(&self) -> bool {
        self.zero == 0.0 && self.bins.is_empty()
    }

    /// q in `[0, 1]`. Weighted lower quantile: the value of the smallest stored item x such that
    /// the total weight of items <= x is >= q * total_weight (q = 0 gives the minimum). None if
    /// empty.
    ///
    /// "Value" is the bucket representative, within [`RELATIVE_ACCURACY`] of x. The comparison
    /// allows `1e-9 * total_weight` of float slack. `q` outside `[0, 1]` is clamped; NaN gives
    /// None.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        quantile_of(self.items(), q)
    }

    /// Appends the encoding (module doc) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.bins.len() as u64);
        put_weight(out, self.zero);
        let mut prev = 0u16;
        for &(key, w) in &self.bins {
            put_varint(out, u64::from(key - prev));
            put_weight(out, w);
            prev = key;
        }
    }

    /// Decodes one sketch from the front of `input` and advances past it (unchanged on error).
    pub fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
        let mut sketch = LatencySketch::new();
        // Exact capacity: sketches are kept per row, so no slack from Vec doubling.
        let mut peek = *input;
        if let Ok(n) = get_varint(&mut peek) {
            // Each key takes at least 2 bytes, so a corrupt count cannot make this allocate much.
            let possible = NUM_KEYS.min(peek.len() / 2) as u64;
            sketch.bins.reserve_exact(n.min(possible) as usize);
        }
        walk(input, |index, w| match index.checked_sub(1) {
            None => sketch.zero = w,
            Some(key) => sketch.bins.push((key as u16, w)),
        })?;
        Ok(sketch)
    }

    /// [`LatencySketch::decode`] into `self`, reusing its allocation (for scratch sketches that
    /// are merged elsewhere right after). On error `self` holds part of the input.
    pub fn decode_into(&mut self, input: &mut &[u8]) -> Result<(), DecodeError> {
        self.zero = 0.0;
        self.bins.clear();
        walk(input, |index, w| match index.checked_sub(1) {
            None => self.zero = w,
            Some(key) => self.bins.push((key as u16, w)),
        })
    }

    /// `(dense index, weight)` in ascending order; index 0 is the zero bucket.
    fn items(&self) -> impl Iterator<Item = (usize, f64)> + Clone + '_ {
        std::iter::once((0, self.zero)).chain(self.bins.iter().map(|&(k, w)| (k as usize + 1, w)))
    }
}

/// The sum of many sketches added one after another, combined once at the end: a delta merge adds
/// every append's small sketch of a row (a few keys) into the row's sum, and inserting each key
/// into a growing sorted list was most of that merge's cost (docs/benchmarks.md, "The writer's
/// sorts and the rollup sums").
///
/// Keys are appended as they come and combined by a stable sort, so per key the weights add up in
/// the order they were added, from the first: [`SketchSum::into_sketch`] is bit for bit the
/// sketch that [`LatencySketch::merge`] in the same order gives. It holds every key added until
/// then, no more than the sketches it sums held.
#[derive(Clone, Debug, Default)]
pub struct SketchSum {
    zero: f64,
    bins: Vec<(u16, f64)>,
}

/// Above this many keys [`SketchSum::into_sketch`] sorts by radix, below by comparisons.
const SUM_RADIX_LEN_MIN: usize = 64;

impl SketchSum {
    /// A sum starting with `first`.
    pub fn new(first: LatencySketch) -> Self {
        SketchSum {
            zero: first.zero,
            bins: first.bins,
        }
    }

    pub fn add(&mut self, s: &LatencySketch) {
        self.zero += s.zero;
        self.bins.extend_from_slice(&s.bins);
    }

    /// [`LatencySketch::add_key`] into the sum: the same weights ignored, the same sums.
    #[inline]
    pub fn add_key(&mut self, key: Option<u16>, weight: f64) {
        if !(weight > 0.0 && weight.is_finite()) {
            return;
        }
        match key {
            None => self.zero += weight,
            Some(key) => self.bins.push((key, weight)),
        }
    }

    /// Adds the sum into `sketch` and leaves it empty.
    pub fn settle_into(&mut self, sketch: &mut LatencySketch) {
        if self.zero == 0.0 && self.bins.is_empty() {
            return;
        }
        let sum = std::mem::take(self).into_sketch();
        if sketch.is_empty() {
            *sketch = sum;
        } else {
            sketch.merge(&sum);
        }
    }

    pub fn into_sketch(mut self) -> LatencySketch {
        // Stable: equal keys keep the order they were added in. A radix sort's fixed cost (its
        // buffer and histograms) outweighs a few comparisons for the many small rows.
        if self.bins.len() <= SUM_RADIX_LEN_MIN {
            self.bins.sort_by_key(|&(k, _)| k);
        } else {
            radsort::sort_by_key(&mut self.bins, |&(k, _)| k);
        }
        // Equal keys combined in place, in order: `kept` entries are done.
        let bins = &mut self.bins;
        let mut kept = 0;
        for i in 0..bins.len() {
            let (k, w) = bins[i];
            if kept > 0 && bins[kept - 1].0 == k {
                bins[kept - 1].1 += w;
            } else {
                bins[kept] = (k, w);
                kept += 1;
            }
        }
        bins.truncate(kept);
        LatencySketch {
            zero: self.zero,
            bins: self.bins,
        }
    }
}

/// A dense accumulator for merging many sketches fast (e.g. 200k rows in a query): an array
/// indexed by key, covering only the keys seen so far.
///
/// All 2086 keys would be 16.3 KiB per accumulator, zeroed when made; a time series keeps one per
/// bucket (720 for 30 days of hours), and latencies of one group span a few hundred keys at most.
#[derive(Clone, Debug, Default)]
pub struct SketchAccumulator {
    /// Dense index of `weights[0]` (index 0 is the zero bucket, index `k + 1` is key `k`).
    lo: usize,
    /// Weights of dense indexes `lo..lo + weights.len()`; empty until a weight is added.
    weights: Vec<f64>,
}

/// Keys added beyond the one asked for when the window grows, so that a group's latencies
/// spreading a little further do not move the window each time.
const WINDOW_SLACK: usize = 16;

impl SketchAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `w` at dense `index` (< `NUM_KEYS + 1`), widening the window if needed.
    #[inline]
    fn add(&mut self, index: usize, w: f64) {
        match index.checked_sub(self.lo) {
            Some(i) if i < self.weights.len() => self.weights[i] += w,
            // An empty bucket adds nothing: no need to widen for it.
            _ if w == 0.0 => {}
            _ => self.widen(index, w),
        }
    }

    #[cold]
    fn widen(&mut self, index: usize, w: f64) {
        let end = NUM_KEYS + 1;
        if self.weights.is_empty() {
            self.lo = index.saturating_sub(WINDOW_SLACK);
            self.weights = vec![0.0; (index + WINDOW_SLACK + 1).min(end) - self.lo];
        } else if index < self.lo {
            let lo = index.saturating_sub(WINDOW_SLACK);
            self.weights
                .splice(0..0, std::iter::repeat_n(0.0, self.lo - lo));
            self.lo = lo;
        } else {
            let hi = (index + WINDOW_SLACK + 1).min(end);
            self.weights.resize(hi - self.lo, 0.0);
        }
        self.weights[index - self.lo] += w;
    }

    /// `(dense index, weight)` of the window, ascending.
    fn items(&self) -> impl Iterator<Item = (usize, f64)> + Clone + '_ {
        let lo = self.lo;
        self.weights
            .iter()
            .enumerate()
            .map(move |(i, &w)| (lo + i, w))
    }

    pub fn add_sketch(&mut self, s: &LatencySketch) {
        for (index, w) in s.items() {
            if index <= NUM_KEYS {
                self.add(index, w);
            }
        }
    }

    /// Merges an encoded sketch straight from bytes without allocating, consuming it like
    /// [`LatencySketch::decode`]. On error nothing is merged and `input` is unchanged.
    pub fn add_encoded(&mut self, input: &mut &[u8]) -> Result<(), DecodeError> {
        // Validate first: float additions cannot be undone, and a half-merged corrupt row would
        // silently skew the result. The second pass re-reads bytes that are already in cache.
        let mut probe = *input;
        walk(&mut probe, |_, _| {})?;
        // `walk` checks every key against `NUM_KEYS`.
        walk(input, |index, w| self.add(index, w))
    }

    /// Same rule and same result as [`LatencySketch::quantile`] on the merged sketch.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        quantile_of(self.items(), q)
    }

    pub fn total_weight(&self) -> f64 {
        sum_weights(self.weights.iter().copied())
    }

    pub fn to_sketch(&self) -> LatencySketch {
        let mut zero = 0.0;
        let mut bins = Vec::new();
        for (index, w) in self.items() {
            match index.checked_sub(1) {
                None => zero = w,
                Some(key) if w > 0.0 => bins.push((key as u16, w)),
                Some(_) => {}
            }
        }
        LatencySketch { zero, bins }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WEIGHTS: [f64; 5] = [1.0, 2.0, 10.0, 1.0 / 0.3, 1.0 / 0.07];

    /// The accuracy bound in exact integer arithmetic (slightly stricter than f64 `0.01 * v`).
    fn within_accuracy(estimate: u64, v: u64) -> bool {
        100 * (estimate as i128 - v as i128).unsigned_abs() <= v as u128
    }

    fn encoded(s: &LatencySketch) -> Vec<u8> {
        let mut out = Vec::new();
        s.encode(&mut out);
        out
    }

    fn rel_close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    /// Exact weighted lower quantile with the same epsilon rule as the sketch.
    fn brute_quantile(items: &[(u64, f64)], q: f64) -> u64 {
        let mut sorted = items.to_vec();
        sorted.sort_by_key(|&(v, _)| v);
        let total: f64 = sorted.iter().map(|&(_, w)| w).sum();
        let threshold = q * total - QUANTILE_EPSILON * total;
        let mut cum = 0.0;
        for &(v, w) in &sorted {
            cum += w;
            if cum >= threshold {
                return v;
            }
        }
        sorted.last().map(|&(v, _)| v).unwrap()
    }

    fn value_strategy() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..200,
            // log-uniform over 1..1e10
            (0.0f64..(1e10f64).ln()).prop_map(|x| x.exp() as u64),
        ]
    }

    fn items_strategy(max_len: usize) -> impl Strategy<Value = Vec<(u64, f64)>> {
        prop::collection::vec(
            (value_strategy(), prop::sample::select(WEIGHTS.to_vec())),
            0..max_len,
        )
    }

    /// Fails unless `a` and `b` hold the same keys with bit-identical weights.
    fn same_bits(a: &LatencySketch, b: &LatencySketch) -> Result<(), TestCaseError> {
        prop_assert_eq!(a.zero.to_bits(), b.zero.to_bits());
        prop_assert_eq!(a.bins.len(), b.bins.len());
        for (x, y) in a.bins.iter().zip(&b.bins) {
            prop_assert_eq!(x.0, y.0);
            prop_assert_eq!(x.1.to_bits(), y.1.to_bits(), "key {}", x.0);
        }
        Ok(())
    }

    fn sketch_of(items: &[(u64, f64)]) -> LatencySketch {
        let mut s = LatencySketch::new();
        for &(v, w) in items {
            s.add(v, w);
        }
        s
    }

    #[test]
    fn bucket_table_shape() {
        assert_eq!(NUM_KEYS, 2085);
        assert_eq!(LOWER[0], 1);
        assert!(LOWER.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(key_of(u64::MAX) as usize, NUM_KEYS - 1);
        assert_eq!(RELATIVE_ACCURACY, 1.0 / ACCURACY_DENOMINATOR as f64);
        // Frozen on-disk facts: changing any of these breaks stored sketches.
        assert_eq!(key_of(1), 0);
        assert_eq!(key_of(98), 97);
        assert_eq!(key_of(1000), 211);
        assert_eq!(key_of(2000), 246);
        assert_eq!(key_of(1_000_000_000), 902);
        assert_eq!(representative(211), 1000);
        assert_eq!(LOWER[NUM_KEYS - 1], 18_426_489_651_433_580_613);
    }

    #[test]
    fn bound_holds_at_both_ends_of_every_bucket() {
        // The rep lies in [0.99 * hi, 1.01 * lo], so checking lo and hi proves the bound for every
        // value in between.
        for (key, &lo) in LOWER.iter().enumerate() {
            let hi = upper_of(key);
            let rep = representative(key);
            assert!(lo <= hi);
            assert_eq!(key_of(lo) as usize, key);
            assert_eq!(key_of(hi) as usize, key);
            assert!(within_accuracy(rep, lo), "key {key} lo {lo} rep {rep}");
            assert!(within_accuracy(rep, hi), "key {key} hi {hi} rep {rep}");
            assert!(key == 0 || representative(key - 1) < rep, "reps ascending");
        }
    }

    #[test]
    fn bound_holds_for_all_small_values() {
        for v in 1..100_000u64 {
            let rep = representative(key_of(v) as usize);
            assert!(within_accuracy(rep, v), "v {v} rep {rep}");
            assert!((rep as f64 - v as f64).abs() <= RELATIVE_ACCURACY * v as f64);
            if v <= 98 {
                assert_eq!(rep, v, "tiny values are exact");
            }
        }
        let mut s = LatencySketch::new();
        s.add(0, 1.0);
        assert_eq!(s.quantile(0.5), Some(0));
    }

    #[test]
    fn golden_encoding() {
        let mut s = LatencySketch::new();
        s.add(0, 1.0);
        s.add(1000, 2.0);
        s.add(2000, 1.0 / 0.3);
        let mut expected = vec![0x02, 0x02, 0xd3, 0x01, 0x04, 0x23, 0x01];
        expected.extend_from_slice(&(1.0f64 / 0.3).to_le_bytes());
        assert_eq!(encoded(&s), expected);
        assert_eq!(encoded(&LatencySketch::new()), vec![0x00, 0x00]);
    }

    #[test]
    fn decode_rejects_malformed() {
        let cases: &[&[u8]] = &[
            &[],
            &[0x00],
            &[0x01, 0x00, 0x05],                                     // truncated
            &[0x02, 0x00, 0x05, 0x02, 0x00, 0x02],                   // delta 0 after the first key
            &[0x01, 0x00, 0xa5, 0x10, 0x02],                         // key 2085 out of range
            &[0x01, 0x00, 0x05, 0x00],                               // key with zero weight
            &[0x00, 0x03],                                           // unknown weight tag
            &[0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f],             // NaN
            &[0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xf0, 0xbf],             // -1.0
            &[0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10], // integer weight 2^52
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], // varint overflow
            &[0xa6, 0x10, 0x00],                                     // 2086 keys
        ];
        for &case in cases {
            let mut input = case;
            assert!(LatencySketch::decode(&mut input).is_err(), "{case:?}");
            assert_eq!(input, case, "input untouched on error");
            let mut acc = SketchAccumulator::new();
            assert!(acc.add_encoded(&mut input).is_err());
            assert_eq!(acc.total_weight(), 0.0, "nothing merged on error");
            assert!(skip_encoded(&mut input).is_err());
        }
    }

    #[test]
    fn weird_weights_ignored_and_quantile_edges() {
        let mut s = LatencySketch::new();
        for w in [0.0, -1.0, f64::NAN, f64::INFINITY, -0.0] {
            s.add(5, w);
        }
        assert!(s.is_empty());
        assert_eq!(s.quantile(0.5), None);
        s.add(10, 1.0);
        s.add(20, 1.0);
        s.add(30, 1.0);
        s.add(40, 1.0);
        assert_eq!(s.quantile(0.0), Some(10));
        assert_eq!(s.quantile(0.5), Some(20));
        assert_eq!(s.quantile(0.5000001), Some(30));
        assert_eq!(s.quantile(1.0), Some(40));
        assert_eq!(s.quantile(7.0), Some(40));
        assert_eq!(s.quantile(-1.0), Some(10));
        assert_eq!(s.quantile(f64::NAN), None);
        assert_eq!(s.total_weight(), 4.0);
    }

    #[test]
    fn huge_weights_do_not_panic() {
        let mut s = LatencySketch::new();
        s.add(1, f64::MAX);
        s.add(2, f64::MAX);
        assert!(s.quantile(0.5).is_some());
        let mut acc = SketchAccumulator::new();
        acc.add_sketch(&s);
        assert!(acc.quantile(0.9).is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Keys added to a [`SketchSum`] come out as the same keys added to a sketch one by one:
        /// the same weights ignored, the same sums in the same order.
        #[test]
        fn summed_keys_are_the_keys_added(
            keys in prop::collection::vec(
                (
                    prop::option::weighted(0.9, 0u16..40),
                    prop_oneof![
                        4 => 0.1f64..1e3,
                        1 => prop::sample::select(vec![0.0, -1.0, f64::NAN, f64::INFINITY, 1.0]),
                    ],
                ),
                0..200,
            ),
        ) {
            let mut added = LatencySketch::new();
            let mut sum = SketchSum::default();
            for &(key, w) in &keys {
                added.add_key(key, w);
                sum.add_key(key, w);
            }
            let mut settled = LatencySketch::new();
            sum.settle_into(&mut settled);
            same_bits(&settled, &added)?;
        }

        /// A [`SketchSum`] is bit for bit the sketches merged one after another in the same order:
        /// per key the same additions in the same order (the weights are not all exact in binary,
        /// so another order would show in the last bits).
        #[test]
        fn a_sum_is_the_merges_in_order(
            parts in prop::collection::vec(
                (items_strategy(12), prop::collection::vec(0.1f64..1e3, 0..4)),
                1..40,
            ),
        ) {
            let sketches: Vec<LatencySketch> = parts
                .iter()
                .map(|(items, odd)| {
                    let mut s = sketch_of(items);
                    // Weights that are not sums of powers of two, where order changes results.
                    for (i, w) in odd.iter().enumerate() {
                        s.add(1_000 + i as u64 * 37, *w);
                    }
                    s
                })
                .collect();
            let mut merged = sketches[0].clone();
            let mut sum = SketchSum::new(sketches[0].clone());
            for s in &sketches[1..] {
                merged.merge(s);
                sum.add(s);
            }
            same_bits(&sum.into_sketch(), &merged)?;
        }

        #[test]
        fn round_trip_is_exact(
            items in items_strategy(60),
            raw in prop::collection::vec((1u64..u64::MAX, 1e-3f64..1e12), 0..5),
        ) {
            let mut s = sketch_of(&items);
            for (v, w) in raw {
                s.add(v, w);
            }
            let bytes = encoded(&s);
            let mut tail = bytes.clone();
            tail.extend_from_slice(b"rest");
            let mut input = &tail[..];
            let back = LatencySketch::decode(&mut input).unwrap();
            prop_assert_eq!(input, &b"rest"[..]);
            prop_assert_eq!(back.zero.to_bits(), s.zero.to_bits());
            prop_assert_eq!(back.bins.len(), s.bins.len());
            for (a, b) in back.bins.iter().zip(&s.bins) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
            prop_assert_eq!(encoded(&back), bytes.clone());
            let mut input = &tail[..];
            skip_encoded(&mut input).unwrap();
            prop_assert_eq!(input, &b"rest"[..]);
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut a = &bytes[..];
            let decoded = LatencySketch::decode(&mut a);
            let mut b = &bytes[..];
            let skipped = skip_encoded(&mut b);
            let mut c = &bytes[..];
            let mut acc = SketchAccumulator::new();
            let added = acc.add_encoded(&mut c);
            prop_assert_eq!(decoded.is_ok(), skipped.is_ok());
            prop_assert_eq!(decoded.is_ok(), added.is_ok());
            prop_assert_eq!(a.len(), b.len());
            prop_assert_eq!(a.len(), c.len());
            if let Ok(s) = decoded {
                let _ = s.quantile(0.5);
                prop_assert_eq!(acc.to_sketch(), s);
            }
        }

        #[test]
        fn decode_never_panics_on_mutated_sketches(
            items in items_strategy(20),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = encoded(&sketch_of(&items));
            for (pos, byte) in flips {
                let len = bytes.len();
                bytes[pos % len] = byte;
            }
            let mut input = &bytes[..];
            let _ = LatencySketch::decode(&mut input);
        }

        #[test]
        fn merge_equals_adding_everything(a in items_strategy(40), b in items_strategy(40)) {
            let mut merged = sketch_of(&a);
            merged.merge(&sketch_of(&b));
            let all: Vec<_> = a.iter().chain(&b).copied().collect();
            let direct = sketch_of(&all);
            prop_assert!(rel_close(merged.zero, direct.zero));
            prop_assert_eq!(merged.bins.len(), direct.bins.len());
            for (x, y) in merged.bins.iter().zip(&direct.bins) {
                prop_assert_eq!(x.0, y.0);
                prop_assert!(rel_close(x.1, y.1), "{} vs {}", x.1, y.1);
            }
        }

        #[test]
        fn merging_a_few_keys_equals_the_full_merge(a in items_strategy(400), b in items_strategy(4)) {
            let (mut searched, mut scanned) = (sketch_of(&a), sketch_of(&a));
            searched.merge(&sketch_of(&b));
            scanned.merge_scan(&sketch_of(&b));
            prop_assert_eq!(searched, scanned);
        }

        #[test]
        fn quantiles_within_accuracy_of_exact(items in items_strategy(300)) {
            prop_assume!(!items.is_empty());
            let s = sketch_of(&items);
            for q in [0.0, 0.5, 0.9, 0.95, 0.99, 1.0] {
                let exact = brute_quantile(&items, q);
                let got = s.quantile(q).unwrap();
                prop_assert!(within_accuracy(got, exact), "q {} exact {} got {}", q, exact, got);
            }
        }

        #[test]
        fn accumulator_matches_merged_sketch(
            parts in prop::collection::vec(items_strategy(12), 0..30),
        ) {
            let sketches: Vec<_> = parts.iter().map(|p| sketch_of(p)).collect();
            let mut merged = LatencySketch::new();
            let mut via_sketch = SketchAccumulator::new();
            let mut via_bytes = SketchAccumulator::new();
            let mut stream = Vec::new();
            for s in &sketches {
                merged.merge(s);
                via_sketch.add_sketch(s);
                s.encode(&mut stream);
            }
            let mut input = &stream[..];
            while !input.is_empty() {
                via_bytes.add_encoded(&mut input).unwrap();
            }
            prop_assert_eq!(via_sketch.to_sketch(), merged.clone());
            prop_assert_eq!(via_bytes.to_sketch(), merged.clone());
            prop_assert_eq!(via_bytes.total_weight().to_bits(), merged.total_weight().to_bits());
            for q in [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
                prop_assert_eq!(via_bytes.quantile(q), merged.quantile(q));
                prop_assert_eq!(via_sketch.quantile(q), merged.quantile(q));
            }
        }

        #[test]
        fn large_values_within_accuracy(v in 1u64..=u64::MAX) {
            let rep = representative(key_of(v) as usize);
            prop_assert!(within_accuracy(rep, v), "v {} rep {}", v, rep);
        }
    }
}
