//! Size limits applied while converting OTLP values into storage values: UTF-8-safe truncation of
//! strings and bytes, and count caps on attribute lists, arrays and key-value lists.
//!
//! Truncation never rejects anything; it is counted so normalization can mark the span
//! (`mcpobs.truncated`) and report the total.

use mcp_obs_storage::model::{AttrValue, KeyValue, Text};
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value as PValue, AnyValue as PAnyValue, KeyValue as PKeyValue,
};

/// Where to cut `s` to keep at most `max` bytes at a character boundary; `None` when it fits.
pub(crate) fn utf8_cut(s: &str, max: usize) -> Option<usize> {
    if s.len() <= max {
        return None;
    }
    let mut cut = max;
    // A UTF-8 character is at most 4 bytes, so this walks back at most 3 steps.
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(cut)
}

/// Shortens `s` to at most `max` bytes, cutting at a character boundary. Returns whether it cut.
pub(crate) fn truncate_utf8(s: &mut String, max: usize) -> bool {
    utf8_cut(s, max).map(|cut| s.truncate(cut)).is_some()
}

/// [`truncate_utf8`] for a [`Text`].
pub(crate) fn truncate_text(s: &mut Text, max: usize) -> bool {
    utf8_cut(s, max).map(|cut| s.truncate(cut)).is_some()
}

/// Applies the value and count limits and counts what it shortened. One `Clamp` per span (or per
/// resource), so its count becomes that span's `mcpobs.truncated` marker.
pub(super) struct Clamp {
    value_bytes_max: usize,
    items_max: usize,
    /// Values (strings, bytes, arrays, key-value lists) shortened so far.
    pub truncated: u64,
}

impl Clamp {
    pub fn new(value_bytes_max: usize, items_max: usize) -> Clamp {
        Clamp {
            value_bytes_max,
            items_max,
            truncated: 0,
        }
    }

    pub fn string(&mut self, mut s: String) -> String {
        if truncate_utf8(&mut s, self.value_bytes_max) {
            self.truncated += 1;
        }
        s
    }

    pub fn opt_text(&mut self, s: Option<Text>) -> Option<Text> {
        s.map(|mut s| {
            if truncate_text(&mut s, self.value_bytes_max) {
                self.truncated += 1;
            }
            s
        })
    }

    fn bytes(&mut self, mut b: Vec<u8>) -> Vec<u8> {
        if b.len() > self.value_bytes_max {
            b.truncate(self.value_bytes_max);
            self.truncated += 1;
        }
        b
    }

    /// Keeps the first `items_max` entries of a nested array or list; a cut counts as one truncation.
    fn cap_items<T>(&mut self, mut items: Vec<T>) -> Vec<T> {
        if items.len() > self.items_max {
            items.truncate(self.items_max);
            self.truncated += 1;
        }
        items
    }

    /// Converts one OTLP value. An absent value (allowed by OTLP, "empty") and the profiling-only
    /// string-table reference become an empty string: the storage model has no "empty" variant.
    pub fn value(&mut self, v: Option<PAnyValue>) -> AttrValue {
        match v.and_then(|v| v.value) {
            Some(PValue::StringValue(s)) => AttrValue::Str(Text::from(self.string(s))),
            Some(PValue::BoolValue(b)) => AttrValue::Bool(b),
            Some(PValue::IntValue(i)) => AttrValue::Int(i),
            Some(PValue::DoubleValue(d)) => AttrValue::Double(d),
            Some(PValue::BytesValue(b)) => AttrValue::Bytes(self.bytes(b)),
            Some(PValue::ArrayValue(a)) => {
                let values = self.cap_items(a.values);
                AttrValue::Array(values.into_iter().map(|v| self.value(Some(v))).collect())
            }
            Some(PValue::KvlistValue(l)) => {
                let values = self.cap_items(l.values);
                AttrValue::KvList(values.into_iter().map(|kv| self.key_value(kv)).collect())
            }
            Some(PValue::StringValueStrindex(_)) | None => AttrValue::Str(Text::default()),
        }
    }

    fn key_value(&mut self, kv: PKeyValue) -> KeyValue {
        KeyValue {
            key: Text::from(self.string(kv.key)),
            value: self.value(kv.value),
        }
    }

    /// Converts an attribute list, keeping the first `items_max` in payload order. Returns the list
    /// and how many attributes were dropped for the count limit.
    pub fn attributes(&mut self, mut kvs: Vec<PKeyValue>) -> (Vec<KeyValue>, u32) {
        let dropped = kvs.len().saturating_sub(self.items_max);
        kvs.truncate(self.items_max);
        let converted = kvs.into_iter().map(|kv| self.key_value(kv)).collect();
        (converted, u32::try_from(dropped).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::ArrayValue;

    #[test]
    fn truncates_at_char_boundary() {
        let mut s = "héllo".to_string(); // 'é' is bytes 1..3
        assert!(truncate_utf8(&mut s, 2));
        assert_eq!(s, "h");
        let mut s = "日本".to_string();
        assert!(truncate_utf8(&mut s, 5));
        assert_eq!(s, "日");
        let mut s = "abc".to_string();
        assert!(!truncate_utf8(&mut s, 3));
        assert!(truncate_utf8(&mut s, 0));
        assert_eq!(s, "");
    }

    #[test]
    fn nested_values_are_capped_and_counted() {
        let mut clamp = Clamp::new(3, 2);
        let s = |v: &str| PAnyValue {
            value: Some(PValue::StringValue(v.into())),
        };
        let array = PAnyValue {
            value: Some(PValue::ArrayValue(ArrayValue {
                values: vec![s("abcdef"), s("ab"), s("dropped")],
            })),
        };
        let got = clamp.value(Some(array));
        assert_eq!(
            got,
            AttrValue::Array(vec![
                AttrValue::Str("abc".into()),
                AttrValue::Str("ab".into())
            ])
        );
        // One for the array cut, one for "abcdef".
        assert_eq!(clamp.truncated, 2);
        assert_eq!(clamp.value(None), AttrValue::Str(Text::default()));
    }
}
