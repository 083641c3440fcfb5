//! List order and the pagination cursor. Spans are listed by descending [`RowKey`]; the cursor names
//! the last key returned (plus how many rows with exactly that key were returned), so a page is
//! stable while new spans arrive and across compaction, which moves rows between blocks.

use crate::error::{Result, StorageError};
use crate::model::ServerId;

/// Total order of listed spans (descending): start time, then server, trace and span id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowKey {
    pub start: u64,
    pub server: ServerId,
    pub trace: [u8; 16],
    pub span: [u8; 8],
}

#[cfg(test)]
impl RowKey {
    pub fn of(s: &crate::model::SpanRecord) -> RowKey {
        RowKey {
            start: s.start_unix_nano,
            server: s.server_id,
            trace: s.trace_id,
            span: s.span_id,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub last: RowKey,
    /// Rows with key == `last` already returned (exact duplicates are possible: OTLP retries).
    pub dups: u32,
}

const PREFIX: &str = "c1";
const RAW_LEN: usize = 8 + 4 + 16 + 8 + 4;

impl Cursor {
    /// `c1` followed by 80 lowercase hex digits: URL-safe as is.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(RAW_LEN);
        raw.extend_from_slice(&self.last.start.to_be_bytes());
        raw.extend_from_slice(&self.last.server.to_be_bytes());
        raw.extend_from_slice(&self.last.trace);
        raw.extend_from_slice(&self.last.span);
        raw.extend_from_slice(&self.dups.to_be_bytes());
        format!("{PREFIX}{}", hex::encode(raw))
    }

    pub fn decode(s: &str) -> Result<Cursor> {
        let bad = || StorageError::Invalid("malformed cursor".into());
        let hex_part = s.strip_prefix(PREFIX).ok_or_else(bad)?;
        if hex_part.len() != RAW_LEN * 2 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let raw = hex::decode(hex_part).map_err(|_| bad())?;
        let mut c = [0u8; RAW_LEN];
        c.copy_from_slice(&raw);
        let mut trace = [0u8; 16];
        trace.copy_from_slice(&c[12..28]);
        let mut span = [0u8; 8];
        span.copy_from_slice(&c[28..36]);
        let start = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let server = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
        let dups = u32::from_be_bytes([c[36], c[37], c[38], c[39]]);
        if dups == 0 {
            return Err(bad());
        }
        Ok(Cursor {
            last: RowKey {
                start,
                server,
                trace,
                span,
            },
            dups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(start in any::<u64>(), server in any::<u32>(), trace in any::<[u8; 16]>(),
                      span in any::<[u8; 8]>(), dups in 1u32..) {
            let c = Cursor { last: RowKey { start, server, trace, span }, dups };
            let s = c.encode();
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
            prop_assert_eq!(Cursor::decode(&s).unwrap(), c);
        }

        #[test]
        fn garbage_is_invalid_not_panic(s in "\\PC{0,100}") {
            if let Err(e) = Cursor::decode(&s) {
                prop_assert!(matches!(e, StorageError::Invalid(_)));
            }
        }
    }

    #[test]
    fn rejects_near_misses() {
        let good = Cursor {
            last: RowKey {
                start: 1,
                server: 2,
                trace: [3; 16],
                span: [4; 8],
            },
            dups: 1,
        }
        .encode();
        assert!(Cursor::decode(&good).is_ok());
        for bad in [
            &good[1..],
            &good[..good.len() - 1],
            &good.replace("c1", "c2"),
            &good.to_uppercase(),
            "",
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
        let multibyte = format!("c1{}é", &good[2..good.len() - 2]);
        assert!(Cursor::decode(&multibyte).is_err());
    }
}
