//! Index documents: the distinct searched values of the spans of one (org, server, env, time
//! bucket), collected from `SpanRecord`s (the ingest path) or from stored blocks (catch-up).
//! A batch of 50,000 spans with 8 tools and 37 users becomes a few documents, not 50,000.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::{day_of, OrgId, ServerId, SpanRecord};
use crate::spans::StrField;

/// Width of the time bucket a document covers (by span start). With one-minute buckets, 1M spans
/// over 90 days made 1.2 spans per document and 58 index bytes per span (docs/benchmarks.md,
/// "Search"); ten minutes keep sparse servers cheap, and [`DOC_SPANS_MAX`] bounds busy ones.
pub const BUCKET_NANOS: u64 = 10 * 60 * 1_000_000_000;
/// A bucket document is closed (and another started for the same bucket) after this many spans,
/// so verifying one candidate document reads a bounded number of rows however busy the server.
pub const DOC_SPANS_MAX: u64 = 4096;

/// The string fields search covers, in this order. Tool and user also feed suggestions.
pub const SEARCH_FIELDS: [StrField; 8] = [
    StrField::Tool,
    StrField::Prompt,
    StrField::ResourceUri,
    StrField::UserId,
    StrField::SessionId,
    StrField::Name,
    StrField::StatusMessage,
    StrField::ErrorType,
];

/// What one document is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketKey {
    pub day: u32,
    pub org: OrgId,
    pub server: ServerId,
    /// `Env as u8`.
    pub env: u8,
    /// `start / BUCKET_NANOS`.
    pub bucket: u64,
}

/// The distinct values of one bucket and the start-time range of its spans.
#[derive(Clone, Debug, Default)]
pub struct BucketValues {
    pub min_start: u64,
    pub max_start: u64,
    /// Distinct values per field, in [`SEARCH_FIELDS`] order.
    pub values: [FxHashSet<Box<str>>; SEARCH_FIELDS.len()],
    /// Spans added (bounded by [`DOC_SPANS_MAX`]).
    pub spans: u64,
}

/// Position of `f` in [`SEARCH_FIELDS`].
pub fn field_index(f: StrField) -> Option<usize> {
    SEARCH_FIELDS.iter().position(|x| *x == f)
}

impl BucketValues {
    fn new(start: u64) -> BucketValues {
        BucketValues {
            min_start: start,
            max_start: start,
            ..BucketValues::default()
        }
    }

    fn add(&mut self, field: StrField, v: &str) {
        if v.is_empty() {
            return;
        }
        let Some(i) = field_index(field) else {
            return;
        };
        let set = &mut self.values[i];
        if !set.contains(v) {
            set.insert(v.into());
        }
    }
}

/// Documents being collected, by bucket.
#[derive(Default)]
pub struct DocBuilder {
    groups: FxHashMap<BucketKey, BucketValues>,
    /// Documents closed at `DOC_SPANS_MAX` spans.
    full: Vec<(BucketKey, BucketValues)>,
}

impl DocBuilder {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.full.is_empty()
    }

    pub fn key(org: OrgId, server: ServerId, env: u8, start: u64) -> BucketKey {
        BucketKey {
            day: day_of(start),
            org,
            server,
            env,
            bucket: start / BUCKET_NANOS,
        }
    }

    /// The bucket of a span starting at `start`, created if new.
    pub fn bucket(&mut self, key: BucketKey, start: u64) -> &mut BucketValues {
        if self
            .groups
            .get(&key)
            .is_some_and(|b| b.spans >= DOC_SPANS_MAX)
        {
            if let Some(b) = self.groups.remove(&key) {
                self.full.push((key, b));
            }
        }
        let b = self
            .groups
            .entry(key)
            .or_insert_with(|| BucketValues::new(start));
        b.min_start = b.min_start.min(start);
        b.max_start = b.max_start.max(start);
        b.spans += 1;
        b
    }

    pub fn add_span(&mut self, s: &SpanRecord) {
        let key = Self::key(s.org_id, s.server_id, s.env as u8, s.start_unix_nano);
        let b = self.bucket(key, s.start_unix_nano);
        for (i, f) in SEARCH_FIELDS.iter().enumerate() {
            if let Some(v) = f.get(s) {
                if !v.is_empty() && !b.values[i].contains(v) {
                    b.values[i].insert(v.into());
                }
            }
        }
    }

    /// The documents of `spans` (what an ingest worker hands along with a request, so the writer
    /// and the indexer never hold the spans themselves).
    pub fn of_spans(spans: &[SpanRecord]) -> Vec<(BucketKey, BucketValues)> {
        let mut b = DocBuilder::default();
        for s in spans {
            b.add_span(s);
        }
        b.into_parts()
    }

    /// Every document gathered, open and closed.
    pub fn into_parts(self) -> Vec<(BucketKey, BucketValues)> {
        let mut out = self.full;
        out.extend(self.groups);
        out
    }

    /// Adds a document built elsewhere (by [`DocBuilder::of_spans`]): its values join the open
    /// document of the same bucket unless that would take it past [`DOC_SPANS_MAX`] spans, in which
    /// case the open one is closed first.
    pub fn merge(&mut self, key: BucketKey, part: BucketValues) {
        match self.groups.get_mut(&key) {
            Some(b) if b.spans + part.spans <= DOC_SPANS_MAX => {
                b.min_start = b.min_start.min(part.min_start);
                b.max_start = b.max_start.max(part.max_start);
                b.spans += part.spans;
                for (into, from) in b.values.iter_mut().zip(part.values) {
                    if into.is_empty() {
                        *into = from;
                    } else {
                        into.extend(from);
                    }
                }
            }
            Some(_) => {
                if let Some(old) = self.groups.insert(key, part) {
                    self.full.push((key, old));
                }
            }
            None => {
                self.groups.insert(key, part);
            }
        }
    }

    /// Adds value `v` of `field` to bucket `b` (for builders reading stored columns).
    pub fn add_value(b: &mut BucketValues, field: StrField, v: &str) {
        b.add(field, v);
    }

    /// Days with documents waiting.
    pub fn days(&self) -> Vec<u32> {
        let mut d: Vec<u32> = self
            .groups
            .keys()
            .chain(self.full.iter().map(|f| &f.0))
            .map(|k| k.day)
            .collect();
        d.sort_unstable();
        d.dedup();
        d
    }

    /// Takes the documents of `day`, closed and open: after this the builder holds nothing of
    /// `day` (a closed document left behind would never be indexed and never be freed).
    pub fn take_day(&mut self, day: u32) -> Vec<(BucketKey, BucketValues)> {
        let of_day = |d: &(BucketKey, BucketValues)| d.0.day == day;
        let (mut out, full): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.full).into_iter().partition(of_day);
        let (open, groups): (FxHashMap<_, _>, FxHashMap<_, _>) = std::mem::take(&mut self.groups)
            .into_iter()
            .partition(of_day);
        (self.full, self.groups) = (full, groups);
        out.extend(open);
        out
    }
}
