//! Authentication and authorization: who is calling (session cookie or personal access token),
//! CSRF protection for cookie-authenticated writes, organization roles, and API keys for ingest.
//!
//! Failures are `ApiError`s (401 unauthenticated, 403 not allowed, 404 for organizations the
//! caller may not know about). No key, token or password is ever logged or echoed back.

// Closures here return the shared `StorageError`, which carries `redb::Error` unboxed; the fix
// (boxing it) belongs in `storage/src/error.rs`.
#![allow(clippy::result_large_err)]

mod apikey;
mod cache;
mod throttle;
mod usage;

use std::sync::Arc;

use mcp_obs_storage::meta::Org;
use mcp_obs_storage::model::UserId;
use mcp_obs_storage::MetaStore;
use subtle::ConstantTimeEq;
use warp::http::{header, HeaderMap, Method};

use crate::error::ApiError;
use crate::state::AppState;

pub use mcp_obs_storage::meta::Role;

pub use apikey::{resolve_api_key, verify_api_key, KeyContext};
pub use cache::KeyCache;
pub use throttle::{delay_after, LoginThrottle};
pub use usage::{flush_key_usage, record_key_usage, UsageTracker};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "mcpobs_session";
/// Header carrying the CSRF token on state-changing session requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The authenticated caller.
#[derive(Clone)]
pub struct Principal {
    pub user_id: UserId,
    pub username: String,
    /// True for a session cookie (CSRF applies), false for a personal access token.
    pub via_session: bool,
    csrf_token: Option<String>,
}

// Principals may be logged; the CSRF token must not be.
impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .field("via_session", &self.via_session)
            .finish_non_exhaustive()
    }
}

impl Principal {
    /// The session's CSRF token, for `GET /api/v1/session` to hand back after a page reload.
    pub fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::Unauthorized(msg.into())
}

/// The bearer credential of `Authorization: Bearer <x>`, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The value of cookie `name` across all `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Runs blocking work (redb commits) off the async runtime.
pub(crate) async fn blocking<T, F>(meta: &Arc<MetaStore>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&MetaStore) -> mcp_obs_storage::Result<T> + Send + 'static,
{
    let meta = Arc::clone(meta);
    tokio::task::spawn_blocking(move || f(&meta))
        .await
        .map_err(|e| ApiError::Internal(format!("blocking task failed: {e}")))?
        .map_err(ApiError::from)
}

/// Like [`blocking`] for work that runs argon2 (hashing or verifying): waits for one of the
/// bounded hash permits first.
pub(crate) async fn blocking_hash<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&MetaStore) -> mcp_obs_storage::Result<T> + Send + 'static,
{
    let _permit = state
        .hash_permits
        .acquire()
        .await
        .map_err(|_| ApiError::Internal("hash permits closed".into()))?;
    blocking(&state.meta, f).await
}

/// Whether `presented` is the key (API key or access token) `key_id` whose argon2id hash is
/// `hash`: from `cache` when it was verified before, else one argon2 run, remembered on success.
/// Runs for one key are serialized (`KeyCache::gate`), so a burst of requests with a key not yet
/// cached verifies it once.
pub(crate) async fn verify_cached(
    state: &AppState,
    cache: &cache::KeyCache,
    key_id: &str,
    presented: &str,
    hash: &str,
) -> Result<bool, ApiError> {
    if cache.is_verified(key_id, presented, hash) {
        return Ok(true);
    }
    let _gate = cache.gate(key_id).lock().await;
    if cache.is_verified(key_id, presented, hash) {
        return Ok(true);
    }
    cache.note_verification();
    let (h, p) = (hash.to_string(), presented.to_string());
    let ok = blocking_hash(state, move |_| {
        Ok(mcp_obs_storage::meta::verify_secret(&h, &p))
    })
    .await?;
    if ok {
        cache.insert(key_id, presented, hash);
    }
    Ok(ok)
}

/// Identifies the caller from `Authorization: Bearer mcpobs_pat_...` or the `mcpobs_session`
/// cookie. 401 when neither is present or valid (unknown, revoked, expired).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if let Some(token) = bearer(headers) {
        return authenticate_pat(state, token).await;
    }
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Err(unauthorized("authentication required"));
    };
    // A point read of the token digest: no blocking pool needed.
    let session = state
        .meta
        .session(token)?
        .ok_or_else(|| unauthorized("session expired or invalid; log in again"))?;
    let user = state
        .meta
        .user(session.user_id)?
        .ok_or_else(|| unauthorized("session expired or invalid; log in again"))?;
    Ok(Principal {
        user_id: user.id,
        username: user.username,
        via_session: true,
        csrf_token: Some(session.csrf_token),
    })
}

