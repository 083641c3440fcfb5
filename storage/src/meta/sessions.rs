//! Login sessions. The bearer token (32 random bytes) is handed out once and only its
//! blake2s-256 digest is stored, so a copy of `meta.redb` does not yield usable sessions.

use redb::ReadableTable;

use super::secret::{random_token_hex, token_digest};
use super::tables::{self, SESSIONS, SESSION_EXPIRY, USERS};
use super::types::{NewSession, Session};
use super::{now_ms, MetaStore};
use crate::error::{Result, StorageError};
use crate::model::UserId;

/// Most expired sessions one `create_session` purges, so logins stay cheap while the table is
/// still cleaned up over time.
const PURGE_PER_LOGIN_MAX: usize = 64;

impl MetaStore {
    /// Starts a session for `user` lasting `ttl_secs`; purges a few expired sessions on the way.
    pub fn create_session(&self, user: UserId, ttl_secs: u64) -> Result<NewSession> {
        let token = random_token_hex();
        let csrf_token = random_token_hex();
        let digest = token_digest(&token);
        let now = now_ms();
        let expires_at_ms = now.saturating_add(ttl_secs.saturating_mul(1000));
        let session = Session {
            user_id: user,
            csrf_token: csrf_token.clone(),
            created_at_ms: now,
            expires_at_ms,
        };
        self.write(|txn| {
            if txn.open_table(USERS)?.get(user)?.is_none() {
                return Err(StorageError::NotFound("user".into()));
            }
            purge_expired(txn, now, PURGE_PER_LOGIN_MAX)?;
            txn.open_table(SESSIONS)?
                .insert(digest.as_slice(), tables::encode(&session)?.as_slice())?;
            txn.open_table(SESSION_EXPIRY)?
                .insert((expires_at_ms, digest.as_slice()), ())?;
            Ok(())
        })?;
        Ok(NewSession {
            token,
            csrf_token,
            expires_at_ms,
        })
    }

    /// The live session for `token`; `None` when unknown or expired.
    pub fn session(&self, token: &str) -> Result<Option<Session>> {
        self.session_at(token, now_ms())
    }

    /// [`MetaStore::session`] as of `now_ms` (tests use it to step past expiry).
    pub fn session_at(&self, token: &str, now_ms: u64) -> Result<Option<Session>> {
        let digest = token_digest(token);
        let session: Option<Session> = self.read(|txn| {
            tables::get_json(&txn.open_table(SESSIONS)?, digest.as_slice(), "session")
        })?;
        Ok(session.filter(|s| now_ms < s.expires_at_ms))
    }

    /// Ends the session for `token` (logout). Unknown tokens are not an error.
    pub fn delete_session(&self, token: &str) -> Result<()> {
        let digest = token_digest(token);
        self.write(|txn| {
            let mut sessions = txn.open_table(SESSIONS)?;
            let old: Option<Session> = tables::get_json(&sessions, digest.as_slice(), "session")?;
            if let Some(old) = old {
                sessions.remove(digest.as_slice())?;
                txn.open_table(SESSION_EXPIRY)?
                    .remove((old.expires_at_ms, digest.as_slice()))?;
            }
            Ok(())
        })
    }

    /// Deletes every session that expired before `now_ms`; returns how many.
    pub fn purge_expired_sessions(&self, now_ms: u64) -> Result<usize> {
        self.write(|txn| purge_expired(txn, now_ms, usize::MAX))
    }
}

/// Ends every session of `user` except the one with digest `keep`; returns how many ended. Scans
/// the session table (there is no per-user index): a password change is rare, and the table holds
/// live sessions only, as logins purge expired ones.
pub(super) fn end_sessions_of(
    txn: &redb::WriteTransaction,
    user: UserId,
    keep: Option<&[u8; 32]>,
) -> Result<usize> {
    let mut sessions = txn.open_table(SESSIONS)?;
    let mut doomed: Vec<(u64, Vec<u8>)> = Vec::new();
    for entry in sessions.range::<&[u8]>(..)? {
        let (digest, value) = entry?;
        let session: Session = tables::decode(value.value(), "session")?;
        let digest = digest.value();
        if session.user_id == user && keep.is_none_or(|k| k.as_slice() != digest) {
            doomed.push((session.expires_at_ms, digest.to_vec()));
        }
    }
    let mut expiry = txn.open_table(SESSION_EXPIRY)?;
    for (at, digest) in &doomed {
        sessions.remove(digest.as_slice())?;
        expiry.remove((*at, digest.as_slice()))?;
    }
    Ok(doomed.len())
}

/// Removes up to `max` sessions with `expires_at_ms <= now`, oldest expiry first.
fn purge_expired(txn: &redb::WriteTransaction, now: u64, max: usize) -> Result<usize> {
    let mut expiry = txn.open_table(SESSION_EXPIRY)?;
    let mut doomed: Vec<(u64, Vec<u8>)> = Vec::new();
    for entry in expiry.range::<(u64, &[u8])>(..)? {
        let (key, _) = entry?;
        let (at, digest) = key.value();
        if at > now || doomed.len() >= max {
            break;
        }
        doomed.push((at, digest.to_vec()));
    }
    let mut sessions = txn.open_table(SESSIONS)?;
    for (at, digest) in &doomed {
        expiry.remove((*at, digest.as_slice()))?;
        sessions.remove(digest.as_slice())?;
    }
    Ok(doomed.len())
}
