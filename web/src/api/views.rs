//! JSON shapes of the accounts API and response helpers. Every timestamp is unix milliseconds in
//! a field ending `_ms`; secrets appear only in the one response that creates them.

use mcp_obs_storage::meta::{ApiKeyInfo, KeyUsage, Member, Org, PatInfo, Role, Server, User};
use serde_json::{json, Value};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(bytes.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, &body)
}

pub fn created(body: Value) -> Response {
    json_response(StatusCode::CREATED, &body)
}

pub fn no_content() -> Response {
    let mut resp = Response::new(Vec::new().into());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

pub fn user(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "created_at_ms": u.created_at_ms,
    })
}

/// An organization; `role` is the caller's role there when known.
pub fn org(o: &Org, role: Option<Role>) -> Value {
    let mut v = json!({
        "id": o.id,
        "slug": o.slug,
        "name": o.name,
        "created_at_ms": o.created_at_ms,
        "retention_days": o.retention_days,
    });
    if let Some(role) = role {
        v["role"] = json!(role.as_str());
    }
    v
}

pub fn member(m: &Member) -> Value {
    json!({ "user": user(&m.user), "role": m.role.as_str() })
}

pub fn server(s: &Server) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "telemetry_enabled": s.telemetry_enabled,
        "sampling_rate": s.sampling_rate,
        "capture_arguments": s.capture_arguments,
        "created_at_ms": s.created_at_ms,
    })
}

/// An API key for listings: never the secret. `pending` is usage counted in memory but not yet
/// flushed, so the numbers are current.
pub fn api_key(k: &ApiKeyInfo, pending: Option<&KeyUsage>) -> Value {
    let requests = k.requests + pending.map_or(0, |p| p.requests);
    let spans = k.spans + pending.map_or(0, |p| p.spans);
    let last_used = k.last_used_at_ms.max(pending.map(|p| p.last_used_at_ms));
    json!({
        "id": k.key_id,
        "server_id": k.server_id,
        "env": k.env.as_str(),
        "name": k.name,
        "prefix": k.prefix,
        "created_at_ms": k.created_at_ms,
        "last_used_at_ms": last_used,
        "usage": { "requests": requests, "spans": spans },
        "revoked": k.is_revoked(),
        "revoked_at_ms": k.revoked_at_ms,
    })
}

/// A freshly created API key: the listing shape plus `key`, shown this once.
pub fn new_api_key(full: &str, k: &ApiKeyInfo) -> Value {
    let mut v = api_key(k, None);
    v["key"] = json!(full);
    v
}

pub fn token(t: &PatInfo, pending: Option<&KeyUsage>) -> Value {
    let last_used = t.last_used_at_ms.max(pending.map(|p| p.last_used_at_ms));
    json!({
        "id": t.key_id,
        "name": t.name,
        "prefix": t.prefix,
        "created_at_ms": t.created_at_ms,
        "last_used_at_ms": last_used,
        "revoked": t.is_revoked(),
        "revoked_at_ms": t.revoked_at_ms,
    })
}

pub fn new_token(full: &str, t: &PatInfo) -> Value {
    let mut v = token(t, None);
    v["token"] = json!(full);
    v
}
