//! Decoding shortcuts for the read path: tight varint loops, and random access into bit-packed
//! ids and dictionary string columns, so materializing a few rows of a block does not decode every
//! row of every column. Same validation as the `codec` decoders for whatever they touch.

use super::block::ColumnRead;
use super::columns::DICT_SEGMENT_ENTRIES;
use super::corrupt;
use crate::codec::{strdict, Reader};
use crate::error::Result;

/// Exactly `n` varints filling `raw` (as `codec::Reader::varint` would read them).
pub fn varints(raw: &[u8], n: usize) -> Result<Vec<u64>> {
    let mut out = crate::bufs::take(n);
    let mut i = 0;
    while out.len() < n {
        let (v, next) = varint_at(raw, i)?;
        out.push(v);
        i = next;
    }
    if i != raw.len() {
        return Err(corrupt("varint column trailing bytes"));
    }
    Ok(out)
}

/// The varint at byte `i` of `raw` and the offset after it. Columns are decoded a varint at a time
/// here (about six per row of an export), so the common cases take no loop: one byte, or a varint
/// that ends within the 8 bytes read as one word (values below 2^56), whose 7-bit groups are
/// gathered in three steps of masks and shifts.
#[inline(always)]
fn varint_at(raw: &[u8], i: usize) -> Result<(u64, usize)> {
    if let Some(&b) = raw.get(i) {
        if b < 0x80 {
            return Ok((u64::from(b), i + 1));
        }
    }
    if let Some(word) = raw.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        // The high bit of each byte that ends a varint.
        let ends = !w & 0x8080_8080_8080_8080;
        if ends != 0 {
            let len = ends.trailing_zeros() as usize / 8 + 1;
            let x = w & (u64::MAX >> (64 - 8 * len));
            // Pairs of 7-bit groups into 14 bits, pairs of those into 28, then 56.
            let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
            let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
            let v = (x & 0x0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
            return Ok((v, i + len));
        }
    }
    varint_at_bytewise(raw, i)
}

/// [`varint_at`] a byte at a time: near the end of `raw`, for varints longer than 8 bytes, and
/// for the errors (past the end, longer than 10 bytes, over u64).
#[cold]
fn varint_at_bytewise(raw: &[u8], mut i: usize) -> Result<(u64, usize)> {
    let mut v = 0u64;
    for k in 0..10 {
        let b = *raw.get(i).ok_or_else(|| corrupt("varint past end"))?;
        i += 1;
        if k == 9 && b > 1 {
            return Err(corrupt("varint overflows u64"));
        }
        v |= u64::from(b & 0x7f) << (7 * k);
        if b & 0x80 == 0 {
            return Ok((v, i));
        }
    }
    Err(corrupt("varint longer than 10 bytes"))
}

/// The start column's `n` delta varints, summed into absolute start times in `out` (cleared
/// first; its allocation is reused). Exactly `n` varints must fill `raw`.
pub fn start_times_into(raw: &[u8], n: usize, out: &mut Vec<u64>) -> Result<()> {
    out.clear();
    out.reserve(n);
    let (mut i, mut acc) = (0, 0u64);
    while out.len() < n {
        let (v, next) = varint_at(raw, i)?;
        acc = acc
            .checked_add(v)
            .ok_or_else(|| corrupt("start time overflow"))?;
        out.push(acc);
        i = next;
    }
    if i != raw.len() {
        return Err(corrupt("varint column trailing bytes"));
    }
    Ok(())
}

/// `n` varints from byte `i` of `raw` and the offset after them (the rest of `raw` is not read).
pub fn varints_from(raw: &[u8], mut i: usize, n: usize) -> Result<(Vec<u64>, usize)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (v, next) = varint_at(raw, i)?;
        out.push(v);
        i = next;
    }
    Ok((out, i))
}

/// The offset after the `count` varints starting at byte `i` of `raw`, found by counting their
/// last bytes (high bit clear) a word at a time; the skipped values are not decoded, so their
/// 10-byte limit is not checked (nothing reads them).
pub fn skip_varints(raw: &[u8], mut i: usize, mut count: usize) -> Result<usize> {
    const W: usize = 64;
    while count > 0 {
        let rest = raw.get(i..).ok_or_else(|| corrupt("varint past end"))?;
        if count >= W && rest.len() >= W {
            let ends = rest[..W].iter().filter(|&&b| b & 0x80 == 0).count();
            if ends <= count {
                (i, count) = (i + W, count - ends);
                continue;
            }
        }
        let p = rest
            .iter()
            .position(|&b| b & 0x80 == 0)
            .ok_or_else(|| corrupt("varint past end"))?;
        (i, count) = (i + p + 1, count - 1);
    }
    Ok(i)
}

