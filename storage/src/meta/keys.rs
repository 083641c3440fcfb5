//! API keys and personal access tokens: creation (secret shown once, argon2id hash stored),
//! listing, revocation, lookup by key id, and batched usage accounting.

use redb::{ReadableTable, WriteTransaction};

use super::secret::{self, KeyKind};
use super::tables::{self, API_KEYS, PATS, SERVERS, SERVER_KEYS};
use super::types::{ApiKeyInfo, ApiKeyRecord, KeyUsage, PatRecord, Server};
use super::{now_ms, validate, MetaStore};
use crate::error::{Result, StorageError};
use crate::model::{Env, OrgId, ServerId};

/// Name of the key created together with a server.
pub const FIRST_KEY_NAME: &str = "default";
/// A fresh key id colliding with an existing one is a 1-in-62^8 event; retry a few times anyway.
pub(super) const KEY_ID_ATTEMPTS: usize = 3;

/// A generated key and its hash, made before the write transaction so argon2 does not run while
/// the single redb writer is held.
pub(super) struct PreparedKey {
    pub full: String,
    pub key_id: String,
    pub hash: String,
}

impl MetaStore {
    pub(super) fn prepare_key(&self, kind: KeyKind) -> Result<PreparedKey> {
        let (full, key_id) = secret::generate_key(kind);
        let hash = self.hash(&full)?;
        Ok(PreparedKey { full, key_id, hash })
    }
}

/// Inserts an API key for `server` (which the caller checked belongs to `org`) inside `txn`.
pub(super) fn insert_api_key(
    txn: &WriteTransaction,
    key: &PreparedKey,
    org: OrgId,
    server: ServerId,
    env: Env,
    name: &str,
) -> Result<ApiKeyInfo> {
    let mut keys = txn.open_table(API_KEYS)?;
    if keys.get(key.key_id.as_str())?.is_some() {
        return Err(StorageError::Conflict("api key id".into()));
    }
    let record = ApiKeyRecord {
        info: ApiKeyInfo {
            key_id: key.key_id.clone(),
            org_id: org,
            server_id: server,
            env,
            name: name.to_string(),
            prefix: secret::key_prefix(KeyKind::Api(env), &key.key_id),
            created_at_ms: now_ms(),
            last_used_at_ms: None,
            requests: 0,
            spans: 0,
            revoked_at_ms: None,
        },
        hash: key.hash.clone(),
    };
    keys.insert(key.key_id.as_str(), tables::encode(&record)?.as_slice())?;
    txn.open_table(SERVER_KEYS)?
        .insert((server, key.key_id.as_str()), ())?;
    Ok(record.info)
}

/// Whether `server` exists and belongs to `org`.
pub(super) fn server_in_org(
    table: &impl ReadableTable<u32, &'static [u8]>,
    org: OrgId,
    server: ServerId,
) -> Result<Option<Server>> {
    let found: Option<Server> = tables::get_json(table, server, "server")?;
    Ok(found.filter(|s| s.org_id == org))
}

