//! `GET /api/v1/orgs/{org}/spans/export`: every span matching the span list's filters (and its text
//! search `q`), streamed as JSON Lines (`json.rs`, the span list's objects) or CSV (`csv.rs`). A
//! blocking task runs `SpanStore::scan` (or, with `q`, the paged search of `search.rs`) and hands
//! chunks of about [`EXPORT_CHUNK_BYTES`] through a channel of
//! [`EXPORT_CHANNEL_CHUNKS`] to the response body, so an export holds a bounded amount of memory
//! whatever its size, a slow client slows the scan down (the producer waits on the channel), a
//! client that goes away stops it (the channel closes), and a shutdown ends the response early
//! rather than wait for a download to finish. JSON Lines are rendered on
//! [`EXPORT_RENDER_THREADS_MAX`] worker thread besides the scan's (`ahead.rs`); exports run at
//! most [`EXPORTS_CONCURRENT_MAX`](crate::state::EXPORTS_CONCURRENT_MAX) at a time.

pub mod ahead;
pub mod csv;
pub mod json;
pub mod search;

#[cfg(test)]
mod tests;

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use mcp_obs_storage::meta::Role;
use mcp_obs_storage::model::OrgId;
use mcp_obs_storage::search::TextQuery;
use mcp_obs_storage::spans::{ScanBlock, ScanSink, ScanStats, SpanFilter, SpanStore};
use mcp_obs_storage::StorageError;
use tokio::sync::mpsc;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, HeaderValue};
use warp::hyper::Body;
use warp::reply::Response;
use warp::Filter;

use crate::auth::{authenticate, require_org};
use crate::error::{ApiError, ApiResult};
use crate::reads::filter_param;
use crate::state::AppState;

/// Output buffered before it is handed to the connection as one chunk.
pub const EXPORT_CHUNK_BYTES: usize = 256 << 10;
/// Chunks waiting between the scan and the connection (with the chunk size: what one export
/// buffers beyond the decoded blocks of the scan itself).
pub const EXPORT_CHANNEL_CHUNKS: usize = 4;
/// Worker threads one export renders JSON Lines on besides the scan's own (0 or 1: the worker of
/// [`ahead::RenderAhead`]); with the cap on concurrent exports, a bound on the export's threads.
pub const EXPORT_RENDER_THREADS_MAX: usize = 1;
/// Rows formatted between two checks of the buffered size.
const ROWS_PER_CHECK: usize = 256;

/// The two output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::JsonLines => "jsonl",
            Format::Csv => "csv",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Format::JsonLines => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// Turns rows of decoded blocks into output bytes.
pub trait RowFormat {
    /// What is derived once per block.
    type Prepared;
    /// Bytes before the first row (the CSV header).
    fn header(&mut self, _out: &mut Vec<u8>) -> mcp_obs_storage::Result<()> {
        Ok(())
    }
    /// `order`: the rows that will be asked of `b`, in order (see `ScanSink::prepare`).
    fn prepare(
        &mut self,
        b: &Arc<ScanBlock>,
        order: &[u32],
    ) -> mcp_obs_storage::Result<Self::Prepared>;
    /// Appends `rows` of `b` to `out`: always the next rows of the `order` given to `prepare`.
    fn rows(
        &mut self,
        b: &ScanBlock,
        p: &mut Self::Prepared,
        rows: &[u32],
        out: &mut Vec<u8>,
    ) -> mcp_obs_storage::Result<()>;
}

/// A [`ScanSink`] that formats rows with `R` and hands out chunks of about `chunk_bytes` to `emit`
/// (which returns `Break` to stop the scan).
pub struct Chunked<R, F> {
    fmt: R,
    out: Vec<u8>,
    chunk_bytes: usize,
    emit: F,
}

impl<R: RowFormat, F: FnMut(Vec<u8>) -> ControlFlow<()>> Chunked<R, F> {
    pub fn new(mut fmt: R, chunk_bytes: usize, emit: F) -> mcp_obs_storage::Result<Self> {
        let mut out = Vec::with_capacity(chunk_bytes + chunk_bytes / 4);
        fmt.header(&mut out)?;
        Ok(Chunked {
            fmt,
            out,
            chunk_bytes,
            emit,
        })
    }

    /// Hands out what is left.
    pub fn finish(mut self) -> ControlFlow<()> {
        match self.out.is_empty() {
            true => ControlFlow::Continue(()),
            false => (self.emit)(std::mem::take(&mut self.out)),
        }
    }
}

impl<R: RowFormat, F: FnMut(Vec<u8>) -> ControlFlow<()>> ScanSink for Chunked<R, F> {
    type Prepared = R::Prepared;

