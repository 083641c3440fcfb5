//! Owns [`utf8`]: UTF-8 validation with an ASCII fast path. Attribute keys and values, span names
//! and dictionary strings are nearly always short ASCII; a string that is not ASCII is scanned a
//! second time by std's validator, which costs little next to what the fast path saves.

/// `std::str::from_utf8(bytes).ok()`, checking for ASCII a word at a time first.
///
/// Why: std's validator walks byte by byte until its pointer is word-aligned, which is most of a
/// 10-40 byte string at an arbitrary offset in a protobuf body; that was about 110 instructions per
/// attribute key or value, 7% of the server's instructions at ingest (docs/benchmarks.md).
/// `<[u8]>::is_ascii` reads unaligned words, so such a string costs a few loads.
#[inline]
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: every byte is below 0x80, and a sequence of ASCII bytes is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ascii_multibyte_and_invalid() {
        assert_eq!(utf8(b""), Some(""));
        assert_eq!(utf8(b"mcp.method.name"), Some("mcp.method.name"));
        assert_eq!(utf8("wetter-ü-€-😀".as_bytes()), Some("wetter-ü-€-😀"));
        // A lone continuation byte, a truncated sequence, an overlong encoding, a surrogate, and
        // one invalid byte after 8 and after 16 ASCII bytes (the word-at-a-time path's tails).
        for bad in [
            &b"\x80"[..],
            b"abc\xe2\x82",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"abcdefgh\xff",
            b"abcdefghijklmnop\xfe",
        ] {
            assert_eq!(utf8(bad), None, "{bad:?}");
        }
    }

    proptest! {
        /// Exactly std's answer, on arbitrary bytes and on valid strings.
        #[test]
        fn agrees_with_std(bytes in prop::collection::vec(any::<u8>(), 0..80), s in ".{0,40}") {
            prop_assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes).ok());
            prop_assert_eq!(utf8(s.as_bytes()), Some(s.as_str()));
            // Mostly ASCII with one arbitrary byte somewhere: the fast path's boundary.
            let mut b = s.clone().into_bytes();
            if !b.is_empty() {
                let i = bytes.len() % b.len();
                b[i] = bytes.first().copied().unwrap_or(0xff);
            }
            prop_assert_eq!(utf8(&b), std::str::from_utf8(&b).ok());
        }
    }
}
