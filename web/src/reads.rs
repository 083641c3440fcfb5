//! The span read API: one trace by id, the filtered, cursor-paginated span list (with text
//! search when `q` is given), and value suggestions for the tool and user filters.

use std::sync::Arc;

use mcp_obs_storage::model::Env;
use mcp_obs_storage::model::SpanRecord;
use mcp_obs_storage::search::SuggestField;
use mcp_obs_storage::spans::{SpanFilter, SpanPage, StatusFilter};
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::Filter;

use crate::auth::{authenticate, require_org};
use crate::error::{ApiError, ApiResult};
use crate::span_json::span_to_json;
use crate::state::AppState;
use mcp_obs_storage::meta::{Org, Role};

/// Most spans one page may hold.
pub const PAGE_LIMIT_MAX: usize = 1000;
const PAGE_LIMIT_DEFAULT: usize = 50;
/// Suggestions returned when `limit` is not given.
const SUGGEST_LIMIT_DEFAULT: usize = 20;

/// The parsed query string of the span list.
#[derive(Debug, Default)]
pub struct ListParams {
    pub filter: SpanFilter,
    pub cursor: Option<String>,
    pub limit: usize,
    /// Text search (`q`), parsed by the store with its limits.
    pub q: Option<String>,
}

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let s1 = Arc::clone(&state);
    let trace = warp::path!("api" / "v1" / "orgs" / String / "traces" / String)
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .then(move |org: String, trace_id: String, headers: HeaderMap| {
            let state = Arc::clone(&s1);
            async move { respond(get_trace(&state, &headers, &org, &trace_id).await) }
        });
    let s2 = Arc::clone(&state);
    let spans = warp::path!("api" / "v1" / "orgs" / String / "spans")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(move |org: String, headers: HeaderMap, query: String| {
            let state = Arc::clone(&s2);
            async move { respond(list_spans(&state, &headers, &org, &query).await) }
        });
    let suggest = warp::path!("api" / "v1" / "orgs" / String / "suggest")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(move |org: String, headers: HeaderMap, query: String| {
            let state = Arc::clone(&state);
            async move { respond(suggest(&state, &headers, &org, &query).await) }
        });
    trace.or(spans).unify().or(suggest).unify().boxed()
}

fn respond(r: ApiResult) -> Response {
    r.unwrap_or_else(ApiError::into_json_response)
}

fn json_response(v: &serde_json::Value) -> Response {
    let mut resp = Response::new(serde_json::to_vec(v).unwrap_or_default().into());
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn parse_trace_id(s: &str) -> Result<[u8; 16], ApiError> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(s, &mut id)
        .map_err(|_| ApiError::BadRequest("trace id must be 32 hex characters".into()))?;
    Ok(id)
}

async fn get_trace(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    org: &str,
    trace_id: &str,
) -> ApiResult {
    let principal = authenticate(state, headers).await?;
    let org = require_org(state, &principal, org, Role::Member)?;
    let id = parse_trace_id(trace_id)?;
    let spans = trace_spans(state, &org, id).await?;
    let spans: Vec<_> = spans.iter().map(span_to_json).collect();
    Ok(json_response(
        &json!({ "trace_id": trace_id.to_ascii_lowercase(), "spans": spans }),
    ))
}

/// Every visible span of trace `id` in `org` (membership already checked), by start time; 404
/// when there is none. The JSON API and the dashboard's trace view both read through here.
pub(crate) async fn trace_spans(
    state: &AppState,
    org: &Org,
    id: [u8; 16],
) -> Result<Vec<SpanRecord>, ApiError> {
    let store = Arc::clone(&state.spans);
    let floor = visible_from(org);
    let org_id = org.id;
    let mut spans = tokio::task::spawn_blocking(move || store.trace(org_id, &id))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    spans.retain(|s| s.start_unix_nano >= floor);
    if spans.is_empty() {
        return Err(ApiError::NotFound("trace not found".into()));
    }
    Ok(spans)
}