    fn prepare(
        &mut self,
        b: &Arc<ScanBlock>,
        order: &[u32],
    ) -> mcp_obs_storage::Result<R::Prepared> {
        self.fmt.prepare(b, order)
    }

    fn rows(
        &mut self,
        b: &ScanBlock,
        p: &mut R::Prepared,
        rows: &[u32],
    ) -> mcp_obs_storage::Result<ControlFlow<()>> {
        for part in rows.chunks(ROWS_PER_CHECK) {
            self.fmt.rows(b, p, part, &mut self.out)?;
            if self.out.len() >= self.chunk_bytes {
                let next = Vec::with_capacity(self.chunk_bytes + self.chunk_bytes / 4);
                let chunk = std::mem::replace(&mut self.out, next);
                if (self.emit)(chunk).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// Runs the export of `org`'s spans matching `filter` in `format`, handing chunks of about
/// `chunk_bytes` to `emit` until it returns `Break`. Blocking: call it off the async runtime. JSON
/// Lines are rendered on [`EXPORT_RENDER_THREADS_MAX`] more threads (see [`export_with`]).
pub fn export_to(
    store: &SpanStore,
    org: OrgId,
    filter: &SpanFilter,
    format: Format,
    chunk_bytes: usize,
    emit: impl FnMut(Vec<u8>) -> ControlFlow<()>,
) -> mcp_obs_storage::Result<ScanStats> {
    export_with(
        store,
        org,
        filter,
        format,
        chunk_bytes,
        EXPORT_RENDER_THREADS_MAX,
        emit,
    )
}

/// [`export_to`] with `render_threads` worker threads (at most [`EXPORT_RENDER_THREADS_MAX`]; 0
/// renders everything on the calling thread). The output is the same whatever the count. The
/// worker lives in a thread scope: it has stopped when this returns, however the export ended.
pub fn export_with(
    store: &SpanStore,
    org: OrgId,
    filter: &SpanFilter,
    format: Format,
    chunk_bytes: usize,
    render_threads: usize,
    emit: impl FnMut(Vec<u8>) -> ControlFlow<()>,
) -> mcp_obs_storage::Result<ScanStats> {
    fn run<R: RowFormat>(
        store: &SpanStore,
        org: OrgId,
        filter: &SpanFilter,
        mut sink: Chunked<R, impl FnMut(Vec<u8>) -> ControlFlow<()>>,
    ) -> mcp_obs_storage::Result<ScanStats> {
        let mut stats = store.scan(org, filter, &mut sink)?;
        if !stats.stopped && sink.finish().is_break() {
            stats.stopped = true;
        }
        Ok(stats)
    }
    match format {
        Format::JsonLines if render_threads.min(EXPORT_RENDER_THREADS_MAX) > 0 => {
            let ahead = ahead::RenderAhead::default();
            std::thread::scope(|s| {
                // Closes on the way out, a panic included, or the scope would wait on the worker.
                struct Close<'a>(&'a ahead::RenderAhead);
                impl Drop for Close<'_> {
                    fn drop(&mut self) {
                        self.0.close();
                    }
                }
                let _close = Close(&ahead);
                let worker = std::thread::Builder::new()
                    .name("export-render".into())
                    .spawn_scoped(s, || ahead.work());
                let fmt = match worker {
                    Ok(_) => json::JsonLines::with_ahead(&ahead),
                    Err(e) => {
                        tracing::warn!(error = %e, "no export render thread; rendering on one");
                        json::JsonLines::new()
                    }
                };
                run(store, org, filter, Chunked::new(fmt, chunk_bytes, emit)?)
            })
        }
        Format::JsonLines => run(
            store,
            org,
            filter,
            Chunked::new(json::JsonLines::new(), chunk_bytes, emit)?,
        ),
        Format::Csv => run(
            store,
            org,
            filter,
            Chunked::new(csv::Csv::default(), chunk_bytes, emit)?,
        ),
    }
}

/// The export's parameters: the span list's filters (same names, same meaning), its text search
/// `q`, and `format`. No cursor or limit; unknown names are rejected.
#[derive(Debug)]
pub struct ExportParams {
    pub filter: SpanFilter,
    pub format: Format,
    /// Text search, parsed later by the store with its limits (as the list does).
    pub q: Option<String>,
}

pub fn parse_export(query: &str) -> Result<ExportParams, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    let mut f = SpanFilter::default();
    let mut format = Format::JsonLines;
    let mut q = None;
    for (k, v) in pairs {
        if filter_param(&mut f, &k, &v)? {
            continue;
        }
        match k.as_str() {
            "q" => q = (!v.is_empty()).then_some(v),
            "format" => {
                format = match v.as_str() {
                    "jsonl" => Format::JsonLines,
                    "csv" => Format::Csv,
                    _ => {
                        return Err(ApiError::BadRequest(
                            "query parameter `format` must be jsonl or csv".into(),
                        ))
                    }
                }
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{k}`"
                )))
            }
        }
    }
    Ok(ExportParams {
        filter: f,
        format,
        q,
    })
}

/// `spans-<org>-<from>-<to>.<ext>`, the bounds in unix milliseconds (`earliest` / `latest` when
/// not given); anything but `[A-Za-z0-9_-]` in the slug becomes `_`.
pub fn file_name(org_slug: &str, f: &SpanFilter, format: Format) -> String {
    let slug: String = org_slug
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                true => c,
                false => '_',
            },
        )
        .collect();
    let ms =
        |t: Option<u64>, none: &str| t.map_or(none.to_string(), |t| (t / 1_000_000).to_string());
    format!(
        "spans-{slug}-{}-{}.{}",
        ms(f.from_unix_nano, "earliest"),
        ms(f.to_unix_nano, "latest"),
        format.extension()
    )
}

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "orgs" / String / "spans" / "export")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(move |org: String, headers: HeaderMap, query: String| {
            let state = Arc::clone(&state);
            async move {
                export(&state, &headers, &org, &query)
                    .await
                    .unwrap_or_else(ApiError::into_json_response)
            }
        })
        .boxed()
}

type Chunk = Result<Bytes, StorageError>;

async fn export(state: &Arc<AppState>, headers: &HeaderMap, org: &str, query: &str) -> ApiResult {
    let principal = authenticate(state, headers).await?;
    let org = require_org(state, &principal, org, Role::Member)?;
    let ExportParams {
        mut filter,
        format,
        q,
    } = parse_export(query)?;
    // A query the store refuses is a 400 before anything is streamed.
    let text: Option<TextQuery> = q.map(|q| state.spans.parse_query(&q)).transpose()?;
    // Named after what was asked for; nothing past the organization's retention is sent, as in
    // the span list.
    let name = file_name(&org.slug, &filter, format);
    crate::reads::clamp_to_retention(&mut filter, &org);
    let permit = Arc::clone(&state.export_permits)
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyRequests {
            message: "too many exports running; retry shortly".into(),
            retry_after_secs: 5,
        })?;
    let (tx, mut rx) = mpsc::channel::<Chunk>(EXPORT_CHANNEL_CHUNKS);
    let store = Arc::clone(&state.spans);
    let org_id = org.id;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let started = std::time::Instant::now();
        let emit = |c: Vec<u8>| match tx.blocking_send(Ok(Bytes::from(c))) {
            Ok(()) => ControlFlow::Continue(()),
            // The response body was dropped: the client went away.
            Err(_) => ControlFlow::Break(()),
        };
        let r = match &text {
            Some(q) => search::export_search_to(
                &store,
                org_id,
                &filter,
                q,
                format,
                EXPORT_CHUNK_BYTES,
                emit,
            ),
            None => export_to(&store, org_id, &filter, format, EXPORT_CHUNK_BYTES, emit),
        };
        let secs = started.elapsed().as_secs_f64();
        match r {
            Ok(s) if s.stopped => tracing::info!(
                org = org_id,
                rows = s.rows,
                secs,
                "span export stopped: the client went away"
            ),
            Ok(s) => tracing::info!(org = org_id, rows = s.rows, secs, "span export finished"),
            Err(e) => {
                tracing::error!(org = org_id, error = %e, "span export failed");
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    // The first chunk decides the status: an error before any byte is a proper error response.
    let first = match rx.recv().await {
        Some(Err(e)) => return Err(e.into()),
        other => other,
    };
    let stop = state.shutting_down.subscribe();
    let stream = futures_util::stream::unfold(
        (first, rx, Some(stop)),
        |(first, mut rx, stop)| async move {
            let mut stop = stop?;
            let item = match first {
                Some(c) => c,
                None => tokio::select! {
                    c = rx.recv() => c?,
                    // Shutting down: end here rather than hold the graceful shutdown.
                    _ = stop.wait_for(|&down| down) => {
                        let e = std::io::Error::other("the server is shutting down");
                        return Some((Err(e), (None, rx, None)));
                    }
                },
            };
            // After the headers an error can only cut the response short, which the client sees.
            let item = item.map_err(|e| std::io::Error::other(e.to_string()));
            Some((item, (None, rx, Some(stop))))
        },
    );
    let mut resp = Response::new(Body::wrap_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    let disposition = format!("attachment; filename=\"{name}\"");
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition)
            .map_err(|_| ApiError::Internal("export file name".into()))?,
    );
    Ok(resp)
}
