//! mcp-obs storage: the metadata store (`meta.redb`), the time-partitioned columnar span store, and
//! (later) rollups and the search index. This crate knows nothing of HTTP, warp or maud.

pub mod error;
pub mod model;

pub use error::{Result, StorageError};
pub mod codec;
pub mod spans;
pub mod meta;
pub use meta::{MetaStore, Role};
