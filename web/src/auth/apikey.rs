//! API-key authentication for OTLP ingest and `/v1/config`.
//!
//! Per request: parse the key, read its record and server (one read transaction), refuse revoked
//! keys and deleted servers, then argon2id-verify only if the verified-key cache has no match.
//! Reading the record every time is what makes revocation effective at once, whatever path
//! revoked the key; the read is a point lookup, far cheaper than argon2.

use mcp_obs_storage::meta::{parse_key, KeyKind};
use mcp_obs_storage::model::{Env, OrgId, ServerId};
use warp::http::HeaderMap;

use super::{bearer, verify_cached};
use crate::error::ApiError;
use crate::state::AppState;

/// Header accepted as an alternative to `Authorization: Bearer`.
pub const API_KEY_HEADER: &str = "x-api-key";

/// What a verified API key grants: organization, server and env come from here, never from
/// the payload.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyContext {
    pub org_id: OrgId,
    pub server_id: ServerId,
    pub env: Env,
    pub key_id: String,
    pub sampling_rate: f64,
    pub capture_arguments: bool,
    /// The organization's retention: spans older than this are refused at ingest.
    pub retention_days: u32,
}

const INVALID: &str = "invalid or revoked API key";

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| {
        headers
            .get(API_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    })
}

/// Verifies the request's API key for ingest. 401 when missing, malformed, unknown, revoked or
/// wrong; 403 when the key is valid but its server has telemetry disabled.
pub async fn verify_api_key(state: &AppState, headers: &HeaderMap) -> Result<KeyContext, ApiError> {
    let (ctx, telemetry_enabled) = resolve_api_key(state, headers).await?;
    if !telemetry_enabled {
        return Err(ApiError::Forbidden(
            "telemetry is disabled for this server".into(),
        ));
    }
    Ok(ctx)
}

/// Verifies the request's API key and returns its context with the server's
/// `telemetry_enabled`, without refusing disabled servers: `/v1/config` must still tell SDKs
/// that telemetry is off.
pub async fn resolve_api_key(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(KeyContext, bool), ApiError> {
    let presented = presented_key(headers)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("missing API key".into()))?;
    let parsed = parse_key(presented).ok_or_else(|| ApiError::Unauthorized(INVALID.into()))?;
    let KeyKind::Api(env) = parsed.kind else {
        return Err(ApiError::Unauthorized(INVALID.into()));
    };
    let (record, server) = state
        .meta
        .api_key_auth(parsed.key_id)?
        .ok_or_else(|| ApiError::Unauthorized(INVALID.into()))?;
    let server = match server {
        Some(s) if !record.info.is_revoked() && record.info.env == env => s,
        _ => {
            state.keys.invalidate(parsed.key_id);
            return Err(ApiError::Unauthorized(INVALID.into()));
        }
    };
    if !verify_cached(state, &state.keys, parsed.key_id, presented, &record.hash).await? {
        return Err(ApiError::Unauthorized(INVALID.into()));
    }
    let retention_days = state
        .meta
        .org(record.info.org_id)?
        .map_or(state.config.retention_days, |o| o.retention_days);
    let ctx = KeyContext {
        retention_days,
        org_id: record.info.org_id,
        server_id: server.id,
        env,
        key_id: record.info.key_id,
        sampling_rate: server.sampling_rate,
        capture_arguments: server.capture_arguments,
    };
    Ok((ctx, server.telemetry_enabled))
}