/// Values `per_row` varints wide at `rows` of a column of such rows (one pass, decoding only
/// the rows asked for and skipping the others; the column must hold exactly `n * per_row`
/// varints).
pub fn varint_rows(raw: &[u8], n: usize, per_row: usize, rows: &[usize]) -> Result<Vec<Vec<u64>>> {
    let mut want: Vec<(usize, usize)> = rows
        .iter()
        .copied()
        .enumerate()
        .map(|(k, r)| (r, k))
        .collect();
    want.sort_unstable();
    let mut out = vec![Vec::new(); rows.len()];
    let (mut row, mut i) = (0, 0);
    let mut w = want.iter().peekable();
    while let Some(&&(r, _)) = w.peek() {
        if r >= n {
            return Err(corrupt("row past varint column end"));
        }
        i = skip_varints(raw, i, (r - row) * per_row)?;
        let (vals, next) = varints_from(raw, i, per_row)?;
        (row, i) = (r + 1, next);
        while let Some(&&(r2, k)) = w.peek() {
            if r2 != r {
                break;
            }
            out[k] = vals.clone();
            w.next();
        }
    }
    i = skip_varints(raw, i, (n - row) * per_row)?;
    if i != raw.len() {
        return Err(corrupt("varint column trailing bytes"));
    }
    Ok(out)
}

/// Value `idx` of a bit-packed run of `width`-bit values (LSB first); `data` was length-checked.
#[inline]
pub fn get_bits(data: &[u8], idx: usize, width: u8) -> u32 {
    if width == 0 {
        return 0;
    }
    let bit = idx * usize::from(width);
    let at = bit / 8;
    // One unaligned load away from the end (filters scan every id of a block); a short copy there.
    let w = match data
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
    {
        Some(w) => w,
        None => {
            let mut w = [0u8; 8];
            let avail = data.len().saturating_sub(at).min(8);
            w[..avail].copy_from_slice(&data[at..at + avail]);
            w
        }
    };
    let v = u64::from_le_bytes(w) >> (bit % 8);
    (v & ((1u64 << width) - 1)) as u32
}

/// Reads the `[width][data]` header of a bit-packed run of `n` values.
pub fn bitpacked<'a>(r: &mut Reader<'a>, n: usize) -> Result<(u8, &'a [u8])> {
    let width = r.u8()?;
    if width > 32 {
        return Err(corrupt(format!("bit width {width} > 32")));
    }
    let nbytes = (n as u64 * u64::from(width)).div_ceil(8);
    let data = r.bytes(usize::try_from(nbytes).map_err(|_| corrupt("bitpack length"))?)?;
    Ok((width, data))
}

/// Values at `rows` of a string column of `n` rows (`codec::strdict` layout). The dictionary is
/// walked without allocating; only the values returned are checked as UTF-8 and copied.
pub fn str_rows(raw: &[u8], n: usize, rows: &[usize]) -> Result<Vec<Option<String>>> {
    let mut r = Reader::new(raw);
    if raw.first() != Some(&0) {
        // Numeric mode: sequential, decode it all.
        let v = strdict::decode_vals(&mut r, n)?;
        r.finish("string column")?;
        let strdict::StrVals::Num(nums) = v else {
            return Err(corrupt("string column mode"));
        };
        return Ok(rows
            .iter()
            .map(|&i| nums.get(i).copied().flatten().map(|x| x.to_string()))
            .collect());
    }
    r.u8()?;
    let d = r.count(1)?;
    let mut dict = Vec::with_capacity(d);
    for _ in 0..d {
        dict.push(r.len_bytes()?);
    }
    let (width, data) = bitpacked(&mut r, n)?;
    r.finish("string column")?;
    rows.iter()
        .map(|&i| match get_bits(data, i, width) as usize {
            0 => Ok(None),
            id if id > d => Err(corrupt(format!("dictionary id {id} > {d}"))),
            id => std::str::from_utf8(dict[id - 1])
                .map(|s| Some(s.to_owned()))
                .map_err(|_| corrupt("dictionary entry is not UTF-8")),
        })
        .collect()
}

/// A string column's ids (bit-packed) and the id of one value, for filtering by equality.
pub enum StrMatch<'a> {
    /// The block does not hold the value.
    Absent,
    /// Row i matches when its packed id equals `id`.
    Dict { width: u8, data: &'a [u8], id: u32 },
    /// Numeric mode: the decoded values.
    Num(Vec<Option<u64>>, u64),
}

