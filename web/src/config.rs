//! Settings of the HTTP layer: every limit it enforces, with its unit in the name.

use serde::{Deserialize, Serialize};

use crate::client_addr::TrustedProxies;

/// Limits and knobs of the web layer. Defaults are what `mcp-obs serve` uses without a config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Largest accepted request body, checked both on the wire and after gzip decompression.
    pub body_bytes_max: usize,
    /// Largest accepted JSON API request body.
    pub api_body_bytes_max: usize,
    /// Most spans one OTLP request may carry; larger requests get 413.
    pub spans_per_request_max: usize,
    /// Most attributes kept per span (and per event, link, resource); the rest are dropped and counted.
    pub attributes_per_span_max: usize,
    /// Longest attribute string/bytes value kept; longer values are truncated and marked.
    pub attribute_value_bytes_max: usize,
    /// Most events kept per span.
    pub events_per_span_max: usize,
    /// Most links kept per span.
    pub links_per_span_max: usize,
    /// Most OTLP requests waiting for the writer; beyond this ingest answers 429 with Retry-After.
    pub ingest_queue_requests_max: usize,
    /// Most spans waiting for the writer (bounds memory independently of request size).
    pub ingest_queue_spans_max: usize,
    /// Most spans the writer puts into one group commit.
    pub group_commit_spans_max: usize,
    /// `Retry-After` seconds sent with 429/503.
    pub retry_after_secs: u64,
    /// Most simultaneously open TCP connections; more wait in the accept backlog.
    pub connections_max: usize,
    /// How long a dashboard/API session lasts.
    pub session_ttl_secs: u64,
    /// Spans older than this many days are rejected at ingest (partial success).
    pub retention_days: u32,
    /// Spans starting more than this far in the future are rejected (clock skew allowance).
    pub future_skew_secs: u64,
    /// How often API key usage counts and last-used times are written to the metadata store.
    pub key_usage_flush_interval_ms: u64,
    /// Mark the session cookie `Secure` (set when served behind HTTPS).
    pub cookie_secure: bool,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` names the client for the
    /// login throttle; from any other peer the header is ignored. Empty by default.
    pub trusted_proxies: TrustedProxies,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            body_bytes_max: 20 * 1024 * 1024,
            api_body_bytes_max: 64 * 1024,
            spans_per_request_max: 10_000,
            attributes_per_span_max: 128,
            attribute_value_bytes_max: 8192,
            events_per_span_max: 128,
            links_per_span_max: 128,
            ingest_queue_requests_max: 256,
            ingest_queue_spans_max: 200_000,
            group_commit_spans_max: 50_000,
            retry_after_secs: 1,
            connections_max: 1024,
            session_ttl_secs: 7 * 24 * 3600,
            retention_days: 90,
            future_skew_secs: 3600,
            key_usage_flush_interval_ms: 5_000,
            cookie_secure: false,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}
