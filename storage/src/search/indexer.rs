//! The background indexer: a thread that takes the bucket documents of the batches the ingest
//! writer has just committed (built by the ingest workers with `DocBuilder::of_spans`), merges
//! them, and commits each touched day's tantivy index every `commit_interval_ms` with the day
//! file's `next_block_id` as the watermark.
//!
//! The writer never waits on it: [`IndexFeed::send`] hands over the documents (moved) or,
//! when more than `queue_spans_max` spans are already waiting, drops it and raises the `lost` flag.
//! Whenever the flag is up (and at start), the indexer first catches up from the store: for every
//! day whose file has blocks at or above the committed watermark it re-reads those blocks, which
//! hold every row not yet indexed (block ids only grow; merged blocks get new ids). A duplicate
//! document is harmless (documents are sets of values), a missing one is impossible.
//!
//! Watermarks only move forward, and only to a `next_block_id` observed after the rows below it
//! were added to documents that the same commit contains.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::docs::{BucketKey, BucketValues, DocBuilder};
use crate::error::Result;
use crate::spans::SpanStore;

/// Tuning of the indexer thread.
#[derive(Clone, Copy, Debug)]
pub struct IndexerOptions {
    /// How often documents are committed (the index lag, at most about twice this).
    pub commit_interval_ms: u64,
    /// Spans handed over and not yet turned into documents beyond which batches are dropped
    /// (and re-read from the store later) instead of queued.
    pub queue_spans_max: usize,
    /// A day's writer idle this long is closed (its merges finish, its threads exit).
    pub writer_idle_ms: u64,
}

impl Default for IndexerOptions {
    fn default() -> Self {
        IndexerOptions {
            commit_interval_ms: 1000,
            queue_spans_max: 200_000,
            writer_idle_ms: 60_000,
        }
    }
}

struct Batch {
    /// The committed spans' documents ([`DocBuilder::of_spans`], built by the ingest workers).
    docs: Vec<(BucketKey, BucketValues)>,
    /// How many spans `docs` stand for (what `queue_spans_max` counts).
    spans: usize,
    /// `(day, next_block_id)` of every partition the append committed, read in its transaction.
    marks: Vec<(u32, u64)>,
}

struct Shared {
    lost: AtomicBool,
    spans_waiting: AtomicUsize,
    queue_spans_max: usize,
}

/// The writer's handle: cheap to clone. Dropping every clone stops the indexer (after a last
/// commit).
#[derive(Clone)]
pub struct IndexFeed {
    tx: SyncSender<Batch>,
    shared: Arc<Shared>,
}

impl IndexFeed {
    /// Hands the documents of a committed batch of `spans` spans to the indexer without blocking.
    /// `marks` are `AppendStats::watermarks`. The writer sends documents, not the spans: the spans
    /// are freed by the writer at once, and the indexer's queue holds only distinct values.
    pub fn send(&self, docs: Vec<(BucketKey, BucketValues)>, spans: usize, marks: Vec<(u32, u64)>) {
        let waiting = self.shared.spans_waiting.fetch_add(spans, Ordering::AcqRel);
        if waiting > 0 && waiting + spans > self.shared.queue_spans_max {
            self.shared.spans_waiting.fetch_sub(spans, Ordering::AcqRel);
            self.lost();
            return;
        }
        match self.tx.try_send(Batch { docs, spans, marks }) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.spans_waiting.fetch_sub(spans, Ordering::AcqRel);
                self.lost();
            }
        }
    }

    /// Something was committed that the indexer was not told about (a dropped batch, an append
    /// that failed after committing some days): it will re-read from its watermarks.
    pub fn lost(&self) {
        self.shared.lost.store(true, Ordering::Release);
    }
}

/// Starts the indexer thread for `store`.
pub fn start(
    store: Arc<SpanStore>,
    opts: IndexerOptions,
) -> std::io::Result<(IndexFeed, JoinHandle<()>)> {
    // The span bound is what limits memory; the channel bound only caps tiny batches.
    let (tx, rx) = sync_channel(4096);
    let shared = Arc::new(Shared {
        // Start with a catch-up: the last run may have ended before committing.
        lost: AtomicBool::new(true),
        spans_waiting: AtomicUsize::new(0),
        queue_spans_max: opts.queue_spans_max.max(1),
    });
    let feed = IndexFeed {
        tx,
        shared: Arc::clone(&shared),
    };
    let handle = std::thread::Builder::new()
        .name("search-indexer".into())
        .spawn(move || {
            let mut ix = Indexer {
                store,
                opts,
                shared,
                docs: DocBuilder::default(),
                marks: BTreeMap::new(),
                last_write: BTreeMap::new(),
            };
            if let Err(e) = ix.run(&rx) {
                tracing::error!(error = %e, "search indexer stopped; searches scan unindexed blocks");
            }
        })?;
    Ok((feed, handle))
}

