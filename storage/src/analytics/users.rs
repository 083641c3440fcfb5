//! The tables that read the users cube (most active users, per-user tool performance, clients
//! and protocol versions), computed together in one pass over its rows: the dashboard shows all
//! of them, and reading the cube is what they cost (about one row per span at high user
//! cardinality), so one pass instead of three is most of their time saved.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use rustc_hash::FxBuildHasher;

use super::pool::{self, Buffers, PairCounts, PairRow};
use super::{rate, ClientRow, ProtocolRow, Query, UserRow, UserToolRow, Window, ROWS_MAX};
use crate::error::{Result, StorageError};
use crate::model::DAY_NANOS;
use crate::rollup::{
    for_each_users_row,
    kmv::{self, DistinctAccumulator},
    sketch::LatencySketch,
    BlobKey, Cube, DimFilter, ScanRange, Side, D_CLIENT, D_CLIENT_VERSION, D_PROTOCOL, D_TOOL,
    D_USER, HOUR_NANOS,
};
use crate::spans::SpanStore;

/// Every table of the users cube for one query and window (what the analytics page shows).
#[derive(Clone, Debug, PartialEq)]
pub struct UserTables {
    pub users: Vec<UserRow>,
    pub user_tools: Vec<UserToolRow>,
    pub clients: Vec<ClientRow>,
    pub protocols: Vec<ProtocolRow>,
}

/// Which tables a pass computes (each costs per-row work beyond reading the row).
#[derive(Clone, Copy, Debug)]
pub(super) struct Want {
    pub users: bool,
    pub user_tools: bool,
    pub clients: bool,
}

/// Most bytes of latency sketches the user x tool table keeps from its one pass over the rows
/// (about 10 bytes per row); past it, it reads the rows a second time for the sketches of the top
/// pairs.
pub(super) const USER_TOOL_SKETCH_BYTES_MAX: usize = 64 << 20;

/// Most (tool, user) cells of the dense user x tool table, 16 bytes each (64 MB). The table
/// holds a cell for every user seen so far under every tool seen, so it is as fast as an array
/// while users x tools is moderate (2,000 x 200 is 400,000 cells); past the cap the pass moves
/// its pairs to a hash map sized by the pairs actually seen.
pub(super) const DENSE_CELLS_MAX: usize = 4 << 20;

/// Most bytes of the clients' distinct-user bitsets (one bit per user id up to the largest id a
/// client saw); a client whose bitset would go past it keeps its users in a hash set instead.
pub(super) const CLIENT_USER_BITS_BYTES_MAX: usize = 16 << 20;

/// The memory caps of one pass (tests lower them to take the fallback paths).
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub sketch_bytes: usize,
    pub dense_cells: usize,
    pub client_bits_bytes: usize,
    /// Parts (threads) a pass may cut its window into; 0: one per core, at most
    /// [`PASS_THREADS_MAX`].
    pub threads: usize,
    /// Least range of a part.
    pub part_nanos_min: u64,
}

pub(super) const LIMITS: Limits = Limits {
    sketch_bytes: USER_TOOL_SKETCH_BYTES_MAX,
    dense_cells: DENSE_CELLS_MAX,
    client_bits_bytes: CLIENT_USER_BITS_BYTES_MAX,
    threads: 0,
    part_nanos_min: PASS_PART_NANOS_MIN,
};

/// Most active users, user x tool, clients and protocol versions (each at most `limit` rows),
/// from one pass over the users cube. Each table equals what its own function answers.
pub fn user_tables(
    store: &SpanStore,
    q: &Query,
    window: &Window,
    limit: usize,
) -> Result<UserTables> {
    let all = Want {
        users: true,
        user_tools: true,
        clients: true,
    };
    pass(store, q, window, limit, all, &LIMITS)
}

/// No id yet.
const NONE: u32 = u32::MAX;

/// The encoded latency sketches of the rows, and (user id, tool id, offset in the bytes) of each.
type Arena = (Vec<u8>, Vec<(u32, u32, u32)>);

/// Ids for strings, in order of first sight.
#[derive(Default)]
pub(super) struct Interner {
    /// Strings of at most `SHORT_BYTES`, keyed by their bytes in the table's own slots: the
    /// pass looks up a few hundred strings per blob (each blob has its own string table), and
    /// comparing a boxed key meant a cache miss and a `memcmp` call per lookup.
    short: HashMap<Short, u32, FxBuildHasher>,
    long: HashMap<Box<str>, u32, FxBuildHasher>,
    strings: Vec<Box<str>>,
}

