//! mcp-obs storage: the metadata store (`meta.redb`), the time-partitioned columnar span store, and
//! rollups and the text-search index. This crate knows nothing of HTTP, warp or maud.

pub mod analytics;
pub mod bufs;
pub mod codec;
pub mod error;
pub mod memory;
pub mod meta;
pub mod model;
pub mod rollup;
pub mod search;
pub mod spans;

pub use error::{Result, StorageError};
pub use meta::{MetaStore, Role};
