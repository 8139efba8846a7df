//! `sso.contain_users`: contain IAM Identity Center users. They have no IAM
//! keys or passwords, and the `AWSReservedSSO_*` roles they sign in to
//! cannot be edited in IAM, so no IAM step reaches them.
//!
//! The step follows AWS's procedure ("Revoke active IAM role sessions
//! created by permission sets", IAM Identity Center User Guide):
//! - deny the user in every permission set of the instance: a `Deny *` on
//!   `identitystore:UserId` in the permission set's inline policy,
//!   provisioned to every account. Portal and role sessions cannot be
//!   listed or ended by API; this is what stops the role sessions already
//!   minted, without touching the colleagues who use the same permission
//!   set ([`policy`]). Every permission set, not only those the user holds
//!   now: what it held through a group it may have left, or will be given
//!   again, is covered too, and `verify` needs no memory of the run: a
//!   permission set counts as contained only once its deny has reached
//!   every account it is provisioned to;
//! - delete the user's own account assignments (asynchronous: followed to
//!   the end) and its other group memberships, so it can assume no role
//!   again. A member of a group the step names stays in that group, so
//!   that `verify` can still find it there; the deny leaves it nothing.
//!
//! What it cannot do is said in the plan: a user from an external identity
//! provider must be disabled there too (SCIM may add it to groups again),
//! and the portal session is ended in the console only.
//!
//! AWS behaviour relied on (Identity Store API reference): `GetUserId` and
//! `GetGroupId` resolve a `UniqueAttribute` (`userName`, `emails.value`,
//! `displayName`) and answer `ResourceNotFoundException` for no match;
//! `DescribeUser` lists `ExternalIds` for users provisioned by SCIM.

mod access;
mod calls;
mod directory;
pub mod policy;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_identitystore::types::MemberId;
use aws_sdk_ssoadmin::types::{PrincipalType, ProvisioningStatus};
use futures_util::{StreamExt, stream};
use schemars::JsonSchema;
use serde::Deserialize;

pub use access::{
    Assignment, DeleteAssignment, Membership, RemoveMembership, RestoreAssignment,
    RestoreMembership,
};
pub use calls::{DenyUsers, LiftUserDeny};

use directory::{Store, USER, User, instance, named, resolve, screen};

use super::regions::target_in;
use super::{
    Action, ActionInfo, BoundStep, Ctx, Disposition, Op, Planned, Reversibility, Runs, Sink,
};
use crate::aws::{AwsError, local};

/// `with:` of `sso.contain_users`. At least one user, email or group: the
/// step never reaches "every user".
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainUsersParams {
    /// User names in the identity store.
    #[serde(default)]
    pub users: Vec<String>,
    /// Email addresses (`emails.value`).
    #[serde(default)]
    pub emails: Vec<String>,
    /// Group display names: every member of each is contained. They stay
    /// members of the named group (so that `verify` finds them again) and
    /// the group's own assignments stay; the deny leaves them nothing.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The region of the Identity Center instance (default: the session's).
    #[serde(default)]
    pub region: Option<String>,
    /// Provision a permission set that has changes not yet provisioned
    /// (someone's edit, or an earlier run's provisioning that did not
    /// finish). Provisioning sends the permission set's whole current
    /// version, so without this such a set is left alone and reported.
    #[serde(default)]
    pub provision_pending: bool,
}

pub struct ContainUsers;

