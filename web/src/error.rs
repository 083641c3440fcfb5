//! The one place where errors become HTTP status codes and response bodies.
//!
//! Every handler returns `Result<Response, ApiError>`; [`ApiError::status`] decides the status code,
//! [`ApiError::into_json_response`] renders the JSON API body, and the ingest module renders the same
//! error as a `google.rpc.Status` for OTLP clients.

use mcp_obs_storage::search::QueryError;
use mcp_obs_storage::StorageError;
use thiserror::Error;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

/// Everything a request can fail with. The `Display` text is safe to show to the caller: it never
/// contains secrets or internal paths.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Back-pressure: the client should retry after the given number of seconds.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// The service is shutting down or not ready; retry later.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// A failure of ours. The message is logged, the client sees a generic text.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short machine-readable code for the JSON API body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The gRPC status code that `google.rpc.Status` bodies carry for this error.
    pub fn grpc_code(&self) -> i32 {
        match self {
            ApiError::BadRequest(_) => 3,           // INVALID_ARGUMENT
            ApiError::Unauthorized(_) => 16,        // UNAUTHENTICATED
            ApiError::Forbidden(_) => 7,            // PERMISSION_DENIED
            ApiError::NotFound(_) => 5,             // NOT_FOUND
            ApiError::Conflict(_) => 6,             // ALREADY_EXISTS
            ApiError::PayloadTooLarge(_) => 8,      // RESOURCE_EXHAUSTED
            ApiError::UnsupportedMediaType(_) => 3, // INVALID_ARGUMENT
            ApiError::MethodNotAllowed(_) => 12,    // UNIMPLEMENTED
            ApiError::TooManyRequests { .. } => 8,  // RESOURCE_EXHAUSTED
            ApiError::Unavailable { .. } => 14,     // UNAVAILABLE
            ApiError::Internal(_) => 13,            // INTERNAL
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::TooManyRequests {
                retry_after_secs, ..
            }
            | ApiError::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// Text for the client. Internal errors are logged here, once, and hidden from the caller.
    pub fn public_message(&self) -> String {
        if let ApiError::Internal(detail) = self {
            tracing::error!(error = %detail, "internal error");
        }
        self.to_string()
    }

    /// Renders the error with `body` and `content_type`, adding `Retry-After` when relevant.
    pub fn into_response_with(self, body: Vec<u8>, content_type: &'static str) -> Response {
        let mut resp = Response::new(body.into());
        *resp.status_mut() = self.status();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// `{"error": {"code": "...", "message": "..."}}` for the JSON API.
    pub fn into_json_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.public_message() }
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        self.into_response_with(bytes, "application/json")
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            StorageError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StorageError::Invalid(why) => ApiError::BadRequest(why),
            StorageError::Query(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        // Every query error is the caller's: too long, too many words, nothing searchable.
        ApiError::BadRequest(e.to_string())
    }
}

/// Shorthand for handler results.
pub type ApiResult<T = Response> = Result<T, ApiError>;
