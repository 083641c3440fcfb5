//! Dictionary encoding of a column of optional strings: each distinct value is stored once per block
//! and rows hold bit-packed ids (0 = absent, k = k-th dictionary entry).

use std::collections::HashMap;

use super::Result;
use super::{bitpack, corrupt, put_str, put_varint, Reader};

/// Appends `[dict_len varint][dict_len x (len varint, utf8)][bitpack ids]`. Dictionary order is first
/// appearance, which keeps encoding deterministic.
pub fn encode<'a>(out: &mut Vec<u8>, values: impl Iterator<Item = Option<&'a str>>) {
    let mut dict: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, u32> = HashMap::new();
    let mut ids = Vec::new();
    for v in values {
        let id = match v {
            None => 0,
            Some(s) => *index.entry(s).or_insert_with(|| {
                dict.push(s);
                dict.len() as u32
            }),
        };
        ids.push(id);
    }
    put_varint(out, dict.len() as u64);
    for s in &dict {
        put_str(out, s);
    }
    bitpack::pack(out, &ids);
}

/// A decoded column: the dictionary plus one id per row.
#[derive(Debug, Clone, PartialEq)]
pub struct StrColumn {
    pub dict: Vec<String>,
    pub ids: Vec<u32>,
}

impl StrColumn {
    pub fn decode(r: &mut Reader<'_>, rows: usize) -> Result<StrColumn> {
        let n = r.count(1)?;
        let mut dict = Vec::with_capacity(n);
        for _ in 0..n {
            dict.push(r.str()?.to_owned());
        }
        let ids = bitpack::unpack(r, rows)?;
        if let Some(bad) = ids.iter().find(|&&id| id as usize > dict.len()) {
            return Err(corrupt(format!("dictionary id {bad} > {}", dict.len())));
        }
        Ok(StrColumn { dict, ids })
    }

    pub fn get(&self, row: usize) -> Option<&str> {
        match self.ids.get(row).copied().unwrap_or(0) {
            0 => None,
            id => self.dict.get(id as usize - 1).map(String::as_str),
        }
    }

    /// The row id a value has in this block, if the block contains it at all.
    pub fn id_of(&self, value: &str) -> Option<u32> {
        self.dict
            .iter()
            .position(|d| d == value)
            .map(|i| i as u32 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(values in proptest::collection::vec(
            proptest::option::of(prop_oneof!["[a-c]{0,2}", "\\PC{0,20}"]), 0..200)) {
            let mut out = Vec::new();
            encode(&mut out, values.iter().map(|v| v.as_deref()));
            let mut r = Reader::new(&out);
            let col = StrColumn::decode(&mut r, values.len()).unwrap();
            prop_assert!(r.finish("t").is_ok());
            for (i, v) in values.iter().enumerate() {
                prop_assert_eq!(col.get(i), v.as_deref());
                if let Some(s) = v {
                    prop_assert_eq!(col.dict[col.id_of(s).unwrap() as usize - 1].as_str(), s.as_str());
                }
            }
        }
    }

    #[test]
    fn rejects_ids_outside_dictionary() {
        let mut out = Vec::new();
        put_varint(&mut out, 1);
        put_str(&mut out, "x");
        bitpack::pack(&mut out, &[2]);
        assert!(StrColumn::decode(&mut Reader::new(&out), 1).is_err());
    }
}