/// Longest string kept inline in an [`Interner`] key (user ids, tool names and client names are
/// usually shorter).
const SHORT_BYTES: usize = 24;

/// A string of at most [`SHORT_BYTES`] bytes: its bytes zero-padded, and its length (so that
/// strings ending in NUL bytes stay distinct).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Short([u64; SHORT_BYTES / 8], u8);

impl Short {
    #[inline]
    fn of(s: &str) -> Option<Short> {
        let b = s.as_bytes();
        if b.len() > SHORT_BYTES {
            return None;
        }
        let mut words = [0u64; SHORT_BYTES / 8];
        // Whole words as loads, the tail byte by byte: a copy of variable length would be a
        // `memcpy` call per word.
        let chunks = b.chunks_exact(8);
        let tail = chunks.remainder();
        let n = chunks.len();
        for (w, chunk) in words.iter_mut().zip(chunks) {
            *w = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        }
        if let Some(w) = words.get_mut(n) {
            for (i, &c) in tail.iter().enumerate() {
                *w |= u64::from(c) << (8 * i);
            }
        }
        Some(Short(words, b.len() as u8))
    }
}

impl Interner {
    pub(super) fn id(&mut self, s: &str) -> Result<u32> {
        let short = Short::of(s);
        let found = match &short {
            Some(k) => self.short.get(k),
            None => self.long.get(s),
        };
        if let Some(&i) = found {
            return Ok(i);
        }
        let i = u32::try_from(self.strings.len())
            .ok()
            .filter(|&i| i != NONE)
            .ok_or_else(|| StorageError::Invalid("too many distinct values".into()))?;
        match short {
            Some(k) => self.short.insert(k, i),
            None => self.long.insert(s.into(), i),
        };
        self.strings.push(s.into());
        Ok(i)
    }

    pub(super) fn get(&self, i: u32) -> &str {
        &self.strings[i as usize]
    }

    fn len(&self) -> usize {
        self.strings.len()
    }

    /// Each id's position in the order of the strings (so ids compare as their strings do).
    fn ranks(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.strings.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.get(a).cmp(self.get(b)));
        let mut rank = vec![0u32; order.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i as usize] = r as u32;
        }
        rank
    }
}

/// One numbering of strings, and its ids by string-table position for the current blob (rows
/// of one blob share a string table, so each position is looked up by its string once per blob).
#[derive(Default)]
struct Ids {
    interner: Interner,
    /// String-table position -> id for the current blob (`NONE`: not looked up yet).
    local: Vec<u32>,
}

impl Ids {
    fn new_blob(&mut self) {
        self.local.clear();
    }

    /// The id of the string at 1-based position `pos` of `strings` (0: absent).
    #[inline]
    fn of(&mut self, strings: &[&str], pos: u32) -> Result<Option<u32>> {
        if pos == 0 {
            return Ok(None);
        }
        let p = pos as usize;
        if p >= self.local.len() {
            self.local.resize(strings.len() + 1, NONE);
        }
        if self.local[p] == NONE {
            self.local[p] = self.interner.id(strings[p - 1])?;
        }
        Ok(Some(self.local[p]))
    }
}

#[derive(Default)]
struct UserAcc {
    calls: f64,
    errors: f64,
    last: u64,
    tools: u64,
}

/// The (user, tool) pairs' (calls, errors), summed in row order.
enum Pairs {
    /// Per tool id, a cell per user id (and a bit per user id: seen under this tool).
    Dense {
        cells: Vec<Vec<[f64; 2]>>,
        seen: Vec<Vec<u64>>,
        n_cells: usize,
    },
    Sparse(HashMap<(u32, u32), [f64; 2], FxBuildHasher>),
}

