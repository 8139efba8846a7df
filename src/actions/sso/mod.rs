//! `sso.contain_users`: contain IAM Identity Center users. They have no IAM
//! keys or passwords, and the `AWSReservedSSO_*` roles they sign in to
//! cannot be edited in IAM, so no IAM step reaches them.
//!
//! The step follows AWS's procedure ("Revoke active IAM role sessions
//! created by permission sets", IAM Identity Center User Guide):
//! - deny the user in every permission set it holds, directly or through a
//!   group: a `Deny *` on `identitystore:UserId` in the permission set's
//!   inline policy, provisioned to every account. Portal and role sessions
//!   cannot be listed or ended by API; this is what stops the role
//!   sessions already minted, without touching the colleagues who use the
//!   same permission set ([`policy`]);
//! - delete the user's own account assignments (asynchronous: followed to
//!   the end) and its group memberships, so it can assume no role again.
//!
//! What it cannot do is said in the plan: a user from an external identity
//! provider must be disabled there too (SCIM may add it to groups again),
//! and the portal session is ended in the console only.
//!
//! AWS behaviour relied on (Identity Store API reference): `GetUserId` and
//! `GetGroupId` resolve a `UniqueAttribute` (`userName`, `emails.value`,
//! `displayName`) and answer `ResourceNotFoundException` for no match;
//! `DescribeUser` lists `ExternalIds` for users provisioned by SCIM.

mod calls;
mod directory;
pub mod policy;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_identitystore::types::MemberId;
use aws_sdk_ssoadmin::types::PrincipalType;
use futures_util::{StreamExt, stream};
use schemars::JsonSchema;
use serde::Deserialize;

pub use calls::{
    Assignment, DeleteAssignment, DenyUsers, LiftUserDeny, Membership, RemoveMembership,
    RestoreAssignment, RestoreMembership,
};

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
    /// Group display names: every member of each is contained (the group's
    /// own assignments stay, for its other members once they are cleared).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The region of the Identity Center instance (default: the session's).
    #[serde(default)]
    pub region: Option<String>,
}

pub struct ContainUsers;

