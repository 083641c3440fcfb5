//! The organization overview: every MCP server with calls, error rate and p95 for the chosen
//! range, the most used server and the most called tool; the start page after signing in.

use maud::{html, Markup};
use mcp_obs_storage::analytics as an;
use mcp_obs_storage::meta::Role;

use super::analytics::fetch;
use super::layout::{fmt_count, fmt_opt_ns, fmt_pct, time, Nav};
use super::range::{selector, RangeParams};
use super::{Ctx, PageResult};

pub async fn page(ctx: &Ctx<'_>, slug: &str) -> PageResult {
    let org = ctx.org(slug, Role::Member)?;
    let rp = RangeParams::parse(&ctx.query)?;
    let (o, _w, servers) = fetch(ctx, &org, &rp.api_query(None), an::overview).await?;
    let admin = ctx.role(slug) >= Role::Admin;
    let name = |id: u32| {
        servers
            .iter()
            .find(|s| s.id == id)
            .map_or_else(|| format!("server {id}"), |s| s.name.clone())
    };
    let path = format!("/orgs/{slug}");
    let body = html! {
        div.page-head {
            h1 { (org.name) }
            div.actions {
                @if !servers.is_empty() {
                    button.live type="button" data-live-toggle hidden { "Pause live refresh" }
                }
                @if admin {
                    a.button.primary href={ "/orgs/" (slug) "/servers/new" } data-dialog="new-server" { "New MCP server" }
                }
            }
        }
        // With script the links open this dialog; without, they go to the form's own page.
        @if admin {
            dialog #new-server aria-labelledby="new-server-title" { (super::servers::new_server_form(ctx, slug, true)) }
        }
        @if servers.is_empty() {
            (empty_org(slug, admin))
        } @else {
            (selector(&path, &rp))
            div.cards {
                div.card.stat { span.label { "Calls" } span.value { (fmt_count(o.totals.calls)) } }
                div.card.stat { span.label { "Error rate" } span.value { (fmt_pct(o.totals.error_rate)) } }
                div.card.stat { span.label { "p95 latency" } span.value { (fmt_opt_ns(o.totals.p95_nanos)) } }
                div.card.stat {
                    span.label { "Most used server" }
                    span.value.small {
                        @if let Some(id) = o.most_used_server {
                            a href={ "/orgs/" (slug) "/servers/" (id) "?" (rp.link(&[])) } { (name(id)) }
                        } @else { "–" }
                    }
                }
                div.card.stat {
                    span.label { "Most called tool" }
                    span.value.small {
                        @if let Some((tool, calls)) = &o.most_called_tool {
                            a href={ "/orgs/" (slug) "/spans?" (super::layout::query(&[("tool", tool)])) } { (tool) }
                            " " span.muted { "(" (fmt_count(*calls)) " calls)" }
                        } @else { "–" }
                    }
                }
            }
            div.card data-live {
                h2 { "MCP servers" }
                table {
                    thead { tr {
                        th scope="col" { "Server" } th.num scope="col" { "Calls" }
                        th.num scope="col" { "Error rate" } th.num scope="col" { "p95" }
                        th scope="col" { "Last call" } th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for row in &o.servers {
                            tr {
                                td { a href={ "/orgs/" (slug) "/servers/" (row.server) "?" (rp.link(&[])) } { (name(row.server)) } }
                                td.num { (fmt_count(row.totals.calls)) }
                                td.num { (fmt_pct(row.totals.error_rate)) }
                                td.num { (fmt_opt_ns(row.totals.p95_nanos)) }
                                td { @if row.last_unix_nano > 0 { (time(row.last_unix_nano / 1_000_000)) } @else { span.muted { "no calls yet" } } }
                                td.actions {
                                    a href={ "/orgs/" (slug) "/servers/" (row.server) "/guide" } { "Connect" }
                                    " · "
                                    a href={ "/orgs/" (slug) "/servers/" (row.server) "/settings" } { "Settings" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(ctx.page(Some(slug), Nav::Overview, &org.name, body))
}

/// A new organization: how to begin, not an empty table.
fn empty_org(slug: &str, admin: bool) -> Markup {
    html! {
        section.card.empty {
            h2 { "Connect your first MCP server" }
            p { "Create a server here, add two lines to your MCP server's code with the key you get, and its calls show up in a few seconds." }
            @if admin {
                a.button.primary href={ "/orgs/" (slug) "/servers/new" } data-dialog="new-server" { "New MCP server" }
            } @else {
                p.muted { "Ask an admin of this organization to create one." }
            }
        }
    }
}

/// For a user who belongs to no organization yet.
pub fn no_org() -> Markup {
    html! {
        section.card.empty {
            h1 { "No organization yet" }
            p { "Ask an owner of an organization to add you, then reload this page." }
        }
    }
}