impl Pairs {
    /// Adds the rows of one blob, (user id, tool id, calls, errors) each, in row order.
    /// `users_known` sizes a tool's new cells (every user seen so far, so that a tool's cells
    /// rarely grow twice); `cells_max` caps the dense table.
    ///
    /// A blob's rows are added after it is read, in this tight loop, rather than one by one
    /// while decoding: at this pass's sizes each cell is a cache miss (an hour blob has about
    /// one row per tool), and only a loop with little work per row lets the processor have many
    /// of those misses in flight at once.
    fn add_all(&mut self, rows: &[PairRow], users_known: usize, cells_max: usize) {
        for (i, &(u, t, calls, errors)) in rows.iter().enumerate() {
            let (ui, ti) = (u as usize, t as usize);
            match self {
                Pairs::Dense { cells, seen, .. } if ti < cells.len() && ui < cells[ti].len() => {
                    let c = &mut cells[ti][ui];
                    c[0] += calls;
                    c[1] += errors;
                    seen[ti][ui / 64] |= 1 << (ui % 64);
                }
                Pairs::Dense { .. } => {
                    if !self.grow(ui, ti, users_known, cells_max) {
                        self.make_sparse();
                        return self.add_all(&rows[i..], users_known, cells_max);
                    }
                    let Pairs::Dense { cells, seen, .. } = self else {
                        unreachable!("grow keeps the table dense")
                    };
                    let c = &mut cells[ti][ui];
                    c[0] += calls;
                    c[1] += errors;
                    seen[ti][ui / 64] |= 1 << (ui % 64);
                }
                Pairs::Sparse(map) => {
                    let c = map.entry((u, t)).or_insert([0.0; 2]);
                    c[0] += calls;
                    c[1] += errors;
                }
            }
        }
    }

    /// Makes room for cell (`ti`, `ui`) in the dense table; false if that would pass `cells_max`.
    #[cold]
    fn grow(&mut self, ui: usize, ti: usize, users_known: usize, cells_max: usize) -> bool {
        let Pairs::Dense {
            cells,
            seen,
            n_cells,
        } = self
        else {
            return false;
        };
        if ti >= cells.len() {
            cells.resize_with(ti + 1, Vec::new);
            seen.resize_with(ti + 1, Vec::new);
        }
        let have = cells[ti].len();
        let len = (ui + 1).max(users_known);
        if *n_cells + (len - have) > cells_max {
            return false;
        }
        *n_cells += len - have;
        cells[ti].resize(len, [0.0; 2]);
        seen[ti].resize(len.div_ceil(64), 0);
        true
    }

    fn make_sparse(&mut self) {
        let mut counts = Vec::new();
        self.counts_into(&mut counts);
        let mut map = HashMap::with_capacity_and_hasher(counts.len(), FxBuildHasher);
        map.extend(counts.into_iter().map(|(k, (c, e))| (k, [c, e])));
        *self = Pairs::Sparse(map);
    }

    /// Appends every pair seen to `out`, in no particular order.
    fn counts_into(&self, out: &mut Vec<PairCounts>) {
        match self {
            Pairs::Dense { cells, seen, .. } => {
                for (t, (cells, seen)) in cells.iter().zip(seen).enumerate() {
                    for (w, &word) in seen.iter().enumerate() {
                        let mut bits = word;
                        while bits != 0 {
                            let u = w * 64 + bits.trailing_zeros() as usize;
                            bits &= bits - 1;
                            let [c, e] = cells[u];
                            out.push(((u as u32, t as u32), (c, e)));
                        }
                    }
                }
            }
            Pairs::Sparse(map) => out.extend(map.iter().map(|(&k, &[c, e])| (k, (c, e)))),
        }
    }

    /// Hands the dense table's vectors to `b` (to be pooled); a sparse table has none.
    fn into_buffers(self, b: &mut Buffers) {
        if let Pairs::Dense { cells, seen, .. } = self {
            b.cells = cells;
            b.seen = seen;
        }
    }
}

/// A client's distinct users (ids): a bitset while the pass's bitsets fit their cap, else a
/// hash set.
enum UserSet {
    Bits(Vec<u64>),
    Hash(HashSet<u32, FxBuildHasher>),
}

impl UserSet {
    /// `bits_bytes`: what every client's bitsets take now, kept under `bits_bytes_max`.
    #[inline]
    fn insert(&mut self, u: u32, bits_bytes: &mut usize, bits_bytes_max: usize) {
        match self {
            UserSet::Bits(words) => {
                let w = u as usize / 64;
                if w >= words.len() {
                    let grow = (w + 1 - words.len()) * 8;
                    if *bits_bytes + grow > bits_bytes_max {
                        *bits_bytes -= words.len() * 8;
                        let mut set: HashSet<u32, FxBuildHasher> = self.ids().collect();
                        set.insert(u);
                        *self = UserSet::Hash(set);
                        return;
                    }
                    *bits_bytes += grow;
                    words.resize(w + 1, 0);
                }
                words[w] |= 1 << (u % 64);
            }
            UserSet::Hash(set) => {
                set.insert(u);
            }
        }
    }

