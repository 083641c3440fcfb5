//! Text search: one tantivy index per day partition (`spans/YYYY-MM-DD.idx/`), beside the day file,
//! whose documents are the distinct searched values of the spans of one (org, server, env,
//! minute) (docs/format.md, "Search index"). A search asks the index which buckets may hold a
//! match, then reads only those time ranges of the span store and verifies every span with the
//! same analyzer (`SpanStore::search`), so a result is always a stored span of the caller's org.
//!
//! The index is derived data kept off the ingest path: the [`indexer`] thread builds documents
//! from what the writer just committed and commits tantivy every second or so, with the day
//! file's `next_block_id` (the watermark) in the commit payload. Rows in blocks at or above the
//! watermark are not (known to be) indexed; searches verify those blocks directly, so results
//! never lag, and after a crash the indexer re-reads exactly those blocks.
//!
//! At most `open_days_max` day indexes stay open (least recently used ones without a writer are
//! closed and reopened on demand; a closed day's watermark is remembered, so catch-up needs no
//! reopen). Retention deletes a dropped day's directory after closing its index, and deletes a
//! purged organization's documents.

pub mod analyzer;
mod day;
pub mod docs;
pub mod indexer;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

pub use analyzer::{Matcher, QueryError, QueryLimits, TextQuery};
use day::DayIndex;
pub use day::{merge_intervals, Interval, INDEX_VERSION};
use docs::{BucketKey, BucketValues};

use crate::error::{Result, StorageError};
use crate::model::{Env, OrgId, ServerId};
use crate::spans::parse_file_name_stem;

/// Limits and tuning of search. Every limit has its unit in its name.
#[derive(Clone, Copy, Debug)]
pub struct SearchOptions {
    /// Longest `q` accepted.
    pub query_bytes_max: usize,
    /// Most words (tokens, over all terms) in one query.
    pub query_terms_max: usize,
    /// Most values one suggestion request returns.
    pub suggest_limit_max: usize,
    /// tantivy's indexing memory budget per open day writer (tantivy needs at least 15 MB).
    pub writer_bytes_max: usize,
    /// Matching index documents of one day beyond which a search scans that day's blocks instead
    /// of collecting bucket ranges (bounds a query's memory).
    pub candidates_per_day_max: usize,
    /// Day indexes kept open at most (each holds memory maps of its files and a reader; tantivy
    /// closes a file once it is mapped); the least recently used ones without a writer are
    /// closed beyond this and reopened on demand. The default covers the default 90-day
    /// retention: a 90-day search would otherwise reopen indexes on every query (about 0.5 ms
    /// each).
    pub open_days_max: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            query_bytes_max: 512,
            query_terms_max: 16,
            suggest_limit_max: 100,
            writer_bytes_max: 16_000_000,
            candidates_per_day_max: 200_000,
            open_days_max: 100,
        }
    }
}

/// tantivy's smallest accepted writer budget.
pub const WRITER_BYTES_MIN: usize = 15_000_000;

/// The fields suggestions are offered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuggestField {
    Tool,
    User,
}

impl SuggestField {
    pub fn parse(s: &str) -> Option<SuggestField> {
        match s {
            "tool" => Some(SuggestField::Tool),
            "user" => Some(SuggestField::User),
            _ => None,
        }
    }
}

pub(crate) fn index_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Index(e.to_string())
}

/// What a search may skip in one day: rows of blocks below `watermark` are indexed, so only
/// those inside `ranges` (inclusive start-time intervals per server, sorted, disjoint, each with
/// the mask of fields that can match there) can match. `ranges: None` means "no restriction"
/// (too many candidates: scan the day).
#[derive(Debug, Default)]
pub struct DayCandidates {
    pub watermark: u64,
    pub ranges: Option<FxHashMap<ServerId, Vec<Interval>>>,
}

/// The day indexes of a span store directory. Opened lazily, at most `open_days_max` kept open.
pub struct SearchIndex {
    dir: PathBuf,
    opts: SearchOptions,
    days: Mutex<OpenDays>,
}

/// The open day indexes, with what closing them must not forget.
#[derive(Default)]
struct OpenDays {
    /// Open indexes with the tick of their last use.
    open: HashMap<u32, (Arc<DayIndex>, u64)>,
    tick: u64,
    /// The committed watermark of each day whose index was closed after being open: exact, since
    /// a closed day gets no commit (committing reopens it). Lets the indexer's catch-up read
    /// every day's watermark without reopening every index.
    closed_marks: HashMap<u32, u64>,
}

