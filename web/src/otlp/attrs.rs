//! Lookup-and-consume over a span's raw OTLP attributes, used to lift canonical fields out of them.
//!
//! "Consume" removes exactly the attribute a value came from, so a canonical column and the stored
//! attributes never hold the same datum twice, while a losing alternative spelling (say
//! `mcp.tool.name` when `gen_ai.tool.name` won) stays visible in the attributes.

use opentelemetry_proto::tonic::common::v1::{any_value::Value as PValue, KeyValue as PKeyValue};

/// Entries below this index are consumed by marking them (one bit each) and dropped once, in
/// [`Attrs::into_inner`], instead of being removed one by one, which would shift the rest each time.
const MARKED: usize = 128;

pub(super) struct Attrs {
    kvs: Vec<PKeyValue>,
    /// Bit `i` set: entry `i` (< [`MARKED`]) is consumed. Its value has been moved out (`None`), so
    /// no lookup matches it. Entries from [`MARKED`] on are removed from `kvs` when consumed.
    taken: u128,
}

impl Attrs {
    pub fn new(kvs: Vec<PKeyValue>) -> Attrs {
        Attrs { kvs, taken: 0 }
    }

    /// The attributes left, in payload order.
    pub fn into_inner(self) -> Vec<PKeyValue> {
        let Attrs { mut kvs, taken } = self;
        if taken != 0 {
            let mut i = 0;
            kvs.retain(|_| {
                let keep = !is_marked(taken, i);
                i += 1;
                keep
            });
        }
        kvs
    }

    /// Consumes entry `index`, returning its value.
    fn consume(&mut self, index: usize) -> Option<PValue> {
        let value = if index < MARKED {
            self.taken |= 1u128 << index;
            self.kvs[index].value.take()
        } else {
            self.kvs.remove(index).value
        };
        value.and_then(|v| v.value)
    }

    fn value(kv: &PKeyValue) -> Option<&PValue> {
        kv.value.as_ref().and_then(|v| v.value.as_ref())
    }

    /// The first non-empty string under `key`, without consuming it.
    pub fn peek_str(&self, key: &str) -> Option<&str> {
        self.kvs
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
            .kvs
            .iter()
            .enumerate()
            .filter(|(_, kv)| kv.key == key)
            .find_map(|(i, kv)| Self::value(kv).and_then(&mut read).map(|v| (i, v)))?;
        self.consume(index);
        Some(value)
    }

    /// Removes the first attribute under `key` whose value `accept`s and returns that value, moved
    /// out (no copy of its strings).
    fn take_value(&mut self, key: &str, accept: impl Fn(&PValue) -> bool) -> Option<PValue> {
        let index = self
            .kvs
            .iter()
            .position(|kv| kv.key == key && Self::value(kv).is_some_and(&accept))?;
        self.consume(index)
    }

    /// A non-empty string value. Names (method, tool, prompt, ...) are only accepted as strings.
    pub fn take_str(&mut self, key: &str) -> Option<String> {
        match self.take_value(
            key,
            |v| matches!(v, PValue::StringValue(s) if !s.is_empty()),
        )? {
            PValue::StringValue(s) => Some(s),
            _ => None,
        }
    }

    /// Any scalar rendered as a string: ids and versions arrive as strings from every library we
    /// have seen, but JSON-RPC ids are numbers on the wire and some SDKs record them that way.
    pub fn take_scalar(&mut self, key: &str) -> Option<String> {
        self.take_value(key, is_scalar).and_then(into_scalar_string)
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
        for (i, kv) in self.kvs.iter_mut().enumerate().take(MARKED) {
            if kv.key == key {
                self.taken |= 1u128 << i;
                kv.value = None;
            }
        }
        if self.kvs.len() > MARKED {
            let mut tail = self.kvs.split_off(MARKED);
            tail.retain(|kv| kv.key != key);
            self.kvs.append(&mut tail);
        }
    }
}

fn is_marked(taken: u128, index: usize) -> bool {
    index < MARKED && taken & (1u128 << index) != 0
}

/// Whether [`scalar_string`] renders `v`.
fn is_scalar(v: &PValue) -> bool {
    match v {
        PValue::StringValue(s) => !s.is_empty(),
        PValue::IntValue(_) | PValue::BoolValue(_) => true,
        PValue::DoubleValue(d) => d.is_finite(),
        PValue::BytesValue(b) => !b.is_empty(),
        _ => false,
    }
}

/// [`scalar_string`] of an owned value: a string is moved, not copied.
fn into_scalar_string(v: PValue) -> Option<String> {
    match v {
        PValue::StringValue(s) if !s.is_empty() => Some(s),
        v => scalar_string(&v),
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

    /// Marked (first 128) and removed (beyond) consumption give what plain removal would.
    #[test]
    fn consuming_past_the_marked_range_matches_plain_removal() {
        let kvs: Vec<PKeyValue> = (0..300)
            .map(|i| kv(&format!("k{}", i % 7), PValue::StringValue(format!("v{i}"))))
            .collect();
        let mut reference = kvs.clone();
        let mut attrs = Attrs::new(kvs);
        attrs.remove_all("k3");
        reference.retain(|kv| kv.key != "k3");
        for key in ["k1", "k5", "k1", "k3", "k0"] {
            let mut taken = Vec::new();
            while let Some(v) = attrs.take_str(key) {
                taken.push(v);
            }
            let mut expected = Vec::new();
            while let Some(i) = reference.iter().position(|kv| kv.key == key) {
                let Some(PValue::StringValue(s)) = reference.remove(i).value.and_then(|v| v.value)
                else {
                    unreachable!()
                };
                expected.push(s);
            }
            assert_eq!(taken, expected, "{key}");
            attrs.remove_all("k6");
            reference.retain(|kv| kv.key != "k6");
        }
        assert_eq!(attrs.into_inner(), reference);
    }

    #[test]
    fn is_scalar_agrees_with_scalar_string() {
        use opentelemetry_proto::tonic::common::v1::ArrayValue;
        for v in [
            PValue::StringValue(String::new()),
            PValue::StringValue("s".into()),
            PValue::IntValue(-3),
            PValue::BoolValue(false),
            PValue::DoubleValue(1.5),
            PValue::DoubleValue(f64::NAN),
            PValue::DoubleValue(f64::INFINITY),
            PValue::BytesValue(vec![]),
            PValue::BytesValue(vec![0xab]),
            PValue::ArrayValue(ArrayValue { values: vec![] }),
            PValue::StringValueStrindex(1),
        ] {
            assert_eq!(is_scalar(&v), scalar_string(&v).is_some(), "{v:?}");
            assert_eq!(into_scalar_string(v.clone()), scalar_string(&v), "{v:?}");
        }
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
