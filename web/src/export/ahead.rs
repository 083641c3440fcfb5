//! Rendering JSON Lines on a second thread: one worker per export renders batches of the scan's
//! blocks ahead of it, and the scan thread, instead of waiting for a batch the worker is still
//! on, renders the next batch nobody has started. Both threads take the batch needed soonest (by
//! the start time of its first row, which is the scan's order), so they share the work whatever
//! the blocks' interleaving; the scan thread still hands every line out itself, in its order, so
//! the output is byte for byte that of the single-threaded path. When the worker is on the batch
//! the scan needs but has not delivered it within [`RENDER_WAIT_US_MAX`] (it is not running: a
//! busy machine), the scan thread renders that batch too and the worker's copy is dropped, so a
//! starved worker does not make the export slower than one thread.
//!
//! Bounds: at most [`RENDER_AHEAD_BATCHES_MAX`] batches (each at most
//! [`AHEAD_BYTES_MAX`](super::json::AHEAD_BYTES_MAX) plus one row) rendered and not yet handed
//! out, plus the one each thread is rendering; blocks the scan drops are dropped here too (each
//! thread keeps at most one more alive while it finishes a batch of it). The worker stops when the
//! export ends for any reason (finished, client gone, error): [`export_to`](super::export_to)
//! runs it in a thread scope, so it is joined before the export returns.

use std::sync::Arc;

use mcp_obs_storage::spans::ScanBlock;
use mcp_obs_storage::Result;
use parking_lot::{Condvar, Mutex, MutexGuard};
use rustc_hash::FxHashMap;

use super::json::{BlockFrags, ExtraCache, Lines, AHEAD_ROWS_MAX};

/// Batches rendered ahead (by either thread, for later) and not handed out yet, at most.
pub const RENDER_AHEAD_BATCHES_MAX: usize = 16;
/// Spare line buffers kept for reuse.
const SPARE_LINES_MAX: usize = RENDER_AHEAD_BATCHES_MAX + 2;
/// How long the scan thread waits for a batch the worker is on before rendering it itself (the
/// worker's copy is then dropped): a batch takes a few hundred µs, so a longer wait means the
/// worker is not running (a busy machine), and waiting on it would make two threads slower than
/// one.
pub const RENDER_WAIT_US_MAX: u64 = 1000;
/// Caches of rendered extras kept per block: one per thread rendering it at the same time.
const CACHES_PER_JOB_MAX: usize = 2;

/// A block registered with [`RenderAhead`].
pub type JobId = u64;

/// The work shared by the scan thread and the worker of one export.
#[derive(Default)]
pub struct RenderAhead {
    state: Mutex<State>,
    /// The worker waits here for work or room.
    work: Condvar,
    /// The scan thread waits here for a batch the worker is rendering.
    ready: Condvar,
}

#[derive(Default)]
struct State {
    jobs: FxHashMap<JobId, Job>,
    next_id: JobId,
    /// Batches claimed for later (by the worker, or by the scan thread while it waits) and not
    /// yet handed out or dropped: in progress or in some job's `done`.
    in_flight: usize,
    spare: Vec<Lines>,
    closed: bool,
    /// The worker has returned (or panicked): nothing it claimed will come.
    worker_gone: bool,
    /// Batches the scan thread took ready-made (rendered for later).
    taken_ahead: u64,
}

/// One prepared block: what rendering its rows needs, and its batches.
struct Job {
    block: Arc<ScanBlock>,
    frags: Arc<BlockFrags>,
    order: Arc<[u32]>,
    /// The first batch nobody has claimed; batches are claimed in order.
    next_claim: usize,
    /// Batches rendered for later: (batch, its lines).
    done: Vec<(usize, Result<Lines>)>,
    /// Batches claimed for later whose rendering has not finished.
    rendering: usize,
    /// Of those, batches the scan thread stopped waiting for and rendered itself.
    abandoned: Vec<usize>,
    /// Caches of rendered extras not in use.
    caches: Vec<ExtraCache>,
}

