//! JSON Lines for export: each span written straight into a byte buffer, byte for byte what
//! `serde_json::to_vec(&span_to_json(..))` produces (the same keys in the same, sorted, order and
//! serde_json's own string escaping and number formatting), without building `Value` trees. Every
//! distinct string, resource + scope and attribute set of a block is rendered once per block.

use std::ops::Range;
use std::sync::Arc;

use mcp_obs_storage::model::{AttrValue, Env, KeyValue, SpanEvent, SpanLink, SpanOrigin};
use mcp_obs_storage::spans::{ScanBlock, StrField};
use mcp_obs_storage::Result;
use rustc_hash::FxHashMap;
use serde_json::ser::{CompactFormatter, Formatter};

use super::ahead::{JobId, RenderAhead};
use super::RowFormat;

/// Rendered attributes, events and links kept per block for reuse by rows with the same bytes;
/// past this many bytes of renderings a block renders the rest row by row.
pub const EXTRA_CACHE_BYTES_MAX: usize = 256 << 10;

/// Writing into a `Vec<u8>` cannot fail; serde_json's writers still return `io::Result`.
fn done(r: std::io::Result<()>) {
    debug_assert!(r.is_ok());
}

/// `s` as a JSON string, exactly as serde_json writes it. Most strings (ids, names) need no
/// escape; they are checked eight bytes at a time and copied whole, since serde_json's own loop
/// looks each byte up in its escape table (about 300 instructions for a 36-byte id).
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        let r = serde_json::to_writer(&mut *out, s);
        debug_assert!(r.is_ok());
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether serde_json escapes any byte of `b`: a control character (below 0x20), `"` or `\`.
/// Bytes of 0x80 and above (UTF-8) and 0x7f are written as they are.
fn needs_escape(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    let mut hit = 0;
    for c in &mut words {
        hit |= escape_bits(u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // The last eight bytes (re-reading checked ones is harmless), or the whole string padded
        // with a byte that needs no escape.
        let last = match b.len() {
            n if n >= 8 => b[n - 8..].try_into().expect("8 bytes"),
            n => {
                let mut w = [b'a'; 8];
                w[..n].copy_from_slice(b);
                w
            }
        };
        hit |= escape_bits(u64::from_le_bytes(last));
    }
    hit != 0
}

/// Non-zero iff a byte of `w` is below 0x20, `"` or `\`. Per byte, `x - n & !x & 0x80` is set
/// for a byte below `n` (n <= 0x80) and may be set for bytes above a byte that is: exact for "any
/// byte", which is all that is asked.
#[inline(always)]
fn escape_bits(w: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    (below(w, 0x20) | below(quote, 1) | below(backslash, 1)) & HIGH
}

