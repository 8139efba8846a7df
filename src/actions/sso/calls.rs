//! The permission-set deny `sso.contain_users` writes, its undo, and the
//! asynchronous follow-up every Identity Center change needs.
//!
//! AWS behaviour relied on (IAM Identity Center API reference):
//! - `PutInlinePolicyToPermissionSet` changes the permission set only; "you
//!   will need to call `ProvisionPermissionSet` after this action to apply
//!   the corresponding IAM policy updates to all assigned accounts".
//! - `ProvisionPermissionSet` is asynchronous: it answers with a status
//!   (`IN_PROGRESS`, `FAILED`, `SUCCEEDED`) and a request id that
//!   `DescribePermissionSetProvisioningStatus` follows. A change is done only
//!   once that status says `SUCCEEDED`; `ListAccountsForProvisionedPermissionSet`
//!   with `ProvisioningStatus=LATEST_PERMISSION_SET_NOT_PROVISIONED` names
//!   the accounts the latest version has not reached.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ssoadmin::types::{ProvisionTargetType, ProvisioningStatus, StatusValues};
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
pub(super) async fn settle<F, Fut>(
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
        // Already as wanted (a deny written, its provisioning not finished):
        // only the provisioning is left to do.
        _ if wanted == had => {}
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
    if !provisioned_to(ctx, region, instance, permission_set, None)
        .await?
        .is_empty()
    {
        provision(ctx, region, instance, permission_set).await?;
    }
    Ok((before, had))
}

/// The accounts a permission set is provisioned to; with `status`, only
/// those in that provisioning status (`LATEST_PERMISSION_SET_NOT_PROVISIONED`:
/// its latest version has not reached them).
pub(super) async fn provisioned_to(
    ctx: &Ctx,
    region: &str,
    instance: &str,
    permission_set: &str,
    status: Option<ProvisioningStatus>,
) -> Result<Vec<String>, AwsError> {
    let sso = ctx.clients.sso_admin(region);
    let pages = ctx
        .pages(
            Some(region),
            "sso:ListAccountsForProvisionedPermissionSet",
            |token| {
                sso.list_accounts_for_provisioned_permission_set()
                    .instance_arn(instance)
                    .permission_set_arn(permission_set)
                    .set_provisioning_status(status.clone())
                    .set_next_token(token)
                    .send()
            },
            |page| page.next_token().map(str::to_string),
        )
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.account_ids())
        .cloned()
        .collect())
}

/// The request id of an asynchronous Identity Center call's answer: without
/// it the request cannot be followed, and the change is not claimed.
pub(super) fn request_id(operation: &str, id: Option<&str>) -> Result<String, AwsError> {
    id.filter(|i| !i.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            local(
                operation,
                "AWS answered without a request id to follow".into(),
            )
        })
}

/// One provisioning at a time from this process: "Number of IAM roles
/// (permission sets) in the AWS account that can be updated at a time: 1"
/// (IAM Identity Center quotas). Several at once would only meet
/// `ConflictException`, and make a colleague's pipeline meet it too.
static PROVISIONING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `ProvisionPermissionSet` to every account the permission set is
/// provisioned to, followed until it settles. A provisioning already under
/// way (`ConflictException`, someone else's) is waited for and asked again,
/// for as long as [`PATIENCE`].
async fn provision(
    ctx: &Ctx,
    region: &str,
    instance: &str,
    permission_set: &str,
) -> Result<(), AwsError> {
    let _one_at_a_time = PROVISIONING.lock().await;
    let sso = ctx.clients.sso_admin(region);
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(500);
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
            Err(e)
                if e.code.as_deref() == Some("ConflictException")
                    && started.elapsed() < PATIENCE =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(8));
            }
            other => break other?,
        }
    };
    let status = out.permission_set_provisioning_status();
    let request = request_id(
        "sso:ProvisionPermissionSet",
        status.and_then(|s| s.request_id()),
    )?;
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
        match self.user_ids.is_empty() {
            true => format!(
                "sso:ProvisionPermissionSet {} to every account it is provisioned to (its deny of {} has not reached them all)",
                self.permission_set,
                self.users.join(", ")
            ),
            false => format!(
                "sso:PutInlinePolicyToPermissionSet {} (Deny * when identitystore:UserId is {}), then sso:ProvisionPermissionSet to every account it is provisioned to",
                self.permission_set,
                self.users.join(", ")
            ),
        }
    }

    fn drift(&self) -> String {
        match self.user_ids.is_empty() {
            true => format!(
                "denies {} in its policy, not yet in every account",
                self.users.join(", ")
            ),
            false => format!("does not deny {}", self.users.join(", ")),
        }
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
