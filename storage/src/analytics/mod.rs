//! Analytics over the rollups: the time window a question resolves to, and the answers the API and
//! dashboard show (summary, time series, top tools, users, user x tool, clients, protocol
//! versions, errors by type, organization overview). Reads rollups only, never spans.

mod acc;
mod pool;
#[cfg(test)]
mod tests;
mod users;

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use crate::error::{Result, StorageError};
use crate::model::{day_of, Env, OrgId, ServerId, DAY_NANOS};
use crate::rollup::{
    kmv, overview::Item, BlobKey, Cube, DimFilter, Read, RowRef, ScanRange, Side, D_CLIENT,
    D_ERROR_TYPE, D_METHOD, D_TOOL, D_USER, HOUR_NANOS, MINUTE_NANOS, NO_FILTER,
};
use crate::spans::SpanStore;

pub use acc::{Acc, Totals};
pub use users::{user_tables, UserTables};
use users::{Limits, Want, LIMITS, USER_TOOL_SKETCH_BYTES_MAX};

/// Most points a time series gets; the bucket is the smallest "nice" width that stays under it.
pub const SERIES_POINTS_MAX: u64 = 200;
/// Bucket widths a time series may use, in nanoseconds.
const BUCKETS: [u64; 12] = [
    MINUTE_NANOS,
    5 * MINUTE_NANOS,
    10 * MINUTE_NANOS,
    15 * MINUTE_NANOS,
    30 * MINUTE_NANOS,
    HOUR_NANOS,
    2 * HOUR_NANOS,
    3 * HOUR_NANOS,
    6 * HOUR_NANOS,
    12 * HOUR_NANOS,
    DAY_NANOS,
    7 * DAY_NANOS,
];
/// Longest range a question may cover (a bit over a year; retention keeps 90 days by default).
pub const RANGE_NANOS_MAX: u64 = 400 * DAY_NANOS;
/// Most rows a table answer returns.
pub const ROWS_MAX: usize = 1000;

/// What to aggregate: one organization, some of its servers, one env, one side, a time range and
/// optional dimension filters.
#[derive(Clone, Debug)]
pub struct Query {
    pub org: OrgId,
    /// The servers to include (the caller resolves "all servers of the organization").
    pub servers: Vec<ServerId>,
    pub env: Env,
    pub side: Side,
    /// Requested range on span start time, `[from, to)`.
    pub from_unix_nano: u64,
    pub to_unix_nano: u64,
    pub method: Option<String>,
    pub tool: Option<String>,
    pub user: Option<String>,
    pub client: Option<String>,
    /// Nothing that started before this is read (the organization's retention): a blob counts
    /// only if its bucket starts at or after it.
    pub floor_unix_nano: u64,
}

/// The range a query was answered for, after aligning it to the rollups' granularity, and the
/// time-series bucket width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from_unix_nano: u64,
    pub to_unix_nano: u64,
    /// Minute while every day in range still has minute rollups; hour once a day is rolled.
    pub granularity_nanos: u64,
    pub bucket_nanos: u64,
}

impl Window {
    /// Aligns `[from, to)` outward to the granularity of the rollups it touches at `now`, and
    /// picks the series bucket.
    pub fn resolve(from: u64, to: u64, now: u64) -> Result<Window> {
        if from >= to {
            return Err(StorageError::Invalid(
                "empty time range: from must be before to".into(),
            ));
        }
        if to - from > RANGE_NANOS_MAX {
            return Err(StorageError::Invalid(format!(
                "time range longer than {} days",
                RANGE_NANOS_MAX / DAY_NANOS
            )));
        }
        // Finished days are rolled to hours by compaction; any of them in range makes it hourly.
        let rolled = (day_of(from)..=day_of(to - 1)).any(|d| crate::spans::is_finished(d, now));
        let g = if rolled { HOUR_NANOS } else { MINUTE_NANOS };
        let from = from - from % g;
        let to = to.div_ceil(g).saturating_mul(g);
        let span = to - from;
        let bucket = BUCKETS
            .iter()
            .copied()
            .find(|&b| b >= g && span.div_ceil(b) <= SERIES_POINTS_MAX)
            .unwrap_or(BUCKETS[BUCKETS.len() - 1]);
        Ok(Window {
            from_unix_nano: from,
            to_unix_nano: to,
            granularity_nanos: g,
            bucket_nanos: bucket,
        })
    }

