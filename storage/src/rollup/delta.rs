//! Rollup deltas of one append: the batch's MCP request spans aggregated per minute blob in memory
//! (borrowing their strings), then merged into the stored blobs inside the append's transaction.

use std::collections::HashMap;

use redb::{ReadableTable, WriteTransaction};
use rustc_hash::FxBuildHasher;

use super::blob::{Blob, Dims, Distinct, Stats};
use super::{counts, delta_key, minute_of, weight_of, BlobKey, Cube, Res, ROLLUPS, ROLLUP_DELTAS};
use crate::error::Result;
use crate::model::SpanRecord;

/// The delta of one blob: rows by borrowed dimensions, and (tools cube) totals per side.
#[derive(Default)]
struct Delta<'a> {
    rows: HashMap<Dims<&'a str>, Stats, FxBuildHasher>,
    totals: [Option<Stats>; 2],
}

/// What one append adds to the rollups.
#[derive(Default)]
pub struct Deltas<'a> {
    blobs: HashMap<BlobKey, Delta<'a>, FxBuildHasher>,
}

impl<'a> Deltas<'a> {
    /// Adds `span` if it counts in analytics (an MCP request); other spans are ignored.
    pub fn add(&mut self, span: &'a SpanRecord) {
        if !counts(span) {
            return;
        }
        let weight = weight_of(span);
        let start_minute = minute_of(span.start_unix_nano);
        for cube in Cube::ALL {
            let key = BlobKey {
                org: span.org_id,
                server: span.server_id,
                env: span.env,
                cube,
                res: Res::Minute,
                start_minute,
            };
            let delta = self.blobs.entry(key).or_default();
            let dims = Dims::of(span, cube);
            let side = dims.side as usize;
            let row_distinct = match cube {
                Cube::Tools => Distinct::None,
                Cube::Users => Distinct::Sessions,
            };
            delta
                .rows
                .entry(dims)
                .or_default()
                .add_span(span, weight, row_distinct);
            if cube == Cube::Tools {
                delta.totals[side]
                    .get_or_insert_with(Stats::default)
                    .add_span(span, weight, Distinct::SessionsAndUsers);
            }
        }
    }

    /// Writes each blob's delta under `seq` (unique per transaction) into the deltas table: no
    /// read of what is stored, so the cost is the batch's, whatever the minute already holds.
    /// Returns the bytes written.
    pub fn write_deltas(self, txn: &WriteTransaction, seq: u64) -> Result<usize> {
        let mut table = txn.open_table(ROLLUP_DELTAS)?;
        let mut bytes = 0;
        for (key, delta) in self.blobs {
            let start = key.start_unix_nano();
            let blob = Blob {
                rows: delta
                    .rows
                    .into_iter()
                    .map(|(d, s)| (d.to_owned(), s))
                    .collect(),
                totals: delta.totals,
            };
            let enc = blob.encode(key.cube, start);
            let k = delta_key(&key, seq);
            bytes += enc.len() + k.len();
            table.insert(&k, enc.as_slice())?;
        }
        Ok(bytes)
    }

    /// Merges every delta straight into its stored blob (read, merge, write) in `txn`: for bulk
    /// rebuilds (format upgrade), where one transaction holds many batches. Returns the bytes
    /// written.
    pub fn merge_into(self, txn: &WriteTransaction) -> Result<usize> {
        let mut table = txn.open_table(ROLLUPS)?;
        let mut bytes = 0;
        for (key, delta) in self.blobs {
            let k = key.encode();
            let start = key.start_unix_nano();
            let mut blob = match table.get(&k)? {
                Some(v) => Blob::decode(v.value(), key.cube, start)?,
                None => Blob::default(),
            };
            blob.merge(Blob {
                rows: Default::default(),
                totals: delta.totals,
            });
            for (dims, stats) in delta.rows {
                // One allocation per distinct row of the batch, not per span.
                match blob.rows.entry(dims.to_owned()) {
                    std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&stats),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(stats);
                    }
                }
            }
            let enc = blob.encode(key.cube, start);
            bytes += enc.len() + k.len();
            table.insert(&k, enc.as_slice())?;
        }
        Ok(bytes)
    }
}
