//! `SpanStore::trace`: every span of one trace in one org, found through each partition's trace
//! index (never by scanning blocks).

use super::block::BlockBody;
use super::corrupt;
use super::partition::BODIES;
use super::registry::OpenPartition;
use super::{trace_index, SpanStore};
use crate::error::Result;
use crate::model::{OrgId, SpanRecord};

impl SpanStore {
    /// All spans of `trace_id` in `org`, from any partition, sorted by start time (then span id).
    pub fn trace(&self, org: OrgId, trace_id: &[u8; 16]) -> Result<Vec<SpanRecord>> {
        let mut out = Vec::new();
        for day in self.parts.days_desc() {
            let Some(p) = self.parts.get(day, false)? else {
                continue;
            };
            trace_in_partition(&p, org, trace_id, &mut out)?;
        }
        out.sort_by(|a, b| {
            (a.start_unix_nano, a.span_id, a.server_id).cmp(&(
                b.start_unix_nano,
                b.span_id,
                b.server_id,
            ))
        });
        Ok(out)
    }
}

fn trace_in_partition(
    p: &OpenPartition,
    org: OrgId,
    trace_id: &[u8; 16],
    out: &mut Vec<SpanRecord>,
) -> Result<()> {
    let txn = p.part.db.begin_read()?;
    let blocks = trace_index::lookup(&txn, org, trace_id)?;
    if blocks.is_empty() {
        return Ok(());
    }
    let bodies = txn.open_table(BODIES)?;
    for id in blocks {
        let body = match super::chunks::get(&bodies, id)? {
            Some(v) => BlockBody::parse(v)?,
            None => return Err(corrupt(format!("trace index points to missing block {id}"))),
        };
        // The index is keyed by org, but isolation must not rest on one structure alone.
        if body.org != org {
            return Err(corrupt(format!(
                "block {id} of org {} indexed under org {org}",
                body.org
            )));
        }
        let rows: Vec<usize> = body
            .trace_ids()?
            .iter()
            .enumerate()
            .filter(|(_, t)| *t == trace_id)
            .map(|(i, _)| i)
            .collect();
        out.extend(body.materialize(&rows)?);
    }
    Ok(())
}