async fn authenticate_pat(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    const INVALID: &str = "invalid or revoked access token";
    let parsed = mcp_obs_storage::meta::parse_key(token)
        .filter(|p| p.kind == mcp_obs_storage::meta::KeyKind::Pat)
        .ok_or_else(|| unauthorized(INVALID))?;
    // Read on every request, so revocation is effective at once.
    let (record, user) = state
        .meta
        .pat_auth(parsed.key_id)?
        .ok_or_else(|| unauthorized(INVALID))?;
    let user = user.ok_or_else(|| unauthorized(INVALID))?;
    if record.info.is_revoked() {
        return Err(unauthorized(INVALID));
    }
    if !verify_cached(state, &state.pats, parsed.key_id, token, &record.hash).await? {
        return Err(unauthorized(INVALID));
    }
    state.usage.add_pat(parsed.key_id);
    Ok(Principal {
        user_id: user.id,
        username: user.username,
        via_session: false,
        csrf_token: None,
    })
}

/// State-changing requests (POST, PUT, PATCH, DELETE) authenticated by a session cookie must
/// carry `X-CSRF-Token` equal to the session's token (compared in constant time). Token-
/// authenticated requests need none: browsers never attach `Authorization` on their own.
pub fn check_csrf(p: &Principal, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if safe {
        return Ok(());
    }
    let presented = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    check_csrf_value(p, presented)
        .map_err(|_| ApiError::Forbidden("missing or invalid X-CSRF-Token header".into()))
}

/// The rule of [`check_csrf`] for a token presented some other way (the dashboard's forms carry
/// it as a hidden field): a session must present its own token, compared in constant time.
pub fn check_csrf_value(p: &Principal, presented: &[u8]) -> Result<(), ApiError> {
    if !p.via_session {
        return Ok(());
    }
    let expected = p.csrf_token.as_deref().unwrap_or_default();
    if !expected.is_empty() && bool::from(presented.ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "the form has expired or did not come from this dashboard; reload the page and try again"
                .into(),
        ))
    }
}

/// The organization `org_slug` if the caller is a member with at least `min`. A missing
/// organization and one the caller is not a member of look the same (404), so slugs of other
/// tenants cannot be probed; a member with too low a role gets 403.
pub fn require_org(
    state: &AppState,
    p: &Principal,
    org_slug: &str,
    min: Role,
) -> Result<Org, ApiError> {
    let not_found = || ApiError::NotFound("organization not found".into());
    let (org, role) = state
        .meta
        .org_and_role(org_slug, p.user_id)?
        .ok_or_else(not_found)?;
    let role = role.ok_or_else(not_found)?;
    if role < min {
        return Err(ApiError::Forbidden(format!(
            "this requires the {} role in organization {}",
            min.as_str(),
            org.slug
        )));
    }
    Ok(org)
}

/// The caller's role in `org` (after [`require_org`] succeeded it is always `Some`).
pub fn role_in(state: &AppState, p: &Principal, org: &Org) -> Result<Option<Role>, ApiError> {
    Ok(state.meta.role(org.id, p.user_id)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    #[test]
    fn bearer_and_cookie_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; mcpobs_session=tok"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn csrf_rules() {
        let session = Principal {
            user_id: 1,
            username: "u".into(),
            via_session: true,
            csrf_token: Some("tok".into()),
        };
        let pat = Principal {
            via_session: false,
            csrf_token: None,
            ..session.clone()
        };
        let mut h = HeaderMap::new();
        assert!(check_csrf(&session, &Method::GET, &h).is_ok());
        assert!(check_csrf(&session, &Method::POST, &h).is_err());
        assert!(check_csrf(&pat, &Method::DELETE, &h).is_ok());
        h.insert(CSRF_HEADER, HeaderValue::from_static("tok"));
        assert!(check_csrf(&session, &Method::PATCH, &h).is_ok());
        h.insert(CSRF_HEADER, HeaderValue::from_static("tok2"));
        assert!(check_csrf(&session, &Method::DELETE, &h).is_err());
    }
}
