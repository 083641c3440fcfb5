//! The integration tests: every test starts the real `mcp-obs` binary on 127.0.0.1:0 with its own
//! data directory and talks HTTP to it, exactly as an exporter, a user or an operator would.

#[path = "../common/gen.rs"]
mod gen;
mod harness;

mod analytics;
mod crash;
mod export;
mod ingest;
mod lifecycle;
mod otlp_json;
mod retention;
mod search;
mod tenancy;
