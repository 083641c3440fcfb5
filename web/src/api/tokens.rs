//! `/api/v1/tokens`: the caller's personal access tokens (`mcpobs_pat_...`), shown once.

use serde::Deserialize;
use serde_json::json;

use super::{views, Req};
use crate::auth::{blocking, blocking_hash, Principal};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use mcp_obs_storage::meta::PatInfo;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
}

pub async fn create(state: &AppState, p: &Principal, req: Req) -> ApiResult {
    let body: NewToken = req.json(state).await?;
    let (full, info) = create_pat(state, p, body.name).await?;
    Ok(views::created(
        json!({ "token": views::new_token(&full, &info) }),
    ))
}

/// Creates a personal access token for the caller: the full secret (shown once) and its listing
/// (JSON API and dashboard).
pub async fn create_pat(
    state: &AppState,
    p: &Principal,
    name: String,
) -> Result<(String, PatInfo), ApiError> {
    let user = p.user_id;
    blocking_hash(state, move |m| m.create_pat(user, &name)).await
}

pub async fn list(state: &AppState, p: &Principal) -> ApiResult {
    let tokens: Vec<_> = state
        .meta
        .list_pats(p.user_id)?
        .iter()
        .map(|t| views::token(t, state.usage.pending_pat(&t.key_id).as_ref()))
        .collect();
    Ok(views::ok(json!({ "tokens": tokens })))
}

/// Revokes one of the caller's tokens; someone else's is 404.
pub async fn revoke(state: &AppState, p: &Principal, key_id: &str) -> ApiResult {
    let info = revoke_pat(state, p, key_id).await?;
    Ok(views::ok(json!({ "token": views::token(&info, None) })))
}

/// Revokes one of the caller's tokens, effective at once (JSON API and dashboard).
pub async fn revoke_pat(
    state: &AppState,
    p: &Principal,
    key_id: &str,
) -> Result<PatInfo, ApiError> {
    let (user, id) = (p.user_id, key_id.to_string());
    let info = blocking(&state.meta, move |m| m.revoke_pat(user, &id)).await?;
    state.pats.invalidate(key_id);
    Ok(info)
}