impl Action for ContainUsers {
    const INFO: ActionInfo = ActionInfo {
        id: "sso.contain_users",
        summary: "Contain IAM Identity Center users: deny them in every permission set (their minted sessions included), remove their account assignments and group memberships.",
        targets: &[],
        params: &[
            ("users", "user names in the identity store"),
            ("emails", "email addresses"),
            ("groups", "group names: every member"),
            (
                "region",
                "the Identity Center instance's region (default: the session's)",
            ),
            (
                "provision_pending",
                "also provision permission sets with changes not yet provisioned, someone else's included (default: false, they are reported)",
            ),
        ],
        calls: &[
            "sso:PutInlinePolicyToPermissionSet",
            "sso:DeleteInlinePolicyFromPermissionSet (rollback, when nothing else is left)",
            "sso:ProvisionPermissionSet",
            "sso:DeleteAccountAssignment",
            "identitystore:DeleteGroupMembership",
            "sso:CreateAccountAssignment and identitystore:CreateGroupMembership (rollback)",
        ],
        reversibility: Reversibility::Reversible(
            "the deny is lifted for this run's users only; assignments and memberships are created again",
        ),
        notes: &[
            "Runs from the management account, where the organization's Identity Center instance lives (ListAccountAssignmentsForPrincipal must be called there).",
            "The deny names the user's identity store id: colleagues using the same permission set keep working.",
            "Sessions the attacker assumed onward from an Identity Center role, and IAM users or keys it made, are other principals: contain them with the IAM steps.",
            "AWS access portal sessions cannot be ended by API: delete the user's active sessions in the IAM Identity Center console.",
            "A user from an external identity provider (SCIM) must be disabled there too, or the provider may add it to groups again.",
            "The group's own assignments stay: removing them would cut off every other member.",
            "A permission set with changes not yet provisioned is left alone and reported: provisioning would push them live (`provision_pending: true` to do it anyway).",
            "Application assignments (SAML and integrated applications) are not removed: remove them in the IAM Identity Center console.",
        ],
    };
    const RUNS: Runs = Runs::Organization;
    type Params = ContainUsersParams;

    fn check(p: &ContainUsersParams) -> Result<(), String> {
        if p.users.is_empty() && p.emails.is_empty() && p.groups.is_empty() {
            return Err(
                "name at least one of `users`, `emails` or `groups`: this action never reaches every user"
                    .into(),
            );
        }
        let all = p.users.iter().chain(&p.emails).chain(&p.groups);
        if let Some(bad) = all.clone().find(|n| n.trim().is_empty()) {
            return Err(format!("`{bad}` is empty: name a user, email or group"));
        }
        match &p.region {
            Some(r) if r.is_empty() || r.contains(char::is_whitespace) => {
                Err(format!("`{r}` is not a region"))
            }
            _ => Ok(()),
        }
    }

    fn names_subjects(_p: &ContainUsersParams) -> bool {
        true
    }

    async fn discover(
        ctx: &Ctx,
        _step: &BoundStep,
        p: &ContainUsersParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        let region = p
            .region
            .clone()
            .or_else(|| ctx.clients.region())
            .ok_or_else(|| {
                local(
                    "sso:ListInstances",
                    "no region: name the Identity Center instance's in `with: { region: … }`"
                        .into(),
                )
            })?;
        let store = instance(ctx, &region).await?;
        let mut notes = Vec::new();
        let (users, named_groups) = resolve(ctx, &store, p, sink, &mut notes).await?;
        let chosen = screen(ctx, &store, users, sink, &mut notes).await;
        // The denies first: they stop the sessions already minted, and the
        // names they read serve the assignments too.
        let names = plan_denies(ctx, &store, &chosen, p.provision_pending, sink).await?;
        plan_access(ctx, &store, &chosen, &named_groups, &names, sink).await;
        Ok(notes)
    }
}

/// (account, permission set ARN) pairs a principal is assigned.
pub(super) async fn assignments(
    ctx: &Ctx,
    region: &str,
    instance: &str,
    kind: PrincipalType,
    principal: &str,
) -> Result<Vec<(String, String)>, AwsError> {
    let sso = ctx.clients.sso_admin(region);
    let pages = ctx
        .pages(
            Some(region),
            "sso:ListAccountAssignmentsForPrincipal",
            |token| {
                sso.list_account_assignments_for_principal()
                    .instance_arn(instance)
                    .principal_type(kind.clone())
                    .principal_id(principal)
                    .set_next_token(token)
                    .send()
            },
            |page| page.next_token().map(str::to_string),
        )
        .await?;
    // Only the principal's own rows: an assignment it has through a group
    // is the group's, never deleted for it.
    Ok(pages
        .iter()
        .flat_map(|p| p.account_assignments())
        .filter(|a| a.principal_type() == Some(&kind) && a.principal_id() == Some(principal))
        .filter_map(|a| {
            Some((
                a.account_id()?.to_string(),
                a.permission_set_arn()?.to_string(),
            ))
        })
        .collect())
}

