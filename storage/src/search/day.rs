//! One day's tantivy index (`spans/YYYY-MM-DD.idx/`): its schema, committing documents with the
//! watermark in the commit payload, the snapshot searches read, candidate buckets for a query, and
//! the term-dictionary walk behind suggestions.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{
    DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, SegmentReader,
    TantivyDocument, Term, TERMINATED,
};

use super::analyzer::{analyzer, TOKENIZER};
use super::docs::{BucketKey, BucketValues, SEARCH_FIELDS};
use super::{index_error, SuggestField};
use crate::error::Result;
use crate::model::{Env, OrgId, ServerId};
use crate::spans::StrField;

/// Version of the documents and payload written here; another version is rebuilt from the spans.
pub const INDEX_VERSION: u32 = 1;
const TOOL: usize = 0;
const USER: usize = 3;
const _: () = assert!(matches!(SEARCH_FIELDS[TOOL], StrField::Tool));
const _: () = assert!(matches!(SEARCH_FIELDS[USER], StrField::UserId));
/// Values longer than this are not offered as suggestions (they are still searchable).
pub const SUGGEST_VALUE_BYTES_MAX: usize = 256;

#[derive(Clone, Copy)]
pub struct Fields {
    org: Field,
    server: Field,
    env: Field,
    min_start: Field,
    max_start: Field,
    /// One text field per searched field, in `SEARCH_FIELDS` order: a candidate document also
    /// says which fields can hold each term, so verification reads only those columns.
    text: [Field; SEARCH_FIELDS.len()],
    tool_kw: Field,
    user_kw: Field,
}

/// Names of the per-field text fields, in `SEARCH_FIELDS` order.
const TEXT_FIELD_NAMES: [&str; SEARCH_FIELDS.len()] = [
    "tool",
    "prompt",
    "resource",
    "user",
    "session",
    "name",
    "status",
    "error_type",
];

pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let id = NumericOptions::default().set_indexed().set_fast();
    let fast = NumericOptions::default().set_fast();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let kw = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let f = Fields {
        org: b.add_u64_field("org", id.clone()),
        server: b.add_u64_field("server", id.clone()),
        env: b.add_u64_field("env", id),
        min_start: b.add_u64_field("min_start", fast.clone()),
        max_start: b.add_u64_field("max_start", fast),
        text: TEXT_FIELD_NAMES.map(|n| b.add_text_field(n, text.clone())),
        tool_kw: b.add_text_field("tool_kw", kw.clone()),
        user_kw: b.add_text_field("user_kw", kw),
    };
    (b.build(), f)
}

/// What a search reads: a searcher and the watermark of the same commit. Every row in a block
/// with an id below `watermark` is in a document this searcher sees.
pub struct Snapshot {
    pub searcher: Option<Searcher>,
    pub watermark: u64,
}

pub struct DayIndex {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    snap: Mutex<Arc<Snapshot>>,
    /// Created on first commit (by the indexer thread, or a retention purge), closed when idle.
    writer: Mutex<WriterSlot>,
}

/// The writer of a day index and whether the index was closed: a closed `DayIndex` (evicted from
/// the open set, or its day dropped) never creates a writer again, so a commit racing the close
/// cannot take tantivy's directory lock from the instance that replaces it, nor recreate files in
/// a directory being deleted. The caller then reopens the day (if it still exists) and retries.
#[derive(Default)]
struct WriterSlot {
    writer: Option<IndexWriter>,
    closed: bool,
}

/// Term prefix of an organization in the suggestion fields.
fn kw_prefix(org: OrgId) -> String {
    format!("{org:08x}.")
}

fn payload(watermark: u64) -> String {
    format!("{{\"v\":{INDEX_VERSION},\"next_block_id\":{watermark}}}")
}

/// The watermark of a commit payload of this version; `None` for anything else.
fn parse_payload(p: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(p).ok()?;
    if v.get("v")?.as_u64()? != u64::from(INDEX_VERSION) {
        return None;
    }
    v.get("next_block_id")?.as_u64()
}