/// A JSON number as `json!(x)` renders it: `null` when not finite.
pub(crate) fn push_f64(out: &mut Vec<u8>, v: f64) {
    if v == 1.0 {
        // Every unsampled span's sample probability.
        out.extend_from_slice(b"1.0");
    } else if v.is_finite() {
        done(CompactFormatter.write_f64(out, v));
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `nanos` / 10^6 as [`push_f64`] writes it (a duration in milliseconds), from the integer's
/// digits rather than through a float formatter. The quotient of an integer below 10^15 by 10^6
/// has at most 15 significant digits, and the double nearest such a decimal prints as that
/// decimal and no other (15 digits survive the round trip through a double, so no other decimal
/// of at most 15 digits, shorter ones included, reads as the same double): the shortest form
/// serde_json writes is the digits of `nanos` without their trailing zeros, the point six places
/// from the right, `.0` after a whole number. serde_json writes an exponent below 10^-5 (under
/// 10 ns); there, and from 10^15 ns (11.5 days), the float path runs.
#[inline(always)]
fn push_ms(out: &mut Vec<u8>, nanos: u64) {
    if !(10..1_000_000_000_000_000).contains(&nanos) {
        return push_f64(out, nanos as f64 / 1e6);
    }
    let (whole, frac) = (nanos / 1_000_000, (nanos % 1_000_000) as u32);
    Digits::new(whole).put(out, 0);
    if frac == 0 {
        out.extend_from_slice(b".0");
        return;
    }
    let pair = |d: u32| {
        let d = 2 * d as usize;
        [DIGIT_PAIRS[d], DIGIT_PAIRS[d + 1]]
    };
    let ([a0, a1], [b0, b1], [c0, c1]) = (
        pair(frac / 10_000),
        pair(frac / 100 % 100),
        pair(frac % 100),
    );
    let mut zeros = 0;
    let mut f = frac;
    while f % 10 == 0 {
        f /= 10;
        zeros += 1;
    }
    let at = out.len();
    out.extend_from_slice(&[b'.', a0, a1, b0, b1, c0, c1, 0]);
    out.truncate(at + 7 - zeros);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bytes kept after every rendered fragment, so short fragments are copied with one fixed-size
/// move (inlined) instead of a call to `memcpy` for a few bytes; most fragments are shorter.
const PAD: usize = 64;

/// Appends `buf[r]`, where `buf` holds at least [`PAD`] bytes after `r.start`.
#[inline(always)]
fn put_padded(out: &mut Vec<u8>, buf: &[u8], r: &Range<usize>) {
    let len = r.end - r.start;
    if len <= PAD && r.start + PAD <= buf.len() {
        let at = out.len();
        out.extend_from_slice(&buf[r.start..r.start + PAD]);
        out.truncate(at + len);
    } else {
        out.extend_from_slice(&buf[r.clone()]);
    }
}

/// Ends a fragment buffer with [`PAD`] bytes of slack.
fn pad(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&[0; PAD]);
}

/// "00" to "99".
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The eight decimal digits of `v` (below 10^8, zero-padded), in order, computed on all of them
/// at once: the number is split into halves of four digits in two 32-bit lanes, each half into
/// pairs in 16-bit lanes, each pair into digits in bytes, a division by 100 or 10 in every lane
/// at once done as a multiplication and a shift that is exact in the lanes' range (x * 10,486 >>
/// 20 is x / 100 for x below 10^4, x * 103 >> 10 is x / 10 for x below 100, and no lane's
/// product reaches the next lane).
#[inline(always)]
fn eight_digits(v: u32) -> [u8; 8] {
    let (hi, lo) = (u64::from(v / 10_000), u64::from(v % 10_000));
    let x = hi | lo << 32;
    let hundreds = ((x * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let x = hundreds | (x - hundreds * 100) << 16;
    let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    let x = tens | (x - tens * 10) << 8;
    (x | u64::from_le_bytes([b'0'; 8])).to_le_bytes()
}

/// Where [`Digits`] end: a u64 has at most 20 digits, so they start at 4 or later, and a
/// fixed-size copy of `DIGITS_END` bytes from there stays inside the buffer.
const DIGITS_END: usize = 24;

/// The decimal digits of a u64, as `itoa` (and so serde_json) writes them: `buf[at..DIGITS_END]`.
struct Digits {
    buf: [u8; 2 * DIGITS_END],
    at: usize,
}

impl Digits {
    #[inline(always)]
    fn new(v: u64) -> Digits {
        let mut buf = [0u8; 2 * DIGITS_END];
        if v < 100 {
            // Counts, flags, server ids.
            let d = v as usize * 2;
            buf[DIGITS_END - 2] = DIGIT_PAIRS[d];
            buf[DIGITS_END - 1] = DIGIT_PAIRS[d + 1];
            let at = DIGITS_END - 2 + usize::from(v < 10);
            return Digits { buf, at };
        }
        let mut at = DIGITS_END;
        // Eight digits at a time (timestamps have 19), each group converted in one word.
        let mut v = v;
        while v >= 100_000_000 {
            let low = (v % 100_000_000) as u32;
            v /= 100_000_000;
            at -= 8;
            buf[at..at + 8].copy_from_slice(&eight_digits(low));
        }
        // The first group, without its leading zeros (it is not 0: v >= 100 or a group before).
        let first = eight_digits(v as u32);
        let zeros =
            (u64::from_le_bytes(first) ^ u64::from_le_bytes([b'0'; 8])).trailing_zeros() / 8;
        at -= 8;
        buf[at..at + 8].copy_from_slice(&first);
        Digits {
            buf,
            at: at + zeros as usize,
        }
    }

    /// Appends the digits, dropping the last `drop` of them (the number divided by 10^`drop`;
    /// "0" when none are left).
    #[inline(always)]
    fn put(&self, out: &mut Vec<u8>, drop: usize) {
        let len = DIGITS_END - self.at;
        if len <= drop {
            out.push(b'0');
            return;
        }
        let base = out.len();
        out.extend_from_slice(&self.buf[self.at..self.at + DIGITS_END]);
        out.truncate(base + len - drop);
    }
}

/// The decimal digits of `v`, as `itoa` (and so serde_json) writes them.
#[inline(always)]
fn put_digits(out: &mut Vec<u8>, v: u64) {
    Digits::new(v).put(out, 0);
}

/// `"` + 2 x N lowercase hex digits + `"` (ids: N is 8 or 16), written with one fixed-size copy.
#[inline(always)]
fn put_hex_quoted<const N: usize>(out: &mut Vec<u8>, bytes: &[u8; N]) {
    let mut tmp = [b'"'; 34];
    for (k, eight) in bytes.chunks_exact(8).take(2).enumerate() {
        let eight: &[u8; 8] = eight.try_into().expect("8 bytes");
        tmp[1 + 16 * k..17 + 16 * k].copy_from_slice(&hex16(eight));
    }
    tmp[1 + 2 * N.min(16)] = b'"';
    out.extend_from_slice(&tmp[..2 + 2 * N.min(16)]);
}

/// The 16 lowercase hex digits of 8 bytes, in order, computed on all of them at once: each byte's
/// two nibbles are spread into bytes of their own (halving steps of a shift and a mask), then
/// each nibble byte becomes `'0' + n`, plus 39 more (to `'a' + n - 10`) where n > 9.
#[inline(always)]
fn hex16(bytes: &[u8; 8]) -> [u8; 16] {
    const fn lanes(b: u8) -> u128 {
        u128::from_ne_bytes([b; 16])
    }
    let mut x = u128::from(u64::from_be_bytes(*bytes));
    x = (x | x << 32) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    x = (x | x << 16) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    x = (x | x << 8) & 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    x = (x | x << 4) & lanes(0x0f);
    let letters = ((x + lanes(6)) >> 4) & lanes(1);
    (x + lanes(b'0') + letters * 39).to_be_bytes()
}

/// Lowercase hex digits of `bytes`, unquoted.
pub(crate) fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

fn push_hex_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    push_hex(out, bytes);
    out.push(b'"');
}

/// A decimal integer as a JSON string (nanosecond timestamps).
fn push_u64_str(out: &mut Vec<u8>, v: u64) {
    out.push(b'"');
    put_digits(out, v);
    out.push(b'"');
}

/// Attributes as `span_json::attrs_to_json` renders them: an object with keys in byte order (a
/// `serde_json::Map`), a repeated key keeping its last value.
pub(crate) fn push_attrs(out: &mut Vec<u8>, attrs: &[KeyValue]) {
    out.push(b'{');
    match attrs {
        [] => {}
        [kv] => push_kv(out, kv),
        _ => {
            let mut idx: Vec<usize> = (0..attrs.len()).collect();
            // Stable: among equal keys the last one given stays last.
            idx.sort_by(|&a, &b| attrs[a].key.cmp(&attrs[b].key));
            let mut first = true;
            for (n, &i) in idx.iter().enumerate() {
                if idx
                    .get(n + 1)
                    .is_some_and(|&j| attrs[j].key == attrs[i].key)
                {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                push_kv(out, &attrs[i]);
            }
        }
    }
    out.push(b'}');
}

fn push_kv(out: &mut Vec<u8>, kv: &KeyValue) {
    push_str(out, &kv.key);
    out.push(b':');
    push_value(out, &kv.value);
}

fn push_value(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Str(s) => push_str(out, s),
        AttrValue::Bool(true) => out.extend_from_slice(b"true"),
        AttrValue::Bool(false) => out.extend_from_slice(b"false"),
        AttrValue::Int(i) => done(CompactFormatter.write_i64(out, *i)),
        AttrValue::Double(d) if d.is_finite() => done(CompactFormatter.write_f64(out, *d)),
        AttrValue::Double(d) => push_str(out, &d.to_string()),
        AttrValue::Bytes(b) => {
            out.extend_from_slice(b"{\"bytes_hex\":");
            push_hex_str(out, b);
            out.push(b'}');
        }
        AttrValue::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                push_value(out, item);
            }
            out.push(b']');
        }
        AttrValue::KvList(kvs) => push_attrs(out, kvs),
    }
}

fn push_events(out: &mut Vec<u8>, events: &[SpanEvent]) {
    out.push(b'[');
    for (n, e) in events.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"attributes\":");
        push_attrs(out, &e.attributes);
        out.extend_from_slice(b",\"name\":");
        push_str(out, &e.name);
        out.extend_from_slice(b",\"time_unix_nano\":");
        push_u64_str(out, e.time_unix_nano);
        out.push(b'}');
    }
    out.push(b']');
}

