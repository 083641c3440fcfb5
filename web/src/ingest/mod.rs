//! OTLP/HTTP trace ingest (`POST /v1/traces`, alias `/api/otel/traces`): limits, API-key auth,
//! decoding, normalization, then the bounded queue; answers 200 only once the spans are durable.

pub mod queue;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::error::ApiError;
use crate::otlp::normalize::{normalize, span_count, NormalizeLimits, Stamp};
use crate::otlp::protobuf_fast::decode_normalize_protobuf;
use crate::otlp::response::{encode_export_response, encode_status, Encoding};
use crate::state::AppState;
use queue::PushError;

const CORS_ALLOW_HEADERS: &str =
    "content-type, content-encoding, authorization, x-api-key, traceparent, tracestate";

/// `POST` and CORS `OPTIONS` on both ingest paths.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let path = warp::path!("v1" / "traces")
        .or(warp::path!("api" / "otel" / "traces"))
        .unify();
    let post = path
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_state(state))
        .then(
            |headers: HeaderMap, body, state: Arc<AppState>| async move {
                let enc = encoding_for_errors(&headers);
                let resp = match export(&state, &headers, body).await {
                    Ok(resp) => resp,
                    Err(e) => otlp_error(e, enc),
                };
                with_cors(resp)
            },
        );
    let preflight = path.and(warp::options()).map(|| {
        let mut resp = Response::new(Default::default());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(CORS_ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        with_cors(resp)
    });
    post.or(preflight).unify().boxed()
}

fn with_state(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Arc<AppState>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

/// Browser exporters send no cookies (the key is a header), so any origin may post.
fn with_cors(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// The encoding of the request body, which the OTLP spec requires the response to use.
fn request_encoding(headers: &HeaderMap) -> Option<Encoding> {
    Encoding::from_content_type(headers.get(header::CONTENT_TYPE)?.to_str().ok()?)
}

/// Errors before the encoding is known (415) are written as JSON, which any client can read.
fn encoding_for_errors(headers: &HeaderMap) -> Encoding {
    request_encoding(headers).unwrap_or(Encoding::Json)
}

fn otlp_error(e: ApiError, enc: Encoding) -> Response {
    let body = encode_status(enc, e.grpc_code(), &e.public_message());
    e.into_response_with(body, enc.content_type())
}

async fn export<S, B>(state: &AppState, headers: &HeaderMap, body: S) -> Result<Response, ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: bytes::Buf,
{
    if state.ingest.is_closed() {
        return Err(ApiError::Unavailable {
            message: "server is shutting down".into(),
            retry_after_secs: state.config.retry_after_secs,
        });
    }
    let enc = request_encoding(headers).ok_or_else(|| {
        ApiError::UnsupportedMediaType(
            "Content-Type must be application/x-protobuf or application/json".into(),
        )
    })?;
    let content_encoding = crate::body::content_encoding(headers)?;
    let key = crate::auth::verify_api_key(state, headers).await?;
    let limit = state.config.body_bytes_max;
    let raw: Bytes = crate::body::read_capped(headers, body, limit).await?;
    let plain: Bytes = match content_encoding {
        crate::body::ContentEncoding::Identity => raw,
        crate::body::ContentEncoding::Gzip => crate::body::gunzip_capped(&raw, limit)?.into(),
    };
    let normalized = match enc {
        // Protobuf: one pass over the body, borrowing from it, no intermediate OTLP structs. Same
        // result as decode-then-normalize (held to it by differential tests and a fuzz target).
        Encoding::Protobuf => {
            let fast = decode_normalize_protobuf(&plain, &stamp(state, &key), &limits(state))
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            check_span_count(state, fast.span_count)?;
            fast.normalized
        }
        Encoding::Json => {
            let request = crate::otlp::decode(enc, &plain)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            check_span_count(state, span_count(&request))?;
            normalize(request, &stamp(state, &key), &limits(state))
        }
    };
    crate::auth::record_key_usage(state, &key.key_id, normalized.spans.len() as u64);

    if !normalized.spans.is_empty() {
        let ack = state.ingest.push(normalized.spans).map_err(|e| match e {
            PushError::Full => ApiError::TooManyRequests {
                message: "ingest queue is full; retry later".into(),
                retry_after_secs: state.config.retry_after_secs,
            },
            PushError::Closed => ApiError::Unavailable {
                message: "server is shutting down".into(),
                retry_after_secs: state.config.retry_after_secs,
            },
        })?;
        match ack.await {
            Ok(Ok(())) => {}
            // Storage failed (logged by the writer): nothing was acknowledged, so the exporter retries.
            Ok(Err(_)) | Err(_) => {
                return Err(ApiError::Unavailable {
                    message: "spans could not be stored; retry later".into(),
                    retry_after_secs: state.config.retry_after_secs,
                });
            }
        }
    }
    let body = encode_export_response(enc, normalized.rejected, &normalized.error_message);
    let mut resp = Response::new(body.into());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(enc.content_type()),
    );
    Ok(resp)
}

/// `spans_per_request_max` is enforced on the whole request (413), not span by span.
fn check_span_count(state: &AppState, count: usize) -> Result<(), ApiError> {
    if count > state.config.spans_per_request_max {
        return Err(ApiError::PayloadTooLarge(format!(
            "request carries {count} spans; the limit is {}",
            state.config.spans_per_request_max
        )));
    }
    Ok(())
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Organization, server and env come from the key alone; the accepted time window from retention.
fn stamp(state: &AppState, key: &crate::auth::KeyContext) -> Stamp {
    let now = now_unix_nano();
    let days = state.config.retention_days.min(key.retention_days);
    let retention_nanos = u64::from(days) * mcp_obs_storage::model::DAY_NANOS;
    Stamp {
        org_id: key.org_id,
        server_id: key.server_id,
        env: key.env,
        oldest_unix_nano: now.saturating_sub(retention_nanos),
        newest_unix_nano: now.saturating_add(state.config.future_skew_secs * 1_000_000_000),
    }
}

fn limits(state: &AppState) -> NormalizeLimits {
    let c = &state.config;
    NormalizeLimits {
        spans_per_request_max: c.spans_per_request_max,
        attributes_per_span_max: c.attributes_per_span_max,
        attribute_value_bytes_max: c.attribute_value_bytes_max,
        events_per_span_max: c.events_per_span_max,
        links_per_span_max: c.links_per_span_max,
    }
}