impl StrMatch<'_> {
    #[inline]
    pub fn matches(&self, i: usize) -> bool {
        match self {
            StrMatch::Absent => false,
            StrMatch::Dict { width, data, id } => get_bits(data, i, *width) == *id,
            StrMatch::Num(v, n) => v.get(i).copied().flatten() == Some(*n),
        }
    }
}

/// Prepares an equality filter on a string column of `n` rows: the dictionary is walked without
/// allocating and compared as bytes (every id is checked against the dictionary, as on decode).
pub fn str_match<'a>(raw: &'a [u8], n: usize, want: &str) -> Result<StrMatch<'a>> {
    let mut r = Reader::new(raw);
    if raw.first() != Some(&0) {
        let v = strdict::decode_vals(&mut r, n)?;
        r.finish("string column")?;
        let strdict::StrVals::Num(nums) = v else {
            return Err(corrupt("string column mode"));
        };
        return Ok(match strdict::canonical_u64(want) {
            Some(x) => StrMatch::Num(nums, x),
            None => StrMatch::Absent,
        });
    }
    r.u8()?;
    let d = r.count(1)?;
    let mut id = None;
    for k in 0..d {
        if r.len_bytes()? == want.as_bytes() && id.is_none() {
            id = Some(k as u32 + 1);
        }
    }
    let (width, data) = bitpacked(&mut r, n)?;
    r.finish("string column")?;
    if let Some(bad) = (0..n)
        .map(|i| get_bits(data, i, width))
        .find(|&x| x as usize > d)
    {
        return Err(corrupt(format!("dictionary id {bad} > {d}")));
    }
    Ok(match id {
        Some(id) => StrMatch::Dict { width, data, id },
        None => StrMatch::Absent,
    })
}

/// Which rows of string column `col` hold `want`, for a `MOB4` body whose column is stored as
/// row groups and whose dictionary is in hash order, `pos` being `want`'s position in it by the
/// header bitmap's rank: reads the dictionary segment holding entry `pos` (to confirm it is
/// `want`) and the ids segment, never the rest of the dictionary. `None` when that does not apply
/// (older body, plain frame, numeric mode, or the entry differs because two values share a hash):
/// the caller then walks the whole column. Every id is checked against the dictionary length.
pub fn str_match_ranked(
    body: &impl ColumnRead,
    col: usize,
    pos: u64,
    want: &str,
) -> Result<Option<Vec<bool>>> {
    if !body.hash_dicts() || body.group_rows() == 0 {
        return Ok(None);
    }
    let Some(segs) = body.segments(col)? else {
        return Ok(None);
    };
    let n = body.rows();
    let seg0 = body.segment(col, 0)?;
    let mut r = Reader::new(&seg0);
    if r.u8()? != 0 {
        return Ok(None);
    }
    let d = dict_len(&mut r, n)?;
    let nd = d.div_ceil(DICT_SEGMENT_ENTRIES).max(1);
    if segs.len() != nd + 1 {
        return Err(corrupt(format!(
            "string column {col} has {} segments",
            segs.len()
        )));
    }
    let Ok(pos) = usize::try_from(pos) else {
        return Ok(None);
    };
    if pos >= d {
        return Ok(None);
    }
    let s = pos / DICT_SEGMENT_ENTRIES;
    let run;
    let mut r = match s {
        0 => r,
        _ => {
            run = body.segment(col, s)?;
            Reader::new(&run)
        }
    };
    for _ in 0..pos % DICT_SEGMENT_ENTRIES {
        r.len_bytes()?;
    }
    if r.len_bytes()? != want.as_bytes() {
        return Ok(None);
    }
    let id = pos as u32 + 1;
    let ids = body.segment(col, nd)?;
    let mut ir = Reader::new(&ids);
    let (width, data) = bitpacked(&mut ir, n)?;
    ir.finish("string ids")?;
    let mut hit = Vec::with_capacity(n);
    for i in 0..n {
        let x = get_bits(data, i, width);
        if x as usize > d {
            return Err(corrupt(format!("dictionary id {x} > {d}")));
        }
        hit.push(x == id);
    }
    Ok(Some(hit))
}

