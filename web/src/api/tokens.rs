//! `/api/v1/tokens`: the caller's personal access tokens (`mcpobs_pat_...`), shown once.

use serde::Deserialize;
use serde_json::json;

use super::{views, Req};
use crate::auth::{blocking, blocking_hash, Principal};
use crate::error::ApiResult;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
}

pub async fn create(state: &AppState, p: &Principal, req: Req) -> ApiResult {
    let body: NewToken = req.json(state).await?;
    let user = p.user_id;
    let (full, info) = blocking_hash(state, move |m| m.create_pat(user, &body.name)).await?;
    Ok(views::created(
        json!({ "token": views::new_token(&full, &info) }),
    ))
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
    let (user, id) = (p.user_id, key_id.to_string());
    let info = blocking(&state.meta, move |m| m.revoke_pat(user, &id)).await?;
    state.pats.invalidate(key_id);
    Ok(views::ok(json!({ "token": views::token(&info, None) })))
}
