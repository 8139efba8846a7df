//! The identities a scenario seeds beyond IAM users and roles: IAM Identity
//! Center users and groups, and the role sessions the attacker holds.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::yaml::{Located, Pos};

/// IAM Identity Center users and groups. Each permission set named is
/// created once, assigned in this account and provisioned there (as AWS
/// does on assignment).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityCenterSeed {
    #[serde(default)]
    pub groups: Vec<SsoGroupSeed>,
    #[serde(default)]
    pub users: Vec<SsoUserSeed>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoGroupSeed {
    pub name: String,
    /// Permission sets assigned to the group in this account.
    #[serde(default)]
    pub permission_sets: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoUserSeed {
    /// The user name (what it signs in with).
    pub name: String,
    /// Declared groups it is a member of.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Permission sets assigned to the user itself in this account.
    #[serde(default)]
    pub permission_sets: Vec<String>,
    /// The attacker holds this user's sign-in and role sessions: the report
    /// says whether any of them still works after the run.
    #[serde(default)]
    pub compromised: bool,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionSeed {
    /// A declared role.
    pub role: String,
    /// The session's name (the last part of `assumed-role/ROLE/NAME`).
    pub name: String,
}

/// Identity Center names are unique, groups a user joins are declared.
pub(super) fn check_identity_center(
    ic: &Located<IdentityCenterSeed>,
    err: &mut impl FnMut(Pos, String),
) {
    let mut groups = BTreeSet::new();
    for g in &ic.groups {
        if !groups.insert(g.name.as_str()) {
            err(
                ic.pos,
                format!("Identity Center group `{}` is declared twice", g.name),
            );
        }
    }
    let mut users = BTreeSet::new();
    for u in &ic.users {
        if !users.insert(u.name.as_str()) {
            err(
                ic.pos,
                format!("Identity Center user `{}` is declared twice", u.name),
            );
        }
        for g in u.groups.iter().filter(|g| !groups.contains(g.as_str())) {
            err(
                ic.pos,
                format!(
                    "Identity Center user `{}`: group `{g}` is not declared under `identity_center.groups`",
                    u.name
                ),
            );
        }
    }
    let named = ic
        .groups
        .iter()
        .flat_map(|g| &g.permission_sets)
        .chain(ic.users.iter().flat_map(|u| &u.permission_sets));
    for ps in named {
        // PermissionSet.Name: 1 to 32 of [\w+=,.@-] (IAM Identity Center API reference).
        let ok = (1..=32).contains(&ps.len())
            && ps
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
        if !ok {
            err(
                ic.pos,
                format!(
                    "`{ps}` is not a permission set name (1 to 32 of letters, digits and _+=,.@-)"
                ),
            );
        }
    }
}