    fn ids(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        match self {
            UserSet::Bits(words) => Box::new(words.iter().enumerate().flat_map(|(w, &word)| {
                (0..64u32)
                    .filter(move |b| word >> b & 1 == 1)
                    .map(move |b| w as u32 * 64 + b)
            })),
            UserSet::Hash(set) => Box::new(set.iter().copied()),
        }
    }
}

struct ClientAcc {
    calls: f64,
    errors: f64,
    last: u64,
    users: UserSet,
}

/// Most threads one pass splits its range over. Parts are merged by string, so a part costs a
/// merge of its users, tools and pairs (cheap next to reading the rows it covers).
pub(super) const PASS_THREADS_MAX: usize = 4;
/// Least range a part of a pass covers: a day of hour blobs (24 string tables and their rows);
/// shorter ranges are read on the calling thread alone.
pub(super) const PASS_PART_NANOS_MIN: u64 = DAY_NANOS;

/// What one part of a pass (a sub-range of its window, on its own thread) has summed: users,
/// tools and clients numbered in its own order of first sight.
struct Part<'l> {
    want: Want,
    limits: &'l Limits,
    // Users and tools are each numbered densely (they index `users` and the pair cells);
    // client names, client versions and protocol versions share a third numbering.
    user_ids: Ids,
    tool_ids: Ids,
    other_ids: Ids,
    /// Indexed by user id.
    users: Vec<UserAcc>,
    pairs: Pairs,
    /// The current blob's (user, tool, calls, errors), added to `pairs` once it is read.
    blob_pairs: Vec<PairRow>,
    /// `None` once over the cap. Empty unless `want.user_tools`.
    arena: Option<Arena>,
    /// Where `pairs` are listed when the part is merged or done (a pooled buffer).
    counts: Vec<PairCounts>,
    /// (client name id, client version id) -> index in `clients`; rows sorted by dimensions
    /// come in runs of one client, hence the last one looked up is kept.
    client_index: HashMap<(u32, u32), usize, FxBuildHasher>,
    clients: Vec<((u32, u32), ClientAcc)>,
    last_client: Option<((u32, u32), usize)>,
    bits_bytes: usize,
    protocols: HashMap<u32, (f64, u64), FxBuildHasher>,
}

