//! Maps dashboard paths to [`Page`]s. Pure string work, tested without HTTP; unknown paths under
//! `/orgs/`, `/tokens/` and `/account/` are `Page::Missing` (an HTML 404), other paths that are not pages
//! yield `None` and fall through to the final (JSON) 404.

use mcp_obs_storage::model::{ServerId, UserId};

/// A dashboard page or form target with its path parameters. The method is dispatched separately.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Page {
    Home,
    Login,
    Logout,
    Asset(String),
    Tokens,
    TokenRevoke(String),
    /// The signed-in user's account: the change-password form.
    Account,
    Overview(String),
    OrgAnalytics(String),
    Spans(String),
    Trace(String, String),
    Members(String),
    MemberRole(String, UserId),
    MemberRemove(String, UserId),
    NewServer(String),
    Servers(String),
    ServerAnalytics(String, ServerId),
    Settings(String, ServerId),
    Guide(String, ServerId),
    DeleteServer(String, ServerId),
    Keys(String, ServerId),
    NewKey(String, ServerId),
    RevokeKey(String, ServerId, String),
    /// A path under `/orgs/` or `/tokens/` that is no page (with the organization it names):
    /// answered with a 404 page, in the layout for a signed-in user, instead of the API's JSON.
    Missing(Option<String>),
}

/// Parses a request path (with its leading `/`). A trailing slash is tolerated.
pub fn parse(path: &str) -> Option<Page> {
    let path = path.strip_prefix('/')?;
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Some(Page::Home);
    }
    let seg: Vec<&str> = path.split('/').collect();
    if seg.iter().any(|s| s.is_empty()) {
        return None;
    }
    let page = known(&seg);
    match seg.as_slice() {
        ["orgs", o, ..] if page.is_none() => Some(Page::Missing(Some(o.to_string()))),
        ["orgs"] | ["tokens", ..] | ["account", ..] if page.is_none() => Some(Page::Missing(None)),
        _ => page,
    }
}

fn known(seg: &[&str]) -> Option<Page> {
    let id = |s: &str| s.parse::<u32>().ok();
    let t = |s: &str| s.to_string();
    Some(match seg {
        ["login"] => Page::Login,
        ["logout"] => Page::Logout,
        ["assets", name] => Page::Asset(t(name)),
        ["tokens"] => Page::Tokens,
        ["account"] => Page::Account,
        ["tokens", k, "revoke"] => Page::TokenRevoke(t(k)),
        ["orgs", o] => Page::Overview(t(o)),
        ["orgs", o, "analytics"] => Page::OrgAnalytics(t(o)),
        ["orgs", o, "spans"] => Page::Spans(t(o)),
        ["orgs", o, "traces", tr] => Page::Trace(t(o), t(tr)),
        ["orgs", o, "members"] => Page::Members(t(o)),
        ["orgs", o, "members", u, "role"] => Page::MemberRole(t(o), id(u)?),
        ["orgs", o, "members", u, "remove"] => Page::MemberRemove(t(o), id(u)?),
        ["orgs", o, "servers"] => Page::Servers(t(o)),
        ["orgs", o, "servers", "new"] => Page::NewServer(t(o)),
        ["orgs", o, "servers", s] => Page::ServerAnalytics(t(o), id(s)?),
        ["orgs", o, "servers", s, "settings"] => Page::Settings(t(o), id(s)?),
        ["orgs", o, "servers", s, "guide"] => Page::Guide(t(o), id(s)?),
        ["orgs", o, "servers", s, "delete"] => Page::DeleteServer(t(o), id(s)?),
        ["orgs", o, "servers", s, "keys"] => Page::Keys(t(o), id(s)?),
        ["orgs", o, "servers", s, "keys", "new"] => Page::NewKey(t(o), id(s)?),
        ["orgs", o, "servers", s, "keys", k, "revoke"] => Page::RevokeKey(t(o), id(s)?, t(k)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        assert_eq!(parse("/"), Some(Page::Home));
        assert_eq!(parse("/login"), Some(Page::Login));
        assert_eq!(parse("/account/"), Some(Page::Account));
        assert_eq!(parse("/orgs/acme/"), Some(Page::Overview("acme".into())));
        assert_eq!(
            parse("/orgs/acme/servers/new"),
            Some(Page::NewServer("acme".into()))
        );
        assert_eq!(
            parse("/orgs/acme/servers/3/keys/abcd1234/revoke"),
            Some(Page::RevokeKey("acme".into(), 3, "abcd1234".into()))
        );
        for other in [
            "",
            "/api/v1/session",
            "/v1/traces",
            "/healthz",
            "/orgs//spans",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
        for (missing, org) in [
            ("/orgs/acme/servers/x", Some("acme")),
            ("/orgs/acme/members/-1/role", Some("acme")),
            ("/orgs/acme/nothing", Some("acme")),
            ("/orgs", None),
            ("/tokens/a/b", None),
            ("/account/password", None),
        ] {
            assert_eq!(
                parse(missing),
                Some(Page::Missing(org.map(String::from))),
                "{missing}"
            );
        }
    }
}