impl OpenDays {
    /// Closes least recently used indexes without a writer (and nobody committing) until at most
    /// `max` are open, never `keep`. Indexes with a writer stay open (the bound is then exceeded
    /// until the indexer closes idle writers); searches holding a closed one keep its snapshot.
    fn evict(&mut self, max: usize, keep: Option<u32>) {
        if self.open.len() <= max {
            return;
        }
        let mut lru: Vec<(u64, u32)> = self
            .open
            .iter()
            .filter(|(d, _)| Some(**d) != keep)
            .map(|(d, (_, used))| (*used, *d))
            .collect();
        lru.sort_unstable();
        for (_, day) in lru {
            if self.open.len() <= max {
                break;
            }
            let Some((d, _)) = self.open.get(&day) else {
                continue;
            };
            if d.try_close_idle() {
                self.closed_marks.insert(day, d.snapshot().watermark);
                self.open.remove(&day);
            }
        }
    }
}

/// Sum of the lengths of the files under `dir` (0 if absent); entries vanishing meanwhile count 0.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut total = 0u64;
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += dir_bytes(&entry.path())?,
            Ok(m) => total += m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(total)
}

/// `YYYY-MM-DD.idx`, the index directory of a day.
pub fn dir_name(day: u32) -> String {
    let f = crate::spans::partition_file_name(day);
    format!("{}.idx", f.trim_end_matches(".redb"))
}

