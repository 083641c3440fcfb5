//! The dashboard: server-rendered HTML pages (maud) on the same port as the API, for people in a
//! browser. Pages read fully without JavaScript; the one embedded script only adds copying,
//! confirmation dialogs, the sampling slider's mirror and live refresh.
//!
//! Every page authenticates with the API's session cookie, checks organization membership and
//! role with the API's `require_org` (a non-member gets the same 404), and calls the same Rust
//! functions as the JSON API handlers; it never reimplements an operation or opens a store table.
//! Forms are plain POSTs carrying the session's CSRF token as a hidden field, answered with a
//! redirect (POST-redirect-GET), except show-once secrets, which are only ever in the body of the
//! POST response that created them: never in a URL, a redirect target or a later page.

// Closures here return the shared `StorageError`, which carries `redb::Error` unboxed; the fix
// (boxing it) belongs in `storage/src/error.rs`.
#![allow(clippy::result_large_err)]

mod account;
mod analytics;
mod assets;
mod chart;
mod error;
mod form;
mod guide;
mod layout;
mod login;
mod members;
mod overview;
mod range;
mod router;
mod servers;
mod spans;
mod trace;

use std::net::IpAddr;
use std::sync::Arc;

use mcp_obs_storage::meta::{Org, Role};
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method};
use warp::path::FullPath;
use warp::reply::Response;
use warp::Filter;

pub use assets::{asset_bytes, css_url, js_url, ASSET_BYTES_MAX};
pub use error::{PageError, PageResult};
pub use layout::CSP;

use crate::api::BodyStream;
use crate::auth::{self, Principal};
use crate::client_addr::client_ip;
use crate::error::ApiError;
use crate::state::AppState;
use form::Form;
use layout::{Chrome, Nav};
use router::Page;

/// Form bodies are a few fields; anything larger is refused before it is read.
pub const FORM_BYTES_MAX: usize = 16 * 1024;

/// Every dashboard path (listed in docs/dashboard.md); other paths fall through.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path::full()
        .and_then(|full: FullPath| async move {
            router::parse(full.as_str()).ok_or_else(warp::reject::not_found)
        })
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(crate::server::peer())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::body::stream())
        .then(
            move |page: Page, method, headers, peer, query: String, body| {
                let state = Arc::clone(&state);
                async move {
                    let client_ip = client_ip(peer, &headers, &state.config.trusted_proxies);
                    let req = Request {
                        method,
                        headers,
                        client_ip,
                        query,
                        body: crate::api::boxed_body(body),
                    };
                    handle(&state, page, req)
                        .await
                        .unwrap_or_else(PageError::into_response)
                }
            },
        )
        .boxed()
}

/// One dashboard request after routing.
pub(crate) struct Request {
    pub method: Method,
    pub headers: HeaderMap,
    /// The client's address ([`client_ip`]): for the login throttle.
    pub client_ip: Option<IpAddr>,
    pub query: String,
    body: BodyStream,
}

impl Request {
    /// The URL-encoded form body, under [`FORM_BYTES_MAX`].
    pub async fn form(self) -> Result<Form, ApiError> {
        let bytes = crate::api::body::read_capped(&self.headers, self.body, FORM_BYTES_MAX).await?;
        Form::parse(&bytes)
    }
}

/// A signed-in user's request: what page handlers see.
pub(crate) struct Ctx<'a> {
    pub state: &'a AppState,
    pub p: Principal,
    /// The user's organizations and roles, for the switcher.
    pub orgs: Vec<(Org, Role)>,
    pub query: String,
    pub headers: HeaderMap,
    /// The client's address ([`client_ip`]): for the login throttle.
    pub client_ip: Option<IpAddr>,
}