/// (membership id, group id) of each group a user is in.
pub(super) async fn memberships(
    ctx: &Ctx,
    region: &str,
    store: &str,
    user: &str,
) -> Result<Vec<(String, String)>, AwsError> {
    let ids = ctx.clients.identitystore(region);
    let pages = ctx
        .pages(
            Some(region),
            "identitystore:ListGroupMembershipsForMember",
            |token| {
                ids.list_group_memberships_for_member()
                    .identity_store_id(store)
                    .member_id(MemberId::UserId(user.to_string()))
                    .set_next_token(token)
                    .send()
            },
            |page| page.next_token().map(str::to_string),
        )
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.group_memberships())
        .filter_map(|m| Some((m.membership_id().to_string(), m.group_id()?.to_string())))
        .collect())
}

/// Plans the removal of each user's own assignments and of its memberships
/// in groups the step does not name.
async fn plan_access(
    ctx: &Ctx,
    store: &Store,
    users: &[User],
    named_groups: &BTreeSet<String>,
    names: &BTreeMap<String, String>,
    sink: &Sink,
) {
    let ids = ctx.clients.identitystore(&store.region);
    let region = store.region.as_str();
    let mut group_names: BTreeMap<String, String> = BTreeMap::new();
    for user in users {
        let own = assignments(
            ctx,
            region,
            &store.instance_arn,
            PrincipalType::User,
            &user.id,
        )
        .await;
        let groups = memberships(ctx, region, &store.identity_store_id, &user.id).await;
        let (own, groups) = match (own, groups) {
            (Ok(o), Ok(g)) => (o, g),
            (Err(error), _) | (_, Err(error)) => {
                sink.emit(Planned {
                    target: target_in(ctx, region, named(USER, &user.name)),
                    disposition: Disposition::Unreadable { error },
                });
                continue;
            }
        };
        for (account, ps) in own {
            let a = Assignment {
                region: region.to_string(),
                instance_arn: store.instance_arn.clone(),
                account_id: account.clone(),
                permission_set: names.get(&ps).cloned().unwrap_or_else(|| ps.clone()),
                permission_set_arn: ps,
                user_id: user.id.clone(),
                user: user.name.clone(),
            };
            sink.emit(Planned {
                target: target_in(
                    ctx,
                    region,
                    named("Identity Center account assignment", a_label(&a)),
                ),
                disposition: Disposition::Change {
                    op: Op::DeleteAssignment(DeleteAssignment(a)),
                },
            });
        }
        for (membership, group_id) in groups {
            if named_groups.contains(&group_id) {
                continue;
            }
            let group = match group_names.get(&group_id) {
                Some(g) => g.clone(),
                None => {
                    let described = ctx
                        .call_in(region, "identitystore:DescribeGroup", || {
                            ids.describe_group()
                                .identity_store_id(&store.identity_store_id)
                                .group_id(&group_id)
                                .send()
                        })
                        .await;
                    let name = described
                        .ok()
                        .and_then(|d| d.display_name().map(str::to_string))
                        .unwrap_or_else(|| group_id.clone());
                    group_names.insert(group_id.clone(), name.clone());
                    name
                }
            };
            let target = named(
                "Identity Center group membership",
                format!("{} in {group}", user.name),
            );
            let m = Membership {
                region: region.to_string(),
                identity_store_id: store.identity_store_id.clone(),
                membership_id: membership,
                group_id,
                group,
                user_id: user.id.clone(),
                user: user.name.clone(),
            };
            sink.emit(Planned {
                target: target_in(ctx, region, target),
                disposition: Disposition::Change {
                    op: Op::RemoveMembership(RemoveMembership(m)),
                },
            });
        }
    }
}

fn a_label(a: &Assignment) -> String {
    format!("{} in {} for {}", a.permission_set, a.account_id, a.user)
}

/// A permission set's name (its ARN when it cannot be read: the name is for
/// people, and the call names the ARN).
async fn permission_set_name(ctx: &Ctx, store: &Store, arn: &str) -> String {
    let sso = ctx.clients.sso_admin(&store.region);
    let described = ctx
        .call_in(&store.region, "sso:DescribePermissionSet", || {
            sso.describe_permission_set()
                .instance_arn(&store.instance_arn)
                .permission_set_arn(arn)
                .send()
        })
        .await;
    described
        .ok()
        .and_then(|d| {
            d.permission_set()
                .and_then(|p| p.name())
                .map(str::to_string)
        })
        .unwrap_or_else(|| arn.to_string())
}