fn push_links(out: &mut Vec<u8>, links: &[SpanLink]) {
    out.push(b'[');
    for (n, l) in links.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"attributes\":");
        push_attrs(out, &l.attributes);
        out.extend_from_slice(b",\"span_id\":");
        push_hex_str(out, &l.span_id);
        out.extend_from_slice(b",\"trace_id\":");
        push_hex_str(out, &l.trace_id);
        out.extend_from_slice(b",\"trace_state\":");
        push_str(out, &l.trace_state);
        out.push(b'}');
    }
    out.push(b']');
}

/// `{"name":...,"version":...}` of a scope.
fn push_scope(out: &mut Vec<u8>, o: &SpanOrigin) {
    out.extend_from_slice(b"{\"name\":");
    push_str(out, &o.scope_name);
    out.extend_from_slice(b",\"version\":");
    push_str(out, &o.scope_version);
    out.push(b'}');
}

/// Attributes, events and links of one row, rendered, as ranges of a buffer.
#[derive(Clone)]
pub(crate) struct ExtraFrags {
    pub attrs: Range<usize>,
    pub events: Range<usize>,
    pub links: Range<usize>,
}

/// Renders row `i`'s extras at the end of `buf`.
fn render_extra(buf: &mut Vec<u8>, b: &ScanBlock, i: usize) -> Result<ExtraFrags> {
    let (attrs, events, links) = b.extra(i)?;
    let a = buf.len();
    push_attrs(buf, &attrs);
    let e = buf.len();
    push_events(buf, &events);
    let l = buf.len();
    push_links(buf, &links);
    let end = buf.len();
    pad(buf);
    Ok(ExtraFrags {
        attrs: a..e,
        events: e..l,
        links: l..end,
    })
}

/// Per-block cache of rendered extras, keyed by their stored bytes (equal bytes, equal values).
#[derive(Default)]
pub(crate) struct ExtraCache {
    buf: Vec<u8>,
    /// Hash of the bytes -> (a row holding them, its renderings).
    by_hash: FxHashMap<u64, (u32, ExtraFrags)>,
    /// The last row served from `buf`: neighbouring rows often have the same extras.
    last: Option<(u32, ExtraFrags)>,
    scratch: Vec<u8>,
}