impl DayIndex {
    /// Opens the index in `dir`, creating it if absent. An index that cannot be opened, has
    /// another schema or another version is deleted and created empty (it is derived data: the
    /// indexer rebuilds it from the day file).
    pub fn open(dir: &Path) -> Result<DayIndex> {
        match Self::try_open(dir) {
            Ok(Some(d)) => return Ok(d),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "search index unreadable, rebuilding")
            }
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let index = Index::create_in_dir(dir, schema).map_err(index_error)?;
        Self::finish(index, fields, 0)
    }

    fn try_open(dir: &Path) -> Result<Option<DayIndex>> {
        if !dir.join("meta.json").exists() {
            return Ok(None);
        }
        let index = Index::open_in_dir(dir).map_err(index_error)?;
        let (schema, fields) = schema();
        if index.schema() != schema {
            return Ok(None);
        }
        let metas = index.load_metas().map_err(index_error)?;
        let watermark = match metas.payload.as_deref() {
            // A fresh index has no commit yet.
            None if metas.segments.is_empty() => 0,
            None => return Ok(None),
            Some(p) => match parse_payload(p) {
                Some(w) => w,
                None => return Ok(None),
            },
        };
        Self::finish(index, fields, watermark).map(Some)
    }

    fn finish(index: Index, fields: Fields, watermark: u64) -> Result<DayIndex> {
        index.tokenizers().register(TOKENIZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_error)?;
        let snap = Snapshot {
            searcher: Some(reader.searcher()),
            watermark,
        };
        Ok(DayIndex {
            index,
            fields,
            reader,
            snap: Mutex::new(Arc::new(snap)),
            writer: Mutex::new(WriterSlot::default()),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.lock().clone()
    }

    /// Adds `docs` (drained) and commits them with `watermark` in the payload, then publishes the
    /// new snapshot. `writer_bytes` is tantivy's indexing memory budget. Returns false, leaving
    /// `docs` untouched, if the index was closed (the caller reopens the day and retries).
    pub fn commit(
        &self,
        docs: &mut Vec<(BucketKey, BucketValues)>,
        watermark: u64,
        writer_bytes: usize,
    ) -> Result<bool> {
        let mut g = self.writer.lock();
        let Some(w) = self.writer_of(&mut g, writer_bytes)? else {
            return Ok(false);
        };
        for (k, v) in docs.drain(..) {
            w.add_document(self.document(&k, &v)).map_err(index_error)?;
        }
        self.commit_with(w, watermark)?;
        Ok(true)
    }

    /// Deletes every document of `org` (a retention purge) and commits, keeping the watermark:
    /// the purge removed the org's rows from the day file, so the watermark still covers exactly
    /// the remaining rows. Returns the number of live documents deleted, or `None` if the index
    /// was closed (the caller reopens the day and retries).
    ///
    /// tantivy only marks documents deleted (a `.del` bitset per segment), so the day's segments
    /// are then merged into one without them.
    pub fn delete_org(&self, org: OrgId, writer_bytes: usize) -> Result<Option<u64>> {
        let term = Term::from_field_u64(self.fields.org, u64::from(org));
        let mut g = self.writer.lock();
        if g.closed {
            return Ok(None);
        }
        let live = match &self.snapshot().searcher {
            Some(s) => s
                .search(
                    &TermQuery::new(term.clone(), IndexRecordOption::Basic),
                    &tantivy::collector::Count,
                )
                .map_err(index_error)? as u64,
            None => 0,
        };
        if live == 0 {
            return Ok(Some(0));
        }
        // A writer opened just for this purge is closed again after it (the indexer closes its
        // own when idle); an old day rarely gets another write.
        let opened_here = g.writer.is_none();
        let Some(w) = self.writer_of(&mut g, writer_bytes)? else {
            return Ok(None);
        };
        w.delete_term(term);
        let watermark = self.snapshot().watermark;
        self.commit_with(w, watermark)?;
        // Rewrite the day's segments without the deleted documents: the space comes back, and
        // the purged values leave the term dictionaries that suggestions walk. A purge happens
        // once per (organization, finished day), in the retention task, so the cost is bounded
        // by one rewrite of a finished day's index. The merge keeps the commit's payload.
        let segments = self.index.searchable_segment_ids().map_err(index_error)?;
        if !segments.is_empty() {
            w.merge(&segments).wait().map_err(index_error)?;
            self.reader.reload().map_err(index_error)?;
            *self.snap.lock() = Arc::new(Snapshot {
                searcher: Some(self.reader.searcher()),
                watermark,
            });
        }
        if opened_here {
            if let Some(w) = g.writer.take() {
                w.wait_merging_threads().map_err(index_error)?;
            }
        }
        Ok(Some(live))
    }

    /// The open writer, created if needed; `None` if the index was closed.
    fn writer_of<'a>(
        &self,
        g: &'a mut WriterSlot,
        writer_bytes: usize,
    ) -> Result<Option<&'a mut IndexWriter>> {
        if g.closed {
            return Ok(None);
        }
        if g.writer.is_none() {
            let opts = tantivy::indexer::IndexWriterOptions::builder()
                .memory_budget_per_thread(writer_bytes)
                .num_worker_threads(1)
                .num_merge_threads(1)
                .build();
            g.writer = Some(self.index.writer_with_options(opts).map_err(index_error)?);
        }
        Ok(g.writer.as_mut())
    }

    /// Commits what `w` holds with `watermark` in the payload and publishes the new snapshot.
    fn commit_with(&self, w: &mut IndexWriter, watermark: u64) -> Result<()> {
        let mut pc = w.prepare_commit().map_err(index_error)?;
        pc.set_payload(&payload(watermark));
        pc.commit().map_err(index_error)?;
        self.reader.reload().map_err(index_error)?;
        *self.snap.lock() = Arc::new(Snapshot {
            searcher: Some(self.reader.searcher()),
            watermark,
        });
        Ok(())
    }

    /// Closes the writer (waiting for its merges), if open; the index stays usable.
    pub fn close_writer(&self) -> Result<()> {
        if let Some(w) = self.writer.lock().writer.take() {
            w.wait_merging_threads().map_err(index_error)?;
        }
        Ok(())
    }

    /// Closes the index for writing for good (waiting for the writer's merges): what happens
    /// before its directory is deleted. Searches holding it keep their snapshot.
    pub fn close(&self) -> Result<()> {
        let mut g = self.writer.lock();
        g.closed = true;
        if let Some(w) = g.writer.take() {
            w.wait_merging_threads().map_err(index_error)?;
        }
        Ok(())
    }

    /// Closes the index if it has no writer and nobody is committing, without waiting; whether
    /// it did. What evicting an idle day from the open set does.
    pub fn try_close_idle(&self) -> bool {
        let Some(mut g) = self.writer.try_lock() else {
            return false;
        };
        if g.writer.is_some() {
            return false;
        }
        g.closed = true;
        true
    }

    pub fn has_writer(&self) -> bool {
        self.writer.lock().writer.is_some()
    }

    fn document(&self, k: &BucketKey, v: &BucketValues) -> TantivyDocument {
        let f = &self.fields;
        let mut d = TantivyDocument::new();
        d.add_u64(f.org, u64::from(k.org));
        d.add_u64(f.server, u64::from(k.server));
        d.add_u64(f.env, u64::from(k.env));
        d.add_u64(f.min_start, v.min_start);
        d.add_u64(f.max_start, v.max_start);
        for (field, set) in f.text.iter().zip(&v.values) {
            for s in set {
                d.add_text(*field, s);
            }
        }
        let (tools, users) = (&v.values[TOOL], &v.values[USER]);
        for (field, set) in [(f.tool_kw, tools), (f.user_kw, users)] {
            for s in set.iter().filter(|s| kw_value_ok(s)) {
                let lower = s.to_lowercase();
                d.add_text(field, format!("{}{lower}\0{s}", kw_prefix(k.org)));
            }
        }
        d
    }

    /// Time ranges of the buckets of `org` whose documents may hold a match of every term, by
    /// server, each with the mask of fields (bit `i` = `SEARCH_FIELDS[i]`) that can hold some
    /// term; `None` when more than `docs_max` documents match (the caller then scans the day).
    ///
    /// A document is a candidate when, for every term, some one field of it has all the term's
    /// tokens: one tantivy query per (term, field) whose tokens all occur in that field.
    #[allow(clippy::too_many_arguments)]
    pub fn candidates(
        &self,
        searcher: &Searcher,
        org: OrgId,
        servers: Option<&[ServerId]>,
        env: Option<Env>,
        terms: &[Vec<String>],
        lo: u64,
        top: u64,
        docs_max: usize,
    ) -> Result<Option<FxHashMap<ServerId, Vec<Interval>>>> {
        let f = &self.fields;
        let term = |field, v: u64| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_u64(field, v),
                IndexRecordOption::Basic,
            ))
        };
        let mut scope: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, term(f.org, u64::from(org)))];
        if let Some(ids) = servers {
            let any: Vec<(Occur, Box<dyn Query>)> = ids
                .iter()
                .map(|&s| (Occur::Should, term(f.server, u64::from(s))))
                .collect();
            scope.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        if let Some(e) = env {
            scope.push((Occur::Must, term(f.env, e as u64)));
        }
        // Per document: (server, min, max) and, per term, the fields that hold it.
        let mut docs: FxHashMap<(u32, DocId), Candidate> = FxHashMap::default();
        for (ti, t) in terms.iter().enumerate() {
            let mut any_field = false;
            for (fi, &field) in f.text.iter().enumerate() {
                let toks: Vec<Term> = t.iter().map(|x| Term::from_field_text(field, x)).collect();
                // Skip fields lacking a token altogether (a term-dictionary lookup each).
                let mut present = true;
                for x in &toks {
                    if searcher.doc_freq(x).map_err(index_error)? == 0 {
                        present = false;
                        break;
                    }
                }
                if !present {
                    continue;
                }
                any_field = true;
                let mut must: Vec<(Occur, Box<dyn Query>)> =
                    scope.iter().map(|(o, q)| (*o, q.box_clone())).collect();
                for x in toks {
                    must.push((
                        Occur::Must,
                        Box::new(TermQuery::new(x, IndexRecordOption::Basic)),
                    ));
                }
                let collector = RangeCollector {
                    lo,
                    top,
                    max: docs_max,
                };
                let Some(found) = searcher
                    .search(&BooleanQuery::new(must), &collector)
                    .map_err(index_error)?
                else {
                    return Ok(None);
                };
                for (seg, doc, server, a, b) in found {
                    let e = docs
                        .entry((seg, doc))
                        .or_insert_with(|| (server, a, b, vec![0; terms.len()]));
                    e.3[ti] |= 1 << fi;
                }
                if docs.len() > docs_max {
                    return Ok(None);
                }
            }
            if !any_field {
                return Ok(Some(FxHashMap::default()));
            }
        }
        let mut by_server: FxHashMap<ServerId, Vec<Interval>> = FxHashMap::default();
        for (server, a, b, masks) in docs.into_values() {
            if masks.iter().all(|&m| m != 0) {
                let fields = masks.iter().fold(0u8, |acc, m| acc | m);
                by_server.entry(server).or_default().push((a, b, fields));
            }
        }
        for v in by_server.values_mut() {
            merge_intervals(v);
        }
        Ok(Some(by_server))
    }

    /// Up to `limit` suggestion values of `org` (and `server`) whose lowercase form starts with
    /// `prefix_lower`, in (lowercase, value) order, into `out` (which keeps the `limit` first).
    #[allow(clippy::too_many_arguments)]
    pub fn suggest(
        &self,
        searcher: &Searcher,
        field: SuggestField,
        org: OrgId,
        server: Option<ServerId>,
        prefix_lower: &str,
        limit: usize,
        out: &mut std::collections::BTreeSet<(String, String)>,
    ) -> Result<()> {
        let field = match field {
            SuggestField::Tool => self.fields.tool_kw,
            SuggestField::User => self.fields.user_kw,
        };
        let head = kw_prefix(org);
        let start = format!("{head}{prefix_lower}");
        for seg in searcher.segment_readers() {
            let inv = seg.inverted_index(field).map_err(index_error)?;
            let servers = match server {
                Some(_) => Some(seg.fast_fields().u64("server").map_err(index_error)?),
                None => None,
            };
            let mut stream = inv.terms().range().ge(start.as_bytes()).into_stream()?;
            let mut taken = 0;
            while taken < limit && stream.advance() {
                let key = stream.key();
                if !key.starts_with(start.as_bytes()) {
                    break;
                }
                let Ok(s) = std::str::from_utf8(&key[head.len()..]) else {
                    continue;
                };
                let Some((lower, value)) = s.split_once('\0') else {
                    continue;
                };
                // With a server filter: keep the value only if a document of that server has it.
                if let (Some(col), Some(want)) = (&servers, server) {
                    let mut post =
                        inv.read_postings_from_terminfo(stream.value(), IndexRecordOption::Basic)?;
                    let mut doc = post.doc();
                    let mut found = false;
                    while doc != TERMINATED {
                        if col.first(doc) == Some(u64::from(want)) {
                            found = true;
                            break;
                        }
                        doc = post.advance();
                    }
                    if !found {
                        continue;
                    }
                }
                // Past the `limit` smallest already held, nothing later in this stream can enter.
                if out.len() >= limit
                    && out
                        .last()
                        .is_some_and(|l| (lower, value) >= (l.0.as_str(), l.1.as_str()))
                {
                    break;
                }
                if out.insert((lower.to_owned(), value.to_owned())) {
                    taken += 1;
                }
                while out.len() > limit {
                    out.pop_last();
                }
            }
        }
        Ok(())
    }
}

