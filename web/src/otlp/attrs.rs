//! Lookup-and-consume over a span's raw OTLP attributes, used to lift canonical fields out of them.
//!
//! "Consume" removes exactly the attribute a value came from, so a canonical column and the stored
//! attributes never hold the same datum twice, while a losing alternative spelling (say
//! `mcp.tool.name` when `gen_ai.tool.name` won) stays visible in the attributes.

use opentelemetry_proto::tonic::common::v1::{any_value::Value as PValue, KeyValue as PKeyValue};

pub(super) struct Attrs(Vec<PKeyValue>);

impl Attrs {
    pub fn new(kvs: Vec<PKeyValue>) -> Attrs {
        Attrs(kvs)
    }

    pub fn into_inner(self) -> Vec<PKeyValue> {
        self.0
    }

    fn value(kv: &PKeyValue) -> Option<&PValue> {
        kv.value.as_ref().and_then(|v| v.value.as_ref())
    }

    /// The first non-empty string under `key`, without consuming it.
    pub fn peek_str(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|kv| kv.key == key)
            .find_map(|kv| match Self::value(kv) {
                Some(PValue::StringValue(s)) if !s.is_empty() => Some(s.as_str()),
                _ => None,
            })
    }

    /// The first attribute under `key` whose value `read` accepts; that attribute is removed.
    /// Attributes `read` refuses (wrong type, empty, garbage) stay where they are.
    pub fn take_if<T>(
        &mut self,
        key: &str,
        mut read: impl FnMut(&PValue) -> Option<T>,
    ) -> Option<T> {
        let (index, value) = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, kv)| kv.key == key)
            .find_map(|(i, kv)| Self::value(kv).and_then(&mut read).map(|v| (i, v)))?;
        self.0.remove(index);
        Some(value)
    }

    /// A non-empty string value. Names (method, tool, prompt, ...) are only accepted as strings.
    pub fn take_str(&mut self, key: &str) -> Option<String> {
        self.take_if(key, |v| match v {
            PValue::StringValue(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
    }

    /// Any scalar rendered as a string: ids and versions arrive as strings from every library we
    /// have seen, but JSON-RPC ids are numbers on the wire and some SDKs record them that way.
    pub fn take_scalar(&mut self, key: &str) -> Option<String> {
        self.take_if(key, scalar_string)
    }

    /// The first of several spellings that is present (as a non-empty string), consumed.
    pub fn take_first_str(&mut self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|key| self.take_str(key))
    }

    /// The first of several spellings that is present as any scalar, consumed.
    pub fn take_first_scalar(&mut self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|key| self.take_scalar(key))
    }

    /// Removes every attribute under `key` (used for keys reserved to us).
    pub fn remove_all(&mut self, key: &str) {
        self.0.retain(|kv| kv.key != key);
    }
}

/// Strings (non-empty), integers, doubles, booleans, and bytes (as hex). Arrays and key-value lists
/// are not identifiers, so they are left alone.
pub(super) fn scalar_string(v: &PValue) -> Option<String> {
    match v {
        PValue::StringValue(s) if !s.is_empty() => Some(s.clone()),
        PValue::IntValue(i) => Some(i.to_string()),
        PValue::DoubleValue(d) if d.is_finite() => Some(d.to_string()),
        PValue::BoolValue(b) => Some(b.to_string()),
        PValue::BytesValue(b) if !b.is_empty() => Some(hex::encode(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;

    fn kv(key: &str, value: PValue) -> PKeyValue {
        PKeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            key_strindex: 0,
        }
    }

    #[test]
    fn take_consumes_only_the_winner() {
        let mut attrs = Attrs::new(vec![
            kv("a", PValue::StringValue(String::new())),
            kv("b", PValue::StringValue("x".into())),
            kv("c", PValue::StringValue("y".into())),
        ]);
        // "a" is present but empty, so "b" wins; "a" and "c" stay.
        assert_eq!(attrs.take_first_str(&["a", "b", "c"]).as_deref(), Some("x"));
        let left: Vec<_> = attrs.into_inner().into_iter().map(|kv| kv.key).collect();
        assert_eq!(left, ["a", "c"]);
    }

    #[test]
    fn scalars_render_as_strings() {
        let mut attrs = Attrs::new(vec![
            kv("id", PValue::IntValue(42)),
            kv("flag", PValue::BoolValue(true)),
            kv("name", PValue::IntValue(7)),
        ]);
        assert_eq!(attrs.take_scalar("id").as_deref(), Some("42"));
        assert_eq!(attrs.take_scalar("flag").as_deref(), Some("true"));
        assert_eq!(attrs.take_str("name"), None, "names must be strings");
        assert_eq!(attrs.into_inner().len(), 1);
    }
}
