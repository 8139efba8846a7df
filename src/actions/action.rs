//! What every playbook action knows about itself. Ten more actions are
//! coming, and each used to touch eight files; with this trait an action is
//! one file and one line in `registry.rs`, and the playbook, its schema, the
//! catalog, the `allow_irreversible` rule and discovery cannot disagree
//! about it, since they are all generated from that line.

use std::fmt::Debug;
use std::future::Future;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::{ActionInfo, BoundStep, Ctx, Sink};
use crate::aws::AwsError;

/// Where an action's targets live, which decides where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// Once, from the management account (SCPs).
    Organization,
    /// Once, from the management account, over the step's `accounts:`
    /// (moving accounts between OUs).
    OverAccounts,
    /// In each selected account (IAM).
    InAccounts,
    /// In each selected account, over the playbook's regions (it needs
    /// `regions:` resolved; a resource found there may live in another
    /// region, such as a trail's home region, and is acted on there).
    InRegions,
}

/// One playbook action (`iam.deactivate_access_keys`): how a step naming it
/// is decoded and checked, and how its targets are found. The calls it plans
/// are [`Call`](super::call::Call)s, listed in the registry on their own:
/// several actions share a call (every session revocation is a
/// `PutInlinePolicy`).
pub trait Action {
    /// What `breakglass actions` prints; `INFO.id` is the playbook's name for it.
    const INFO: ActionInfo;

    /// Where it runs.
    const RUNS: Runs;

    /// The step's decoded `with:` block (`NoParams` when it takes none).
    /// Its JSON Schema is the schema of `with:` for this action.
    type Params: DeserializeOwned + JsonSchema + Debug + Clone + PartialEq + Send + Sync;

    /// Checks beyond the types (a range, a spelling); the message is shown
    /// at the `with:` block's position.
    fn check(_params: &Self::Params) -> Result<(), String> {
        Ok(())
    }

    /// Whether the parameters name resources that must exist (a trail by
    /// name): such a step is read before any change even with
    /// `--skip-preflight`, so a typo stops the run before it starts.
    fn names_subjects(_params: &Self::Params) -> bool {
        false
    }

    /// Why a step with these parameters cannot be undone, when it cannot:
    /// such a step needs `allow_irreversible: true`.
    fn irreversible(_params: &Self::Params) -> Option<&'static str> {
        None
    }

    /// Finds the step's targets in one account (and, for [`Runs::InRegions`],
    /// each of `ctx.regions`) and hands each decision to `sink` as soon as it
    /// is made. Returns notes for the plan. Reads only.
    fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        params: &Self::Params,
        sink: &Sink,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
}
