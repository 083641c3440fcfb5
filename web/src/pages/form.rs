//! URL-encoded form bodies of the dashboard and their CSRF check (the same session token the JSON
//! API takes in `X-CSRF-Token`, here as the hidden field `csrf`).

use crate::auth::{self, Principal};
use crate::error::ApiError;

pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(bytes: &[u8]) -> Result<Form, ApiError> {
        serde_urlencoded::from_bytes(bytes)
            .map(Form)
            .map_err(|_| ApiError::BadRequest("malformed form".into()))
    }

    /// The first value of field `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    /// Field `k`, trimmed, or empty.
    pub fn text(&self, k: &str) -> String {
        self.get(k).unwrap_or_default().trim().to_string()
    }

    /// A checkbox: present means checked.
    pub fn checked(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    pub fn check_csrf(&self, p: &Principal) -> Result<(), ApiError> {
        auth::check_csrf_value(p, self.get("csrf").unwrap_or_default().as_bytes())
    }
}
