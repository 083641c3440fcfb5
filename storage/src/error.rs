//! Typed errors of the storage layer. `web` maps them to HTTP status in one place (`web::error`).

use thiserror::Error;

/// Failure of a storage operation (metadata or spans).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The underlying redb database failed (I/O, corruption, commit).
    /// Boxed: `redb::Error` is large and would bloat every `Result` on hot paths.
    #[error("database error: {0}")]
    Db(Box<redb::Error>),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes read back from disk did not decode; the file or block is damaged or from another format.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The data directory was written by a format version this binary cannot read.
    #[error("unsupported format version {found} (this binary reads {supported})")]
    FormatVersion { found: u32, supported: u32 },
    /// A uniqueness rule was violated (slug, username, email, name).
    #[error("{0} already exists")]
    Conflict(String),
    /// The named record does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Input rejected by a storage-level rule (length, charset, range).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The search index (tantivy) failed; it is derived data and is rebuilt from the spans.
    #[error("search index error: {0}")]
    Index(String),
    /// A search query was refused (length, words).
    #[error(transparent)]
    Query(#[from] crate::search::QueryError),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
