//! Route assembly, common response headers, health endpoints, and the connection-limited server loop
//! that tests and the binary both start with `serve(listener, state, shutdown)`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::Service as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of the appliance on one port: OTLP ingest, JSON API, dashboard pages, health.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| plain(StatusCode::OK, "ok"));
    let s = Arc::clone(&state);
    let ready = warp::path!("readyz").and(warp::get()).map(move || {
        let q = s.ingest.stats();
        if s.ingest.is_closed() {
            plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
        } else {
            let body = serde_json::json!({
                "ready": true,
                "ingest_requests_waiting": q.requests_waiting,
                "ingest_spans_waiting": q.spans_waiting,
                "group_commits": q.commits,
                "spans_committed": q.spans_committed,
            });
            let mut r = Response::new(body.to_string().into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    });
    let not_found =
        warp::any().map(|| ApiError::NotFound("no such route".into()).into_json_response());
    health
        .or(ready)
        .unify()
        .or(crate::ingest::routes(Arc::clone(&state)))
        .unify()
        .or(crate::reads::routes(Arc::clone(&state)))
        .unify()
        .or(crate::export::routes(Arc::clone(&state)))
        .unify()
        .or(crate::analytics::routes(Arc::clone(&state)))
        .unify()
        .or(crate::api::routes(Arc::clone(&state)))
        .unify()
        .or(crate::pages::routes(Arc::clone(&state)))
        .unify()
        .or(not_found)
        .unify()
        .map(security_headers)
        .boxed()
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(text.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Headers every response carries; nothing is ever framed or sniffed.
fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    // Pages set it themselves; JSON and text never need scripts, styles or frames.
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    r
}

/// Serves until `shutdown` resolves, then finishes in-flight requests (graceful). At most
/// `state.config.connections_max` connections are open at once; further ones wait in the backlog.
///
/// hyper drives warp's service directly rather than through warp's `serve_incoming`, whose
/// connection wrapper answers no peer address (so `warp::addr::remote()` was always empty and
/// the login throttle never saw an IP) and no vectored writes (so hyper copied every response
/// body chunk into its own buffer before writing it: a tenth of an export's CPU).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(state.config.connections_max.max(1)));
    let st = Arc::clone(&state);
    let shutdown = async move {
        shutdown.await;
        st.shutting_down.send_replace(true);
    };
    let incoming =
        futures_util::stream::unfold((listener, permits), |(listener, permits)| async move {
            let conn = accept_limited(&listener, &permits).await;
            Some((Ok::<_, io::Error>(conn), (listener, permits)))
        });
    let service = warp::service(routes(state));
    let make = hyper::service::make_service_fn(move |conn: &LimitedConn| {
        let peer = conn.peer;
        let mut service = service.clone();
        std::future::ready(Ok::<_, Infallible>(hyper::service::service_fn(
            move |mut req: hyper::Request<hyper::Body>| {
                req.extensions_mut().insert(Peer(peer));
                service.call(req)
            },
        )))
    });
    let served = hyper::Server::builder(hyper::server::accept::from_stream(incoming))
        // Response chunks go to the socket as they are (writev), not copied into a buffer first.
        .http1_writev(true)
        .serve(make)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "server error");
    }
}

/// The TCP peer of a request's connection, which [`serve`] puts in the request's extensions.
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

/// The connection's peer under [`serve`]; warp's remote address otherwise (what `warp::test`
/// requests set with `remote_addr`). [`crate::client_addr::client_ip`] makes it the client's.
pub fn peer() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<Peer>()
        .and(warp::addr::remote())
        .map(|peer: Option<Peer>, remote: Option<SocketAddr>| peer.map(|p| p.0).or(remote))
}

async fn accept_limited(listener: &TcpListener, permits: &Arc<Semaphore>) -> LimitedConn {
    let permit = loop {
        if let Ok(p) = Arc::clone(permits).acquire_owned().await {
            break p;
        }
    };
    loop {
        match listener.accept().await {
            Ok((io, peer)) => {
                let _ = io.set_nodelay(true);
                return LimitedConn {
                    io,
                    peer,
                    _permit: permit,
                };
            }
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning or exiting.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A connection that holds one of the `connections_max` permits until it is dropped.
struct LimitedConn {
    io: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
