//! The action catalog, discovery, and the mutating calls actions plan.
//!
//! Discovery turns a bound step into [`Planned`] items by reading AWS state;
//! each item that needs a change carries an [`Op`]: one concrete, serializable
//! AWS call with the prior state needed to undo it. The executor drives
//! discovery through [`discover`] and makes the `Op`s it is handed; each kind
//! of call lives in its own file, listed in `registry.rs`. Actions neither
//! print nor write the audit log.

pub mod action;
pub mod backup;
pub mod call;
mod ctx;
pub mod regions;
mod registry;
mod step;
pub use action::{Action, Runs};
pub use ctx::Ctx;
pub use registry::{ActionKind, ActionParams, Op};
pub use step::BoundStep;

pub mod cloudtrail;
pub mod ec2;
pub mod iam;
pub mod kms;
pub mod managed_deny;
pub mod org;
pub mod s3;
pub mod sso;
pub mod undo;

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};

pub mod fleet;

pub use crate::aws::Clients;
use crate::aws::{self, AwsError, Identity, RetryPolicy, Telemetry};
pub use crate::spec::TargetKind;
use crate::targets::{Protection, SkipReason, Target};
pub use fleet::{AccountStatus, Fleet, MemberRole, Reach};

/// Whether rollback can undo an action, and how or why not.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Reversibility {
    Reversible(&'static str),
    Irreversible(&'static str),
}

/// What `breakglass actions` prints about an action.
#[derive(Debug, Clone, Serialize)]
pub struct ActionInfo {
    pub id: &'static str,
    pub summary: &'static str,
    pub targets: &'static [TargetKind],
    /// `with:` parameters: (name, description).
    pub params: &'static [(&'static str, &'static str)],
    pub calls: &'static [&'static str],
    pub reversibility: Reversibility,
    pub notes: &'static [&'static str],
}

/// What discovery decided for one target.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub target: Target,
    pub disposition: Disposition,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "disposition", rename_all = "snake_case")]
pub enum Disposition {
    /// Needs this call.
    Change { op: Op },
    /// Already in the state the step wants.
    Unchanged { reason: String },
    /// Left alone on purpose.
    Skip { reason: SkipReason },
    /// Named in the playbook but not there (or not what the step can act
    /// on): a failure unless the step says `on_missing: skip`, and never
    /// replaced by any other target.
    Missing { reason: String },
    /// Needs a change this run cannot make from where it acts (an
    /// organization trail seen from a member account): reported failed with
    /// why and who can, never claimed contained.
    OutOfReach { reason: String },
    /// Its state could not be read (after retries): neither changed nor
    /// claimed, but reported failed with the error, while the step's other
    /// targets go on.
    Unreadable { error: AwsError },
}

/// Which instances a snapshot step left without their snapshot, so that no
/// later step of the run stops them (their memory would be lost with no
/// copy of their disks).
#[derive(Debug, Default)]
pub struct FailedSnapshots {
    instances: std::collections::HashSet<String>,
    /// A snapshot step failed as a whole (its discovery): which instances it
    /// missed is unknown, so none may be stopped.
    every_instance: bool,
}

impl FailedSnapshots {
    pub fn instance(&mut self, id: &str) {
        self.instances.insert(id.to_string());
    }

    pub fn whole_step(&mut self) {
        self.every_instance = true;
    }

    pub fn covers(&self, id: &str) -> bool {
        self.every_instance || self.instances.contains(id)
    }
}

/// State shared by every step of one run.
#[derive(Debug, Default)]
pub struct RunState {
    /// Instances whose snapshot failed: never stopped afterwards in this run.
    pub failed_snapshots: std::sync::Mutex<FailedSnapshots>,
    /// Snapshots created by this run, as (account, region, snapshot id).
    pub created_snapshots: std::sync::Mutex<Vec<(String, String, String)>>,
    /// Quarantine and flush security groups per (account, region, VPC), made once.
    #[allow(clippy::type_complexity)]
    pub isolation_groups: tokio::sync::Mutex<
        std::collections::HashMap<(String, String, String), ec2::IsolationGroups>,
    >,
    /// Permission checks of dry runs and preflights, coalesced.
    pub simulator: iam::Simulator,
    /// (account, region) where a check found termination protection denied
    /// on an instance that needs it: the step is refused there, and the
    /// other denials need no read to tell whether they matter.
    pub protection_denied: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
}

/// What discovery found for a step: per-target decisions and notes for the plan.
#[derive(Debug, Default)]
pub struct Discovery {
    pub planned: Vec<Planned>,
    /// Facts the responder must know (such as what an SCP cannot restrict).
    pub notes: Vec<String>,
}

/// Where discovery hands over each decided target as soon as it is decided,
/// so the executor can start a step's calls while its discovery goes on: with
/// a thousand users, listing each one's keys overlaps with deactivating them.
#[derive(Debug, Clone)]
pub struct Sink(tokio::sync::mpsc::UnboundedSender<Planned>);

impl Sink {
    pub fn channel() -> (Sink, tokio::sync::mpsc::UnboundedReceiver<Planned>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Sink(tx), rx)
    }

    pub fn emit(&self, planned: Planned) {
        // A receiver gone means the step stopped (its audit log failed): the
        // remaining decisions have nowhere to go, and no call is made.
        let _ = self.0.send(planned);
    }

    pub fn emit_all(&self, planned: impl IntoIterator<Item = Planned>) {
        for p in planned {
            self.emit(p);
        }
    }
}

/// Finds a step's targets and decides, for each, what call (if any) it
/// needs, handing each decision to `sink`. Returns the notes for the plan.
///
/// An account-scoped step with `accounts:` runs its discovery in every
/// reached account at once; a failure in one is reported (naming the
/// account) after the others have finished.
pub async fn discover(ctx: &Ctx, step: &BoundStep, sink: &Sink) -> Result<Vec<String>, AwsError> {
    let accounts = match ctx.fleet.accounts(step.index) {
        Some(a) if step.action.account_scoped() => a,
        // Boxed: each action's discovery is a deep future, and the executor
        // nests it again; boxing keeps the type (and its layout) shallow.
        _ => return Box::pin(registry::discover_in(ctx, step, sink)).await,
    };
    let found =
        futures_util::future::join_all(accounts.iter().filter_map(|a| ctx.in_account(a)).map(
            |actx| async move {
                let found = registry::discover_in(actx.as_ref(), step, sink).await;
                (actx.identity.account.clone(), found)
            },
        ))
        .await;
    let mut notes = Vec::new();
    let mut failed: Vec<(String, AwsError)> = Vec::new();
    for (account, r) in found {
        match r {
            Ok(n) => notes.extend(n.into_iter().map(|n| format!("{account}: {n}"))),
            Err(e) => failed.push((account, e)),
        }
    }
    let count = failed.len();
    match failed.into_iter().next() {
        None => Ok(notes),
        Some((account, mut e)) => {
            let others = match count {
                1 => String::new(),
                n => format!(" (and in {} other accounts)", n - 1),
            };
            e.message = format!("in account {account}: {}{others}", e.message);
            Err(e)
        }
    }
}