impl Job {
    /// Start time of the first row of the next unclaimed batch: the later, the sooner needed.
    fn urgency(&self) -> Option<u64> {
        let at = self.next_claim * AHEAD_ROWS_MAX;
        let row = *self.order.get(at)?;
        Some(self.block.start(row as usize))
    }
}

/// A claimed batch, rendered without the lock.
pub(crate) struct Claim {
    id: JobId,
    batch: usize,
    block: Arc<ScanBlock>,
    frags: Arc<BlockFrags>,
    order: Arc<[u32]>,
    cache: ExtraCache,
    lines: Lines,
}

impl Claim {
    fn render(&mut self) -> Result<()> {
        let a = self.batch * AHEAD_ROWS_MAX;
        let b = (a + AHEAD_ROWS_MAX).min(self.order.len());
        self.lines.clear();
        self.lines
            .render(&self.block, &self.frags, &mut self.cache, &self.order[a..b])
    }
}

impl State {
    /// Claims the batch needed soonest that nobody has claimed, if there is room for one more.
    fn claim_ahead(&mut self) -> Option<Claim> {
        if self.in_flight >= RENDER_AHEAD_BATCHES_MAX {
            return None;
        }
        let id = self
            .jobs
            .iter()
            .filter_map(|(&id, j)| j.urgency().map(|u| (u, std::cmp::Reverse(id))))
            .max()
            .map(|(_, std::cmp::Reverse(id))| id)?;
        self.in_flight += 1;
        Some(self.claim(id))
    }

    /// Claims `id`'s next batch (which exists) for later.
    fn claim(&mut self, id: JobId) -> Claim {
        let lines = self.spare.pop().unwrap_or_default();
        let j = self.jobs.get_mut(&id).expect("claimed job is registered");
        let batch = j.next_claim;
        j.next_claim += 1;
        j.rendering += 1;
        Claim {
            id,
            batch,
            block: Arc::clone(&j.block),
            frags: Arc::clone(&j.frags),
            order: Arc::clone(&j.order),
            cache: j.caches.pop().unwrap_or_default(),
            lines,
        }
    }

    /// Files a batch rendered for later (by `claim_ahead`).
    fn file(&mut self, c: Claim, r: Result<()>) {
        match self.jobs.get_mut(&c.id) {
            Some(j) => {
                j.rendering -= 1;
                if j.caches.len() < CACHES_PER_JOB_MAX {
                    j.caches.push(c.cache);
                }
                match j.abandoned.iter().position(|&b| b == c.batch) {
                    Some(at) => {
                        j.abandoned.swap_remove(at);
                        self.in_flight -= 1;
                        if r.is_ok() {
                            self.recycle(c.lines);
                        }
                    }
                    None => j.done.push((c.batch, r.map(|()| c.lines))),
                }
            }
            // The scan dropped the block meanwhile.
            None => {
                self.in_flight -= 1;
                if r.is_ok() {
                    self.recycle(c.lines);
                }
            }
        }
    }

    fn recycle(&mut self, lines: Lines) {
        // Buffers that never grew are not worth keeping (and would crowd out those that did).
        if lines.capacity() > 0 && self.spare.len() < SPARE_LINES_MAX {
            self.spare.push(lines);
        }
    }
}