/// One page of the span list of `org` (membership already checked), clamped to retention, text
/// searched when `q` is given. The JSON API and the dashboard's span list both read through here.
pub(crate) async fn list_page(
    state: &AppState,
    org: &Org,
    mut p: ListParams,
) -> Result<SpanPage, ApiError> {
    clamp_to_retention(&mut p.filter, org);
    let text = match &p.q {
        Some(q) => Some(state.spans.parse_query(q)?),
        None => None,
    };
    let store = Arc::clone(&state.spans);
    let org_id = org.id;
    tokio::task::spawn_blocking(move || match &text {
        Some(t) => store.search(org_id, &p.filter, t, p.cursor.as_deref(), p.limit),
        None => store.list(org_id, &p.filter, p.cursor.as_deref(), p.limit),
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::from)
}

/// Query parameters of the span list, parsed strictly: unknown names are rejected so a typo does
/// not silently return unfiltered data.
pub fn parse_filter(query: &str) -> Result<ListParams, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    let mut f = SpanFilter::default();
    let mut cursor = None;
    let mut limit = PAGE_LIMIT_DEFAULT;
    let mut q = None;
    for (k, v) in pairs {
        if filter_param(&mut f, &k, &v)? {
            continue;
        }
        match k.as_str() {
            "cursor" => cursor = (!v.is_empty()).then_some(v),
            "q" => q = (!v.is_empty()).then_some(v),
            "limit" => {
                limit = v.parse().map_err(|_| bad(&k, "a number"))?;
                if limit == 0 || limit > PAGE_LIMIT_MAX {
                    return Err(bad(&k, "between 1 and 1000"));
                }
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{k}`"
                )))
            }
        }
    }
    Ok(ListParams {
        filter: f,
        cursor,
        limit,
        q,
    })
}

/// The oldest start time `org` may see: data past its retention is never shown, also in the
/// hours before the background retention task deletes it.
pub fn visible_from(org: &Org) -> u64 {
    mcp_obs_storage::spans::retention_floor(
        mcp_obs_storage::spans::now_unix_nano(),
        org.retention_days,
    )
}

/// Narrows a span filter to what `org` may still see.
pub fn clamp_to_retention(f: &mut SpanFilter, org: &Org) {
    let floor = visible_from(org);
    f.from_unix_nano = Some(f.from_unix_nano.map_or(floor, |from| from.max(floor)));
}

/// Applies one filter parameter of the span list (`server`, `env`, `from`, `to`, `method`,
/// `tool`, `user`, `session`, `error_type`, `client`, `status`, `min_duration_ms`, `trace_id`) to
/// `f`. `Ok(false)` when
/// `k` is not one of them; shared by the list and export so a filter means the same in both.
pub fn filter_param(f: &mut SpanFilter, k: &str, v: &str) -> Result<bool, ApiError> {
    let text = || {
        if v.is_empty() {
            None
        } else {
            Some(v.to_owned())
        }
    };
    match k {
        "server" | "server_id" => {
            let id: u32 = v.parse().map_err(|_| bad(k, "a server id"))?;
            f.server_ids.get_or_insert_with(Vec::new).push(id);
        }
        "env" => f.env = Some(Env::parse(v).ok_or_else(|| bad(k, "live or test"))?),
        "from" => f.from_unix_nano = Some(parse_ms(k, v)?),
        "to" => f.to_unix_nano = Some(parse_ms(k, v)?),
        "method" => f.method = text(),
        "tool" => f.tool = text(),
        "user" => f.user_id = text(),
        "session" => f.session_id = text(),
        "error_type" => f.error_type = text(),
        "client" => f.client_name = text(),
        "trace_id" => f.trace_id = Some(parse_trace_id(v)?),
        "status" => {
            f.status = match v {
                "ok" => Some(StatusFilter::Ok),
                "error" => Some(StatusFilter::Error),
                "" | "any" => None,
                _ => return Err(bad(k, "ok, error or any")),
            }
        }
        "min_duration_ms" => {
            let ms: f64 = v.parse().map_err(|_| bad(k, "a number of milliseconds"))?;
            if !(ms >= 0.0 && ms.is_finite()) {
                return Err(bad(k, "a non-negative number of milliseconds"));
            }
            f.min_duration_nanos = Some((ms * 1e6) as u64);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse_ms(k: &str, v: &str) -> Result<u64, ApiError> {
    let ms: u64 = v.parse().map_err(|_| bad(k, "unix time in milliseconds"))?;
    ms.checked_mul(1_000_000)
        .ok_or_else(|| bad(k, "unix time in milliseconds"))
}

fn bad(k: &str, what: &str) -> ApiError {
    ApiError::BadRequest(format!("query parameter `{k}` must be {what}"))
}

async fn list_spans(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    org: &str,
    query: &str,
) -> ApiResult {
    let principal = authenticate(state, headers).await?;
    let org = require_org(state, &principal, org, Role::Member)?;
    let page = list_page(state, &org, parse_filter(query)?).await?;
    let spans: Vec<_> = page.spans.iter().map(span_to_json).collect();
    Ok(json_response(
        &json!({ "spans": spans, "next_cursor": page.next_cursor }),
    ))
}

/// `GET /api/v1/orgs/{org}/suggest?field=tool|user&prefix=&server=&limit=`: distinct values of
/// the organization with that prefix (case-insensitive), sorted, from the search index.
async fn suggest(state: &Arc<AppState>, headers: &HeaderMap, org: &str, query: &str) -> ApiResult {
    let principal = authenticate(state, headers).await?;
    let org = require_org(state, &principal, org, Role::Member)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    let opts = *state.spans.search_index().options();
    let (mut field, mut prefix, mut server) = (None, String::new(), None);
    let mut limit = SUGGEST_LIMIT_DEFAULT.min(opts.suggest_limit_max);
    for (k, v) in pairs {
        match k.as_str() {
            "field" => {
                field = Some(SuggestField::parse(&v).ok_or_else(|| bad(&k, "tool or user"))?)
            }
            "prefix" => {
                if v.len() > opts.query_bytes_max {
                    return Err(bad(&k, &format!("at most {} bytes", opts.query_bytes_max)));
                }
                prefix = v;
            }
            "server" | "server_id" if !v.is_empty() => {
                server = Some(v.parse::<u32>().map_err(|_| bad(&k, "a server id"))?);
            }
            "server" | "server_id" => {}
            "limit" => {
                limit = v.parse().map_err(|_| bad(&k, "a number"))?;
                if limit == 0 || limit > opts.suggest_limit_max {
                    let range = format!("between 1 and {}", opts.suggest_limit_max);
                    return Err(bad(&k, &range));
                }
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{k}`"
                )))
            }
        }
    }
    let field = field.ok_or_else(|| bad("field", "tool or user"))?;
    // Days wholly past the organization's retention are not consulted.
    let floor = visible_from(&org);
    let store = Arc::clone(&state.spans);
    let p = prefix.clone();
    let values =
        tokio::task::spawn_blocking(move || store.suggest(org.id, field, &p, server, floor, limit))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    let name = match field {
        SuggestField::Tool => "tool",
        SuggestField::User => "user",
    };
    Ok(json_response(
        &json!({ "field": name, "prefix": prefix, "values": values }),
    ))
}
