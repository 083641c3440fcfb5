//! Rollup deltas of one append: the batch's MCP request spans aggregated per minute blob in memory,
//! then written as delta blobs (or merged into the stored blobs) inside the append's transaction;
//! afterwards kept with owned strings ([`OwnedDeltas`]) until a merge sums many appends' deltas
//! ([`DeltaSum`]) without decoding them back.
//!
//! Aggregation is the writer thread's per-span cost, so each span's seven dimension strings are
//! interned once (a string equal to the previous span's in the same slot skips even the hash),
//! rows are keyed by the ids, and the span's latency bucket and distinct hashes are computed once
//! for its three destinations (tools row, tools totals, users row); latency keys and the totals'
//! session hashes are gathered and put into their sketches once per batch (`Delta::settle`), and
//! a merge sums the appends' latency sketches the same way ([`SketchSum`]), with the same sums bit
//! for bit. Encoding maps ids to the blob's sorted string table, producing exactly the bytes
//! [`Blob::encode`] would.

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableTable, WriteTransaction};
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::blob::{
    encode_head, encode_row, error_type_of, merge_totals, Blob, Dims, Distinct, SpanFacts, Stats,
    DIMS, D_USER,
};
use super::kmv::DistinctAccumulator;
use super::sketch::SketchSum;
use super::{
    counts, delta_key, minute_of, weight_of, BlobKey, Cube, Res, Side, ROLLUPS, ROLLUP_DELTAS,
};
use crate::error::Result;
use crate::model::{Env, OrgId, ServerId, SpanRecord};

/// The batch's distinct dimension strings: id `k` is `strings[k - 1]`, 0 is absent.
#[derive(Default)]
struct Interner<'a> {
    strings: Vec<&'a str>,
    index: FxHashMap<&'a str, u32>,
    /// Per dimension slot, the last value looked up and its id: runs of one value (method, client,
    /// protocol) are the common case.
    last: [Option<(&'a str, u32)>; DIMS],
}

impl<'a> Interner<'a> {
    fn id(&mut self, slot: usize, v: Option<&'a str>) -> u32 {
        let Some(v) = v else { return 0 };
        if let Some((l, id)) = self.last[slot] {
            if crate::codec::same_str(l, v) {
                return id;
            }
        }
        let strings = &mut self.strings;
        let id = *self.index.entry(v).or_insert_with(|| {
            strings.push(v);
            strings.len() as u32
        });
        self.last[slot] = Some((v, id));
        id
    }

    fn get(&self, id: u32) -> Option<&'a str> {
        (id != 0).then(|| self.strings[id as usize - 1])
    }
}

/// A row's dimensions as interned ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct RowKey {
    side: Side,
    ids: [u32; DIMS],
}

/// The delta of one blob (one append's, or a [`DeltaSum`]'s sum of many): its rows (statistics in
/// first-appearance order, found by key through `index`) and (tools cube) totals per side.
///
/// Latencies are summed apart while spans (or appends' rows) are added, per row (`latency`, by row
/// index) and per total, and put into the statistics' sketches by [`Delta::settle`]: inserting
/// each span's key into a sorted sketch was about a third of adding a span to its three
/// destinations, and each append's keys most of a merge.
#[derive(Default)]
struct Delta {
    index: FxHashMap<RowKey, u32>,
    rows: Vec<(RowKey, Stats)>,
    totals: [Option<Stats>; 2],
    latency: Vec<SketchSum>,
    totals_latency: [SketchSum; 2],
    /// Per side, the totals' session hashes, gathered and put into their sketch by
    /// [`Delta::settle`]: a batch's totals see hundreds of sessions, and inserting each into the
    /// sorted sketch cost more than the rest of the totals' update.
    totals_sessions: [DistinctAccumulator; 2],
}

impl Delta {
    fn row(&mut self, key: RowKey) -> (&mut Stats, &mut SketchSum) {
        let (rows, latency) = (&mut self.rows, &mut self.latency);
        let i = *self.index.entry(key).or_insert_with(|| {
            rows.push((key, Stats::default()));
            latency.push(SketchSum::default());
            rows.len() as u32 - 1
        });
        (&mut rows[i as usize].1, &mut latency[i as usize])
    }

