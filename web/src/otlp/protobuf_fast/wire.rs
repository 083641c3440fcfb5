//! The protobuf wire format as prost reads it: varints, keys, length-delimited fields, fixed-width
//! numbers, and skipping unknown fields (groups included) within prost's recursion budget.

/// prost's `RECURSION_LIMIT`: the top-level message's fields are read with this budget, and every
/// nested message (or skipped group) costs one.
pub(super) const RECURSION_LIMIT: u32 = 100;

pub(super) const WT_VARINT: u8 = 0;
pub(super) const WT_I64: u8 = 1;
pub(super) const WT_LEN: u8 = 2;
pub(super) const WT_START_GROUP: u8 = 3;
pub(super) const WT_END_GROUP: u8 = 4;
pub(super) const WT_I32: u8 = 5;

/// What was wrong with the body; becomes [`DecodeError::Protobuf`]. Fieldless, so results stay
/// small enough to return in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Malformed {
    InvalidKey,
    FieldNumberZero,
    InvalidWireType,
    LengthExceeded,
    RecursionLimit,
    InvalidUtf8,
    TruncatedFixed32,
    TruncatedFixed64,
    TruncatedVarint,
    UnexpectedEndGroup,
    VarintTooLong,
    VarintOverflow,
    WrongWireType,
}

impl Malformed {
    pub(super) fn message(self) -> &'static str {
        match self {
            Malformed::InvalidKey => "invalid field key",
            Malformed::FieldNumberZero => "invalid field number 0",
            Malformed::InvalidWireType => "invalid wire type",
            Malformed::LengthExceeded => "length exceeds the enclosing message",
            Malformed::RecursionLimit => "recursion limit reached",
            Malformed::InvalidUtf8 => "string is not UTF-8",
            Malformed::TruncatedFixed32 => "truncated fixed32",
            Malformed::TruncatedFixed64 => "truncated fixed64",
            Malformed::TruncatedVarint => "truncated varint",
            Malformed::UnexpectedEndGroup => "unexpected end group tag",
            Malformed::VarintTooLong => "varint longer than 10 bytes",
            Malformed::VarintOverflow => "varint overflows 64 bits",
            Malformed::WrongWireType => "wrong wire type for a known field",
        }
    }
}

pub(super) type Res<T> = Result<T, Malformed>;

/// A cursor over one message's bytes; every read is bounds-checked against them.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub(super) fn has_more(&self) -> bool {
        !self.buf.is_empty()
    }

    /// LEB128, at most 10 bytes, rejecting values over `u64::MAX` (prost's rule).
    #[inline(always)]
    pub(super) fn varint(&mut self) -> Res<u64> {
        // Keys, lengths and small numbers: one byte.
        if let Some((&b, rest)) = self.buf.split_first() {
            if b < 0x80 {
                self.buf = rest;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    #[inline(never)]
    pub(super) fn varint_slow(&mut self) -> Res<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err(Malformed::TruncatedVarint);
            };
            self.buf = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b >= 2 {
                    return Err(Malformed::VarintOverflow);
                }
                return Ok(value);
            }
        }
        Err(Malformed::VarintTooLong)
    }

    /// A field key: (field number, wire type).
    #[inline]
    pub(super) fn key(&mut self) -> Res<(u32, u8)> {
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| Malformed::InvalidKey)?;
        let wire_type = (key & 7) as u8;
        if wire_type > WT_I32 {
            return Err(Malformed::InvalidWireType);
        }
        let tag = key >> 3;
        if tag == 0 {
            return Err(Malformed::FieldNumberZero);
        }
        Ok((tag, wire_type))
    }

    #[inline]
    pub(super) fn len_delimited(&mut self) -> Res<&'a [u8]> {
        let len = self.varint()?;
        if len > self.buf.len() as u64 {
            return Err(Malformed::LengthExceeded);
        }
        let (field, rest) = self.buf.split_at(len as usize);
        self.buf = rest;
        Ok(field)
    }

    #[inline]
    pub(super) fn str(&mut self) -> Res<&'a str> {
        mcp_obs_storage::codec::utf8(self.len_delimited()?).ok_or(Malformed::InvalidUtf8)
    }

    #[inline]
    pub(super) fn fixed64(&mut self) -> Res<u64> {
        let (bytes, rest) = self
            .buf
            .split_first_chunk::<8>()
            .ok_or(Malformed::TruncatedFixed64)?;
        self.buf = rest;
        Ok(u64::from_le_bytes(*bytes))
    }

    #[inline]
    pub(super) fn fixed32(&mut self) -> Res<u32> {
        let (bytes, rest) = self
            .buf
            .split_first_chunk::<4>()
            .ok_or(Malformed::TruncatedFixed32)?;
        self.buf = rest;
        Ok(u32::from_le_bytes(*bytes))
    }

    // Typed field readers: check the field's wire type, then read its value.

    #[inline]
    pub(super) fn varint_field(&mut self, wire_type: u8) -> Res<u64> {
        expect(wire_type, WT_VARINT)?;
        self.varint()
    }

    #[inline]
    pub(super) fn len_field(&mut self, wire_type: u8) -> Res<&'a [u8]> {
        expect(wire_type, WT_LEN)?;
        self.len_delimited()
    }

    #[inline]
    pub(super) fn str_field(&mut self, wire_type: u8) -> Res<&'a str> {
        expect(wire_type, WT_LEN)?;
        self.str()
    }

    #[inline]
    pub(super) fn fixed64_field(&mut self, wire_type: u8) -> Res<u64> {
        expect(wire_type, WT_I64)?;
        self.fixed64()
    }

    #[inline]
    pub(super) fn fixed32_field(&mut self, wire_type: u8) -> Res<u32> {
        expect(wire_type, WT_I32)?;
        self.fixed32()
    }

    /// Skips an unknown field read at recursion budget `depth` (prost's `skip_field`).
    pub(super) fn skip(&mut self, tag: u32, wire_type: u8, depth: u32) -> Res<()> {
        if depth == 0 {
            return Err(Malformed::RecursionLimit);
        }
        match wire_type {
            WT_VARINT => {
                self.varint()?;
            }
            WT_I64 => {
                self.fixed64()?;
            }
            WT_LEN => {
                self.len_delimited()?;
            }
            WT_I32 => {
                self.fixed32()?;
            }
            WT_START_GROUP => loop {
                let (inner_tag, inner_wire_type) = self.key()?;
                if inner_wire_type == WT_END_GROUP {
                    if inner_tag != tag {
                        return Err(Malformed::UnexpectedEndGroup);
                    }
                    break;
                }
                self.skip(inner_tag, inner_wire_type, depth - 1)?;
            },
            _ => return Err(Malformed::UnexpectedEndGroup),
        }
        Ok(())
    }

    /// A field known to be skippable (already validated by an earlier scan of the same message).
    pub(super) fn skip_validated(&mut self, tag: u32, wire_type: u8) -> Res<()> {
        self.skip(tag, wire_type, RECURSION_LIMIT)
    }
}

#[inline]
pub(super) fn expect(wire_type: u8, wanted: u8) -> Res<()> {
    if wire_type == wanted {
        Ok(())
    } else {
        Err(Malformed::WrongWireType)
    }
}

/// The budget for the fields of a message nested in a message read at `depth`.
#[inline]
pub(super) fn nested(depth: u32) -> Res<u32> {
    depth.checked_sub(1).ok_or(Malformed::RecursionLimit)
}
