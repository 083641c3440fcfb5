//! Encoding of a column of optional strings. Two modes, chosen per block by the encoder:
//!
//! - mode 0, dictionary: each distinct value stored once, rows hold bit-packed ids (0 = absent,
//!   k = k-th dictionary entry);
//! - mode 1, numeric: every present value is a canonical decimal `u64` (JSON-RPC request ids are
//!   mostly small integers): a presence bitmap, then one varint per present row. Lossless because
//!   only canonical spellings (no sign, no leading zero) are ever encoded this way.

use std::borrow::Cow;

use rustc_hash::FxHashMap;

use super::Result;
use super::{bitpack, corrupt, put_str, put_varint, Reader};

const MODE_DICT: u8 = 0;
const MODE_NUM: u8 = 1;

/// The values of one string column in memory, as the block encoder and the compaction merge see
/// them. `Dict` ids are 0 for absent, k for `dict[k - 1]`; every dictionary entry is used.
#[derive(Debug, Clone, PartialEq)]
pub enum StrVals<'a> {
    Dict {
        dict: Vec<Cow<'a, str>>,
        ids: Vec<u32>,
    },
    Num(Vec<Option<u64>>),
}

impl<'a> StrVals<'a> {
    /// Dictionary-encodes `values` (first-appearance order, which keeps encoding deterministic).
    /// Inlined into its caller, the span writer's column builder, where its hash lookups are most
    /// of the work: left to the compiler, it stopped inlining it when the scan's pools added
    /// callers of `bufs::take`, and the appends took 2.2% more instructions.
    #[inline(always)]
    pub fn collect(values: impl Iterator<Item = Option<&'a str>>) -> StrVals<'a> {
        let mut dict: Vec<Cow<'a, str>> = Vec::new();
        let mut index: FxHashMap<&'a str, u32> = FxHashMap::default();
        let mut ids = crate::bufs::take(values.size_hint().0);
        let mut last: Option<(&'a str, u32)> = None;
        for v in values {
            let id = match v {
                None => 0,
                // Runs of one value are common (method, client, service): skip the hash.
                Some(s) if last.is_some_and(|(l, _)| super::same_str(l, s)) => {
                    last.map_or(0, |l| l.1)
                }
                Some(s) => {
                    let id = *index.entry(s).or_insert_with(|| {
                        dict.push(Cow::Borrowed(s));
                        dict.len() as u32
                    });
                    last = Some((s, id));
                    id
                }
            };
            ids.push(id);
        }
        StrVals::Dict { dict, ids }
    }

    /// `values` as a numeric column when every present one is a canonical decimal `u64` (what
    /// JSON-RPC request ids mostly are), else `None`. Rows stay numeric through merges and
    /// encoding (mode 1), with no dictionary of spellings built and parsed back.
    pub fn collect_numeric(values: impl Iterator<Item = Option<&'a str>>) -> Option<StrVals<'a>> {
        let mut out = crate::bufs::take(values.size_hint().0);
        for v in values {
            out.push(match v {
                None => None,
                Some(s) => Some(canonical_u64(s)?),
            });
        }
        Some(StrVals::Num(out))
    }

    /// These values with every borrowed dictionary entry copied and no spare capacity (the
    /// vectors may come from the writer's pools, sized for larger blocks).
    pub fn into_owned(self) -> StrVals<'static> {
        match self {
            StrVals::Dict { dict, mut ids } => StrVals::Dict {
                dict: dict
                    .into_iter()
                    .map(|s| Cow::Owned(s.into_owned()))
                    .collect(),
                ids: {
                    ids.shrink_to_fit();
                    ids
                },
            },
            StrVals::Num(mut v) => {
                v.shrink_to_fit();
                StrVals::Num(v)
            }
        }
    }

    /// Heap bytes held: vectors by capacity, owned dictionary strings by length.
    pub fn heap_bytes(&self) -> usize {
        match self {
            StrVals::Dict { dict, ids } => {
                dict.capacity() * std::mem::size_of::<Cow<'_, str>>()
                    + dict
                        .iter()
                        .map(|s| match s {
                            Cow::Owned(s) => s.capacity(),
                            Cow::Borrowed(_) => 0,
                        })
                        .sum::<usize>()
                    + ids.capacity() * 4
            }
            StrVals::Num(v) => v.capacity() * std::mem::size_of::<Option<u64>>(),
        }
    }

    /// Gives the per-row vector back to the thread's pool (`crate::bufs`).
    pub fn recycle(self) {
        match self {
            StrVals::Dict { ids, .. } => crate::bufs::give(ids),
            StrVals::Num(v) => crate::bufs::give(v),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            StrVals::Dict { ids, .. } => ids.len(),
            StrVals::Num(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether row `i` has a value.
    pub fn present(&self, i: usize) -> bool {
        match self {
            StrVals::Dict { ids, .. } => ids[i] != 0,
            StrVals::Num(v) => v[i].is_some(),
        }
    }

    /// Each distinct present value once (any order).
    pub fn distinct(&self, mut f: impl FnMut(&str)) {
        match self {
            StrVals::Dict { dict, .. } => dict.iter().for_each(|s| f(s)),
            StrVals::Num(v) => {
                let mut seen: Vec<u64> = v.iter().flatten().copied().collect();
                seen.sort_unstable();
                seen.dedup();
                seen.iter().for_each(|n| f(&n.to_string()));
            }
        }
    }
}

/// `Some(n)` when `s` is the canonical decimal spelling of `n`.
pub fn canonical_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 20 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    if !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse().ok()
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends the column in the smaller of the two modes (raw size; both compress alike).
pub fn encode_vals(out: &mut Vec<u8>, vals: &StrVals<'_>) {
    match vals {
        StrVals::Num(v) => encode_num(out, v.iter().copied()),
        StrVals::Dict { dict, ids } => {
            let nums: Option<Vec<u64>> = dict.iter().map(|s| canonical_u64(s)).collect();
            if let Some(nums) = nums.filter(|n| !n.is_empty()) {
                let n = ids.len();
                let width = bitpack::width_for(dict.len() as u32) as usize;
                let dict_size: usize =
                    dict.iter().map(|s| s.len() + 1).sum::<usize>() + (n * width).div_ceil(8);
                let num_size: usize = n.div_ceil(8)
                    + ids
                        .iter()
                        .filter(|&&id| id != 0)
                        .map(|&id| varint_len(nums[id as usize - 1]))
                        .sum::<usize>();
                if num_size < dict_size {
                    let rows = ids
                        .iter()
                        .map(|&id| (id != 0).then(|| nums[id as usize - 1]));
                    return encode_num(out, rows);
                }
            }
            out.push(MODE_DICT);
            put_varint(out, dict.len() as u64);
            for s in dict {
                put_str(out, s);
            }
            bitpack::pack(out, ids);
        }
    }
}

fn encode_num(out: &mut Vec<u8>, rows: impl Iterator<Item = Option<u64>> + Clone) {
    out.push(MODE_NUM);
    let present: Vec<u32> = rows.clone().map(|v| u32::from(v.is_some())).collect();
    bitpack::pack(out, &present);
    for v in rows.flatten() {
        put_varint(out, v);
    }
}

/// Appends `values` dictionary- or numeric-encoded (see [`encode_vals`]).
pub fn encode<'a>(out: &mut Vec<u8>, values: impl Iterator<Item = Option<&'a str>>) {
    encode_vals(out, &StrVals::collect(values));
}

/// Decodes a column into its in-memory form, borrowing dictionary strings from `raw`.
pub fn decode_vals<'a>(r: &mut Reader<'a>, rows: usize) -> Result<StrVals<'a>> {
    match r.u8()? {
        MODE_DICT => {
            let n = r.count(1)?;
            let mut dict = Vec::with_capacity(n);
            for _ in 0..n {
                dict.push(Cow::Borrowed(r.str()?));
            }
            let mut ids = crate::bufs::take(rows);
            bitpack::unpack_into(r, rows, &mut ids)?;
            // The largest id alone (a reduction the compiler vectorizes) decides.
            let top = ids.iter().copied().max().unwrap_or(0);
            if top as usize > dict.len() {
                return Err(corrupt(format!("dictionary id {top} > {}", dict.len())));
            }
            Ok(StrVals::Dict { dict, ids })
        }
        MODE_NUM => {
            let present = bitpack::unpack(r, rows)?;
            if present.iter().any(|&p| p > 1) {
                return Err(corrupt("numeric column presence width"));
            }
            let mut out = crate::bufs::take(rows);
            for p in present {
                out.push(if p == 1 { Some(r.varint()?) } else { None });
            }
            Ok(StrVals::Num(out))
        }
        m => Err(corrupt(format!("string column mode {m}"))),
    }
}

/// A decoded column for reading: the dictionary plus one id per row (numeric columns are turned
/// into a dictionary of their distinct values). The dictionary's strings lie end to end in one
/// buffer: decoding a block allocates per column, not per distinct value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StrColumn {
    /// Dictionary entry k (id k + 1) is `text[ends[k - 1]..ends[k]]` (from 0 for k = 0).
    text: String,
    ends: Vec<u32>,
    pub ids: Vec<u32>,
}

impl StrColumn {
    pub fn decode(r: &mut Reader<'_>, rows: usize) -> Result<StrColumn> {
        StrColumn::from_vals(decode_vals(r, rows)?)
    }

