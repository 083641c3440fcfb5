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

/// The bitmap part of [`BlockHeader::may_match`], deserializing only the bitmaps `f` names.
pub fn bitmaps_match(bytes: &[u8], f: &SpanFilter) -> Result<bool> {
    let mut r = Reader::new(bytes);
    r.bytes(FIXED_BYTES)?;
    for want in [&f.method, &f.tool, &f.user_id, &f.session_id] {
        let b = r.len_bytes()?;
        if let Some(v) = want {
            let bm = RoaringBitmap::deserialize_from(b)
                .map_err(|e| corrupt(format!("header bitmap: {e}")))?;
            if !bm.contains(hash32(v)) {
                return Ok(false);
            }
        }
    }
    r.finish("block header")?;
    Ok(true)
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
            let fast = s.may_match(&f, lo, top) && bitmaps_match(&bytes, &f).unwrap();
            prop_assert_eq!(fast, h.may_match(&f, lo, top));
        }
    }
}
