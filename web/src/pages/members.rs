//! Members of an organization (add with a role, creating the user if asked, change roles,
//! remove; owners only) and the signed-in user's personal access tokens (create with show-once
//! display, revoke). Changes go through `api::members`, `api::orgs` and `api::tokens`, like the
//! JSON API's.

use maud::{html, Markup};
use mcp_obs_storage::meta::Role;
use warp::http::StatusCode;

use super::form::Form;
use super::layout::{csrf_field, redirect, time, Nav};
use super::{Ctx, PageResult};
use crate::api::{members as ops, tokens};
use crate::error::ApiError;

const ROLES: [Role; 3] = [Role::Member, Role::Admin, Role::Owner];

/// Length of a generated initial password: 20 alphanumerics, about 119 bits.
const INITIAL_PASSWORD_CHARS: usize = 20;

/// What the members page shows besides the list: an error, the add form's values to keep, and a
/// user just created (with the generated password, shown this once).
#[derive(Default)]
pub struct Shown<'a> {
    pub error: Option<&'a str>,
    pub username: &'a str,
    pub create: bool,
    pub email: &'a str,
    pub created: Option<(&'a str, Option<&'a str>)>,
}

fn role_select(name: &str, id: &str, current: Role) -> Markup {
    html! {
        select id=(id) name=(name) {
            @for r in ROLES { option value=(r.as_str()) selected[r == current] { (r.as_str()) } }
        }
    }
}

fn parse_role(form: &Form) -> Result<Role, ApiError> {
    Role::parse(form.get("role").unwrap_or_default())
        .ok_or_else(|| ApiError::BadRequest("role must be member, admin or owner".into()))
}

pub fn page(ctx: &Ctx<'_>, slug: &str, error: Option<&str>) -> PageResult {
    page_with(
        ctx,
        slug,
        &Shown {
            error,
            ..Shown::default()
        },
    )
}

