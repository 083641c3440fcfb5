//! Attribute lookup and consumption over borrowed key-values (see `otlp::attrs`), and the value and
//! count limits applied while copying them into storage values (see `otlp::limits::Clamp`).

use super::super::canonical::{TRACELOOP_ENTITY_NAME, TRACELOOP_SPAN_KIND};
use super::super::limits::{truncate_text, utf8_cut};
use super::super::normalize::{NormalizeLimits, TRUNCATED_KEY};
use super::super::sampling::SAMPLE_PROBABILITY_KEY;
use super::messages::{Kv, Val};
use super::span::{over_limit, Fields};
use compact_str::ToCompactString;
use mcp_obs_storage::model::{AttrValue, KeyValue, McpFields, Text};

// --- attribute lookup and consumption (see `attrs`) ---

/// Ids of the attribute keys that normalization looks up: the index into [`KEYS`].
pub(super) mod key {
    pub const METHOD: u8 = 0;
    pub const OPERATION_TYPE: u8 = 1;
    pub const GEN_AI_TOOL: u8 = 2;
    pub const MCP_TOOL: u8 = 3;
    pub const ENTITY_NAME: u8 = 4;
    pub const SPAN_KIND: u8 = 5;
    pub const GEN_AI_PROMPT: u8 = 6;
    pub const MCP_PROMPT: u8 = 7;
    pub const RESOURCE_URI: u8 = 8;
    pub const JSONRPC_ID: u8 = 9;
    pub const MCP_REQUEST_ID: u8 = 10;
    pub const SESSION: u8 = 11;
    pub const ENDUSER: u8 = 12;
    pub const USER: u8 = 13;
    pub const MCP_USER: u8 = 14;
    pub const CLIENT_NAME: u8 = 15;
    pub const CLIENT_VERSION: u8 = 16;
    pub const ERROR_TYPE: u8 = 17;
    pub const IS_ERROR: u8 = 18;
    pub const NET_TRANSPORT: u8 = 19;
    pub const MCP_TRANSPORT: u8 = 20;
    pub const PROTOCOL: u8 = 21;
    pub const SAMPLE: u8 = 22;
    pub const TRUNCATED: u8 = 23;
    pub const SERVICE_NAME: u8 = 24;
    /// Any other key.
    pub const OTHER: u8 = u8::MAX;
}

/// Every key normalization looks up by name. An attribute's key is matched against these once,
/// when it is read; lookups then compare ids, and skip a key no attribute carries.
pub(super) const KEYS: [&str; 25] = [
    "mcp.method.name",
    "mcp.operation.type",
    "gen_ai.tool.name",
    "mcp.tool.name",
    TRACELOOP_ENTITY_NAME,
    TRACELOOP_SPAN_KIND,
    "gen_ai.prompt.name",
    "mcp.prompt.name",
    "mcp.resource.uri",
    "jsonrpc.request.id",
    "mcp.request.id",
    "mcp.session.id",
    "enduser.id",
    "user.id",
    "mcp.user.id",
    "mcp.client.name",
    "mcp.client.version",
    "error.type",
    "mcp.tool.result.is_error",
    "network.transport",
    "mcp.transport",
    "mcp.protocol.version",
    SAMPLE_PROBABILITY_KEY,
    TRUNCATED_KEY,
    "service.name",
];

// Ids index a `u32` set.
const _: () = assert!(KEYS.len() <= 32);

/// Keys are shorter than this: the width of [`KEY_LENGTHS`].
const KEY_BYTES_LIMIT: usize = 32;

/// Bit `n` set: some key in [`KEYS`] is `n` bytes long.
const KEY_LENGTHS: u32 = {
    let mut set = 0u32;
    let mut i = 0;
    while i < KEYS.len() {
        assert!(KEYS[i].len() < KEY_BYTES_LIMIT);
        set |= 1 << KEYS[i].len();
        i += 1;
    }
    set
};

/// Slots of [`KEY_TABLE`]: a power of two well above the number of keys, so probes are short.
const KEY_SLOTS: usize = 64;

/// Where a key's probe starts: from its length and two of its bytes, which tell the keys apart
/// with no collision today (the table still probes linearly, so a new key only costs a step).
const fn key_slot(b: &[u8]) -> usize {
    let n = b.len();
    (n * 13 + b[n - 1] as usize + b[n / 2] as usize * 15) % KEY_SLOTS
}