    /// Adds a span to the totals of `side`.
    fn total(&mut self, side: Side, facts: &SpanFacts) {
        let side = side as usize;
        // As `Distinct::SessionsAndUsers` would, sessions through the accumulator (a batch has
        // a few dozen users, whose hashes the sketch mostly finds already there).
        let total = self.totals[side].get_or_insert_with(Stats::default);
        total.add_facts_but_latency(facts, Distinct::None);
        if let Some(h) = facts.user_hash {
            total.users.insert(h);
        }
        self.totals_latency[side].add_key(facts.latency_key, facts.weight);
        if let Some(h) = facts.session_hash {
            self.totals_sessions[side].insert(h);
        }
    }

    /// Puts the latencies summed so far into the rows' and totals' sketches.
    fn settle(&mut self) {
        for ((_, stats), sum) in self.rows.iter_mut().zip(&mut self.latency) {
            sum.settle_into(&mut stats.latency);
        }
        let sums = self
            .totals_latency
            .iter_mut()
            .zip(&mut self.totals_sessions);
        for (total, (latency, sessions)) in self.totals.iter_mut().zip(sums) {
            if let Some(t) = total {
                latency.settle_into(&mut t.latency);
                sessions.settle_into(&mut t.sessions);
            }
        }
    }
}

/// (org, server, env, minute): what a tools blob and a users blob of the batch share.
type MinuteOf = (OrgId, ServerId, Env, u32);

/// What one append adds to the rollups.
#[derive(Default)]
pub struct Deltas<'a> {
    strings: Interner<'a>,
    /// Index into `deltas` per blob.
    blobs: HashMap<BlobKey, usize, FxBuildHasher>,
    deltas: Vec<(BlobKey, Delta)>,
    /// The (org, server, env, minute) of the last span and its tools and users blobs: a batch's
    /// spans arrive grouped and sorted by time, so most spans reuse them without a lookup.
    last_minute: Option<(MinuteOf, [usize; 2])>,
    /// Per interned string id, its distinct-count hash once computed (users only).
    user_hashes: Vec<Option<u64>>,
}

impl<'a> Deltas<'a> {
    /// Adds `span` if it counts in analytics (an MCP request); other spans are ignored.
    pub fn add(&mut self, span: &'a SpanRecord) {
        if !counts(span) {
            return;
        }
        let weight = weight_of(span);
        let start_minute = minute_of(span.start_unix_nano);
        let at = self.blobs_of(span.org_id, span.server_id, span.env, start_minute);
        let m = &span.mcp;
        let values = [
            m.method.as_deref(),
            m.tool.as_deref(),
            m.user_id.as_deref(),
            m.client_name.as_deref(),
            m.client_version.as_deref(),
            m.protocol_version.as_deref(),
            error_type_of(span),
        ];
        let mut ids = [0u32; DIMS];
        for (slot, v) in values.into_iter().enumerate() {
            ids[slot] = self.strings.id(slot, v);
        }
        let side = Side::of(span);
        let mut facts = SpanFacts::of_without_user_hash(span, weight);
        facts.user_hash = self.user_hash(ids[D_USER]);
        // Tools cube: the user is not a dimension; totals count distinct sessions and users.
        let mut tool_ids = ids;
        tool_ids[D_USER] = 0;
        let tools = &mut self.deltas[at[0]].1;
        let (stats, latency) = tools.row(RowKey {
            side,
            ids: tool_ids,
        });
        stats.add_facts_but_latency(&facts, Distinct::None);
        latency.add_key(facts.latency_key, facts.weight);
        tools.total(side, &facts);
        let (stats, latency) = self.deltas[at[1]].1.row(RowKey { side, ids });
        stats.add_facts_but_latency(&facts, Distinct::Sessions);
        latency.add_key(facts.latency_key, facts.weight);
    }

    /// Puts every blob's summed latencies into its sketches ([`Delta::settle`]); called before the
    /// deltas are read (encoded, kept or merged).
    fn settle(&mut self) {
        for (_, d) in &mut self.deltas {
            d.settle();
        }
    }

    /// [`kmv::hash_str`] of the interned user `id` (0: no user), hashed once per batch: a batch
    /// has few users and many spans each.
    fn user_hash(&mut self, id: u32) -> Option<u64> {
        let id = id as usize;
        if id == 0 {
            return None;
        }
        if self.user_hashes.len() <= id {
            self.user_hashes.resize(id + 1, None);
        }
        let strings = &self.strings;
        Some(*self.user_hashes[id].get_or_insert_with(|| {
            super::kmv::hash_str(strings.get(id as u32).unwrap_or_default())
        }))
    }