impl<'l> Part<'l> {
    /// A part that sums into `b`'s vectors (from the pool, empty).
    fn new(want: Want, limits: &'l Limits, b: Buffers) -> Part<'l> {
        let Buffers {
            cells,
            seen,
            sketch_bytes,
            sketch_refs,
            rows,
            counts,
        } = b;
        Part {
            want,
            limits,
            user_ids: Ids::default(),
            tool_ids: Ids::default(),
            other_ids: Ids::default(),
            users: Vec::new(),
            pairs: Pairs::Dense {
                cells,
                seen,
                n_cells: 0,
            },
            blob_pairs: rows,
            arena: Some((sketch_bytes, sketch_refs)),
            counts,
            client_index: HashMap::default(),
            clients: Vec::new(),
            last_client: None,
            bits_bytes: 0,
            protocols: HashMap::default(),
        }
    }

    /// Adds the rows of one users-cube blob that match `filter` and `side`.
    fn blob(
        &mut self,
        bk: &BlobKey,
        bytes: &[u8],
        filter: &DimFilter<'_>,
        side: Side,
    ) -> Result<()> {
        let want = self.want;
        let per_user = want.users || want.user_tools;
        self.user_ids.new_blob();
        self.tool_ids.new_blob();
        self.other_ids.new_blob();
        self.blob_pairs.clear();
        for_each_users_row(bytes, bk.start_unix_nano(), filter, |strings, row| {
            if row.side != side {
                return Ok(());
            }
            let user = if per_user || want.clients {
                self.user_ids.of(strings, row.ids[D_USER])?
            } else {
                None
            };
            if let (true, Some(u)) = (per_user, user) {
                if want.users {
                    self.user(u, row.calls, row.errors, row.last_unix_nano);
                }
                if let Some(t) = self.tool_ids.of(strings, row.ids[D_TOOL])? {
                    self.blob_pairs.push((u, t, row.calls, row.errors));
                    if want.user_tools {
                        self.sketch(u, t, row.latency);
                    }
                }
            }
            if want.clients {
                let key = (
                    self.other_ids
                        .of(strings, row.ids[D_CLIENT])?
                        .unwrap_or(NONE),
                    self.other_ids
                        .of(strings, row.ids[D_CLIENT_VERSION])?
                        .unwrap_or(NONE),
                );
                let protocol = self
                    .other_ids
                    .of(strings, row.ids[D_PROTOCOL])?
                    .unwrap_or(NONE);
                self.client(
                    key,
                    protocol,
                    row.calls,
                    row.errors,
                    row.last_unix_nano,
                    user,
                );
            }
            Ok(())
        })?;
        let known = self.user_ids.interner.len();
        self.pairs
            .add_all(&self.blob_pairs, known, self.limits.dense_cells);
        Ok(())
    }

    #[inline]
    fn user(&mut self, u: u32, calls: f64, errors: f64, last: u64) {
        let i = u as usize;
        if i >= self.users.len() {
            self.users.resize_with(i + 1, UserAcc::default);
        }
        let a = &mut self.users[i];
        a.calls += calls;
        a.errors += errors;
        a.last = a.last.max(last);
    }

    /// Keeps the encoded latency sketch of a (user, tool) row, while the arena is under its cap.
    #[inline]
    fn sketch(&mut self, u: u32, t: u32, latency: &[u8]) {
        if let Some((bytes, refs)) = self.arena.as_mut() {
            if bytes.len() + latency.len() > self.limits.sketch_bytes {
                self.arena = None;
            } else {
                refs.push((u, t, bytes.len() as u32));
                bytes.extend_from_slice(latency);
            }
        }
    }

    fn client(
        &mut self,
        key: (u32, u32),
        protocol: u32,
        calls: f64,
        errors: f64,
        last: u64,
        user: Option<u32>,
    ) {
        let i = match self.last_client {
            Some((k, i)) if k == key => i,
            _ => {
                let i = self.client_slot(key);
                self.last_client = Some((key, i));
                i
            }
        };
        let c = &mut self.clients[i].1;
        c.calls += calls;
        c.errors += errors;
        c.last = c.last.max(last);
        if let Some(u) = user {
            c.users
                .insert(u, &mut self.bits_bytes, self.limits.client_bits_bytes);
        }
        let p = self.protocols.entry(protocol).or_insert((0.0, 0));
        p.0 += calls;
        p.1 = p.1.max(last);
    }

    /// The index in `clients` of (client name id, client version id), added empty if new.
    fn client_slot(&mut self, key: (u32, u32)) -> usize {
        let clients = &mut self.clients;
        *self.client_index.entry(key).or_insert_with(|| {
            clients.push((
                key,
                ClientAcc {
                    calls: 0.0,
                    errors: 0.0,
                    last: 0,
                    users: UserSet::Bits(Vec::new()),
                },
            ));
            clients.len() - 1
        })
    }

    /// Adds what `other` (a later part of the same window) summed, renumbering its users, tools
    /// and other strings into this part's ids.
    fn absorb(&mut self, mut other: Part<'_>) -> Result<()> {
        let remap = |mine: &mut Ids, theirs: &Ids| -> Result<Vec<u32>> {
            (0..theirs.interner.len() as u32)
                .map(|i| mine.interner.id(theirs.interner.get(i)))
                .collect()
        };
        let users = remap(&mut self.user_ids, &other.user_ids)?;
        let tools = remap(&mut self.tool_ids, &other.tool_ids)?;
        let others = remap(&mut self.other_ids, &other.other_ids)?;
        let o = |i: u32| if i == NONE { NONE } else { others[i as usize] };
        for (u, a) in std::mem::take(&mut other.users).into_iter().enumerate() {
            if a.calls != 0.0 || a.errors != 0.0 || a.last != 0 {
                self.user(users[u], a.calls, a.errors, a.last);
            }
        }
        let known = self.user_ids.interner.len();
        other.pairs.counts_into(&mut other.counts);
        self.blob_pairs.clear();
        self.blob_pairs.extend(
            other
                .counts
                .iter()
                .map(|&((u, t), (c, e))| (users[u as usize], tools[t as usize], c, e)),
        );
        self.pairs
            .add_all(&self.blob_pairs, known, self.limits.dense_cells);
        self.arena = match (self.arena.take(), other.arena.as_ref()) {
            (Some((mut bytes, mut refs)), Some((more, more_refs)))
                if bytes.len() + more.len() <= self.limits.sketch_bytes =>
            {
                let base = bytes.len() as u32;
                bytes.extend_from_slice(more);
                refs.extend(
                    more_refs
                        .iter()
                        .map(|&(u, t, off)| (users[u as usize], tools[t as usize], base + off)),
                );
                Some((bytes, refs))
            }
            _ => None,
        };
        // Protocols are summed per client row, so they move with the clients.
        for (&version, &(calls, last)) in &other.protocols {
            let p = self.protocols.entry(o(version)).or_insert((0.0, 0));
            p.0 += calls;
            p.1 = p.1.max(last);
        }
        self.last_client = None;
        for ((name, version), a) in std::mem::take(&mut other.clients) {
            let key = (o(name), o(version));
            let i = self.client_slot(key);
            let c = &mut self.clients[i].1;
            c.calls += a.calls;
            c.errors += a.errors;
            c.last = c.last.max(a.last);
            for u in a.users.ids() {
                c.users.insert(
                    users[u as usize],
                    &mut self.bits_bytes,
                    self.limits.client_bits_bytes,
                );
            }
        }
        other.recycle();
        Ok(())
    }

    /// Gives this part's large buffers back to the pool.
    fn recycle(self) {
        recycle(self.pairs, self.blob_pairs, self.counts, self.arena);
    }
}

/// Gives a pass's large buffers back to the pool.
fn recycle(pairs: Pairs, rows: Vec<PairRow>, counts: Vec<PairCounts>, arena: Option<Arena>) {
    let mut b = Buffers {
        rows,
        counts,
        ..Buffers::default()
    };
    pairs.into_buffers(&mut b);
    if let Some((bytes, refs)) = arena {
        (b.sketch_bytes, b.sketch_refs) = (bytes, refs);
    }
    pool::give(b);
}

/// `range` cut into at most `parts` consecutive pieces of at least `piece_nanos_min` each, at
/// hour boundaries where the range is long enough (a blob belongs to the piece its start is in,
/// so the pieces read every blob exactly once wherever the cuts fall).
fn split(range: ScanRange, parts: usize, piece_nanos_min: u64) -> Vec<ScanRange> {
    let len = range.to_unix_nano.saturating_sub(range.from_unix_nano);
    let n = (len / piece_nanos_min.max(1)).clamp(1, parts.max(1) as u64);
    let align = if len / n >= HOUR_NANOS { HOUR_NANOS } else { 1 };
    let mut out = Vec::with_capacity(n as usize);
    let mut from = range.from_unix_nano;
    for k in 1..n {
        let cut = range.from_unix_nano + len / n * k;
        let cut = (cut - cut % align).max(from);
        out.push(ScanRange {
            from_unix_nano: from,
            to_unix_nano: cut,
        });
        from = cut;
    }
    out.push(ScanRange {
        from_unix_nano: from,
        to_unix_nano: range.to_unix_nano,
    });
    out.retain(|r| r.from_unix_nano < r.to_unix_nano);
    out
}

/// Threads a pass may use: the machine's cores, at most [`PASS_THREADS_MAX`].
fn pass_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(PASS_THREADS_MAX)
}

