//! The tables that read the users cube (most active users, per-user tool performance, clients
//! and protocol versions), computed together in one pass over its rows: the dashboard shows all
//! of them, and reading the cube is what they cost (about one row per span at high user
//! cardinality), so one pass instead of three is most of their time saved.

use std::collections::{HashMap, HashSet};

use rustc_hash::FxBuildHasher;

use super::{rate, ClientRow, ProtocolRow, Query, UserRow, UserToolRow, Window, ROWS_MAX};
use crate::error::{Result, StorageError};
use crate::rollup::{
    kmv::{self, DistinctAccumulator},
    sketch::LatencySketch,
    Cube, RowRef, D_CLIENT, D_CLIENT_VERSION, D_PROTOCOL, D_TOOL, D_USER,
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
    pass(store, q, window, limit, all, USER_TOOL_SKETCH_BYTES_MAX)
}

/// No id yet.
const NONE: u32 = u32::MAX;

/// The encoded latency sketches of the rows, and (pair, offset in the bytes) of each.
type Arena = (Vec<u8>, Vec<(u32, u32)>);
/// A (user id, tool id) pair and its (calls, errors).
type PairCounts = ((u32, u32), (f64, f64));

/// Ids for strings, in order of first sight.
#[derive(Default)]
pub(super) struct Interner {
    ids: HashMap<Box<str>, u32, FxBuildHasher>,
    strings: Vec<Box<str>>,
}

impl Interner {
    pub(super) fn id(&mut self, s: &str) -> Result<u32> {
        if let Some(&i) = self.ids.get(s) {
            return Ok(i);
        }
        let i = u32::try_from(self.strings.len())
            .ok()
            .filter(|&i| i != NONE)
            .ok_or_else(|| StorageError::Invalid("too many distinct values".into()))?;
        self.ids.insert(s.into(), i);
        self.strings.push(s.into());
        Ok(i)
    }

    pub(super) fn get(&self, i: u32) -> &str {
        &self.strings[i as usize]
    }
}

/// Interned ids of a row's strings. Rows of one blob share a string table, so each table
/// position is looked up by its string once per blob and then by position.
#[derive(Default)]
struct Ids {
    interner: Interner,
    blob: u64,
    /// String-table position -> id, for the rows of `blob`.
    local: Vec<u32>,
}

impl Ids {
    fn of(&mut self, row: &RowRef<'_>, slot: usize) -> Result<Option<u32>> {
        let (pos, Some(s)) = (row.ids[slot] as usize, row.dims.v[slot]) else {
            return Ok(None);
        };
        if row.blob != self.blob || row.blob == 0 {
            self.blob = row.blob;
            self.local.clear();
        }
        if pos >= self.local.len() {
            self.local.resize(pos + 1, NONE);
        }
        if self.local[pos] == NONE {
            self.local[pos] = self.interner.id(s)?;
        }
        Ok(Some(self.local[pos]))
    }
}

#[derive(Default)]
struct UserAcc {
    calls: f64,
    errors: f64,
    last: u64,
    tools: u64,
}

#[derive(Default)]
struct ClientAcc {
    calls: f64,
    errors: f64,
    last: u64,
    users: HashSet<u32, FxBuildHasher>,
}