    /// Indices in `deltas` of the tools and users minute blobs of (org, server, env, minute).
    fn blobs_of(&mut self, org: OrgId, server: ServerId, env: Env, minute: u32) -> [usize; 2] {
        let at = (org, server, env, minute);
        if let Some((last, blobs)) = self.last_minute {
            if last == at {
                return blobs;
            }
        }
        let blobs = Cube::ALL.map(|cube| {
            let key = BlobKey {
                org,
                server,
                env,
                cube,
                res: Res::Minute,
                start_minute: minute,
            };
            let deltas = &mut self.deltas;
            *self.blobs.entry(key).or_insert_with(|| {
                deltas.push((key, Delta::default()));
                deltas.len() - 1
            })
        });
        self.last_minute = Some((at, blobs));
        blobs
    }

    /// Writes each blob's delta under `seq` (unique per transaction) into the deltas table: no
    /// read of what is stored, so the cost is the batch's, whatever the minute already holds.
    /// Returns the bytes written.
    pub fn write_deltas(&mut self, txn: &WriteTransaction, seq: u64) -> Result<usize> {
        self.settle();
        let mut table = txn.open_table(ROLLUP_DELTAS)?;
        let mut bytes = 0;
        let mut enc = Encoder::new(&self.strings.strings);
        for (key, delta) in &self.deltas {
            let out = enc.encode(key.cube, key.start_unix_nano(), delta);
            let k = delta_key(key, seq);
            bytes += out.len() + k.len();
            table.insert(&k, out)?;
        }
        Ok(bytes)
    }

    /// Rows (and totals) of all the deltas, for [`super::Unmerged`]'s memory limit.
    pub fn rows(&self) -> usize {
        self.deltas.iter().map(|(_, d)| held_rows(&d.rows)).sum()
    }

    /// The deltas with their strings owned, to outlive the batch: a copy of each distinct
    /// dimension string (a few dozen per batch); rows and statistics are moved.
    pub fn into_owned(mut self) -> OwnedDeltas {
        self.settle();
        OwnedDeltas {
            strings: self.strings.strings.iter().map(|&s| Box::from(s)).collect(),
            deltas: self
                .deltas
                .into_iter()
                // The row index is only needed while aggregating.
                .map(|(key, d)| (key, (d.rows, d.totals)))
                .collect(),
        }
    }

    /// Merges every delta straight into its stored blob (read, merge, write) in `txn`: for bulk
    /// rebuilds (format upgrade), where one transaction holds many batches. Returns the bytes
    /// written.
    pub fn merge_into(mut self, txn: &WriteTransaction) -> Result<usize> {
        self.settle();
        let mut table = txn.open_table(ROLLUPS)?;
        let mut bytes = 0;
        let strings = &self.strings;
        for (key, delta) in self.deltas {
            let k = key.encode();
            let start = key.start_unix_nano();
            let mut blob = match table.get(&k)? {
                Some(v) => Blob::decode(v.value(), key.cube, start)?,
                None => Blob::default(),
            };
            merge_totals(&mut blob.totals, delta.totals);
            for (row, stats) in delta.rows {
                let dims = Dims {
                    side: row.side,
                    v: row.ids.map(|id| strings.get(id).map(Box::from)),
                };
                match blob.rows.entry(dims) {
                    hashbrown::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&stats),
                    hashbrown::hash_map::Entry::Vacant(e) => {
                        e.insert(stats);
                    }
                }
            }
            let enc = blob.encode(key.cube, start);
            bytes += enc.len() + k.len();
            table.insert(&k, enc.as_slice())?;
        }
        Ok(bytes)
    }
}

/// What one blob's delta counts toward [`super::Unmerged`]'s limit: its rows, and its two
/// per-side totals as if they were rows.
fn held_rows(rows: &[(RowKey, Stats)]) -> usize {
    rows.len() + 2
}

/// The deltas of one append after it committed (see [`Deltas::into_owned`]): per blob, rows keyed
/// by ids into `strings` (id `k` is `strings[k - 1]`, 0 absent) and totals.
pub struct OwnedDeltas {
    strings: Vec<Box<str>>,
    deltas: Vec<(BlobKey, OwnedDelta)>,
}

/// One blob's rows and totals in [`OwnedDeltas`].
type OwnedDelta = (Vec<(RowKey, Stats)>, [Option<Stats>; 2]);