impl ExtraCache {
    /// Row `i`'s renderings and the buffer they index into.
    pub fn get(&mut self, b: &ScanBlock, i: usize) -> Result<(&[u8], ExtraFrags)> {
        let bytes = b.extra_bytes(i);
        if let Some((row, frags)) = &self.last {
            if b.extra_bytes(*row as usize) == bytes {
                return Ok((&self.buf, frags.clone()));
            }
        }
        let h = fx_hash(bytes);
        if let Some((row, frags)) = self.by_hash.get(&h) {
            if b.extra_bytes(*row as usize) == bytes {
                self.last = Some((*row, frags.clone()));
                return Ok((&self.buf, frags.clone()));
            }
        } else if self.buf.len() < EXTRA_CACHE_BYTES_MAX {
            let frags = render_extra(&mut self.buf, b, i)?;
            self.by_hash.insert(h, (i as u32, frags.clone()));
            self.last = Some((i as u32, frags.clone()));
            return Ok((&self.buf, frags));
        }
        self.scratch.clear();
        let frags = render_extra(&mut self.scratch, b, i)?;
        Ok((&self.scratch, frags))
    }
}

fn fx_hash(bytes: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = rustc_hash::FxBuildHasher.build_hasher();
    h.write(bytes);
    h.write_usize(bytes.len());
    h.finish()
}

/// One rendered dictionary value in one cache line: the bytes, and their length in the last byte
/// ([`LONG`] when they did not fit; the first 16 bytes then hold their range in `StrFrags::long`).
/// Looking a value up is then a single memory access, which matters: rows pick values of large
/// dictionaries (request, session, user ids) at random.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot([u8; SLOT_BYTES]);

const SLOT_BYTES: usize = 64;
/// Dictionaries of at least this many values (32 KiB of slots, a core's L1 data cache; the
/// scan interleaves up to
/// [`SCAN_LIVE_BLOCKS_MAX`](mcp_obs_storage::spans::SCAN_LIVE_BLOCKS_MAX) blocks, so L2 holds
/// little of each) are read ahead of a batch's rows ([`BlockFrags::warm`]).
const WARM_SLOTS_MIN: usize = 512;
const SLOT_DATA: usize = SLOT_BYTES - 1;
const LONG: u8 = u8::MAX;

/// Each distinct value of a string column, rendered as a JSON string.
enum StrFrags {
    /// Slot k renders dictionary entry k (id k + 1).
    Dict { slots: Vec<Slot>, long: Vec<u8> },
    /// A numeric column (request ids): the numbers, rendered per row.
    Num(Vec<Option<u64>>),
}

impl StrFrags {
    fn new(b: &ScanBlock, f: StrField, pool: &SlotPool) -> StrFrags {
        if let Some(nums) = b.str_nums(f) {
            return StrFrags::Num(nums.to_vec());
        }
        let (mut long, mut one) = (Vec::new(), Vec::new());
        let dict = b.str_dict(f);
        let mut slots = pool.take(dict.len());
        slots.extend(dict.map(|s| {
            let mut slot = [0u8; SLOT_BYTES];
            let b = s.as_bytes();
            if b.len() + 2 <= SLOT_DATA && !needs_escape(b) {
                // Most values (ids, names): quoted straight into the slot.
                slot[0] = b'"';
                slot[1..=b.len()].copy_from_slice(b);
                slot[b.len() + 1] = b'"';
                slot[SLOT_DATA] = (b.len() + 2) as u8;
                return Slot(slot);
            }
            one.clear();
            push_str(&mut one, s);
            if one.len() <= SLOT_DATA {
                slot[..one.len()].copy_from_slice(&one);
                slot[SLOT_DATA] = one.len() as u8;
            } else {
                slot[..8].copy_from_slice(&(long.len() as u64).to_le_bytes());
                long.extend_from_slice(&one);
                slot[8..16].copy_from_slice(&(long.len() as u64).to_le_bytes());
                slot[SLOT_DATA] = LONG;
            }
            Slot(slot)
        }));
        StrFrags::Dict { slots, long }
    }

    /// Appends row `i`'s value of field `f`, whose fragments these are (`null` for absent).
    #[inline(always)]
    fn put(&self, out: &mut Vec<u8>, b: &ScanBlock, f: StrField, i: usize) {
        match self {
            StrFrags::Dict { slots, long } => {
                // Only dictionary columns are read by id: a numeric column's dictionary of
                // decimal strings is then never built.
                let id = b.str_id(f, i);
                let Some(Slot(slot)) = id.checked_sub(1).and_then(|k| slots.get(k as usize)) else {
                    out.extend_from_slice(b"null");
                    return;
                };
                match slot[SLOT_DATA] {
                    LONG => {
                        let word = |k: usize| {
                            let mut w = [0u8; 8];
                            w.copy_from_slice(&slot[k..k + 8]);
                            u64::from_le_bytes(w) as usize
                        };
                        out.extend_from_slice(&long[word(0)..word(8)]);
                    }
                    len => {
                        let at = out.len();
                        out.extend_from_slice(&slot[..SLOT_DATA]);
                        out.truncate(at + usize::from(len));
                    }
                }
            }
            StrFrags::Num(nums) => match nums.get(i).copied().flatten() {
                Some(v) => push_u64_str(out, v),
                None => out.extend_from_slice(b"null"),
            },
        }
    }
}

/// The JSON Lines format: one `span_to_json` object per line. With a [`RenderAhead`], a worker
/// thread renders lines of the blocks ahead of the scan, which takes them in order (the same
/// lines: who renders a row does not change its bytes).
#[derive(Default)]
pub struct JsonLines<'a> {
    ahead: Option<&'a RenderAhead>,
    slots: Arc<SlotPool>,
}