/// Open-addressing table of [`KEYS`] ids by [`key_slot`]; `key::OTHER` marks an empty slot.
const KEY_TABLE: [u8; KEY_SLOTS] = {
    let mut table = [key::OTHER; KEY_SLOTS];
    let mut id = 0;
    while id < KEYS.len() {
        let mut slot = key_slot(KEYS[id].as_bytes());
        while table[slot] != key::OTHER {
            slot = (slot + 1) % KEY_SLOTS;
        }
        table[slot] = id as u8;
        id += 1;
    }
    table
};

/// The id of the key spelled by `b`, and the key as a `'static` string, so a known key needs no
/// UTF-8 check of its own bytes. `None`: any other key.
///
/// Why a table: a linear scan over [`KEYS`] compared about 20 keys per span with `memcmp`, over
/// a thousand instructions per span (docs/benchmarks.md).
#[inline]
pub(super) fn key_id(b: &[u8]) -> Option<(u8, &'static str)> {
    if b.is_empty() || b.len() >= KEY_BYTES_LIMIT || KEY_LENGTHS & (1 << b.len()) == 0 {
        return None;
    }
    let mut slot = key_slot(b);
    loop {
        let id = KEY_TABLE[slot];
        if id == key::OTHER {
            return None;
        }
        let k = KEYS[id as usize];
        if k.as_bytes() == b {
            return Some((id, k));
        }
        slot = (slot + 1) % KEY_SLOTS;
    }
}

/// A span's (or resource's) attributes, with the set of looked-up keys present among them.
pub(super) struct Attrs<'v, 'a> {
    pub(super) kvs: &'v mut Vec<Kv<'a>>,
    pub(super) present: u32,
}

impl<'v, 'a> Attrs<'v, 'a> {
    pub(super) fn new(kvs: &'v mut Vec<Kv<'a>>) -> Self {
        let present = kvs
            .iter()
            .filter(|kv| kv.id != key::OTHER)
            .fold(0u32, |set, kv| set | 1 << kv.id);
        Attrs { kvs, present }
    }

    pub(super) fn has(&self, id: u8) -> bool {
        self.present & (1 << id) != 0
    }

    pub(super) fn remove_all(&mut self, id: u8) {
        if self.has(id) {
            self.kvs.retain(|kv| kv.id != id);
        }
    }

    pub(super) fn peek_str(&self, id: u8) -> Option<&'a str> {
        if !self.has(id) {
            return None;
        }
        self.kvs
            .iter()
            .filter(|kv| kv.id == id)
            .find_map(|kv| match kv.value {
                Some(Val::Str(s)) if !s.is_empty() => Some(s),
                _ => None,
            })
    }

    /// The first attribute under `id` whose value `read` accepts, removed.
    pub(super) fn take_if<T>(
        &mut self,
        id: u8,
        mut read: impl FnMut(&Val<'a>) -> Option<T>,
    ) -> Option<T> {
        if !self.has(id) {
            return None;
        }
        let (index, value) = self
            .kvs
            .iter()
            .enumerate()
            .filter(|(_, kv)| kv.id == id)
            .find_map(|(i, kv)| kv.value.as_ref().and_then(&mut read).map(|v| (i, v)))?;
        super::messages::discard(self.kvs.remove(index).value);
        Some(value)
    }

    pub(super) fn take_str(&mut self, id: u8) -> Option<&'a str> {
        self.take_if(id, |v| match *v {
            Val::Str(s) if !s.is_empty() => Some(s),
            _ => None,
        })
    }

    pub(super) fn take_scalar(&mut self, id: u8) -> Option<Text> {
        self.take_if(id, scalar_string)
    }

    pub(super) fn take_first_str(&mut self, ids: &[u8]) -> Option<&'a str> {
        ids.iter().find_map(|id| self.take_str(*id))
    }

    pub(super) fn take_first_scalar(&mut self, ids: &[u8]) -> Option<Text> {
        ids.iter().find_map(|id| self.take_scalar(*id))
    }
}

pub(super) fn scalar_string(v: &Val<'_>) -> Option<Text> {
    match *v {
        Val::Str(s) if !s.is_empty() => Some(Text::from(s)),
        // Integers through itoa, as `to_string` would spell them; doubles through `Display`, whose
        // spelling (no exponent) is the one stored so far.
        Val::Int(i) => Some(i.to_compact_string()),
        Val::Double(d) if d.is_finite() => Some(Text::from(d.to_string())),
        Val::Bool(b) => Some(Text::const_new(if b { "true" } else { "false" })),
        Val::Bytes(b) if !b.is_empty() => Some(Text::from(hex::encode(b))),
        _ => None,
    }
}