/// The tables of `want` (the others come back empty) in one pass over the users cube, within
/// `limits` (tests lower them to take the fallbacks).
///
/// A window of several days is cut into parts read on their own threads (one per core, at most
/// [`PASS_THREADS_MAX`]) and merged in time order: the pass is most of the analytics page's
/// time, and its blobs are independent.
pub(super) fn pass(
    store: &SpanStore,
    q: &Query,
    window: &Window,
    limit: usize,
    want: Want,
    limits: &Limits,
) -> Result<UserTables> {
    let limit = limit.min(ROWS_MAX);
    let filter = q.filter();
    let side = q.side;
    let read = |range: ScanRange, buffers: Buffers| -> Result<Part<'_>> {
        let mut part = Part::new(want, limits, buffers);
        q.scan_users_blobs_in(store, range, &mut |bk, bytes| {
            part.blob(bk, bytes, &filter, side)
        })?;
        Ok(part)
    };
    let threads = match limits.threads {
        0 => pass_threads(),
        n => n,
    };
    let mut ranges = split(q.clamped(window), threads, limits.part_nanos_min);
    if ranges.is_empty() {
        ranges.push(q.clamped(window));
    }
    // The first part (the largest pooled set) absorbs the others.
    let mut buffers = pool::take(ranges.len()).into_iter();
    let first = buffers.next().unwrap_or_default();
    let parts: Vec<Result<Part<'_>>> = if ranges.len() > 1 {
        std::thread::scope(|s| {
            let handles: Vec<_> = ranges[1..]
                .iter()
                .zip(buffers)
                .map(|(&r, b)| s.spawn(move || read(r, b)))
                .collect();
            let mut parts = vec![read(ranges[0], first)];
            for h in handles {
                parts.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            parts
        })
    } else {
        vec![read(ranges[0], first)]
    };
    let mut parts = parts.into_iter();
    let mut acc = parts.next().expect("one part at least")?;
    for p in parts {
        acc.absorb(p?)?;
    }
    let Part {
        user_ids,
        tool_ids,
        other_ids,
        mut users,
        pairs,
        blob_pairs,
        arena,
        mut counts,
        clients,
        protocols,
        ..
    } = acc;
    pairs.counts_into(&mut counts);
    let (user_names, tool_names, others) =
        (&user_ids.interner, &tool_ids.interner, &other_ids.interner);
    let opt = |i: u32| (i != NONE).then(|| others.get(i).to_owned());
    let users = if want.users {
        // A user's distinct tools are its pairs.
        for &((u, _), _) in &counts {
            users[u as usize].tools += 1;
        }
        top_users(user_names, users, limit)
    } else {
        Vec::new()
    };
    let user_tools = if want.user_tools {
        top_pairs(
            store,
            q,
            window,
            limit,
            (user_names, tool_names),
            &counts,
            arena.as_ref(),
        )?
    } else {
        Vec::new()
    };
    recycle(pairs, blob_pairs, counts, arena);
    let mut c: Vec<ClientRow> = clients
        .into_iter()
        .map(|((name, version), a)| {
            // The same estimate as merging the users one by one: a KMV sketch of a set does not
            // depend on the order or repetition of its inserts.
            let mut d = DistinctAccumulator::new();
            for u in a.users.ids() {
                d.insert(kmv::hash_str(user_names.get(u)));
            }
            ClientRow {
                name: opt(name),
                version: opt(version),
                calls: a.calls,
                errors: a.errors,
                users: d.estimate(),
                last_unix_nano: a.last,
            }
        })
        .collect();
    c.sort_by(|a, b| {
        rank_key(b.calls)
            .cmp(&rank_key(a.calls))
            .then_with(|| (&a.name, &a.version).cmp(&(&b.name, &b.version)))
    });
    c.truncate(limit);
    let mut p: Vec<ProtocolRow> = protocols
        .into_iter()
        .map(|(version, (calls, last))| ProtocolRow {
            version: opt(version),
            calls,
            last_unix_nano: last,
        })
        .collect();
    p.sort_by(|a, b| {
        rank_key(b.calls)
            .cmp(&rank_key(a.calls))
            .then_with(|| a.version.cmp(&b.version))
    });
    p.truncate(limit);
    Ok(UserTables {
        users,
        user_tools,
        clients: c,
        protocols: p,
    })
}

