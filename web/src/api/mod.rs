//! The accounts JSON API under `/api/v1` (sessions, tokens, organizations, users, members,
//! servers, API keys) and the SDK settings endpoint `GET /v1/config`.
//!
//! One warp filter matches our paths (anything else falls through to other route groups), then
//! `dispatch` authenticates, checks CSRF and calls the handler. Handlers return
//! `Result<Response, ApiError>`; errors become JSON with `into_json_response`, never warp
//! rejections. Documented in `docs/api.md`.

// Closures here return the shared `StorageError`, which carries `redb::Error` unboxed; the fix
// (boxing it) belongs in `storage/src/error.rs`.
#![allow(clippy::result_large_err)]

pub(crate) mod body;
mod config;
pub(crate) mod members;
pub(crate) mod orgs;
mod router;
pub(crate) mod servers;
pub(crate) mod session;
pub(crate) mod tokens;
pub(crate) mod views;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Buf;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method};
use warp::path::Tail;
use warp::reply::Response;
use warp::Filter;

pub use body::BodyStream;
pub use router::Route;

use crate::auth::{self, Principal};
use crate::client_addr::client_ip;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// One API request after routing: what handlers may read.
pub(crate) struct Req {
    pub method: Method,
    pub headers: HeaderMap,
    /// The client's address ([`client_ip`]): for the login throttle.
    pub client_ip: Option<IpAddr>,
    body: BodyStream,
}

impl Req {
    /// Reads the body as JSON of type `T`, under `api_body_bytes_max`.
    pub async fn json<T: DeserializeOwned>(self, state: &AppState) -> Result<T, ApiError> {
        body::read_json(&self.headers, self.body, state.config.api_body_bytes_max).await
    }
}

fn with_state(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

/// Erases warp's body stream type so `Req` needs no generic parameters.
pub(crate) fn boxed_body<S, B>(stream: S) -> BodyStream
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    stream
        .map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining())))
        .boxed()
}

fn respond(result: ApiResult) -> Response {
    result.unwrap_or_else(ApiError::into_json_response)
}

/// `/api/v1/...` (accounts API) and `GET /v1/config`.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    // Match the path before taking the body, so requests for other route groups keep theirs.
    let api = warp::path("api")
        .and(warp::path("v1"))
        .and(warp::path::tail())
        .and_then(|tail: Tail| async move {
            router::parse(tail.as_str()).ok_or_else(warp::reject::not_found)
        })
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(crate::server::peer())
        .and(warp::body::stream())
        .and(with_state(Arc::clone(&state)))
        .then(
            |route: Route, method, headers, peer, stream, state: Arc<AppState>| async move {
                let client_ip = client_ip(peer, &headers, &state.config.trusted_proxies);
                let req = Req {
                    method,
                    headers,
                    client_ip,
                    body: boxed_body(stream),
                };
                respond(dispatch(&state, route, req).await)
            },
        );
    let sdk_config = warp::path!("v1" / "config")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(with_state(state))
        .then(|headers: HeaderMap, state: Arc<AppState>| async move {
            respond(config::get(&state, &headers).await)
        });
    api.or(sdk_config).unify().boxed()
}

fn not_allowed(method: &Method, allowed: &str) -> ApiResult {
    Err(ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on this path (allowed: {allowed})"
    )))
}

/// Authenticates (except for login), enforces CSRF on session writes, and calls the handler
/// for `route` and the request method.
async fn dispatch(state: &AppState, route: Route, req: Req) -> ApiResult {
    if route == Route::Session && req.method == Method::POST {
        return session::login(state, req).await;
    }
    let p: Principal = auth::authenticate(state, &req.headers).await?;
    auth::check_csrf(&p, &req.method, &req.headers)?;
    let method = req.method.clone();
    let m = method.as_str();
    match route {
        Route::Session => match m {
            "GET" => session::current(state, &p).await,
            "DELETE" => session::logout(state, &p, &req.headers).await,
            _ => not_allowed(&method, "GET, POST, DELETE"),
        },
        Route::Password => match m {
            "POST" => session::change_password(state, &p, req).await,
            _ => not_allowed(&method, "POST"),
        },
        Route::Tokens => match m {
            "GET" => tokens::list(state, &p).await,
            "POST" => tokens::create(state, &p, req).await,
            _ => not_allowed(&method, "GET, POST"),
        },
        Route::Token(id) => match m {
            "DELETE" => tokens::revoke(state, &p, &id).await,
            _ => not_allowed(&method, "DELETE"),
        },
        Route::Users => match m {
            "POST" => orgs::create_user(state, &p, req).await,
            _ => not_allowed(&method, "POST"),
        },
        Route::Orgs => match m {
            "GET" => orgs::list(state, &p).await,
            "POST" => orgs::create(state, &p, req).await,
            _ => not_allowed(&method, "GET, POST"),
        },
        Route::Org(org) => match m {
            "GET" => orgs::get(state, &p, &org).await,
            "PATCH" => orgs::update(state, &p, &org, req).await,
            _ => not_allowed(&method, "GET, PATCH"),
        },
        Route::Members(org) => match m {
            "GET" => members::list(state, &p, &org).await,
            "POST" => members::add(state, &p, &org, req).await,
            _ => not_allowed(&method, "GET, POST"),
        },
        Route::Member(org, user) => match m {
            "PATCH" => members::update(state, &p, &org, user, req).await,
            "DELETE" => members::remove(state, &p, &org, user).await,
            _ => not_allowed(&method, "PATCH, DELETE"),
        },
        Route::Servers(org) => match m {
            "GET" => servers::list(state, &p, &org).await,
            "POST" => servers::create(state, &p, &org, req).await,
            _ => not_allowed(&method, "GET, POST"),
        },
        Route::Server(org, id) => match m {
            "GET" => servers::get(state, &p, &org, id).await,
            "PATCH" => servers::update(state, &p, &org, id, req).await,
            "DELETE" => servers::delete(state, &p, &org, id).await,
            _ => not_allowed(&method, "GET, PATCH, DELETE"),
        },
        Route::Keys(org, id) => match m {
            "GET" => servers::list_keys(state, &p, &org, id).await,
            "POST" => servers::create_key(state, &p, &org, id, req).await,
            _ => not_allowed(&method, "GET, POST"),
        },
        Route::Key(org, id, key_id) => match m {
            "DELETE" => servers::revoke_key(state, &p, &org, id, &key_id).await,
            _ => not_allowed(&method, "DELETE"),
        },
    }
}
