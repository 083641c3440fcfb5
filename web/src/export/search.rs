//! Export of a text-searched span list (`q`): the list's own search (`SpanStore::search`, which
//! asks the index for candidate ranges and verifies every row) paged through to its end with its
//! cursor, [`SEARCH_PAGE_SPANS`] spans at a time, each page formatted and handed out before the
//! next is read. So the export is exactly what paging through the searched list returns, and holds
//! one page of spans plus the output buffer whatever the number of matches.
//!
//! It does not go through `SpanStore::scan` with a text filter: scan decodes every block of the
//! filter's range, while the search reads only the ranges the index names, which is what makes a
//! selective query cheap; and the list and its export then share one implementation of matching.

use std::ops::ControlFlow;

use mcp_obs_storage::model::OrgId;
use mcp_obs_storage::search::TextQuery;
use mcp_obs_storage::spans::{ScanStats, SpanFilter, SpanStore};

use super::{csv, Format};
use crate::span_json::span_to_json;

/// Spans read per search page: the rows formatted between two checks of the buffered size, as in
/// the scan path (`ROWS_PER_CHECK`).
pub const SEARCH_PAGE_SPANS: usize = 256;

/// Runs the export of `org`'s spans matching `filter` and the text query `q` in `format`, handing
/// chunks of about `chunk_bytes` to `emit` until it returns `Break`. Blocking: call it off the
/// async runtime. `rows` of the result counts the spans written; `blocks_read` stays 0.
pub fn export_search_to(
    store: &SpanStore,
    org: OrgId,
    filter: &SpanFilter,
    q: &TextQuery,
    format: Format,
    chunk_bytes: usize,
    emit: impl FnMut(Vec<u8>) -> ControlFlow<()>,
) -> mcp_obs_storage::Result<ScanStats> {
    export_search_paged(
        store,
        org,
        filter,
        q,
        format,
        chunk_bytes,
        SEARCH_PAGE_SPANS,
        emit,
    )
}

/// [`export_search_to`] reading `page_spans` spans per search page (tests use small pages).
#[allow(clippy::too_many_arguments)]
pub(super) fn export_search_paged(
    store: &SpanStore,
    org: OrgId,
    filter: &SpanFilter,
    q: &TextQuery,
    format: Format,
    chunk_bytes: usize,
    page_spans: usize,
    mut emit: impl FnMut(Vec<u8>) -> ControlFlow<()>,
) -> mcp_obs_storage::Result<ScanStats> {
    let fresh = || Vec::with_capacity(chunk_bytes + chunk_bytes / 4);
    let mut out = fresh();
    let mut stats = ScanStats::default();
    if format == Format::Csv {
        csv::header(&mut out)?;
    }
    let mut cursor: Option<String> = None;
    loop {
        let page = store.search(org, filter, q, cursor.as_deref(), page_spans)?;
        match format {
            Format::JsonLines => {
                for s in &page.spans {
                    // The list's JSON text: `serde_json` of `span_to_json`, byte for byte.
                    serde_json::to_writer(&mut out, &span_to_json(s))
                        .map_err(|e| mcp_obs_storage::StorageError::Io(e.into()))?;
                    out.push(b'\n');
                }
            }
            Format::Csv => csv::record_rows(&page.spans, &mut out)?,
        }
        stats.rows += page.spans.len() as u64;
        if out.len() >= chunk_bytes && emit(std::mem::replace(&mut out, fresh())).is_break() {
            stats.stopped = true;
            return Ok(stats);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    if !out.is_empty() && emit(out).is_break() {
        stats.stopped = true;
    }
    Ok(stats)
}
