//! The records of the metadata store as callers see them: plain data, no secrets except where a
//! record exists precisely to carry a hash for verification (`ApiKeyRecord`, `PatRecord`).

use serde::{Deserialize, Serialize};

use crate::model::{Env, OrgId, ServerId, UserId};

/// A user's role in one organization. Ordered: `Member < Admin < Owner`, so permission checks are
/// `role >= min`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member = 0,
    Admin = 1,
    Owner = 2,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
    pub(crate) fn from_u8(v: u8) -> Option<Role> {
        match v {
            0 => Some(Role::Member),
            1 => Some(Role::Admin),
            2 => Some(Role::Owner),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Org {
    pub id: OrgId,
    /// `[a-z0-9-]{1,63}`, unique; the name in URLs.
    pub slug: String,
    pub name: String,
    pub created_at_ms: u64,
    pub retention_days: u32,
}

/// Changes to an organization; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct OrgUpdate {
    pub name: Option<String>,
    pub retention_days: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: Option<String>,
    pub created_at_ms: u64,
}

/// A member of an organization with their role there.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub user: User,
    pub role: Role,
}

/// A live (unexpired) session. The token itself is never stored, only its digest.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: UserId,
    /// Sent back by the client in `X-CSRF-Token` on state-changing requests.
    pub csrf_token: String,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

/// The outcome of `MetaStore::change_password`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordChange {
    /// Stored; this many other sessions of the user were ended.
    Changed { sessions_ended: usize },
    /// The current password given was not the user's: nothing changed.
    WrongCurrentPassword,
}

/// What `create_session` hands out once: the bearer token goes into the cookie.
#[derive(Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub expires_at_ms: u64,
}

// Debug output ends up in logs and panic messages: never print tokens there.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("csrf_token", &"<redacted>")
            .field("created_at_ms", &self.created_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("token", &"<redacted>")
            .field("csrf_token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub id: ServerId,
    pub org_id: OrgId,
    /// Unique within its organization.
    pub name: String,
    pub telemetry_enabled: bool,
    /// Probability in [0, 1] that SDKs keep an ordinary successful span.
    pub sampling_rate: f64,
    pub capture_arguments: bool,
    pub created_at_ms: u64,
}

/// Settings for a new server. `Default` is what the API uses for omitted fields.
#[derive(Clone, Debug)]
pub struct NewServer {
    pub name: String,
    pub telemetry_enabled: bool,
    pub sampling_rate: f64,
    pub capture_arguments: bool,
}

impl Default for NewServer {
    fn default() -> Self {
        NewServer {
            name: String::new(),
            telemetry_enabled: true,
            sampling_rate: 1.0,
            capture_arguments: false,
        }
    }
}

/// Changes to a server; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ServerUpdate {
    pub name: Option<String>,
    pub telemetry_enabled: Option<bool>,
    pub sampling_rate: Option<f64>,
    pub capture_arguments: Option<bool>,
}

/// An API key as listings show it: never the secret, never the hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    /// The public first 8 characters of the random part; the lookup key.
    pub key_id: String,
    pub org_id: OrgId,
    pub server_id: ServerId,
    pub env: Env,
    pub name: String,
    /// `mcpobs_{env}_{key_id}`: enough to recognise a key, useless to use it.
    pub prefix: String,
    pub created_at_ms: u64,
    pub last_used_at_ms: Option<u64>,
    pub requests: u64,
    pub spans: u64,
    pub revoked_at_ms: Option<u64>,
}

impl ApiKeyInfo {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at_ms.is_some()
    }
}

/// An API key with its argon2id hash (PHC string), for verification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    #[serde(flatten)]
    pub info: ApiKeyInfo,
    pub hash: String,
}

/// A personal access token as listings show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatInfo {
    pub key_id: String,
    pub user_id: UserId,
    pub name: String,
    /// `mcpobs_pat_{key_id}`.
    pub prefix: String,
    pub created_at_ms: u64,
    pub last_used_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
}

impl PatInfo {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at_ms.is_some()
    }
}

/// A personal access token with its argon2id hash, for verification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatRecord {
    #[serde(flatten)]
    pub info: PatInfo,
    pub hash: String,
}

/// Accumulated use of one key since the last flush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUsage {
    pub key_id: String,
    pub last_used_at_ms: u64,
    pub requests: u64,
    pub spans: u64,
}

/// What `bootstrap` created, so the binary can tell the operator once.
#[derive(Clone, PartialEq, Eq)]
pub struct Bootstrap {
    pub org_slug: String,
    pub username: String,
    /// The generated admin password when none was given; print it once, it is not stored.
    pub password_generated: Option<String>,
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap")
            .field("org_slug", &self.org_slug)
            .field("username", &self.username)
            .field(
                "password_generated",
                &self.password_generated.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}
