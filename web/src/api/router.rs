//! Maps `/api/v1/...` paths to [`Route`]s. Pure string work, so it is tested without HTTP.
//! Paths that are not ours yield `None` and the request falls through to other route groups
//! (span reads, the final 404).

use mcp_obs_storage::model::{ServerId, UserId};

/// An accounts API resource with its path parameters. The HTTP method is dispatched separately.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Session,
    /// `session/password`: the signed-in user's password.
    Password,
    Tokens,
    Token(String),
    Users,
    Orgs,
    Org(String),
    Members(String),
    Member(String, UserId),
    Servers(String),
    Server(String, ServerId),
    Keys(String, ServerId),
    Key(String, ServerId, String),
}

/// Parses the path after `/api/v1/`. A trailing slash is tolerated.
pub fn parse(tail: &str) -> Option<Route> {
    let tail = tail.strip_suffix('/').unwrap_or(tail);
    let seg: Vec<&str> = tail.split('/').collect();
    if seg.iter().any(|s| s.is_empty()) {
        return None;
    }
    let id = |s: &str| s.parse::<u32>().ok();
    let text = |s: &str| s.to_string();
    Some(match seg.as_slice() {
        ["session"] => Route::Session,
        ["session", "password"] => Route::Password,
        ["tokens"] => Route::Tokens,
        ["tokens", t] => Route::Token(text(t)),
        ["users"] => Route::Users,
        ["orgs"] => Route::Orgs,
        ["orgs", o] => Route::Org(text(o)),
        ["orgs", o, "members"] => Route::Members(text(o)),
        ["orgs", o, "members", u] => Route::Member(text(o), id(u)?),
        ["orgs", o, "servers"] => Route::Servers(text(o)),
        ["orgs", o, "servers", s] => Route::Server(text(o), id(s)?),
        ["orgs", o, "servers", s, "keys"] => Route::Keys(text(o), id(s)?),
        ["orgs", o, "servers", s, "keys", k] => Route::Key(text(o), id(s)?, text(k)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse("session"), Some(Route::Session));
        assert_eq!(parse("session/password"), Some(Route::Password));
        assert_eq!(parse("orgs/"), Some(Route::Orgs));
        assert_eq!(parse("orgs/acme"), Some(Route::Org("acme".into())));
        assert_eq!(
            parse("orgs/acme/members/7"),
            Some(Route::Member("acme".into(), 7))
        );
        assert_eq!(
            parse("orgs/acme/servers/3/keys/abcdEFGH"),
            Some(Route::Key("acme".into(), 3, "abcdEFGH".into()))
        );
        for other in [
            "",
            "orgs//servers",
            "orgs/acme/servers/x",
            "orgs/acme/spans",
            "orgs/acme/traces/00ff",
            "orgs/acme/members/-1",
            "nope",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }
}
