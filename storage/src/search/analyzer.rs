//! The one text analyzer of search, and the two sides that must agree on it: the parsed query
//! ([`TextQuery`]) and the verifier ([`Matcher`]) that decides whether a stored value matches.
//!
//! Analysis is tantivy's: split on every character that is not alphanumeric, drop tokens of
//! [`TOKEN_BYTES_LIMIT`] bytes or more, lowercase. The index, the query and the verifier all
//! run this same [`analyzer`], so a span the verifier accepts always has every query token in the
//! index document of its bucket (the index can only over-approximate, never miss).
//!
//! Query semantics: `q` is split on whitespace outside double quotes into terms; each term is
//! analyzed into a token sequence. A span matches when every term occurs as a contiguous run of
//! tokens inside one value of one searched field (`tool_17` matches the tool `tool_17` and the
//! span name `tools/call tool_17`, not a span whose tool is `tool_3` and whose user is `user-17`).

use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, TokenStream,
};
use thiserror::Error;

use crate::codec::strdict::canonical_u64;

/// Name the analyzer is registered under in every day index.
pub const TOKENIZER: &str = "mcpobs";
/// Tokens of this many bytes or more are dropped (ids longer than a UUID's parts are not words).
pub const TOKEN_BYTES_LIMIT: usize = 64;
/// The verifier keeps one bit per term.
pub const QUERY_TERMS_LIMIT: usize = 64;

/// The analyzer shared by indexing, query parsing and verification.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(TOKEN_BYTES_LIMIT))
        .filter(LowerCaser)
        .build()
}

/// The tokens of `text`, in order, into `out` (cleared first).
pub fn tokens_into(a: &mut TextAnalyzer, text: &str, out: &mut Vec<String>) {
    out.clear();
    let mut ts = a.token_stream(text);
    while ts.advance() {
        out.push(ts.token().text.clone());
    }
}

/// Why a search query was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryError {
    #[error("search query is {bytes} bytes, more than the {max} allowed")]
    TooLong { bytes: usize, max: usize },
    #[error("search query has {tokens} words, more than the {max} allowed")]
    TooManyTerms { tokens: usize, max: usize },
    #[error("search query has no searchable words (letters or digits)")]
    NoTerms,
}

/// Limits applied when parsing a query.
#[derive(Clone, Copy, Debug)]
pub struct QueryLimits {
    pub query_bytes_max: usize,
    /// Most tokens over all terms (each is one clause of the index query).
    pub query_tokens_max: usize,
}

/// A parsed search query: terms, each a non-empty token sequence, distinct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextQuery {
    terms: Vec<Vec<String>>,
}

impl TextQuery {
    pub fn parse(q: &str, limits: QueryLimits) -> Result<TextQuery, QueryError> {
        if q.len() > limits.query_bytes_max {
            return Err(QueryError::TooLong {
                bytes: q.len(),
                max: limits.query_bytes_max,
            });
        }
        let mut a = analyzer();
        let mut terms: Vec<Vec<String>> = Vec::new();
        let mut toks = Vec::new();
        for raw in split_terms(q) {
            tokens_into(&mut a, raw, &mut toks);
            if !toks.is_empty() && !terms.contains(&toks) {
                terms.push(std::mem::take(&mut toks));
            }
        }
        if terms.is_empty() {
            return Err(QueryError::NoTerms);
        }
        let tokens: usize = terms.iter().map(Vec::len).sum();
        let max = limits.query_tokens_max.min(QUERY_TERMS_LIMIT);
        if tokens > max {
            return Err(QueryError::TooManyTerms { tokens, max });
        }
        Ok(TextQuery { terms })
    }

    pub fn terms(&self) -> &[Vec<String>] {
        &self.terms
    }

