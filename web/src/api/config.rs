//! `GET /v1/config`: the remote settings SDKs poll with their API key. Answers even when
//! telemetry is disabled (that is the setting SDKs most need to learn).

use serde_json::json;
use warp::http::HeaderMap;

use super::views;
use crate::auth::resolve_api_key;
use crate::error::ApiResult;
use crate::state::AppState;

/// How often SDKs should re-fetch their settings.
pub const REFRESH_INTERVAL_SECS: u64 = 60;

pub async fn get(state: &AppState, headers: &HeaderMap) -> ApiResult {
    let (key, telemetry_enabled) = resolve_api_key(state, headers).await?;
    Ok(views::ok(json!({
        "server_id": key.server_id,
        "env": key.env.as_str(),
        "telemetry_enabled": telemetry_enabled,
        "sampling_rate": key.sampling_rate,
        "capture_arguments": key.capture_arguments,
        "refresh_interval_secs": REFRESH_INTERVAL_SECS,
    })))
}