impl RenderAhead {
    /// The worker's loop: renders the batch needed soonest while there is room, until
    /// [`RenderAhead::close`].
    pub fn work(&self) {
        // Also on a panic: the scan thread must not wait for batches that will never come.
        struct Gone<'a>(&'a RenderAhead);
        impl Drop for Gone<'_> {
            fn drop(&mut self) {
                self.0.state.lock().worker_gone = true;
                self.0.ready.notify_all();
            }
        }
        let _gone = Gone(self);
        let mut st = self.state.lock();
        loop {
            if st.closed {
                return;
            }
            if !self.render_one(&mut st) {
                self.work.wait(&mut st);
            }
        }
    }

    /// One step of the worker, on the calling thread: renders the batch needed soonest if there
    /// is one and room for it. `false` when there was nothing to do.
    pub fn step(&self) -> bool {
        self.render_one(&mut self.state.lock())
    }

    fn render_one(&self, st: &mut MutexGuard<'_, State>) -> bool {
        let Some(mut c) = st.claim_ahead() else {
            return false;
        };
        let r = MutexGuard::unlocked(st, || c.render());
        st.file(c, r);
        self.ready.notify_one();
        true
    }

    /// Claims the batch needed soonest as the worker would, without rendering it: a worker that
    /// stalls until [`RenderAhead::finish_stalled`].
    #[cfg(test)]
    pub(crate) fn stall(&self) -> Option<Claim> {
        self.state.lock().claim_ahead()
    }

    #[cfg(test)]
    pub(crate) fn finish_stalled(&self, mut c: Claim) {
        let r = c.render();
        self.state.lock().file(c, r);
        self.ready.notify_one();
    }

    /// Batches the scan thread found rendered ahead, so far.
    pub fn batches_taken_ahead(&self) -> u64 {
        self.state.lock().taken_ahead
    }

    /// Ends the worker's loop.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.work.notify_all();
    }

    /// Adds a block whose rows `order` (in order) the scan will ask for.
    pub(crate) fn register(
        &self,
        block: Arc<ScanBlock>,
        frags: Arc<BlockFrags>,
        order: Arc<[u32]>,
    ) -> JobId {
        let mut st = self.state.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.jobs.insert(
            id,
            Job {
                block,
                frags,
                order,
                next_claim: 0,
                done: Vec::new(),
                rendering: 0,
                abandoned: Vec::new(),
                caches: Vec::new(),
            },
        );
        drop(st);
        self.work.notify_one();
        id
    }

    /// Drops a block: its batches rendered for later are dropped, a batch being rendered is
    /// dropped when done; `cur`, the scan thread's buffer for it, is kept for reuse.
    pub(crate) fn forget(&self, id: JobId, cur: Lines) {
        let mut st = self.state.lock();
        st.recycle(cur);
        if let Some(j) = st.jobs.remove(&id) {
            st.in_flight -= j.done.len();
            // Batches still rendering are counted out by `file`.
            for (_, r) in j.done {
                if let Ok(lines) = r {
                    st.recycle(lines);
                }
            }
            drop(st);
            self.work.notify_one();
        }
    }

    /// Puts the lines of `id`'s batch `batch` (the batch the scan needs now, its batches asked
    /// for in order) into `cur`, whose old lines are kept for reuse: `true`. `false` when nobody
    /// has claimed the batch: it is now the caller's, to render itself.
    pub(crate) fn take(&self, id: JobId, batch: usize, cur: &mut Lines) -> Result<bool> {
        let mut st = self.state.lock();
        let mut waited = false;
        loop {
            let worker_gone = st.worker_gone;
            let Some(j) = st.jobs.get_mut(&id) else {
                return Ok(false);
            };
            if let Some(at) = j.done.iter().position(|(b, _)| *b == batch) {
                let (_, r) = j.done.swap_remove(at);
                st.in_flight -= 1;
                st.taken_ahead += 1;
                let lines = r?;
                let old = std::mem::replace(cur, lines);
                st.recycle(old);
                drop(st);
                self.work.notify_one();
                return Ok(true);
            }
            if waited {
                // The worker is on it but not getting on: render it here, drop its copy.
                j.abandoned.push(batch);
            }
            if j.next_claim <= batch || j.rendering == 0 || worker_gone || waited {
                // Unclaimed: the caller's (skipping none: the caller asks in order). Or claimed
                // for later but not coming (its renderer is gone): rendered by the caller too.
                j.next_claim = j.next_claim.max(batch + 1);
                if cur.capacity() == 0 {
                    if let Some(spare) = st.spare.pop() {
                        *cur = spare;
                    }
                }
                return Ok(false);
            }
            // The worker is on it: render what is needed next meanwhile, rather than wait.
            if !self.render_one(&mut st) {
                let wait = std::time::Duration::from_micros(RENDER_WAIT_US_MAX);
                waited = self.ready.wait_for(&mut st, wait).timed_out();
            }
        }
    }
}
