//! Creating a server (with the show-once key and the integration guide), its settings
//! (OpenTelemetry toggle, sampling, argument capture, rename, delete) and its keys (generate with a
//! confirmation step and show-once display, revoke with a confirmation dialog and a no-script
//! confirmation page). Every change goes through `api::servers`, like the JSON API's.

use maud::{html, Markup};
use mcp_obs_storage::meta::{ApiKeyInfo, NewServer, Role, Server, ServerUpdate};
use mcp_obs_storage::model::Env;
use warp::http::StatusCode;

use super::form::Form;
use super::guide;
use super::layout::{csrf_field, redirect, time, Nav};
use super::{Ctx, PageResult};
use crate::api::servers as ops;
use crate::error::ApiError;

fn settings_path(slug: &str, id: u32) -> String {
    format!("/orgs/{slug}/servers/{id}/settings")
}

/// Errors a person can fix by changing the form are shown on the form, with its status.
fn fixable(e: &ApiError) -> bool {
    matches!(e, ApiError::BadRequest(_) | ApiError::Conflict(_))
}

fn alert(error: Option<&str>) -> Markup {
    html! { @if let Some(e) = error { p.alert role="alert" { (e) } } }
}

fn with_status(mut r: warp::reply::Response, status: StatusCode) -> warp::reply::Response {
    *r.status_mut() = status;
    r
}

/// The create-server form.
pub fn new_form(ctx: &Ctx<'_>, slug: &str, error: Option<&str>) -> PageResult {
    ctx.org(slug, Role::Admin)?;
    let body = html! {
        section.card.narrow {
            h1 { "New MCP server" }
            (alert(error))
            (new_server_form(ctx, slug, false))
        }
    };
    Ok(ctx.page(Some(slug), Nav::Overview, "New MCP server", body))
}

