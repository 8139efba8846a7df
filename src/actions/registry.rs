//! Every playbook action, every kind of call breakglass makes and every
//! undo, one line each. A new action is one file (its struct with
//! `impl Action`) and one line here; a new call is one file (its struct
//! with `impl Call`, its undo with `impl Revert`) and one line in each list.
//! The playbook, the schema, the catalog, the executor, the audit log,
//! plans, verify, hold and rollback reach them through the enums generated
//! here.
//!
//! The enums are serialized into the audit log with the variant's name as
//! the tag (`"op": "deactivate_access_key"`), and a newtype variant of a
//! struct serializes as the struct's own fields: logs written before the
//! registry read the same.

use serde::{Deserialize, Serialize};

use super::action::{Action, Runs};
use super::call::{Call, Inverse, Inverting, Revert};
use super::undo::Check;
use super::{ActionInfo, BoundStep, Ctx, Sink, backup, cloudtrail, ec2, iam, kms, org, s3, sso};
use crate::aws::{self, AwsError};
use crate::targets::{Resource, Target};
use crate::yaml::{self, DecodeError, Node};

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

macro_rules! actions {
    ($($kind:ident => $ty:path,)*) => {
        /// Every action a playbook may name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ActionKind {
            $($kind,)*
        }

        /// A step's decoded `with:` parameters, one variant per action.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ActionParams {
            $($kind(<$ty as Action>::Params),)*
        }

        impl ActionKind {
            pub const ALL: &'static [ActionKind] = &[$(ActionKind::$kind,)*];

            /// What `breakglass actions` prints about it.
            pub fn info(self) -> ActionInfo {
                match self { $(ActionKind::$kind => <$ty as Action>::INFO,)* }
            }

            /// Where it runs.
            pub fn runs(self) -> Runs {
                match self { $(ActionKind::$kind => <$ty as Action>::RUNS,)* }
            }

            /// Decodes and checks the step's `with:` block for this action;
            /// `step` is where an absent block's problems are shown.
            pub fn decode_params(self, with: Option<&Node>, step: yaml::Pos) -> Result<ActionParams, Vec<DecodeError>> {
                match self { $(ActionKind::$kind => decode::<$ty>(with, step).map(ActionParams::$kind),)* }
            }

            /// JSON Schema of this action's `with:` block (null is an empty block).
            pub fn params_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                match self { $(ActionKind::$kind => generator.subschema_for::<Option<<$ty as Action>::Params>>(),)* }
            }
        }

        impl ActionParams {
            /// Why a step with these parameters cannot be undone, when it
            /// cannot: such steps need `allow_irreversible: true`.
            pub fn irreversible(&self) -> Option<&'static str> {
                match self { $(ActionParams::$kind(p) => <$ty as Action>::irreversible(p),)* }
            }

            /// Whether they name resources that must exist.
            pub fn names_subjects(&self) -> bool {
                match self { $(ActionParams::$kind(p) => <$ty as Action>::names_subjects(p),)* }
            }
        }

        /// One account's discovery for a step, by its action.
        pub(super) async fn discover_in(ctx: &Ctx, step: &BoundStep, sink: &Sink) -> Result<Vec<String>, AwsError> {
            match &step.params {
                $(ActionParams::$kind(p) => <$ty as Action>::discover(ctx, step, p, sink).await,)*
            }
        }
    };
}