impl OwnedDeltas {
    /// The blobs these deltas add to.
    pub fn keys(&self) -> impl Iterator<Item = &BlobKey> {
        self.deltas.iter().map(|(key, _)| key)
    }

    /// Drops the deltas of `org`'s blobs; returns the rows (and totals) dropped, counted as
    /// [`Deltas::rows`] counts them.
    pub fn forget_org(&mut self, org: OrgId) -> usize {
        let mut dropped = 0;
        self.deltas.retain(|(key, (rows, _))| {
            let keep = key.org != org;
            if !keep {
                dropped += held_rows(rows);
            }
            keep
        });
        dropped
    }

    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }
}

/// The sum of many appends' [`OwnedDeltas`] per blob, as a delta merge builds it: rows are keyed by
/// ids into one string table for the whole sum, so adding a row hashes seven integers, not seven
/// strings; each distinct row gets owned dimension strings once, in [`DeltaSum::into_blobs`].
#[derive(Default)]
pub struct DeltaSum {
    strings: Vec<Box<str>>,
    index: FxHashMap<Box<str>, u32>,
    /// Per blob, the sum; each row's latency sketch summed apart in the [`Delta`]'s `latency`
    /// and put back by [`Delta::settle`] in [`DeltaSum::into_blobs`].
    blobs: BTreeMap<BlobKey, Delta>,
    /// Per id of the deltas being added, its id in `strings` (scratch).
    map: Vec<u32>,
}

impl DeltaSum {
    /// Adds one append's deltas. Added in the order they committed, the sums come out exactly as
    /// adding their encoded deltas in key order would.
    pub fn add(&mut self, d: OwnedDeltas) {
        self.map.clear();
        self.map.push(0);
        for s in d.strings {
            let id = match self.index.get(&*s) {
                Some(&id) => id,
                None => {
                    self.strings.push(s.clone());
                    let id = self.strings.len() as u32;
                    self.index.insert(s, id);
                    id
                }
            };
            self.map.push(id);
        }
        for (key, (rows, totals)) in d.deltas {
            let blob = self.blobs.entry(key).or_default();
            merge_totals(&mut blob.totals, totals);
            for (row, mut stats) in rows {
                let key = RowKey {
                    side: row.side,
                    ids: row.ids.map(|id| self.map[id as usize]),
                };
                // Merged apart, the rest of the statistics as they are.
                let latency = std::mem::take(&mut stats.latency);
                match blob.index.entry(key) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        let i = *e.get() as usize;
                        blob.rows[i].1.merge(&stats);
                        blob.latency[i].add(&latency);
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(blob.rows.len() as u32);
                        blob.rows.push((key, stats));
                        blob.latency.push(SketchSum::new(latency));
                    }
                }
            }
        }
    }

    /// The sums as blobs, in key order.
    pub fn into_blobs(self) -> impl Iterator<Item = (BlobKey, Blob)> {
        let strings = self.strings;
        self.blobs.into_iter().map(move |(key, mut delta)| {
            delta.settle();
            let mut rows =
                hashbrown::HashMap::with_capacity_and_hasher(delta.rows.len(), FxBuildHasher);
            for (row, stats) in delta.rows {
                let dims = Dims {
                    side: row.side,
                    v: row
                        .ids
                        .map(|id| (id != 0).then(|| strings[id as usize - 1].clone())),
                };
                rows.insert(dims, stats);
            }
            (
                key,
                Blob {
                    rows,
                    totals: delta.totals,
                },
            )
        })
    }
}

/// Encodes deltas as [`Blob::encode`] would encode the same rows, from interned ids: buffers are
/// reused from one blob to the next.
struct Encoder<'s, 'a> {
    strings: &'s [&'a str],
    /// Per id, its 1-based position in the current blob's string table.
    rank: Vec<u32>,
    /// Per id, the place of its string in the order of all the batch's strings.
    place: Vec<u32>,
    /// Per id, the last blob (`blob`) that listed it in `used`.
    seen: Vec<u32>,
    blob: u32,
    used: Vec<u32>,
    /// Row indices in the blob's row order, and the sort keys that give it (scratch).
    order: Vec<u32>,
    packed: Vec<(u128, u32)>,
    tuples: Vec<(Side, [u32; DIMS], u32)>,
    out: Vec<u8>,
}