    /// The column of values [`decode_vals`] returned.
    pub fn from_vals(vals: StrVals<'_>) -> Result<StrColumn> {
        match vals {
            StrVals::Dict { dict, ids } => {
                let bytes = crate::bufs::take(dict.iter().map(|s| s.len()).sum());
                // An empty vector is valid UTF-8.
                let mut text = String::from_utf8(bytes).unwrap_or_default();
                let mut ends = crate::bufs::take(dict.len());
                for s in &dict {
                    text.push_str(s);
                    ends.push(u32::try_from(text.len()).map_err(|_| corrupt("dictionary size"))?);
                }
                Ok(StrColumn { text, ends, ids })
            }
            StrVals::Num(vals) => Ok(StrColumn::from_nums(&vals)),
        }
    }

    /// Hands the column's vectors to this thread's pools (`bufs`).
    pub fn recycle(self) {
        crate::bufs::give(self.text.into_bytes());
        crate::bufs::give(self.ends);
        crate::bufs::give(self.ids);
    }

    /// A numeric column's values as a dictionary of their decimal spellings.
    pub fn from_nums(vals: &[Option<u64>]) -> StrColumn {
        let mut index: FxHashMap<u64, u32> = FxHashMap::default();
        let (mut text, mut ends) = (String::new(), Vec::new());
        let ids = vals
            .iter()
            .map(|v| match v {
                None => 0,
                Some(n) => *index.entry(*n).or_insert_with(|| {
                    use std::fmt::Write;
                    // Writing to a String cannot fail; at most 20 digits per value, and a
                    // block's rows are few, so the length stays far below u32::MAX.
                    let _ = write!(text, "{n}");
                    ends.push(text.len() as u32);
                    ends.len() as u32
                }),
            })
            .collect();
        StrColumn { text, ends, ids }
    }

