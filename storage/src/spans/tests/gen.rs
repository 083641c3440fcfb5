//! Random span generator for the span store tests (seeded, so failures reproduce).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::codec::value;
use crate::model::*;

pub const DAY0: u32 = 19_723; // 2024-01-01

pub struct Gen {
    rng: StdRng,
    days: u32,
    pub traces: Vec<[u8; 16]>,
}

const METHODS: [&str; 4] = ["tools/call", "resources/read", "prompts/get", "initialize"];
const TOOLS: [&str; 4] = ["search", "fetch", "ünïcode", ""];
const USERS: [&str; 3] = ["alice", "bob", "carol"];

impl Gen {
    pub fn new(seed: u64, days: u32) -> Gen {
        let mut rng = StdRng::seed_from_u64(seed);
        let traces = (0..8).map(|_| rng.gen()).collect();
        Gen { rng, days, traces }
    }

    fn pick<T: Clone>(&mut self, xs: &[T]) -> Option<T> {
        if self.rng.gen_bool(0.2) {
            return None;
        }
        Some(xs[self.rng.gen_range(0..xs.len())].clone())
    }

    fn attrs(&mut self) -> Vec<KeyValue> {
        let n = self.rng.gen_range(0..4);
        (0..n)
            .map(|i| {
                let value = match self.rng.gen_range(0..6) {
                    0 => AttrValue::Str(format!("v{}", self.rng.gen_range(0..5)).into()),
                    1 => AttrValue::Bool(self.rng.gen()),
                    2 => AttrValue::Int(self.rng.gen()),
                    3 => AttrValue::Double(f64::from_bits(self.rng.gen())),
                    4 => AttrValue::Bytes(vec![self.rng.gen(); 3]),
                    _ => AttrValue::Array(vec![AttrValue::Int(i), AttrValue::KvList(vec![])]),
                };
                KeyValue {
                    key: format!("k{i}").into(),
                    value,
                }
            })
            .collect()
    }

    pub fn span(&mut self) -> SpanRecord {
        let day = DAY0 + self.rng.gen_range(0..self.days);
        // Coarse start times make equal starts (tie-breaking) common.
        let start = u64::from(day) * DAY_NANOS + self.rng.gen_range(0..200u64) * 1_000_000_000;
        let org = self.rng.gen_range(1..=3u32);
        let trace_id = if self.rng.gen_bool(0.5) {
            self.traces[self.rng.gen_range(0..8)]
        } else {
            self.rng.gen()
        };
        let error_type = if self.rng.gen_bool(0.15) {
            // `_OTHER` literally, as well as errors without a type, land in analytics' `_OTHER`.
            self.pick(&["tool_error", "timeout", "_OTHER"])
                .map(Text::from)
        } else {
            None
        };
        let mcp = McpFields {
            method: self.pick(&METHODS).map(Text::from),
            tool: self.pick(&TOOLS).map(Text::from),
            user_id: self.pick(&USERS).map(Text::from),
            session_id: self.pick(&["s1", "s2"]).map(Text::from),
            request_id: Some(self.rng.gen_range(0..1000).to_string().into()),
            error_type,
            client_name: self.pick(&["claude-desktop", "cursor"]).map(Text::from),
            ..McpFields::default()
        };
        SpanRecord {
            org_id: org,
            server_id: org * 10 + self.rng.gen_range(0..3),
            env: if self.rng.gen_bool(0.3) {
                Env::Test
            } else {
                Env::Live
            },
            trace_id,
            span_id: self.rng.gen(),
            parent_span_id: if self.rng.gen_bool(0.5) {
                [0; 8]
            } else {
                self.rng.gen()
            },
            start_unix_nano: start,
            end_unix_nano: start + self.rng.gen_range(0..5_000_000_000u64),
            name: format!("span {}", self.rng.gen_range(0..4)).into(),
            kind: self.rng.gen_range(0..6),
            status_code: self.rng.gen_range(0..3),
            status_message: String::new(),
            flags: self.rng.gen_range(0..3),
            trace_state: String::new(),
            sample_probability: if self.rng.gen_bool(0.8) {
                1.0
            } else {
                f64::from_bits(self.rng.gen())
            },
            service_name: "svc".into(),
            mcp,
            attributes: self.attrs(),
            events: vec![SpanEvent {
                time_unix_nano: start,
                name: "e".into(),
                attributes: self.attrs(),
            }],
            links: Vec::new(),
            origin: SpanOrigin {
                resource: vec![],
                scope_name: format!("scope{}", org),
                scope_version: "1".into(),
            }
            .into(),
            dropped_attributes_count: 0,
            dropped_events_count: self.rng.gen_range(0..2),
            dropped_links_count: 0,
        }
    }
}

/// Bit-exact equality: f64s (which `==` gets wrong for NaN) are compared through their encodings.
pub fn eq_bits(a: &SpanRecord, b: &SpanRecord) -> bool {
    fn enc(s: &SpanRecord) -> Vec<u8> {
        let mut out = s.sample_probability.to_bits().to_le_bytes().to_vec();
        value::put_kvs(&mut out, &s.attributes);
        value::put_events(&mut out, &s.events);
        value::put_links(&mut out, &s.links);
        value::put_origin(&mut out, &s.origin);
        out
    }
    fn rest(s: &SpanRecord) -> SpanRecord {
        SpanRecord {
            sample_probability: 0.0,
            attributes: vec![],
            events: vec![],
            links: vec![],
            origin: Default::default(),
            ..s.clone()
        }
    }
    enc(a) == enc(b) && rest(a) == rest(b)
}