impl<'a> JsonLines<'a> {
    /// Every line rendered on the scan's thread.
    pub fn new() -> JsonLines<'a> {
        JsonLines::default()
    }

    /// Lines rendered by `ahead`'s worker too.
    pub fn with_ahead(ahead: &'a RenderAhead) -> JsonLines<'a> {
        JsonLines {
            ahead: Some(ahead),
            ..JsonLines::default()
        }
    }
}

/// Most bytes of dictionary slots one export keeps for reuse between blocks.
const SLOT_POOL_BYTES_MAX: usize = 8 << 20;

/// Slot vectors of blocks done with, for the next blocks of the same export: a block's slots are
/// a few megabytes (64 bytes per distinct value of each string column), allocated block after
/// block, and with the allocator's short purge delay fresh ones are mostly page faults (a
/// quarter of the export's faults before). Shared with the worker, which may drop a block last.
#[derive(Default)]
struct SlotPool {
    spare: parking_lot::Mutex<(Vec<Vec<Slot>>, usize)>,
}

impl SlotPool {
    /// An empty vector with room for `n` slots: the smallest spare one that fits, or a new one.
    fn take(&self, n: usize) -> Vec<Slot> {
        let mut spare = self.spare.lock();
        let (vecs, bytes) = &mut *spare;
        match mcp_obs_storage::bufs::best_fit(vecs, n) {
            Some(v) => {
                *bytes -= v.capacity() * SLOT_BYTES;
                v
            }
            None => Vec::with_capacity(n),
        }
    }

    fn give(&self, mut v: Vec<Slot>) {
        let size = v.capacity() * SLOT_BYTES;
        let mut spare = self.spare.lock();
        let (vecs, bytes) = &mut *spare;
        if *bytes + size <= SLOT_POOL_BYTES_MAX {
            v.clear();
            vecs.push(v);
            *bytes += size;
        }
    }
}

/// A block's rows are rendered in batches: batch k is the rows `order[k * AHEAD_ROWS_MAX..]`, at
/// most [`AHEAD_ROWS_MAX`] of them, cut short after [`AHEAD_BYTES_MAX`] bytes (the scan thread then
/// renders the rest when it gets there). Rendering a block's rows one after another reads its
/// columns in order (the merge interleaves blocks row by row when servers are busy at the same
/// time, which scatters the reads), and a batch is the unit of work shared with the worker. The
/// byte cap holds a whole batch of ordinary rows (about 1 kB each with their attributes): at
/// 128 kB a batch stopped after 126 rows, and the scan thread rendered the other half of every
/// batch itself.
pub const AHEAD_ROWS_MAX: usize = 256;
pub const AHEAD_BYTES_MAX: usize = 512 << 10;

/// Rendered lines of consecutive rows of a block: line k is `lines[ends[k - 1]..ends[k]]` (from
/// 0).
#[derive(Default)]
pub struct Lines {
    lines: Vec<u8>,
    ends: Vec<usize>,
}

impl Lines {
    pub(crate) fn clear(&mut self) {
        self.lines.clear();
        self.ends.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.lines.capacity()
    }

    fn line(&self, k: usize) -> &[u8] {
        let a = if k == 0 { 0 } else { self.ends[k - 1] };
        &self.lines[a..self.ends[k]]
    }

    /// Appends the lines of `rows` of `b`, stopping once [`AHEAD_BYTES_MAX`] bytes are held (so
    /// at least one row is rendered).
    pub(crate) fn render(
        &mut self,
        b: &ScanBlock,
        f: &BlockFrags,
        extras: &mut ExtraCache,
        rows: &[u32],
    ) -> Result<()> {
        f.warm(b, rows);
        for &r in rows {
            if self.lines.len() >= AHEAD_BYTES_MAX {
                break;
            }
            write_row(b, f, extras, r as usize, &mut self.lines)?;
            self.ends.push(self.lines.len());
        }
        Ok(())
    }
}

/// What [`JsonLines`] keeps per block: each distinct value rendered once, and the lines of the
/// next rows of the block, rendered ahead.
pub struct JsonBlock<'a> {
    frags: Arc<BlockFrags>,
    extras: ExtraCache,
    /// The rows still to hand out, in order; `order[next..]` are not in `cur` yet.
    order: Arc<[u32]>,
    next: usize,
    cur: Lines,
    /// Lines of `cur` already handed out.
    served: usize,
    /// The block's job with the worker, if there is one.
    job: Option<(&'a RenderAhead, JobId)>,
}

impl JsonBlock<'_> {
    /// Puts the next lines in `cur` (the previous ones were handed out entirely).
    fn refill(&mut self, b: &ScanBlock) -> Result<()> {
        self.served = 0;
        let batch = self.next / AHEAD_ROWS_MAX;
        if let Some((ahead, id)) = self.job {
            if self.next % AHEAD_ROWS_MAX == 0 && ahead.take(id, batch, &mut self.cur)? {
                self.next += self.cur.len();
                return Ok(());
            }
        }
        // Not shared (no worker, or the rest of a batch cut short): rendered here.
        let end = ((batch + 1) * AHEAD_ROWS_MAX).min(self.order.len());
        self.cur.clear();
        self.cur.render(
            b,
            &self.frags,
            &mut self.extras,
            &self.order[self.next..end],
        )?;
        self.next += self.cur.len();
        Ok(())
    }
}

