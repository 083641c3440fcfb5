//! Bounds-checked reading and writing of primitive values (LEB128 varints, zigzag, fixed-width
//! little-endian integers, length-prefixed strings) in byte buffers.

use super::corrupt;
use super::Result;

/// Appends `v` as an unsigned LEB128 varint (1..=10 bytes).
// The three writers below are inlined: the span writer calls them per attribute of every span,
// and left to the compiler `put_str` stopped being inlined into `put_kvs` (stop 27: +26M
// instructions in a 300k-span append bench).
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a varint length followed by the bytes.
#[inline]
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[inline]
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// Appends a non-negative count or sum that is usually integral (span weights are 1/p for sampling
/// probabilities like 1, 0.5, 0.1): an integer in [0, 2^52) is `varint(n << 1)`; anything else is
/// `varint(1)` followed by the 8 bytes of the f64, little-endian, so every value round-trips
/// bit-exactly.
pub fn put_num(out: &mut Vec<u8>, x: f64) {
    // `x as u64` saturates and maps NaN to 0, so below 2^52 converting back gives `x` exactly when
    // `x` is an integer (and -0.0 is left to the sign test): the integral test without `fract`,
    // which is a software truncation on this target (no SSE4.1).
    let n = x as u64;
    if x < NUM_INT_LIMIT && n as f64 == x && x.is_sign_positive() {
        put_varint(out, n << 1);
    } else {
        put_varint(out, 1);
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// Integers below this are written by [`put_num`] as varints (they convert to f64 exactly).
const NUM_INT_LIMIT: f64 = (1u64 << 52) as f64;

/// Maps signed to unsigned so that small magnitudes get short varints.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over untrusted bytes. Every read checks bounds and reports `Corrupt` on overrun.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread bytes (the position does not move).
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Fails unless every byte was consumed: trailing garbage means a format mismatch.
    pub fn finish(&self, what: &str) -> Result<()> {
        if self.remaining() != 0 {
            return Err(corrupt(format!(
                "{what}: {} trailing bytes",
                self.remaining()
            )));
        }
        Ok(())
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(corrupt(format!(
                "need {n} bytes, {} left",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32_le(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64_le(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Most varints in rollups and columns take one or two bytes: those are inlined, the rest
    /// is not (decoding rollup rows is mostly this).
    #[inline]
    pub fn varint(&mut self) -> Result<u64> {
        let rest = &self.buf[self.pos..];
        match *rest {
            [b0, ..] if b0 < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b0))
            }
            [b0, b1, ..] if b1 < 0x80 => {
                self.pos += 2;
                Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7)
            }
            _ => self.varint_long(),
        }
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64> {
        let rest = &self.buf[self.pos..];
        let mut v: u64 = 0;
        for (i, &b) in rest.iter().take(10).enumerate() {
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(corrupt("varint overflows u64"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        if rest.len() < 10 {
            return Err(corrupt("varint past end"));
        }
        Err(corrupt("varint longer than 10 bytes"))
    }

    /// Reads what [`put_num`] wrote.
    pub fn num(&mut self) -> Result<f64> {
        let v = self.varint()?;
        if v & 1 == 0 {
            return Ok((v >> 1) as f64);
        }
        if v != 1 {
            return Err(corrupt("bad number tag"));
        }
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// Hands the unread bytes to a decoder that consumes a `&mut &[u8]` from the front, then moves
    /// past what it consumed.
    pub fn consume<T, E>(
        &mut self,
        f: impl FnOnce(&mut &'a [u8]) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut rest = &self.buf[self.pos..];
        let before = rest.len();
        let r = f(&mut rest);
        self.pos += before - rest.len();
        r
    }

    /// The bytes from `start` (an earlier [`Reader::position`]) to the current position.
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.buf[start.min(self.pos)..self.pos]
    }

    pub fn varint_u32(&mut self) -> Result<u32> {
        u32::try_from(self.varint()?).map_err(|_| corrupt("varint overflows u32"))
    }

    /// A count of items that each take at least `min_item_bytes` bytes: checked against what is
    /// left so that a damaged count cannot trigger a huge allocation.
    pub fn count(&mut self, min_item_bytes: usize) -> Result<usize> {
        let n = self.varint()?;
        let max = self.remaining() / min_item_bytes.max(1);
        if n > max as u64 {
            return Err(corrupt(format!(
                "count {n} exceeds the {max} items that fit"
            )));
        }
        Ok(n as usize)
    }

    pub fn len_bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| corrupt("length overflows usize"))?;
        self.bytes(n)
    }

    pub fn str(&mut self) -> Result<&'a str> {
        super::utf8(self.len_bytes()?).ok_or_else(|| corrupt("string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trip(v in any::<u64>(), s in any::<i64>(), text in ".*") {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            put_varint(&mut out, zigzag(s));
            put_str(&mut out, &text);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert_eq!(unzigzag(r.varint().unwrap()), s);
            prop_assert_eq!(r.str().unwrap(), text.as_str());
            prop_assert!(r.finish("t").is_ok());
        }

        #[test]
        fn num_round_trip_is_bit_exact(
            x in prop_oneof![
                (0u64..1 << 53).prop_map(|n| n as f64),
                any::<f64>(),
                (1u32..1000).prop_map(|d| 1.0 / (f64::from(d) / 1000.0)),
                Just(-0.0), Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), Just(0.5),
                Just(NUM_INT_LIMIT - 1.0), Just(NUM_INT_LIMIT), Just(u64::MAX as f64),
            ]
        ) {
            let mut out = Vec::new();
            put_num(&mut out, x);
            let back = Reader::new(&out).num().unwrap();
            prop_assert_eq!(back.to_bits(), x.to_bits());
            // The bytes are those of the test `put_num` used before, `fract`: the format's
            // definition.
            let mut want = Vec::new();
            if (0.0..NUM_INT_LIMIT).contains(&x) && x.fract() == 0.0 && x.is_sign_positive() {
                put_varint(&mut want, (x as u64) << 1);
            } else {
                put_varint(&mut want, 1);
                want.extend_from_slice(&x.to_le_bytes());
            }
            prop_assert_eq!(out, want);
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.varint();
            let _ = r.str();
            let _ = r.count(1);
            let _ = r.u64_le();
            let _ = r.num();
        }
    }

    #[test]
    fn extremes() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert!(out.len() <= 10);
            assert_eq!(Reader::new(&out).varint().unwrap(), v);
        }
        for s in [i64::MIN, -1, 0, 1, i64::MAX] {
            assert_eq!(unzigzag(zigzag(s)), s);
        }
        // A varint cut short (on and past the inlined one- and two-byte paths) is rejected.
        for cut in [&[][..], &[0x80], &[0x80, 0x80], &[0xff; 9]] {
            assert!(Reader::new(cut).varint().is_err(), "{cut:?}");
        }
        // An 11-byte varint and a 10th byte above 1 are both rejected.
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        let mut bad = vec![0xff; 9];
        bad.push(0x02);
        assert!(Reader::new(&bad).varint().is_err());
    }
}
