//! `/api/v1/orgs/{org}/members`: listing (members), adding (an existing user, or a new one created
//! together with the membership in one transaction), changing roles and removing (owners). The
//! storage layer refuses to drop an organization's last owner.

use mcp_obs_storage::meta::{Member, Role, User};
use mcp_obs_storage::model::UserId;
use serde::Deserialize;
use serde_json::json;

use super::{views, Req};
use crate::auth::{blocking, blocking_hash, require_org, Principal};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    username: String,
    role: Role,
    /// Present: create the user with this password (and `email`) and add them, atomically.
    password: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberPatch {
    role: Role,
}

fn member_not_found() -> ApiError {
    ApiError::NotFound("member not found".into())
}

pub async fn list(state: &AppState, p: &Principal, slug: &str) -> ApiResult {
    let org = require_org(state, p, slug, Role::Member)?;
    let members: Vec<_> = state
        .meta
        .members(org.id)?
        .iter()
        .map(views::member)
        .collect();
    Ok(views::ok(json!({ "members": members })))
}

pub async fn add(state: &AppState, p: &Principal, slug: &str, req: Req) -> ApiResult {
    require_org(state, p, slug, Role::Owner)?;
    let body: NewMember = req.json(state).await?;
    let member = match body.password {
        Some(password) => {
            let user = create_member(
                state,
                p,
                slug,
                &body.username,
                body.email,
                password,
                body.role,
            )
            .await?;
            Member {
                user,
                role: body.role,
            }
        }
        None if body.email.is_some() => {
            return Err(ApiError::BadRequest(
                "`email` is only for a new user, created when `password` is given".into(),
            ))
        }
        None => add_member(state, p, slug, &body.username, body.role).await?,
    };
    Ok(views::created(json!({ "member": views::member(&member) })))
}

/// Adds user `username` with `role`, for an owner of `slug` (JSON API and dashboard).
pub async fn add_member(
    state: &AppState,
    p: &Principal,
    slug: &str,
    username: &str,
    role: Role,
) -> Result<Member, ApiError> {
    let org = require_org(state, p, slug, Role::Owner)?;
    let user = state
        .meta
        .user_by_username(&username.to_ascii_lowercase())?
        .ok_or_else(|| ApiError::NotFound("user not found".into()))?;
    let (org_id, user_id) = (org.id, user.id);
    blocking(&state.meta, move |m| m.add_member(org_id, user_id, role)).await?;
    Ok(Member { user, role })
}

/// Creates user `username` (lowercased; the rules of `POST /api/v1/users`) and adds them to `slug`
/// with `role`, in one storage transaction, for an owner of `slug` (JSON API and dashboard). An
/// owner of an organization may create users (see `orgs::require_user_creator`).
pub async fn create_member(
    state: &AppState,
    p: &Principal,
    slug: &str,
    username: &str,
    email: Option<String>,
    password: String,
    role: Role,
) -> Result<User, ApiError> {
    let org = require_org(state, p, slug, Role::Owner)?;
    let username = username.to_ascii_lowercase();
    let email = email.filter(|e| !e.is_empty());
    let org_id = org.id;
    blocking_hash(state, move |m| {
        m.create_member(org_id, &username, email.as_deref(), &password, role)
    })
    .await
}

pub async fn update(
    state: &AppState,
    p: &Principal,
    slug: &str,
    user_id: UserId,
    req: Req,
) -> ApiResult {
    require_org(state, p, slug, Role::Owner)?;
    let body: MemberPatch = req.json(state).await?;
    let member = set_role(state, p, slug, user_id, body.role).await?;
    Ok(views::ok(json!({ "member": views::member(&member) })))
}

/// Changes a member's role, for an owner of `slug` (JSON API and dashboard).
pub async fn set_role(
    state: &AppState,
    p: &Principal,
    slug: &str,
    user_id: UserId,
    role: Role,
) -> Result<Member, ApiError> {
    let org = require_org(state, p, slug, Role::Owner)?;
    let org_id = org.id;
    blocking(&state.meta, move |m| m.set_role(org_id, user_id, role)).await?;
    let user = state.meta.user(user_id)?.ok_or_else(member_not_found)?;
    Ok(Member { user, role })
}

pub async fn remove(state: &AppState, p: &Principal, slug: &str, user_id: UserId) -> ApiResult {
    remove_member(state, p, slug, user_id).await?;
    Ok(views::no_content())
}

/// Removes a member, for an owner of `slug` (JSON API and dashboard).
pub async fn remove_member(
    state: &AppState,
    p: &Principal,
    slug: &str,
    user_id: UserId,
) -> Result<(), ApiError> {
    let org = require_org(state, p, slug, Role::Owner)?;
    let org_id = org.id;
    blocking(&state.meta, move |m| m.remove_member(org_id, user_id)).await
}