impl Action for ContainUsers {
    const INFO: ActionInfo = ActionInfo {
        id: "sso.contain_users",
        summary: "Contain IAM Identity Center users: deny them in every permission set they hold (their minted sessions included), remove their account assignments and group memberships.",
        targets: &[],
        params: &[
            ("users", "user names in the identity store"),
            ("emails", "email addresses"),
            ("groups", "group names: every member"),
            (
                "region",
                "the Identity Center instance's region (default: the session's)",
            ),
        ],
        calls: &[
            "sso:PutInlinePolicyToPermissionSet",
            "sso:ProvisionPermissionSet",
            "sso:DeleteAccountAssignment",
            "identitystore:DeleteGroupMembership",
        ],
        reversibility: Reversibility::Reversible(
            "the deny is lifted for this run's users only; assignments and memberships are created again",
        ),
        notes: &[
            "Runs from the account that administers Identity Center (the management account or its delegated administrator).",
            "The deny names the user's identity store id: colleagues using the same permission set keep working.",
            "AWS access portal sessions cannot be ended by API: delete the user's active sessions in the IAM Identity Center console.",
            "A user from an external identity provider (SCIM) must be disabled there too, or the provider may add it to groups again.",
            "The group's own assignments stay: removing them would cut off every other member.",
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
        let users = resolve(ctx, &store, p, sink, &mut notes).await?;
        let chosen = screen(ctx, &store, users, sink, &mut notes).await;
        let held = plan_access(ctx, &store, &chosen, sink).await;
        plan_denies(ctx, &store, &chosen, &held, sink).await?;
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
    Ok(pages
        .iter()
        .flat_map(|p| p.account_assignments())
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

/// Plans the removal of each user's own assignments and group memberships,
/// and returns which users hold which permission sets (directly or through
/// a group), for the denies.
async fn plan_access(
    ctx: &Ctx,
    store: &Store,
    users: &[User],
    sink: &Sink,
) -> BTreeMap<String, BTreeSet<User>> {
    let ids = ctx.clients.identitystore(&store.region);
    let region = store.region.as_str();
    let mut held: BTreeMap<String, BTreeSet<User>> = BTreeMap::new();
    let mut group_names: BTreeMap<String, String> = BTreeMap::new();
    for user in users {
        let fail = |error: AwsError| Planned {
            target: target_in(ctx, region, named(USER, &user.name)),
            disposition: Disposition::Unreadable { error },
        };
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
            (Err(e), _) | (_, Err(e)) => {
                sink.emit(fail(e));
                continue;
            }
        };
        for (account, ps) in own {
            held.entry(ps.clone()).or_default().insert(user.clone());
            let a = Assignment {
                region: region.to_string(),
                instance_arn: store.instance_arn.clone(),
                account_id: account.clone(),
                permission_set_arn: ps.clone(),
                permission_set: permission_set_name(ctx, store, &ps).await,
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
            match assignments(
                ctx,
                region,
                &store.instance_arn,
                PrincipalType::Group,
                &group_id,
            )
            .await
            {
                Ok(via) => {
                    for (_, ps) in via {
                        held.entry(ps).or_default().insert(user.clone());
                    }
                }
                Err(e) => sink.emit(fail(e)),
            }
            let m = Membership {
                region: region.to_string(),
                identity_store_id: store.identity_store_id.clone(),
                membership_id: membership,
                group_id,
                group: group.clone(),
                user_id: user.id.clone(),
                user: user.name.clone(),
            };
            sink.emit(Planned {
                target: target_in(
                    ctx,
                    region,
                    named(
                        "Identity Center group membership",
                        format!("{} in {group}", user.name),
                    ),
                ),
                disposition: Disposition::Change {
                    op: Op::RemoveMembership(RemoveMembership(m)),
                },
            });
        }
    }
    held
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

/// Plans the deny in every permission set a chosen user holds, or that
/// already denies one (so that `verify` still reads it once the user's
/// assignments are gone).
async fn plan_denies(
    ctx: &Ctx,
    store: &Store,
    users: &[User],
    held: &BTreeMap<String, BTreeSet<User>>,
    sink: &Sink,
) -> Result<(), AwsError> {
    if users.is_empty() {
        return Ok(());
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
    stream::iter(every)
        .map(|ps| async move {
            let doc = calls::inline_policy(ctx, &store.region, &store.instance_arn, &ps).await;
            (ps, doc)
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .for_each(|(ps, doc)| async move {
            let Some(disposition) = deny_needed(store, users, held.get(&ps), &ps, doc) else {
                return;
            };
            let name = permission_set_name(ctx, store, &ps).await;
            let disposition = match disposition {
                Disposition::Change {
                    op: Op::DenyUsers(d),
                } => Disposition::Change {
                    op: Op::DenyUsers(DenyUsers {
                        permission_set: name.clone(),
                        ..d
                    }),
                },
                other => other,
            };
            sink.emit(Planned {
                target: target_in(
                    ctx,
                    &store.region,
                    named("Identity Center permission set", name),
                ),
                disposition,
            });
        })
        .await;
    Ok(())
}

/// What one permission set needs: nothing (no chosen user holds it or is
/// denied in it), nothing more (it denies them all), or the deny. A policy
/// that cannot be read fails the permission set if a chosen user holds it.
fn deny_needed(
    store: &Store,
    users: &[User],
    holders: Option<&BTreeSet<User>>,
    ps: &str,
    doc: Result<Option<String>, AwsError>,
) -> Option<Disposition> {
    let doc = match doc {
        Err(error) => return holders.map(|_| Disposition::Unreadable { error }),
        Ok(doc) => doc,
    };
    let denied = policy::denied(doc.as_deref());
    let ours: Vec<&User> = users
        .iter()
        .filter(|u| denied.contains(&u.id) || holders.is_some_and(|h| h.contains(u)))
        .collect();
    let open: Vec<&User> = ours
        .iter()
        .copied()
        .filter(|u| !denied.contains(&u.id))
        .collect();
    if ours.is_empty() {
        return None;
    }
    if open.is_empty() {
        let names: Vec<&str> = ours.iter().map(|u| u.name.as_str()).collect();
        return Some(Disposition::Unchanged {
            reason: format!("denies {}", names.join(", ")),
        });
    }
    Some(Disposition::Change {
        op: Op::DenyUsers(DenyUsers {
            region: store.region.clone(),
            instance_arn: store.instance_arn.clone(),
            permission_set_arn: ps.to_string(),
            permission_set: ps.to_string(),
            user_ids: open.iter().map(|u| u.id.clone()).collect(),
            users: open.iter().map(|u| u.name.clone()).collect(),
        }),
    })
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
