//! The signed-in user's account page: who they are and the change-password form. The change goes
//! through `api::session::change_password_as`, like `POST /api/v1/session/password`.

use maud::html;

use super::form::Form;
use super::layout::{csrf_field, redirect, Nav};
use super::{Ctx, PageResult};
use crate::api::session;
use crate::error::ApiError;

/// The page; `error` is the last attempt's problem, shown above the form.
pub fn page(ctx: &Ctx<'_>, error: Option<&str>) -> PageResult {
    let user = ctx
        .state
        .meta
        .user(ctx.p.user_id)?
        .ok_or_else(|| ApiError::Unauthorized("user no longer exists".into()))?;
    let changed = ctx.query.split('&').any(|kv| kv == "password=changed");
    let body = html! {
        div.page-head { h1 { "Account" } }
        section.card {
            dl.fields {
                dt { "Username" } dd { (user.username) }
                dt { "Email" } dd { (user.email.clone().unwrap_or_else(|| "–".into())) }
            }
        }
        section.card {
            h2 #password { "Change password" }
            @if changed && error.is_none() {
                p.notice role="status" { "Your password was changed. Every other session of your account was signed out; this one stays signed in." }
            }
            @if let Some(e) = error { p.alert role="alert" { (e) } }
            form.stack.compact method="post" action="/account" aria-labelledby="password" {
                (csrf_field(ctx.csrf()))
                // For password managers: which account this form belongs to.
                input type="hidden" name="username" autocomplete="username" value=(user.username);
                label for="current-password" { "Current password" }
                input #current-password type="password" name="current_password" autocomplete="current-password" required;
                label for="new-password" { "New password (at least 8 characters)" }
                input #new-password type="password" name="new_password" autocomplete="new-password" required minlength="8" maxlength="1024";
                label for="confirm-password" { "New password again" }
                input #confirm-password type="password" name="confirm_password" autocomplete="new-password" required minlength="8" maxlength="1024";
                p.help { "Changing it signs out every other session of your account. Personal access tokens keep working; revoke them under Tokens." }
                button.primary type="submit" { "Change password" }
            }
        }
    };
    let org = ctx.orgs.first().map(|(o, _)| o.slug.as_str());
    Ok(ctx.page(org, Nav::Account, "Account", body))
}

/// Changes the password; a mistake the user can fix is shown on the form with its status (400),
/// success redirects to the page with a notice (POST-redirect-GET).
pub async fn change_password(ctx: &Ctx<'_>, form: Form) -> PageResult {
    let new = form.get("new_password").unwrap_or_default().to_string();
    let result = match form.get("confirm_password") {
        Some(c) if c == new => {
            let current = form.get("current_password").unwrap_or_default().to_string();
            let ip = ctx.client_ip;
            session::change_password_as(ctx.state, &ctx.p, &ctx.headers, ip, current, new).await
        }
        _ => Err(ApiError::BadRequest(
            "the new password and its repetition differ".into(),
        )),
    };
    match result {
        Ok(_) => Ok(redirect("/account?password=changed")),
        Err(e @ ApiError::BadRequest(_)) => {
            let mut r = page(ctx, Some(&e.to_string()))?;
            *r.status_mut() = e.status();
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}
