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

    /// False when no row of this block can satisfy `f` with a start time in `[lo, top]`.
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
    }
}
