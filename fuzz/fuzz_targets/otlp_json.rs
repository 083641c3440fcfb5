//! Fuzz target: `otlp_json` (see `mcp_obs_fuzz::otlp_json`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_obs_fuzz::otlp_json(data));
