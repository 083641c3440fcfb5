//! Users: creation with argon2id password hashes, lookups, login verification, and password
//! changes (which end the user's other sessions in the same transaction).

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::sessions::end_sessions_of;
use super::tables::{self, USERS, USER_BY_EMAIL, USER_BY_NAME};
use super::types::{PasswordChange, User};
use super::{now_ms, secret, validate, MetaStore};
use crate::error::{Result, StorageError};
use crate::model::UserId;

/// Stored user: the public fields plus the password's PHC string.
#[derive(Serialize, Deserialize)]
pub(super) struct UserRow {
    #[serde(flatten)]
    pub user: User,
    pub password_hash: String,
}

/// Normalizes an email for uniqueness: addresses differing only in case are one address.
fn email_key(email: &str) -> String {
    email.to_ascii_lowercase()
}

/// Inserts a user inside `txn`; `password_hash` is already a PHC string.
pub(super) fn insert_user(
    txn: &WriteTransaction,
    username: &str,
    email: Option<&str>,
    password_hash: String,
) -> Result<User> {
    let mut by_name = txn.open_table(USER_BY_NAME)?;
    if by_name.get(username)?.is_some() {
        return Err(StorageError::Conflict("username".into()));
    }
    let mut by_email = txn.open_table(USER_BY_EMAIL)?;
    let email_key = email.map(email_key);
    if let Some(key) = &email_key {
        if by_email.get(key.as_str())?.is_some() {
            return Err(StorageError::Conflict("email".into()));
        }
    }
    let id = tables::next_id(txn, tables::K_NEXT_USER)?;
    let user = User {
        id,
        username: username.to_string(),
        email: email.map(str::to_string),
        created_at_ms: now_ms(),
    };
    let row = UserRow {
        user: user.clone(),
        password_hash,
    };
    txn.open_table(USERS)?
        .insert(id, tables::encode(&row)?.as_slice())?;
    by_name.insert(username, id)?;
    if let Some(key) = &email_key {
        by_email.insert(key.as_str(), id)?;
    }
    Ok(user)
}

impl MetaStore {
    /// Creates a user (no organization). `username` must already be lowercase. Hashes the
    /// password with argon2id: blocking, slow.
    pub fn create_user(&self, username: &str, email: Option<&str>, password: &str) -> Result<User> {
        validate::username(username)?;
        if let Some(e) = email {
            validate::email(e)?;
        }
        validate::password(password)?;
        let hash = self.hash(password)?;
        self.write(|txn| insert_user(txn, username, email, hash))
    }

    pub fn user(&self, id: UserId) -> Result<Option<User>> {
        self.read(|txn| {
            let users = txn.open_table(USERS)?;
            let row: Option<UserRow> = tables::get_json(&users, id, "user")?;
            Ok(row.map(|r| r.user))
        })
    }

    pub fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        self.read(|txn| {
            let Some(id) = txn
                .open_table(USER_BY_NAME)?
                .get(username)?
                .map(|v| v.value())
            else {
                return Ok(None);
            };
            let row: Option<UserRow> = tables::get_json(&txn.open_table(USERS)?, id, "user")?;
            Ok(row.map(|r| r.user))
        })
    }

    /// Checks a login (username, or email when it contains '@') and password. Blocking and slow
    /// on purpose (argon2id); when the user does not exist a dummy hash is verified anyway so
    /// response time does not reveal which usernames exist.
    pub fn check_login(&self, login: &str, password: &str) -> Result<Option<User>> {
        let login = login.trim().to_ascii_lowercase();
        let row: Option<UserRow> = self.read(|txn| {
            let id = if login.contains('@') {
                txn.open_table(USER_BY_EMAIL)?
                    .get(login.as_str())?
                    .map(|v| v.value())
            } else {
                txn.open_table(USER_BY_NAME)?
                    .get(login.as_str())?
                    .map(|v| v.value())
            };
            match id {
                Some(id) => tables::get_json(&txn.open_table(USERS)?, id, "user"),
                None => Ok(None),
            }
        })?;
        if password.len() > validate::PASSWORD_LEN_MAX {
            return Ok(None);
        }
        match row {
            Some(row) if secret::verify_secret(&row.password_hash, password) => Ok(Some(row.user)),
            Some(_) => Ok(None),
            None => {
                secret::verify_secret(self.dummy_hash(), password);
                Ok(None)
            }
        }
    }
}

impl MetaStore {
    /// Changes `user`'s password after checking `current` (argon2id, blocking and slow), and ends
    /// every session of the user except the one whose token is `keep_session` (the caller's), in
    /// the same write transaction: whoever learned the old password and signed in with it is
    /// signed out the moment the change is stored. Personal access tokens are left alone; they
    /// are revoked one by one.
    ///
    /// `new` follows the same rule as at creation. Both hashes are computed before the write
    /// transaction starts; if the stored hash changed in between (a concurrent change), the
    /// `current` that was checked is stale and the answer is `WrongCurrentPassword`.
    pub fn change_password(
        &self,
        user: UserId,
        current: &str,
        new: &str,
        keep_session: Option<&str>,
    ) -> Result<PasswordChange> {
        validate::password(new)?;
        let row: UserRow = self
            .read(|txn| tables::get_json(&txn.open_table(USERS)?, user, "user"))?
            .ok_or_else(|| StorageError::NotFound("user".into()))?;
        if current.len() > validate::PASSWORD_LEN_MAX
            || !secret::verify_secret(&row.password_hash, current)
        {
            return Ok(PasswordChange::WrongCurrentPassword);
        }
        let hash = self.hash(new)?;
        let keep = keep_session.map(secret::token_digest);
        self.write(|txn| {
            let mut users = txn.open_table(USERS)?;
            let mut now: UserRow = tables::get_json(&users, user, "user")?
                .ok_or_else(|| StorageError::NotFound("user".into()))?;
            if now.password_hash != row.password_hash {
                return Ok(PasswordChange::WrongCurrentPassword);
            }
            now.password_hash = hash;
            users.insert(user, tables::encode(&now)?.as_slice())?;
            drop(users);
            let sessions_ended = end_sessions_of(txn, user, keep.as_ref())?;
            Ok(PasswordChange::Changed { sessions_ended })
        })
    }
}

impl MetaStore {
    /// A hash of nothing in particular at this store's cost, computed once, to spend the same
    /// time on unknown users as on known ones.
    fn dummy_hash(&self) -> &str {
        self.dummy_hash
            .get_or_init(|| self.hash("mcp-obs timing equalizer").unwrap_or_default())
    }
}
