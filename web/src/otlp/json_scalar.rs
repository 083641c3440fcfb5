//! Scalar readers for OTLP/JSON fields, following the proto3 JSON mapping's leniency rules.
//!
//! proto3 JSON lets senders write 64-bit integers as strings or numbers, 32-bit integers as either
//! too, enums as numbers or names, doubles as numbers or `"NaN"`/`"Infinity"`, and `null` for "the
//! default". OTLP adds hex strings for trace and span ids. Each reader here is used through
//! `#[serde(default, deserialize_with = ...)]` and returns `Option<T>`: `None` for `null`, so the
//! caller decides what the default is.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// Largest f64 strictly below 2^64, used to reject out-of-range floats before casting.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// uint64 / fixed64: a number or a decimal string.
pub(super) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(IntVisitor).and_then(|v| match v {
        None => Ok(None),
        Some(n) => u64::try_from(n)
            .map(Some)
            .map_err(|_| de::Error::custom("expected an unsigned 64-bit integer")),
    })
}

/// int64: a number or a decimal string.
pub(super) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(IntVisitor).and_then(|v| match v {
        None => Ok(None),
        Some(n) => i64::try_from(n)
            .map(Some)
            .map_err(|_| de::Error::custom("expected a signed 64-bit integer")),
    })
}

/// uint32 / fixed32: a number or a decimal string.
pub(super) fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    d.deserialize_any(IntVisitor).and_then(|v| match v {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| de::Error::custom("expected an unsigned 32-bit integer")),
    })
}

/// Reads any JSON integer spelling into an i128 so every target width can range-check it.
struct IntVisitor;

impl<'de> Visitor<'de> for IntVisitor {
    type Value = Option<i128>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer as a JSON number or string")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(i128::from(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(i128::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // proto3 JSON accepts "1e3"-style integers; anything with a fraction is an error.
        if v.is_finite() && v.fract() == 0.0 && v > -TWO_POW_64 && v < TWO_POW_64 {
            Ok(Some(v as i128))
        } else {
            Err(E::custom("expected an integer"))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if let Ok(n) = v.parse::<i128>() {
            return Ok(Some(n));
        }
        match v.parse::<f64>() {
            Ok(f) if f.is_finite() => self.visit_f64(f),
            _ => Err(E::custom("expected an integer string")),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// double: a number, a numeric string, or `"NaN"` / `"Infinity"` / `"-Infinity"`.
pub(super) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a double as a JSON number or string")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                "NaN" => Ok(Some(f64::NAN)),
                "Infinity" => Ok(Some(f64::INFINITY)),
                "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
                // Rust also parses "inf"/"nan"; proto3 JSON only knows the spellings above.
                _ if v
                    .bytes()
                    .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
                {
                    Err(E::custom("expected a double"))
                }
                _ => v
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| E::custom("expected a double")),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// An OTLP enum: its number, or its proto name (`SPAN_KIND_SERVER`). Unknown numbers are kept
/// (proto3 enums are open); unknown names are an error, as in the reference proto3 parsers.
fn opt_enum<'de, D: Deserializer<'de>>(
    d: D,
    names: &'static [(&'static str, i32)],
) -> Result<Option<i32>, D::Error> {
    struct V(&'static [(&'static str, i32)]);
    impl<'de> Visitor<'de> for V {
        type Value = Option<i32>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an enum number or name")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i32::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("enum number out of range"))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            i32::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("enum number out of range"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            // Some encoders quote enum numbers like other integers; accept "2" as 2.
            if let Ok(n) = v.parse::<i32>() {
                return Ok(Some(n));
            }
            self.0
                .iter()
                .find(|(name, _)| *name == v)
                .map(|(_, n)| Some(*n))
                .ok_or_else(|| E::custom("unknown enum name"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V(names))
}

const SPAN_KIND_NAMES: &[(&str, i32)] = &[
    ("SPAN_KIND_UNSPECIFIED", 0),
    ("SPAN_KIND_INTERNAL", 1),
    ("SPAN_KIND_SERVER", 2),
    ("SPAN_KIND_CLIENT", 3),
    ("SPAN_KIND_PRODUCER", 4),
    ("SPAN_KIND_CONSUMER", 5),
];

const STATUS_CODE_NAMES: &[(&str, i32)] = &[
    ("STATUS_CODE_UNSET", 0),
    ("STATUS_CODE_OK", 1),
    ("STATUS_CODE_ERROR", 2),
];

pub(super) fn opt_span_kind<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    opt_enum(d, SPAN_KIND_NAMES)
}

pub(super) fn opt_status_code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    opt_enum(d, STATUS_CODE_NAMES)
}

/// A trace or span id as OTLP/JSON writes it: hex, either case; `""` means absent.
///
/// Valid hex of the wrong length decodes to its bytes so that normalization rejects just that span
/// with a precise reason. A string that is not hex at all (odd length, other characters) fails the
/// whole request, as the OpenTelemetry Collector does: such a sender is broken, not one bad span.
pub(super) fn opt_hex_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Vec<u8>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a hex id string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            hex::decode(v)
                .map(Some)
                .map_err(|_| E::custom("trace/span ids must be hex strings"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// A `bytes` field: base64, standard or URL-safe alphabet, padding optional (proto3 JSON).
pub(super) fn opt_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Vec<u8>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a base64 string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            decode_base64(v)
                .map(Some)
                .ok_or_else(|| E::custom("invalid base64 in bytesValue"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Decodes base64 in either alphabet, with or without `=` padding. `None` on any malformed input.
/// Small enough to keep here rather than pull in a crate for one field.
pub(crate) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let trimmed = s.trim_end_matches('=');
    // At most two padding characters, and only where padding can be.
    if s.len() - trimmed.len() > 2 || (s.len() != trimmed.len() && s.len() % 4 != 0) {
        return None;
    }
    if trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for b in trimmed.bytes() {
        let sextet = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_both_alphabets_and_padding() {
        assert_eq!(decode_base64("").as_deref(), Some(&b""[..]));
        assert_eq!(decode_base64("Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(decode_base64("Zg").as_deref(), Some(&b"f"[..]));
        assert_eq!(decode_base64("Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(decode_base64("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(
            decode_base64("+/+/").as_deref(),
            Some(&[0xfb, 0xff, 0xbf][..])
        );
        assert_eq!(
            decode_base64("-_-_").as_deref(),
            Some(&[0xfb, 0xff, 0xbf][..])
        );
    }

    #[test]
    fn base64_rejects_garbage() {
        assert_eq!(decode_base64("Z"), None);
        assert_eq!(decode_base64("Zg==="), None);
        assert_eq!(decode_base64("Zg=a"), None);
        assert_eq!(decode_base64("Zm9v!"), None);
        assert_eq!(decode_base64("Zg="), None);
    }
}
