//! Fuzz target: `otlp_protobuf_fast` (see `mcp_obs_fuzz::otlp_protobuf_fast`): differential, the
//! one-pass protobuf ingest path against decode + normalize; panics on any difference.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_obs_fuzz::otlp_protobuf_fast(data));
