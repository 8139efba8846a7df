//! The estate a scenario seeds in one account, the management account or a
//! member: users, instances and backup snapshots, and what is wrong with
//! them as written, and the seeding of a member account's.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::Error;
use crate::yaml::{Located, Pos};

use super::admin::Admin;
use super::scenario::{AccountSeed, BackupSeed, InstanceSeed, UserSeed, check_region};
use super::seed::{Seeded, seed_backups, seed_instances, seed_users};

/// One account's users, instances and backups, as the scenario declares them.
pub struct Estate<'a> {
    pub users: &'a [Located<UserSeed>],
    pub instances: &'a [Located<InstanceSeed>],
    pub backups: &'a [Located<BackupSeed>],
}

impl<'a> Estate<'a> {
    /// Reports each mistake through `err`, and returns the regions with
    /// instances. `roles` are the roles instances may hold; `None` for a
    /// member account, which seeds none.
    pub fn check(
        &self,
        executor: &str,
        roles: Option<&BTreeSet<&str>>,
        err: &mut impl FnMut(Pos, String),
    ) -> BTreeSet<&'a str> {
        let mut users = BTreeSet::new();
        for u in self.users {
            if !users.insert(u.name.as_str()) {
                err(u.pos, format!("user `{}` is declared twice", u.name));
            }
            if u.name == executor {
                err(u.pos, format!("`{}` is the executor's name", u.name));
            }
            if u.access_keys > 2 {
                err(
                    u.pos,
                    format!(
                        "user `{}`: IAM allows at most 2 access keys, found {}",
                        u.name, u.access_keys
                    ),
                );
            }
        }
        let mut regions = BTreeSet::new();
        for i in self.instances {
            check_region(&i.region, i.pos, err);
            regions.insert(i.region.as_str());
            if i.count == 0 || i.count > 100 {
                err(i.pos, format!("count must be 1 to 100, found {}", i.count));
            }
            if i.data_volumes > 8 {
                err(i.pos, "at most 8 data volumes per instance".into());
            }
            if i.images > 5 {
                err(i.pos, format!("images must be 0 to 5, found {}", i.images));
            }
            match (&i.role, roles) {
                (Some(role), Some(roles)) if !roles.contains(role.as_str()) => err(
                    i.pos,
                    format!("role `{role}` is not declared under `roles`"),
                ),
                (Some(_), None) => err(
                    i.pos,
                    "a member account's instances take no `role` (a scenario seeds roles only in the management account)".into(),
                ),
                _ => {}
            }
        }
        for b in self.backups {
            check_region(&b.region, b.pos, err);
            if !regions.contains(b.region.as_str()) {
                err(
                    b.pos,
                    format!(
                        "no instances in {}: backups snapshot the region's volumes",
                        b.region
                    ),
                );
            }
            if b.snapshots > 100 {
                err(b.pos, "at most 100 snapshots per region".into());
            }
        }
        regions
    }
}

/// What a scenario seeded in one member account: what the report reads
/// back there.
#[derive(Debug, Default, Clone, Serialize)]
pub struct MemberEstate {
    pub account: String,
    pub users: usize,
    /// user → its access key ids.
    pub user_keys: BTreeMap<String, Vec<String>>,
    /// Users seeded with a console password.
    pub console_users: Vec<String>,
    /// region → instance ids.
    pub instances: BTreeMap<String, Vec<String>>,
    /// region → backup snapshot ids.
    pub snapshots: BTreeMap<String, Vec<String>>,
}

/// Whether a member account has users, instances or backups to seed.
pub(super) fn has_estate(a: &AccountSeed) -> bool {
    !(a.users.is_empty() && a.instances.is_empty() && a.backups.is_empty() && a.buckets.is_empty())
}

/// Seeds a member account's users, instances and backups through its
/// member role, as its own administrator would have made them.
pub(super) async fn seed_member(
    admin: &Admin,
    a: &AccountSeed,
    id: &str,
) -> Result<MemberEstate, Error> {
    let member = admin
        .in_account(id, super::members::MEMBER_ROLE)
        .await
        .map_err(|e| Error::Emulator(format!("seeding: account {}: {e}", a.name)))?;
    let mut made = Seeded::default();
    seed_users(&member, &a.users, &mut made).await?;
    seed_instances(&member, &a.instances, &mut made).await?;
    seed_backups(&member, &a.backups, &mut made).await?;
    for b in &a.buckets {
        super::buckets::seed(&member, b)
            .await
            .map_err(|e| Error::Emulator(format!("seeding: account {}: {e}", a.name)))?;
    }
    Ok(MemberEstate {
        account: id.to_string(),
        users: made.users,
        user_keys: made.user_keys,
        console_users: a
            .users
            .iter()
            .filter(|u| u.console)
            .map(|u| u.name.clone())
            .collect(),
        instances: made.instances,
        snapshots: made.backup_ids,
    })
}
