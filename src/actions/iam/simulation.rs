//! Permission checks for IAM and Organizations calls, which have no DryRun:
//! `SimulatePrincipalPolicy`, batched, with its three answers kept apart.

use super::*;

/// Asks IAM whether the executor may make each (action, resource) call.
/// Checks from concurrent tasks are coalesced into few calls (see [`Simulator`]).
pub async fn simulate(ctx: &Ctx, checks: &[(&'static str, String)]) -> Result<(), AwsError> {
    let answers = futures_util::future::join_all(
        checks
            .iter()
            .map(|(action, resource)| ctx.run.simulator.check(ctx, action, resource)),
    )
    .await;
    answers.into_iter().collect()
}

/// Resources per `SimulatePrincipalPolicy` call: the API evaluates every
/// listed action on every listed resource and pages the answers.
pub(super) const SIMULATION_BATCH: usize = 50;

pub(super) type Answer = tokio::sync::oneshot::Sender<Result<(), AwsError>>;

/// Coalesces permission checks: a preflight over a thousand users costs a
/// few dozen simulation calls instead of a thousand. Each check waits a
/// moment for others to join, then whoever gets the turn asks for all the
/// checks waiting, grouped by action, and answers each of them.
#[derive(Debug, Default)]
pub struct Simulator {
    /// (account, action, resource, answer): each account's checks are asked
    /// of that account's IAM, for the principal the run acts as there.
    pub(super) waiting: std::sync::Mutex<Vec<Waiting>>,
    pub(super) turn: tokio::sync::Mutex<()>,
}

pub(super) type Waiting = (String, &'static str, String, Answer);

/// (account, action, region of the resource) of one batch of checks.
type ActionIn = (String, &'static str, String);

/// The region field of an ARN (`arn:aws:cloudtrail:eu-west-1:…`); empty for
/// global resources (IAM, Organizations).
fn region_of(arn: &str) -> &str {
    arn.split(':').nth(3).unwrap_or_default()
}

impl Simulator {
    pub async fn check(
        &self,
        ctx: &Ctx,
        action: &'static str,
        resource: &str,
    ) -> Result<(), AwsError> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let account = ctx.identity.account.clone();
        self.lock()
            .push((account, action, resource.to_string(), tx));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        {
            let _turn = self.turn.lock().await;
            if let Ok(answer) = rx.try_recv() {
                return answer;
            }
            let batch = std::mem::take(&mut *self.lock());
            // Grouped by the resource's region too: a regional call is
            // asked with that region as `aws:RequestedRegion`.
            let mut by_action: BTreeMap<ActionIn, Vec<(String, Answer)>> = BTreeMap::new();
            for (account, a, r, tx) in batch {
                let region = region_of(&r).to_string();
                by_action
                    .entry((account, a, region))
                    .or_default()
                    .push((r, tx));
            }
            // Every account's and action's batch at once: across fifty
            // accounts, asking one after another was most of the preflight.
            let mut batches = Vec::new();
            for ((account, a, region), mut waiting) in by_action {
                let Some(here) = ctx.in_account(&account) else {
                    for (_, tx) in waiting {
                        let _ = tx.send(Err(local(
                            "iam:SimulatePrincipalPolicy",
                            format!("account {account} cannot be reached"),
                        )));
                    }
                    continue;
                };
                while !waiting.is_empty() {
                    let rest = waiting.split_off(waiting.len().min(SIMULATION_BATCH));
                    let chunk = std::mem::replace(&mut waiting, rest);
                    batches.push((here.clone().into_owned(), a, region.clone(), chunk));
                }
            }
            futures_util::future::join_all(batches.into_iter().map(
                |(here, a, region, chunk)| async move {
                    let resources: Vec<String> = chunk.iter().map(|(r, _)| r.clone()).collect();
                    let decisions = simulate_batch(&here, a, &region, &resources).await;
                    for (r, tx) in chunk {
                        let _ = tx.send(verdict(&here, a, &r, &decisions));
                    }
                },
            ))
            .await;
        }
        rx.await.unwrap_or_else(|_| {
            Err(local(
                "iam:SimulatePrincipalPolicy",
                "the permission check was dropped".into(),
            ))
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        match self.waiting.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// resource ARN → IAM's decision for one action, or the error of the call.
pub(super) type Decisions = Result<BTreeMap<String, String>, AwsError>;

/// Asks IAM about `action` on `resources`. For a regional resource the
/// region is passed as `aws:RequestedRegion`: the simulator evaluates a
/// condition key only with a value given in `ContextEntries` (IAM API
/// reference, SimulatePrincipalPolicy), so a policy that allows or denies by
/// region would otherwise be misjudged.
pub(super) async fn simulate_batch(
    ctx: &Ctx,
    action: &str,
    region: &str,
    resources: &[String],
) -> Decisions {
    let context = (!region.is_empty()).then(|| {
        vec![
            aws_sdk_iam::types::ContextEntry::builder()
                .context_key_name("aws:RequestedRegion")
                .context_key_type(aws_sdk_iam::types::ContextKeyTypeEnum::String)
                .context_key_values(region)
                .build(),
        ]
    });
    let results = ctx
        .call("iam:SimulatePrincipalPolicy", || {
            ctx.iam()
                .simulate_principal_policy()
                .policy_source_arn(&ctx.executor_arn)
                .action_names(action)
                .set_resource_arns(Some(resources.to_vec()))
                .set_context_entries(context.clone())
                .into_paginator()
                .items()
                .send()
                .try_collect()
        })
        .await
        .map_err(|e| {
            // The simulator itself did not answer (not allowed to the
            // executor, a 5xx, throttled past its retries): that says
            // nothing about the call checked.
            aws::unchecked(format!(
                "iam:SimulatePrincipalPolicy answered {e}: permission checks unavailable here"
            ))
        })?;
    Ok(results
        .iter()
        .map(|r| {
            (
                r.eval_resource_name().unwrap_or("*").to_string(),
                r.eval_decision().as_str().to_string(),
            )
        })
        .collect())
}

pub(super) fn verdict(
    ctx: &Ctx,
    action: &str,
    resource: &str,
    decisions: &Decisions,
) -> Result<(), AwsError> {
    let decisions = decisions.as_ref().map_err(Clone::clone)?;
    let decision = decisions
        .get(resource)
        .or_else(|| decisions.get("*"))
        .map(String::as_str)
        .unwrap_or("no decision returned");
    if decision == "allowed" {
        return Ok(());
    }
    Err(AwsError {
        operation: action.to_string(),
        code: Some("PreflightDenied".into()),
        message: format!(
            "iam:SimulatePrincipalPolicy for {} on {resource}: {decision}",
            ctx.executor_arn
        ),
        kind: ErrorKind::AccessDenied,
    })
}

pub(super) fn refuse(operation: &str, what: &str) -> AwsError {
    AwsError {
        operation: operation.to_string(),
        code: Some("BreakglassSafetyRule".into()),
        message: format!("refused to act on {what}"),
        kind: ErrorKind::Other,
    }
}
