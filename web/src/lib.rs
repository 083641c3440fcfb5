//! mcp-obs web layer: OTLP/HTTP ingest, the JSON API, authentication and the dashboard.
//! It reaches storage only through the `mcp-obs-storage` public API, never through redb tables.

pub mod analytics;
pub mod api;
pub mod auth;
pub mod body;
pub mod client_addr;
pub mod config;
pub mod error;
pub mod export;
pub mod ingest;
pub mod otlp;
pub mod pages;
pub mod reads;
pub mod server;
pub mod span_json;
pub mod state;

pub use config::WebConfig;
pub use error::{ApiError, ApiResult};
