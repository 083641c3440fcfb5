//! Rollups: pre-aggregated MCP request statistics (weighted counts, errors, duration sums, latency
//! sketches, distinct users and sessions) per (org, server, env, dimensions) and time bucket, kept
//! in the day partition files next to the spans and written in the same transaction.
//!
//! Two "cubes" hold the same statistics over different dimension sets: [`Cube::Tools`] leaves the
//! user out (few rows: what summaries, time series, top tools and the overview read) and
//! [`Cube::Users`] keeps it (what per-user tables and user filters read). Each append writes its
//! own minute deltas (no read-modify-write on the ingest path); compaction merges them into the
//! minute blobs, and rolls a finished day's minutes into hour blobs (both cubes) and one day blob
//! (tools cube) with its overview projection. On-disk layout: docs/format.md, "Rollups".

mod blob;
mod delta;
pub mod kmv;
pub mod overview;
mod roll;
mod scan;
pub mod sketch;

#[cfg(test)]
mod tests;

pub use blob::{
    for_each_users_row, Blob, DimFilter, Dims, ErrorExample, Stats, UsersRow, DIMS, D_CLIENT,
    D_CLIENT_VERSION, D_ERROR_TYPE, D_METHOD, D_PROTOCOL, D_TOOL, D_USER, ERROR_TYPE_UNSPECIFIED,
    NO_FILTER,
};
pub(crate) use delta::Deltas;
pub(crate) use roll::{
    apply_deltas, merge_deltas, read_deltas, roll_day, write_overviews, Unmerged,
};
pub(crate) use scan::{scan_partition, scan_partition_blobs, scan_partition_overview};
pub use scan::{Read, RowRef, ScanRange};

use redb::TableDefinition;

use crate::model::{Env, OrgId, ServerId, SpanRecord, SPAN_KIND_CLIENT};

/// `[org u32 BE][server u32 BE][env u8][cube u8][res u8][start minute u32 BE]` -> encoded [`Blob`].
pub const ROLLUPS: TableDefinition<&[u8; 15], &[u8]> = TableDefinition::new("rollups");
/// `[rollups key][seq u64 BE]` -> encoded [`Blob`]: what one append added to a minute blob, kept
/// apart so that an append writes only its own batch; compaction merges them into `rollups`.
pub const ROLLUP_DELTAS: TableDefinition<&[u8; 23], &[u8]> = TableDefinition::new("rollup_deltas");

/// The key of a delta: the blob's key, then the sequence number of the append that wrote it.
pub fn delta_key(key: &BlobKey, seq: u64) -> [u8; 23] {
    let mut k = [0u8; 23];
    k[..15].copy_from_slice(&key.encode());
    k[15..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub const MINUTE_NANOS: u64 = 60 * 1_000_000_000;
pub const HOUR_NANOS: u64 = 60 * MINUTE_NANOS;

/// Which dimension set a blob aggregates over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cube {
    /// Every dimension except the user; rows carry a distinct-users sketch instead.
    Tools = 0,
    /// Every dimension including the user.
    Users = 1,
}

impl Cube {
    pub const ALL: [Cube; 2] = [Cube::Tools, Cube::Users];
    fn from_u8(v: u8) -> Option<Cube> {
        match v {
            0 => Some(Cube::Tools),
            1 => Some(Cube::Users),
            _ => None,
        }
    }
}

/// Width of the time bucket a blob covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Res {
    Minute = 0,
    Hour = 1,
    Day = 2,
    /// Not a blob: the overview projection of the tools cube's day blob (see [`overview`]).
    DayOverview = 3,
}

impl Res {
    pub fn nanos(self) -> u64 {
        match self {
            Res::Minute => MINUTE_NANOS,
            Res::Hour => HOUR_NANOS,
            Res::Day | Res::DayOverview => crate::model::DAY_NANOS,
        }
    }
    fn from_u8(v: u8) -> Option<Res> {
        match v {
            0 => Some(Res::Minute),
            1 => Some(Res::Hour),
            2 => Some(Res::Day),
            3 => Some(Res::DayOverview),
            _ => None,
        }
    }
}

/// Which side of an MCP exchange a span records: the server answering (kind SERVER, or anything
/// but CLIENT) or a client calling. Analytics show the server side unless asked otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Server = 0,
    Client = 1,
}

impl Side {
    pub fn of(span: &SpanRecord) -> Side {
        if span.kind == SPAN_KIND_CLIENT {
            Side::Client
        } else {
            Side::Server
        }
    }
    fn from_u8(v: u8) -> Option<Side> {
        match v {
            0 => Some(Side::Server),
            1 => Some(Side::Client),
            _ => None,
        }
    }
}

/// Where one blob lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey {
    pub org: OrgId,
    pub server: ServerId,
    pub env: Env,
    pub cube: Cube,
    pub res: Res,
    /// Start of the bucket, in minutes since the Unix epoch.
    pub start_minute: u32,
}

impl BlobKey {
    pub fn encode(&self) -> [u8; 15] {
        let mut k = [0u8; 15];
        k[0..4].copy_from_slice(&self.org.to_be_bytes());
        k[4..8].copy_from_slice(&self.server.to_be_bytes());
        k[8] = self.env as u8;
        k[9] = self.cube as u8;
        k[10] = self.res as u8;
        k[11..15].copy_from_slice(&self.start_minute.to_be_bytes());
        k
    }

    pub fn decode(k: &[u8; 15]) -> Option<BlobKey> {
        Some(BlobKey {
            org: u32::from_be_bytes(k[0..4].try_into().ok()?),
            server: u32::from_be_bytes(k[4..8].try_into().ok()?),
            env: Env::from_u8(k[8])?,
            cube: Cube::from_u8(k[9])?,
            res: Res::from_u8(k[10])?,
            start_minute: u32::from_be_bytes(k[11..15].try_into().ok()?),
        })
    }

    pub fn start_unix_nano(&self) -> u64 {
        u64::from(self.start_minute) * MINUTE_NANOS
    }
}

/// The minute (since the epoch) a timestamp falls in. Saturates far in the future (year 10,000+).
pub fn minute_of(unix_nano: u64) -> u32 {
    u32::try_from(unix_nano / MINUTE_NANOS).unwrap_or(u32::MAX)
}

/// The weight a span counts with in analytics: 1/p for the probability p it was kept with
/// (design.md section 5). A missing or nonsensical probability counts as 1.
pub fn weight_of(span: &SpanRecord) -> f64 {
    let p = span.sample_probability;
    if p.is_finite() && p > 0.0 && p < 1.0 {
        1.0 / p
    } else {
        1.0
    }
}

/// Whether a span counts in rollups: MCP requests only (spans that carry a method).
pub fn counts(span: &SpanRecord) -> bool {
    span.is_mcp_request()
}
