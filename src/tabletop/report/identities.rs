//! Whether the identities the attacker holds still work after the run: a
//! compromised Identity Center user and a stolen role session. Read from
//! the emulator; moto evaluates no policy, so what a deny would refuse is
//! judged from the policies themselves, as breakglass's own checks read
//! them (an exact statement, never a look-alike).

use aws_sdk_ssoadmin::types::{PrincipalType, ProvisioningStatus};

use super::{Exposed, ExposureKind};
use crate::actions::iam::{Ours, url_decode, written_by_breakglass};
use crate::actions::sso::policy;
use crate::tabletop::admin::Admin;
use crate::tabletop::scenario::Scenario;
use crate::tabletop::seed::{Seeded, SeededIdentityCenter};

/// What stays open of the scenario's compromised users and stolen sessions.
pub async fn identities(admin: &Admin, scenario: &Scenario, seeded: &Seeded) -> Vec<Exposed> {
    let mut out = Vec::new();
    if let (Some(ic), Some(found)) = (&scenario.file.identity_center, &seeded.identity_center) {
        for u in ic.users.iter().filter(|u| u.compromised) {
            // What it held when the attacker took it: its own permission
            // sets and its groups'.
            let held: Vec<&String> = u
                .permission_sets
                .iter()
                .chain(
                    ic.groups
                        .iter()
                        .filter(|g| u.groups.contains(&g.name))
                        .flat_map(|g| &g.permission_sets),
                )
                .collect();
            if let Some(id) = found.users.get(&u.name) {
                out.extend(sso_user(admin, found, &u.name, id, &held).await);
            }
        }
    }
    out.extend(root_users(seeded));
    for s in &scenario.file.stolen_sessions {
        if !session_denied(admin, &s.role, &s.name).await {
            out.push(Exposed {
                kind: ExposureKind::Open,
                what: format!("session {} of role {}", s.name, s.role),
                why: "the stolen temporary key still works: no deny of that session (aws:userid), of the role's older sessions, or of the role".into(),
            });
        }
    }
    out
}

async fn sso_user(
    admin: &Admin,
    ic: &SeededIdentityCenter,
    user: &str,
    id: &str,
    held: &[&String],
) -> Vec<Exposed> {
    let sso = admin.sso_admin();
    let mut out = Vec::new();
    for name in held {
        let Some(ps) = ic.permission_sets.get(*name) else {
            continue;
        };
        let doc = sso
            .get_inline_policy_for_permission_set()
            .instance_arn(&ic.instance_arn)
            .permission_set_arn(ps)
            .send()
            .await;
        // A read that fails proves nothing: it counts as not denied.
        let denied = doc
            .ok()
            .is_some_and(|d| policy::denied(d.inline_policy()).contains(id));
        let stale = sso
            .list_accounts_for_provisioned_permission_set()
            .instance_arn(&ic.instance_arn)
            .permission_set_arn(ps)
            .provisioning_status(ProvisioningStatus::LatestPermissionSetNotProvisioned)
            .send()
            .await
            .map_or(true, |l| !l.account_ids().is_empty());
        let why = match (denied, stale) {
            (true, false) => continue,
            (true, true) => {
                "its role sessions minted before the run still work: the permission set's deny has not been provisioned to every account"
            }
            (false, _) => {
                "its role sessions minted before the run still work: the permission set does not deny it (identitystore:UserId)"
            }
        };
        out.push(Exposed {
            kind: ExposureKind::Open,
            what: format!("Identity Center user {user} in permission set {name}"),
            why: why.into(),
        });
    }
    let assigned = sso
        .list_account_assignments_for_principal()
        .instance_arn(&ic.instance_arn)
        .principal_type(PrincipalType::User)
        .principal_id(id)
        .send()
        .await;
    let groups = admin
        .identitystore()
        .list_group_memberships_for_member()
        .identity_store_id(&ic.identity_store_id)
        .member_id(aws_sdk_identitystore::types::MemberId::UserId(
            id.to_string(),
        ))
        .send()
        .await;
    let (Ok(assigned), Ok(groups)) = (assigned, groups) else {
        out.push(Exposed {
            kind: ExposureKind::Open,
            what: format!("Identity Center user {user}"),
            why: "its assignments or group memberships could not be read back: not shown to be cut off".into(),
        });
        return out;
    };
    let own = assigned
        .account_assignments()
        .iter()
        .filter(|a| a.principal_id() == Some(id))
        .count();
    let groups = groups.group_memberships().len();
    if own + groups > 0 {
        // Denied everywhere it is denied, or open above: either way the
        // access itself is still there to take away.
        let kind = match out.is_empty() {
            true => ExposureKind::Leftover,
            false => ExposureKind::Open,
        };
        out.push(Exposed {
            kind,
            what: format!("Identity Center user {user}"),
            why: format!(
                "still holds {own} account assignment(s) and {groups} group membership(s): it can sign in to roles again"
            ),
        });
    }
    out
}

/// Member root users that still have a credential after the run: the shim
/// holds them (moto has no root user), so they are read from it.
fn root_users(seeded: &Seeded) -> Vec<Exposed> {
    let Some(roots) = &seeded.roots else {
        return Vec::new();
    };
    seeded
        .root_users
        .keys()
        .filter_map(|name| {
            let id = seeded.member_accounts.get(name)?;
            let now = roots
                .lock()
                .ok()?
                .users
                .get(id)
                .cloned()
                .unwrap_or_default();
            (!now.is_empty()).then(|| Exposed {
                kind: ExposureKind::Open,
                what: format!("root user of account {name} ({id})"),
                why: format!(
                    "still has {}: whoever holds them signs in or calls AWS as root",
                    now.describe()
                ),
            })
        })
        .collect()
}

/// Whether the role denies the session: by its `aws:userid`, by a
/// revocation of older sessions, or by a quarantine of the role. A role
/// that is gone has no sessions.
async fn session_denied(admin: &Admin, role: &str, session: &str) -> bool {
    let iam = admin.iam();
    let found = match iam.get_role().role_name(role).send().await {
        Ok(found) => found,
        // Only a role that is gone has no sessions; any other failure
        // proves nothing.
        Err(e) => {
            use aws_sdk_iam::error::ProvideErrorMetadata;
            return e.code() == Some("NoSuchEntity");
        }
    };
    let role_id = found
        .role()
        .map(|r| r.role_id().to_string())
        .unwrap_or_default();
    let userid = format!("{role_id}:{session}");
    let names = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map(|l| l.policy_names().to_vec())
        .unwrap_or_default();
    for name in names {
        let Ok(doc) = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(&name)
            .send()
            .await
        else {
            continue;
        };
        match written_by_breakglass(&name, &url_decode(doc.policy_document())) {
            // The session was minted before the exercise began, so any
            // revocation the run wrote covers it.
            Some(Ours::Quarantine | Ours::Revocation(_)) => return true,
            Some(Ours::Sessions(ids)) if ids.contains(&userid) => return true,
            _ => {}
        }
    }
    false
}