    /// The window of the same length just before this one.
    pub fn previous(&self) -> Window {
        let len = self.to_unix_nano - self.from_unix_nano;
        Window {
            from_unix_nano: self.from_unix_nano.saturating_sub(len),
            to_unix_nano: self.from_unix_nano,
            ..*self
        }
    }

    fn range(&self) -> ScanRange {
        ScanRange {
            from_unix_nano: self.from_unix_nano,
            to_unix_nano: self.to_unix_nano,
        }
    }
}

impl Query {
    fn filter(&self) -> DimFilter<'_> {
        let mut f = NO_FILTER;
        f[D_METHOD] = self.method.as_deref();
        f[D_TOOL] = self.tool.as_deref();
        f[D_USER] = self.user.as_deref();
        f[D_CLIENT] = self.client.as_deref();
        f
    }

    fn filtered(&self) -> bool {
        self.method.is_some() || self.tool.is_some() || self.user.is_some() || self.client.is_some()
    }

    /// The tools cube answers everything that neither filters nor groups by user.
    fn cube(&self, by_user: bool) -> Cube {
        if by_user || self.user.is_some() {
            Cube::Users
        } else {
            Cube::Tools
        }
    }

    /// Every matching row of `window` (this query's side only) from `cube`.
    /// `day_blobs`: whole days may come from their day blob (everything but a sub-day series).
    fn scan_rows(
        &self,
        store: &SpanStore,
        window: &Window,
        cube: Cube,
        day_blobs: bool,
        f: &mut dyn FnMut(&BlobKey, &RowRef<'_>) -> Result<()>,
    ) -> Result<()> {
        let filter = self.filter();
        self.scan(store, window, cube, day_blobs, Read::Rows(&filter), f)
    }

    /// The per-blob totals of the tools cube (this query's side only); only for unfiltered
    /// questions.
    fn scan_totals(
        &self,
        store: &SpanStore,
        window: &Window,
        day_blobs: bool,
        f: &mut dyn FnMut(&BlobKey, &RowRef<'_>) -> Result<()>,
    ) -> Result<()> {
        debug_assert!(!self.filtered());
        self.scan(store, window, Cube::Tools, day_blobs, Read::Totals, f)
    }

    /// The bytes of every users-cube blob that starts in `range` (part of a window), rolled days
    /// by their hours.
    fn scan_users_blobs_in(
        &self,
        store: &SpanStore,
        range: ScanRange,
        f: &mut dyn FnMut(&BlobKey, &[u8]) -> Result<()>,
    ) -> Result<()> {
        store.scan_rollup_blobs(self.org, &self.servers, self.env, Cube::Users, range, f)
    }

    /// The window's range, without what retention hides.
    fn clamped(&self, window: &Window) -> ScanRange {
        let mut range = window.range();
        range.from_unix_nano = range.from_unix_nano.max(self.floor_unix_nano);
        range
    }

    fn scan(
        &self,
        store: &SpanStore,
        window: &Window,
        cube: Cube,
        day_blobs: bool,
        what: Read<'_>,
        f: &mut dyn FnMut(&BlobKey, &RowRef<'_>) -> Result<()>,
    ) -> Result<()> {
        let side = self.side;
        store.scan_rollups(
            self.org,
            &self.servers,
            self.env,
            cube,
            self.clamped(window),
            day_blobs,
            what,
            &mut |k, row| {
                if row.dims.side == side {
                    f(k, &row)
                } else {
                    Ok(())
                }
            },
        )
    }

    /// Totals of a window with distinct users and sessions: from blob totals when unfiltered,
    /// else from users-cube rows (which know users and sessions per row).
    fn totals(&self, store: &SpanStore, w: &Window) -> Result<Totals> {
        let mut acc = Acc::new(true);
        if self.filtered() {
            self.scan_rows(store, w, Cube::Users, true, &mut |_, row| {
                acc.add_row(row, Cube::Users)
            })?;
        } else {
            self.scan_totals(store, w, true, &mut |_, t| acc.add_total(t))?;
        }
        Ok(acc.totals())
    }
}

/// Summary of a window and of the window before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub window: Window,
    pub current: Totals,
    pub previous: Totals,
}

pub fn summary(store: &SpanStore, q: &Query, window: &Window) -> Result<Summary> {
    Ok(Summary {
        window: *window,
        current: q.totals(store, window)?,
        previous: q.totals(store, &window.previous())?,
    })
}

/// One time-series bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub start_unix_nano: u64,
    pub calls: f64,
    pub errors: f64,
    pub p50_nanos: Option<u64>,
    pub p95_nanos: Option<u64>,
    pub p99_nanos: Option<u64>,
}