/// The tables of `want` (the others come back empty) in one pass over the users cube;
/// `sketch_bytes_max` caps the user x tool sketch arena (tests take the second pass).
pub(super) fn pass(
    store: &SpanStore,
    q: &Query,
    window: &Window,
    limit: usize,
    want: Want,
    sketch_bytes_max: usize,
) -> Result<UserTables> {
    let limit = limit.min(ROWS_MAX);
    let mut ids = Ids::default();
    // Per user: its slot in `users`, indexed by string id.
    let mut user_slot: Vec<u32> = Vec::new();
    let mut users: Vec<(u32, UserAcc)> = Vec::new();
    // Pairs (user id, tool id) -> (index in first-sight order, calls, errors). The counts live
    // in the map's own slot: at 400,000 pairs every lookup misses the cache, and a separate
    // vector of counts would be a second miss per row.
    let mut pairs: HashMap<(u32, u32), (u32, f64, f64), FxBuildHasher> = HashMap::default();
    // `None` once over the cap.
    let mut arena: Option<Arena> = want.user_tools.then(|| (Vec::new(), Vec::new()));
    let mut clients: HashMap<(u32, u32), ClientAcc, FxBuildHasher> = HashMap::default();
    let mut protocols: HashMap<u32, (f64, u64), FxBuildHasher> = HashMap::default();
    let per_user = want.users || want.user_tools;
    q.scan_rows(store, window, Cube::Users, true, &mut |_, row| {
        let user = ids.of(row, D_USER)?;
        if let (true, Some(u)) = (per_user, user) {
            if want.users {
                let i = u as usize;
                if i >= user_slot.len() {
                    user_slot.resize(i + 1, NONE);
                }
                if user_slot[i] == NONE {
                    user_slot[i] = users.len() as u32;
                    users.push((u, UserAcc::default()));
                }
                let a = &mut users[user_slot[i] as usize].1;
                a.calls += row.calls;
                a.errors += row.errors;
                a.last = a.last.max(row.last_unix_nano);
            }
            if let Some(t) = ids.of(row, D_TOOL)? {
                let next = u32::try_from(pairs.len())
                    .map_err(|_| StorageError::Invalid("too many user x tool pairs".into()))?;
                let c = pairs.entry((u, t)).or_insert((next, 0.0, 0.0));
                c.1 += row.calls;
                c.2 += row.errors;
                let pair = c.0;
                if let Some((bytes, refs)) = arena.as_mut() {
                    if bytes.len() + row.latency.len() > sketch_bytes_max {
                        arena = None;
                    } else {
                        refs.push((pair, bytes.len() as u32));
                        bytes.extend_from_slice(row.latency);
                    }
                }
            }
        }
        if want.clients {
            let key = (
                ids.of(row, D_CLIENT)?.unwrap_or(NONE),
                ids.of(row, D_CLIENT_VERSION)?.unwrap_or(NONE),
            );
            let c = clients.entry(key).or_default();
            c.calls += row.calls;
            c.errors += row.errors;
            c.last = c.last.max(row.last_unix_nano);
            if let Some(u) = user {
                c.users.insert(u);
            }
            let p = protocols
                .entry(ids.of(row, D_PROTOCOL)?.unwrap_or(NONE))
                .or_insert((0.0, 0));
            p.0 += row.calls;
            p.1 = p.1.max(row.last_unix_nano);
        }
        Ok(())
    })?;
    let mut counts: Vec<PairCounts> = vec![((0, 0), (0.0, 0.0)); pairs.len()];
    for (key, (i, calls, errors)) in pairs {
        counts[i as usize] = (key, (calls, errors));
    }
    let names = &ids.interner;
    let opt = |i: u32| (i != NONE).then(|| names.get(i).to_owned());
    let users = if want.users {
        // A user's distinct tools are its pairs.
        for &((u, _), _) in &counts {
            users[user_slot[u as usize] as usize].1.tools += 1;
        }
        top_users(names, users, limit)
    } else {
        Vec::new()
    };
    let user_tools = if want.user_tools {
        top_pairs(store, q, window, limit, names, &counts, arena)?
    } else {
        Vec::new()
    };
    let mut c: Vec<ClientRow> = clients
        .into_iter()
        .map(|((name, version), a)| {
            // The same estimate as merging the users one by one: a KMV sketch of a set does not
            // depend on the order or repetition of its inserts.
            let mut d = DistinctAccumulator::new();
            for &u in &a.users {
                d.insert(kmv::hash_str(names.get(u)));
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
        b.calls
            .total_cmp(&a.calls)
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
        b.calls
            .total_cmp(&a.calls)
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

/// Users by weighted calls, most first (ties by id).
fn top_users(names: &Interner, users: Vec<(u32, UserAcc)>, limit: usize) -> Vec<UserRow> {
    let mut rows: Vec<UserRow> = users
        .into_iter()
        .map(|(u, a)| UserRow {
            user: names.get(u).to_owned(),
            calls: a.calls,
            errors: a.errors,
            error_rate: rate(a.errors, a.calls),
            tools: a.tools,
            last_unix_nano: a.last,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.calls
            .total_cmp(&a.calls)
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
    names: &Interner,
    counts: &[PairCounts],
    arena: Option<Arena>,
) -> Result<Vec<UserToolRow>> {
    let name = |i: u32| {
        let (u, t) = counts[i as usize].0;
        (names.get(u), names.get(t))
    };
    let calls = |i: u32| counts[i as usize].1 .0;
    let mut top: Vec<u32> = (0..counts.len() as u32).collect();
    let order = |a: &u32, b: &u32| {
        calls(*b)
            .total_cmp(&calls(*a))
            .then_with(|| name(*a).cmp(&name(*b)))
    };
    // Only the first `limit` need sorting: select them first (pairs can be as many as rows).
    if top.len() > limit && limit > 0 {
        top.select_nth_unstable_by(limit - 1, order);
    }
    top.truncate(limit);
    top.sort_by(order);
    // Pair index -> its slot in `top`.
    let slot: HashMap<u32, usize, FxBuildHasher> =
        top.iter().enumerate().map(|(s, &p)| (p, s)).collect();
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
            for (pair, off) in refs {
                if let Some(&s) = slot.get(&pair) {
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