/// Bits per rank in a packed row key ([`Encoder::sort_rows`]): the side and seven ranks fit in a
/// `u128` while the blob's string table has fewer than `2^PACKED_RANK_BITS` strings.
const PACKED_RANK_BITS: u32 = 16;
// The side takes one bit above the ranks.
const _: () = assert!(DIMS as u32 * PACKED_RANK_BITS < 128);

impl<'s, 'a> Encoder<'s, 'a> {
    fn new(strings: &'s [&'a str]) -> Self {
        // Every string's place in string order, sorted once for all of the batch's blobs (which
        // share most of their strings): a blob then orders its strings by these integers.
        let mut by_string: Vec<u32> = (1..=strings.len() as u32).collect();
        by_string.sort_unstable_by(|&a, &b| strings[a as usize - 1].cmp(strings[b as usize - 1]));
        let mut place = vec![0; strings.len() + 1];
        for (pos, &id) in by_string.iter().enumerate() {
            place[id as usize] = pos as u32;
        }
        Encoder {
            strings,
            rank: vec![0; strings.len() + 1],
            place,
            seen: vec![0; strings.len() + 1],
            blob: 0,
            used: Vec::new(),
            order: Vec::new(),
            packed: Vec::new(),
            tuples: Vec::new(),
            out: Vec::new(),
        }
    }

    fn encode(&mut self, cube: Cube, start_unix_nano: u64, delta: &Delta) -> &[u8] {
        let strings = self.strings;
        // The blob's string table: the distinct strings its rows use, sorted.
        self.blob += 1;
        self.used.clear();
        for (row, _) in &delta.rows {
            for &id in &row.ids {
                if id != 0 && self.seen[id as usize] != self.blob {
                    self.seen[id as usize] = self.blob;
                    self.used.push(id);
                }
            }
        }
        // Distinct ids are distinct strings (interned), so this order is strict.
        let place = &self.place;
        self.used.sort_unstable_by_key(|&id| place[id as usize]);
        for (pos, &id) in self.used.iter().enumerate() {
            self.rank[id as usize] = pos as u32 + 1;
        }
        self.sort_rows(delta);
        let table: Vec<&str> = self
            .used
            .iter()
            .map(|&id| strings[id as usize - 1])
            .collect();
        self.out.clear();
        encode_head(&mut self.out, cube, start_unix_nano, &delta.totals, &table);
        crate::codec::put_varint(&mut self.out, delta.rows.len() as u64);
        for &i in &self.order {
            let (row, stats) = &delta.rows[i as usize];
            let ids = row.ids.map(|id| u64::from(self.rank[id as usize]));
            encode_row(&mut self.out, cube, start_unix_nano, row.side, &ids, stats);
        }
        &self.out
    }

    /// Fills `order` with the rows sorted by dimensions: by side, then per slot absent first, then
    /// by string - which is the order of the ranks.
    ///
    /// Why packed keys: comparing `(Side, [u32; 7])` tuples made this sort about 230 instructions
    /// per span of a group commit (a users blob has a row per user and tool seen). With the side
    /// and the ranks in one integer, most significant first, integer order is the tuple order.
    fn sort_rows(&mut self, delta: &Delta) {
        self.order.clear();
        let rank = &self.rank;
        if self.used.len() < 1 << PACKED_RANK_BITS {
            self.packed.clear();
            self.packed
                .extend(delta.rows.iter().enumerate().map(|(i, (row, _))| {
                    let key = row.ids.iter().fold(row.side as u128, |k, &id| {
                        k << PACKED_RANK_BITS | u128::from(rank[id as usize])
                    });
                    (key, i as u32)
                }));
            // Rows have distinct dimensions, so keys are distinct.
            self.packed.sort_unstable_by_key(|&(key, _)| key);
            self.order.extend(self.packed.iter().map(|&(_, i)| i));
        } else {
            self.tuples.clear();
            self.tuples.extend(
                delta
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, (row, _))| (row.side, row.ids.map(|id| rank[id as usize]), i as u32)),
            );
            self.tuples
                .sort_unstable_by_key(|&(side, ranks, _)| (side, ranks));
            self.order.extend(self.tuples.iter().map(|&(_, _, i)| i));
        }
    }
}

