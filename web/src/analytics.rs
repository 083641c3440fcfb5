//! The analytics API: `GET /api/v1/orgs/{org}/analytics/{table}` for one server or all servers of
//! the organization, as JSON or (`format=csv`) CSV. Parameters are parsed strictly; the answers
//! come from `mcp_obs_storage::analytics` (rollups only).

use std::sync::Arc;

use mcp_obs_storage::analytics::{self as an, Query, Totals, Window};
use mcp_obs_storage::meta::{Org, Role, Server};
use mcp_obs_storage::model::{Env, DAY_NANOS};
use mcp_obs_storage::rollup::Side;
use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::Filter;

use crate::auth::{authenticate, require_org};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Rows a table returns unless `limit` says otherwise.
const LIMIT_DEFAULT: usize = 20;

/// The tables this API serves (the last path segment).
pub const TABLES: [&str; 9] = [
    "summary",
    "series",
    "tools",
    "users",
    "user-tools",
    "clients",
    "protocols",
    "errors",
    "overview",
];

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "orgs" / String / "analytics" / String)
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(
            move |org: String, table: String, headers: HeaderMap, query: String| {
                let state = Arc::clone(&state);
                async move {
                    analytics(&state, &headers, &org, &table, &query)
                        .await
                        .unwrap_or_else(ApiError::into_json_response)
                }
            },
        )
        .boxed()
}

/// Parsed query parameters.
pub(crate) struct Params {
    server: Option<u32>,
    env: Env,
    side: Side,
    range: Range,
    method: Option<String>,
    tool: Option<String>,
    user: Option<String>,
    client: Option<String>,
    limit: usize,
    csv: bool,
}

enum Range {
    Last(u64),
    Between(u64, u64),
}

fn bad(k: &str, what: &str) -> ApiError {
    ApiError::BadRequest(format!("query parameter `{k}` must be {what}"))
}

