//! Members of an organization (add with a role, change roles, remove; owners only) and the
//! signed-in user's personal access tokens (create with show-once display, revoke). Changes go
//! through `api::members` and `api::tokens`, like the JSON API's.

use maud::{html, Markup};
use mcp_obs_storage::meta::Role;
use warp::http::StatusCode;

use super::form::Form;
use super::layout::{csrf_field, redirect, time, Nav};
use super::{Ctx, PageResult};
use crate::api::{members as ops, tokens};
use crate::error::ApiError;

const ROLES: [Role; 3] = [Role::Member, Role::Admin, Role::Owner];

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
    let org = ctx.org(slug, Role::Member)?;
    let owner = ctx.role(slug) >= Role::Owner;
    let members = ctx.state.meta.members(org.id)?;
    let body = html! {
        div.page-head { h1 { "Members of " (org.name) } }
        @if let Some(e) = error { p.alert role="alert" { (e) } }
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
                p.help { "The user must already exist (created with " code { "POST /api/v1/users" } ")." }
                form.inline method="post" action={ "/orgs/" (slug) "/members" } {
                    (csrf_field(ctx.csrf()))
                    label for="new-member" { "Username" }
                    input #new-member name="username" required autocomplete="off";
                    label for="new-role" { "Role" }
                    (role_select("role", "new-role", Role::Member))
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

pub async fn add(ctx: &Ctx<'_>, slug: &str, form: Form) -> PageResult {
    let role = parse_role(&form)?;
    match ops::add_member(ctx.state, &ctx.p, slug, &form.text("username"), role).await {
        Ok(_) => Ok(redirect(&format!("/orgs/{slug}/members"))),
        Err(e) => members_error(ctx, slug, e),
    }
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
