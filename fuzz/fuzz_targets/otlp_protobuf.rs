//! Fuzz target: `otlp_protobuf` (see `mcp_obs_fuzz::otlp_protobuf`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_obs_fuzz::otlp_protobuf(data));