// --- limits (see `limits::Clamp`) ---

pub(super) struct Clamp {
    pub(super) value_bytes_max: usize,
    pub(super) items_max: usize,
    pub(super) truncated: u64,
}

impl Clamp {
    pub(super) fn new(limits: &NormalizeLimits) -> Clamp {
        Clamp {
            value_bytes_max: limits.attribute_value_bytes_max,
            items_max: limits.attributes_per_span_max,
            truncated: 0,
        }
    }

    /// Copies at most `value_bytes_max` bytes of `s`, cut at a character boundary.
    pub(super) fn str(&mut self, s: &str) -> String {
        self.cut(s).to_owned()
    }

    /// `s` shortened to the value limit (counted when it is).
    fn cut<'s>(&mut self, s: &'s str) -> &'s str {
        match utf8_cut(s, self.value_bytes_max) {
            None => s,
            Some(cut) => {
                self.truncated += 1;
                &s[..cut]
            }
        }
    }

    /// [`Clamp::str`] into an inline-when-short [`Text`].
    pub(super) fn text(&mut self, s: &str) -> Text {
        Text::from(self.cut(s))
    }

    /// An owned [`Text`] shortened to the value limit (counted when it is).
    pub(super) fn owned_text(&mut self, mut s: Text) -> Text {
        if truncate_text(&mut s, self.value_bytes_max) {
            self.truncated += 1;
        }
        s
    }

    pub(super) fn fields(&mut self, f: Fields<'_>) -> McpFields {
        McpFields {
            method: f.method.map(|s| self.text(s)),
            tool: f.tool.map(|s| self.text(s)),
            prompt: f.prompt.map(|s| self.text(s)),
            resource_uri: f.resource_uri.map(|s| self.text(s)),
            request_id: f.request_id.map(|s| self.owned_text(s)),
            session_id: f.session_id.map(|s| self.owned_text(s)),
            user_id: f.user_id.map(|s| self.owned_text(s)),
            client_name: f.client_name.map(|s| self.text(s)),
            client_version: f.client_version.map(|s| self.owned_text(s)),
            error_type: f.error_type.map(|s| self.owned_text(s)),
            transport: f.transport.map(|s| self.text(s)),
            protocol_version: f.protocol_version.map(|s| self.owned_text(s)),
        }
    }

    pub(super) fn bytes(&mut self, b: &[u8]) -> Vec<u8> {
        if b.len() > self.value_bytes_max {
            self.truncated += 1;
            b[..self.value_bytes_max].to_vec()
        } else {
            b.to_vec()
        }
    }

    /// The first `items_max` of a nested array or list; a cut counts as one truncation.
    pub(super) fn cap_items<'v, T>(&mut self, items: &'v [T]) -> &'v [T] {
        if items.len() > self.items_max {
            self.truncated += 1;
            &items[..self.items_max]
        } else {
            items
        }
    }

    pub(super) fn value(&mut self, v: Option<&Val<'_>>) -> AttrValue {
        match v {
            Some(Val::Str(s)) => AttrValue::Str(self.text(s)),
            Some(Val::Bool(b)) => AttrValue::Bool(*b),
            Some(Val::Int(i)) => AttrValue::Int(*i),
            Some(Val::Double(d)) => AttrValue::Double(*d),
            Some(Val::Bytes(b)) => AttrValue::Bytes(self.bytes(b)),
            Some(Val::Array(values)) => {
                let values = self.cap_items(values);
                AttrValue::Array(values.iter().map(|v| self.value(v.as_ref())).collect())
            }
            Some(Val::Kvlist(values)) => {
                let values = self.cap_items(values);
                AttrValue::KvList(values.iter().map(|kv| self.key_value(kv)).collect())
            }
            Some(Val::Strindex) | None => AttrValue::Str(Text::default()),
        }
    }

    pub(super) fn key_value(&mut self, kv: &Kv<'_>) -> KeyValue {
        KeyValue {
            key: self.text(kv.key),
            value: self.value(kv.value.as_ref()),
        }
    }

    pub(super) fn attributes(&mut self, kvs: &[Kv<'_>]) -> (Vec<KeyValue>, u32) {
        let dropped = over_limit(kvs.len(), self.items_max);
        let kept = &kvs[..kvs.len().min(self.items_max)];
        let converted = kept.iter().map(|kv| self.key_value(kv)).collect();
        (converted, dropped)
    }
}
