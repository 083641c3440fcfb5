//! Bounded in-memory cache of keys (API keys, personal access tokens) whose argon2id
//! verification succeeded, so argon2 runs once per key and not once per request.
//!
//! The cache holds fingerprints (blake2s-256) of the verified key string and of the stored hash,
//! never the key itself. A hit needs both to match: the presented key (compared in constant time)
//! and the hash currently in the store, so a re-keyed record cannot ride on an old entry.
//! Revocation is not the cache's job: callers read the record on every request and check it first.
//!
//! First verifications of one key are serialized (`gate`): a burst of requests with a key not yet
//! cached (an SDK's first batches, several exporters starting at once) runs argon2 once, and the
//! others find the key verified when their turn comes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use mcp_obs_storage::meta::token_digest;
use parking_lot::Mutex;
use subtle::ConstantTimeEq;

struct Entry {
    key_fingerprint: [u8; 32],
    hash_fingerprint: [u8; 32],
}

/// Stripes of the first-verification gate: keys hashed onto them, so distinct keys rarely wait
/// for each other, and the gate's memory does not grow with the number of keys.
pub const VERIFY_GATES: usize = 16;

pub struct KeyCache {
    entries: Mutex<HashMap<String, Entry>>,
    capacity: usize,
    gates: [tokio::sync::Mutex<()>; VERIFY_GATES],
    verifications: AtomicU64,
}

impl KeyCache {
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            gates: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
            verifications: AtomicU64::new(0),
        }
    }

    /// The lock a request holds while it verifies `key_id` with argon2 (and re-checks the cache
    /// first, since the request before it may have just verified the same key).
    pub fn gate(&self, key_id: &str) -> &tokio::sync::Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key_id.hash(&mut h);
        &self.gates[(h.finish() % VERIFY_GATES as u64) as usize]
    }

    /// Counts one argon2 verification run for a key of this cache.
    pub fn note_verification(&self) {
        self.verifications.fetch_add(1, Ordering::Relaxed);
    }

    /// argon2 verifications run so far (successful or not).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Whether `presented` (the whole key) was verified before against `stored_hash`.
    pub fn is_verified(&self, key_id: &str, presented: &str, stored_hash: &str) -> bool {
        let key_fp = token_digest(presented);
        let hash_fp = token_digest(stored_hash);
        let entries = self.entries.lock();
        match entries.get(key_id) {
            Some(e) => {
                let same_key = e.key_fingerprint.ct_eq(&key_fp);
                let same_hash = e.hash_fingerprint.ct_eq(&hash_fp);
                bool::from(same_key & same_hash)
            }
            None => false,
        }
    }

    /// Remembers a successful verification. At capacity an arbitrary entry makes room: a
    /// dropped entry only costs one more argon2 run.
    pub fn insert(&self, key_id: &str, presented: &str, stored_hash: &str) {
        let entry = Entry {
            key_fingerprint: token_digest(presented),
            hash_fingerprint: token_digest(stored_hash),
        };
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity && !entries.contains_key(key_id) {
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(key_id.to_string(), entry);
    }

    /// Forgets a key (on revocation, for hygiene; correctness does not depend on it).
    pub fn invalidate(&self, key_id: &str) {
        self.entries.lock().remove(key_id);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_needs_same_key_and_same_hash() {
        let c = KeyCache::new(10);
        c.insert("id1", "key-a", "hash-1");
        assert!(c.is_verified("id1", "key-a", "hash-1"));
        assert!(!c.is_verified("id1", "key-b", "hash-1"));
        assert!(!c.is_verified("id1", "key-a", "hash-2"));
        assert!(!c.is_verified("id2", "key-a", "hash-1"));
        c.invalidate("id1");
        assert!(!c.is_verified("id1", "key-a", "hash-1"));
    }

    #[test]
    fn bounded() {
        let c = KeyCache::new(3);
        for i in 0..10 {
            c.insert(&format!("id{i}"), "k", "h");
            assert!(c.len() <= 3);
        }
        assert!(c.is_verified("id9", "k", "h"));
    }
}