actions! {
    IamDeactivateAccessKeys => iam::steps::DeactivateAccessKeys,
    IamDeleteLoginProfiles => iam::steps::DeleteLoginProfiles,
    IamRevokeRoleSessions => iam::steps::RevokeRoleSessions,
    IamRevokeUserSessions => iam::steps::RevokeUserSessions,
    IamQuarantinePrincipals => iam::steps::QuarantinePrincipals,
    IamRevokeSession => iam::steps::RevokeSession,
    OrgApplyScp => org::steps::ApplyScp,
    OrgDetachScp => org::steps::DetachScp,
    OrgMoveAccounts => org::steps::MoveAccounts,
    Ec2SnapshotVolumes => ec2::steps::SnapshotVolumes,
    Ec2IsolateInstances => ec2::steps::IsolateInstances,
    Ec2EnableTerminationProtection => ec2::steps::EnableTerminationProtection,
    Ec2StopInstances => ec2::steps::StopInstances,
    Ec2DetachInstanceProfiles => ec2::steps::DetachInstanceProfiles,
    Ec2LockSnapshots => ec2::steps::LockSnapshots,
    CloudtrailEnsureLogging => cloudtrail::EnsureLogging,
    KmsCancelKeyDeletion => kms::CancelKeyDeletions,
    Ec2Unshare => ec2::unshare::Unshare,
    BackupLockVaults => backup::LockVaults,
    Ec2BlockPublicSharing => ec2::block_public_sharing::BlockPublicSharing,
    S3BlockPublicAccess => s3::block_public_access::BlockPublicAccess,
    OrgApplyRcp => org::apply_rcp::ApplyRcp,
    S3ProtectBuckets => s3::protect_buckets::ProtectBuckets,
    SsoContainUsers => sso::ContainUsers,
    OrgRemoveMemberRootCredentials => org::roots::RemoveMemberRootCredentials,
}

impl ActionKind {
    /// The id a playbook names it by (`iam.deactivate_access_keys`).
    pub fn id(self) -> &'static str {
        self.info().id
    }

    pub fn from_id(id: &str) -> Option<ActionKind> {
        Self::ALL.iter().copied().find(|a| a.id() == id)
    }

    /// True for actions whose targets live inside each account, so a step
    /// fans out to every selected one; the others act on the organization
    /// from the management account.
    pub fn account_scoped(self) -> bool {
        matches!(self.runs(), Runs::InAccounts | Runs::InRegions)
    }

    /// True for actions a step's `accounts:` applies to: the account-scoped
    /// ones, and those that act on the accounts themselves.
    pub fn takes_accounts(self) -> bool {
        self.runs() != Runs::Organization
    }

    /// True for actions that need the playbook's `regions:` resolved.
    pub fn regional(self) -> bool {
        self.runs() == Runs::InRegions
    }
}

impl Serialize for ActionKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// An absent or empty `with:` decodes as an empty map, so that an action
/// without parameters accepts both, and one with required parameters names
/// the missing field, at the `with:` line or else the step's.
fn decode<A: Action>(with: Option<&Node>, step: yaml::Pos) -> Result<A::Params, Vec<DecodeError>> {
    let empty = Node {
        pos: with.map_or(step, |n| n.pos),
        value: yaml::Value::Map(Vec::new()),
    };
    let node = match with {
        Some(n) if !matches!(n.value, yaml::Value::Null) => n,
        _ => &empty,
    };
    let params: A::Params = yaml::decode_all(node)?;
    A::check(&params).map_err(|m| vec![DecodeError::at(node.pos, m)])?;
    Ok(params)
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
        StartLogging => cloudtrail::StartLogging,
        CancelKeyDeletion => kms::CancelKeyDeletion,
        RemoveSharing => ec2::unshare::RemoveSharing,
        LogManagementEvents => cloudtrail::selectors::LogManagementEvents,
        LockVault => backup::LockVault,
        BlockPublicSharing => ec2::block_public_sharing::BlockPublicSharingCall,
        BlockS3PublicAccess => s3::block_public_access::BlockS3PublicAccess,
        EnableVersioning => s3::protect_buckets::EnableVersioning,
        BlockSseC => s3::protect_buckets::BlockSseC,
        DenyUsers => sso::DenyUsers,
        DeleteAssignment => sso::DeleteAssignment,
        RemoveMembership => sso::RemoveMembership,
        DeleteRootCredentials => org::roots::DeleteRootCredentials,
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
        RestoreVaultLock => backup::RestoreVaultLock,
        RestorePublicSharing => ec2::block_public_sharing::RestorePublicSharing,
        RestoreS3PublicAccess => s3::block_public_access::RestoreS3PublicAccess,
        RestoreBucketEncryption => s3::protect_buckets::RestoreBucketEncryption,
        LiftUserDeny => sso::LiftUserDeny,
        RestoreAssignment => sso::RestoreAssignment,
        RestoreMembership => sso::RestoreMembership,
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
