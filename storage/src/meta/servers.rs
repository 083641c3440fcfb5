//! MCP servers of an organization: name unique per organization, telemetry settings that SDKs
//! fetch through `/v1/config`. Deleting a server revokes all its keys in the same transaction.

use redb::ReadableTable;

use super::keys::{ids_under, insert_api_key, server_in_org, FIRST_KEY_NAME};
use super::secret::KeyKind;
use super::tables::{self, API_KEYS, ORGS, SERVERS, SERVER_BY_NAME, SERVER_KEYS};
use super::types::{ApiKeyInfo, ApiKeyRecord, NewServer, Server, ServerUpdate};
use super::{now_ms, validate, MetaStore};
use crate::error::{Result, StorageError};
use crate::model::{Env, OrgId, ServerId};

fn not_found() -> StorageError {
    StorageError::NotFound("server".into())
}

impl MetaStore {
    /// Creates a server in `org`. When its telemetry is enabled, also creates its first `live`
    /// API key in the same transaction and returns it (full key, shown once).
    pub fn create_server(
        &self,
        org: OrgId,
        new: &NewServer,
    ) -> Result<(Server, Option<(String, ApiKeyInfo)>)> {
        validate::display_name("name", &new.name)?;
        validate::sampling_rate(new.sampling_rate)?;
        // Hash before the write transaction; see the module doc of `meta`.
        let key = if new.telemetry_enabled {
            Some(self.prepare_key(KeyKind::Api(Env::Live))?)
        } else {
            None
        };
        self.write(|txn| {
            if txn.open_table(ORGS)?.get(org)?.is_none() {
                return Err(StorageError::NotFound("organization".into()));
            }
            let mut by_name = txn.open_table(SERVER_BY_NAME)?;
            if by_name.get((org, new.name.as_str()))?.is_some() {
                return Err(StorageError::Conflict("server name".into()));
            }
            let id = tables::next_id(txn, tables::K_NEXT_SERVER)?;
            let server = Server {
                id,
                org_id: org,
                name: new.name.clone(),
                telemetry_enabled: new.telemetry_enabled,
                sampling_rate: new.sampling_rate,
                capture_arguments: new.capture_arguments,
                created_at_ms: now_ms(),
            };
            txn.open_table(SERVERS)?
                .insert(id, tables::encode(&server)?.as_slice())?;
            by_name.insert((org, new.name.as_str()), id)?;
            let first = match &key {
                Some(k) => {
                    let info = insert_api_key(txn, k, org, id, Env::Live, FIRST_KEY_NAME)?;
                    Some((k.full.clone(), info))
                }
                None => None,
            };
            Ok((server, first))
        })
    }

    /// A server by id regardless of organization (ingest knows only the key's server).
    pub fn server(&self, id: ServerId) -> Result<Option<Server>> {
        self.read(|txn| tables::get_json(&txn.open_table(SERVERS)?, id, "server"))
    }

    /// A server by id only if it belongs to `org`; another organization's server is `None`.
    pub fn server_in_org(&self, org: OrgId, id: ServerId) -> Result<Option<Server>> {
        self.read(|txn| server_in_org(&txn.open_table(SERVERS)?, org, id))
    }

    /// Servers of `org` in name order.
    pub fn servers(&self, org: OrgId) -> Result<Vec<Server>> {
        self.read(|txn| {
            let by_name = txn.open_table(SERVER_BY_NAME)?;
            let servers = txn.open_table(SERVERS)?;
            let mut out = Vec::new();
            for entry in by_name.range((org, "")..)? {
                let (key, id) = entry?;
                if key.value().0 != org {
                    break;
                }
                if let Some(s) = tables::get_json(&servers, id.value(), "server")? {
                    out.push(s);
                }
            }
            Ok(out)
        })
    }

    /// Updates a server of `org`; renaming keeps names unique within the organization.
    pub fn update_server(&self, org: OrgId, id: ServerId, update: &ServerUpdate) -> Result<Server> {
        if let Some(name) = &update.name {
            validate::display_name("name", name)?;
        }
        if let Some(rate) = update.sampling_rate {
            validate::sampling_rate(rate)?;
        }
        self.write(|txn| {
            let mut servers = txn.open_table(SERVERS)?;
            let mut server = server_in_org(&servers, org, id)?.ok_or_else(not_found)?;
            if let Some(name) = update.name.as_ref().filter(|n| **n != server.name) {
                let mut by_name = txn.open_table(SERVER_BY_NAME)?;
                if by_name.get((org, name.as_str()))?.is_some() {
                    return Err(StorageError::Conflict("server name".into()));
                }
                by_name.remove((org, server.name.as_str()))?;
                by_name.insert((org, name.as_str()), id)?;
                server.name = name.clone();
            }
            if let Some(v) = update.telemetry_enabled {
                server.telemetry_enabled = v;
            }
            if let Some(v) = update.sampling_rate {
                server.sampling_rate = v;
            }
            if let Some(v) = update.capture_arguments {
                server.capture_arguments = v;
            }
            servers.insert(id, tables::encode(&server)?.as_slice())?;
            Ok(server)
        })
    }

    /// Deletes a server of `org` and revokes every key it had, atomically. The key rows stay
    /// (revoked) so a later audit can still name them.
    pub fn delete_server(&self, org: OrgId, id: ServerId) -> Result<()> {
        self.write(|txn| {
            let mut servers = txn.open_table(SERVERS)?;
            let server = server_in_org(&servers, org, id)?.ok_or_else(not_found)?;
            let now = now_ms();
            let mut keys = txn.open_table(API_KEYS)?;
            for key_id in ids_under(&txn.open_table(SERVER_KEYS)?, id)? {
                let rec: Option<ApiKeyRecord> = tables::get_json(&keys, key_id.as_str(), "key")?;
                if let Some(mut rec) = rec.filter(|r| r.info.revoked_at_ms.is_none()) {
                    rec.info.revoked_at_ms = Some(now);
                    keys.insert(key_id.as_str(), tables::encode(&rec)?.as_slice())?;
                }
            }
            txn.open_table(SERVER_BY_NAME)?
                .remove((org, server.name.as_str()))?;
            servers.remove(id)?;
            Ok(())
        })
    }
}
