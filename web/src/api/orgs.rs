//! `/api/v1/orgs` and `/api/v1/users`: organizations the caller belongs to, creating them
//! (the creator becomes owner), owner-only settings, and user creation by owners/admins.

use mcp_obs_storage::meta::{OrgUpdate, Role, User};
use serde::Deserialize;
use serde_json::json;

use super::{views, Req};
use crate::auth::{blocking, blocking_hash, require_org, Principal};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrg {
    slug: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgPatch {
    name: Option<String>,
    retention_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    email: Option<String>,
    password: String,
}

pub async fn list(state: &AppState, p: &Principal) -> ApiResult {
    let orgs: Vec<_> = state
        .meta
        .orgs_of_user(p.user_id)?
        .iter()
        .map(|(o, r)| views::org(o, Some(*r)))
        .collect();
    Ok(views::ok(json!({ "orgs": orgs })))
}

/// Any signed-in user may create an organization; they become its owner.
pub async fn create(state: &AppState, p: &Principal, req: Req) -> ApiResult {
    let body: NewOrg = req.json(state).await?;
    let user = p.user_id;
    let org = blocking(&state.meta, move |m| {
        m.create_org(user, &body.slug, &body.name)
    })
    .await?;
    Ok(views::created(
        json!({ "org": views::org(&org, Some(Role::Owner)) }),
    ))
}

pub async fn get(state: &AppState, p: &Principal, slug: &str) -> ApiResult {
    let org = require_org(state, p, slug, Role::Member)?;
    let role = state.meta.role(org.id, p.user_id)?;
    Ok(views::ok(json!({ "org": views::org(&org, role) })))
}

pub async fn update(state: &AppState, p: &Principal, slug: &str, req: Req) -> ApiResult {
    let org = require_org(state, p, slug, Role::Owner)?;
    let body: OrgPatch = req.json(state).await?;
    let update = OrgUpdate {
        name: body.name,
        retention_days: body.retention_days,
    };
    let org = blocking(&state.meta, move |m| m.update_org(org.id, &update)).await?;
    Ok(views::ok(
        json!({ "org": views::org(&org, Some(Role::Owner)) }),
    ))
}

/// Creates a user without any organization; owners add them to theirs. Allowed to callers who
/// are owner or admin of at least one organization.
pub async fn create_user(state: &AppState, p: &Principal, req: Req) -> ApiResult {
    // Checked before the body is read, so a caller without the right learns nothing more.
    require_user_creator(state, p)?;
    let body: NewUser = req.json(state).await?;
    let user = create_user_as(state, p, &body.username, body.email, body.password).await?;
    Ok(views::created(json!({ "user": views::user(&user) })))
}

/// Whether `p` may create users: owner or admin of at least one organization.
pub fn require_user_creator(state: &AppState, p: &Principal) -> Result<(), ApiError> {
    let may = state
        .meta
        .orgs_of_user(p.user_id)?
        .iter()
        .any(|(_, role)| *role >= Role::Admin);
    match may {
        true => Ok(()),
        false => Err(ApiError::Forbidden(
            "only owners and admins of an organization can create users".into(),
        )),
    }
}

/// Creates user `username` (lowercased) with `password`, for a caller allowed to create users
/// (JSON API and dashboard). Storage validates the username, email and password.
pub async fn create_user_as(
    state: &AppState,
    p: &Principal,
    username: &str,
    email: Option<String>,
    password: String,
) -> Result<User, ApiError> {
    require_user_creator(state, p)?;
    // Usernames are case-insensitive: stored and looked up in lowercase.
    let username = username.to_ascii_lowercase();
    let email = email.filter(|e| !e.is_empty());
    blocking_hash(state, move |m| {
        m.create_user(&username, email.as_deref(), &password)
    })
    .await
}