    /// Dictionary entry `k` (id `k + 1`).
    pub fn entry(&self, k: usize) -> &str {
        let from = match k {
            0 => 0,
            k => self.ends[k - 1] as usize,
        };
        &self.text[from..self.ends[k] as usize]
    }

    /// The dictionary in id order.
    pub fn dict(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.ends.len()).map(|k| self.entry(k))
    }

    pub fn get(&self, row: usize) -> Option<&str> {
        match self.ids.get(row).copied().unwrap_or(0) {
            0 => None,
            id => Some(self.entry(id as usize - 1)),
        }
    }

    /// The row id a value has in this block, if the block contains it at all.
    pub fn id_of(&self, value: &str) -> Option<u32> {
        self.dict().position(|d| d == value).map(|i| i as u32 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn collect_numeric_only_when_every_value_is_canonical() {
        let got =
            StrVals::collect_numeric([Some("7"), None, Some("18446744073709551615")].into_iter());
        assert!(matches!(&got, Some(StrVals::Num(v)) if *v == [Some(7), None, Some(u64::MAX)]));
        for bad in ["07", "-1", "1e3", "x", "", "18446744073709551616"] {
            assert!(
                StrVals::collect_numeric([Some("1"), Some(bad)].into_iter()).is_none(),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn round_trip(values in proptest::collection::vec(
            proptest::option::of(prop_oneof!["[a-c]{0,2}", "\\PC{0,20}", "[0-9]{1,3}", "0|00|01|18446744073709551615|18446744073709551616"]), 0..200)) {
            let mut out = Vec::new();
            encode(&mut out, values.iter().map(|v| v.as_deref()));
            let mut r = Reader::new(&out);
            let col = StrColumn::decode(&mut r, values.len()).unwrap();
            prop_assert!(r.finish("t").is_ok());
            for (i, v) in values.iter().enumerate() {
                prop_assert_eq!(col.get(i), v.as_deref());
                if let Some(s) = v {
                    prop_assert_eq!(col.entry(col.id_of(s).unwrap() as usize - 1), s.as_str());
                }
            }
            // The in-memory form re-encodes to the same bytes.
            let mut r = Reader::new(&out);
            let vals = decode_vals(&mut r, values.len()).unwrap();
            let mut again = Vec::new();
            encode_vals(&mut again, &vals);
            prop_assert_eq!(again, out);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), rows in 0usize..20) {
            let _ = StrColumn::decode(&mut Reader::new(&bytes), rows);
        }
    }

    #[test]
    fn numeric_mode_is_used_for_request_ids() {
        let vals: Vec<String> = (0..1000).map(|i| (i * 7919 % 10_000).to_string()).collect();
        let mut out = Vec::new();
        encode(&mut out, vals.iter().map(|s| Some(s.as_str())));
        assert_eq!(out[0], MODE_NUM);
        assert!(out.len() < 2200, "{}", out.len());
        for s in ["01", "-1", "+1", "1.0", "", "18446744073709551616"] {
            assert_eq!(canonical_u64(s), None, "{s}");
        }
        assert_eq!(canonical_u64("0"), Some(0));
        assert_eq!(canonical_u64("18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn rejects_ids_outside_dictionary() {
        let mut out = vec![MODE_DICT];
        put_varint(&mut out, 1);
        put_str(&mut out, "x");
        bitpack::pack(&mut out, &[2]);
        assert!(StrColumn::decode(&mut Reader::new(&out), 1).is_err());
    }
}