/// The create-server form: on its own page (the no-script path, and where errors are shown) and
/// in the overview's dialog, which adds a title and a cancel button and keeps its ids apart.
pub fn new_server_form(ctx: &Ctx<'_>, slug: &str, in_dialog: bool) -> Markup {
    let id = |name: &str| match in_dialog {
        true => format!("new-server-{name}"),
        false => name.to_string(),
    };
    html! {
        form.stack method="post" action={ "/orgs/" (slug) "/servers" } {
            (csrf_field(ctx.csrf()))
            @if in_dialog { h2 #new-server-title { "New MCP server" } }
            label for=(id("name")) { "Name" }
            input id=(id("name")) name="name" required maxlength="100" autofocus placeholder="e.g. weather";
            label.check {
                input type="checkbox" name="telemetry_enabled" checked;
                " Enable OpenTelemetry"
            }
            p.help {
                "Collected for every request your server handles: the method, tool or prompt name, duration, status and error type, the user and session, and the client's name and version. "
                strong { "Not collected: tool arguments and results" } ", unless you turn on argument capture below or later in the settings. You get an API key for the SDK right away."
            }
            label.check {
                input type="checkbox" name="capture_arguments";
                " Also capture tool arguments and results (masked for keys such as password and token, at most 4 KiB each)"
            }
            div.buttons {
                @if in_dialog { a.button href={ "/orgs/" (slug) } data-close { "Cancel" } }
                button.primary type="submit" { "Create server" }
            }
        }
    }
}

pub async fn create(ctx: &Ctx<'_>, slug: &str, form: Form) -> PageResult {
    let new = NewServer {
        name: form.text("name"),
        telemetry_enabled: form.checked("telemetry_enabled"),
        capture_arguments: form.checked("capture_arguments"),
        ..NewServer::default()
    };
    let (server, key) = match ops::create_server(ctx.state, &ctx.p, slug, new).await {
        Ok(created) => created,
        Err(e) if fixable(&e) => {
            let page = new_form(ctx, slug, Some(&e.to_string()))?;
            return Ok(with_status(page, e.status()));
        }
        Err(e) => return Err(e.into()),
    };
    let Some((full, info)) = key else {
        return Ok(redirect(&settings_path(slug, server.id)));
    };
    let body = html! {
        div.page-head { h1 { (server.name) " is ready" } }
        (show_key(&full, &info))
        (guide::snippets(&ctx.base_url(), &full, &server.name))
        p { a.button.primary href={ "/orgs/" (slug) "/servers/" (server.id) } { "Go to its analytics" } }
    };
    Ok(ctx.page(
        Some(slug),
        Nav::Overview,
        &format!("{} created", server.name),
        body,
    ))
}

/// The one display of a secret key, with its copy button and warning.
fn show_key(full: &str, info: &ApiKeyInfo) -> Markup {
    html! {
        section.card.secret role="region" aria-label="New API key" {
            h2 { "API key " code { (info.name) } " (" (info.env.as_str()) ")" }
            p.warning role="alert" { strong { "Copy this key now." } " It is shown only this once: the appliance stores only a hash of it and cannot show it again." }
            div.keybox {
                code #new-key { (full) }
                button.copy.primary type="button" data-copy="#new-key" { "Copy key" }
            }
        }
    }
}

fn keys_table(ctx: &Ctx<'_>, slug: &str, id: u32, keys: &[ApiKeyInfo], admin: bool) -> Markup {
    html! {
        table {
            thead { tr {
                th scope="col" { "Name" } th { "Prefix" } th { "Env" } th { "Created" } th { "Last used" }
                th.num { "Requests" } th.num { "Spans" } th { "Status" } th { span.visually-hidden { "Actions" } }
            } }
            tbody {
                @if keys.is_empty() { tr { td.muted colspan="9" { "No keys yet." } } }
                @for k in keys {
                    tr {
                        td { (k.name) } td { code { (k.prefix) "…" } } td { (k.env.as_str()) }
                        td { (time(k.created_at_ms)) }
                        td { @if let Some(t) = k.last_used_at_ms { (time(t)) } @else { span.muted { "never" } } }
                        td.num { (k.requests) } td.num { (k.spans) }
                        td { @if k.is_revoked() { span.badge.revoked { "revoked" } } @else { span.badge.active { "active" } } }
                        td.actions {
                            @if admin && !k.is_revoked() {
                                @let dialog = format!("revoke-{}", k.key_id);
                                a.danger href={ "/orgs/" (slug) "/servers/" (id) "/keys/" (k.key_id) "/revoke" } data-dialog=(dialog) { "Revoke" }
                                dialog id=(dialog) aria-labelledby={ (dialog) "-title" } {
                                    (revoke_form(ctx, slug, id, k))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn revoke_form(ctx: &Ctx<'_>, slug: &str, id: u32, k: &ApiKeyInfo) -> Markup {
    html! {
        form.stack method="post" action={ "/orgs/" (slug) "/servers/" (id) "/keys/" (k.key_id) "/revoke" } {
            (csrf_field(ctx.csrf()))
            h2 id={ "revoke-" (k.key_id) "-title" } { "Revoke key " code { (k.prefix) "…" } "?" }
            p { "Servers using this key can no longer send telemetry, starting with their next request. This cannot be undone." }
            div.buttons {
                a.button href=(settings_path(slug, id)) data-close { "Cancel" }
                button.danger type="submit" { "Revoke key" }
            }
        }
    }
}

fn new_key_form(ctx: &Ctx<'_>, slug: &str, id: u32) -> Markup {
    html! {
        form.stack method="post" action={ "/orgs/" (slug) "/servers/" (id) "/keys" } {
            (csrf_field(ctx.csrf()))
            h2 id="new-key-title" { "Generate a new key?" }
            p { "The new key is shown once. Existing keys keep working until you revoke them." }
            label for="key-name" { "Name" }
            input #key-name name="name" required maxlength="100" value="key";
            label for="key-env" { "Environment" }
            select #key-env name="env" { option value="live" { "live" } option value="test" { "test" } }
            div.buttons {
                a.button href=(settings_path(slug, id)) data-close { "Cancel" }
                button.primary type="submit" { "Generate key" }
            }
        }
    }
}

pub fn settings(ctx: &Ctx<'_>, slug: &str, id: u32, error: Option<&str>) -> PageResult {
    ctx.org(slug, Role::Member)?;
    let admin = ctx.role(slug) >= Role::Admin;
    let server = ops::server_of(ctx.state, &ctx.p, slug, id)?;
    let keys = ops::keys_of(ctx.state, &ctx.p, slug, id)?;
    let action = settings_path(slug, id);
    let disabled = !admin;
    let body = html! {
        div.page-head {
            h1 { (server.name) " " span.muted.small { "settings" } }
            div.actions {
                a.button href={ "/orgs/" (slug) "/servers/" (id) } { "Analytics" }
                a.button href={ "/orgs/" (slug) "/servers/" (id) "/guide" } { "Integration guide" }
            }
        }
        (alert(error))
        @if !admin { p.muted { "You can look at these settings; changing them needs the admin role." } }
        section.card {
            h2 { "OpenTelemetry" }
            (telemetry_form(ctx, &server, &action, disabled))
        }
        section.card {
            div.section-head {
                h2 { "API keys" }
                @if admin {
                    a.button href={ "/orgs/" (slug) "/servers/" (id) "/keys/new" } data-dialog="new-key" { "Generate new key" }
                    dialog #new-key aria-labelledby="new-key-title" { (new_key_form(ctx, slug, id)) }
                }
            }
            (keys_table(ctx, slug, id, &keys, admin))
        }
        @if admin {
            section.card {
                h2 { "Rename" }
                form.inline method="post" action=(action) {
                    (csrf_field(ctx.csrf()))
                    input type="hidden" name="action" value="rename";
                    label for="rename" { "Name" }
                    input #rename name="name" required maxlength="100" value=(server.name);
                    button type="submit" { "Rename" }
                }
            }
            section.card.danger-zone {
                h2 { "Delete this server" }
                p { "Its keys are revoked at once and it disappears from the dashboard. Stored spans stay until retention removes them." }
                form.inline method="post" action={ "/orgs/" (slug) "/servers/" (id) "/delete" } {
                    (csrf_field(ctx.csrf()))
                    label for="confirm-name" { "Type " strong { (server.name) } " to confirm" }
                    input #confirm-name name="confirm_name" required autocomplete="off";
                    button.danger type="submit" { "Delete server" }
                }
            }
        }
    };
    Ok(ctx.page(
        Some(slug),
        Nav::Overview,
        &format!("{} settings", server.name),
        body,
    ))
}

fn telemetry_form(ctx: &Ctx<'_>, s: &Server, action: &str, disabled: bool) -> Markup {
    let rate = format!("{}", s.sampling_rate);
    html! {
        form.stack method="post" action=(action) {
            (csrf_field(ctx.csrf()))
            input type="hidden" name="action" value="telemetry";
            label.check {
                input type="checkbox" name="telemetry_enabled" checked[s.telemetry_enabled] disabled[disabled];
                " Enable OpenTelemetry"
            }
            p.help { "When off, spans sent with this server's keys are refused and SDKs stop sending." }
            label for="sampling" { "Sampling rate (share of ordinary successful calls kept; errors and slow calls are always kept)" }
            div.slider {
                input #sampling-slider type="range" name="sampling_slider" min="0" max="1" step="0.01" value=(rate) aria-label="Sampling rate slider" disabled[disabled];
                input #sampling type="number" name="sampling_rate" min="0" max="1" step="0.01" value=(rate) disabled[disabled];
            }
            label.check {
                input type="checkbox" name="capture_arguments" checked[s.capture_arguments] disabled[disabled];
                " Capture tool arguments and results"
            }
            @if !disabled { button.primary type="submit" { "Save" } }
        }
    }
}

pub async fn save(ctx: &Ctx<'_>, slug: &str, id: u32, form: Form) -> PageResult {
    let update = match form.get("action") {
        Some("rename") => ServerUpdate {
            name: Some(form.text("name")),
            ..ServerUpdate::default()
        },
        Some("telemetry") => {
            let current = ops::server_of(ctx.state, &ctx.p, slug, id)?;
            ServerUpdate {
                telemetry_enabled: Some(form.checked("telemetry_enabled")),
                capture_arguments: Some(form.checked("capture_arguments")),
                sampling_rate: Some(sampling(&form, current.sampling_rate)?),
                ..ServerUpdate::default()
            }
        }
        _ => return Err(ApiError::BadRequest("unknown settings form".into()).into()),
    };
    match ops::update_server(ctx.state, &ctx.p, slug, id, update).await {
        Ok(_) => Ok(redirect(&settings_path(slug, id))),
        Err(e) if fixable(&e) => {
            let page = settings(ctx, slug, id, Some(&e.to_string()))?;
            Ok(with_status(page, e.status()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The number field is what script keeps in step with the slider; without script only the slider
/// may have moved, so a number still equal to the stored rate defers to the slider.
fn sampling(form: &Form, stored: f64) -> Result<f64, ApiError> {
    let parse = |k: &str| -> Result<Option<f64>, ApiError> {
        match form.get(k).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse::<f64>().map(Some).map_err(|_| {
                ApiError::BadRequest("sampling rate must be a number from 0 to 1".into())
            }),
        }
    };
    let number = parse("sampling_rate")?;
    let slider = parse("sampling_slider")?;
    Ok(match (number, slider) {
        (Some(n), Some(s)) if (n - stored).abs() < 1e-9 => s,
        (Some(n), _) => n,
        (None, Some(s)) => s,
        (None, None) => stored,
    })
}

pub async fn delete(ctx: &Ctx<'_>, slug: &str, id: u32, form: Form) -> PageResult {
    let server = ops::server_of(ctx.state, &ctx.p, slug, id)?;
    if form.text("confirm_name") != server.name {
        ctx.org(slug, Role::Admin)?;
        let msg = format!(
            "To delete the server, type its name ({}) exactly.",
            server.name
        );
        let page = settings(ctx, slug, id, Some(&msg))?;
        return Ok(with_status(page, StatusCode::BAD_REQUEST));
    }
    ops::delete_server(ctx.state, &ctx.p, slug, id).await?;
    Ok(redirect(&format!("/orgs/{slug}")))
}

/// The no-script confirmation step for a new key (script shows the same form in a dialog).
pub fn confirm_new_key(ctx: &Ctx<'_>, slug: &str, id: u32) -> PageResult {
    ctx.org(slug, Role::Admin)?;
    let server = ops::server_of(ctx.state, &ctx.p, slug, id)?;
    let body = html! { section.card.narrow { p.muted { "Server " (server.name) } (new_key_form(ctx, slug, id)) } };
    Ok(ctx.page(Some(slug), Nav::Overview, "Generate a new key", body))
}

pub async fn create_key(ctx: &Ctx<'_>, slug: &str, id: u32, form: Form) -> PageResult {
    let env = Env::parse(form.get("env").unwrap_or("live"))
        .ok_or_else(|| ApiError::BadRequest("env must be live or test".into()))?;
    let name = form.text("name");
    let (full, info) = ops::create_api_key(ctx.state, &ctx.p, slug, id, env, name).await?;
    let server = ops::server_of(ctx.state, &ctx.p, slug, id)?;
    let body = html! {
        div.page-head { h1 { "New key for " (server.name) } }
        (show_key(&full, &info))
        (guide::snippets(&ctx.base_url(), &full, &server.name))
        p { a.button.primary href=(settings_path(slug, id)) { "Back to settings" } }
    };
    Ok(ctx.page(Some(slug), Nav::Overview, "New API key", body))
}

/// The no-script confirmation page for revoking a key.
pub fn confirm_revoke(ctx: &Ctx<'_>, slug: &str, id: u32, key_id: &str) -> PageResult {
    ctx.org(slug, Role::Admin)?;
    let keys = ops::keys_of(ctx.state, &ctx.p, slug, id)?;
    let key = keys
        .iter()
        .find(|k| k.key_id == key_id)
        .ok_or_else(|| ApiError::NotFound("api key not found".into()))?;
    let body = html! { section.card.narrow { (revoke_form(ctx, slug, id, key)) } };
    Ok(ctx.page(Some(slug), Nav::Overview, "Revoke key", body))
}

pub async fn revoke(ctx: &Ctx<'_>, slug: &str, id: u32, key_id: &str) -> PageResult {
    ops::revoke_api_key(ctx.state, &ctx.p, slug, id, key_id).await?;
    Ok(redirect(&settings_path(slug, id)))
}
