//! Reading request bodies under a byte limit, chunked or not, and gzip decompression under the same
//! limit, so no request can make us hold more than `body_bytes_max` bytes.

use std::io::Read;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::http::{header, HeaderMap};

use crate::error::ApiError;

/// How much of an over-limit body we read and discard, as a multiple of the limit, so the client has
/// finished sending when the 413 arrives and can read it (closing mid-upload gives the client a
/// broken pipe instead of a status). Bodies beyond this are cut off.
const DRAIN_FACTOR: u64 = 4;

/// Reads the whole body, failing with 413 once it exceeds `max_bytes`; nothing past the limit is
/// kept in memory. A declared `Content-Length` far over the limit is refused without reading.
pub async fn read_capped<S, B>(
    headers: &HeaderMap,
    body: S,
    max_bytes: usize,
) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let drain_max = (max_bytes as u64).saturating_mul(DRAIN_FACTOR);
    if declared.is_some_and(|len| len > drain_max) {
        return Err(too_large(max_bytes));
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(max_bytes as u64) as usize);
    let mut seen: u64 = 0;
    let mut body = body;
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("could not read request body: {e}")))?;
        seen += chunk.remaining() as u64;
        if seen > max_bytes as u64 {
            // Over the limit: stop keeping bytes, keep draining up to drain_max.
            buf.clear();
            if seen > drain_max {
                break;
            }
            chunk.advance(chunk.remaining());
            continue;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    if seen > max_bytes as u64 {
        return Err(too_large(max_bytes));
    }
    Ok(buf.freeze())
}

/// Content encodings we accept on OTLP requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
}

/// Parses `Content-Encoding`; anything but gzip/identity is 415, as the OTLP spec leaves only gzip.
pub fn content_encoding(headers: &HeaderMap) -> Result<ContentEncoding, ApiError> {
    match headers.get(header::CONTENT_ENCODING) {
        None => Ok(ContentEncoding::Identity),
        Some(v) => match v.to_str().map(|s| s.trim().to_ascii_lowercase()) {
            Ok(s) if s.is_empty() || s == "identity" => Ok(ContentEncoding::Identity),
            Ok(s) if s == "gzip" || s == "x-gzip" => Ok(ContentEncoding::Gzip),
            _ => Err(ApiError::UnsupportedMediaType(
                "unsupported Content-Encoding: only gzip or none is accepted".into(),
            )),
        },
    }
}

/// Decompresses gzip into at most `max_bytes`; a larger result is 413, a broken stream is 400.
pub fn gunzip_capped(data: &[u8], max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    let decoder = flate2::read::MultiGzDecoder::new(data);
    // Reading one byte past the limit tells "exactly at the limit" from "over it".
    let mut limited = decoder.take(max_bytes as u64 + 1);
    let mut out = Vec::with_capacity((data.len() * 4).min(max_bytes));
    limited
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest(format!("invalid gzip body: {e}")))?;
    if out.len() > max_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "decompressed body exceeds the limit of {max_bytes} bytes"
        )));
    }
    Ok(out)
}

fn too_large(max_bytes: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "request body exceeds the limit of {max_bytes} bytes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_at_and_over_limit() {
        let data = vec![7u8; 1000];
        assert_eq!(gunzip_capped(&gz(&data), 1000).unwrap(), data);
        assert!(matches!(
            gunzip_capped(&gz(&data), 999),
            Err(ApiError::PayloadTooLarge(_))
        ));
        assert!(matches!(
            gunzip_capped(b"not gzip", 999),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn chunked_body_over_limit_is_413() {
        let chunks: Vec<Result<Bytes, warp::Error>> = vec![
            Ok(Bytes::from(vec![1u8; 600])),
            Ok(Bytes::from(vec![1u8; 600])),
        ];
        let r = read_capped(&HeaderMap::new(), futures_util::stream::iter(chunks), 1000).await;
        assert!(matches!(r, Err(ApiError::PayloadTooLarge(_))));
        let chunks: Vec<Result<Bytes, warp::Error>> = vec![Ok(Bytes::from(vec![1u8; 600]))];
        let r = read_capped(&HeaderMap::new(), futures_util::stream::iter(chunks), 1000).await;
        assert_eq!(r.unwrap().len(), 600);
    }
}
