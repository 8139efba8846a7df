//! The calls `sso.contain_users` makes, and their undos.
//!
//! AWS behaviour relied on (IAM Identity Center API reference):
//! - `PutInlinePolicyToPermissionSet` changes the permission set only; "you
//!   will need to call `ProvisionPermissionSet` after this action to apply
//!   the corresponding IAM policy updates to all assigned accounts".
//! - `ProvisionPermissionSet`, `DeleteAccountAssignment` and
//!   `CreateAccountAssignment` are asynchronous: each answers with a status
//!   (`IN_PROGRESS`, `FAILED`, `SUCCEEDED`) and a request id that
//!   `DescribePermissionSetProvisioningStatus` /
//!   `DescribeAccountAssignment{Deletion,Creation}Status` follow. A change
//!   is done only once that status says `SUCCEEDED`.
//! - `DeleteGroupMembership` and `DeleteAccountAssignment` of something
//!   already gone answer `ResourceNotFoundException`: after a lost answer,
//!   the retry meeting it means the first call did its work.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_identitystore::types::MemberId;
use aws_sdk_ssoadmin::types::{
    AccountAssignmentOperationStatus, PrincipalType, ProvisionTargetType, StatusValues, TargetType,
};
use serde::{Deserialize, Serialize};

use super::policy;
use crate::actions::Ctx;
use crate::actions::call::{ArnOf, Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo};
use crate::aws::{AwsError, ErrorKind, local};

/// How long an asynchronous Identity Center request is followed before the
/// change is reported failed (it may still finish: `verify` reads it).
const PATIENCE: Duration = Duration::from_secs(120);

/// Follows an asynchronous request until it settles: `status` reads it
/// again, answering (status, failure reason).
async fn settle<F, Fut>(
    operation: &str,
    first: Option<StatusValues>,
    mut status: F,
) -> Result<(), AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Option<StatusValues>, Option<String>), AwsError>>,
{
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(250);
    let mut now = (first, None);
    loop {
        match now {
            (Some(StatusValues::Succeeded), _) => return Ok(()),
            (Some(StatusValues::Failed), why) => {
                return Err(local(
                    operation,
                    format!("AWS reports it FAILED: {}", why.unwrap_or_default()),
                ));
            }
            _ if started.elapsed() > PATIENCE => {
                return Err(local(
                    operation,
                    format!("still in progress after {} s", PATIENCE.as_secs()),
                ));
            }
            _ => {}
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(4));
        now = status().await?;
    }
}

/// The permission set's inline policy now (`None`: it has none).
pub(super) async fn inline_policy(
    ctx: &Ctx,
    region: &str,
    instance: &str,
    permission_set: &str,
) -> Result<Option<String>, AwsError> {
    let sso = ctx.clients.sso_admin(region);
    let out = ctx
        .call_in(region, "sso:GetInlinePolicyForPermissionSet", || {
            sso.get_inline_policy_for_permission_set()
                .instance_arn(instance)
                .permission_set_arn(permission_set)
                .send()
        })
        .await?;
    Ok(out
        .inline_policy()
        .filter(|p| !p.trim().is_empty())
        .map(str::to_string))
}

