//! Sign in and sign out. Sign-in goes through the JSON login's `start_session`, so repeated
//! failures are slowed down by the same throttle; errors are shown on the form.

use maud::html;
use warp::http::header;
use warp::reply::Response;

use super::layout;
use super::{Ctx, PageResult, Request};
use crate::api::session;
use crate::error::ApiError;
use crate::state::AppState;

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

/// The sign-in form, with `error` shown above it when the last attempt failed.
pub fn form(query: &str, error: Option<(&str, &str)>) -> Response {
    let next = next_of(query);
    let (message, username) = error.unwrap_or_default();
    let body = html! {
        section.card.narrow {
            h1 { "Sign in" }
            @if !message.is_empty() {
                p.alert role="alert" { (message) }
            }
            form.stack method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label for="username" { "Username or email" }
                input #username name="username" autocomplete="username" required autofocus value=(username);
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    layout::bare("Sign in", body)
}

pub async fn submit(state: &AppState, req: Request) -> PageResult {
    let ip = req.remote.map(|a| a.ip());
    let fields = req.form().await?;
    let (username, password) = (
        fields.text("username"),
        fields.get("password").unwrap_or_default(),
    );
    let next = safe_next(fields.get("next").unwrap_or("/")).to_string();
    match session::start_session(state, Some(username.clone()), password.to_string(), ip).await {
        Ok(started) => {
            let mut r = layout::redirect(&next);
            r.headers_mut().insert(header::SET_COOKIE, started.cookie);
            Ok(r)
        }
        Err(e @ (ApiError::Unauthorized(_) | ApiError::BadRequest(_))) => {
            let status = e.status();
            let q = layout::query(&[("next", &next)]);
            let mut r = form(&q, Some((&e.to_string(), &username)));
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
