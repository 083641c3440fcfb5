//! Why a single span is rejected, and the short summary sent back in `partial_success.error_message`.

use std::fmt::Write;

/// Longest `error_message` we produce; the reasons are few, so this only bites on future growth.
const SUMMARY_BYTES_MAX: usize = 512;

/// Per-span rejection reasons, in the order they are checked and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    TraceIdLength,
    TraceIdZero,
    SpanIdLength,
    SpanIdZero,
    ParentSpanIdLength,
    StartTimeZero,
    EndBeforeStart,
    OutsideRetention,
    InFuture,
    /// Beyond `spans_per_request_max` (the HTTP layer normally refuses such requests first).
    TooManySpans,
}

impl Reject {
    const ALL: [Reject; 10] = [
        Reject::TraceIdLength,
        Reject::TraceIdZero,
        Reject::SpanIdLength,
        Reject::SpanIdZero,
        Reject::ParentSpanIdLength,
        Reject::StartTimeZero,
        Reject::EndBeforeStart,
        Reject::OutsideRetention,
        Reject::InFuture,
        Reject::TooManySpans,
    ];

    /// The client-facing wording.
    pub fn message(self) -> &'static str {
        match self {
            Reject::TraceIdLength => "trace_id must be 16 bytes",
            Reject::TraceIdZero => "trace_id must not be all zero",
            Reject::SpanIdLength => "span_id must be 8 bytes",
            Reject::SpanIdZero => "span_id must not be all zero",
            Reject::ParentSpanIdLength => "parent_span_id must be empty or 8 bytes",
            Reject::StartTimeZero => "start time missing",
            Reject::EndBeforeStart => "end before start",
            Reject::OutsideRetention => "start outside retention",
            Reject::InFuture => "start too far in the future",
            Reject::TooManySpans => "too many spans in request",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts rejections per reason.
#[derive(Debug, Default)]
pub(super) struct Tally {
    counts: [u64; Reject::ALL.len()],
}

impl Tally {
    pub fn add(&mut self, reason: Reject) {
        if let Some(count) = self.counts.get_mut(reason.index()) {
            *count += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `"2 spans rejected: span_id must be 8 bytes (1), end before start (1)"`, or `""` when none.
    pub fn summary(&self) -> String {
        let total = self.total();
        if total == 0 {
            return String::new();
        }
        let noun = if total == 1 { "span" } else { "spans" };
        let mut out = format!("{total} {noun} rejected: ");
        let reasons = Reject::ALL
            .iter()
            .zip(self.counts.iter())
            .filter(|(_, n)| **n > 0);
        for (i, (reason, n)) in reasons.enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            // Writing to a String cannot fail.
            let _ = write!(out, "{sep}{} ({n})", reason.message());
        }
        super::limits::truncate_utf8(&mut out, SUMMARY_BYTES_MAX);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_reasons_in_check_order() {
        let mut tally = Tally::default();
        assert_eq!(tally.summary(), "");
        tally.add(Reject::EndBeforeStart);
        assert_eq!(tally.summary(), "1 span rejected: end before start (1)");
        tally.add(Reject::SpanIdLength);
        tally.add(Reject::EndBeforeStart);
        assert_eq!(
            tally.summary(),
            "3 spans rejected: span_id must be 8 bytes (1), end before start (2)"
        );
        assert_eq!(tally.total(), 3);
    }

    #[test]
    fn every_reason_has_a_distinct_slot() {
        for (i, reason) in Reject::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }
}
