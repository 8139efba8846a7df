//! The action catalog and the mutating calls actions plan.
//!
//! An action turns a bound step into [`Planned`] items by reading AWS state
//! (discovery); each item that needs a change carries an [`Op`]: one concrete,
//! serializable AWS call with the prior state needed to undo it. The executor
//! only ever sees `Op`s, so new services plug in here without touching it.
//! Actions neither print nor write the audit log.

pub mod ec2;
pub mod iam;
pub mod managed_deny;
pub mod org;
pub mod s3;
pub mod undo;

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};

pub mod fleet;

pub use crate::aws::Clients;
use crate::aws::{self, AwsError, Identity, RetryPolicy, Telemetry};
use crate::spec::LockModeSpec;
pub use crate::spec::{ActionKind, ActionParams, BoundStep, TargetKind};
use crate::targets::{Protection, Resource, SkipReason, Target};
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

impl ActionKind {
    pub fn info(self) -> ActionInfo {
        match self {
            ActionKind::IamDeactivateAccessKeys => iam::DEACTIVATE_ACCESS_KEYS,
            ActionKind::IamDeleteLoginProfiles => iam::DELETE_LOGIN_PROFILES,
            ActionKind::IamRevokeRoleSessions => iam::REVOKE_ROLE_SESSIONS,
            ActionKind::IamRevokeUserSessions => iam::REVOKE_USER_SESSIONS,
            ActionKind::IamQuarantinePrincipals => iam::QUARANTINE_PRINCIPALS,
            ActionKind::IamRevokeSession => iam::REVOKE_SESSION,
            ActionKind::OrgApplyScp => org::APPLY_SCP,
            ActionKind::OrgDetachScp => org::DETACH_SCP,
            ActionKind::OrgMoveAccounts => org::MOVE_ACCOUNTS,
            ActionKind::Ec2SnapshotVolumes => ec2::SNAPSHOT_VOLUMES,
            ActionKind::Ec2IsolateInstances => ec2::ISOLATE_INSTANCES,
            ActionKind::Ec2EnableTerminationProtection => ec2::ENABLE_TERMINATION_PROTECTION,
            ActionKind::Ec2StopInstances => ec2::STOP_INSTANCES,
            ActionKind::Ec2DetachInstanceProfiles => ec2::DETACH_INSTANCE_PROFILES,
            ActionKind::Ec2LockSnapshots => ec2::LOCK_SNAPSHOTS,
        }
    }
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
}

/// Read access and the rules discovery needs.
#[derive(Clone)]
pub struct Ctx {
    pub clients: Clients,
    pub identity: Identity,
    pub protection: Protection,
    /// Parallel reads during discovery.
    pub concurrency: usize,
    /// When this run started: revocations at or after it count as already done.
    pub run_started: jiff::Timestamp,
    pub retry: RetryPolicy,
    pub telemetry: Arc<Telemetry>,
    /// The executor's principal ARN as policies must name it (a role with its path).
    pub executor_arn: String,
    /// The principals every deny exempts, as exact ARNs: the executor's
    /// credential chain and `protect` (patterns resolved to their matches).
    pub exempt: Vec<String>,
    /// The member role in every account, exempted only while this run's
    /// member-account steps need it.
    pub member_exempt: Option<String>,
    /// Regions for regional actions, resolved before the run.
    pub regions: Vec<String>,
    /// In dry runs, also ask IAM (`SimulatePrincipalPolicy`) whether each IAM
    /// and Organizations call would be allowed for the executor.
    pub check_permissions: bool,
    pub run: Arc<RunState>,
    /// The accounts steps fan out to, with their clients. The identity and
    /// clients above are those of the account this context acts in.
    pub fleet: Arc<Fleet>,
    /// This responder's audit key: it makes the tokens breakglass tags its
    /// snapshots with, and recognises them.
    pub audit_key: Option<Arc<crate::signing::AuditKey>>,
}

