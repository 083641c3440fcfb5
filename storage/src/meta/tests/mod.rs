//! Tests of the metadata store against real redb files in temporary directories: shared
//! helpers here, the tests by topic in the submodules.

mod accounts;
mod format_fixture;
mod persistence;
mod servers_keys;

use std::path::PathBuf;

use super::*;
use crate::error::StorageError;
use crate::model::Env;

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "mcpobs-meta-{}-{}",
            std::process::id(),
            secret::random_base62(12)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self) -> PathBuf {
        self.0.join(META_FILE_NAME)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const FAST: MetaOptions = MetaOptions {
    hash_cost: HashCost::Low,
};

fn store(dir: &TempDir) -> MetaStore {
    MetaStore::open_with(dir.file(), FAST).unwrap()
}

/// A store with a bootstrapped admin (user 1, owner of `default`, org 1).
fn bootstrapped(dir: &TempDir) -> (MetaStore, User, Org) {
    let meta = store(dir);
    meta.bootstrap(Some("admin-password")).unwrap().unwrap();
    let admin = meta.user_by_username("admin").unwrap().unwrap();
    let org = meta.org_by_slug("default").unwrap().unwrap();
    (meta, admin, org)
}

fn server(name: &str, telemetry: bool) -> NewServer {
    NewServer {
        name: name.into(),
        telemetry_enabled: telemetry,
        ..NewServer::default()
    }
}

fn is_conflict<T: std::fmt::Debug>(r: crate::Result<T>) -> bool {
    matches!(r, Err(StorageError::Conflict(_)))
}
fn is_invalid<T: std::fmt::Debug>(r: crate::Result<T>) -> bool {
    matches!(r, Err(StorageError::Invalid(_)))
}
fn is_not_found<T: std::fmt::Debug>(r: crate::Result<T>) -> bool {
    matches!(r, Err(StorageError::NotFound(_)))
}
