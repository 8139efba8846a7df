//! The calls that take a user's access away (its account assignments and
//! group memberships), and their undos.
//!
//! AWS behaviour relied on (IAM Identity Center and Identity Store API
//! references): `DeleteAccountAssignment` and `CreateAccountAssignment` are
//! asynchronous, followed through `DescribeAccountAssignment{Deletion,
//! Creation}Status` until `SUCCEEDED`; a retry after a lost answer meets
//! `ResourceNotFoundException` or `ConflictException`, so the assignment or
//! membership itself is read before anything is called failed.

use aws_sdk_identitystore::types::MemberId;
use aws_sdk_ssoadmin::types::{AccountAssignmentOperationStatus, PrincipalType, TargetType};
use serde::{Deserialize, Serialize};

use super::calls::{request_id, settle};
use crate::actions::Ctx;
use crate::actions::call::{ArnOf, Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo};
use crate::aws::{AwsError, ErrorKind};

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

    /// Deletes it (or, `create`, creates it again) and follows the request
    /// to its end. A refusal (gone already, or in conflict with a request
    /// under way: a retry after a lost answer) is not the last word: the
    /// assignment itself decides.
    async fn change(&self, ctx: &Ctx, create: bool) -> Result<(), AwsError> {
        let sso = ctx.clients.sso_admin(&self.region);
        let settled = match create {
            true => {
                let made = ctx
                    .call_in(&self.region, "sso:CreateAccountAssignment", || {
                        sso.create_account_assignment()
                            .instance_arn(&self.instance_arn)
                            .target_id(&self.account_id)
                            .target_type(TargetType::AwsAccount)
                            .permission_set_arn(&self.permission_set_arn)
                            .principal_type(PrincipalType::User)
                            .principal_id(&self.user_id)
                            .send()
                    })
                    .await;
                match made {
                    Ok(out) => {
                        self.follow(ctx, true, out.account_assignment_creation_status())
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            false => {
                let asked = ctx
                    .call_in(&self.region, "sso:DeleteAccountAssignment", || {
                        sso.delete_account_assignment()
                            .instance_arn(&self.instance_arn)
                            .target_id(&self.account_id)
                            .target_type(TargetType::AwsAccount)
                            .permission_set_arn(&self.permission_set_arn)
                            .principal_type(PrincipalType::User)
                            .principal_id(&self.user_id)
                            .send()
                    })
                    .await;
                match asked {
                    Ok(out) => {
                        self.follow(ctx, false, out.account_assignment_deletion_status())
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        // Only a refusal can mean a lost answer's first call did it: a
        // request that failed or is still running is reported as it is.
        let refused = |e: &AwsError| {
            e.kind == ErrorKind::NotFound || e.code.as_deref() == Some("ConflictException")
        };
        match settled {
            Ok(()) => Ok(()),
            Err(e) if refused(&e) && self.exists(ctx).await? == create => Ok(()),
            Err(e) => Err(e),
        }
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
        let operation = match created {
            true => "sso:CreateAccountAssignment",
            false => "sso:DeleteAccountAssignment",
        };
        let request = request_id(operation, first.and_then(|s| s.request_id()))?;
        let request = &request;
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
        self.0.change(ctx, false).await.map(|()| None)
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
        self.0.change(ctx, true).await
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
        let made = ctx
            .call_in(&m.region, "identitystore:CreateGroupMembership", || {
                store
                    .create_group_membership()
                    .identity_store_id(&m.identity_store_id)
                    .group_id(&m.group_id)
                    .member_id(MemberId::UserId(m.user_id.clone()))
                    .send()
            })
            .await;
        // A retry after a lost answer meets the membership it made
        // (`ConflictException`): the membership decides.
        match made {
            Ok(_) => Ok(()),
            Err(e) => {
                let now =
                    super::memberships(ctx, &m.region, &m.identity_store_id, &m.user_id).await?;
                match now.iter().any(|(_, g)| g == &m.group_id) {
                    true => Ok(()),
                    false => Err(e),
                }
            }
        }
    }
}