impl Drop for JsonBlock<'_> {
    fn drop(&mut self) {
        if let Some((ahead, id)) = self.job {
            ahead.forget(id, std::mem::take(&mut self.cur));
        }
    }
}

/// What every row of a block shares, rendered once; read-only, so the worker renders from it too.
pub struct BlockFrags {
    strs: Vec<StrFrags>,
    /// Renderings of the origins: (resource, scope) ranges of `origin_buf` per origin.
    origin_buf: Vec<u8>,
    origins: Vec<(Range<usize>, Range<usize>)>,
    /// Where the slot vectors go back when the block is done.
    pool: Arc<SlotPool>,
}

impl BlockFrags {
    /// Reads the slot of every row of `rows` in each dictionary of at least
    /// [`WARM_SLOTS_MIN`] values, before the rows are rendered. Rows pick such values (session and user
    /// ids) at random, and a cache miss per value stalled the row that made it (a third of the
    /// rendering's samples sat on that load); here the loads are independent of each other, so
    /// their misses overlap, and rendering then finds the slots in cache (a batch's slots take at
    /// most [`AHEAD_ROWS_MAX`] x 64 bytes per dictionary).
    fn warm(&self, b: &ScanBlock, rows: &[u32]) {
        let mut seen = 0u8;
        for (k, frags) in self.strs.iter().enumerate() {
            let StrFrags::Dict { slots, .. } = frags else {
                continue;
            };
            if slots.len() < WARM_SLOTS_MIN {
                continue;
            }
            let f = StrField::ALL[k];
            for &r in rows.iter().take(AHEAD_ROWS_MAX) {
                let id = b.str_id(f, r as usize) as usize;
                if let Some(Slot(slot)) = id.checked_sub(1).and_then(|k| slots.get(k)) {
                    seen ^= slot[SLOT_DATA];
                }
            }
        }
        std::hint::black_box(seen);
    }

    fn new(b: &ScanBlock, pool: &Arc<SlotPool>) -> BlockFrags {
        let mut origin_buf = Vec::new();
        let origins = b
            .origins()
            .iter()
            .map(|o| {
                let a = origin_buf.len();
                push_attrs(&mut origin_buf, &o.resource);
                let m = origin_buf.len();
                push_scope(&mut origin_buf, o);
                (a..m, m..origin_buf.len())
            })
            .collect();
        pad(&mut origin_buf);
        BlockFrags {
            strs: StrField::ALL
                .iter()
                .map(|&f| StrFrags::new(b, f, pool))
                .collect(),
            origin_buf,
            origins,
            pool: Arc::clone(pool),
        }
    }
}

impl Drop for BlockFrags {
    fn drop(&mut self) {
        for f in self.strs.drain(..) {
            if let StrFrags::Dict { slots, .. } = f {
                self.pool.give(slots);
            }
        }
    }
}

/// The MCP fields in the key order of the `mcp` object (sorted), with their keys.
/// Room for each key of [`MCP_KEYS`]: a key is copied as this many bytes, then cut to its length,
/// a fixed-size copy the compiler inlines (the keys' lengths differ, so a loop over plain slices
/// called `memcpy` twelve times per row).
const KEY_PAD: usize = 24;

/// `key` padded to [`KEY_PAD`] bytes, and its length.
const fn padded(key: &[u8]) -> ([u8; KEY_PAD], usize) {
    assert!(key.len() <= KEY_PAD);
    let mut out = [0u8; KEY_PAD];
    let mut i = 0;
    while i < key.len() {
        out[i] = key[i];
        i += 1;
    }
    (out, key.len())
}

const MCP_KEYS: [(StrField, ([u8; KEY_PAD], usize)); 12] = [
    (StrField::ClientName, padded(b"{\"client_name\":")),
    (StrField::ClientVersion, padded(b",\"client_version\":")),
    (StrField::ErrorType, padded(b",\"error_type\":")),
    (StrField::Method, padded(b",\"method\":")),
    (StrField::Prompt, padded(b",\"prompt\":")),
    (StrField::ProtocolVersion, padded(b",\"protocol_version\":")),
    (StrField::RequestId, padded(b",\"request_id\":")),
    (StrField::ResourceUri, padded(b",\"resource_uri\":")),
    (StrField::SessionId, padded(b",\"session_id\":")),
    (StrField::Tool, padded(b",\"tool\":")),
    (StrField::Transport, padded(b",\"transport\":")),
    (StrField::UserId, padded(b",\"user_id\":")),
];

impl<'a> RowFormat for JsonLines<'a> {
    type Prepared = JsonBlock<'a>;

    fn prepare(&mut self, b: &Arc<ScanBlock>, order: &[u32]) -> Result<JsonBlock<'a>> {
        let frags = Arc::new(BlockFrags::new(b, &self.slots));
        let order: Arc<[u32]> = order.into();
        let job = self.ahead.map(|a| {
            let id = a.register(Arc::clone(b), Arc::clone(&frags), Arc::clone(&order));
            (a, id)
        });
        Ok(JsonBlock {
            frags,
            extras: ExtraCache::default(),
            order,
            next: 0,
            cur: Lines::default(),
            served: 0,
            job,
        })
    }

    fn rows(
        &mut self,
        b: &ScanBlock,
        p: &mut JsonBlock<'a>,
        rows: &[u32],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        for &r in rows {
            if p.served == p.cur.len() {
                if p.next == p.order.len() {
                    return Err(out_of_order());
                }
                p.refill(b)?;
            }
            let k = p.served;
            // Line k of `cur` is row `order[next - cur.len() + k]`.
            if p.order[p.next - p.cur.len() + k] != r {
                return Err(out_of_order());
            }
            out.extend_from_slice(p.cur.line(k));
            p.served += 1;
        }
        Ok(())
    }
}

