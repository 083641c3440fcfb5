//! The time-partitioned columnar span store: one redb file per UTC day, spans stored column-wise in
//! blocks per (org, server), a trace index per partition, header-based block skipping for `list`,
//! and `scan`, the bulk read behind export. On-disk format: docs/format.md.

mod append;
mod block;
mod chunks;
mod cols;
mod columns;
mod compact;
mod cursor;
mod decoded;
mod fast;
mod header;
mod kept;
mod lazy;
mod list;
mod materialize;
mod partition;
mod registry;
mod retention;
mod rollups;
mod scan;
mod textscan;
mod trace;
mod trace_index;
mod upgrade;
mod write;

#[cfg(test)]
mod tests;

use std::path::Path;

use crate::error::{Result, StorageError};
use crate::model::{Env, ServerId, SpanRecord};
use crate::search::{SearchIndex, SearchOptions};

/// The error for bytes read back from disk that do not make sense.
pub(crate) fn corrupt(what: impl Into<String>) -> StorageError {
    StorageError::Corrupt(what.into())
}

pub use columns::StrField;
pub use compact::{is_finished, now_unix_nano};
pub use decoded::ScanBlock;
pub use partition::{civil_from_days, days_from_civil, FORMAT_VERSION};
pub use retention::{floor as retention_floor, RetentionPolicy, RetentionStats};
pub use scan::{ScanSink, ScanStats, SCAN_LIVE_BLOCKS_MAX};

/// `YYYY-MM-DD.redb`, the file name of a day partition.
pub fn partition_file_name(day: u32) -> String {
    partition::file_name(day)
}

/// The day of a `YYYY-MM-DD` name (canonical spelling only).
pub fn parse_file_name_stem(stem: &str) -> Option<u32> {
    partition::parse_file_name(&format!("{stem}.redb"))
}

/// The `meta` table of a partition file (format version and block counters), for format tests.
#[doc(hidden)]
pub fn partition_meta_table() -> redb::TableDefinition<'static, &'static str, &'static [u8]> {
    partition::META
}
/// For the format tests of other modules: the body chunk table and chunk lengths.
#[cfg(test)]
pub(crate) use chunks::{CHUNK_BYTES, CHUNK_BYTES_MIN};
#[cfg(test)]
pub(crate) use partition::BODIES;
use registry::Registry;

/// Default of [`SpanStoreOptions::row_group_rows`]: at 8192-row blocks, a returned row costs an
/// eighth of its block's columns.
pub const ROW_GROUP_ROWS_DEFAULT: usize = 1024;

/// Default of [`SpanStoreOptions::rollup_deltas_bytes_max`]: about a third of a second of deltas
/// at full ingest speed. Merging this often took as many writer and compaction instructions per
/// span as one merge per 10 s, and kept 18 bytes per span of deltas out of the file
/// (docs/benchmarks.md, "Disk: rollup deltas merged by size").
pub const ROLLUP_DELTAS_BYTES_MAX_DEFAULT: u64 = 1 << 20;

/// Default of [`SpanStoreOptions::pending_kept_bytes_max`]: the pending rows of five or so busy
/// servers (under a block's 8,192 rows each). Only today's and yesterday's (within the seal grace)
/// handles keep any.
pub const PENDING_KEPT_BYTES_MAX_DEFAULT: usize = 16 << 20;

/// Tuning of the span store. Every limit has its unit in its name.
#[derive(Clone, Debug)]
pub struct SpanStoreOptions {
    /// Rows per block after compaction (and the most one `append` puts in one block).
    pub block_rows_max: usize,
    /// zstd level for blocks written by `append` (latency matters: the request waits on it). These
    /// pending blocks are rewritten at `zstd_level_compact` once their server has a full block's
    /// rows, so their ratio matters little: -1 (zstd's fast mode) took 2.9% fewer instructions
    /// per appended span than 1 (docs/benchmarks.md).
    pub zstd_level_append: i32,
    /// zstd level for blocks written by `compact` (written once, read for months).
    pub zstd_level_compact: i32,
    /// Rows per row group of a block: a block of more rows stores its end, counts, sample
    /// probability, extra and string columns in segments of this many rows, so reading a few rows
    /// decompresses about this many (docs/format.md, "Row groups"). Recorded in each block.
    pub row_group_rows: usize,
    /// redb page cache of each open partition file (redb splits it 90% read, 10% write buffer).
    pub cache_bytes_per_partition: usize,
    /// redb page cache of the partitions of today and yesterday, where appends and merges
    /// happen (the larger of this and `cache_bytes_per_partition` applies).
    pub cache_bytes_current_partition: usize,
    /// Open partition files kept at most; idle ones beyond this are closed, least recently used first.
    pub open_partitions_max: usize,
    /// Rollup deltas (written by every append, docs/format.md) the store holds before they are
    /// merged into their minute blobs, which [`SpanStore::rollup_deltas_due`] reports. Unmerged
    /// deltas take file pages (merged only every 10 s, they held 25 bytes per span of a 2M-span
    /// ingest run's file) and every analytics read of their minutes merges them again.
    pub rollup_deltas_bytes_max: u64,
    /// Heap bytes of decoded pending blocks each partition handle of a day not yet finished keeps
    /// after writing them, so the merge that takes them need not read them back; blocks past it
    /// are read from the file. 0 keeps none.
    pub pending_kept_bytes_max: usize,
    /// Text search limits and index tuning.
    pub search: SearchOptions,
}