#[cfg(test)]
impl Deltas<'_> {
    /// Every blob's encoded delta, as `write_deltas` would store it.
    fn encoded(&mut self) -> Vec<(BlobKey, Vec<u8>)> {
        self.settle();
        let mut enc = Encoder::new(&self.strings.strings);
        self.deltas
            .iter()
            .map(|(key, d)| {
                (
                    *key,
                    enc.encode(key.cube, key.start_unix_nano(), d).to_vec(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        McpFields, Text, SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET,
    };
    use proptest::prelude::*;

    const MINUTE0: u64 = 20_000 * 1440;

    /// The aggregation before interning, kept as the reference: every span into a `Blob` per key,
    /// rows keyed by their dimension strings.
    fn reference(spans: &[SpanRecord]) -> HashMap<BlobKey, Blob> {
        let mut blobs: HashMap<BlobKey, Blob> = HashMap::new();
        for span in spans.iter().filter(|s| counts(s)) {
            let weight = weight_of(span);
            for cube in Cube::ALL {
                let key = BlobKey {
                    org: span.org_id,
                    server: span.server_id,
                    env: span.env,
                    cube,
                    res: Res::Minute,
                    start_minute: minute_of(span.start_unix_nano),
                };
                let blob = blobs.entry(key).or_default();
                let dims = Dims::of(span, cube);
                let side = dims.side as usize;
                let distinct = match cube {
                    Cube::Tools => Distinct::None,
                    Cube::Users => Distinct::Sessions,
                };
                blob.rows
                    .entry(dims.to_owned())
                    .or_default()
                    .add_span(span, weight, distinct);
                if cube == Cube::Tools {
                    blob.totals[side]
                        .get_or_insert_with(Stats::default)
                        .add_span(span, weight, Distinct::SessionsAndUsers);
                }
            }
        }
        blobs
    }

    fn value(pick: u8) -> Option<Text> {
        match pick {
            0 => None,
            1 => Some(Text::default()),
            2 => Some("a".into()),
            3 => Some("b".into()),
            4 => Some("tools/call".into()),
            5 => Some("get_weather".into()),
            6 => Some("user-07@example.com".into()),
            7 => Some(format!("long-ü-{}", "x".repeat(130)).into()),
            _ => Some(format!("v{pick}").into()),
        }
    }

    fn span(i: usize, p: &[u8; 12], dur: u64) -> SpanRecord {
        let start = (MINUTE0 + u64::from(p[0] % 3)) * 60_000_000_000 + u64::from(p[1]) * 1_000_000;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        SpanRecord {
            org_id: 1,
            server_id: u32::from(p[2] % 2) + 1,
            env: if p[3] % 5 == 0 { Env::Test } else { Env::Live },
            trace_id: id,
            span_id: (i as u64 + 1).to_be_bytes(),
            parent_span_id: [0; 8],
            start_unix_nano: start,
            end_unix_nano: start + dur,
            name: "x".into(),
            kind: if p[4] % 4 == 0 {
                SPAN_KIND_CLIENT
            } else {
                SPAN_KIND_SERVER
            },
            status_code: if p[5] % 7 == 0 {
                STATUS_ERROR
            } else {
                STATUS_UNSET
            },
            status_message: String::new(),
            flags: 0,
            trace_state: String::new(),
            sample_probability: [1.0, 0.5, 0.3][usize::from(p[6] % 3)],
            service_name: "svc".into(),
            mcp: McpFields {
                // Mostly a method (an MCP request), sometimes none (not counted).
                method: value(if p[7] % 8 == 0 { 0 } else { 4 - p[7] % 3 }),
                tool: value(p[8] % 10),
                user_id: value(p[9] % 10),
                client_name: value(p[10] % 4),
                client_version: value(p[10] / 4 % 4),
                protocol_version: value(p[11] % 3),
                error_type: value(p[11] / 3 % 3),
                session_id: value(p[9] / 10 % 10),
                ..McpFields::default()
            },
            attributes: vec![],
            events: vec![],
            links: vec![],
            origin: Default::default(),
            dropped_attributes_count: 0,
            dropped_events_count: 0,
            dropped_links_count: 0,
        }
    }

    /// Every stored rollup blob: key and bytes.
    type Stored = Vec<([u8; 15], Vec<u8>)>;

    /// Every stored rollup blob of `db`, and whether any delta is left.
    fn stored(db: &redb::Database) -> (Stored, bool) {
        let read = db.begin_read().unwrap();
        let rows = read
            .open_table(ROLLUPS)
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (*k.value(), v.value().to_vec())
            })
            .collect();
        let left = !redb::ReadableTableMetadata::is_empty(&read.open_table(ROLLUP_DELTAS).unwrap())
            .unwrap();
        (rows, left)
    }

    /// A purge of one organization's deltas, with `forget_org` on what is kept, leaves the other
    /// organization's kept deltas to merge as before, and writes nothing of the purged one.
    #[test]
    fn forgetting_an_org_keeps_the_others_deltas() {
        let specs: Vec<[u8; 12]> = (0..120u8)
            .map(|i| [i, i / 3, i / 5, 1, 1, 1, 0, 1, i / 7, i / 2, i, i / 11])
            .collect();
        let spans: Vec<SpanRecord> = specs
            .iter()
            .enumerate()
            .map(|(i, p)| SpanRecord {
                org_id: 1 + (i % 2) as u32,
                ..span(i, p, 1_000_000 + i as u64)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut results = Vec::new();
        for keep in [true, false] {
            let db = redb::Database::create(dir.path().join(format!("{keep}"))).unwrap();
            let mut sums = super::super::Unmerged::with_rows_max(usize::MAX);
            for (i, batch) in spans.chunks(40).enumerate() {
                let mut deltas = Deltas::default();
                for s in batch {
                    deltas.add(s);
                }
                let txn = db.begin_write().unwrap();
                txn.open_table(ROLLUPS).unwrap();
                deltas.write_deltas(&txn, i as u64 + 1).unwrap();
                txn.commit().unwrap();
                if keep {
                    sums.add(deltas, i as u64 + 1);
                }
            }
            // Retention's purge of organization 1: its deltas leave the file.
            let txn = db.begin_write().unwrap();
            txn.open_table(ROLLUP_DELTAS)
                .unwrap()
                .retain(|k, _| k[..4] != 1u32.to_be_bytes())
                .unwrap();
            txn.commit().unwrap();
            sums.forget_org(1);
            assert_eq!(sums.kept(), if keep { 3 } else { 0 });
            super::super::merge_deltas(&db, &mut sums).unwrap();
            let (blobs, left) = stored(&db);
            assert!(!left, "deltas left after the merge");
            assert!(!blobs.is_empty());
            assert!(blobs.iter().all(|(k, _)| k[..4] == 2u32.to_be_bytes()));
            results.push(blobs);
        }
        assert_eq!(results[0], results[1]);
        // Forgetting every organization empties what is kept.
        let mut sums = super::super::Unmerged::with_rows_max(usize::MAX);
        let mut deltas = Deltas::default();
        for s in &spans {
            deltas.add(s);
        }
        sums.add(deltas, 1);
        sums.forget_org(2);
        assert_eq!(sums.kept(), 1);
        sums.forget_org(1);
        assert_eq!(sums.kept(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// A merge that takes deltas kept in memory writes the same blobs, byte for byte, as
        /// one that reads every delta back from the file: whichever appends were kept in memory
        /// (those of an earlier process were not; past its row limit it takes no more), and with
        /// a merge between appends, so that stored blobs are merged too.
        #[test]
        fn deltas_kept_in_memory_merge_as_the_deltas_read_back(
            specs in prop::collection::vec((any::<[u8; 12]>(), 0u64..100_000_000_000), 1..200),
            batches in 1usize..6,
            restart in 0usize..6,
            middle_merge in 0usize..7,
            rows_max in prop_oneof![Just(0usize), Just(40), Just(usize::MAX)],
        ) {
            let spans: Vec<SpanRecord> = specs
                .iter()
                .enumerate()
                .map(|(i, (p, d))| {
                    let mut s = span(i, p, *d);
                    // Weights that add up exactly in any order, so the bytes can be compared.
                    if s.sample_probability < 0.5 {
                        s.sample_probability = 0.25;
                    }
                    s
                })
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let open = |name: &str| {
                let db = redb::Database::create(dir.path().join(name)).unwrap();
                let txn = db.begin_write().unwrap();
                txn.open_table(ROLLUPS).unwrap();
                txn.open_table(ROLLUP_DELTAS).unwrap();
                txn.commit().unwrap();
                db
            };
            let (summed, read_back) = (open("summed"), open("read_back"));
            let mut sums = super::super::Unmerged::with_rows_max(rows_max);
            let mut none = super::super::Unmerged::default();
            let per = spans.len().div_ceil(batches);
            for (i, batch) in spans.chunks(per).enumerate() {
                for (db, sum) in [(&summed, true), (&read_back, false)] {
                    let mut deltas = Deltas::default();
                    for s in batch {
                        deltas.add(s);
                    }
                    let seq = i as u64 + 1;
                    let txn = db.begin_write().unwrap();
                    deltas.write_deltas(&txn, seq).unwrap();
                    txn.commit().unwrap();
                    if sum && i >= restart {
                        let before = sums.kept();
                        sums.add(deltas, seq);
                        let kept = sums.kept() > before;
                        prop_assert!(kept || rows_max != usize::MAX, "append {} not kept", i);
                        if kept {
                            // Kept in memory: the merge must not read these back, so spoil the
                            // file's copies (a merge that decodes them fails).
                            let txn = db.begin_write().unwrap();
                            {
                                let mut t = txn.open_table(ROLLUP_DELTAS).unwrap();
                                let keys: Vec<[u8; 23]> = t
                                    .iter()
                                    .unwrap()
                                    .map(|e| *e.unwrap().0.value())
                                    .filter(|k| k[15..] == seq.to_be_bytes())
                                    .collect();
                                for k in keys {
                                    t.insert(&k, [0xffu8].as_slice()).unwrap();
                                }
                            }
                            txn.commit().unwrap();
                        }
                    }
                }
                if i == middle_merge {
                    super::super::merge_deltas(&summed, &mut sums).unwrap();
                    super::super::merge_deltas(&read_back, &mut none).unwrap();
                }
            }
            super::super::merge_deltas(&summed, &mut sums).unwrap();
            super::super::merge_deltas(&read_back, &mut none).unwrap();
            let (got, got_left) = stored(&summed);
            let (want, want_left) = stored(&read_back);
            prop_assert!(!got_left && !want_left, "deltas left after the merge");
            prop_assert_eq!(got, want);
        }
    }

    /// A blob whose string table is too large for packed row keys (more distinct users than
    /// `2^PACKED_RANK_BITS`) is sorted by the tuples instead, and still encodes as the reference.
    #[test]
    fn blobs_with_more_strings_than_packed_keys_hold_encode_as_the_reference() {
        let n = (1usize << PACKED_RANK_BITS) + 500;
        let spans: Vec<SpanRecord> = (0..n)
            .map(|i| {
                let b = (i % 251) as u8;
                let mut s = span(i, &[0, b, 0, 1, b, b, 0, 1, b, b, b, b], 1_000 + i as u64);
                s.mcp.user_id = Some(format!("user-{:06}", (i * 7919) % n).into());
                s
            })
            .collect();
        let mut deltas = Deltas::default();
        for s in &spans {
            deltas.add(s);
        }
        assert!(deltas.strings.strings.len() >= 1 << PACKED_RANK_BITS);
        let got: HashMap<BlobKey, Vec<u8>> = deltas.encoded().into_iter().collect();
        let want = reference(&spans);
        assert_eq!(got.len(), want.len());
        for (k, w) in want {
            assert!(
                got[&k] == w.encode(k.cube, k.start_unix_nano()),
                "blob {k:?}"
            );
        }
    }

    proptest! {
        /// Interned aggregation encodes byte for byte what aggregating by strings encoded.
        #[test]
        fn deltas_encode_as_the_blobs_of_the_same_spans(
            specs in prop::collection::vec((any::<[u8; 12]>(), 0u64..100_000_000_000), 0..300),
            runs in any::<bool>(),
        ) {
            let mut spans: Vec<SpanRecord> =
                specs.iter().enumerate().map(|(i, (p, d))| span(i, p, *d)).collect();
            if runs {
                // Long runs of one value, as a batch of one client's requests has.
                spans.sort_by(|a, b| (&a.mcp.tool, &a.mcp.user_id).cmp(&(&b.mcp.tool, &b.mcp.user_id)));
            }
            let mut deltas = Deltas::default();
            for s in &spans {
                deltas.add(s);
            }
            let got: HashMap<BlobKey, Vec<u8>> = deltas.encoded().into_iter().collect();
            let want: HashMap<BlobKey, Vec<u8>> = reference(&spans)
                .into_iter()
                .map(|(k, b)| (k, b.encode(k.cube, k.start_unix_nano())))
                .collect();
            prop_assert_eq!(got.len(), want.len());
            for (k, w) in &want {
                prop_assert_eq!(got.get(k), Some(w), "blob {:?}", k);
                // And it decodes to the reference's blob.
                prop_assert_eq!(
                    Blob::decode(&got[k], k.cube, k.start_unix_nano())?,
                    Blob::decode(w, k.cube, k.start_unix_nano())?
                );
            }
        }
    }
}