fn out_of_order() -> mcp_obs_storage::StorageError {
    mcp_obs_storage::StorageError::Io(std::io::Error::other(
        "export asked for rows out of the scan order",
    ))
}

/// Room reserved before each row: rows of ordinary spans fit, so the appends below rarely grow.
const ROW_RESERVE_BYTES: usize = 2048;

/// Appends row `i`'s string field `f`.
#[inline(always)]
fn put_str_field(out: &mut Vec<u8>, strs: &[StrFrags], b: &ScanBlock, f: StrField, i: usize) {
    strs[f as usize].put(out, b, f, i);
}

fn write_row(
    b: &ScanBlock,
    p: &BlockFrags,
    extras: &mut ExtraCache,
    i: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.reserve(ROW_RESERVE_BYTES);
    let strs = &p.strs;
    let s = |out: &mut Vec<u8>, f: StrField| put_str_field(out, strs, b, f, i);
    let (xbuf, x) = extras.get(b, i)?;
    let [d_attrs, d_events, d_links] = b.dropped_counts(i);
    let (start, end) = (b.start(i), b.end(i));
    out.extend_from_slice(b"{\"attributes\":");
    put_padded(out, xbuf, &x.attrs);
    out.extend_from_slice(b",\"dropped_attributes_count\":");
    put_digits(out, d_attrs.into());
    out.extend_from_slice(b",\"dropped_events_count\":");
    put_digits(out, d_events.into());
    out.extend_from_slice(b",\"dropped_links_count\":");
    put_digits(out, d_links.into());
    out.extend_from_slice(b",\"duration_ms\":");
    push_ms(out, b.duration_nanos(i));
    out.extend_from_slice(b",\"end_time_unix_nano\":");
    push_u64_str(out, end);
    out.extend_from_slice(match b.env(i) {
        Env::Live => b",\"env\":\"live\",\"events\":",
        Env::Test => b",\"env\":\"test\",\"events\":",
    });
    put_padded(out, xbuf, &x.events);
    out.extend_from_slice(b",\"flags\":");
    put_digits(out, b.flags(i).into());
    out.extend_from_slice(match b.is_error(i) {
        true => b",\"is_error\":true,\"kind\":",
        false => b",\"is_error\":false,\"kind\":",
    });
    out.extend_from_slice(match b.kind(i) {
        1 => b"\"internal\",\"links\":",
        2 => b"\"server\",\"links\":",
        3 => b"\"client\",\"links\":",
        4 => b"\"producer\",\"links\":",
        5 => b"\"consumer\",\"links\":",
        _ => b"\"unspecified\",\"links\":",
    });
    put_padded(out, xbuf, &x.links);
    out.extend_from_slice(b",\"mcp\":");
    // By reference: iterating the array by value copied all of it (12 keys of 24 bytes, their
    // lengths and fields) per row.
    for &(f, (ref key, len)) in &MCP_KEYS {
        let at = out.len();
        out.extend_from_slice(key);
        out.truncate(at + len);
        s(out, f);
    }
    out.extend_from_slice(b"},\"name\":");
    s(out, StrField::Name);
    out.extend_from_slice(b",\"parent_span_id\":");
    let parent = b.parent_span_id(i);
    if *parent == [0; 8] {
        out.extend_from_slice(b"null");
    } else {
        put_hex_quoted(out, parent);
    }
    let (res, scope) = &p.origins[b.origin_id(i)];
    out.extend_from_slice(b",\"resource\":");
    put_padded(out, &p.origin_buf, res);
    out.extend_from_slice(b",\"sample_probability\":");
    push_f64(out, b.sample_probability(i));
    out.extend_from_slice(b",\"scope\":");
    put_padded(out, &p.origin_buf, scope);
    out.extend_from_slice(b",\"server_id\":");
    put_digits(out, b.server().into());
    out.extend_from_slice(b",\"service_name\":");
    s(out, StrField::ServiceName);
    out.extend_from_slice(b",\"span_id\":");
    put_hex_quoted(out, b.span_id(i));
    // The milliseconds are the nanoseconds' digits without the last six: converted once.
    let start_digits = Digits::new(start);
    out.extend_from_slice(b",\"start_time_ms\":");
    start_digits.put(out, 6);
    out.extend_from_slice(b",\"start_time_unix_nano\":\"");
    start_digits.put(out, 0);
    out.push(b'"');
    out.extend_from_slice(match b.status_code(i) {
        1 => b",\"status\":{\"code\":\"ok\",\"message\":",
        2 => b",\"status\":{\"code\":\"error\",\"message\":",
        _ => b",\"status\":{\"code\":\"unset\",\"message\":",
    });
    s(out, StrField::StatusMessage);
    out.extend_from_slice(b"},\"trace_id\":");
    put_hex_quoted(out, b.trace_id(i));
    out.extend_from_slice(b",\"trace_state\":");
    s(out, StrField::TraceState);
    out.extend_from_slice(b"}\n");
    Ok(())
}

