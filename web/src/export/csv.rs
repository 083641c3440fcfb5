//! CSV for export: one row per span with a fixed column set ([`CSV_COLUMNS`], documented in
//! docs/api.md), written with the `csv` crate. Text cells carry telemetry (untrusted), so they get
//! the analytics CSV's injection guard; each distinct string of a block is guarded once per block.

use mcp_obs_storage::model::SpanRecord;
use mcp_obs_storage::spans::{ScanBlock, StrField};
use mcp_obs_storage::Result;

use super::json::{push_attrs, push_hex, ExtraCache};
use super::RowFormat;
use crate::analytics::text;
use crate::span_json::{kind_name, status_name};

/// The header row; every row has these cells in this order.
pub const CSV_COLUMNS: [&str; 28] = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "server_id",
    "env",
    "name",
    "kind",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "duration_ms",
    "status_code",
    "status_message",
    "is_error",
    "method",
    "tool",
    "prompt",
    "resource_uri",
    "request_id",
    "session_id",
    "user_id",
    "client_name",
    "client_version",
    "error_type",
    "transport",
    "protocol_version",
    "service_name",
    "sample_probability",
    "attributes",
];

/// The string columns between `is_error` and `sample_probability`, in column order.
const TEXT_FIELDS: [StrField; 13] = [
    StrField::Method,
    StrField::Tool,
    StrField::Prompt,
    StrField::ResourceUri,
    StrField::RequestId,
    StrField::SessionId,
    StrField::UserId,
    StrField::ClientName,
    StrField::ClientVersion,
    StrField::ErrorType,
    StrField::Transport,
    StrField::ProtocolVersion,
    StrField::ServiceName,
];

/// The CSV format. Each run of rows is written by a `csv::Writer` straight into the caller's
/// buffer.
#[derive(Default)]
pub struct Csv {
    scratch: Vec<u8>,
}

/// A `csv::Writer` appending to `out` (taken; give it back with [`into_out`]).
fn writer(out: &mut Vec<u8>) -> csv::Writer<Vec<u8>> {
    csv::Writer::from_writer(std::mem::take(out))
}

fn into_out(w: csv::Writer<Vec<u8>>, out: &mut Vec<u8>) -> Result<()> {
    *out = w
        .into_inner()
        .map_err(|e| mcp_obs_storage::StorageError::Io(std::io::Error::other(e.to_string())))?;
    Ok(())
}

/// What [`Csv`] derives once per block: each dictionary value of every string field, guarded.
pub struct CsvBlock {
    /// In `StrField::ALL` order; entry k is dictionary id k + 1.
    strs: Vec<Vec<String>>,
    extras: ExtraCache,
}

impl CsvBlock {
    fn cell(&self, b: &ScanBlock, f: StrField, i: usize) -> &str {
        match b.str_id(f, i) {
            0 => "",
            id => self.strs[f as usize]
                .get(id as usize - 1)
                .map_or("", String::as_str),
        }
    }
}

/// Numbers: the shortest form that round-trips, as the analytics CSV writes them; not finite
/// (which JSON shows as null) is an empty cell.
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        String::new()
    }
}

fn io(e: csv::Error) -> mcp_obs_storage::StorageError {
    mcp_obs_storage::StorageError::Io(std::io::Error::other(e.to_string()))
}

impl RowFormat for Csv {
    type Prepared = CsvBlock;

    fn header(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let mut w = writer(out);
        w.write_record(CSV_COLUMNS).map_err(io)?;
        into_out(w, out)
    }

    fn prepare(&mut self, b: &std::sync::Arc<ScanBlock>, _order: &[u32]) -> Result<CsvBlock> {
        let strs = StrField::ALL
            .iter()
            .map(|&f| b.str_dict(f).map(text).collect())
            .collect();
        Ok(CsvBlock {
            strs,
            extras: ExtraCache::default(),
        })
    }

