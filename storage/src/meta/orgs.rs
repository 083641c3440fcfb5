//! Organizations and memberships. Invariant: every organization keeps at least one owner, so
//! removing or demoting the last owner is refused.

use redb::{ReadableTable, WriteTransaction};

use super::tables::{self, MEMBERS, ORGS, ORG_BY_SLUG, USERS, USER_ORGS};
use super::types::{Member, Org, OrgUpdate, Role, User};
use super::users::{insert_user, UserRow};
use super::{now_ms, validate, MetaStore};
use crate::error::{Result, StorageError};
use crate::model::{OrgId, UserId};

/// Retention of a new organization.
pub const RETENTION_DAYS_DEFAULT: u32 = 90;

fn role_of(v: u8) -> Result<Role> {
    Role::from_u8(v).ok_or_else(|| StorageError::Corrupt(format!("role {v}")))
}

fn put_membership(txn: &WriteTransaction, org: OrgId, user: UserId, role: Role) -> Result<()> {
    txn.open_table(MEMBERS)?.insert((org, user), role as u8)?;
    txn.open_table(USER_ORGS)?.insert((user, org), role as u8)?;
    Ok(())
}

/// Inserts an organization owned by `creator` inside `txn`.
pub(super) fn insert_org(
    txn: &WriteTransaction,
    creator: UserId,
    slug: &str,
    name: &str,
) -> Result<Org> {
    if txn.open_table(USERS)?.get(creator)?.is_none() {
        return Err(StorageError::NotFound("user".into()));
    }
    let mut by_slug = txn.open_table(ORG_BY_SLUG)?;
    if by_slug.get(slug)?.is_some() {
        return Err(StorageError::Conflict("organization slug".into()));
    }
    let id = tables::next_id(txn, tables::K_NEXT_ORG)?;
    let org = Org {
        id,
        slug: slug.to_string(),
        name: name.to_string(),
        created_at_ms: now_ms(),
        retention_days: RETENTION_DAYS_DEFAULT,
    };
    txn.open_table(ORGS)?
        .insert(id, tables::encode(&org)?.as_slice())?;
    by_slug.insert(slug, id)?;
    put_membership(txn, id, creator, Role::Owner)?;
    Ok(org)
}

/// Number of owners of `org`. Scans only that organization's members (admin path, not per request).
fn owner_count(txn: &WriteTransaction, org: OrgId) -> Result<usize> {
    let members = txn.open_table(MEMBERS)?;
    let mut n = 0;
    for entry in members.range((org, 0)..=(org, u32::MAX))? {
        if entry?.1.value() == Role::Owner as u8 {
            n += 1;
        }
    }
    Ok(n)
}

/// The member's current role, or `NotFound("member")`.
fn current_role(txn: &WriteTransaction, org: OrgId, user: UserId) -> Result<Role> {
    let role = txn
        .open_table(MEMBERS)?
        .get((org, user))?
        .map(|v| v.value());
    role_of(role.ok_or_else(|| StorageError::NotFound("member".into()))?)
}

const LAST_OWNER: &str = "an organization must keep at least one owner";

impl MetaStore {
    /// Creates an organization; `creator` becomes its owner.
    pub fn create_org(&self, creator: UserId, slug: &str, name: &str) -> Result<Org> {
        validate::slug(slug)?;
        validate::display_name("name", name)?;
        self.write(|txn| insert_org(txn, creator, slug, name))
    }

    pub fn org(&self, id: OrgId) -> Result<Option<Org>> {
        self.read(|txn| tables::get_json(&txn.open_table(ORGS)?, id, "org"))
    }

    pub fn org_by_slug(&self, slug: &str) -> Result<Option<Org>> {
        self.read(
            |txn| match txn.open_table(ORG_BY_SLUG)?.get(slug)?.map(|v| v.value()) {
                Some(id) => tables::get_json(&txn.open_table(ORGS)?, id, "org"),
                None => Ok(None),
            },
        )
    }

    /// The organization by slug together with `user`'s role there, in one read transaction:
    /// the per-request authorization lookup.
    pub fn org_and_role(&self, slug: &str, user: UserId) -> Result<Option<(Org, Option<Role>)>> {
        self.read(|txn| {
            let Some(id) = txn.open_table(ORG_BY_SLUG)?.get(slug)?.map(|v| v.value()) else {
                return Ok(None);
            };
            let Some(org) = tables::get_json::<_, Org>(&txn.open_table(ORGS)?, id, "org")? else {
                return Ok(None);
            };
            let role = txn.open_table(MEMBERS)?.get((id, user))?.map(|v| v.value());
            Ok(Some((org, role.map(role_of).transpose()?)))
        })
    }

    pub fn update_org(&self, id: OrgId, update: &OrgUpdate) -> Result<Org> {
        if let Some(name) = &update.name {
            validate::display_name("name", name)?;
        }
        if let Some(days) = update.retention_days {
            validate::retention_days(days)?;
        }
        self.write(|txn| {
            let mut orgs = txn.open_table(ORGS)?;
            let mut org: Org = tables::get_json(&orgs, id, "org")?
                .ok_or_else(|| StorageError::NotFound("organization".into()))?;
            if let Some(name) = &update.name {
                org.name = name.clone();
            }
            if let Some(days) = update.retention_days {
                org.retention_days = days;
            }
            orgs.insert(id, tables::encode(&org)?.as_slice())?;
            Ok(org)
        })
    }

