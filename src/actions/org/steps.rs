//! The Organizations actions a playbook names: SCPs on the organization's
//! targets, and moving accounts into a quarantine OU.

use super::*;
use crate::actions::{Action, Runs};
use crate::spec::{ApplyScpParams, DetachScpParams, MoveAccountsParams, check_target};

/// Every organization target of a step is spelled `root`, `r-…`, `ou-…` or
/// a 12-digit account id.
fn check_targets(targets: Vec<String>) -> Result<(), String> {
    targets.iter().try_for_each(|t| check_target(t))
}

/// Hands an SCP step's decisions to `sink`; its notes go to the plan.
async fn emit(found: Result<Discovery, AwsError>, sink: &Sink) -> Result<Vec<String>, AwsError> {
    let found = found?;
    sink.emit_all(found.planned);
    Ok(found.notes)
}

pub struct ApplyScp;

impl Action for ApplyScp {
    const INFO: ActionInfo = ActionInfo {
        id: "org.apply_scp",
        summary: "Deny everything to every principal except the executor and `protect`, with a service control policy.",
        targets: &[],
        params: &[
            (
                "target",
                "root, OU ids (ou-…) or account ids: one or a list",
            ),
            (
                "policy",
                "deny-all (built in; the default), preserve (built in: denies only what destroys evidence and backups), or a .json file",
            ),
            (
                "name",
                "SCP name (default breakglass-deny-all; breakglass-preserve for preserve)",
            ),
        ],
        calls: &[
            "organizations:EnablePolicyType (root, if SCPs are off)",
            "organizations:CreatePolicy (or UpdatePolicy)",
            "organizations:AttachPolicy",
        ],
        reversibility: Reversibility::Reversible(
            "DetachPolicy (org.detach_scp), then DeletePolicy",
        ),
        notes: &[
            "SCPs never restrict the management account or service-linked roles.",
            "`policy: preserve` denies stopping or changing trails, scheduling KMS key deletion, deleting or unlocking snapshots, deleting recovery points and vaults or their locks, S3 lifecycle rules and object-version deletion, and undoing the preservation steps, to all but the responders: for accounts the freeze does not cover, beside it. It takes one of the five SCP slots of each target, and while it stands only the responders can add the lifecycle rule that expires noncurrent versions.",
            "Runs from the management account or a delegated administrator.",
            "A root already holding five SCPs (AWS's quota) hands the freeze to each OU and account under it; a full OU or account refuses the run before any change.",
        ],
    };
    const RUNS: Runs = Runs::Organization;
    type Params = ApplyScpParams;

    fn check(p: &ApplyScpParams) -> Result<(), String> {
        check_targets(p.target.items())?;
        if !["deny-all", "preserve"].contains(&p.policy.as_str()) && !p.policy.ends_with(".json") {
            return Err(format!(
                "unknown policy `{}`: use `deny-all`, `preserve` or a .json file next to the playbook",
                p.policy
            ));
        }
        Ok(())
    }

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &ApplyScpParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        emit(discover(ctx, step).await, sink).await
    }
}

pub struct DetachScp;

impl Action for DetachScp {
    const INFO: ActionInfo = ActionInfo {
        id: "org.detach_scp",
        summary: "Detach a breakglass SCP (ends an org-wide freeze).",
        targets: &[],
        params: &[
            ("target", "root, OU ids or account ids"),
            ("name", "SCP name (default breakglass-deny-all)"),
        ],
        calls: &["organizations:DetachPolicy"],
        reversibility: Reversibility::Reversible("org.apply_scp"),
        notes: &[],
    };
    const RUNS: Runs = Runs::Organization;
    type Params = DetachScpParams;

    fn check(p: &DetachScpParams) -> Result<(), String> {
        check_targets(p.target.items())
    }

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &DetachScpParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        emit(discover(ctx, step).await, sink).await
    }
}

pub struct MoveAccounts;

impl Action for MoveAccounts {
    const INFO: ActionInfo = ActionInfo {
        id: "org.move_accounts",
        summary: "Move the step's accounts into a quarantine OU, so the SCPs on it bind them.",
        targets: &[],
        params: &[("to", "the quarantine OU id (ou-…)")],
        calls: &["organizations:MoveAccount"],
        reversibility: Reversibility::Reversible("moves each account back to the parent it had"),
        notes: &[
            "The accounts come from `accounts:` (the step's or the playbook's).",
            "The executor's own account and the management account are never moved.",
        ],
    };
    const RUNS: Runs = Runs::OverAccounts;
    type Params = MoveAccountsParams;

    fn check(p: &MoveAccountsParams) -> Result<(), String> {
        match p.to.starts_with("ou-") {
            true => Ok(()),
            false => Err(format!(
                "`to: {}` is not an organizational unit id (ou-…)",
                p.to
            )),
        }
    }

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        p: &MoveAccountsParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        discover_moves(ctx, step, p, sink).await
    }
}
