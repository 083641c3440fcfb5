//! First start: an empty store gets organization `default` and its owner `admin`.

use redb::ReadableTableMetadata;

use super::orgs::insert_org;
use super::secret::random_base62;
use super::tables::{ORGS, USERS};
use super::types::Bootstrap;
use super::users::insert_user;
use super::{validate, MetaStore};
use crate::error::Result;

pub const DEFAULT_ORG_SLUG: &str = "default";
pub const DEFAULT_ORG_NAME: &str = "Default";
pub const ADMIN_USERNAME: &str = "admin";
/// 20 base62 characters: about 119 bits.
const GENERATED_PASSWORD_LEN: usize = 20;

impl MetaStore {
    fn is_empty(&self) -> Result<bool> {
        self.read(|txn| Ok(txn.open_table(ORGS)?.is_empty()? && txn.open_table(USERS)?.is_empty()?))
    }

    /// On an empty store, creates organization `default` ("Default") and its owner `admin` with
    /// `admin_password`, or a random 20-character one returned in `password_generated` for the
    /// binary to print once. On a non-empty store does nothing and returns `None`.
    pub fn bootstrap(&self, admin_password: Option<&str>) -> Result<Option<Bootstrap>> {
        // Cheap check first so a normal start does not pay for an argon2 hash.
        if !self.is_empty()? {
            return Ok(None);
        }
        let generated = match admin_password {
            Some(p) => {
                validate::bootstrap_password(p)?;
                None
            }
            None => Some(random_base62(GENERATED_PASSWORD_LEN)),
        };
        let password = admin_password.or(generated.as_deref()).unwrap_or_default();
        let hash = self.hash(password)?;
        self.write(|txn| {
            // Re-checked inside the write transaction: two racing starts create one admin.
            if !txn.open_table(ORGS)?.is_empty()? || !txn.open_table(USERS)?.is_empty()? {
                return Ok(None);
            }
            let admin = insert_user(txn, ADMIN_USERNAME, None, hash)?;
            insert_org(txn, admin.id, DEFAULT_ORG_SLUG, DEFAULT_ORG_NAME)?;
            Ok(Some(Bootstrap {
                org_slug: DEFAULT_ORG_SLUG.to_string(),
                username: ADMIN_USERNAME.to_string(),
                password_generated: generated,
            }))
        })
    }
}