fn kw_value_ok(s: &str) -> bool {
    s.len() <= SUGGEST_VALUE_BYTES_MAX && !s.contains('\0')
}

/// A matching document: server, start range, and per term the mask of fields holding it.
type Candidate = (ServerId, u64, u64, Vec<u8>);

/// A candidate range: inclusive start times and the mask of fields that can match in it.
pub type Interval = (u64, u64, u8);

/// Sorts and merges overlapping or touching intervals (a merged interval gets the union of the
/// field masks: reading more fields is always safe).
pub fn merge_intervals(v: &mut Vec<Interval>) {
    v.sort_unstable();
    let mut out: Vec<Interval> = Vec::with_capacity(v.len());
    for &(a, b, m) in v.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => {
                last.1 = last.1.max(b);
                last.2 |= m;
            }
            _ => out.push((a, b, m)),
        }
    }
    *v = out;
}

/// Collects the matching documents overlapping `[lo, top]`;
/// `None` once more than `max` matched.
struct RangeCollector {
    lo: u64,
    top: u64,
    max: usize,
}

/// (segment ordinal, doc, server, min_start, max_start) of a matching document.
type Hit = (u32, DocId, ServerId, u64, u64);

struct RangeSegment {
    ord: u32,
    lo: u64,
    top: u64,
    max: usize,
    server: Column<u64>,
    min_start: Column<u64>,
    max_start: Column<u64>,
    out: Option<Vec<Hit>>,
}