impl Default for SpanStoreOptions {
    fn default() -> Self {
        SpanStoreOptions {
            block_rows_max: 8192,
            zstd_level_append: -1,
            zstd_level_compact: 3,
            row_group_rows: ROW_GROUP_ROWS_DEFAULT,
            cache_bytes_per_partition: 1 << 20,
            cache_bytes_current_partition: 32 << 20,
            open_partitions_max: 100,
            rollup_deltas_bytes_max: ROLLUP_DELTAS_BYTES_MAX_DEFAULT,
            pending_kept_bytes_max: PENDING_KEPT_BYTES_MAX_DEFAULT,
            search: SearchOptions::default(),
        }
    }
}

/// Span storage shared as `Arc<SpanStore>` between one writer thread and many readers.
pub struct SpanStore {
    opts: SpanStoreOptions,
    parts: Registry,
    /// The per-day tantivy indexes beside the day files.
    search: SearchIndex,
    /// One compaction at a time: its plan (read outside the write lock) stays valid because
    /// appends only add blocks and only compaction removes them.
    compact_lock: parking_lot::Mutex<()>,
    /// Rollup delta bytes appended since the last delta merge started (all partitions).
    delta_bytes: std::sync::atomic::AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    Ok,
    /// `SpanRecord::is_error()`.
    Error,
}

#[derive(Clone, Debug, Default)]
pub struct SpanFilter {
    /// `None` = all servers of the org.
    pub server_ids: Option<Vec<ServerId>>,
    pub env: Option<Env>,
    /// Inclusive, on start time.
    pub from_unix_nano: Option<u64>,
    /// Exclusive, on start time.
    pub to_unix_nano: Option<u64>,
    pub method: Option<String>,
    pub tool: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    /// Exact `error.type` (canonical `error_type`); [`crate::rollup::ERROR_TYPE_UNSPECIFIED`]
    /// (`_OTHER`) also matches error spans without one, as analytics groups them.
    pub error_type: Option<String>,
    /// Exact client name (canonical `client_name`).
    pub client_name: Option<String>,
    pub status: Option<StatusFilter>,
    pub min_duration_nanos: Option<u64>,
    pub trace_id: Option<[u8; 16]>,
}

#[derive(Clone, Debug, Default)]
pub struct SpanPage {
    pub spans: Vec<SpanRecord>,
    /// Opaque, URL-safe ASCII; pass back to `list` to get the next page. `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendStats {
    pub spans: usize,
    pub partitions: usize,
    pub blocks: usize,
    pub bytes_written: usize,
    /// `(day, next_block_id)` of every partition committed, as of its commit: every row of
    /// this append is in a block below it (what the search indexer's watermark may advance to).
    pub watermarks: Vec<(u32, u64)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Partitions in which at least one merge committed.
    pub partitions: usize,
    /// Blocks removed by merges.
    pub blocks_merged: usize,
    /// Blocks written by merges.
    pub blocks_written: usize,
    pub rows_rewritten: usize,
    /// Minute rollup blobs of finished days rolled into hour and day blobs.
    pub rollup_minutes_rolled: usize,
    /// Append deltas merged into their minute blobs.
    pub rollup_deltas_merged: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// UTC day number (`model::day_of`).
    pub day: u32,
    /// Everything the day keeps on disk: its file plus its search index directory.
    pub bytes: u64,
    /// The part of `bytes` in the search index directory (`YYYY-MM-DD.idx/`).
    pub index_bytes: u64,
}

impl SpanStore {
    /// Opens (creating if needed) the span store in `dir`. Lists file names only: no partition is
    /// opened and no data is read until a query or append needs it.
    pub fn open(dir: &Path, opts: SpanStoreOptions) -> Result<SpanStore> {
        if opts.block_rows_max == 0 || opts.block_rows_max > block::BLOCK_ROWS_LIMIT {
            return Err(StorageError::Invalid(format!(
                "block_rows_max {}",
                opts.block_rows_max
            )));
        }
        let parts = Registry::open(
            dir,
            opts.cache_bytes_per_partition,
            opts.cache_bytes_current_partition,
            opts.open_partitions_max.max(1),
        )?;
        let days = parts.days_desc().into_iter().collect();
        let search = SearchIndex::open(dir, opts.search, &days)?;
        Ok(SpanStore {
            opts,
            parts,
            search,
            compact_lock: parking_lot::Mutex::new(()),
            delta_bytes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Day partitions present, oldest first, with the bytes each keeps on disk (file and index).
    pub fn partitions(&self) -> Result<Vec<PartitionInfo>> {
        let mut infos = self.parts.infos()?;
        for p in &mut infos {
            p.index_bytes = self.search.day_bytes(p.day)?;
            p.bytes += p.index_bytes;
        }
        Ok(infos)
    }

    /// Deletes the partition file of `day` and its search index (no-op if absent). Waits for a
    /// running write on it; readers holding it finish on the unlinked file.
    pub fn drop_partition(&self, day: u32) -> Result<()> {
        self.parts.drop_day(day)?;
        self.search.drop_day(day)
    }

    /// Whether `day` has a partition file.
    pub fn has_day(&self, day: u32) -> bool {
        self.parts.has_day(day)
    }

    /// Days with a partition file, oldest first.
    pub fn days(&self) -> Vec<u32> {
        let mut d = self.parts.days_desc();
        d.reverse();
        d
    }

    /// The search side of the store (the indexer commits through it).
    pub fn search_index(&self) -> &SearchIndex {
        &self.search
    }
}
