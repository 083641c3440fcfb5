//! The bounded ingest queue and the writer thread that group-commits it into the span store.
//!
//! HTTP handlers push one job per request and wait for its acknowledgement; the single writer thread
//! takes every job waiting (up to `group_commit_spans_max` spans), stores them with ONE
//! `SpanStore::append` (one durable commit per touched partition) and only then acknowledges each
//! job. Memory is bounded twice: by waiting requests and by waiting spans. A full queue answers at
//! once (the handler turns it into 429 + Retry-After) instead of growing.
//!
//! After acknowledging, the writer hands the committed batch's search documents to the indexer
//! (built by the pushing workers, moved, never waited on: `IndexFeed::send` drops them and flags a
//! re-read when the indexer is behind). The spans themselves stay with the writer, which reuses
//! its batch buffer, so indexing adds no second batch of spans to memory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use mcp_obs_storage::model::SpanRecord;
use mcp_obs_storage::search::docs::{BucketKey, BucketValues, DocBuilder};
use mcp_obs_storage::search::indexer::IndexFeed;
use mcp_obs_storage::spans::SpanStore;
use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

/// Why a job was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// Too many requests or spans waiting; retry later.
    Full,
    /// The server is shutting down.
    Closed,
}

/// What the writer answers a job with: `Ok` once durable, or the storage error text.
pub type Ack = Result<(), String>;

struct Job {
    spans: Vec<SpanRecord>,
    /// The spans' search documents, built by the pushing worker when an indexer is attached.
    docs: Vec<(BucketKey, BucketValues)>,
    ack: oneshot::Sender<Ack>,
}

#[derive(Default)]
struct Inner {
    jobs: VecDeque<Job>,
    spans_waiting: usize,
    closed: bool,
}

/// Counters for `/readyz` and logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueStats {
    pub requests_waiting: usize,
    pub spans_waiting: usize,
    pub commits: u64,
    pub spans_committed: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    wake: Condvar,
    requests_max: usize,
    spans_max: usize,
    group_spans_max: usize,
    commits: std::sync::atomic::AtomicU64,
    spans_committed: std::sync::atomic::AtomicU64,
    /// Whether pushers build search documents (set once, when a writer with a feed starts).
    index_docs: std::sync::atomic::AtomicBool,
}

/// Handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct IngestQueue {
    shared: Arc<Shared>,
}

impl IngestQueue {
    /// Starts the writer thread. Call [`IngestQueue::close`] and join the handle to drain on shutdown.
    /// Committed batches go to `feed` (the search indexer), if any.
    pub fn start(
        store: Arc<SpanStore>,
        requests_max: usize,
        spans_max: usize,
        group_spans_max: usize,
        feed: Option<IndexFeed>,
    ) -> std::io::Result<(IngestQueue, JoinHandle<()>)> {
        let (queue, mut writer) = IngestQueue::new(requests_max, spans_max, group_spans_max);
        queue
            .shared
            .index_docs
            .store(feed.is_some(), std::sync::atomic::Ordering::Release);
        writer.feed = feed;
        let handle = std::thread::Builder::new()
            .name("span-writer".into())
            .spawn(move || writer.run(&store))?;
        Ok((queue, handle))
    }