fn page_with(ctx: &Ctx<'_>, slug: &str, shown: &Shown<'_>) -> PageResult {
    let org = ctx.org(slug, Role::Member)?;
    let owner = ctx.role(slug) >= Role::Owner;
    let members = ctx.state.meta.members(org.id)?;
    let body = html! {
        div.page-head { h1 { "Members of " (org.name) } }
        @if let Some(e) = shown.error { p.alert role="alert" { (e) } }
        @if let Some((name, password)) = shown.created {
            section.card.secret role="region" aria-label="New user" {
                p { "User " strong { (name) } " was created and added." }
                @if let Some(pw) = password {
                    p.warning role="alert" { strong { "Copy this initial password now." } " It is shown only this once; give it to " (name) " to sign in." }
                    div.keybox { code #initial-password { (pw) } button.copy.primary type="button" data-copy="#initial-password" { "Copy password" } }
                }
            }
        }
        section.card {
            table {
                thead { tr { th scope="col" { "User" } th { "Email" } th { "Role" } th { span.visually-hidden { "Actions" } } } }
                tbody {
                    @for m in &members {
                        tr {
                            td { (m.user.username) }
                            td { (m.user.email.clone().unwrap_or_default()) }
                            td {
                                @if owner {
                                    form.inline method="post" action={ "/orgs/" (slug) "/members/" (m.user.id) "/role" } {
                                        (csrf_field(ctx.csrf()))
                                        label.visually-hidden for={ "role-" (m.user.id) } { "Role of " (m.user.username) }
                                        (role_select("role", &format!("role-{}", m.user.id), m.role))
                                        button type="submit" { "Change" }
                                    }
                                } @else { (m.role.as_str()) }
                            }
                            td.actions {
                                @if owner {
                                    form.inline method="post" action={ "/orgs/" (slug) "/members/" (m.user.id) "/remove" } data-confirm={ "Remove " (m.user.username) " from " (org.name) "?" } {
                                        (csrf_field(ctx.csrf()))
                                        button.danger type="submit" { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if owner {
            section.card {
                h2 { "Add a member" }
                p.help { "Add an existing user by username, or tick " em { "Create a new user" } " to create them: leave the password empty and one is generated and shown once. They can change it under " em { "Account" } " after signing in." }
                form.stack.compact method="post" action={ "/orgs/" (slug) "/members" } {
                    (csrf_field(ctx.csrf()))
                    div.row {
                        div.field {
                            label for="new-member" { "Username" }
                            input #new-member name="username" required autocomplete="off" value=(shown.username);
                        }
                        div.field {
                            label for="new-role" { "Role" }
                            (role_select("role", "new-role", Role::Member))
                        }
                    }
                    fieldset {
                        legend { label.check { input type="checkbox" name="create" value="1" checked[shown.create]; " Create a new user" } }
                        label for="new-email" { "Email (optional)" }
                        input #new-email type="email" name="email" autocomplete="off" value=(shown.email);
                        label for="new-password" { "Initial password (optional, at least 8 characters)" }
                        input #new-password type="password" name="password" autocomplete="new-password" minlength="8";
                    }
                    button.primary type="submit" { "Add" }
                }
            }
        }
    };
    Ok(ctx.page(Some(slug), Nav::Members, "Members", body))
}

/// Re-renders the members page with the error when the owner can fix it, else an error page.
fn members_error(ctx: &Ctx<'_>, slug: &str, e: ApiError) -> PageResult {
    if matches!(
        e,
        ApiError::BadRequest(_) | ApiError::Conflict(_) | ApiError::NotFound(_)
    ) && ctx.org(slug, Role::Owner).is_ok()
    {
        let status = e.status();
        let mut r = page(ctx, slug, Some(&e.to_string()))?;
        *r.status_mut() = status;
        return Ok(r);
    }
    Err(e.into())
}

/// Adds a member; with `create` ticked, creates the user first (the API's rules for creating
/// users apply), with the owner's password or a generated one shown in this response only.
pub async fn add(ctx: &Ctx<'_>, slug: &str, form: Form) -> PageResult {
    // Owners only, before anything is created.
    ctx.org(slug, Role::Owner)?;
    let role = parse_role(&form)?;
    let username = form.text("username");
    let email = form.text("email");
    let create = form.checked("create");
    let kept = |error| Shown {
        error,
        username: &username,
        create,
        email: &email,
        created: None,
    };
    let again = |e: ApiError, shown: Shown<'_>| -> PageResult {
        match e {
            ApiError::BadRequest(_) | ApiError::Conflict(_) | ApiError::NotFound(_) => {
                let mut r = page_with(ctx, slug, &shown)?;
                *r.status_mut() = e.status();
                Ok(r)
            }
            e => Err(e.into()),
        }
    };
    if !create {
        return match ops::add_member(ctx.state, &ctx.p, slug, &username, role).await {
            Ok(_) => Ok(redirect(&format!("/orgs/{slug}/members"))),
            Err(ApiError::NotFound(_)) => {
                let msg = format!(
                    "There is no user named {username}. Tick \"Create a new user\" to create them."
                );
                let shown = Shown {
                    create: true,
                    ..kept(Some(&msg))
                };
                again(ApiError::NotFound(msg.clone()), shown)
            }
            Err(e) => {
                let msg = e.to_string();
                again(e, kept(Some(&msg)))
            }
        };
    }
    let given = form.get("password").filter(|p| !p.is_empty());
    let password = given.map_or_else(initial_password, str::to_string);
    let email = (!email.is_empty()).then(|| email.clone());
    // One transaction: a user is never left created without the membership.
    let created = ops::create_member(
        ctx.state,
        &ctx.p,
        slug,
        &username,
        email,
        password.clone(),
        role,
    );
    let user = match created.await {
        Ok(u) => u,
        Err(e) => {
            let msg = e.to_string();
            return again(e, kept(Some(&msg)));
        }
    };
    if given.is_some() {
        // Nothing to show once: the owner chose the password.
        return Ok(redirect(&format!("/orgs/{slug}/members")));
    }
    let shown = Shown {
        created: Some((&user.username, Some(&password))),
        ..Shown::default()
    };
    let mut r = page_with(ctx, slug, &shown)?;
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

/// A random initial password from the thread's CSPRNG.
fn initial_password() -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(INITIAL_PASSWORD_CHARS)
        .map(char::from)
        .collect()
}

pub async fn set_role(ctx: &Ctx<'_>, slug: &str, user: u32, form: Form) -> PageResult {
    let role = parse_role(&form)?;
    match ops::set_role(ctx.state, &ctx.p, slug, user, role).await {
        Ok(_) => Ok(redirect(&format!("/orgs/{slug}/members"))),
        Err(e) => members_error(ctx, slug, e),
    }
}

pub async fn remove(ctx: &Ctx<'_>, slug: &str, user: u32) -> PageResult {
    match ops::remove_member(ctx.state, &ctx.p, slug, user).await {
        Ok(()) => Ok(redirect(&format!("/orgs/{slug}/members"))),
        Err(e) => members_error(ctx, slug, e),
    }
}

/// The user's tokens; `created` is a token just made, shown this once.
pub fn tokens(ctx: &Ctx<'_>, created: Option<&str>) -> PageResult {
    let list = ctx.state.meta.list_pats(ctx.p.user_id)?;
    let body = html! {
        div.page-head { h1 { "Personal access tokens" } }
        @if let Some(full) = created {
            section.card.secret role="region" aria-label="New token" {
                p.warning role="alert" { strong { "Copy this token now." } " It is shown only this once." }
                div.keybox { code #new-token { (full) } button.copy.primary type="button" data-copy="#new-token" { "Copy token" } }
            }
        }
        section.card {
            p.help { "Tokens authenticate scripts against the JSON API (" code { "Authorization: Bearer mcpobs_pat_…" } ") with your permissions." }
            table {
                thead { tr { th scope="col" { "Name" } th { "Prefix" } th { "Created" } th { "Last used" } th { "Status" } th { span.visually-hidden { "Actions" } } } }
                tbody {
                    @if list.is_empty() { tr { td.muted colspan="6" { "No tokens yet." } } }
                    @for t in &list {
                        tr {
                            td { (t.name) } td { code { (t.prefix) "…" } } td { (time(t.created_at_ms)) }
                            td { @if let Some(u) = t.last_used_at_ms { (time(u)) } @else { span.muted { "never" } } }
                            td { @if t.is_revoked() { span.badge.revoked { "revoked" } } @else { span.badge.active { "active" } } }
                            td.actions { @if !t.is_revoked() {
                                form.inline method="post" action={ "/tokens/" (t.key_id) "/revoke" } data-confirm={ "Revoke token " (t.name) "? Scripts using it stop working at once." } {
                                    (csrf_field(ctx.csrf()))
                                    button.danger type="submit" { "Revoke" }
                                }
                            } }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Create a token" }
            form.inline method="post" action="/tokens" {
                (csrf_field(ctx.csrf()))
                label for="token-name" { "Name" }
                input #token-name name="name" required maxlength="100";
                button.primary type="submit" { "Create token" }
            }
        }
    };
    let org = ctx.orgs.first().map(|(o, _)| o.slug.as_str());
    Ok(ctx.page(org, Nav::Tokens, "Tokens", body))
}

pub async fn create_token(ctx: &Ctx<'_>, form: Form) -> PageResult {
    let (full, _) = tokens::create_pat(ctx.state, &ctx.p, form.text("name")).await?;
    let mut r = tokens(ctx, Some(&full))?;
    *r.status_mut() = StatusCode::OK;
    Ok(r)
}

pub async fn revoke_token(ctx: &Ctx<'_>, key_id: &str) -> PageResult {
    tokens::revoke_pat(ctx.state, &ctx.p, key_id).await?;
    Ok(redirect("/tokens"))
}