/// Plans the deny of the chosen users in every permission set of the
/// instance, and the provisioning of any whose deny has not reached every
/// account yet. Returns each permission set's name by ARN.
async fn plan_denies(
    ctx: &Ctx,
    store: &Store,
    users: &[User],
    provision_pending: bool,
    sink: &Sink,
) -> Result<BTreeMap<String, String>, AwsError> {
    if users.is_empty() {
        return Ok(BTreeMap::new());
    }
    let sso = ctx.clients.sso_admin(&store.region);
    let pages = ctx
        .pages(
            Some(&store.region),
            "sso:ListPermissionSets",
            |token| {
                sso.list_permission_sets()
                    .instance_arn(&store.instance_arn)
                    .set_next_token(token)
                    .send()
            },
            |page| page.next_token().map(str::to_string),
        )
        .await?;
    let every: Vec<String> = pages
        .iter()
        .flat_map(|p| p.permission_sets())
        .cloned()
        .collect();
    let names = stream::iter(every)
        .map(|ps| async move {
            let name = permission_set_name(ctx, store, &ps).await;
            let disposition = deny_needed(ctx, store, users, &ps, &name, provision_pending).await;
            let target = named("Identity Center permission set", name.clone());
            sink.emit(Planned {
                target: target_in(ctx, &store.region, target),
                disposition,
            });
            (ps, name)
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .collect()
        .await;
    Ok(names)
}

/// What one permission set needs: the deny of the users it does not deny
/// yet; or, when it denies them all, the provisioning of that deny to the
/// accounts it has not reached; or nothing. A set with changes not yet
/// provisioned is left alone (unless `provision_pending`): provisioning
/// sends its whole current version, someone else's edit included.
async fn deny_needed(
    ctx: &Ctx,
    store: &Store,
    users: &[User],
    ps: &str,
    name: &str,
    provision_pending: bool,
) -> Disposition {
    let doc = match calls::inline_policy(ctx, &store.region, &store.instance_arn, ps).await {
        Ok(doc) => doc,
        Err(error) => return Disposition::Unreadable { error },
    };
    let stale = calls::provisioned_to(
        ctx,
        &store.region,
        &store.instance_arn,
        ps,
        Some(ProvisioningStatus::LatestPermissionSetNotProvisioned),
    )
    .await;
    let stale = match stale {
        Ok(accounts) => accounts,
        Err(error) => return Disposition::Unreadable { error },
    };
    let denied = policy::denied(doc.as_deref());
    let open: Vec<&User> = users.iter().filter(|u| !denied.contains(&u.id)).collect();
    let names = |list: &[&User]| list.iter().map(|u| u.name.clone()).collect::<Vec<_>>();
    let deny = |user_ids: Vec<String>, users: Vec<String>| Disposition::Change {
        op: Op::DenyUsers(DenyUsers {
            region: store.region.clone(),
            instance_arn: store.instance_arn.clone(),
            permission_set_arn: ps.to_string(),
            permission_set: name.to_string(),
            user_ids,
            users,
        }),
    };
    let all: Vec<&User> = users.iter().collect();
    match (stale.is_empty(), open.is_empty()) {
        (false, _) if !provision_pending => Disposition::OutOfReach {
            reason: format!(
                "has changes not yet provisioned to {} account(s) (someone's edit, or an earlier provisioning that did not finish): provisioning would push them live; review the permission set, then provision it by hand or run with `with: {{ provision_pending: true }}`",
                stale.len()
            ),
        },
        (_, false) => deny(open.iter().map(|u| u.id.clone()).collect(), names(&open)),
        (false, true) => deny(Vec::new(), names(&all)),
        (true, true) => Disposition::Unchanged {
            reason: format!("denies {} in every account", names(&all).join(", ")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_that_names_nobody_is_refused() {
        assert!(ContainUsers::check(&ContainUsersParams::default()).is_err());
        let empty = ContainUsersParams {
            users: vec![" ".into()],
            ..Default::default()
        };
        assert!(ContainUsers::check(&empty).is_err());
        let one = ContainUsersParams {
            groups: vec!["ops".into()],
            ..Default::default()
        };
        assert!(ContainUsers::check(&one).is_ok());
    }
}
