//! Block headers: the per-block summary kept apart from the body (time and duration ranges, error
//! count, env presence, hash bitmaps of method/tool/user/session values) so `list` can skip blocks
//! without reading or decompressing them.

use roaring::RoaringBitmap;

use super::columns::StrField;
use super::corrupt;
use super::{SpanFilter, StatusFilter};
use crate::codec::{hash32, put_varint, Reader};
use crate::error::Result;

const HEADER_VERSION: u8 = 1;

/// The string fields whose values are summarized as hash bitmaps, in stored order.
pub const BITMAP_FIELDS: [StrField; 4] = [
    StrField::Method,
    StrField::Tool,
    StrField::UserId,
    StrField::SessionId,
];

#[derive(Clone, Debug, PartialEq)]
pub struct BlockHeader {
    pub rows: u32,
    pub min_start: u64,
    pub max_start: u64,
    pub min_dur: u64,
    pub max_dur: u64,
    pub errors: u32,
    /// Bit `env as u8` is set when a row of that env is present.
    pub env_mask: u8,
    pub flags: u8,
    pub body_bytes: u32,
    /// `hash32` of each distinct value of [`BITMAP_FIELDS`] present in the block.
    pub bitmaps: [RoaringBitmap; 4],
}

impl BlockHeader {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(64);
        out.push(HEADER_VERSION);
        out.extend_from_slice(&self.rows.to_le_bytes());
        for v in [self.min_start, self.max_start, self.min_dur, self.max_dur] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.errors.to_le_bytes());
        out.push(self.env_mask);
        out.push(self.flags);
        out.extend_from_slice(&self.body_bytes.to_le_bytes());
        let mut bm_bytes = Vec::new();
        for bm in &self.bitmaps {
            bm_bytes.clear();
            bm.serialize_into(&mut bm_bytes)?;
            put_varint(&mut out, bm_bytes.len() as u64);
            out.extend_from_slice(&bm_bytes);
        }
        Ok(out)
    }

    #[cfg(test)]
    pub fn decode(bytes: &[u8]) -> Result<BlockHeader> {
        let mut r = Reader::new(bytes);
        if r.u8()? != HEADER_VERSION {
            return Err(corrupt("block header version"));
        }
        let rows = r.u32_le()?;
        let (min_start, max_start, min_dur, max_dur) =
            (r.u64_le()?, r.u64_le()?, r.u64_le()?, r.u64_le()?);
        let (errors, env_mask, flags, body_bytes) = (r.u32_le()?, r.u8()?, r.u8()?, r.u32_le()?);
        let mut bitmaps: [RoaringBitmap; 4] = Default::default();
        for bm in &mut bitmaps {
            let b = r.len_bytes()?;
            *bm = RoaringBitmap::deserialize_from(b)
                .map_err(|e| corrupt(format!("header bitmap: {e}")))?;
        }
        r.finish("block header")?;
        let h = BlockHeader {
            rows,
            min_start,
            max_start,
            min_dur,
            max_dur,
            errors,
            env_mask,
            flags,
            body_bytes,
            bitmaps,
        };
        if rows == 0 || errors > rows || min_start > max_start || min_dur > max_dur || env_mask > 3
        {
            return Err(corrupt("block header fields inconsistent"));
        }
        Ok(h)
    }

    /// False when no row of this block can satisfy `f` with a start time in `[lo, top]`. The
    /// reference for [`Summary::may_match`] plus [`bitmaps_match`] (tested equal).
    #[cfg(test)]
    pub fn may_match(&self, f: &SpanFilter, lo: u64, top: u64) -> bool {
        if self.max_start < lo || self.min_start > top {
            return false;
        }
        if f.env.is_some_and(|e| self.env_mask & (1 << (e as u8)) == 0) {
            return false;
        }
        if f.min_duration_nanos.is_some_and(|d| self.max_dur < d) {
            return false;
        }
        match f.status {
            Some(StatusFilter::Error) if self.errors == 0 => return false,
            Some(StatusFilter::Ok) if self.errors == self.rows => return false,
            _ => {}
        }
        let wanted = [&f.method, &f.tool, &f.user_id, &f.session_id];
        wanted
            .iter()
            .zip(&self.bitmaps)
            .all(|(w, bm)| w.as_deref().is_none_or(|v| bm.contains(hash32(v))))
    }
}

