//! The dashboard's embedded static files (one stylesheet, one script): compiled into the binary,
//! served under content-hashed names with a one-year immutable cache, so nothing is fetched from
//! elsewhere and a new build never serves a stale file.

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

pub const CSS: &str = include_str!("assets/app.css");
pub const JS: &str = include_str!("assets/app.js");

/// All scripts and styles together must stay within this budget (uncompressed), per the issue.
pub const ASSET_BYTES_MAX: usize = 150 * 1024;

/// Bytes of every script and style the dashboard serves (uncompressed).
pub const fn asset_bytes() -> usize {
    CSS.len() + JS.len()
}

/// FNV-1a, 64-bit: enough to tell builds' files apart in a URL (not a security property).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

const CSS_HASH: u64 = fnv1a(CSS.as_bytes());
const JS_HASH: u64 = fnv1a(JS.as_bytes());

/// `/assets/app-<hash>.css`.
pub fn css_url() -> String {
    format!("/assets/app-{CSS_HASH:016x}.css")
}

/// `/assets/app-<hash>.js`.
pub fn js_url() -> String {
    format!("/assets/app-{JS_HASH:016x}.js")
}

/// The file named `name` (as in the URLs above), or `None`.
pub fn serve(name: &str) -> Option<Response> {
    let (body, content_type) = if name == css_url().trim_start_matches("/assets/") {
        (CSS, "text/css; charset=utf-8")
    } else if name == js_url().trim_start_matches("/assets/") {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return None;
    };
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_fit_the_budget_and_are_served_by_hash() {
        let total = asset_bytes();
        assert!(total <= ASSET_BYTES_MAX, "{total} bytes of assets");
        assert!(serve(css_url().trim_start_matches("/assets/")).is_some());
        assert!(serve(js_url().trim_start_matches("/assets/")).is_some());
        assert!(serve("app.css").is_none());
    }
}