/// Calls, errors and latency percentiles per bucket over the window, every bucket present (empty
/// ones with zero calls), oldest first.
pub fn series(store: &SpanStore, q: &Query, window: &Window) -> Result<Vec<Point>> {
    let b = window.bucket_nanos;
    let first = window.from_unix_nano - window.from_unix_nano % b;
    let n = (window.to_unix_nano - first).div_ceil(b) as usize;
    let mut accs: Vec<Acc> = (0..n).map(|_| Acc::new(false)).collect();
    let cube = q.cube(false);
    // A day blob fits in one bucket only when buckets are whole (UTC-aligned) days.
    let day_blobs = b % DAY_NANOS == 0;
    let mut add = |k: &BlobKey, row: &RowRef<'_>, total: bool| {
        let i = ((k.start_unix_nano().max(first) - first) / b) as usize;
        match accs.get_mut(i) {
            Some(a) if total => a.add_total(row),
            Some(a) => a.add_row(row, cube),
            None => Ok(()),
        }
    };
    if q.filtered() {
        q.scan_rows(store, window, cube, day_blobs, &mut |k, row| {
            add(k, row, false)
        })?;
    } else {
        q.scan_totals(store, window, day_blobs, &mut |k, row| add(k, row, true))?;
    }
    Ok(accs
        .iter()
        .enumerate()
        .map(|(i, a)| Point {
            start_unix_nano: first + i as u64 * b,
            calls: a.calls,
            errors: a.errors,
            p50_nanos: a.quantile(0.50),
            p95_nanos: a.quantile(0.95),
            p99_nanos: a.quantile(0.99),
        })
        .collect())
}

/// One row of "top tools".
#[derive(Clone, Debug, PartialEq)]
pub struct ToolRow {
    pub tool: String,
    pub totals: Totals,
    pub last_unix_nano: u64,
}

/// Tools by weighted calls, most first (ties by name), at most `limit`.
pub fn top_tools(
    store: &SpanStore,
    q: &Query,
    window: &Window,
    limit: usize,
) -> Result<Vec<ToolRow>> {
    let mut groups: HashMap<String, Acc, FxBuildHasher> = HashMap::default();
    let cube = q.cube(false);
    q.scan_rows(store, window, cube, true, &mut |_, row| {
        let Some(tool) = row.dims.v[D_TOOL] else {
            return Ok(());
        };
        group(&mut groups, tool).add_row(row, cube)
    })?;
    let mut rows: Vec<ToolRow> = groups
        .into_iter()
        .map(|(tool, a)| ToolRow {
            tool,
            last_unix_nano: a.last_unix_nano,
            totals: a.totals(),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.totals
            .calls
            .total_cmp(&a.totals.calls)
            .then_with(|| a.tool.cmp(&b.tool))
    });
    rows.truncate(limit.min(ROWS_MAX));
    Ok(rows)
}

fn group<'m>(groups: &'m mut HashMap<String, Acc, FxBuildHasher>, key: &str) -> &'m mut Acc {
    if !groups.contains_key(key) {
        groups.insert(key.to_owned(), Acc::new(false));
    }
    groups.get_mut(key).expect("inserted above")
}

