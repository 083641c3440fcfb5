//! `POST|GET|DELETE /api/v1/session`: login (sets the session cookie, returns the CSRF token),
//! who-am-I, logout; `POST /api/v1/session/password`: the signed-in user changes their password.

use std::net::IpAddr;

use mcp_obs_storage::meta::{NewSession, PasswordChange, User};
use serde::Deserialize;
use serde_json::json;
use warp::http::{header, HeaderMap, HeaderValue};

use super::{views, Req};
use crate::auth::{self, blocking, blocking_hash, Principal, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: Option<String>,
    email: Option<String>,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

fn session_cookie(token: &str, max_age_secs: u64, secure: bool) -> Result<HeaderValue, ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age_secs}{secure}"
    ))
    .map_err(|e| ApiError::Internal(format!("cookie header: {e}")))
}

fn orgs_json(state: &AppState, user_id: u32) -> Result<serde_json::Value, ApiError> {
    let orgs = state.meta.orgs_of_user(user_id)?;
    Ok(orgs.iter().map(|(o, r)| views::org(o, Some(*r))).collect())
}

/// A session just started: the user, the new session and its `Set-Cookie` value.
pub struct Started {
    pub user: User,
    pub session: NewSession,
    pub cookie: HeaderValue,
}

/// Longest username written to the log on a failed password check.
const LOG_NAME_CHARS_MAX: usize = 64;

fn log_name(login: &str) -> &str {
    match login.char_indices().nth(LOG_NAME_CHARS_MAX) {
        Some((end, _)) => &login[..end],
        None => login,
    }
}

/// The client address as logged: the forwarded one behind a trusted proxy, else the peer.
fn log_ip(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
}

/// A wrong password (at login, or as the current one on a password change): counted by the
/// login throttle and logged at WARN for the operator (and tools like fail2ban) with who was
/// tried and from where, never the password. The name is quoted and escaped (`?`), and cut short,
/// so a crafted one cannot forge log lines.
fn password_check_failed(state: &AppState, login: &str, ip: Option<IpAddr>, what: &str) {
    state.login_throttle.record_failure(login, ip);
    tracing::warn!(username = ?log_name(login), client_ip = %log_ip(ip), "{what}");
}

/// Checks the password (argon2, off the runtime, after the throttle's delay) and starts a session.
/// The JSON login and the dashboard's sign-in form both go through here, so both are throttled.
pub async fn start_session(
    state: &AppState,
    login: Option<String>,
    password: String,
    ip: Option<IpAddr>,
) -> Result<Started, ApiError> {
    let login = login
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("username or email is required".into()))?;
    let delay = state.login_throttle.delay_for(&login, ip);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let name = login.clone();
    let user = blocking_hash(state, move |m| m.check_login(&name, &password)).await?;
    let Some(user) = user else {
        password_check_failed(state, &login, ip, "login failed");
        return Err(ApiError::Unauthorized(
            "invalid username or password".into(),
        ));
    };
    state.login_throttle.record_success(&login, ip);
    let ttl = state.config.session_ttl_secs;
    let user_id = user.id;
    let session = blocking(&state.meta, move |m| m.create_session(user_id, ttl)).await?;
    let cookie = session_cookie(&session.token, ttl, state.config.cookie_secure)?;
    Ok(Started {
        user,
        session,
        cookie,
    })
}

/// Ends the session of the request's cookie (if any) and returns the `Set-Cookie` value that
/// clears it.
pub async fn end_session(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    if let Some(token) = auth::cookie(headers, SESSION_COOKIE) {
        let token = token.to_string();
        blocking(&state.meta, move |m| m.delete_session(&token)).await?;
    }
    session_cookie("", 0, state.config.cookie_secure)
}

pub async fn login(state: &AppState, req: Req) -> ApiResult {
    let ip = req.client_ip;
    let body: LoginBody = req.json(state).await?;
    let Started {
        user,
        session,
        cookie,
    } = start_session(state, body.username.or(body.email), body.password, ip).await?;
    let mut resp = views::ok(json!({
        "user": views::user(&user),
        "orgs": orgs_json(state, user.id)?,
        "csrf_token": session.csrf_token,
        "expires_at_ms": session.expires_at_ms,
    }));
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// The caller, their organizations with roles, and (for sessions) the CSRF token, so a
/// reloaded page can recover it.
pub async fn current(state: &AppState, p: &Principal) -> ApiResult {
    let user = state
        .meta
        .user(p.user_id)?
        .ok_or_else(|| ApiError::Unauthorized("user no longer exists".into()))?;
    let mut body = json!({
        "user": views::user(&user),
        "orgs": orgs_json(state, user.id)?,
        "auth": if p.via_session { "session" } else { "token" },
    });
    if let Some(csrf) = p.csrf_token() {
        body["csrf_token"] = json!(csrf);
    }
    Ok(views::ok(body))
}

/// Ends the cookie's session and clears the cookie. With a token it only clears the cookie.
pub async fn logout(state: &AppState, p: &Principal, headers: &HeaderMap) -> ApiResult {
    let clear = if p.via_session {
        end_session(state, headers).await?
    } else {
        session_cookie("", 0, state.config.cookie_secure)?
    };
    let mut resp = views::no_content();
    resp.headers_mut().insert(header::SET_COOKIE, clear);
    Ok(resp)
}

pub async fn change_password(state: &AppState, p: &Principal, req: Req) -> ApiResult {
    let ip = req.client_ip;
    let headers = req.headers.clone();
    let body: PasswordBody = req.json(state).await?;
    let ended = change_password_as(
        state,
        p,
        &headers,
        ip,
        body.current_password,
        body.new_password,
    )
    .await?;
    Ok(views::ok(json!({ "sessions_ended": ended })))
}

/// Changes the caller's password (JSON API and dashboard): `current` must be their password
/// (checked with argon2id, after the login throttle's delay, and a wrong one counts as a failed
/// login, so a stolen session cannot be used to guess the password at full speed); `new` follows
/// the rules of `POST /api/v1/users`. Every other session of the user ends; the caller's own
/// session (the request's cookie, when that is how it authenticated) stays signed in. Returns
/// how many sessions ended.
pub async fn change_password_as(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    current: String,
    new: String,
) -> Result<usize, ApiError> {
    let delay = state.login_throttle.delay_for(&p.username, ip);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let keep = match p.via_session {
        true => auth::cookie(headers, SESSION_COOKIE).map(str::to_string),
        false => None,
    };
    let user = p.user_id;
    let outcome = blocking_hash(state, move |m| {
        m.change_password(user, &current, &new, keep.as_deref())
    })
    .await?;
    match outcome {
        PasswordChange::Changed { sessions_ended } => {
            state.login_throttle.record_success(&p.username, ip);
            tracing::info!(user = p.user_id, sessions_ended, "password changed");
            Ok(sessions_ended)
        }
        PasswordChange::WrongCurrentPassword => {
            // Like a failed login: a stolen session guessing the password is slowed down and
            // shows in the log the operator (or fail2ban) already watches.
            password_check_failed(
                state,
                &p.username,
                ip,
                "password change failed: wrong current password",
            );
            Err(ApiError::BadRequest(
                "the current password is not correct".into(),
            ))
        }
    }
}
