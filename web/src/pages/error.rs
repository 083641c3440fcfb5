//! `PageError`: how a dashboard request fails, and the one place it becomes a response (a
//! redirect to sign in, or a readable HTML error page, inside the layout for signed-in users;
//! never a stack trace or internal detail).

use maud::{html, Markup};
use thiserror::Error;
use warp::http::StatusCode;
use warp::reply::Response;

use super::layout::{self, Nav};
use super::Ctx;
use crate::error::ApiError;

#[derive(Debug, Error)]
pub enum PageError {
    /// Not signed in (or the session ended): the browser goes to the sign-in page, then back.
    #[error("sign in required")]
    SignIn { next: String },
    /// Any failure of the shared operations: its status and public message are shown.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<mcp_obs_storage::StorageError> for PageError {
    fn from(e: mcp_obs_storage::StorageError) -> Self {
        PageError::Api(e.into())
    }
}

pub type PageResult<T = Response> = Result<T, PageError>;

impl PageError {
    /// The response for a request with no signed-in user (or before one is known): a redirect to
    /// sign in, or the error page without the navigation header.
    pub fn into_response(self) -> Response {
        match self {
            PageError::SignIn { next } => {
                let target = format!("/login?{}", layout::query(&[("next", &next)]));
                layout::redirect(&target)
            }
            PageError::Api(e) => {
                let (status, title, body) = error_body(&e);
                let mut r = layout::bare(title, body);
                *r.status_mut() = status;
                r
            }
        }
    }

    /// The response for a signed-in user: error pages inside the layout, with the navigation
    /// header; `org` is the organization the path named, kept in the header only when the user
    /// belongs to it (a non-member's 404 must look like a missing organization's).
    pub(crate) fn into_page(self, ctx: &Ctx<'_>, org: Option<&str>) -> Response {
        match self {
            PageError::Api(e) => {
                let (status, title, body) = error_body(&e);
                let org = org.filter(|slug| ctx.orgs.iter().any(|(o, _)| o.slug == *slug));
                let mut r = ctx.page(org, Nav::None, title, body);
                *r.status_mut() = status;
                r
            }
            other => other.into_response(),
        }
    }
}

/// Status, title and body of an error page: the status and the API's public message only
/// (internal details are logged by `public_message`, never shown).
fn error_body(e: &ApiError) -> (StatusCode, &'static str, Markup) {
    let status = e.status();
    let message = e.public_message();
    let title = status.canonical_reason().unwrap_or("Error");
    let body = html! {
        section.card.error-page {
            h1 { (status.as_u16()) " " (title) }
            p role="alert" { (message) }
            p { a href="/" { "Back to the dashboard" } }
        }
    };
    (status, title, body)
}