/// One row of "most active users".
#[derive(Clone, Debug, PartialEq)]
pub struct UserRow {
    pub user: String,
    pub calls: f64,
    pub errors: f64,
    pub error_rate: f64,
    /// Distinct tools the user called in the window.
    pub tools: u64,
    pub last_unix_nano: u64,
}

/// Users by weighted calls, most first (ties by id), at most `limit`.
pub fn top_users(
    store: &SpanStore,
    q: &Query,
    window: &Window,
    limit: usize,
) -> Result<Vec<UserRow>> {
    let want = Want {
        users: true,
        user_tools: false,
        clients: false,
    };
    Ok(users::pass(store, q, window, limit, want, &LIMITS)?.users)
}

/// One row of "per-user tool performance".
#[derive(Clone, Debug, PartialEq)]
pub struct UserToolRow {
    pub user: String,
    pub tool: String,
    pub calls: f64,
    pub errors: f64,
    pub error_rate: f64,
    pub p95_nanos: Option<u64>,
}

/// (user, tool) pairs by weighted calls, most first, at most `limit`. One pass counts every pair
/// and keeps each row's encoded latency sketch (tagged with its pair) in an arena; only the
/// sketches of the pairs that made the cut are then decoded and merged.
pub fn user_tools(
    store: &SpanStore,
    q: &Query,
    window: &Window,
    limit: usize,
) -> Result<Vec<UserToolRow>> {
    user_tools_capped(store, q, window, limit, USER_TOOL_SKETCH_BYTES_MAX)
}

/// [`user_tools`] with the arena capped at `sketch_bytes_max` (tests take the second pass).
fn user_tools_capped(
    store: &SpanStore,
    q: &Query,
    window: &Window,
    limit: usize,
    sketch_bytes_max: usize,
) -> Result<Vec<UserToolRow>> {
    let want = Want {
        users: false,
        user_tools: true,
        clients: false,
    };
    let limits = Limits {
        sketch_bytes: sketch_bytes_max,
        ..LIMITS
    };
    Ok(users::pass(store, q, window, limit, want, &limits)?.user_tools)
}

/// One row of "clients": a client name and version.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientRow {
    pub name: Option<String>,
    pub version: Option<String>,
    pub calls: f64,
    pub errors: f64,
    pub users: u64,
    pub last_unix_nano: u64,
}

/// One row of "protocol versions".
#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolRow {
    pub version: Option<String>,
    pub calls: f64,
    pub last_unix_nano: u64,
}

/// Clients (name, version) and protocol versions by weighted calls, most first.
pub fn clients(
    store: &SpanStore,
    q: &Query,
    window: &Window,
    limit: usize,
) -> Result<(Vec<ClientRow>, Vec<ProtocolRow>)> {
    let want = Want {
        users: false,
        user_tools: false,
        clients: true,
    };
    let t = users::pass(store, q, window, limit, want, &LIMITS)?;
    Ok((t.clients, t.protocols))
}

/// One row of "errors by type".
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorRow {
    pub error_type: String,
    /// Weighted.
    pub errors: f64,
    /// Share of all calls in the window that failed with this type.
    pub share_of_calls: f64,
    pub last_unix_nano: u64,
    /// The most recent span with this error type.
    pub example: Option<crate::rollup::ErrorExample>,
}

