//! `/api/v1/orgs/{org}/servers[/{id}[/keys[/{key_id}]]]`: MCP servers and their API keys.
//! Reading needs membership, changing needs admin. A server or key of another organization is
//! 404 under this organization's path, exactly like a missing one.

use mcp_obs_storage::meta::{ApiKeyInfo, NewServer, Role, Server, ServerUpdate};
use mcp_obs_storage::model::{Env, ServerId};
use serde::Deserialize;
use serde_json::json;

use super::{views, Req};
use crate::auth::{blocking, blocking_hash, require_org, Principal};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerBody {
    name: String,
    telemetry_enabled: Option<bool>,
    sampling_rate: Option<f64>,
    capture_arguments: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerPatch {
    name: Option<String>,
    telemetry_enabled: Option<bool>,
    sampling_rate: Option<f64>,
    capture_arguments: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    name: String,
    env: Option<Env>,
}

fn server_not_found() -> ApiError {
    ApiError::NotFound("server not found".into())
}

/// Storage says "server not found" / "api key not found" for records outside the organization;
/// keep those as 404 with our wording.
fn scoped<T>(r: Result<T, ApiError>, not_found: fn() -> ApiError) -> Result<T, ApiError> {
    r.map_err(|e| match e {
        ApiError::NotFound(_) => not_found(),
        other => other,
    })
}

pub async fn list(state: &AppState, p: &Principal, slug: &str) -> ApiResult {
    let org = require_org(state, p, slug, Role::Member)?;
    let servers: Vec<_> = state
        .meta
        .servers(org.id)?
        .iter()
        .map(views::server)
        .collect();
    Ok(views::ok(json!({ "servers": servers })))
}

/// Creates a server; with telemetry enabled (the default) the response carries its first API
/// key, the only time the key is ever shown.
pub async fn create(state: &AppState, p: &Principal, slug: &str, req: Req) -> ApiResult {
    require_org(state, p, slug, Role::Admin)?;
    let body: ServerBody = req.json(state).await?;
    let defaults = NewServer::default();
    let new = NewServer {
        name: body.name,
        telemetry_enabled: body.telemetry_enabled.unwrap_or(defaults.telemetry_enabled),
        sampling_rate: body.sampling_rate.unwrap_or(defaults.sampling_rate),
        capture_arguments: body.capture_arguments.unwrap_or(defaults.capture_arguments),
    };
    let (server, key) = create_server(state, p, slug, new).await?;
    let api_key = key.map(|(full, info)| views::new_api_key(&full, &info));
    Ok(views::created(json!({
        "server": views::server(&server),
        "api_key": api_key,
    })))
}

/// A new key: the full secret (shown once) and its listing.
pub type NewKey = (String, ApiKeyInfo);

/// Creates a server for an admin of `slug`; with telemetry it returns the first key. The JSON API
/// and the dashboard both create servers through here.
pub async fn create_server(
    state: &AppState,
    p: &Principal,
    slug: &str,
    new: NewServer,
) -> Result<(Server, Option<NewKey>), ApiError> {
    let org = require_org(state, p, slug, Role::Admin)?;
    let org_id = org.id;
    blocking_hash(state, move |m| m.create_server(org_id, &new)).await
}

/// Server `id` of organization `slug`, for a member; another organization's is 404.
pub fn server_of(
    state: &AppState,
    p: &Principal,
    slug: &str,
    id: ServerId,
) -> Result<Server, ApiError> {
    let org = require_org(state, p, slug, Role::Member)?;
    state
        .meta
        .server_in_org(org.id, id)?
        .ok_or_else(server_not_found)
}

pub async fn get(state: &AppState, p: &Principal, slug: &str, id: ServerId) -> ApiResult {
    let server = server_of(state, p, slug, id)?;
    Ok(views::ok(json!({ "server": views::server(&server) })))
}

/// Changes settings. Ingest reads the server on every request, so disabling telemetry or
/// changing sampling applies to the next request without any cache to invalidate.
pub async fn update(
    state: &AppState,
    p: &Principal,
    slug: &str,
    id: ServerId,
    req: Req,
) -> ApiResult {
    require_org(state, p, slug, Role::Admin)?;
    let body: ServerPatch = req.json(state).await?;
    let update = ServerUpdate {
        name: body.name,
        telemetry_enabled: body.telemetry_enabled,
        sampling_rate: body.sampling_rate,
        capture_arguments: body.capture_arguments,
    };
    let server = update_server(state, p, slug, id, update).await?;
    Ok(views::ok(json!({ "server": views::server(&server) })))
}

/// Applies `update` for an admin of `slug` (JSON API and dashboard).
pub async fn update_server(
    state: &AppState,
    p: &Principal,
    slug: &str,
    id: ServerId,
    update: ServerUpdate,
) -> Result<Server, ApiError> {
    let org = require_org(state, p, slug, Role::Admin)?;
    let org_id = org.id;
    let server = blocking(&state.meta, move |m| m.update_server(org_id, id, &update)).await;
    scoped(server, server_not_found)
}

/// Deletes the server and revokes all its keys in one transaction.
pub async fn delete(state: &AppState, p: &Principal, slug: &str, id: ServerId) -> ApiResult {
    delete_server(state, p, slug, id).await?;
    Ok(views::no_content())
}

/// Deletes the server and revokes its keys, for an admin of `slug` (JSON API and dashboard).
pub async fn delete_server(
    state: &AppState,
    p: &Principal,
    slug: &str,
    id: ServerId,
) -> Result<(), ApiError> {
    let org = require_org(state, p, slug, Role::Admin)?;
    let org_id = org.id;
    scoped(
        blocking(&state.meta, move |m| m.delete_server(org_id, id)).await,
        server_not_found,
    )
}

pub async fn list_keys(state: &AppState, p: &Principal, slug: &str, id: ServerId) -> ApiResult {
    let keys: Vec<_> = keys_of(state, p, slug, id)?
        .iter()
        .map(|k| views::api_key(k, None))
        .collect();
    Ok(views::ok(json!({ "keys": keys })))
}

/// The server's keys for a member, with usage counted in memory but not yet flushed added in,
/// so the numbers are current (JSON API and dashboard).
pub fn keys_of(
    state: &AppState,
    p: &Principal,
    slug: &str,
    id: ServerId,
) -> Result<Vec<ApiKeyInfo>, ApiError> {
    let org = require_org(state, p, slug, Role::Member)?;
    let mut keys = scoped(
        state.meta.list_api_keys(org.id, id).map_err(ApiError::from),
        server_not_found,
    )?;
    for k in &mut keys {
        if let Some(pending) = state.usage.pending_api_key(&k.key_id) {
            k.requests += pending.requests;
            k.spans += pending.spans;
            k.last_used_at_ms = k.last_used_at_ms.max(Some(pending.last_used_at_ms));
        }
    }
    Ok(keys)
}

pub async fn create_key(
    state: &AppState,
    p: &Principal,
    slug: &str,
    id: ServerId,
    req: Req,
) -> ApiResult {
    require_org(state, p, slug, Role::Admin)?;
    let body: KeyBody = req.json(state).await?;
    let env = body.env.unwrap_or(Env::Live);
    let (full, info) = create_api_key(state, p, slug, id, env, body.name).await?;
    Ok(views::created(
        json!({ "api_key": views::new_api_key(&full, &info) }),
    ))
}

/// Creates a key for an admin of `slug` (JSON API and dashboard).
pub async fn create_api_key(
    state: &AppState,
    p: &Principal,
    slug: &str,
    id: ServerId,
    env: Env,
    name: String,
) -> Result<NewKey, ApiError> {
    let org = require_org(state, p, slug, Role::Admin)?;
    let org_id = org.id;
    let created = blocking_hash(state, move |m| m.create_api_key(org_id, id, env, &name)).await;
    scoped(created, server_not_found)
}

pub async fn revoke_key(
    state: &AppState,
    p: &Principal,
    slug: &str,
    id: ServerId,
    key_id: &str,
) -> ApiResult {
    let info = revoke_api_key(state, p, slug, id, key_id).await?;
    Ok(views::ok(json!({ "api_key": views::api_key(&info, None) })))
}

/// Revokes a key for an admin of `slug`; effective for the very next ingest request (JSON API
/// and dashboard).
pub async fn revoke_api_key(
    state: &AppState,
    p: &Principal,
    slug: &str,
    id: ServerId,
    key_id: &str,
) -> Result<ApiKeyInfo, ApiError> {
    let org = require_org(state, p, slug, Role::Admin)?;
    let (org_id, kid) = (org.id, key_id.to_string());
    let revoked = blocking(&state.meta, move |m| m.revoke_api_key(org_id, id, &kid)).await;
    let info = scoped(revoked, || ApiError::NotFound("api key not found".into()))?;
    state.keys.invalidate(key_id);
    Ok(info)
}
