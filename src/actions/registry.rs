//! Every kind of call breakglass makes and every undo, one line each. A new
//! call is one file (its struct with `impl Call`, its undo with
//! `impl Revert`) and one line here; the executor, the audit log, plans,
//! verify, hold and rollback reach it through the enums this generates.
//!
//! The enums are serialized into the audit log with the variant's name as
//! the tag (`"op": "deactivate_access_key"`), and a newtype variant of a
//! struct serializes as the struct's own fields: logs written before the
//! registry read the same.

use serde::{Deserialize, Serialize};

use super::call::{Call, Inverse, Inverting, Revert};
use super::undo::Check;
use super::{Ctx, ec2, iam, org};
use crate::aws::{self, AwsError};
use crate::targets::{Resource, Target};

macro_rules! registry {
    (
        calls { $($call:ident => $call_ty:path,)* }
        undos { $($undo:ident => $undo_ty:path,)* }
    ) => {
        /// One mutating AWS call, with the prior state rollback needs.
        /// Serialized into the audit log's intent record before the call is
        /// made.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum Op {
            $($call($call_ty),)*
        }

        impl Op {
            /// The call, as a responder reads it in a plan.
            pub fn describe(&self) -> String {
                match self { $(Op::$call(c) => c.describe(),)* }
            }

            /// What is wrong with the target while this call is still needed.
            pub fn drift(&self) -> String {
                match self { $(Op::$call(c) => c.drift(),)* }
            }

            /// True for Organizations calls: made from the executor's
            /// account, whatever account the target is.
            pub fn from_management(&self) -> bool {
                match self { $(Op::$call(c) => c.management_call(),)* }
            }

            /// Fixes time-dependent content at the moment of the call.
            pub fn prepare(&mut self, now: jiff::Timestamp, key: Option<&crate::signing::AuditKey>) {
                match self { $(Op::$call(c) => c.prepare(now, key),)* }
            }

            /// Makes the call. `Ok` carries what was created (snapshot ids,
            /// groups), recorded in the audit log's result record.
            pub async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
                match self { $(Op::$call(c) => c.apply(ctx).await,)* }
            }

            /// How rollback undoes the call, given what it recorded.
            pub fn inverse(&self, facts: &Inverting) -> Inverse {
                match self { $(Op::$call(c) => c.inverse(facts),)* }
            }

            fn service_dry_run(&self, ctx: &Ctx) -> impl std::future::Future<Output = Option<Result<(), AwsError>>> + Send {
                async move { match self { $(Op::$call(c) => c.dry_run(ctx).await,)* } }
            }

            fn checks(&self, arn_of: &super::call::ArnOf) -> Vec<(&'static str, String)> {
                match self { $(Op::$call(c) => c.permission_checks(arn_of),)* }
            }
        }

        /// One call that undoes one recorded change.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "undo", rename_all = "snake_case")]
        pub enum Undo {
            $($undo($undo_ty),)*
        }

        impl Undo {
            /// The call, as a responder reads it in a rollback plan.
            pub fn describe(&self) -> String {
                match self { $(Undo::$undo(u) => u.describe(),)* }
            }

            /// Organizations calls, made from the executor's account.
            pub fn from_management(&self) -> bool {
                match self { $(Undo::$undo(u) => u.management_call(),)* }
            }

            /// Reads the resource now and says whether the undo still fits it.
            pub async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
                match self { $(Undo::$undo(u) => u.check(ctx).await,)* }
            }

            /// Makes the undoing call.
            pub async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
                match self { $(Undo::$undo(u) => u.apply(ctx).await,)* }
            }
        }
    };
}

registry! {
    calls {
        DeactivateAccessKey => iam::deactivate_access_key::DeactivateAccessKey,
        DeleteLoginProfile => iam::delete_login_profile::DeleteLoginProfile,
        PutInlinePolicy => iam::put_inline_policy::PutInlinePolicy,
        ApplyScp => org::apply_scp::ApplyScp,
        DetachScp => org::detach_scp::DetachScp,
        MoveAccount => org::move_account::MoveAccount,
        CreateSnapshots => ec2::create_snapshots::CreateSnapshots,
        IsolateInstance => ec2::isolate_instance::IsolateInstance,
        EnableTerminationProtection => ec2::enable_termination_protection::EnableTerminationProtection,
        StopInstance => ec2::stop_instance::StopInstance,
        LockSnapshot => ec2::lock_snapshot::LockSnapshot,
        DisassociateInstanceProfile => ec2::disassociate_instance_profile::DisassociateInstanceProfile,
    }
    undos {
        ReactivateAccessKey => iam::deactivate_access_key::ReactivateAccessKey,
        RestoreInlinePolicy => iam::put_inline_policy::RestoreInlinePolicy,
        RemoveManagedDeny => iam::put_inline_policy::RemoveManagedDeny,
        DetachScp => org::apply_scp::RemoveScp,
        AttachScp => org::detach_scp::AttachScp,
        MoveAccount => org::move_account::MoveBack,
        RestoreGroups => ec2::isolate_instance::RestoreGroups,
        DisableTerminationProtection => ec2::enable_termination_protection::RestoreTermination,
        StartInstance => ec2::stop_instance::StartInstance,
        UnlockSnapshot => ec2::lock_snapshot::UnlockSnapshot,
        AssociateInstanceProfile => ec2::disassociate_instance_profile::AssociateInstanceProfile,
    }
}

impl Op {
    /// Asks AWS whether the call would be allowed without making it: EC2's
    /// `DryRun=true`, or for IAM and Organizations (which have no such flag)
    /// `iam:SimulatePrincipalPolicy` when `ctx.check_permissions` is set.
    /// `None`: nothing was asked. Paced and retried like the real call: a
    /// throttled check is asked again, never read as a denial.
    pub async fn dry_run(&self, ctx: &Ctx, target: &Target) -> Option<Result<(), AwsError>> {
        if let Some(r) = self.service_dry_run(ctx).await {
            return Some(match r {
                Err(e) if e.code.as_deref() == Some("DryRunOperation") => Ok(()),
                other => other,
            });
        }
        if !ctx.check_permissions {
            return None;
        }
        let checks = self.permission_checks(ctx, target);
        if checks.is_empty() {
            return None;
        }
        Some(iam::simulate(ctx, &checks).await)
    }

    /// The (action, resource ARN) pairs this call needs, for simulation. The
    /// principal's ARN is the one IAM listed (with its path and partition: a
    /// policy scoped to `user/contractors/*` must be asked about
    /// `user/contractors/bob`, not `user/bob`).
    fn permission_checks(&self, ctx: &Ctx, target: &Target) -> Vec<(&'static str, String)> {
        let account = &ctx.identity.account;
        let partition = aws::partition(&ctx.identity.arn);
        let listed = match &target.resource {
            Resource::User { arn, .. } | Resource::Role { arn, .. } if !arn.is_empty() => {
                Some(arn.clone())
            }
            _ => None,
        };
        let arn_of = |kind: &str, n: &str, known: Option<&str>| {
            known
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .or_else(|| listed.clone())
                .unwrap_or_else(|| format!("arn:{partition}:iam::{account}:{kind}/{n}"))
        };
        self.checks(&arn_of)
    }
}