    /// The queue and its not yet running writer (tests run the writer when they choose).
    pub fn new(
        requests_max: usize,
        spans_max: usize,
        group_spans_max: usize,
    ) -> (IngestQueue, Writer) {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            wake: Condvar::new(),
            requests_max: requests_max.max(1),
            spans_max: spans_max.max(1),
            group_spans_max: group_spans_max.max(1),
            commits: Default::default(),
            spans_committed: Default::default(),
            index_docs: Default::default(),
        });
        let writer = Writer {
            shared: Arc::clone(&shared),
            feed: None,
        };
        (IngestQueue { shared }, writer)
    }

    /// Enqueues a request's spans; the receiver resolves once they are durable (or failed).
    pub fn push(&self, spans: Vec<SpanRecord>) -> Result<oneshot::Receiver<Ack>, PushError> {
        // Built here, on the request's worker, so the single writer thread does not pay for it.
        let docs = if self
            .shared
            .index_docs
            .load(std::sync::atomic::Ordering::Acquire)
        {
            DocBuilder::of_spans(&spans)
        } else {
            Vec::new()
        };
        let (tx, rx) = oneshot::channel();
        let mut inner = self.shared.inner.lock();
        if inner.closed {
            return Err(PushError::Closed);
        }
        // A single request larger than the span budget is still admitted into an empty queue,
        // otherwise it could never be stored; the per-request span limit bounds it.
        let over_spans =
            inner.spans_waiting + spans.len() > self.shared.spans_max && inner.spans_waiting > 0;
        if inner.jobs.len() >= self.shared.requests_max || over_spans {
            return Err(PushError::Full);
        }
        inner.spans_waiting += spans.len();
        inner.jobs.push_back(Job {
            spans,
            docs,
            ack: tx,
        });
        drop(inner);
        self.shared.wake.notify_one();
        Ok(rx)
    }

    /// Stops accepting; the writer stores what is queued and then exits.
    pub fn close(&self) {
        self.shared.inner.lock().closed = true;
        self.shared.wake.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.shared.inner.lock().closed
    }

    pub fn stats(&self) -> QueueStats {
        use std::sync::atomic::Ordering::Relaxed;
        let inner = self.shared.inner.lock();
        QueueStats {
            requests_waiting: inner.jobs.len(),
            spans_waiting: inner.spans_waiting,
            commits: self.shared.commits.load(Relaxed),
            spans_committed: self.shared.spans_committed.load(Relaxed),
        }
    }
}

/// The consuming side of the queue; [`Writer::run`] returns once the queue is closed and empty.
pub struct Writer {
    shared: Arc<Shared>,
    feed: Option<IndexFeed>,
}

impl Writer {
    pub fn run(self, store: &SpanStore) {
        writer_loop(&self.shared, store, self.feed.as_ref())
    }
}

