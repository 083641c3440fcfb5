//! `Acc`: the running aggregate of rollup rows (weighted counts, durations, a dense latency
//! accumulator, distinct users and sessions) and the `Totals` it reports.

use crate::error::{Result, StorageError};
use crate::rollup::kmv::{self, DistinctAccumulator};
use crate::rollup::sketch::SketchAccumulator;
use crate::rollup::{Cube, RowRef, D_USER};

#[derive(Debug)]
pub struct Acc {
    /// Whether distinct users and sessions are counted (merging their sketches costs time).
    distinct: bool,
    /// Whether every input could tell users and sessions (tools-cube rows cannot).
    distinct_known: bool,
    pub calls: f64,
    pub spans: u64,
    pub errors: f64,
    pub error_spans: u64,
    pub duration_nanos: f64,
    pub last_unix_nano: u64,
    latency: SketchAccumulator,
    users: DistinctAccumulator,
    sessions: DistinctAccumulator,
}

impl Acc {
    pub fn new(distinct: bool) -> Self {
        Acc {
            distinct,
            distinct_known: true,
            calls: 0.0,
            spans: 0,
            errors: 0.0,
            error_spans: 0,
            duration_nanos: 0.0,
            last_unix_nano: 0,
            latency: SketchAccumulator::new(),
            users: DistinctAccumulator::new(),
            sessions: DistinctAccumulator::new(),
        }
    }
}

/// What a group of calls adds up to. Calls, errors and latency are weighted by 1/p (sampling);
/// `users` and `sessions` are distinct counts of what was stored: exact below 1,024, otherwise
/// estimated (about 3% standard error, see `rollup::kmv`), and only where asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub calls: f64,
    /// Spans actually stored (unweighted).
    pub spans: u64,
    pub errors: f64,
    pub error_rate: f64,
    pub avg_nanos: Option<f64>,
    pub p50_nanos: Option<u64>,
    pub p95_nanos: Option<u64>,
    pub p99_nanos: Option<u64>,
    /// `None` where the question was answered from rows that do not know them.
    pub users: Option<u64>,
    pub sessions: Option<u64>,
}

fn corrupt(e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("rollup sketch: {e}"))
}

impl Acc {
    /// Adds a row of `cube` (tools-cube rows carry no distinct sketches).
    pub fn add_row(&mut self, row: &RowRef<'_>, cube: Cube) -> Result<()> {
        self.add_fixed(row)?;
        if !self.distinct {
            return Ok(());
        }
        match cube {
            Cube::Tools => self.distinct_known = false,
            Cube::Users => {
                self.sessions
                    .add_encoded(&mut &row.sessions[..])
                    .map_err(corrupt)?;
                if let Some(u) = row.dims.v[D_USER] {
                    self.users.insert(kmv::hash_str(u));
                }
            }
        }
        Ok(())
    }

    /// Adds the totals of a tools-cube blob (they carry users and sessions).
    pub fn add_total(&mut self, t: &RowRef<'_>) -> Result<()> {
        self.add_fixed(t)?;
        if self.distinct {
            self.sessions
                .add_encoded(&mut &t.sessions[..])
                .map_err(corrupt)?;
            self.users.add_encoded(&mut &t.users[..]).map_err(corrupt)?;
        }
        Ok(())
    }

    fn add_fixed(&mut self, row: &RowRef<'_>) -> Result<()> {
        self.calls += row.calls;
        self.spans += row.spans;
        self.errors += row.errors;
        self.error_spans += row.error_spans;
        self.duration_nanos += row.duration_nanos;
        self.last_unix_nano = self.last_unix_nano.max(row.last_unix_nano);
        self.latency
            .add_encoded(&mut &row.latency[..])
            .map_err(corrupt)
    }

    fn counts_distinct(&self) -> bool {
        self.distinct && self.distinct_known
    }

    pub fn quantile(&self, q: f64) -> Option<u64> {
        self.latency.quantile(q)
    }

    pub fn totals(&self) -> Totals {
        Totals {
            calls: self.calls,
            spans: self.spans,
            errors: self.errors,
            error_rate: super::rate(self.errors, self.calls),
            avg_nanos: (self.calls > 0.0).then(|| self.duration_nanos / self.calls),
            p50_nanos: self.quantile(0.50),
            p95_nanos: self.quantile(0.95),
            p99_nanos: self.quantile(0.99),
            users: self.counts_distinct().then(|| self.users.estimate()),
            sessions: self.counts_distinct().then(|| self.sessions.estimate()),
        }
    }
}