    fn rows(
        &mut self,
        b: &ScanBlock,
        p: &mut CsvBlock,
        rows: &[u32],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let mut n = itoa_buf();
        let mut w = writer(out);
        for &r in rows {
            let i = r as usize;
            self.scratch.clear();
            push_hex(&mut self.scratch, b.trace_id(i));
            w.write_field(&self.scratch).map_err(io)?;
            self.scratch.clear();
            push_hex(&mut self.scratch, b.span_id(i));
            w.write_field(&self.scratch).map_err(io)?;
            self.scratch.clear();
            if *b.parent_span_id(i) != [0; 8] {
                push_hex(&mut self.scratch, b.parent_span_id(i));
            }
            w.write_field(&self.scratch).map_err(io)?;
            w.write_field(n.format(u64::from(b.server()))).map_err(io)?;
            w.write_field(b.env(i).as_str()).map_err(io)?;
            w.write_field(p.cell(b, StrField::Name, i)).map_err(io)?;
            w.write_field(kind_name(b.kind(i))).map_err(io)?;
            w.write_field(n.format(b.start(i))).map_err(io)?;
            w.write_field(n.format(b.end(i))).map_err(io)?;
            w.write_field(num(b.duration_nanos(i) as f64 / 1e6))
                .map_err(io)?;
            w.write_field(status_name(b.status_code(i))).map_err(io)?;
            w.write_field(p.cell(b, StrField::StatusMessage, i))
                .map_err(io)?;
            w.write_field(if b.is_error(i) { "true" } else { "false" })
                .map_err(io)?;
            for f in TEXT_FIELDS {
                w.write_field(p.cell(b, f, i)).map_err(io)?;
            }
            w.write_field(num(b.sample_probability(i))).map_err(io)?;
            // A JSON object: starts with `{`, so the injection guard never applies.
            let (buf, x) = p.extras.get(b, i)?;
            w.write_field(&buf[x.attrs]).map_err(io)?;
            w.write_record(None::<&[u8]>).map_err(io)?;
        }
        into_out(w, out)
    }
}

/// Appends the header row to `out` (the searched export, which writes records, not blocks).
pub fn header(out: &mut Vec<u8>) -> Result<()> {
    Csv::default().header(out)
}

/// Appends one row per span of `spans` to `out`: the same cells as [`Csv`] writes from a block
/// (the searched export hands out records the search already materialized).
pub fn record_rows(spans: &[SpanRecord], out: &mut Vec<u8>) -> Result<()> {
    let mut w = writer(out);
    let mut scratch = Vec::new();
    for s in spans {
        w.write_field(hex::encode(s.trace_id)).map_err(io)?;
        w.write_field(hex::encode(s.span_id)).map_err(io)?;
        match s.parent_span_id == [0; 8] {
            true => w.write_field("").map_err(io)?,
            false => w.write_field(hex::encode(s.parent_span_id)).map_err(io)?,
        }
        w.write_field(s.server_id.to_string()).map_err(io)?;
        w.write_field(s.env.as_str()).map_err(io)?;
        w.write_field(text(&s.name)).map_err(io)?;
        w.write_field(kind_name(s.kind)).map_err(io)?;
        w.write_field(s.start_unix_nano.to_string()).map_err(io)?;
        w.write_field(s.end_unix_nano.to_string()).map_err(io)?;
        w.write_field(num(s.duration_nanos() as f64 / 1e6))
            .map_err(io)?;
        w.write_field(status_name(s.status_code)).map_err(io)?;
        w.write_field(text(&s.status_message)).map_err(io)?;
        w.write_field(if s.is_error() { "true" } else { "false" })
            .map_err(io)?;
        for f in TEXT_FIELDS {
            w.write_field(f.get(s).map(text).unwrap_or_default())
                .map_err(io)?;
        }
        w.write_field(num(s.sample_probability)).map_err(io)?;
        scratch.clear();
        push_attrs(&mut scratch, &s.attributes);
        w.write_field(&scratch).map_err(io)?;
        w.write_record(None::<&[u8]>).map_err(io)?;
    }
    into_out(w, out)
}

/// Integers to decimal without allocating.
fn itoa_buf() -> IntBuf {
    IntBuf([0; 20])
}

struct IntBuf([u8; 20]);

impl IntBuf {
    fn format(&mut self, mut v: u64) -> &[u8] {
        let mut at = self.0.len();
        loop {
            at -= 1;
            self.0[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                return &self.0[at..];
            }
        }
    }
}
