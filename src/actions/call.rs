//! What every kind of call knows about itself, so that one file holds a call
//! with its plan text, its permission check, its drift, and its undo. The
//! registry (`registry.rs`) turns these into the [`Op`](super::Op) and
//! [`Undo`](super::undo::Undo) enums the executor, audit log and rollback
//! use.

use std::future::Future;

use super::Ctx;
use super::undo::{Check, Undo};
use crate::aws::AwsError;

/// Builds the ARN a permission check asks about: `(kind, name, known ARN)`.
/// The ARN IAM listed (with its path) wins over one built from the name.
pub type ArnOf<'a> = dyn Fn(&str, &str, Option<&str>) -> String + 'a;

/// One mutating AWS call, with the prior state its undo needs.
pub trait Call {
    /// The call, as a responder reads it in a plan.
    fn describe(&self) -> String;

    /// What is wrong with the target while the call is still needed: the
    /// drift `verify` and `hold` name ("is Active", "has security groups …").
    fn drift(&self) -> String;

    /// Organizations calls are made from the management account, whatever
    /// account the target is.
    fn management_call(&self) -> bool {
        false
    }

    /// Fixes time-dependent content (a revocation's cutoff, an idempotency
    /// token) at the moment of the call, before its intent is recorded.
    fn prepare(&mut self, _now: jiff::Timestamp, _key: Option<&crate::signing::AuditKey>) {}

    /// The (IAM action, resource ARN) pairs `SimulatePrincipalPolicy` is
    /// asked about, for services without a DryRun flag.
    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The service's own DryRun check, where it has one: the raw answer
    /// (`DryRunOperation` means it would be allowed). `None`: no such flag.
    fn dry_run(&self, _ctx: &Ctx) -> impl Future<Output = Option<Result<(), AwsError>>> + Send {
        async { None }
    }

    /// Makes the call. `Ok` carries what was created (snapshot ids, groups),
    /// recorded in the audit log's result record.
    fn apply(
        &self,
        ctx: &Ctx,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, AwsError>> + Send;

    /// How rollback undoes the call, given what it recorded.
    fn inverse(&self, facts: &Inverting) -> Inverse;
}

/// What rollback knows when it inverts one recorded call.
pub struct Inverting<'a> {
    /// The call's recorded result (`effect`): what it created.
    pub effect: Option<&'a serde_json::Value>,
    /// The responder asked for compromised keys back (`--reactivate-keys`).
    pub reactivate_keys: bool,
    /// Every SCP document the run itself wrote: the only ones it may put back.
    pub own_scp_documents: &'a [&'a str],
}

/// How one recorded change is undone.
#[derive(Debug, Clone)]
pub enum Inverse {
    Undo(Undo),
    /// Nobody can undo it (the reason says why).
    Irreversible {
        why: String,
    },
    /// Deliberately not undone (the reason says how to, if wanted).
    Kept {
        why: String,
    },
}

/// One call that undoes one recorded change, checked against the resource's
/// state now before it is made.
pub trait Revert {
    /// The call, as a responder reads it in a rollback plan.
    fn describe(&self) -> String;

    /// Organizations calls are made from the management account.
    fn management_call(&self) -> bool {
        false
    }

    /// Reads the resource now and says whether the undo still fits it.
    fn check(&self, ctx: &Ctx) -> impl Future<Output = Result<Check, AwsError>> + Send;

    /// Makes the undoing call.
    fn apply(&self, ctx: &Ctx) -> impl Future<Output = Result<(), AwsError>> + Send;
}