/// Weighted calls as the tables rank them: in millionths of a call. Weighted sums of the same
/// rows added in another order (a pass cut into parts, each part's sums added at the end) differ
/// in their last bits; ranking the exact floats would reorder ties (most rows have the same few
/// calls) by those bits, and the tables would depend on how many cores the machine has.
fn rank_key(calls: f64) -> i64 {
    (calls * 1e6).round() as i64
}

/// Users by weighted calls, most first (ties by name).
fn top_users(names: &Interner, users: Vec<UserAcc>, limit: usize) -> Vec<UserRow> {
    let mut rows: Vec<UserRow> = users
        .into_iter()
        .enumerate()
        .map(|(u, a)| UserRow {
            user: names.get(u as u32).to_owned(),
            calls: a.calls,
            errors: a.errors,
            error_rate: rate(a.errors, a.calls),
            tools: a.tools,
            last_unix_nano: a.last,
        })
        .collect();
    rows.sort_by(|a, b| {
        rank_key(b.calls)
            .cmp(&rank_key(a.calls))
            .then_with(|| a.user.cmp(&b.user))
    });
    rows.truncate(limit);
    rows
}

/// The top `limit` (user, tool) pairs of `counts`, with the p95 of each: only the sketches of the
/// pairs that made the cut are decoded and merged, from `arena` or, when it went over its cap,
/// from a second pass over the rows.
fn top_pairs(
    store: &SpanStore,
    q: &Query,
    window: &Window,
    limit: usize,
    (users, tools): (&Interner, &Interner),
    counts: &[PairCounts],
    arena: Option<&Arena>,
) -> Result<Vec<UserToolRow>> {
    let name = |i: u32| {
        let (u, t) = counts[i as usize].0;
        (users.get(u), tools.get(t))
    };
    // Ties (most pairs have the same few calls) are broken by (user, tool) name: compared as
    // ranks of the names, which order as the names do, instead of comparing strings.
    let (user_rank, tool_rank) = (users.ranks(), tools.ranks());
    // The best `limit` in a heap whose top is the worst kept (pairs can be as many as rows, so
    // they are not all listed and sorted): a key orders most calls first, then by the names.
    let mut best: BinaryHeap<(Reverse<i64>, u32, u32, u32)> = BinaryHeap::with_capacity(limit);
    for (i, &((u, t), (calls, _))) in counts.iter().enumerate() {
        let key = (
            Reverse(rank_key(calls)),
            user_rank[u as usize],
            tool_rank[t as usize],
            i as u32,
        );
        if best.len() < limit {
            best.push(key);
        } else if let Some(mut worst) = best.peek_mut() {
            if key < *worst {
                *worst = key;
            }
        }
    }
    let top: Vec<u32> = best.into_sorted_vec().into_iter().map(|k| k.3).collect();
    // (user id, tool id) -> its slot in `top`.
    let slot: HashMap<(u32, u32), usize, FxBuildHasher> = top
        .iter()
        .enumerate()
        .map(|(s, &p)| (counts[p as usize].0, s))
        .collect();
    let mut sketches: Vec<LatencySketch> = vec![LatencySketch::default(); top.len()];
    let merge = |s: &mut LatencySketch, mut bytes: &[u8]| -> Result<()> {
        let other = LatencySketch::decode(&mut bytes)
            .map_err(|e| StorageError::Corrupt(format!("latency sketch: {e}")))?;
        s.merge(&other);
        Ok(())
    };
    match arena {
        _ if top.is_empty() => {}
        Some((bytes, refs)) => {
            for &(u, t, off) in refs {
                if let Some(&s) = slot.get(&(u, t)) {
                    merge(&mut sketches[s], &bytes[off as usize..])?;
                }
            }
        }
        None => {
            // Over the cap: read the rows again, for the top pairs only.
            let by_name: HashMap<(&str, &str), usize, FxBuildHasher> =
                top.iter().enumerate().map(|(s, &p)| (name(p), s)).collect();
            q.scan_rows(store, window, Cube::Users, true, &mut |_, row| {
                let (Some(user), Some(tool)) = (row.dims.v[D_USER], row.dims.v[D_TOOL]) else {
                    return Ok(());
                };
                match by_name.get(&(user, tool)) {
                    Some(&s) => merge(&mut sketches[s], row.latency),
                    None => Ok(()),
                }
            })?;
        }
    }
    Ok(top
        .iter()
        .zip(sketches)
        .map(|(&p, sketch)| {
            let (user, tool) = name(p);
            let (calls, errors) = counts[p as usize].1;
            UserToolRow {
                user: user.to_owned(),
                tool: tool.to_owned(),
                calls,
                errors,
                error_rate: rate(errors, calls),
                p95_nanos: sketch.quantile(0.95),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::Interner;

    #[test]
    fn interner_ids_are_by_string_inline_or_not() {
        let strings = [
            "a",
            "a\0",
            "",
            "exactly-twenty-four-byte",
            "exactly-twenty-four-bytes",
            "exactly-twenty-four-byt\0",
            "ünïcode",
        ];
        let mut i = Interner::default();
        let ids: Vec<u32> = strings.iter().map(|s| i.id(s).unwrap()).collect();
        assert_eq!(ids, (0..strings.len() as u32).collect::<Vec<_>>());
        for (s, id) in strings.iter().zip(&ids) {
            assert_eq!(i.id(s).unwrap(), *id, "{s:?} again");
            assert_eq!(i.get(*id), *s);
        }
        let ranks = i.ranks();
        for a in 0..strings.len() {
            for b in 0..strings.len() {
                assert_eq!(ranks[a].cmp(&ranks[b]), strings[a].cmp(strings[b]));
            }
        }
    }
}
