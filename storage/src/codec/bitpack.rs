//! Bit-packing of small unsigned integers (dictionary ids, presence bits) at a fixed width per column.

use super::{corrupt, Reader, Result};

/// Bits needed to represent every value up to and including `max`.
pub fn width_for(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// Appends `[width u8][ceil(n * width / 8) bytes]`, values packed LSB-first.
pub fn pack(out: &mut Vec<u8>, values: &[u32]) {
    let width = width_for(values.iter().copied().max().unwrap_or(0));
    out.push(width);
    out.reserve((values.len() as u64 * u64::from(width)).div_ceil(8) as usize);
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    for &v in values {
        // `bits` < 32 here and `width` <= 32, so nothing is shifted out of `acc`.
        acc |= u64::from(v) << bits;
        bits += u32::from(width);
        if bits >= 32 {
            // Four bytes at once, little-endian: the same bytes as four LSB-first pushes.
            out.extend_from_slice(&(acc as u32).to_le_bytes());
            acc >>= 32;
            bits -= 32;
        }
    }
    while bits > 0 {
        out.push(acc as u8);
        acc >>= 8;
        bits = bits.saturating_sub(8);
    }
}

/// Reads `n` values written by [`pack`].
pub fn unpack(r: &mut Reader<'_>, n: usize) -> Result<Vec<u32>> {
    let mut out = Vec::with_capacity(n);
    unpack_into(r, n, &mut out)?;
    Ok(out)
}

/// [`unpack`], appending the values to `out`.
pub fn unpack_into(r: &mut Reader<'_>, n: usize, out: &mut Vec<u32>) -> Result<()> {
    let width = r.u8()?;
    if width > 32 {
        return Err(corrupt(format!("bit width {width} > 32")));
    }
    let nbytes = (n as u64 * u64::from(width)).div_ceil(8);
    let data = r.bytes(usize::try_from(nbytes).map_err(|_| corrupt("bitpack length"))?)?;
    let mask: u64 = if width == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << width) - 1
    };
    let w = usize::from(width);
    if w == 0 {
        out.resize(out.len() + n, 0);
        return Ok(());
    }
    // Value `i` is the `width` bits from bit `i * width`: one unaligned little-endian 8-byte read
    // and a shift (`width` <= 32 plus at most 7 bits of shift fit in 64). The values whose 8
    // bytes lie inside `data` are read in place; the last few from a zero-padded copy of the
    // tail.
    let in_place = match data.len().checked_sub(8) {
        Some(m) => ((m + 1) * 8).div_ceil(w).min(n),
        None => 0,
    };
    let word = |bytes: &[u8], bit: usize| -> u32 {
        let at = bit / 8;
        let le: [u8; 8] = bytes[at..at + 8].try_into().unwrap_or([0; 8]);
        ((u64::from_le_bytes(le) >> (bit % 8)) & mask) as u32
    };
    out.reserve(n);
    out.extend((0..in_place).map(|i| word(data, i * w)));
    if in_place < n {
        let from = in_place * w / 8;
        let mut tail = [0u8; 16];
        // Fewer than 8 bytes are left from `from` (else value `in_place` would fit in place).
        let left = &data[from.min(data.len())..];
        tail[..left.len().min(16)].copy_from_slice(&left[..left.len().min(16)]);
        out.extend((in_place..n).map(|i| word(&tail, i * w - from * 8)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(values in proptest::collection::vec(any::<u32>(), 0..300), shift in 0u32..32) {
            let values: Vec<u32> = values.into_iter().map(|v| v >> shift).collect();
            let mut out = Vec::new();
            pack(&mut out, &values);
            let mut r = Reader::new(&out);
            prop_assert_eq!(unpack(&mut r, values.len()).unwrap(), values);
            prop_assert!(r.finish("t").is_ok());
        }
    }

    /// The byte-at-a-time packer `pack` replaced: the format's definition, kept to pin the bytes.
    fn pack_reference(out: &mut Vec<u8>, values: &[u32]) {
        let width = width_for(values.iter().copied().max().unwrap_or(0));
        out.push(width);
        let (mut acc, mut bits) = (0u64, 0u32);
        for &v in values {
            acc |= u64::from(v) << bits;
            bits += u32::from(width);
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push(acc as u8);
        }
    }

    proptest! {
        #[test]
        fn same_bytes_as_the_reference(values in proptest::collection::vec(any::<u32>(), 0..300), shift in 0u32..33) {
            let values: Vec<u32> = values.into_iter().map(|v| v.checked_shr(shift).unwrap_or(0)).collect();
            let (mut got, mut want) = (vec![7], vec![7]);
            pack(&mut got, &values);
            pack_reference(&mut want, &values);
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn packed_bytes_are_lsb_first() {
        let mut out = Vec::new();
        pack(&mut out, &[1, 2, 3]);
        assert_eq!(out, [2, 0b0011_1001]);
        out.clear();
        pack(&mut out, &[0x0102_0304, 0xA0B0_C0D0, 1]);
        assert_eq!(out, [32, 4, 3, 2, 1, 0xD0, 0xC0, 0xB0, 0xA0, 1, 0, 0, 0]);
    }

    #[test]
    fn widths_and_truncation() {
        assert_eq!(width_for(0), 0);
        assert_eq!(width_for(1), 1);
        assert_eq!(width_for(u32::MAX), 32);
        let mut out = Vec::new();
        pack(&mut out, &[5; 10]);
        out.pop();
        assert!(unpack(&mut Reader::new(&out), 10).is_err());
        assert!(unpack(&mut Reader::new(&[33]), 1).is_err());
    }
}
