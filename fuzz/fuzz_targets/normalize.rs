//! Fuzz target: `normalize` (see `mcp_obs_fuzz::normalize_protobuf`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_obs_fuzz::normalize_protobuf(data));