/// The dictionary length of a string column of `n` rows (at most `n`: every entry is some row's).
pub fn dict_len(r: &mut Reader<'_>, n: usize) -> Result<usize> {
    let d = r.varint()?;
    if d > n as u64 {
        return Err(corrupt(format!("dictionary of {d} entries for {n} rows")));
    }
    Ok(d as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::bitpack;
    use proptest::prelude::*;

    proptest! {
        /// Random access into a bit-packed run equals unpacking it, for every width and length
        /// (the last values sit within 8 bytes of the end).
        #[test]
        fn get_bits_equals_unpack(vals in proptest::collection::vec(any::<u32>(), 0..100),
                                  width in 0u32..=32) {
            let vals: Vec<u32> = vals
                .iter()
                .map(|v| if width == 32 { *v } else { v & ((1u32 << width) - 1) })
                .collect();
            let mut raw = Vec::new();
            bitpack::pack(&mut raw, &vals);
            let mut r = Reader::new(&raw);
            let (w, data) = bitpacked(&mut r, vals.len()).unwrap();
            let mut r2 = Reader::new(&raw);
            let all = bitpack::unpack(&mut r2, vals.len()).unwrap();
            prop_assert_eq!(&all, &vals);
            for (i, v) in vals.iter().enumerate() {
                prop_assert_eq!(get_bits(data, i, w), *v);
            }
        }

        /// The word-at-a-time varint reader agrees with the bytewise one at every offset of any
        /// bytes, errors included (overlong, over u64, cut off by the end).
        #[test]
        fn varint_at_equals_bytewise(raw in proptest::collection::vec(
                                         prop_oneof![any::<u8>(), 0x80u8..=0xff, Just(0xffu8)], 0..40)) {
            for i in 0..=raw.len() {
                let fast = varint_at(&raw, i).map_err(|e| e.to_string());
                let slow = varint_at_bytewise(&raw, i).map_err(|e| e.to_string());
                prop_assert_eq!(fast, slow, "at {}", i);
            }
        }

        /// Skipping varints by counting their last bytes lands where decoding them one by one
        /// does; `varint_rows` (which skips between the rows asked for) equals decoding every row;
        /// `start_times_into` equals the running sums; and a column one varint short or long is an
        /// error for both whole-column readers.
        #[test]
        fn varint_shortcuts_equal_decoding(vals in proptest::collection::vec(
                                               prop_oneof![0u64..128, 0u64..100_000, any::<u64>()], 1..400),
                                           per_row in 1usize..5,
                                           picks in proptest::collection::vec(any::<usize>(), 0..12)) {
            let mut raw = Vec::new();
            for v in &vals {
                crate::codec::put_varint(&mut raw, *v);
            }
            let all = varints(&raw, vals.len()).unwrap();
            prop_assert_eq!(&all, &vals);
            let mut at = vec![0usize];
            for k in 0..vals.len() {
                at.push(varint_at(&raw, at[k]).unwrap().1);
            }
            for &p in &picks {
                let (from, count) = (p % vals.len(), (p / 7) % vals.len());
                let count = count.min(vals.len() - from);
                prop_assert_eq!(skip_varints(&raw, at[from], count).unwrap(), at[from + count]);
                let (got, next) = varints_from(&raw, at[from], count).unwrap();
                prop_assert_eq!(&got[..], &vals[from..from + count]);
                prop_assert_eq!(next, at[from + count]);
            }
            prop_assert!(skip_varints(&raw, 0, vals.len() + 1).is_err());
            let n = vals.len() / per_row;
            let rows: Vec<usize> = picks.iter().map(|p| p % n.max(1)).filter(|_| n > 0).collect();
            let body = &raw[..at[n * per_row]];
            let got = varint_rows(body, n, per_row, &rows).unwrap();
            for (k, &r) in rows.iter().enumerate() {
                prop_assert_eq!(&got[k][..], &vals[r * per_row..(r + 1) * per_row]);
            }
            if n > 1 {
                prop_assert!(varint_rows(body, n - 1, per_row, &[]).is_err());
                prop_assert!(varint_rows(body, n + 1, per_row, &[]).is_err());
            }
            let small: Vec<u64> = vals.iter().map(|v| v % 1_000_000).collect();
            let mut raw = Vec::new();
            for v in &small {
                crate::codec::put_varint(&mut raw, *v);
            }
            let mut starts = vec![42];
            start_times_into(&raw, small.len(), &mut starts).unwrap();
            let sums: Vec<u64> = small.iter().scan(0, |a, v| { *a += v; Some(*a) }).collect();
            prop_assert_eq!(starts, sums);
            let mut v = Vec::new();
            prop_assert!(start_times_into(&raw, small.len() + 1, &mut v).is_err());
            if small.len() > 1 {
                prop_assert!(start_times_into(&raw, small.len() - 1, &mut v).is_err());
            }
        }
    }
}