impl Ctx<'_> {
    pub fn csrf(&self) -> &str {
        self.p.csrf_token().unwrap_or_default()
    }

    /// Organization `slug` if the user has at least `min` there (404 for non-members).
    pub fn org(&self, slug: &str, min: Role) -> Result<Org, ApiError> {
        auth::require_org(self.state, &self.p, slug, min)
    }

    /// The user's role in `slug` (after [`Ctx::org`] succeeded it is known).
    pub fn role(&self, slug: &str) -> Role {
        self.orgs
            .iter()
            .find(|(o, _)| o.slug == slug)
            .map_or(Role::Member, |(_, r)| *r)
    }

    pub fn page(&self, org: Option<&str>, nav: Nav, title: &str, body: maud::Markup) -> Response {
        let chrome = Chrome {
            username: &self.p.username,
            csrf: self.csrf(),
            orgs: &self.orgs,
            org,
            nav,
        };
        layout::page(&chrome, title, body)
    }

    /// The base URL of this appliance as the browser reached it, for snippets.
    pub fn base_url(&self) -> String {
        let host = self
            .headers
            .get(warp::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .unwrap_or("127.0.0.1:4318");
        let scheme = if self.state.config.cookie_secure {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}")
    }
}

async fn handle(state: &AppState, page: Page, req: Request) -> PageResult {
    let post = match req.method {
        Method::GET | Method::HEAD => false,
        Method::POST => true,
        ref m => return Err(ApiError::MethodNotAllowed(format!("{m} is not allowed here")).into()),
    };
    match (&page, post) {
        (Page::Asset(name), false) => {
            return assets::serve(name)
                .ok_or_else(|| ApiError::NotFound("no such file".into()).into())
        }
        (Page::Login, false) => return login::form(state, &req.query, None),
        (Page::Login, true) => return login::submit(state, req).await,
        _ => {}
    }
    let next = if req.query.is_empty() {
        path_of(&page)
    } else {
        format!("{}?{}", path_of(&page), req.query)
    };
    let p = match auth::authenticate(state, &req.headers).await {
        Ok(p) => p,
        Err(ApiError::Unauthorized(_)) => return Err(PageError::SignIn { next }),
        Err(e) => return Err(e.into()),
    };
    let orgs = state.meta.orgs_of_user(p.user_id)?;
    let headers = req.headers.clone();
    let ctx = Ctx {
        state,
        p,
        orgs,
        query: req.query.clone(),
        headers,
        client_ip: req.client_ip,
    };
    let org = org_of(&page).map(str::to_string);
    let result = match post {
        false => get(&ctx, page).await,
        true => match req.form().await {
            Ok(form) => match form.check_csrf(&ctx.p) {
                Ok(()) => post_form(&ctx, page, form).await,
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        },
    };
    // From here on the user is known: failures are pages with the navigation header.
    Ok(result.unwrap_or_else(|e| e.into_page(&ctx, org.as_deref())))
}

/// The organization a page's path names, if any.
fn org_of(page: &Page) -> Option<&str> {
    match page {
        Page::Overview(o)
        | Page::Servers(o)
        | Page::OrgAnalytics(o)
        | Page::Spans(o)
        | Page::Trace(o, _)
        | Page::Members(o)
        | Page::MemberRole(o, _)
        | Page::MemberRemove(o, _)
        | Page::NewServer(o)
        | Page::ServerAnalytics(o, _)
        | Page::Guide(o, _)
        | Page::Settings(o, _)
        | Page::DeleteServer(o, _)
        | Page::Keys(o, _)
        | Page::NewKey(o, _)
        | Page::RevokeKey(o, _, _)
        | Page::Missing(Some(o)) => Some(o),
        Page::Home
        | Page::Login
        | Page::Logout
        | Page::Asset(_)
        | Page::Tokens
        | Page::TokenRevoke(_)
        | Page::Account
        | Page::Missing(None) => None,
    }
}

async fn get(ctx: &Ctx<'_>, page: Page) -> PageResult {
    match page {
        Page::Home => Ok(match ctx.orgs.first() {
            Some((o, _)) => layout::redirect(&format!("/orgs/{}", o.slug)),
            None => ctx.page(None, Nav::None, "No organization", overview::no_org()),
        }),
        Page::Overview(o) | Page::Servers(o) => overview::page(ctx, &o).await,
        Page::OrgAnalytics(o) => analytics::page(ctx, &o, None).await,
        Page::ServerAnalytics(o, s) => analytics::page(ctx, &o, Some(s)).await,
        Page::Spans(o) => spans::page(ctx, &o).await,
        Page::Trace(o, t) => trace::page(ctx, &o, &t).await,
        Page::NewServer(o) => servers::new_form(ctx, &o, None),
        Page::Settings(o, s) => servers::settings(ctx, &o, s, None),
        Page::Guide(o, s) => guide::page(ctx, &o, s),
        Page::NewKey(o, s) => servers::confirm_new_key(ctx, &o, s),
        Page::RevokeKey(o, s, k) => servers::confirm_revoke(ctx, &o, s, &k),
        Page::Members(o) => members::page(ctx, &o, None),
        Page::Tokens => members::tokens(ctx, None),
        Page::Account => account::page(ctx, None),
        Page::Missing(_) => Err(no_such_page()),
        _ => {
            Err(ApiError::MethodNotAllowed("this address only accepts forms (POST)".into()).into())
        }
    }
}

async fn post_form(ctx: &Ctx<'_>, page: Page, form: Form) -> PageResult {
    match page {
        Page::Logout => login::logout(ctx).await,
        Page::Servers(o) => servers::create(ctx, &o, form).await,
        Page::Settings(o, s) => servers::save(ctx, &o, s, form).await,
        Page::DeleteServer(o, s) => servers::delete(ctx, &o, s, form).await,
        Page::Keys(o, s) => servers::create_key(ctx, &o, s, form).await,
        Page::RevokeKey(o, s, k) => servers::revoke(ctx, &o, s, &k).await,
        Page::Members(o) => members::add(ctx, &o, form).await,
        Page::MemberRole(o, u) => members::set_role(ctx, &o, u, form).await,
        Page::MemberRemove(o, u) => members::remove(ctx, &o, u).await,
        Page::Tokens => members::create_token(ctx, form).await,
        Page::TokenRevoke(k) => members::revoke_token(ctx, &k).await,
        Page::Account => account::change_password(ctx, form).await,
        Page::Missing(_) => Err(no_such_page()),
        _ => Err(ApiError::MethodNotAllowed("this page cannot be posted to".into()).into()),
    }
}

fn no_such_page() -> PageError {
    ApiError::NotFound("no such page".into()).into()
}

/// The canonical path of a page, for the sign-in redirect's `next`.
fn path_of(page: &Page) -> String {
    match page {
        Page::Home => "/".into(),
        Page::Login => "/login".into(),
        Page::Logout => "/logout".into(),
        Page::Asset(n) => format!("/assets/{n}"),
        Page::Tokens => "/tokens".into(),
        Page::TokenRevoke(_) => "/tokens".into(),
        Page::Account => "/account".into(),
        Page::Missing(Some(o)) => format!("/orgs/{o}"),
        Page::Missing(None) => "/".into(),
        Page::Overview(o) | Page::Servers(o) => format!("/orgs/{o}"),
        Page::OrgAnalytics(o) => format!("/orgs/{o}/analytics"),
        Page::Spans(o) => format!("/orgs/{o}/spans"),
        Page::Trace(o, t) => format!("/orgs/{o}/traces/{t}"),
        Page::Members(o) | Page::MemberRole(o, _) | Page::MemberRemove(o, _) => {
            format!("/orgs/{o}/members")
        }
        Page::NewServer(o) => format!("/orgs/{o}/servers/new"),
        Page::ServerAnalytics(o, s) => format!("/orgs/{o}/servers/{s}"),
        Page::Guide(o, s) => format!("/orgs/{o}/servers/{s}/guide"),
        Page::Settings(o, s)
        | Page::DeleteServer(o, s)
        | Page::Keys(o, s)
        | Page::NewKey(o, s)
        | Page::RevokeKey(o, s, _) => format!("/orgs/{o}/servers/{s}/settings"),
    }
}