struct Indexer {
    store: Arc<SpanStore>,
    opts: IndexerOptions,
    shared: Arc<Shared>,
    docs: DocBuilder,
    /// Watermark each day's next commit may record.
    marks: BTreeMap<u32, u64>,
    /// When each day last got documents (for closing idle writers).
    last_write: BTreeMap<u32, Instant>,
}

impl Indexer {
    fn run(&mut self, rx: &Receiver<Batch>) -> Result<()> {
        let every = Duration::from_millis(self.opts.commit_interval_ms.max(10));
        let mut due = Instant::now() + every;
        loop {
            if self.shared.lost.swap(false, Ordering::AcqRel) {
                if let Err(e) = self.catch_up() {
                    // Try again later; searches stay correct meanwhile (they scan above the watermark).
                    tracing::warn!(error = %e, "search index catch-up failed");
                    self.shared.lost.store(true, Ordering::Release);
                }
            }
            let wait = due.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(b) => self.take(b),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if self.shared.lost.load(Ordering::Acquire) {
                        let _ = self.catch_up();
                    }
                    self.commit()?;
                    return self.store.search_index().close_writers_except(&[]);
                }
            }
            if Instant::now() >= due {
                if let Err(e) = self.commit() {
                    tracing::warn!(error = %e, "search index commit failed; re-reading from the watermark");
                    self.docs = DocBuilder::default();
                    self.marks.clear();
                    self.shared.lost.store(true, Ordering::Release);
                }
                self.close_idle();
                due = Instant::now() + every;
            }
        }
    }

    fn take(&mut self, b: Batch) {
        // A batch committed after a loss must not move a watermark before the catch-up has run.
        if self.shared.lost.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.catch_up() {
                tracing::warn!(error = %e, "search index catch-up failed");
                self.shared.lost.store(true, Ordering::Release);
            }
        }
        let lost = self.shared.lost.load(Ordering::Acquire);
        for (key, part) in b.docs {
            self.docs.merge(key, part);
        }
        if !lost {
            for (day, next) in &b.marks {
                let m = self.marks.entry(*day).or_insert(0);
                *m = (*m).max(*next);
            }
        }
        self.shared
            .spans_waiting
            .fetch_sub(b.spans, Ordering::AcqRel);
    }

    /// Commits every day with documents or a new watermark.
    fn commit(&mut self) -> Result<()> {
        let mut days = self.docs.days();
        days.extend(self.marks.keys().copied());
        days.sort_unstable();
        days.dedup();
        let search = self.store.search_index();
        for day in days {
            let docs = self.docs.take_day(day);
            let committed = search.watermark(day)?;
            let mark = self.marks.remove(&day).unwrap_or(0).max(committed);
            if docs.is_empty() && mark == committed {
                continue;
            }
            search.commit_day(day, docs, mark, |d| self.store.has_day(d))?;
            self.last_write.insert(day, Instant::now());
        }
        Ok(())
    }

    /// Commits what was gathered, then re-reads every day's blocks above its watermark.
    fn catch_up(&mut self) -> Result<()> {
        // Documents and marks gathered so far are covered by the re-read.
        self.commit()?;
        for day in catch_up(&self.store)? {
            self.last_write.insert(day, Instant::now());
        }
        self.close_idle();
        Ok(())
    }

    fn close_idle(&mut self) {
        let idle = Duration::from_millis(self.opts.writer_idle_ms);
        let now = Instant::now();
        self.last_write.retain(|_, t| now.duration_since(*t) < idle);
        let keep: Vec<u32> = self.last_write.keys().copied().collect();
        if let Err(e) = self.store.search_index().close_writers_except(&keep) {
            tracing::warn!(error = %e, "closing idle search index writers failed");
        }
    }
}

/// Re-reads, for every day, the blocks at or above its committed watermark and commits their
/// documents with the file's `next_block_id` as the new watermark. Returns the days committed.
/// What the indexer runs at start and after a loss; tests and benchmarks call it to index a store
/// synchronously.
pub fn catch_up(store: &SpanStore) -> Result<Vec<u32>> {
    let search = store.search_index();
    let mut done = Vec::new();
    for day in store.days() {
        let from = search.watermark(day)?;
        let mut docs = DocBuilder::default();
        let Some(next) = store.index_blocks_from(day, from, &mut docs)? else {
            continue;
        };
        if next <= from {
            continue;
        }
        let list = docs.take_day(day);
        tracing::debug!(day, from, next, docs = list.len(), "search index catch-up");
        if search.commit_day(day, list, next, |d| store.has_day(d))? {
            done.push(day);
        }
    }
    Ok(done)
}
