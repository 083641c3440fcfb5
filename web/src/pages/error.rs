//! `PageError`: how a dashboard request fails, and the one place it becomes a response (a
//! redirect to sign in, or a readable HTML error page; never a stack trace or internal detail).

use maud::html;
use thiserror::Error;
use warp::reply::Response;

use super::layout;
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
    pub fn into_response(self) -> Response {
        match self {
            PageError::SignIn { next } => {
                let target = format!("/login?{}", layout::query(&[("next", &next)]));
                layout::redirect(&target)
            }
            PageError::Api(e) => {
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
                let mut r = layout::bare(title, body);
                *r.status_mut() = status;
                r
            }
        }
    }
}