    /// Every distinct token of every term (what an index document must all contain).
    pub fn distinct_tokens(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.terms.iter().flatten().map(String::as_str).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Whitespace-separated pieces of `q`; a double-quoted piece is one term (`"connection refused"`).
fn split_terms(q: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = q;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return out;
        }
        if let Some(after) = rest.strip_prefix('"') {
            let end = after.find('"').unwrap_or(after.len());
            out.push(&after[..end]);
            rest = after.get(end + 1..).unwrap_or("");
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"')
                .unwrap_or(rest.len());
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
}

/// Decides which terms of a query a stored value matches, as a bit mask (bit `i` = term `i`).
/// Uses the same analyzer as the index; an ASCII-only prefilter skips analysis of values that
/// do not contain every token of some term as a (case-insensitive) substring.
pub struct Matcher {
    terms: Vec<Vec<String>>,
    /// Single-token terms that are canonical decimals: what a numeric-mode column value matches.
    nums: Vec<Option<u64>>,
    full: u64,
    analyzer: TextAnalyzer,
    buf: Vec<String>,
}

impl Matcher {
    pub fn new(q: &TextQuery) -> Matcher {
        let terms = q.terms.clone();
        let nums = terms
            .iter()
            .map(|t| match t.as_slice() {
                [one] => canonical_u64(one),
                _ => None,
            })
            .collect();
        let n = terms.len();
        Matcher {
            terms,
            nums,
            full: if n >= 64 { u64::MAX } else { (1u64 << n) - 1 },
            analyzer: analyzer(),
            buf: Vec::new(),
        }
    }

    /// The mask a span must reach (OR over its values) to match.
    pub fn full(&self) -> u64 {
        self.full
    }

    /// Terms that occur in `value` as a contiguous token run.
    pub fn value_mask(&mut self, value: &str) -> u64 {
        let mut maybe = self.full;
        if value.is_ascii() {
            maybe = 0;
            for (i, t) in self.terms.iter().enumerate() {
                if t.iter()
                    .all(|x| contains_ascii_ci(value.as_bytes(), x.as_bytes()))
                {
                    maybe |= 1 << i;
                }
            }
            if maybe == 0 {
                return 0;
            }
        }
        tokens_into(&mut self.analyzer, value, &mut self.buf);
        let mut mask = 0;
        for (i, t) in self.terms.iter().enumerate() {
            if maybe & (1 << i) != 0 && contains_run(&self.buf, t) {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// Terms a numeric-mode value (`n`, spelled canonically) matches.
    pub fn num_mask(&self, n: u64) -> u64 {
        let mut mask = 0;
        for (i, x) in self.nums.iter().enumerate() {
            if *x == Some(n) {
                mask |= 1 << i;
            }
        }
        mask
    }
}

/// Whether `run` occurs contiguously in `toks`.
fn contains_run(toks: &[String], run: &[String]) -> bool {
    !run.is_empty() && toks.windows(run.len()).any(|w| w == run)
}

/// ASCII case-insensitive substring test (`needle` is lowercase). A non-ASCII needle never
/// occurs in an ASCII haystack.
fn contains_ascii_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.len() > hay.len() {
        return false;
    }
    hay.windows(needle.len()).any(|w| {
        w.iter()
            .zip(needle)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: QueryLimits = QueryLimits {
        query_bytes_max: 512,
        query_tokens_max: 16,
    };

    fn toks(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        tokens_into(&mut analyzer(), s, &mut out);
        out
    }

    #[test]
    fn analyzer_splits_lowercases_and_drops_long_tokens() {
        assert_eq!(
            toks("tools/call search_docs"),
            ["tools", "call", "search", "docs"]
        );
        assert_eq!(
            toks("user-17@Example.COM"),
            ["user", "17", "example", "com"]
        );
        assert_eq!(
            toks("ÉCHEC: Connexion refusée"),
            ["échec", "connexion", "refusée"]
        );
        let long = "a".repeat(TOKEN_BYTES_LIMIT);
        assert_eq!(toks(&format!("x {long} y")), ["x", "y"]);
        assert!(toks("--- !!! ...").is_empty());
    }

    #[test]
    fn parse_terms_quotes_and_limits() {
        let q = TextQuery::parse(r#" tool_17  "Connection  refused" timeout "#, LIMITS).unwrap();
        assert_eq!(
            q.terms(),
            [
                vec!["tool", "17"],
                vec!["connection", "refused"],
                vec!["timeout"]
            ]
        );
        assert_eq!(
            q.distinct_tokens(),
            ["17", "connection", "refused", "timeout", "tool"]
        );
        // Duplicate terms collapse; an unterminated quote runs to the end.
        let q = TextQuery::parse("a A \"b c", LIMITS).unwrap();
        assert_eq!(q.terms(), [vec!["a"], vec!["b", "c"]]);
        assert_eq!(TextQuery::parse(" -- ", LIMITS), Err(QueryError::NoTerms));
        assert_eq!(
            TextQuery::parse(&"x".repeat(513), LIMITS),
            Err(QueryError::TooLong {
                bytes: 513,
                max: 512
            })
        );
        let many = (0..17)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            TextQuery::parse(&many, LIMITS),
            Err(QueryError::TooManyTerms {
                tokens: 17,
                max: 16
            })
        );
    }

    #[test]
    fn matcher_wants_each_term_as_a_run_inside_one_value() {
        let q = TextQuery::parse("tool_17 error", LIMITS).unwrap();
        let mut m = Matcher::new(&q);
        assert_eq!(m.full(), 0b11);
        assert_eq!(m.value_mask("tool_17"), 0b01);
        assert_eq!(m.value_mask("tools/call TOOL_17"), 0b01);
        assert_eq!(m.value_mask("tool_170"), 0);
        assert_eq!(m.value_mask("user-17 tool"), 0);
        assert_eq!(m.value_mask("Internal Error in tool_17"), 0b11);
        assert_eq!(m.value_mask("erreur"), 0);
        let q = TextQuery::parse("42 échec", LIMITS).unwrap();
        let mut m = Matcher::new(&q);
        assert_eq!(m.num_mask(42), 0b01);
        assert_eq!(m.num_mask(420), 0);
        assert_eq!(m.value_mask("ÉCHEC 42"), 0b11);
    }

    proptest! {
        /// The ASCII prefilter never rejects a value that full analysis would accept, and the
        /// matcher agrees with a direct token-run check.
        #[test]
        fn matcher_equals_plain_analysis(
            value in "[a-cA-C0-9 _./é-]{0,30}",
            q in "[a-cA-C0-9 _.\"é-]{1,12}",
        ) {
            let Ok(query) = TextQuery::parse(&q, LIMITS) else { return Ok(()) };
            let mut m = Matcher::new(&query);
            let vt = toks(&value);
            let mut want = 0u64;
            for (i, t) in query.terms().iter().enumerate() {
                if contains_run(&vt, t) {
                    want |= 1 << i;
                }
            }
            prop_assert_eq!(m.value_mask(&value), want);
        }
    }
}