impl Collector for RangeCollector {
    type Fruit = Option<Vec<Hit>>;
    type Child = RangeSegment;

    fn for_segment(&self, ord: u32, seg: &SegmentReader) -> tantivy::Result<RangeSegment> {
        let ff = seg.fast_fields();
        Ok(RangeSegment {
            ord,
            lo: self.lo,
            top: self.top,
            max: self.max,
            server: ff.u64("server")?,
            min_start: ff.u64("min_start")?,
            max_start: ff.u64("max_start")?,
            out: Some(Vec::new()),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, parts: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        let mut all = Vec::new();
        for p in parts {
            match p {
                Some(v) => all.extend(v),
                None => return Ok(None),
            }
        }
        Ok((all.len() <= self.max).then_some(all))
    }
}

impl SegmentCollector for RangeSegment {
    type Fruit = Option<Vec<Hit>>;

    fn collect(&mut self, doc: DocId, _: Score) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let (Some(s), Some(a), Some(b)) = (
            self.server.first(doc),
            self.min_start.first(doc),
            self.max_start.first(doc),
        ) else {
            return;
        };
        if b < self.lo || a > self.top {
            return;
        }
        out.push((self.ord, doc, s as ServerId, a, b));
        if out.len() > self.max {
            self.out = None;
        }
    }

    fn harvest(self) -> Self::Fruit {
        self.out
    }
}
