//! JSON request bodies of the accounts API: `Content-Type: application/json` (else 415), at most
//! `api_body_bytes_max` bytes whether or not a `Content-Length` is sent (else 413, checked while
//! streaming so a chunked body is never buffered past the cap), valid JSON of the expected shape
//! (else 400).

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use warp::http::{header, HeaderMap};

use crate::error::ApiError;

/// The request body as warp streams it, boxed so handlers need no generic parameters.
pub type BodyStream = BoxStream<'static, Result<Bytes, warp::Error>>;

fn too_large(max: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("request body is larger than {max} bytes"))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads at most `max` bytes of `body`, failing as soon as more arrive.
pub async fn read_capped(
    headers: &HeaderMap,
    mut body: BodyStream,
    max: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large(max));
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("could not read body: {e}")))?;
        if buf.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads and decodes a JSON body of type `T`.
pub async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: BodyStream,
    max: usize,
) -> Result<T, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType(
            "request body must be JSON with Content-Type: application/json".into(),
        ));
    }
    let bytes = read_capped(headers, body, max).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn chunks(parts: &[&'static str]) -> BodyStream {
        let items: Vec<Result<Bytes, warp::Error>> = parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p.as_bytes())))
            .collect();
        futures_util::stream::iter(items).boxed()
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h
    }

    #[tokio::test]
    async fn chunked_bodies_are_capped_without_content_length() {
        let h = json_headers();
        let ok: serde_json::Value = read_json(&h, chunks(&["{\"a\":", "1}"]), 7).await.unwrap();
        assert_eq!(ok["a"], 1);
        let err = read_json::<serde_json::Value>(&h, chunks(&["{\"a\":", "12}"]), 7).await;
        assert!(matches!(err, Err(ApiError::PayloadTooLarge(_))));
    }

    #[tokio::test]
    async fn content_type_and_syntax() {
        let err = read_json::<serde_json::Value>(&HeaderMap::new(), chunks(&["{}"]), 100).await;
        assert!(matches!(err, Err(ApiError::UnsupportedMediaType(_))));
        let err = read_json::<serde_json::Value>(&json_headers(), chunks(&["{"]), 100).await;
        assert!(matches!(err, Err(ApiError::BadRequest(_))));
        let mut h = json_headers();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("101"));
        let err = read_json::<serde_json::Value>(&h, chunks(&["{}"]), 100).await;
        assert!(matches!(err, Err(ApiError::PayloadTooLarge(_))));
    }
}
