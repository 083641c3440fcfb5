//! The page shell every dashboard page shares (head with the embedded assets, header with the
//! organization switcher, navigation and sign-out form) and small formatting helpers.

use maud::{html, Markup, DOCTYPE};
use mcp_obs_storage::meta::{Org, Role};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::assets;

/// The strict policy every page is served with: no inline script or style, nothing from elsewhere.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Which navigation entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Analytics,
    Spans,
    Members,
    Tokens,
    Account,
    None,
}

/// What the header needs to know about the signed-in user.
pub struct Chrome<'a> {
    pub username: &'a str,
    pub csrf: &'a str,
    pub orgs: &'a [(Org, Role)],
    /// The organization the page belongs to, if any.
    pub org: Option<&'a str>,
    pub nav: Nav,
}

/// A full page for a signed-in user.
pub fn page(chrome: &Chrome<'_>, title: &str, body: Markup) -> Response {
    let current = chrome
        .org
        .and_then(|slug| chrome.orgs.iter().find(|(o, _)| o.slug == slug));
    let nav_link = |nav: Nav, href: String, label: &str| {
        html! {
            @if chrome.nav == nav {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    };
    let header = html! {
        header.top {
            a.brand href="/" { "mcp-obs" }
            @if chrome.orgs.len() > 1 || current.is_none() {
                details.switcher {
                    summary { "Organization: " strong { (current.map_or("choose", |(o, _)| o.name.as_str())) } }
                    ul {
                        @for (o, role) in chrome.orgs {
                            li { a href={ "/orgs/" (o.slug) } { (o.name) " " span.muted { "(" (role.as_str()) ")" } } }
                        }
                    }
                }
            } @else if let Some((o, _)) = current {
                span.org-name { (o.name) }
            }
            nav aria-label="Main" {
                @if let Some(slug) = chrome.org {
                    (nav_link(Nav::Overview, format!("/orgs/{slug}"), "Servers"))
                    (nav_link(Nav::Analytics, format!("/orgs/{slug}/analytics"), "Analytics"))
                    (nav_link(Nav::Spans, format!("/orgs/{slug}/spans"), "Spans"))
                    (nav_link(Nav::Members, format!("/orgs/{slug}/members"), "Members"))
                }
                (nav_link(Nav::Tokens, "/tokens".into(), "Tokens"))
            }
            form.signout method="post" action="/logout" {
                input type="hidden" name="csrf" value=(chrome.csrf);
                @if chrome.nav == Nav::Account {
                    a.account href="/account" aria-current="page" title="Account and password" { (chrome.username) }
                } @else {
                    a.account href="/account" title="Account and password" { (chrome.username) }
                }
                button.link type="submit" { "Sign out" }
            }
        }
    };
    document(title, html! { (header) main id="main" { (body) } })
}

/// A page without the signed-in header (sign in, errors).
pub fn bare(title: &str, body: Markup) -> Response {
    document(
        title,
        html! {
            header.top { a.brand href="/" { "mcp-obs" } }
            main id="main" { (body) }
        },
    )
}

fn document(title: &str, content: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · mcp-obs" }
                link rel="stylesheet" href=(assets::css_url());
                script src=(assets::js_url()) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                (content)
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut r = Response::new(markup.into_string().into());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}

/// 303 See Other to `target` (a path of ours): the POST-redirect-GET step.
pub fn redirect(target: &str) -> Response {
    let mut r = Response::new(Vec::new().into());
    *r.status_mut() = StatusCode::SEE_OTHER;
    let value = HeaderValue::from_str(target).unwrap_or(HeaderValue::from_static("/"));
    r.headers_mut().insert(header::LOCATION, value);
    r
}

/// `k=v&...`, URL-encoded, skipping empty values (so links stay short and filters stay unset).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .copied()
        .collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// Milliseconds for people: `0.42 ms`, `12.3 ms`, `1.24 s`.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

pub fn fmt_opt_ns(nanos: Option<u64>) -> String {
    nanos.map_or_else(|| "–".into(), |n| fmt_ms(n as f64 / 1e6))
}

/// Weighted counts are estimates: show whole numbers, thousands separated.
pub fn fmt_count(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn fmt_pct(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC` (the appliance shows UTC everywhere, as the
/// API does, so a time on screen matches one in a query).
pub fn fmt_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = mcp_obs_storage::spans::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A `<time>` element for unix milliseconds.
pub fn time(ms: u64) -> Markup {
    html! { time datetime=(ms) { (fmt_time(ms)) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_time(1_764_158_400_000), "2025-11-26 12:00:00 UTC");
        assert_eq!(fmt_count(1_234_567.4), "1,234,567");
        assert_eq!(fmt_count(12.0), "12");
        assert_eq!(fmt_ms(0.421), "0.42 ms");
        assert_eq!(fmt_ms(1240.0), "1.24 s");
        assert_eq!(fmt_pct(0.1083), "10.8%");
        assert_eq!(query(&[("a", "x y"), ("b", "")]), "a=x+y");
    }
}
