//! Column encoders of the span store: varints, bit-packing, string dictionaries, attribute values and
//! zstd framing. Pure functions over byte slices; every decoder treats its input as untrusted and
//! returns `StorageError::Corrupt` instead of panicking.

pub mod bitpack;
pub mod buf;
pub mod compress;
pub mod strdict;
pub mod streq;
pub mod utf8;
pub mod value;

pub use buf::{put_bytes, put_num, put_str, put_varint, unzigzag, zigzag, Reader};
pub use streq::same_str;
pub use utf8::utf8;

use crate::error::StorageError;

/// Bytes that do not decode. Kept small (one `String`) because every codec call returns it on the
/// hot path; it becomes `StorageError::Corrupt` at the span store boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for StorageError {
    fn from(e: DecodeError) -> Self {
        StorageError::Corrupt(e.0)
    }
}

/// Result of a decoder.
pub type Result<T> = std::result::Result<T, DecodeError>;

/// Builds the error every decoder returns for bytes that do not parse.
pub(crate) fn corrupt(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

/// FNV-1a, 32 bit. Used for the header bitmaps of string values; it is part of the on-disk format
/// (docs/format.md), so it must never change without a `FORMAT_VERSION` bump.
pub fn hash32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in s.as_bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::hash32;

    #[test]
    fn fnv1a_known_vectors() {
        // Published FNV-1a 32 test vectors: the hash is part of the file format.
        assert_eq!(hash32(""), 0x811c_9dc5);
        assert_eq!(hash32("a"), 0xe40c_292c);
        assert_eq!(hash32("foobar"), 0xbf9c_f968);
    }
}