#[cfg(test)]
mod scalar_tests {
    use proptest::prelude::*;

    use super::{hex16, push_f64, push_ms, push_str, put_hex_quoted, Digits};

    /// A duration in milliseconds as `span_to_json` gives it to serde_json.
    fn ms_as_serde_json(nanos: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!(nanos as f64 / 1e6)).unwrap()
    }

    fn ms(nanos: u64) -> Vec<u8> {
        let mut out = b"x".to_vec();
        push_ms(&mut out, nanos);
        out.split_off(1)
    }

    /// Edges of every digit count and of the eight-digit groups.
    fn edges() -> Vec<u64> {
        let mut v = vec![0, 1, u64::MAX, u64::MAX - 1];
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            v.extend([p - 1, p, p + 1, next - 1]);
            p = next;
        }
        v
    }

    fn digits(v: u64, drop: usize) -> String {
        let mut out = b"x".to_vec();
        Digits::new(v).put(&mut out, drop);
        String::from_utf8(out[1..].to_vec()).unwrap()
    }

    #[test]
    fn digits_are_itoas_at_every_edge() {
        for v in edges() {
            assert_eq!(digits(v, 0), v.to_string(), "{v}");
            assert_eq!(digits(v, 6), (v / 1_000_000).to_string(), "{v} / 10^6");
        }
    }

    #[test]
    fn hex_digits_are_format_02x() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut cases = vec![
            [0u8; 8],
            [0xff; 8],
            [0x09, 0x0a, 0x90, 0xa0, 0x99, 0xaa, 0x0f, 0xf0],
        ];
        for _ in 0..1000 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            cases.push(rng.to_le_bytes());
        }
        for b in cases {
            let want: String = b.iter().map(|x| format!("{x:02x}")).collect();
            assert_eq!(std::str::from_utf8(&hex16(&b)).unwrap(), want);
            let mut out = Vec::new();
            put_hex_quoted(&mut out, &b);
            assert_eq!(out, format!("\"{want}\"").into_bytes());
            let mut sixteen = [0u8; 16];
            sixteen[..8].copy_from_slice(&b);
            sixteen[8..].copy_from_slice(&b.map(|x| x.rotate_left(3)));
            let want16: String = sixteen.iter().map(|x| format!("{x:02x}")).collect();
            let mut out = Vec::new();
            put_hex_quoted(&mut out, &sixteen);
            assert_eq!(out, format!("\"{want16}\"").into_bytes());
        }
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        // Every byte value that matters at every position of a word and of the tail.
        let specials = [
            '"', '\\', '\u{0}', '\u{1f}', ' ', '\u{7f}', 'é', '\u{2028}', 'a', '\n',
        ];
        for len in 0..20 {
            for at in 0..len {
                for c in specials {
                    let mut s: String = "x".repeat(len);
                    s.replace_range(at..at + 1, &c.to_string());
                    let mut out = Vec::new();
                    push_str(&mut out, &s);
                    assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn durations_render_as_serde_json_does() {
        // Below 10 ns serde_json writes an exponent, from 10^15 ns the float path runs: both
        // sides of both edges, every digit count, whole milliseconds and trailing zeros.
        let mut cases: Vec<u64> = (0..2_000).collect();
        cases.extend(edges());
        for k in 0..=19u32 {
            let p = 10u64.pow(k);
            cases.extend([
                p,
                p + 1,
                p.saturating_mul(7),
                p.saturating_mul(13).saturating_add(p / 2),
            ]);
        }
        cases.extend([
            999_999_999_999_999,
            1_000_000_000_000_000,
            1_500_000,
            123_456,
            1_000_010,
        ]);
        for n in cases {
            assert_eq!(
                String::from_utf8(ms(n)).unwrap(),
                String::from_utf8(ms_as_serde_json(n)).unwrap(),
                "{n} ns"
            );
        }
    }

    #[test]
    fn one_renders_as_serde_json_does() {
        let mut out = Vec::new();
        push_f64(&mut out, 1.0);
        assert_eq!(out, serde_json::to_vec(&serde_json::json!(1.0)).unwrap());
    }

    proptest! {
        #[test]
        fn any_string_escapes_as_serde_json_does(s in "(\\PC|[\\x00-\\x20\"\\\\\\x7f])*") {
            let mut out = b"[".to_vec();
            push_str(&mut out, &s);
            let want = serde_json::to_vec(&s).unwrap();
            prop_assert_eq!(&out[1..], want.as_slice());
        }

        #[test]
        fn any_duration_renders_as_serde_json_does(
            n in any::<u64>(),
            ms_ in 0u64..100_000_000_000_000,
            us in 0u64..10_000_000,
        ) {
            for n in [n, ms_, us, ms_ / 1_000_000 * 1_000_000, us / 1_000 * 1_000] {
                prop_assert_eq!(ms(n), ms_as_serde_json(n), "{} ns", n);
            }
        }

        #[test]
        fn digits_are_itoas(v in any::<u64>(), small in 0u64..100_000_000_000, drop in 0usize..8) {
            for v in [v, small] {
                prop_assert_eq!(digits(v, 0), v.to_string());
                prop_assert_eq!(digits(v, drop), (v / 10u64.pow(drop as u32)).to_string());
            }
        }
    }
}