fn writer_loop(shared: &Shared, store: &SpanStore, feed: Option<&IndexFeed>) {
    // Every merge into a full block builds megabytes of columns: keep their vectors on this
    // thread instead of faulting fresh pages in each time (bounded, `mcp_obs_storage::bufs`).
    mcp_obs_storage::bufs::enable_on_this_thread();
    // Each job's spans stay in the job's vector: `append_parts` reads them there.
    let mut batch: Vec<Vec<SpanRecord>> = Vec::new();
    let mut spans = 0usize;
    let mut docs: Vec<(BucketKey, BucketValues)> = Vec::new();
    let mut acks: Vec<oneshot::Sender<Ack>> = Vec::new();
    loop {
        {
            let mut inner = shared.inner.lock();
            while inner.jobs.is_empty() && !inner.closed {
                shared.wake.wait(&mut inner);
            }
            if inner.jobs.is_empty() && inner.closed {
                return;
            }
            // Take whole jobs until the group is full; the first job is always taken.
            while let Some(job) = inner.jobs.front() {
                if !acks.is_empty() && spans + job.spans.len() > shared.group_spans_max {
                    break;
                }
                let Some(mut job) = inner.jobs.pop_front() else {
                    break;
                };
                inner.spans_waiting -= job.spans.len();
                spans += job.spans.len();
                batch.push(std::mem::take(&mut job.spans));
                docs.append(&mut job.docs);
                acks.push(job.ack);
            }
        }
        let started = Instant::now();
        let parts: Vec<&[SpanRecord]> = batch.iter().map(Vec::as_slice).collect();
        let mut result = store.append_parts(&parts);
        let ack: Ack = match &result {
            Ok(_) => {
                use std::sync::atomic::Ordering::Relaxed;
                shared.commits.fetch_add(1, Relaxed);
                shared.spans_committed.fetch_add(spans as u64, Relaxed);
                tracing::debug!(
                    spans,
                    requests = acks.len(),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "group commit"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, spans, "group commit failed");
                Err(e.to_string())
            }
        };
        for tx in acks.drain(..) {
            // The requester may have gone away (client disconnect); the spans are stored anyway.
            let _ = tx.send(ack.clone());
        }
        match (feed, &mut result) {
            (Some(f), Ok(stats)) => f.send(
                std::mem::take(&mut docs),
                spans,
                std::mem::take(&mut stats.watermarks),
            ),
            // A failed append may have committed some days: the indexer re-reads from its marks.
            (Some(f), Err(_)) => f.lost(),
            (None, _) => {}
        }
        batch.clear();
        spans = 0;
        docs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_obs_storage::model::{Env, McpFields};
    use mcp_obs_storage::spans::SpanStoreOptions;

    fn span(i: u64) -> SpanRecord {
        let start = 20_000 * mcp_obs_storage::model::DAY_NANOS + i;
        SpanRecord {
            org_id: 1,
            server_id: 1,
            env: Env::Live,
            trace_id: [1 + i as u8; 16],
            span_id: [1; 8],
            parent_span_id: [0; 8],
            start_unix_nano: start,
            end_unix_nano: start + 10,
            name: "tools/call x".into(),
            kind: 2,
            status_code: 0,
            status_message: String::new(),
            flags: 0,
            trace_state: String::new(),
            sample_probability: 1.0,
            service_name: "s".into(),
            mcp: McpFields::default(),
            attributes: vec![],
            events: vec![],
            links: vec![],
            origin: Default::default(),
            dropped_attributes_count: 0,
            dropped_events_count: 0,
            dropped_links_count: 0,
        }
    }

    #[test]
    fn full_closed_and_drain() {
        let (q, writer) = IngestQueue::new(2, 5, 100);
        let a = q.push(vec![span(1), span(2), span(3)]).unwrap();
        // Over the span budget while something waits.
        assert_eq!(
            q.push(vec![span(4), span(5), span(6)]).err(),
            Some(PushError::Full)
        );
        let b = q.push(vec![span(4)]).unwrap();
        // Over the request budget.
        assert_eq!(q.push(vec![span(5)]).err(), Some(PushError::Full));
        assert_eq!(q.stats().requests_waiting, 2);
        assert_eq!(q.stats().spans_waiting, 4);
        q.close();
        assert_eq!(q.push(vec![span(6)]).err(), Some(PushError::Closed));

        // The writer still stores what was queued before the close, in one group commit.
        let dir = std::env::temp_dir().join(format!("mcpobs-queue-{}", std::process::id()));
        let store = SpanStore::open(&dir, SpanStoreOptions::default()).unwrap();
        writer.run(&store);
        assert_eq!(a.blocking_recv().unwrap(), Ok(()));
        assert_eq!(b.blocking_recv().unwrap(), Ok(()));
        assert_eq!(q.stats().commits, 1);
        assert_eq!(q.stats().spans_committed, 4);
        assert_eq!(store.trace(1, &[2; 16]).unwrap().len(), 1);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Group commits stop at `group_spans_max` and count their spans afresh each time: jobs of 2,
    /// 1, 1 and 1 spans with groups of at most 3 make two commits (2 + 1, then 1 + 1; three if the
    /// count carried over), and every span is stored and acknowledged.
    #[test]
    fn group_commits_respect_their_size_across_commits() {
        let (q, writer) = IngestQueue::new(10, 100, 3);
        let jobs = [
            vec![span(1), span(2)],
            vec![span(3)],
            vec![span(4)],
            vec![span(5)],
        ];
        let acks: Vec<_> = jobs.into_iter().map(|j| q.push(j).unwrap()).collect();
        q.close();
        let dir = std::env::temp_dir().join(format!("mcpobs-queue-groups-{}", std::process::id()));
        let store = SpanStore::open(&dir, SpanStoreOptions::default()).unwrap();
        writer.run(&store);
        for ack in acks {
            assert_eq!(ack.blocking_recv().unwrap(), Ok(()));
        }
        assert_eq!(q.stats().commits, 2);
        assert_eq!(q.stats().spans_committed, 5);
        for i in 1..=5u8 {
            assert_eq!(store.trace(1, &[1 + i; 16]).unwrap().len(), 1, "span {i}");
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_oversized_request_is_admitted_into_an_empty_queue() {
        let (q, _writer) = IngestQueue::new(4, 2, 100);
        assert!(q.push((0..10).map(span).collect()).is_ok());
    }
}