impl Ctx {
    /// This context moved into `account`: its clients, its identity (the
    /// member role session there), everything else shared. `None` when the
    /// account was not reached. Borrowed when it already acts there, which
    /// is every call of a run that does not fan out.
    pub fn in_account(&self, account: &str) -> Option<Cow<'_, Ctx>> {
        if account == self.identity.account {
            return Some(Cow::Borrowed(self));
        }
        match self.fleet.reach(account)? {
            Reach::Reached { clients, identity } => Some(Cow::Owned(Ctx {
                clients: (**clients).clone(),
                identity: (**identity).clone(),
                // There the run acts as the member role (what permission
                // checks ask about); SCPs still exempt the executor, from
                // the executor's own context.
                executor_arn: self
                    .fleet
                    .principal_arn(account)
                    .unwrap_or_else(|| self.executor_arn.clone()),
                ..self.clone()
            })),
            Reach::Unreachable { .. } => None,
        }
    }

    /// Where a change to a target in `account` is made: Organizations calls
    /// (`from_management`) from the executor's own account, whatever account
    /// they concern; every other call from the target's account.
    pub fn acting_on(&self, account: &str, from_management: bool) -> Option<Cow<'_, Ctx>> {
        if from_management {
            Some(Cow::Borrowed(self))
        } else {
            self.in_account(account)
        }
    }

    pub fn iam(&self) -> &aws_sdk_iam::Client {
        &self.clients.iam
    }

    /// One call to a global service (IAM, Organizations) under the run's
    /// retry policy and pacing, its error classified and named after
    /// `operation` (such as `iam:UpdateAccessKey`).
    pub async fn call<T, E, R, F, Fut>(&self, operation: &str, f: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.call_at(None, operation, f).await
    }

    /// One call to a regional service (EC2), paced in that region's lane.
    pub async fn call_in<T, E, R, F, Fut>(
        &self,
        region: &str,
        operation: &str,
        f: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.call_at(Some(region), operation, f).await
    }

    async fn call_at<T, E, R, F, Fut>(
        &self,
        region: Option<&str>,
        operation: &str,
        f: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.call_with(self.retry, region, operation, f).await
    }

    async fn call_with<T, E, R, F, Fut>(
        &self,
        policy: RetryPolicy,
        region: Option<&str>,
        operation: &str,
        mut f: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let lane = self
            .telemetry
            .lane(&self.identity.account, operation, region);
        aws::call(&policy, &self.telemetry, &lane, || {
            let fut = f();
            async move { fut.await.map_err(|e| aws::aws_error(operation, e)) }
        })
        .await
    }

    /// A create with no idempotency token, for [`aws::create_once`]: a
    /// transient failure comes back at once instead of being sent again.
    pub async fn call_once<T, E, R, F, Fut>(
        &self,
        region: Option<&str>,
        operation: &str,
        f: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.call_with(self.retry.once(), region, operation, f)
            .await
    }

    /// A paginated listing read page by page, each page one paced and
    /// retried call: a throttled or failed page is asked again alone, with
    /// the same token, and the pages before it are kept. `next` reads a
    /// page's continuation token (`Marker` when `IsTruncated`, `NextToken`).
    pub async fn pages<P, E, R, F, Fut, N>(
        &self,
        region: Option<&str>,
        operation: &str,
        mut fetch: F,
        next: N,
    ) -> Result<Vec<P>, AwsError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<P, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
        N: Fn(&P) -> Option<String>,
    {
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call_at(region, operation, || fetch(token.clone()))
                .await?;
            let following = next(&page).filter(|t| !t.is_empty());
            pages.push(page);
            match following {
                // A token that repeats would loop forever: AWS never sends one.
                Some(t) if token.as_ref() != Some(&t) => token = Some(t),
                _ => return Ok(pages),
            }
        }
    }

    /// Like [`Ctx::call`] for a body that maps its own errors.
    pub async fn call_raw<T, F, Fut>(
        &self,
        region: Option<&str>,
        operation: &str,
        f: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AwsError>>,
    {
        let lane = self
            .telemetry
            .lane(&self.identity.account, operation, region);
        aws::call(&self.retry, &self.telemetry, &lane, f).await
    }
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
        _ => return Box::pin(discover_in(ctx, step, sink)).await,
    };
    let found =
        futures_util::future::join_all(accounts.iter().filter_map(|a| ctx.in_account(a)).map(
            |actx| async move {
                let found = discover_in(actx.as_ref(), step, sink).await;
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

/// One account's discovery for a step.
async fn discover_in(ctx: &Ctx, step: &BoundStep, sink: &Sink) -> Result<Vec<String>, AwsError> {
    let found = match step.action {
        ActionKind::OrgApplyScp | ActionKind::OrgDetachScp => org::discover(ctx, step).await?,
        ActionKind::OrgMoveAccounts => return org::discover_moves(ctx, step, sink).await,
        a if a.regional() => return ec2::discover(ctx, step, sink).await,
        _ => {
            iam::discover(ctx, step, sink).await?;
            return Ok(Vec::new());
        }
    };
    sink.emit_all(found.planned);
    Ok(found.notes)
}

/// One mutating AWS call, with the prior state rollback needs. Serialized into
/// the audit log's intent record before the call is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    DeactivateAccessKey {
        user: String,
        key_id: String,
        prior_status: String,
        /// The owner's ARN as IAM lists it (path included), for permission
        /// checks; absent in logs from before it was recorded.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        user_arn: String,
    },
    DeleteLoginProfile {
        user: String,
    },
    PutInlinePolicy {
        principal: iam::PrincipalRef,
        policy_name: String,
        policy: iam::PolicyKind,
        /// The exact document sent; filled in by [`Op::prepare`] right before the call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        document: Option<String>,
        /// The document of the same name that was there before, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prior_document: Option<String>,
    },
    ApplyScp(org::ApplyScp),
    DetachScp {
        policy_id: String,
        target_id: String,
    },
    /// `from` is where the account was: rollback moves it back there.
    MoveAccount {
        account: String,
        from: String,
        to: String,
    },
    CreateSnapshots {
        region: String,
        instance_id: String,
        volume_ids: Vec<String>,
        tags: std::collections::BTreeMap<String, String>,
        /// Tagged on every snapshot the call makes: how a retry after a lost
        /// answer finds them. Filled in by [`Op::prepare`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    IsolateInstance {
        region: String,
        instance_id: String,
        vpc_id: String,
        /// Each ENI with the security groups it had: what rollback restores.
        interfaces: Vec<ec2::Interface>,
        /// Interfaces found on the allow-all flush group (a run cut off
        /// between its two moves): open now, and their groups before
        /// breakglass are not these.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        on_flush: Vec<String>,
    },
    EnableTerminationProtection {
        region: String,
        instance_id: String,
        /// The settings before the change: what rollback restores.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prior: Option<ec2::TerminationSettings>,
    },
    StopInstance {
        region: String,
        instance_id: String,
        prior_state: String,
    },
    LockSnapshot {
        region: String,
        snapshot_id: String,
        mode: LockModeSpec,
        duration_days: u32,
    },
    /// Recorded with the profile so rollback can associate it again.
    DisassociateInstanceProfile {
        region: String,
        instance_id: String,
        association_id: String,
        profile_arn: String,
    },
}

impl Op {
    /// Fixes time-dependent content (a revocation's cutoff) at the moment of the call.
    pub fn prepare(&mut self, now: jiff::Timestamp, key: Option<&crate::signing::AuditKey>) {
        match self {
            Op::PutInlinePolicy {
                policy, document, ..
            } => *document = Some(policy.render(now)),
            Op::CreateSnapshots {
                instance_id, token, ..
            } => {
                use sha2::Digest;
                let mut h = sha2::Sha256::new();
                h.update(instance_id.as_bytes());
                h.update(now.as_nanosecond().to_le_bytes());
                h.update(std::process::id().to_le_bytes());
                let nonce = hex::encode(&h.finalize()[..8]);
                // A MAC of the audit key, so no tag an attacker writes can
                // pass for breakglass's (see `AuditKey::token`).
                *token = Some(match key {
                    Some(k) => k.token(instance_id, &nonce),
                    None => nonce,
                });
            }
            _ => {}
        }
    }

    /// The call, as a responder would read it in a plan.
    pub fn describe(&self) -> String {
        match self {
            Op::ApplyScp(_) | Op::DetachScp { .. } | Op::MoveAccount { .. } => org::describe(self),
            Op::DeactivateAccessKey { .. }
            | Op::DeleteLoginProfile { .. }
            | Op::PutInlinePolicy { .. } => iam::describe(self),
            _ => ec2::describe(self),
        }
    }

    /// True for Organizations calls: made from the executor's account, whatever
    /// account the target is.
    pub fn from_management(&self) -> bool {
        matches!(
            self,
            Op::ApplyScp(_) | Op::DetachScp { .. } | Op::MoveAccount { .. }
        )
    }

    /// Makes the call. `Ok` carries what was created (snapshot ids, groups),
    /// recorded in the audit log's result record.
    pub async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        match self {
            Op::ApplyScp(_) | Op::DetachScp { .. } | Op::MoveAccount { .. } => {
                org::apply(ctx, self).await
            }
            Op::DeactivateAccessKey { .. }
            | Op::DeleteLoginProfile { .. }
            | Op::PutInlinePolicy { .. } => iam::apply(ctx, self).await,
            _ => ec2::apply(ctx, self).await,
        }
    }

    /// Asks AWS whether the call would be allowed without making it: EC2's
    /// `DryRun=true`, or for IAM and Organizations (which have no such flag)
    /// `iam:SimulatePrincipalPolicy` when `ctx.check_permissions` is set.
    /// `None`: nothing was asked.
    pub async fn dry_run(&self, ctx: &Ctx, target: &Target) -> Option<Result<(), AwsError>> {
        if let Some(r) = ec2::dry_run(ctx, self).await {
            return Some(r);
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

    /// The (action, resource ARN) pairs this op needs, for simulation. The
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
        match self {
            Op::DeactivateAccessKey {
                user: u, user_arn, ..
            } => vec![(
                "iam:UpdateAccessKey",
                arn_of("user", u, Some(user_arn.as_str())),
            )],
            Op::DeleteLoginProfile { user: u } => {
                vec![("iam:DeleteLoginProfile", arn_of("user", u, None))]
            }
            Op::PutInlinePolicy { principal, .. } => match principal.kind {
                iam::PrincipalRefKind::User => {
                    vec![("iam:PutUserPolicy", arn_of("user", &principal.name, None))]
                }
                iam::PrincipalRefKind::Role => {
                    vec![("iam:PutRolePolicy", arn_of("role", &principal.name, None))]
                }
            },
            Op::ApplyScp(a) => {
                let mut v = Vec::new();
                if a.enable_on_root.is_some() {
                    v.push(("organizations:EnablePolicyType", "*".to_string()));
                }
                match (&a.policy_id, &a.prior_content) {
                    (None, _) => v.push(("organizations:CreatePolicy", "*".to_string())),
                    (Some(_), Some(_)) => v.push(("organizations:UpdatePolicy", "*".to_string())),
                    _ => {}
                }
                if !a.attach_to.is_empty() {
                    v.push(("organizations:AttachPolicy", "*".to_string()));
                }
                v
            }
            Op::DetachScp { .. } => vec![("organizations:DetachPolicy", "*".to_string())],
            Op::MoveAccount { .. } => vec![("organizations:MoveAccount", "*".to_string())],
            _ => Vec::new(),
        }
    }

    /// What is wrong with the target while this op is still needed: the drift
    /// `verify` and `hold` name ("is Active", "has security groups …").
    pub fn drift(&self) -> String {
        match self {
            Op::DeactivateAccessKey { prior_status, .. } => format!("is {prior_status}"),
            Op::DeleteLoginProfile { .. } => "has a console password".into(),
            Op::PutInlinePolicy {
                policy_name,
                prior_document: None,
                ..
            } => format!("has no {policy_name} policy"),
            Op::PutInlinePolicy { policy_name, .. } => {
                format!("its {policy_name} policy is not the one breakglass puts")
            }
            Op::ApplyScp(a) if a.attach_to.is_empty() => {
                format!("SCP {} has a different document", a.name)
            }
            Op::ApplyScp(a) => format!(
                "SCP {} is not attached to {}",
                a.name,
                a.attach_to.join(", ")
            ),
            Op::DetachScp {
                policy_id,
                target_id,
            } => format!("SCP {policy_id} is still attached to {target_id}"),
            Op::MoveAccount { from, to, .. } => format!("is in {from}, not in {to}"),
            Op::CreateSnapshots { volume_ids, .. } => {
                format!("has no breakglass snapshot of {}", volume_ids.join(", "))
            }
            Op::IsolateInstance {
                interfaces,
                on_flush,
                ..
            } if !on_flush.is_empty() => format!(
                "is EXPOSED: {} on the allow-all breakglass-flush group (open to the internet)",
                on_flush.join(", ")
            ),
            Op::IsolateInstance { interfaces, .. } => {
                let groups: Vec<String> = interfaces
                    .iter()
                    .map(|i| format!("{} in {}", i.id, i.groups.join("+")))
                    .collect();
                format!("is not quarantined ({})", groups.join("; "))
            }
            Op::EnableTerminationProtection { prior: Some(p), .. } => p.drift(),
            Op::EnableTerminationProtection { .. } => "has termination protection off".into(),
            Op::StopInstance { prior_state, .. } => format!("is {prior_state}"),
            Op::LockSnapshot { .. } => "is not locked".into(),
            Op::DisassociateInstanceProfile { profile_arn, .. } => {
                format!("has instance profile {profile_arn} attached")
            }
        }
    }

    /// The instance this op stops, for the "no stop after a failed snapshot" rule.
    pub fn stops_instance(&self) -> Option<&str> {
        match self {
            Op::StopInstance { instance_id, .. } => Some(instance_id),
            _ => None,
        }
    }
}
