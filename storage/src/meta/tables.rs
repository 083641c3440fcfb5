//! The redb tables of `meta.redb` and the value encoding. `docs/format.md` ("meta.redb") documents each
//! table; change both together and bump [`FORMAT_VERSION`] when the layout changes.
//!
//! Records are JSON (serde_json) in `&[u8]` values: metadata is small, read by point lookups, and
//! a self-describing encoding lets later versions add fields with `#[serde(default)]`. Indexes are
//! plain redb keys so every per-request lookup is one B-tree point read.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, StorageError};

/// Layout version of `meta.redb`; stored under `format_version` in table `meta`.
pub const FORMAT_VERSION: u32 = 1;

/// Settings and counters: `format_version`, `next_org_id`, `next_user_id`, `next_server_id`.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const K_FORMAT_VERSION: &str = "format_version";
pub const K_NEXT_ORG: &str = "next_org_id";
pub const K_NEXT_USER: &str = "next_user_id";
pub const K_NEXT_SERVER: &str = "next_server_id";

/// org id -> JSON `Org`.
pub const ORGS: TableDefinition<u32, &[u8]> = TableDefinition::new("orgs");
/// slug -> org id.
pub const ORG_BY_SLUG: TableDefinition<&str, u32> = TableDefinition::new("org_by_slug");
/// user id -> JSON `UserRow` (user + password hash).
pub const USERS: TableDefinition<u32, &[u8]> = TableDefinition::new("users");
/// lowercase username -> user id.
pub const USER_BY_NAME: TableDefinition<&str, u32> = TableDefinition::new("user_by_name");
/// lowercase email -> user id.
pub const USER_BY_EMAIL: TableDefinition<&str, u32> = TableDefinition::new("user_by_email");
/// (org id, user id) -> role (0 member, 1 admin, 2 owner).
pub const MEMBERS: TableDefinition<(u32, u32), u8> = TableDefinition::new("members");
/// (user id, org id) -> role: the same facts as `members`, keyed for "orgs of a user".
pub const USER_ORGS: TableDefinition<(u32, u32), u8> = TableDefinition::new("user_orgs");
/// server id -> JSON `Server`.
pub const SERVERS: TableDefinition<u32, &[u8]> = TableDefinition::new("servers");
/// (org id, server name) -> server id; also the per-org server listing, in name order.
pub const SERVER_BY_NAME: TableDefinition<(u32, &str), u32> =
    TableDefinition::new("server_by_name");
/// key id -> JSON `ApiKeyRecord`.
pub const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
/// (server id, key id) -> (): the keys of a server.
pub const SERVER_KEYS: TableDefinition<(u32, &str), ()> = TableDefinition::new("server_keys");
/// key id -> JSON `PatRecord`.
pub const PATS: TableDefinition<&str, &[u8]> = TableDefinition::new("pats");
/// (user id, key id) -> (): the personal access tokens of a user.
pub const USER_PATS: TableDefinition<(u32, &str), ()> = TableDefinition::new("user_pats");
/// blake2s-256(session token) -> JSON `Session`.
pub const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
/// (expires_at_ms, token digest) -> (): lets expired sessions be purged in expiry order.
pub const SESSION_EXPIRY: TableDefinition<(u64, &[u8]), ()> =
    TableDefinition::new("session_expiry");

/// Creates every table (so read transactions never see a missing table) and checks or writes
/// the format version.
pub fn init(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(ORGS)?;
    txn.open_table(ORG_BY_SLUG)?;
    txn.open_table(USERS)?;
    txn.open_table(USER_BY_NAME)?;
    txn.open_table(USER_BY_EMAIL)?;
    txn.open_table(MEMBERS)?;
    txn.open_table(USER_ORGS)?;
    txn.open_table(SERVERS)?;
    txn.open_table(SERVER_BY_NAME)?;
    txn.open_table(API_KEYS)?;
    txn.open_table(SERVER_KEYS)?;
    txn.open_table(PATS)?;
    txn.open_table(USER_PATS)?;
    txn.open_table(SESSIONS)?;
    txn.open_table(SESSION_EXPIRY)?;
    let mut meta = txn.open_table(META)?;
    let found = meta.get(K_FORMAT_VERSION)?.map(|v| v.value());
    match found {
        None => {
            meta.insert(K_FORMAT_VERSION, u64::from(FORMAT_VERSION))?;
        }
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(StorageError::FormatVersion {
                found: u32::try_from(v).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            })
        }
    }
    Ok(())
}

/// Allocates the next dense id from counter `key` (ids start at 1; 0 is never used).
pub fn next_id(txn: &WriteTransaction, key: &str) -> Result<u32> {
    let mut meta = txn.open_table(META)?;
    let next = meta.get(key)?.map(|v| v.value()).unwrap_or(1);
    let id = u32::try_from(next).map_err(|_| StorageError::Invalid(format!("{key} exhausted")))?;
    meta.insert(key, next + 1)?;
    Ok(id)
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StorageError::Corrupt(format!("encode: {e}")))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt(format!("{what}: {e}")))
}

/// Reads and decodes one JSON record from any readable table.
pub fn get_json<K, T>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: K::SelfType<'_>,
    what: &str,
) -> Result<Option<T>>
where
    K: redb::Key + 'static,
    T: DeserializeOwned,
{
    match table.get(key)? {
        Some(v) => decode(v.value(), what).map(Some),
        None => Ok(None),
    }
}