/// Writes the inline policy denying `ids` (re-read at the call, so a
/// concurrent change is kept), then provisions the permission set to every
/// account it is provisioned to and waits for that to finish.
async fn write_denied(
    ctx: &Ctx,
    region: &str,
    instance: &str,
    permission_set: &str,
    ids: impl FnOnce(BTreeSet<String>) -> BTreeSet<String>,
) -> Result<(Option<String>, BTreeSet<String>), AwsError> {
    let sso = ctx.clients.sso_admin(region);
    let before = inline_policy(ctx, region, instance, permission_set).await?;
    let had = policy::denied(before.as_deref());
    let wanted = ids(had.clone());
    let doc = policy::with_denied(before.as_deref(), &wanted)
        .map_err(|m| local("sso:PutInlinePolicyToPermissionSet", m))?;
    match &doc {
        Some(doc) => {
            ctx.call_in(region, "sso:PutInlinePolicyToPermissionSet", || {
                sso.put_inline_policy_to_permission_set()
                    .instance_arn(instance)
                    .permission_set_arn(permission_set)
                    .inline_policy(doc)
                    .send()
            })
            .await?;
        }
        None => {
            let deleted = ctx
                .call_in(region, "sso:DeleteInlinePolicyFromPermissionSet", || {
                    sso.delete_inline_policy_from_permission_set()
                        .instance_arn(instance)
                        .permission_set_arn(permission_set)
                        .send()
                })
                .await;
            match deleted {
                Err(e) if e.kind != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    provision(ctx, region, instance, permission_set).await?;
    Ok((before, had))
}

/// `ProvisionPermissionSet` to every account the permission set is
/// provisioned to, followed until it settles. A provisioning already under
/// way (`ConflictException`) is waited for and asked again.
async fn provision(
    ctx: &Ctx,
    region: &str,
    instance: &str,
    permission_set: &str,
) -> Result<(), AwsError> {
    let sso = ctx.clients.sso_admin(region);
    let mut conflicts = 0u32;
    let out = loop {
        let asked = ctx
            .call_in(region, "sso:ProvisionPermissionSet", || {
                sso.provision_permission_set()
                    .instance_arn(instance)
                    .permission_set_arn(permission_set)
                    .target_type(ProvisionTargetType::AllProvisionedAccounts)
                    .send()
            })
            .await;
        match asked {
            Err(e) if e.code.as_deref() == Some("ConflictException") && conflicts < 6 => {
                conflicts += 1;
                tokio::time::sleep(Duration::from_secs(u64::from(conflicts))).await;
            }
            other => break other?,
        }
    };
    let status = out.permission_set_provisioning_status();
    let request = status
        .and_then(|s| s.request_id())
        .unwrap_or_default()
        .to_string();
    settle(
        "sso:ProvisionPermissionSet",
        status.and_then(|s| s.status()).cloned(),
        || async {
            let out = ctx
                .call_in(
                    region,
                    "sso:DescribePermissionSetProvisioningStatus",
                    || {
                        sso.describe_permission_set_provisioning_status()
                            .instance_arn(instance)
                            .provision_permission_set_request_id(&request)
                            .send()
                    },
                )
                .await?;
            let s = out.permission_set_provisioning_status();
            Ok((
                s.and_then(|s| s.status()).cloned(),
                s.and_then(|s| s.failure_reason()).map(str::to_string),
            ))
        },
    )
    .await
}

/// Adds users to the permission set's breakglass deny, then provisions it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenyUsers {
    pub region: String,
    pub instance_arn: String,
    pub permission_set_arn: String,
    /// The permission set's name, for people.
    pub permission_set: String,
    /// Identity store user ids to deny.
    pub user_ids: Vec<String>,
    /// Their user names, for people.
    pub users: Vec<String>,
}

impl Call for DenyUsers {
    fn describe(&self) -> String {
        format!(
            "sso:PutInlinePolicyToPermissionSet {} (Deny * when identitystore:UserId is {}), then sso:ProvisionPermissionSet to every account it is provisioned to",
            self.permission_set,
            self.users.join(", ")
        )
    }

    fn drift(&self) -> String {
        format!("does not deny {}", self.users.join(", "))
    }

    fn management_call(&self) -> bool {
        true
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![
            (
                "sso:PutInlinePolicyToPermissionSet",
                self.permission_set_arn.clone(),
            ),
            (
                "sso:ProvisionPermissionSet",
                self.permission_set_arn.clone(),
            ),
        ]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let wanted: BTreeSet<String> = self.user_ids.iter().cloned().collect();
        let (before, had) = write_denied(
            ctx,
            &self.region,
            &self.instance_arn,
            &self.permission_set_arn,
            |had| had.union(&wanted).cloned().collect(),
        )
        .await?;
        let added: Vec<&String> = wanted.difference(&had).collect();
        Ok(Some(serde_json::json!({
            "added": added,
            "had_policy": before.is_some(),
        })))
    }

    fn inverse(&self, facts: &Inverting) -> Inverse {
        // Only the users this call added come off: a deny written before
        // the run (by an earlier run or a person) stays.
        let added: Option<Vec<String>> = facts
            .effect
            .and_then(|e| e.get("added"))
            .and_then(|a| serde_json::from_value(a.clone()).ok());
        Inverse::Undo(Undo::LiftUserDeny(LiftUserDeny {
            region: self.region.clone(),
            instance_arn: self.instance_arn.clone(),
            permission_set_arn: self.permission_set_arn.clone(),
            permission_set: self.permission_set.clone(),
            user_ids: added.unwrap_or_else(|| self.user_ids.clone()),
            users: self.users.clone(),
        }))
    }
}

/// Takes users out of the permission set's breakglass deny again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiftUserDeny {
    pub region: String,
    pub instance_arn: String,
    pub permission_set_arn: String,
    pub permission_set: String,
    pub user_ids: Vec<String>,
    /// The names of the users the run denied, for people.
    #[serde(default)]
    pub users: Vec<String>,
}

impl Revert for LiftUserDeny {
    fn describe(&self) -> String {
        format!(
            "sso:PutInlinePolicyToPermissionSet {} without the deny of {}, then sso:ProvisionPermissionSet",
            self.permission_set,
            match self.users.is_empty() {
                true => self.user_ids.join(", "),
                false => self.users.join(", "),
            }
        )
    }

    fn management_call(&self) -> bool {
        true
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let now = inline_policy(
            ctx,
            &self.region,
            &self.instance_arn,
            &self.permission_set_arn,
        )
        .await;
        let now = match now {
            Err(e) if e.kind == ErrorKind::NotFound => {
                return Ok(Check::Conflict(format!(
                    "permission set {} is gone",
                    self.permission_set
                )));
            }
            other => other?,
        };
        let denied = policy::denied(now.as_deref());
        Ok(match self.user_ids.iter().any(|u| denied.contains(u)) {
            true => Check::Ready,
            false => Check::Done("none of these users is denied there".into()),
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let lift: BTreeSet<&String> = self.user_ids.iter().collect();
        write_denied(
            ctx,
            &self.region,
            &self.instance_arn,
            &self.permission_set_arn,
            |had| had.into_iter().filter(|u| !lift.contains(u)).collect(),
        )
        .await
        .map(|_| ())
    }
}

/// One account assignment of a user: a permission set in an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub region: String,
    pub instance_arn: String,
    pub account_id: String,
    pub permission_set_arn: String,
    pub permission_set: String,
    pub user_id: String,
    pub user: String,
}

impl Assignment {
    fn text(&self) -> String {
        format!(
            "{} in account {} for {}",
            self.permission_set, self.account_id, self.user
        )
    }

    /// Follows its deletion (or, `created`, its creation) until AWS says
    /// the request settled.
    async fn follow(
        &self,
        ctx: &Ctx,
        created: bool,
        first: Option<&AccountAssignmentOperationStatus>,
    ) -> Result<(), AwsError> {
        let sso = ctx.clients.sso_admin(&self.region);
        let (sso, region, instance) = (&sso, &self.region, &self.instance_arn);
        let request = first
            .and_then(|s| s.request_id())
            .unwrap_or_default()
            .to_string();
        let request = &request;
        let operation = match created {
            true => "sso:CreateAccountAssignment",
            false => "sso:DeleteAccountAssignment",
        };
        settle(
            operation,
            first.and_then(|s| s.status()).cloned(),
            || async move {
                let now = match created {
                    true => ctx
                        .call_in(
                            region,
                            "sso:DescribeAccountAssignmentCreationStatus",
                            || {
                                sso.describe_account_assignment_creation_status()
                                    .instance_arn(instance)
                                    .account_assignment_creation_request_id(request)
                                    .send()
                            },
                        )
                        .await?
                        .account_assignment_creation_status()
                        .cloned(),
                    false => ctx
                        .call_in(
                            region,
                            "sso:DescribeAccountAssignmentDeletionStatus",
                            || {
                                sso.describe_account_assignment_deletion_status()
                                    .instance_arn(instance)
                                    .account_assignment_deletion_request_id(request)
                                    .send()
                            },
                        )
                        .await?
                        .account_assignment_deletion_status()
                        .cloned(),
                };
                Ok((
                    now.as_ref().and_then(|s| s.status()).cloned(),
                    now.as_ref()
                        .and_then(|s| s.failure_reason())
                        .map(str::to_string),
                ))
            },
        )
        .await
    }

    /// Whether the assignment exists now.
    async fn exists(&self, ctx: &Ctx) -> Result<bool, AwsError> {
        let held = super::assignments(
            ctx,
            &self.region,
            &self.instance_arn,
            PrincipalType::User,
            &self.user_id,
        )
        .await?;
        Ok(held
            .iter()
            .any(|(a, ps)| a == &self.account_id && ps == &self.permission_set_arn))
    }
}

/// `DeleteAccountAssignment`, followed until AWS says it is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteAssignment(pub Assignment);

impl Call for DeleteAssignment {
    fn describe(&self) -> String {
        format!("sso:DeleteAccountAssignment {}", self.0.text())
    }

    fn drift(&self) -> String {
        format!("still assigns {}", self.0.text())
    }

    fn management_call(&self) -> bool {
        true
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![(
            "sso:DeleteAccountAssignment",
            self.0.permission_set_arn.clone(),
        )]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let a = &self.0;
        let sso = ctx.clients.sso_admin(&a.region);
        let asked = ctx
            .call_in(&a.region, "sso:DeleteAccountAssignment", || {
                sso.delete_account_assignment()
                    .instance_arn(&a.instance_arn)
                    .target_id(&a.account_id)
                    .target_type(TargetType::AwsAccount)
                    .permission_set_arn(&a.permission_set_arn)
                    .principal_type(PrincipalType::User)
                    .principal_id(&a.user_id)
                    .send()
            })
            .await;
        let out = match asked {
            // Gone already: a lost answer's first call did it. Read to be sure.
            Err(e) if e.kind == ErrorKind::NotFound => {
                return match a.exists(ctx).await? {
                    false => Ok(None),
                    true => Err(e),
                };
            }
            other => other?,
        };
        a.follow(ctx, false, out.account_assignment_deletion_status())
            .await
            .map(|()| None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Undo(Undo::RestoreAssignment(RestoreAssignment(self.0.clone())))
    }
}

/// `CreateAccountAssignment`: gives the user back an assignment the run took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreAssignment(pub Assignment);

impl Revert for RestoreAssignment {
    fn describe(&self) -> String {
        format!("sso:CreateAccountAssignment {}", self.0.text())
    }

    fn management_call(&self) -> bool {
        true
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        Ok(match self.0.exists(ctx).await? {
            true => Check::Done("assigned again already".into()),
            false => Check::Ready,
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let a = &self.0;
        let sso = ctx.clients.sso_admin(&a.region);
        let out = ctx
            .call_in(&a.region, "sso:CreateAccountAssignment", || {
                sso.create_account_assignment()
                    .instance_arn(&a.instance_arn)
                    .target_id(&a.account_id)
                    .target_type(TargetType::AwsAccount)
                    .permission_set_arn(&a.permission_set_arn)
                    .principal_type(PrincipalType::User)
                    .principal_id(&a.user_id)
                    .send()
            })
            .await?;
        a.follow(ctx, true, out.account_assignment_creation_status())
            .await
    }
}

/// One group membership of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    pub region: String,
    pub identity_store_id: String,
    pub membership_id: String,
    pub group_id: String,
    pub group: String,
    pub user_id: String,
    pub user: String,
}

/// `DeleteGroupMembership`: the user leaves a group, and with it every
/// assignment the group has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoveMembership(pub Membership);

impl Call for RemoveMembership {
    fn describe(&self) -> String {
        let m = &self.0;
        format!(
            "identitystore:DeleteGroupMembership {} from group {}",
            m.user, m.group
        )
    }

    fn drift(&self) -> String {
        format!(
            "{} is still a member of group {}",
            self.0.user, self.0.group
        )
    }

    fn management_call(&self) -> bool {
        true
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![("identitystore:DeleteGroupMembership", "*".into())]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let m = &self.0;
        let store = ctx.clients.identitystore(&m.region);
        let deleted = ctx
            .call_in(&m.region, "identitystore:DeleteGroupMembership", || {
                store
                    .delete_group_membership()
                    .identity_store_id(&m.identity_store_id)
                    .membership_id(&m.membership_id)
                    .send()
            })
            .await;
        match deleted {
            // Gone: the first call of a lost answer did it.
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            other => other.map(|_| None),
        }
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Undo(Undo::RestoreMembership(RestoreMembership(self.0.clone())))
    }
}

/// `CreateGroupMembership`: the user rejoins a group the run took it out of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreMembership(pub Membership);

impl Revert for RestoreMembership {
    fn describe(&self) -> String {
        let m = &self.0;
        format!(
            "identitystore:CreateGroupMembership {} in group {}",
            m.user, m.group
        )
    }

    fn management_call(&self) -> bool {
        true
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let m = &self.0;
        let groups = super::memberships(ctx, &m.region, &m.identity_store_id, &m.user_id).await;
        let groups = match groups {
            Err(e) if e.kind == ErrorKind::NotFound => {
                return Ok(Check::Conflict(format!("user {} is gone", m.user)));
            }
            other => other?,
        };
        Ok(match groups.iter().any(|(_, g)| g == &m.group_id) {
            true => Check::Done("a member again already".into()),
            false => Check::Ready,
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let m = &self.0;
        let store = ctx.clients.identitystore(&m.region);
        ctx.call_in(&m.region, "identitystore:CreateGroupMembership", || {
            store
                .create_group_membership()
                .identity_store_id(&m.identity_store_id)
                .group_id(&m.group_id)
                .member_id(MemberId::UserId(m.user_id.clone()))
                .send()
        })
        .await
        .map(|_| ())
    }
}
