//! The metadata store: organizations, users, memberships, sessions, MCP servers, API keys and
//! personal access tokens, in one redb file (`<data>/meta.redb`).
//!
//! Every write is one redb transaction committed with `Durability::Immediate`, so a returned `Ok`
//! is on disk. Argon2 hashing happens before a write transaction starts, never inside it, so the
//! single redb writer is not held for the tens of milliseconds a hash takes. Lookups on request
//! paths (key id, session digest, slug, membership) are point reads of one table each.

// The shared `StorageError` carries `redb::Error` (160 bytes) unboxed; boxing it belongs in
// `error.rs` (shared), not here. Until then the lint would fire on every function of this module.
#![allow(clippy::result_large_err)]

mod bootstrap;
mod keys;
mod orgs;
mod pats;
mod servers;
mod sessions;
mod tables;
mod users;
mod validate;

pub mod secret;
pub mod types;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadTransaction, WriteTransaction};

use crate::error::Result;

pub use secret::{parse_key, token_digest, verify_secret, HashCost, KeyKind, ParsedKey};
pub use tables::FORMAT_VERSION;
pub use types::{
    ApiKeyInfo, ApiKeyRecord, Bootstrap, KeyUsage, Member, NewServer, NewSession, Org, OrgUpdate,
    PasswordChange, PatInfo, PatRecord, Role, Server, ServerUpdate, Session, User,
};

/// File name of the metadata store inside the data directory.
pub const META_FILE_NAME: &str = "meta.redb";

/// Options for [`MetaStore::open_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MetaOptions {
    /// Cost of newly hashed passwords and keys. Production uses the default.
    pub hash_cost: HashCost,
}

/// Handle to `meta.redb`. Cheap to share behind an `Arc`; all methods take `&self` and are
/// blocking (redb I/O, and argon2 in the methods that say so).
pub struct MetaStore {
    db: Database,
    hash_cost: HashCost,
    dummy_hash: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore").finish_non_exhaustive()
    }
}

impl MetaStore {
    /// Opens (creating if needed) the store at `path` with standard hashing cost.
    pub fn open(path: impl AsRef<Path>) -> Result<MetaStore> {
        Self::open_with(path, MetaOptions::default())
    }

    /// Opens `<dir>/meta.redb`.
    pub fn open_in_dir(dir: impl AsRef<Path>) -> Result<MetaStore> {
        Self::open(dir.as_ref().join(META_FILE_NAME))
    }

    pub fn open_with(path: impl AsRef<Path>, options: MetaOptions) -> Result<MetaStore> {
        let db = Database::create(path)?;
        let store = MetaStore {
            db,
            hash_cost: options.hash_cost,
            dummy_hash: std::sync::OnceLock::new(),
        };
        store.write(tables::init)?;
        Ok(store)
    }

    /// Runs `f` in one durable write transaction; commits when it returns `Ok`, aborts (drops)
    /// otherwise, so a failed validation leaves nothing half-written.
    fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    fn hash(&self, secret: &str) -> Result<String> {
        secret::hash_secret(secret, self.hash_cost)
    }
}

/// Wall-clock milliseconds since the Unix epoch: the one timestamp unit of this store.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