/// Error types by weighted count, most first.
pub fn errors(
    store: &SpanStore,
    q: &Query,
    window: &Window,
    limit: usize,
) -> Result<Vec<ErrorRow>> {
    let mut total_calls = 0.0;
    let mut by_type: HashMap<String, ErrorRow, FxBuildHasher> = HashMap::default();
    q.scan_rows(store, window, q.cube(false), true, &mut |_, row| {
        total_calls += row.calls;
        let Some(t) = row.dims.v[D_ERROR_TYPE] else {
            return Ok(());
        };
        if !by_type.contains_key(t) {
            by_type.insert(
                t.to_owned(),
                ErrorRow {
                    error_type: t.to_owned(),
                    errors: 0.0,
                    share_of_calls: 0.0,
                    last_unix_nano: 0,
                    example: None,
                },
            );
        }
        let e = by_type.get_mut(t).expect("inserted above");
        e.errors += row.errors;
        e.last_unix_nano = e.last_unix_nano.max(row.last_unix_nano);
        e.example = crate::rollup::ErrorExample::newer(e.example, row.error_example);
        Ok(())
    })?;
    let mut rows: Vec<ErrorRow> = by_type
        .into_values()
        .map(|mut r| {
            r.share_of_calls = rate(r.errors, total_calls);
            r
        })
        .collect();
    rows.sort_by(|a, b| {
        b.errors
            .total_cmp(&a.errors)
            .then_with(|| a.error_type.cmp(&b.error_type))
    });
    rows.truncate(limit.min(ROWS_MAX));
    Ok(rows)
}

/// One server in the organization overview.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerRow {
    pub server: ServerId,
    pub totals: Totals,
    pub last_unix_nano: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Overview {
    /// Every server of the query, busiest first (servers without calls included, with zeros).
    pub servers: Vec<ServerRow>,
    pub most_used_server: Option<ServerId>,
    /// The tool with the most weighted calls across the servers, and its calls.
    pub most_called_tool: Option<(String, f64)>,
    pub totals: Totals,
}

pub fn overview(store: &SpanStore, q: &Query, window: &Window) -> Result<Overview> {
    let mut per_server: HashMap<ServerId, Acc, FxBuildHasher> =
        q.servers.iter().map(|&s| (s, Acc::new(false))).collect();
    // The sum of the servers; distinct users and sessions are not part of the overview (their
    // sketches are the costliest thing to merge over 90 days of many servers).
    let mut all = Acc::new(false);
    let mut tools: HashMap<String, f64, FxBuildHasher> = HashMap::default();
    let mut add_tool = |t: &str, calls: f64| match tools.get_mut(t) {
        Some(c) => *c += calls,
        None => {
            tools.insert(t.to_owned(), calls);
        }
    };
    let cube = q.cube(false);
    // One pass: every row (or item) feeds its server, the sum and the tools.
    if q.filtered() {
        q.scan_rows(store, window, cube, true, &mut |k, row| {
            if let Some(t) = row.dims.v[D_TOOL] {
                add_tool(t, row.calls);
            }
            all.add_row(row, cube)?;
            per_server
                .entry(k.server)
                .or_insert_with(|| Acc::new(false))
                .add_row(row, cube)
        })?;
    } else {
        // Whole days come from their day overview: totals and calls per tool, no rows.
        let side = q.side;
        store.scan_overview(
            q.org,
            &q.servers,
            q.env,
            q.clamped(window),
            &mut |k, item| match item {
                Item::Total(t) if t.dims.side == side => {
                    all.add_total(&t)?;
                    per_server
                        .entry(k.server)
                        .or_insert_with(|| Acc::new(false))
                        .add_total(&t)
                }
                Item::Tool {
                    side: s,
                    tool,
                    calls,
                } if s == side => {
                    add_tool(tool, calls);
                    Ok(())
                }
                _ => Ok(()),
            },
        )?;
    }
    let mut servers: Vec<ServerRow> = per_server
        .into_iter()
        .map(|(server, a)| ServerRow {
            server,
            last_unix_nano: a.last_unix_nano,
            totals: a.totals(),
        })
        .collect();
    servers.sort_by(|a, b| {
        b.totals
            .calls
            .total_cmp(&a.totals.calls)
            .then_with(|| a.server.cmp(&b.server))
    });
    let most_used_server = servers
        .first()
        .filter(|s| s.totals.calls > 0.0)
        .map(|s| s.server);
    let most_called_tool = tools
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
    Ok(Overview {
        servers,
        most_used_server,
        most_called_tool,
        totals: all.totals(),
    })
}

/// `part / whole`, 0 when there is no whole.
pub fn rate(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

/// The stable hash distinct users and sessions are counted by (exposed for tests and tools).
pub fn distinct_hash(s: &str) -> u64 {
    kmv::hash_str(s)
}