/// The fixed-width part of a header (everything but the bitmaps) plus its key: what `list` and
/// `trace` keep cached per partition to plan a query without reading or decoding bitmaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub org: u32,
    pub server: u32,
    pub block: u64,
    pub rows: u32,
    pub min_start: u64,
    pub max_start: u64,
    pub max_dur: u64,
    pub errors: u32,
    pub env_mask: u8,
    pub body_bytes: u32,
}

impl Summary {
    /// Decodes the fixed fields of an encoded header (checked as in [`BlockHeader::decode`]);
    /// the bitmaps are skipped, not validated (see [`bitmaps_match`]).
    pub fn decode(key: (u32, u32, u64), bytes: &[u8]) -> Result<Summary> {
        let mut r = Reader::new(bytes);
        if r.u8()? != HEADER_VERSION {
            return Err(corrupt("block header version"));
        }
        let rows = r.u32_le()?;
        let (min_start, max_start, min_dur, max_dur) =
            (r.u64_le()?, r.u64_le()?, r.u64_le()?, r.u64_le()?);
        let (errors, env_mask, _flags, body_bytes) = (r.u32_le()?, r.u8()?, r.u8()?, r.u32_le()?);
        if rows == 0 || errors > rows || min_start > max_start || min_dur > max_dur || env_mask > 3
        {
            return Err(corrupt("block header fields inconsistent"));
        }
        Ok(Summary {
            org: key.0,
            server: key.1,
            block: key.2,
            rows,
            min_start,
            max_start,
            max_dur,
            errors,
            env_mask,
            body_bytes,
        })
    }

    /// [`BlockHeader::may_match`] without the bitmaps.
    pub fn may_match(&self, f: &SpanFilter, lo: u64, top: u64) -> bool {
        if self.max_start < lo || self.min_start > top {
            return false;
        }
        if f.env.is_some_and(|e| self.env_mask & (1 << (e as u8)) == 0) {
            return false;
        }
        if f.min_duration_nanos.is_some_and(|d| self.max_dur < d) {
            return false;
        }
        match f.status {
            Some(StatusFilter::Error) => self.errors > 0,
            Some(StatusFilter::Ok) => self.errors < self.rows,
            None => true,
        }
    }
}

/// Whether a filter names any bitmap field (then [`bitmaps_match`] is worth a header read).
pub fn filter_uses_bitmaps(f: &SpanFilter) -> bool {
    f.method.is_some() || f.tool.is_some() || f.user_id.is_some() || f.session_id.is_some()
}

/// For each of [`BITMAP_FIELDS`] a filter names, the number of distinct value hashes in the
/// block's bitmap below the value's hash: the value's 0-based position in the block's hash-ordered
/// dictionary (`MOB4` bodies) when no two of its values share a hash.
pub type Ranks = [Option<u64>; 4];

/// The bitmap part of [`BlockHeader::may_match`], deserializing only the bitmaps `f` names:
/// `None` when a bitmap rules the block out, else the [`Ranks`] of the values `f` names.
pub fn bitmaps_match(bytes: &[u8], f: &SpanFilter) -> Result<Option<Ranks>> {
    let mut r = Reader::new(bytes);
    r.bytes(FIXED_BYTES)?;
    let mut ranks: Ranks = [None; 4];
    for (rank, want) in ranks
        .iter_mut()
        .zip([&f.method, &f.tool, &f.user_id, &f.session_id])
    {
        let b = r.len_bytes()?;
        if let Some(v) = want {
            match rank_below(b, hash32(v))? {
                Some(k) => *rank = Some(k),
                None => return Ok(None),
            }
        }
    }
    r.finish("block header")?;
    Ok(Some(ranks))
}

