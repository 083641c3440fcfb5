//! Key and token usage accounting: counted in memory per request, written to the metadata store
//! in one transaction per flush (periodically and at shutdown), so ingest never waits on a
//! metadata write.

use std::collections::HashMap;

use mcp_obs_storage::meta::{now_ms, KeyUsage};
use parking_lot::Mutex;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Default)]
struct Pending {
    api_keys: HashMap<String, KeyUsage>,
    pats: HashMap<String, KeyUsage>,
}

/// Usage not yet flushed. Its size is bounded by the number of keys that authenticated, since
/// only verified keys are counted.
#[derive(Default)]
pub struct UsageTracker {
    pending: Mutex<Pending>,
}

fn add(map: &mut HashMap<String, KeyUsage>, key_id: &str, requests: u64, spans: u64, at: u64) {
    let u = map.entry(key_id.to_string()).or_insert_with(|| KeyUsage {
        key_id: key_id.to_string(),
        last_used_at_ms: at,
        requests: 0,
        spans: 0,
    });
    u.requests = u.requests.saturating_add(requests);
    u.spans = u.spans.saturating_add(spans);
    u.last_used_at_ms = u.last_used_at_ms.max(at);
}

impl UsageTracker {
    pub fn add_api_key(&self, key_id: &str, requests: u64, spans: u64) {
        add(
            &mut self.pending.lock().api_keys,
            key_id,
            requests,
            spans,
            now_ms(),
        );
    }

    pub fn add_pat(&self, key_id: &str) {
        add(&mut self.pending.lock().pats, key_id, 1, 0, now_ms());
    }

    /// Unflushed usage of one API key, so listings can show current numbers.
    pub fn pending_api_key(&self, key_id: &str) -> Option<KeyUsage> {
        self.pending.lock().api_keys.get(key_id).cloned()
    }

    /// Unflushed last use of one token.
    pub fn pending_pat(&self, key_id: &str) -> Option<KeyUsage> {
        self.pending.lock().pats.get(key_id).cloned()
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Puts back a batch whose write failed, merged with what arrived meanwhile.
    fn restore(&self, batch: Pending) {
        let mut pending = self.pending.lock();
        for u in batch.api_keys.into_values() {
            add(
                &mut pending.api_keys,
                &u.key_id,
                u.requests,
                u.spans,
                u.last_used_at_ms,
            );
        }
        for u in batch.pats.into_values() {
            add(
                &mut pending.pats,
                &u.key_id,
                u.requests,
                u.spans,
                u.last_used_at_ms,
            );
        }
    }
}

/// Counts one authenticated ingest request of `key_id` carrying `spans` spans.
pub fn record_key_usage(state: &AppState, key_id: &str, spans: u64) {
    state.usage.add_api_key(key_id, 1, spans);
}

/// Writes all accumulated usage in ONE metadata transaction; returns how many keys and tokens
/// were updated. Blocking (a durable redb commit): call it from `spawn_blocking` or at shutdown.
/// On failure the batch is kept for the next flush.
pub fn flush_key_usage(state: &AppState) -> Result<usize, ApiError> {
    let batch = state.usage.take();
    if batch.api_keys.is_empty() && batch.pats.is_empty() {
        return Ok(0);
    }
    let api: Vec<KeyUsage> = batch.api_keys.values().cloned().collect();
    let pats: Vec<KeyUsage> = batch.pats.values().cloned().collect();
    match state.meta.record_usage(&api, &pats) {
        Ok(n) => Ok(n),
        Err(e) => {
            state.usage.restore(batch);
            Err(e.into())
        }
    }
}