    /// All organizations in id order. For operators and tests, not request paths.
    pub fn all_orgs(&self) -> Result<Vec<Org>> {
        self.read(|txn| {
            let orgs = txn.open_table(ORGS)?;
            let mut out = Vec::new();
            for entry in orgs.range::<u32>(..)? {
                out.push(tables::decode(entry?.1.value(), "org")?);
            }
            Ok(out)
        })
    }

    /// Organizations `user` belongs to, with the role there, in org id order.
    pub fn orgs_of_user(&self, user: UserId) -> Result<Vec<(Org, Role)>> {
        self.read(|txn| {
            let user_orgs = txn.open_table(USER_ORGS)?;
            let orgs = txn.open_table(ORGS)?;
            let mut out = Vec::new();
            for entry in user_orgs.range((user, 0)..=(user, u32::MAX))? {
                let (key, role) = entry?;
                let org_id = key.value().1;
                if let Some(org) = tables::get_json(&orgs, org_id, "org")? {
                    out.push((org, role_of(role.value())?));
                }
            }
            Ok(out)
        })
    }

    /// `user`'s role in `org`, `None` when not a member.
    pub fn role(&self, org: OrgId, user: UserId) -> Result<Option<Role>> {
        self.read(|txn| {
            let role = txn
                .open_table(MEMBERS)?
                .get((org, user))?
                .map(|v| v.value());
            role.map(role_of).transpose()
        })
    }

    /// Members of `org` with their roles, in user id order.
    pub fn members(&self, org: OrgId) -> Result<Vec<Member>> {
        self.read(|txn| {
            let members = txn.open_table(MEMBERS)?;
            let users = txn.open_table(USERS)?;
            let mut out = Vec::new();
            for entry in members.range((org, 0)..=(org, u32::MAX))? {
                let (key, role) = entry?;
                let row: Option<UserRow> = tables::get_json(&users, key.value().1, "user")?;
                if let Some(row) = row {
                    out.push(Member {
                        user: row.user,
                        role: role_of(role.value())?,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Adds an existing user to `org`. `Conflict` when already a member.
    pub fn add_member(&self, org: OrgId, user: UserId, role: Role) -> Result<()> {
        self.write(|txn| {
            if txn.open_table(ORGS)?.get(org)?.is_none() {
                return Err(StorageError::NotFound("organization".into()));
            }
            if txn.open_table(USERS)?.get(user)?.is_none() {
                return Err(StorageError::NotFound("user".into()));
            }
            if txn.open_table(MEMBERS)?.get((org, user))?.is_some() {
                return Err(StorageError::Conflict("membership".into()));
            }
            put_membership(txn, org, user, role)
        })
    }

    /// Creates user `username` (lowercase already) and makes them a member of `org` with `role`,
    /// in one write transaction: if anything fails (a taken username or email, a missing
    /// organization) neither the user nor the membership exists afterwards. Hashes the password
    /// with argon2id before the transaction: blocking, slow.
    pub fn create_member(
        &self,
        org: OrgId,
        username: &str,
        email: Option<&str>,
        password: &str,
        role: Role,
    ) -> Result<User> {
        validate::username(username)?;
        if let Some(e) = email {
            validate::email(e)?;
        }
        validate::password(password)?;
        let hash = self.hash(password)?;
        self.write(|txn| {
            let user = insert_user(txn, username, email, hash)?;
            // Checked after the insert on purpose: a failure here drops the transaction with the
            // user in it, which is what the tests of this atomicity rely on.
            if txn.open_table(ORGS)?.get(org)?.is_none() {
                return Err(StorageError::NotFound("organization".into()));
            }
            put_membership(txn, org, user.id, role)?;
            Ok(user)
        })
    }

    /// Changes a member's role; refuses to demote the last owner.
    pub fn set_role(&self, org: OrgId, user: UserId, role: Role) -> Result<()> {
        self.write(|txn| {
            let current = current_role(txn, org, user)?;
            if current == Role::Owner && role != Role::Owner && owner_count(txn, org)? <= 1 {
                return Err(StorageError::Invalid(LAST_OWNER.into()));
            }
            put_membership(txn, org, user, role)
        })
    }

    /// Removes a member; refuses to remove the last owner.
    pub fn remove_member(&self, org: OrgId, user: UserId) -> Result<()> {
        self.write(|txn| {
            let current = current_role(txn, org, user)?;
            if current == Role::Owner && owner_count(txn, org)? <= 1 {
                return Err(StorageError::Invalid(LAST_OWNER.into()));
            }
            txn.open_table(MEMBERS)?.remove((org, user))?;
            txn.open_table(USER_ORGS)?.remove((user, org))?;
            Ok(())
        })
    }
}