/// Cookie of a portable roaring bitmap without run containers (what `serialize_into` writes).
const ROARING_COOKIE_NO_RUNS: u32 = 12346;

/// `None` when the serialized bitmap `b` lacks `h`, else how many of its values are below `h`.
/// Reads our writer's layout (no run containers) in place: a user bitmap of a full block has
/// ~2,000 one-value containers, and building it cost more than the rest of the block's filter.
/// Any other layout is deserialized. Out-of-range offsets are `Corrupt`, never a panic.
pub fn rank_below(b: &[u8], h: u32) -> Result<Option<u64>> {
    let le16 = |x: &[u8], i: usize| u16::from_le_bytes([x[i], x[i + 1]]);
    let mut r = Reader::new(b);
    if b.len() < 8 || r.u32_le()? != ROARING_COOKIE_NO_RUNS {
        let bm = RoaringBitmap::deserialize_from(b)
            .map_err(|e| corrupt(format!("header bitmap: {e}")))?;
        return Ok(bm.contains(h).then(|| bm.rank(h) - 1));
    }
    let n = r.u32_le()? as usize;
    if n > 1 << 16 {
        return Err(corrupt("header bitmap container count"));
    }
    let desc = r.bytes(n * 4)?;
    let offsets = r.bytes(n * 4)?;
    let (hk, lo) = ((h >> 16) as u16, h as u16);
    let mut below = 0u64;
    for i in 0..n {
        let (key, card) = (le16(desc, 4 * i), u64::from(le16(desc, 4 * i + 2)) + 1);
        if key < hk {
            below += card;
            continue;
        }
        if key > hk {
            return Ok(None);
        }
        let at = u32::from_le_bytes([
            offsets[4 * i],
            offsets[4 * i + 1],
            offsets[4 * i + 2],
            offsets[4 * i + 3],
        ]) as usize;
        let len = if card <= 4096 {
            2 * card as usize
        } else {
            8192
        };
        let data = at
            .checked_add(len)
            .and_then(|end| b.get(at..end))
            .ok_or_else(|| corrupt("header bitmap container past end"))?;
        if card <= 4096 {
            // Sorted u16 values: binary search.
            let (mut a, mut z) = (0usize, card as usize);
            while a < z {
                let m = (a + z) / 2;
                match le16(data, 2 * m).cmp(&lo) {
                    std::cmp::Ordering::Less => a = m + 1,
                    std::cmp::Ordering::Greater => z = m,
                    std::cmp::Ordering::Equal => return Ok(Some(below + m as u64)),
                }
            }
            return Ok(None);
        }
        let word =
            |w: usize| u64::from_le_bytes(data[8 * w..8 * w + 8].try_into().unwrap_or([0; 8]));
        let (w, bit) = (usize::from(lo) / 64, u32::from(lo) % 64);
        if word(w) >> bit & 1 == 0 {
            return Ok(None);
        }
        let inside: u64 = (0..w).map(|k| u64::from(word(k).count_ones())).sum::<u64>()
            + u64::from((word(w) & ((1u64 << bit) - 1)).count_ones());
        return Ok(Some(below + inside));
    }
    Ok(None)
}

/// Bytes before the bitmaps: version, rows, 4 x u64, errors, env mask, flags, body bytes.
const FIXED_BYTES: usize = 1 + 4 + 4 * 8 + 4 + 1 + 1 + 4;

