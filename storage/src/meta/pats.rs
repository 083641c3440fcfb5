//! Personal access tokens (`mcpobs_pat_...`): API credentials of a user, stored like API keys
//! (key id + argon2id hash of the whole token).

use redb::ReadableTable;

use super::keys::{ids_under, KEY_ID_ATTEMPTS};
use super::secret::{self, KeyKind};
use super::tables::{self, PATS, USERS, USER_PATS};
use super::types::{PatInfo, PatRecord, User};
use super::users::UserRow;
use super::{now_ms, validate, MetaStore};
use crate::error::{Result, StorageError};
use crate::model::UserId;

impl MetaStore {
    /// Creates a personal access token for `user`: (full token shown once, info).
    pub fn create_pat(&self, user: UserId, name: &str) -> Result<(String, PatInfo)> {
        validate::display_name("token name", name)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let key = self.prepare_key(KeyKind::Pat)?;
            let created = self.write(|txn| {
                if txn.open_table(USERS)?.get(user)?.is_none() {
                    return Err(StorageError::NotFound("user".into()));
                }
                let mut pats = txn.open_table(PATS)?;
                if pats.get(key.key_id.as_str())?.is_some() {
                    return Err(StorageError::Conflict("token id".into()));
                }
                let rec = PatRecord {
                    info: PatInfo {
                        key_id: key.key_id.clone(),
                        user_id: user,
                        name: name.to_string(),
                        prefix: secret::key_prefix(KeyKind::Pat, &key.key_id),
                        created_at_ms: now_ms(),
                        last_used_at_ms: None,
                        revoked_at_ms: None,
                    },
                    hash: key.hash.clone(),
                };
                pats.insert(key.key_id.as_str(), tables::encode(&rec)?.as_slice())?;
                txn.open_table(USER_PATS)?
                    .insert((user, key.key_id.as_str()), ())?;
                Ok(rec.info)
            });
            match created {
                Err(StorageError::Conflict(_)) if attempt < KEY_ID_ATTEMPTS => continue,
                Err(e) => return Err(e),
                Ok(info) => return Ok((key.full, info)),
            }
        }
    }

    /// `user`'s tokens (revoked included), oldest first.
    pub fn list_pats(&self, user: UserId) -> Result<Vec<PatInfo>> {
        self.read(|txn| {
            let pats = txn.open_table(PATS)?;
            let mut out = Vec::new();
            for id in ids_under(&txn.open_table(USER_PATS)?, user)? {
                if let Some(rec) = tables::get_json::<_, PatRecord>(&pats, id.as_str(), "token")? {
                    out.push(rec.info);
                }
            }
            out.sort_by(|a, b| (a.created_at_ms, &a.key_id).cmp(&(b.created_at_ms, &b.key_id)));
            Ok(out)
        })
    }

    /// Revokes one of `user`'s tokens (idempotent). `NotFound` for someone else's token.
    pub fn revoke_pat(&self, user: UserId, key_id: &str) -> Result<PatInfo> {
        self.write(|txn| {
            let mut pats = txn.open_table(PATS)?;
            let mut rec: PatRecord = tables::get_json(&pats, key_id, "token")?
                .filter(|r: &PatRecord| r.info.user_id == user)
                .ok_or_else(|| StorageError::NotFound("token".into()))?;
            if rec.info.revoked_at_ms.is_none() {
                rec.info.revoked_at_ms = Some(now_ms());
                pats.insert(key_id, tables::encode(&rec)?.as_slice())?;
            }
            Ok(rec.info)
        })
    }

    pub fn pat_record(&self, key_id: &str) -> Result<Option<PatRecord>> {
        self.read(|txn| tables::get_json(&txn.open_table(PATS)?, key_id, "token"))
    }

    /// The token record and its user in one read transaction: per-request PAT authentication.
    pub fn pat_auth(&self, key_id: &str) -> Result<Option<(PatRecord, Option<User>)>> {
        self.read(|txn| {
            let rec: Option<PatRecord> = tables::get_json(&txn.open_table(PATS)?, key_id, "token")?;
            let Some(rec) = rec else { return Ok(None) };
            let row: Option<UserRow> =
                tables::get_json(&txn.open_table(USERS)?, rec.info.user_id, "user")?;
            Ok(Some((rec, row.map(|r| r.user))))
        })
    }
}