/// Parses the query string strictly (the dashboard builds its queries as strings and parses them
/// here too, so a page and the API never disagree on what a parameter means).
pub(crate) fn parse(query: &str) -> Result<Params, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    let mut p = Params {
        server: None,
        env: Env::Live,
        side: Side::Server,
        range: Range::Last(DAY_NANOS),
        method: None,
        tool: None,
        user: None,
        client: None,
        limit: LIMIT_DEFAULT,
        csv: false,
    };
    let (mut from, mut to, mut range) = (None, None, None);
    for (k, v) in pairs {
        let text = || (!v.is_empty()).then(|| v.clone());
        match k.as_str() {
            "server" | "server_id" => {
                p.server = if v.is_empty() || v == "all" {
                    None
                } else {
                    Some(v.parse().map_err(|_| bad(&k, "a server id or `all`"))?)
                }
            }
            "env" => p.env = Env::parse(&v).ok_or_else(|| bad(&k, "live or test"))?,
            "side" => {
                p.side = match v.as_str() {
                    "server" => Side::Server,
                    "client" => Side::Client,
                    _ => return Err(bad(&k, "server or client")),
                }
            }
            "range" => {
                range = Some(match v.as_str() {
                    "24h" => DAY_NANOS,
                    "7d" => 7 * DAY_NANOS,
                    "30d" => 30 * DAY_NANOS,
                    "90d" => 90 * DAY_NANOS,
                    _ => return Err(bad(&k, "24h, 7d, 30d or 90d")),
                })
            }
            "from" => from = Some(parse_ms(&k, &v)?),
            "to" => to = Some(parse_ms(&k, &v)?),
            "method" => p.method = text(),
            "tool" => p.tool = text(),
            "user" => p.user = text(),
            "client" => p.client = text(),
            "limit" => {
                p.limit = v.parse().map_err(|_| bad(&k, "a number"))?;
                if p.limit == 0 || p.limit > an::ROWS_MAX {
                    return Err(bad(&k, "between 1 and 1000"));
                }
            }
            "format" => {
                p.csv = match v.as_str() {
                    "json" => false,
                    "csv" => true,
                    _ => return Err(bad(&k, "json or csv")),
                }
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{k}`"
                )))
            }
        }
    }
    p.range = match (range, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::BadRequest(
                "give either `range` or `from`/`to`, not both".into(),
            ))
        }
        (Some(r), None, None) => Range::Last(r),
        (None, Some(f), t) => Range::Between(f, t.unwrap_or(u64::MAX)),
        (None, None, Some(_)) => return Err(bad("from", "given when `to` is")),
        (None, None, None) => Range::Last(DAY_NANOS),
    };
    Ok(p)
}

fn parse_ms(k: &str, v: &str) -> Result<u64, ApiError> {
    let ms: u64 = v.parse().map_err(|_| bad(k, "unix time in milliseconds"))?;
    ms.checked_mul(1_000_000)
        .ok_or_else(|| bad(k, "unix time in milliseconds"))
}

fn now_unix_nano() -> u64 {
    mcp_obs_storage::spans::now_unix_nano()
}

async fn analytics(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    org: &str,
    table: &str,
    query: &str,
) -> ApiResult {
    let principal = authenticate(state, headers).await?;
    let org = require_org(state, &principal, org, Role::Member)?;
    if !TABLES.contains(&table) {
        return Err(ApiError::NotFound(format!(
            "no analytics table `{table}` (one of: {})",
            TABLES.join(", ")
        )));
    }
    let p = parse(query)?;
    let (q, window, servers) = resolve(state, &org, &p)?;
    let store = Arc::clone(&state.spans);
    let table = table.to_owned();
    let (limit, csv) = (p.limit, p.csv);
    let out = tokio::task::spawn_blocking(move || -> Result<Table, ApiError> {
        answer(&store, &q, &window, &table, limit, &servers)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    if csv {
        csv_response(&out)
    } else {
        let mut v = out.json;
        v["window"] = window_json(&window);
        Ok(json_response(&v))
    }
}

/// The storage query, the resolved window and the servers `p` asks about in `org` (whose
/// membership the caller has already checked). Another organization's server is 404.
pub(crate) fn resolve(
    state: &AppState,
    org: &Org,
    p: &Params,
) -> Result<(Query, Window, Vec<Server>), ApiError> {
    let all = state.meta.servers(org.id)?;
    let servers: Vec<Server> = match p.server {
        None => all,
        // A server of another organization is "not found", like a missing one.
        Some(id) => vec![all
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| ApiError::NotFound("server not found".into()))?],
    };
    let now = now_unix_nano();
    let (from, to) = match p.range {
        Range::Last(len) => (now.saturating_sub(len), now),
        Range::Between(f, t) => (f, t.min(now.max(f + 1))),
    };
    let window = Window::resolve(from, to, now)?;
    let q = Query {
        org: org.id,
        servers: servers.iter().map(|s| s.id).collect(),
        env: p.env,
        side: p.side,
        from_unix_nano: window.from_unix_nano,
        to_unix_nano: window.to_unix_nano,
        method: p.method.clone(),
        tool: p.tool.clone(),
        user: p.user.clone(),
        client: p.client.clone(),
        floor_unix_nano: crate::reads::visible_from(org),
    };
    Ok((q, window, servers))
}

/// One answer in both forms: JSON, and a flat table for CSV.
struct Table {
    json: Value,
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

fn answer(
    store: &mcp_obs_storage::spans::SpanStore,
    q: &Query,
    w: &Window,
    table: &str,
    limit: usize,
    servers: &[Server],
) -> Result<Table, ApiError> {
    let t = match table {
        "summary" => {
            let s = an::summary(store, q, w)?;
            let (c, p) = (&s.current, &s.previous);
            let rel = |a: f64, b: f64| {
                if b > 0.0 {
                    json!((a - b) / b)
                } else {
                    Value::Null
                }
            };
            let rel_ns = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => json!((a - b) / b),
                _ => Value::Null,
            };
            let f = |x: Option<u64>| x.map(|v| v as f64);
            let change = json!({
                "calls": rel(c.calls, p.calls),
                "errors": rel(c.errors, p.errors),
                "error_rate": c.error_rate - p.error_rate,
                "avg_ms": rel_ns(c.avg_nanos, p.avg_nanos),
                "p50_ms": rel_ns(f(c.p50_nanos), f(p.p50_nanos)),
                "p95_ms": rel_ns(f(c.p95_nanos), f(p.p95_nanos)),
                "p99_ms": rel_ns(f(c.p99_nanos), f(p.p99_nanos)),
                "users": rel_ns(c.users.map(|u| u as f64), p.users.map(|u| u as f64)),
                "sessions": rel_ns(c.sessions.map(|u| u as f64), p.sessions.map(|u| u as f64)),
            });
            let mut rows = Vec::new();
            for (name, t) in [("current", c), ("previous", p)] {
                let mut r = vec![name.to_string()];
                r.extend(totals_cells(t));
                rows.push(r);
            }
            let mut header = vec!["period"];
            header.extend(TOTALS_HEADER);
            Table {
                json: json!({
                    "current": totals_json(c),
                    "previous": totals_json(p),
                    "previous_window": window_json(&w.previous()),
                    "change": change,
                }),
                header,
                rows,
            }
        }
        "series" => {
            let pts = an::series(store, q, w)?;
            Table {
                json: json!({ "points": pts.iter().map(|p| json!({
                    "start_ms": p.start_unix_nano / 1_000_000,
                    "calls": p.calls,
                    "errors": p.errors,
                    "error_rate": an::rate(p.errors, p.calls),
                    "p50_ms": ms(p.p50_nanos),
                    "p95_ms": ms(p.p95_nanos),
                    "p99_ms": ms(p.p99_nanos),
                })).collect::<Vec<_>>() }),
                header: vec![
                    "start_ms",
                    "calls",
                    "errors",
                    "error_rate",
                    "p50_ms",
                    "p95_ms",
                    "p99_ms",
                ],
                rows: pts
                    .iter()
                    .map(|p| {
                        vec![
                            (p.start_unix_nano / 1_000_000).to_string(),
                            num(p.calls),
                            num(p.errors),
                            num(an::rate(p.errors, p.calls)),
                            opt_ms(p.p50_nanos),
                            opt_ms(p.p95_nanos),
                            opt_ms(p.p99_nanos),
                        ]
                    })
                    .collect(),
            }
        }
        "tools" => {
            let rows = an::top_tools(store, q, w, limit)?;
            let mut header = vec!["tool"];
            header.extend(TOTALS_HEADER);
            header.push("last_seen_ms");
            Table {
                json: json!({ "tools": rows.iter().map(|r| {
                    let mut v = totals_json(&r.totals);
                    v["tool"] = json!(r.tool);
                    v["last_seen_ms"] = json!(r.last_unix_nano / 1_000_000);
                    v
                }).collect::<Vec<_>>() }),
                header,
                rows: rows
                    .iter()
                    .map(|r| {
                        let mut c = vec![text(&r.tool)];
                        c.extend(totals_cells(&r.totals));
                        c.push((r.last_unix_nano / 1_000_000).to_string());
                        c
                    })
                    .collect(),
            }
        }
        "users" => {
            let rows = an::top_users(store, q, w, limit)?;
            Table {
                json: json!({ "users": rows.iter().map(|r| json!({
                    "user": r.user, "calls": r.calls, "errors": r.errors,
                    "error_rate": r.error_rate, "tools": r.tools,
                    "last_seen_ms": r.last_unix_nano / 1_000_000,
                })).collect::<Vec<_>>() }),
                header: vec![
                    "user",
                    "calls",
                    "errors",
                    "error_rate",
                    "tools",
                    "last_seen_ms",
                ],
                rows: rows
                    .iter()
                    .map(|r| {
                        vec![
                            text(&r.user),
                            num(r.calls),
                            num(r.errors),
                            num(r.error_rate),
                            r.tools.to_string(),
                            (r.last_unix_nano / 1_000_000).to_string(),
                        ]
                    })
                    .collect(),
            }
        }
        "user-tools" => {
            let rows = an::user_tools(store, q, w, limit)?;
            Table {
                json: json!({ "user_tools": rows.iter().map(|r| json!({
                    "user": r.user, "tool": r.tool, "calls": r.calls, "errors": r.errors,
                    "error_rate": r.error_rate, "p95_ms": ms(r.p95_nanos),
                })).collect::<Vec<_>>() }),
                header: vec!["user", "tool", "calls", "errors", "error_rate", "p95_ms"],
                rows: rows
                    .iter()
                    .map(|r| {
                        vec![
                            text(&r.user),
                            text(&r.tool),
                            num(r.calls),
                            num(r.errors),
                            num(r.error_rate),
                            opt_ms(r.p95_nanos),
                        ]
                    })
                    .collect(),
            }
        }
        "clients" | "protocols" => {
            let (clients, protocols) = an::clients(store, q, w, limit)?;
            if table == "clients" {
                Table {
                    json: json!({ "clients": clients.iter().map(|r| json!({
                        "name": r.name, "version": r.version, "calls": r.calls,
                        "errors": r.errors, "users": r.users,
                        "last_seen_ms": r.last_unix_nano / 1_000_000,
                    })).collect::<Vec<_>>() }),
                    header: vec![
                        "name",
                        "version",
                        "calls",
                        "errors",
                        "users",
                        "last_seen_ms",
                    ],
                    rows: clients
                        .iter()
                        .map(|r| {
                            vec![
                                text(r.name.as_deref().unwrap_or_default()),
                                text(r.version.as_deref().unwrap_or_default()),
                                num(r.calls),
                                num(r.errors),
                                r.users.to_string(),
                                (r.last_unix_nano / 1_000_000).to_string(),
                            ]
                        })
                        .collect(),
                }
            } else {
                Table {
                    json: json!({ "protocols": protocols.iter().map(|r| json!({
                        "version": r.version, "calls": r.calls,
                        "last_seen_ms": r.last_unix_nano / 1_000_000,
                    })).collect::<Vec<_>>() }),
                    header: vec!["version", "calls", "last_seen_ms"],
                    rows: protocols
                        .iter()
                        .map(|r| {
                            vec![
                                text(r.version.as_deref().unwrap_or_default()),
                                num(r.calls),
                                (r.last_unix_nano / 1_000_000).to_string(),
                            ]
                        })
                        .collect(),
                }
            }
        }
        "errors" => {
            let rows = an::errors(store, q, w, limit)?;
            let example = |r: &an::ErrorRow| {
                r.example.map(|e| {
                    json!({ "trace_id": hex::encode(e.trace_id), "span_id": hex::encode(e.span_id),
                            "start_ms": e.start_unix_nano / 1_000_000 })
                })
            };
            Table {
                json: json!({ "errors": rows.iter().map(|r| json!({
                    "error_type": r.error_type, "errors": r.errors,
                    "share_of_calls": r.share_of_calls,
                    "last_seen_ms": r.last_unix_nano / 1_000_000,
                    "example": example(r),
                })).collect::<Vec<_>>() }),
                header: vec![
                    "error_type",
                    "errors",
                    "share_of_calls",
                    "last_seen_ms",
                    "example_trace_id",
                ],
                rows: rows
                    .iter()
                    .map(|r| {
                        vec![
                            text(&r.error_type),
                            num(r.errors),
                            num(r.share_of_calls),
                            (r.last_unix_nano / 1_000_000).to_string(),
                            r.example
                                .map(|e| hex::encode(e.trace_id))
                                .unwrap_or_default(),
                        ]
                    })
                    .collect(),
            }
        }
        "overview" => {
            let o = an::overview(store, q, w)?;
            let name = |id: u32| {
                servers
                    .iter()
                    .find(|s| s.id == id)
                    .map(|s| s.name.clone())
                    .unwrap_or_default()
            };
            let mut header = vec!["server_id", "server"];
            header.extend(TOTALS_HEADER);
            header.push("last_seen_ms");
            Table {
                json: json!({
                    "servers": o.servers.iter().map(|r| {
                        let mut v = totals_json(&r.totals);
                        v["server_id"] = json!(r.server);
                        v["server"] = json!(name(r.server));
                        v["last_seen_ms"] = json!(r.last_unix_nano / 1_000_000);
                        v
                    }).collect::<Vec<_>>(),
                    "most_used_server": o.most_used_server.map(|id| json!({ "server_id": id, "server": name(id) })),
                    "most_called_tool": o.most_called_tool.as_ref().map(|(t, c)| json!({ "tool": t, "calls": c })),
                    "totals": totals_json(&o.totals),
                }),
                header,
                rows: o
                    .servers
                    .iter()
                    .map(|r| {
                        let mut c = vec![r.server.to_string(), text(&name(r.server))];
                        c.extend(totals_cells(&r.totals));
                        c.push((r.last_unix_nano / 1_000_000).to_string());
                        c
                    })
                    .collect(),
            }
        }
        other => return Err(ApiError::NotFound(format!("no analytics table `{other}`"))),
    };
    Ok(t)
}

fn ms(nanos: Option<u64>) -> Value {
    nanos.map_or(Value::Null, |n| json!(n as f64 / 1e6))
}

fn opt_ms(nanos: Option<u64>) -> String {
    nanos.map(|n| num(n as f64 / 1e6)).unwrap_or_default()
}

/// A text cell of CSV. Values come from telemetry (untrusted): one that a spreadsheet would run as
/// a formula (leading `=`, `+`, `-`, `@`, tab or CR, unless it is a plain number) gets a leading
/// `'`, as OWASP advises for CSV injection.
pub(crate) fn text(s: &str) -> String {
    let risky = s.starts_with(['=', '+', '-', '@', '\t', '\r']) && s.parse::<f64>().is_err();
    if risky {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// Numbers in CSV: shortest form that round-trips (integers without a fraction).
fn num(x: f64) -> String {
    format!("{x}")
}

const TOTALS_HEADER: [&str; 11] = [
    "calls",
    "spans",
    "errors",
    "error_rate",
    "avg_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "users",
    "sessions",
    "sampled",
];

fn totals_cells(t: &Totals) -> Vec<String> {
    vec![
        num(t.calls),
        t.spans.to_string(),
        num(t.errors),
        num(t.error_rate),
        t.avg_nanos.map(|a| num(a / 1e6)).unwrap_or_default(),
        opt_ms(t.p50_nanos),
        opt_ms(t.p95_nanos),
        opt_ms(t.p99_nanos),
        t.users.map(|u| u.to_string()).unwrap_or_default(),
        t.sessions.map(|u| u.to_string()).unwrap_or_default(),
        (t.calls > t.spans as f64 + 1e-9).to_string(),
    ]
}

/// Calls and errors are weighted by 1/p (so they estimate what happened when SDKs sample);
/// `spans` is what was stored; `sampled` says whether the two differ.
fn totals_json(t: &Totals) -> Value {
    json!({
        "calls": t.calls,
        "spans": t.spans,
        "errors": t.errors,
        "error_rate": t.error_rate,
        "avg_ms": t.avg_nanos.map(|a| a / 1e6),
        "p50_ms": ms(t.p50_nanos),
        "p95_ms": ms(t.p95_nanos),
        "p99_ms": ms(t.p99_nanos),
        "users": t.users,
        "sessions": t.sessions,
        "sampled": t.calls > t.spans as f64 + 1e-9,
    })
}

fn window_json(w: &Window) -> Value {
    json!({
        "from_ms": w.from_unix_nano / 1_000_000,
        "to_ms": w.to_unix_nano / 1_000_000,
        "granularity_ms": w.granularity_nanos / 1_000_000,
        "bucket_ms": w.bucket_nanos / 1_000_000,
    })
}

fn json_response(v: &Value) -> Response {
    let mut resp = Response::new(serde_json::to_vec(v).unwrap_or_default().into());
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn csv_response(t: &Table) -> ApiResult {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&t.header)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    for r in &t.rows {
        w.write_record(r)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    let body = w
        .into_inner()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = Response::new(body.into());
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    Ok(resp)
}
