//! Sign in and sign out. Sign-in goes through the JSON login's `start_session`, so repeated
//! failures are slowed down by the same throttle; errors are shown on the form.

use maud::html;
use subtle::ConstantTimeEq;
use warp::http::{header, HeaderValue, StatusCode};

use super::layout;
use super::{Ctx, PageResult, Request};
use crate::api::session;
use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;

/// The pre-session CSRF cookie of the sign-in form (login CSRF: without it another site could
/// sign a browser in to an account of the attacker's choosing). Scoped to `/login`, so it is sent
/// with the form's POST only.
pub const LOGIN_CSRF_COOKIE: &str = "mcpobs_login_csrf";

/// How long a rendered sign-in form stays usable.
const LOGIN_CSRF_MAX_AGE_SECS: u64 = 3600;

/// A fresh random token (256 bits, hex) for one rendering of the sign-in form.
fn new_login_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Whether the form's `login_csrf` field equals the cookie set with the form (constant time).
fn login_token_ok(headers: &warp::http::HeaderMap, field: &str) -> bool {
    match auth::cookie(headers, LOGIN_CSRF_COOKIE) {
        Some(c) if !c.is_empty() => bool::from(c.as_bytes().ct_eq(field.as_bytes())),
        _ => false,
    }
}

/// Where to go after signing in: only a path of ours, never another site (`//host` included).
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next
    } else {
        "/"
    }
}

fn next_of(query: &str) -> String {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let next = pairs
        .into_iter()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v)
        .unwrap_or_default();
    safe_next(&next).to_string()
}

/// The sign-in form, with `error` shown above it when the last attempt failed. Every rendering
/// carries a new pre-session token, as a cookie and as the hidden field `login_csrf`.
pub fn form(state: &AppState, query: &str, error: Option<(&str, &str)>) -> PageResult {
    let next = next_of(query);
    let (message, username) = error.unwrap_or_default();
    let token = new_login_token();
    let body = html! {
        section.card.narrow {
            h1 { "Sign in" }
            @if !message.is_empty() {
                p.alert role="alert" { (message) }
            }
            form.stack method="post" action="/login" {
                input type="hidden" name="login_csrf" value=(token);
                input type="hidden" name="next" value=(next);
                label for="username" { "Username or email" }
                input #username name="username" autocomplete="username" required autofocus value=(username);
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    let mut r = layout::bare("Sign in", body);
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let cookie = HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/login; \
         Max-Age={LOGIN_CSRF_MAX_AGE_SECS}{secure}"
    ))
    .map_err(|e| ApiError::Internal(format!("cookie header: {e}")))?;
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(r)
}

pub async fn submit(state: &AppState, req: Request) -> PageResult {
    let ip = req.client_ip;
    let req_headers = req.headers.clone();
    let fields = req.form().await?;
    let (username, password) = (
        fields.text("username"),
        fields.get("password").unwrap_or_default(),
    );
    let next = safe_next(fields.get("next").unwrap_or("/")).to_string();
    let q = layout::query(&[("next", &next)]);
    // Checked before the password, so a forged sign-in costs no argon2 run and no throttle step.
    if !login_token_ok(&req_headers, fields.get("login_csrf").unwrap_or_default()) {
        let message = "This sign-in form has expired or was not sent from this site. \
                       Please sign in again.";
        let mut r = form(state, &q, Some((message, &username)))?;
        *r.status_mut() = StatusCode::FORBIDDEN;
        return Ok(r);
    }
    match session::start_session(state, Some(username.clone()), password.to_string(), ip).await {
        Ok(started) => {
            let mut r = layout::redirect(&next);
            r.headers_mut().insert(header::SET_COOKIE, started.cookie);
            Ok(r)
        }
        Err(e @ (ApiError::Unauthorized(_) | ApiError::BadRequest(_))) => {
            let status = e.status();
            let mut r = form(state, &q, Some((&e.to_string(), &username)))?;
            *r.status_mut() = status;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn logout(ctx: &Ctx<'_>) -> PageResult {
    let clear = session::end_session(ctx.state, &ctx.headers).await?;
    let mut r = layout::redirect("/login");
    r.headers_mut().insert(header::SET_COOKIE, clear);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(next_of("next=%2Forgs%2Fx"), "/orgs/x");
        assert_eq!(next_of("next=%2F%2Fevil.example"), "/");
        assert_eq!(next_of("next=https%3A%2F%2Fevil.example"), "/");
        assert_eq!(next_of(""), "/");
    }
}