impl SearchIndex {
    /// Opens the search side of the store in `dir`; deletes index directories whose day file is
    /// gone (a crash between the two deletions of `drop_partition`).
    pub fn open(dir: &Path, opts: SearchOptions, days: &BTreeSet<u32>) -> Result<SearchIndex> {
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(day) = name.strip_suffix(".idx").and_then(parse_file_name_stem) else {
                continue;
            };
            if !days.contains(&day) {
                std::fs::remove_dir_all(dir.join(name))?;
            }
        }
        Ok(SearchIndex {
            dir: dir.to_path_buf(),
            opts,
            days: Mutex::new(OpenDays::default()),
        })
    }

    pub fn options(&self) -> &SearchOptions {
        &self.opts
    }

    pub fn limits(&self) -> QueryLimits {
        QueryLimits {
            query_bytes_max: self.opts.query_bytes_max,
            query_tokens_max: self.opts.query_terms_max,
        }
    }

    fn writer_bytes(&self) -> usize {
        self.opts.writer_bytes_max.max(WRITER_BYTES_MIN)
    }

    /// The open index of `day`: opened if its directory exists, created only with `create`.
    fn day(&self, day: u32, create: bool) -> Result<Option<Arc<DayIndex>>> {
        let mut g = self.days.lock();
        self.day_locked(&mut g, day, create)
    }

    /// [`Self::day`] under the lock (opening under it keeps one open instance per directory, and
    /// serializes opening with `drop_day`, so a dropped day's directory is never recreated).
    fn day_locked(
        &self,
        g: &mut OpenDays,
        day: u32,
        create: bool,
    ) -> Result<Option<Arc<DayIndex>>> {
        g.tick += 1;
        let tick = g.tick;
        if let Some((d, used)) = g.open.get_mut(&day) {
            *used = tick;
            return Ok(Some(d.clone()));
        }
        let path = self.dir.join(dir_name(day));
        if !create && !path.exists() {
            return Ok(None);
        }
        let d = Arc::new(DayIndex::open(&path)?);
        g.closed_marks.remove(&day);
        g.open.insert(day, (d.clone(), tick));
        g.evict(self.opts.open_days_max.max(1), Some(day));
        Ok(Some(d))
    }

    /// The committed watermark of `day` (0 without an index). Does not reopen a closed index.
    pub fn watermark(&self, day: u32) -> Result<u64> {
        let mut g = self.days.lock();
        if let Some((d, _)) = g.open.get(&day) {
            return Ok(d.snapshot().watermark);
        }
        if let Some(&w) = g.closed_marks.get(&day) {
            return Ok(w);
        }
        Ok(match self.day_locked(&mut g, day, false)? {
            Some(d) => d.snapshot().watermark,
            None => 0,
        })
    }

    /// Commits `docs` into the index of `day` with `watermark`, unless `day_exists` says the
    /// partition is gone (checked under the lock `drop_day` also takes, after the partition file
    /// is deleted, so a dropped day's directory is never created again by a late commit). Reopens
    /// the day if its index was closed meanwhile.
    pub fn commit_day(
        &self,
        day: u32,
        mut docs: Vec<(BucketKey, BucketValues)>,
        watermark: u64,
        day_exists: impl Fn(u32) -> bool,
    ) -> Result<bool> {
        loop {
            let d = {
                let mut g = self.days.lock();
                if !day_exists(day) {
                    return Ok(false);
                }
                match self.day_locked(&mut g, day, true)? {
                    Some(d) => d,
                    None => return Ok(false),
                }
            };
            if d.commit(&mut docs, watermark, self.writer_bytes())? {
                return Ok(true);
            }
            // Closed between the lookup and the commit (evicted or dropped): look again.
        }
    }

    /// Deletes the documents of `org` from the index of `day` (a retention purge removed its rows
    /// from the day file). Returns how many live documents were deleted (0 without an index).
    pub fn purge_org(&self, day: u32, org: OrgId) -> Result<u64> {
        loop {
            let Some(d) = self.day(day, false)? else {
                return Ok(0);
            };
            if let Some(n) = d.delete_org(org, self.writer_bytes())? {
                return Ok(n);
            }
        }
    }

    /// Closes the writers of every day not in `keep` (waiting for their merges), then closes
    /// indexes beyond `open_days_max`.
    pub fn close_writers_except(&self, keep: &[u32]) -> Result<()> {
        let open: Vec<(u32, Arc<DayIndex>)> = self
            .days
            .lock()
            .open
            .iter()
            .filter(|(d, (i, _))| !keep.contains(d) && i.has_writer())
            .map(|(d, (i, _))| (*d, i.clone()))
            .collect();
        for (_, i) in open {
            i.close_writer()?;
        }
        self.days.lock().evict(self.opts.open_days_max.max(1), None);
        Ok(())
    }

    /// Days whose index is open, ascending; for tests and statistics.
    pub fn open_days(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.days.lock().open.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Documents in the committed index of `day` (0 without one); for statistics.
    pub fn doc_count(&self, day: u32) -> Result<u64> {
        Ok(match self.day(day, false)? {
            Some(d) => d.snapshot().searcher.as_ref().map_or(0, |s| s.num_docs()),
            None => 0,
        })
    }

    /// Bytes the index directory of `day` takes (the sum of its files' lengths; 0 without one).
    /// Files tantivy deletes meanwhile are skipped.
    pub fn day_bytes(&self, day: u32) -> Result<u64> {
        dir_bytes(&self.dir.join(dir_name(day)))
    }

    /// Closes the index of `day` (waiting for its writer's merges) and deletes its directory.
    /// Call after the partition file is gone: a concurrent `commit_day` then sees the day
    /// missing, and one already holding the index finds it closed.
    pub fn drop_day(&self, day: u32) -> Result<()> {
        let mut g = self.days.lock();
        g.closed_marks.remove(&day);
        if let Some((d, _)) = g.open.remove(&day) {
            // Its writer holds the directory lock and merge threads: stop them first.
            d.close()?;
        }
        match std::fs::remove_dir_all(self.dir.join(dir_name(day))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Which buckets of `day` may hold a span of `org` matching `q` (see [`DayCandidates`]).
    #[allow(clippy::too_many_arguments)]
    pub fn candidates(
        &self,
        day: u32,
        org: OrgId,
        servers: Option<&[ServerId]>,
        env: Option<Env>,
        q: &TextQuery,
        lo: u64,
        top: u64,
    ) -> Result<DayCandidates> {
        let Some(d) = self.day(day, false)? else {
            return Ok(DayCandidates::default());
        };
        let snap = d.snapshot();
        let Some(searcher) = &snap.searcher else {
            return Ok(DayCandidates::default());
        };
        let ranges = d.candidates(
            searcher,
            org,
            servers,
            env,
            q.terms(),
            lo,
            top,
            self.opts.candidates_per_day_max,
        )?;
        Ok(DayCandidates {
            watermark: snap.watermark,
            ranges,
        })
    }

    /// Indexed values of `field` for `org` starting with `prefix` (case-insensitive) over `days`,
    /// sorted case-insensitively, distinct, at most `limit`.
    pub fn suggest(
        &self,
        days: &[u32],
        field: SuggestField,
        org: OrgId,
        server: Option<ServerId>,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>> {
        let limit = limit.min(self.opts.suggest_limit_max);
        let prefix = prefix.to_lowercase();
        let mut out = BTreeSet::new();
        if limit == 0 {
            return Ok(Vec::new());
        }
        for &day in days {
            let Some(d) = self.day(day, false)? else {
                continue;
            };
            let snap = d.snapshot();
            if let Some(s) = &snap.searcher {
                d.suggest(s, field, org, server, &prefix, limit, &mut out)?;
            }
        }
        let mut values: Vec<String> = Vec::with_capacity(out.len());
        for (_, v) in out {
            if values.last() != Some(&v) {
                values.push(v);
            }
        }
        Ok(values)
    }
}
