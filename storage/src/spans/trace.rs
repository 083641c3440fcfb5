//! `SpanStore::trace`: every span of one trace in one org, found through each partition's trace
//! index (never by scanning blocks); of each candidate block only the trace-id column and the
//! columns of the matching rows are read.

use std::sync::Arc;

use super::block::ColumnRead;
use super::corrupt;
use super::lazy::LazyBody;
use super::materialize::Materialize;
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
    let sums = p.summaries(&txn)?;
    // Only the org's own headers: isolation does not rest on the index alone (the body's org is
    // checked against the header again when it is opened).
    let own = &sums[sums.partition_point(|s| s.org < org)..sums.partition_point(|s| s.org <= org)];
    let bodies = Arc::new(txn.open_table(BODIES)?);
    for id in blocks {
        let Some(s) = own.iter().find(|s| s.block == id) else {
            return Err(corrupt(format!("trace index points to missing block {id}")));
        };
        let body = LazyBody::open(bodies.clone(), s)?;
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