/// Rows and min start of an encoded header, without decoding its bitmaps.
pub fn peek(bytes: &[u8]) -> Result<(u32, u64)> {
    let mut r = Reader::new(bytes);
    if r.u8()? != HEADER_VERSION {
        return Err(corrupt("block header version"));
    }
    Ok((r.u32_le()?, r.u64_le()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The in-place rank equals `RoaringBitmap`'s, for sparse (array) and dense (bitmap)
        /// containers, on values present and absent.
        #[test]
        fn rank_below_equals_roaring(sparse in proptest::collection::vec(any::<u32>(), 0..300),
                                     dense_base in any::<u16>(), dense in 0usize..9000,
                                     probes in proptest::collection::vec(any::<u32>(), 0..50)) {
            let mut bm: RoaringBitmap = sparse.iter().copied().collect();
            let base = u32::from(dense_base) << 16;
            bm.extend((0..dense as u32).map(|k| base + k * 7 % 65536));
            let mut bytes = Vec::new();
            bm.serialize_into(&mut bytes).unwrap();
            let mut qs = probes.clone();
            qs.extend(sparse.iter().copied());
            qs.extend([base, base + 7, base + 65535]);
            for q in qs {
                let want = bm.contains(q).then(|| bm.rank(q) - 1);
                prop_assert_eq!(rank_below(&bytes, q).unwrap(), want);
            }
            // Damaged bytes: an error or an answer, never a panic.
            for cut in [bytes.len() / 2, bytes.len().saturating_sub(1)] {
                let _ = rank_below(&bytes[..cut], 7);
            }
        }

        #[test]
        fn round_trip(hashes in proptest::collection::vec(any::<u32>(), 0..50), rows in 1u32..10_000,
                      a in any::<u64>(), b in any::<u64>()) {
            let mut h = BlockHeader {
                rows, min_start: a.min(b), max_start: a.max(b), min_dur: 0, max_dur: b, errors: rows / 2,
                env_mask: 3, flags: 0, body_bytes: 77, bitmaps: Default::default(),
            };
            for (i, x) in hashes.iter().enumerate() {
                h.bitmaps[i % 4].insert(*x);
            }
            let bytes = h.encode().unwrap();
            prop_assert_eq!(BlockHeader::decode(&bytes).unwrap(), h.clone());
            prop_assert_eq!(peek(&bytes).unwrap(), (h.rows, h.min_start));
            for cut in [0, bytes.len() / 2, bytes.len() - 1] {
                prop_assert!(BlockHeader::decode(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn summary_and_bitmaps_agree_with_header(hashes in proptest::collection::vec(0u32..6, 0..12),
                rows in 1u32..100, errors in 0u32..100, env_mask in 1u8..4, durs in any::<[u64; 2]>(),
                starts in any::<[u64; 2]>(), bounds in any::<[u64; 2]>(), mask in 0u32..512, vals in any::<[u8; 6]>()) {
            let names = ["a", "b", "c", "d", "e", "f"];
            let mut h = BlockHeader {
                rows, min_start: starts[0].min(starts[1]), max_start: starts[0].max(starts[1]),
                min_dur: durs[0].min(durs[1]), max_dur: durs[0].max(durs[1]), errors: errors.min(rows),
                env_mask, flags: 0, body_bytes: 9, bitmaps: Default::default(),
            };
            for (i, x) in hashes.iter().enumerate() {
                h.bitmaps[i % 4].insert(hash32(names[*x as usize]));
            }
            let pick = |bit: u32, k: usize| (mask & (1 << bit) != 0).then(|| names[vals[k] as usize % 6].to_string());
            let f = SpanFilter {
                env: (mask & 1 != 0).then_some(if mask & 2 != 0 { crate::model::Env::Live } else { crate::model::Env::Test }),
                status: (mask & 4 != 0).then_some(if mask & 8 != 0 { StatusFilter::Ok } else { StatusFilter::Error }),
                min_duration_nanos: (mask & 16 != 0).then_some(bounds[0] / 2 + durs[0] / 2),
                method: pick(5, 0), tool: pick(6, 1), user_id: pick(7, 2), session_id: pick(8, 3),
                ..Default::default()
            };
            let (lo, top) = (bounds[0].min(bounds[1]), bounds[0].max(bounds[1]));
            let bytes = h.encode().unwrap();
            let s = Summary::decode((1, 2, 3), &bytes).unwrap();
            prop_assert_eq!(s.body_bytes, 9);
            let fast = s.may_match(&f, lo, top) && bitmaps_match(&bytes, &f).unwrap().is_some();
            prop_assert_eq!(fast, h.may_match(&f, lo, top));
        }
    }
}