/// Key ids under `owner` in an index keyed (owner id, key id): a server's keys, a user's tokens.
pub(super) fn ids_under(
    table: &impl ReadableTable<(u32, &'static str), ()>,
    owner: u32,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for entry in table.range((owner, "")..)? {
        let (key, _) = entry?;
        let (o, id) = key.value();
        if o != owner {
            break;
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

fn not_found_key() -> StorageError {
    StorageError::NotFound("api key".into())
}

impl MetaStore {
    /// Creates an API key for `server` of `org`. Returns the full key (show it once; only its
    /// hash is kept) and its listing info. Hashes with argon2id: blocking, slow.
    pub fn create_api_key(
        &self,
        org: OrgId,
        server: ServerId,
        env: Env,
        name: &str,
    ) -> Result<(String, ApiKeyInfo)> {
        validate::display_name("key name", name)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let key = self.prepare_key(KeyKind::Api(env))?;
            let created = self.write(|txn| {
                if server_in_org(&txn.open_table(SERVERS)?, org, server)?.is_none() {
                    return Err(StorageError::NotFound("server".into()));
                }
                insert_api_key(txn, &key, org, server, env, name)
            });
            match created {
                Err(StorageError::Conflict(_)) if attempt < KEY_ID_ATTEMPTS => continue,
                Err(e) => return Err(e),
                Ok(info) => return Ok((key.full, info)),
            }
        }
    }

    /// Keys of `server` in `org` (revoked ones included), oldest first. `NotFound` when the
    /// server is not in that organization.
    pub fn list_api_keys(&self, org: OrgId, server: ServerId) -> Result<Vec<ApiKeyInfo>> {
        self.read(|txn| {
            if server_in_org(&txn.open_table(SERVERS)?, org, server)?.is_none() {
                return Err(StorageError::NotFound("server".into()));
            }
            let keys = txn.open_table(API_KEYS)?;
            let mut out = Vec::new();
            for id in ids_under(&txn.open_table(SERVER_KEYS)?, server)? {
                if let Some(rec) = tables::get_json::<_, ApiKeyRecord>(&keys, id.as_str(), "key")? {
                    out.push(rec.info);
                }
            }
            out.sort_by(|a, b| (a.created_at_ms, &a.key_id).cmp(&(b.created_at_ms, &b.key_id)));
            Ok(out)
        })
    }

    /// Revokes a key of `server` in `org`. Idempotent: an already revoked key keeps its original
    /// revocation time. `NotFound` when the key is not that server's.
    pub fn revoke_api_key(&self, org: OrgId, server: ServerId, key_id: &str) -> Result<ApiKeyInfo> {
        self.write(|txn| {
            let mut keys = txn.open_table(API_KEYS)?;
            let mut rec: ApiKeyRecord = tables::get_json(&keys, key_id, "key")?
                .filter(|r: &ApiKeyRecord| r.info.org_id == org && r.info.server_id == server)
                .ok_or_else(not_found_key)?;
            if rec.info.revoked_at_ms.is_none() {
                rec.info.revoked_at_ms = Some(now_ms());
                keys.insert(key_id, tables::encode(&rec)?.as_slice())?;
            }
            Ok(rec.info)
        })
    }

    /// The key record (with hash) by key id, revoked or not.
    pub fn api_key_record(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        self.read(|txn| tables::get_json(&txn.open_table(API_KEYS)?, key_id, "key"))
    }

    /// The key record and its server (`None` if the server was deleted), in one read
    /// transaction: what ingest authentication needs per request.
    pub fn api_key_auth(&self, key_id: &str) -> Result<Option<(ApiKeyRecord, Option<Server>)>> {
        self.read(|txn| {
            let rec: Option<ApiKeyRecord> =
                tables::get_json(&txn.open_table(API_KEYS)?, key_id, "key")?;
            let Some(rec) = rec else { return Ok(None) };
            let server = tables::get_json(&txn.open_table(SERVERS)?, rec.info.server_id, "server")?;
            Ok(Some((rec, server)))
        })
    }

    /// Adds accumulated usage of API keys in ONE write transaction. Unknown key ids are skipped
    /// (the key may have been deleted meanwhile). Returns how many keys were updated.
    pub fn record_key_usage(&self, usage: &[KeyUsage]) -> Result<usize> {
        self.record_usage(usage, &[])
    }

    /// Adds accumulated usage of API keys and personal access tokens in one write transaction.
    /// `last_used_at_ms` only moves forward; counts add up.
    pub fn record_usage(&self, api_keys: &[KeyUsage], pats: &[KeyUsage]) -> Result<usize> {
        if api_keys.is_empty() && pats.is_empty() {
            return Ok(0);
        }
        self.write(|txn| {
            let mut n = 0;
            let mut keys = txn.open_table(API_KEYS)?;
            for u in api_keys {
                let Some(mut rec) =
                    tables::get_json::<_, ApiKeyRecord>(&keys, u.key_id.as_str(), "key")?
                else {
                    continue;
                };
                rec.info.requests = rec.info.requests.saturating_add(u.requests);
                rec.info.spans = rec.info.spans.saturating_add(u.spans);
                rec.info.last_used_at_ms = rec.info.last_used_at_ms.max(Some(u.last_used_at_ms));
                keys.insert(u.key_id.as_str(), tables::encode(&rec)?.as_slice())?;
                n += 1;
            }
            let mut table = txn.open_table(PATS)?;
            for u in pats {
                let Some(mut rec) =
                    tables::get_json::<_, PatRecord>(&table, u.key_id.as_str(), "token")?
                else {
                    continue;
                };
                rec.info.last_used_at_ms = rec.info.last_used_at_ms.max(Some(u.last_used_at_ms));
                table.insert(u.key_id.as_str(), tables::encode(&rec)?.as_slice())?;
                n += 1;
            }
            Ok(n)
        })
    }
}
