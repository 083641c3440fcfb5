//! Shared state of every handler: the stores, the configuration, and the in-memory parts of
//! authentication (verified-key caches, pending key usage, login throttle, argon2 permits).

use std::sync::Arc;

use mcp_obs_storage::spans::SpanStore;
use mcp_obs_storage::MetaStore;
use tokio::sync::Semaphore;

use crate::auth::{KeyCache, LoginThrottle, UsageTracker};
use crate::config::WebConfig;
use crate::ingest::queue::IngestQueue;

/// Verified API keys / tokens kept in memory; beyond this an arbitrary entry is evicted.
pub const KEY_CACHE_ENTRIES_MAX: usize = 10_000;
/// Usernames/IPs tracked by the login throttle.
pub const THROTTLE_ENTRIES_MAX: usize = 10_000;
/// Span exports running at once (each holds a blocking thread and up to
/// `SCAN_LIVE_BLOCKS_MAX` decoded blocks); more are answered 429.
pub const EXPORTS_CONCURRENT_MAX: usize = 4;

/// Everything a request handler may need. Build it only with [`AppState::new`]; fields may be
/// added, so nothing should depend on their order or construct the struct literally.
pub struct AppState {
    pub meta: Arc<MetaStore>,
    pub spans: Arc<SpanStore>,
    /// The bounded queue in front of the span writer thread.
    pub ingest: IngestQueue,
    pub config: WebConfig,
    /// API keys whose argon2 verification succeeded (ingest, `/v1/config`).
    pub keys: KeyCache,
    /// Personal access tokens whose argon2 verification succeeded.
    pub pats: KeyCache,
    /// Key and token usage not yet written to the metadata store.
    pub usage: UsageTracker,
    pub login_throttle: LoginThrottle,
    /// Bounds concurrent argon2 computations: each takes ~19 MiB and tens of milliseconds, so
    /// a burst of bad keys or logins must queue instead of exhausting memory and the blocking pool.
    pub hash_permits: Semaphore,
    /// One per running span export, at most [`EXPORTS_CONCURRENT_MAX`].
    pub export_permits: Arc<Semaphore>,
    /// Becomes `true` when the server starts shutting down: long responses (exports) end then,
    /// instead of holding the graceful shutdown until they finish.
    pub shutting_down: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    pub fn new(
        meta: Arc<MetaStore>,
        spans: Arc<SpanStore>,
        ingest: IngestQueue,
        config: WebConfig,
    ) -> AppState {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        AppState {
            meta,
            spans,
            ingest,
            config,
            keys: KeyCache::new(KEY_CACHE_ENTRIES_MAX),
            pats: KeyCache::new(KEY_CACHE_ENTRIES_MAX),
            usage: UsageTracker::default(),
            login_throttle: LoginThrottle::new(THROTTLE_ENTRIES_MAX),
            hash_permits: Semaphore::new(cores.clamp(2, 8)),
            export_permits: Arc::new(Semaphore::new(EXPORTS_CONCURRENT_MAX)),
            shutting_down: tokio::sync::watch::Sender::new(false),
        }
    }
}
