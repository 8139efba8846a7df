//! `rollback`: undo a run's recorded changes, latest first, each checked
//! against AWS before it is made.

use super::context::reenter_accounts;
use super::record::run_start;
use super::run::confirm;
use super::session::{RunConnection, connect_as_run, pin_to_run};
use crate::actions::Ctx;
use crate::audit::{self, AuditLog, Event};
use crate::aws::{self, RetryPolicy, Telemetry};
use crate::cli::GlobalArgs;
use crate::error::{Error, ExitCode};
use crate::render::Printer;
use crate::report::Counts;
use crate::targets::Protection;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) struct RollbackRequest<'a> {
    pub(super) path: &'a std::path::Path,
    pub(super) trust: &'a crate::cli::TrustArgs,
    pub(super) allow_env_endpoint: bool,
    pub(super) dry_run: bool,
    pub(super) yes: bool,
    pub(super) force: bool,
    pub(super) audit_log: Option<&'a std::path::Path>,
    pub(super) choices: crate::rollback::Choices,
}

/// Verifies the run's log, then undoes its changes latest first, each checked
/// against the resource's state now, with an audit log of its own.
pub(super) async fn rollback(
    global: &GlobalArgs,
    out: &Printer,
    req: RollbackRequest<'_>,
) -> Result<ExitCode, Error> {
    use crate::report::Outcome;
    use crate::rollback::Plan;

    let (v, records) = audit::read(
        req.path,
        &req.trust.trust(),
        req.trust.expect_head.as_deref(),
    )?;
    // Rollback acts with the break-glass credential on whatever the log
    // says: only a log this responder's key signed (or anchored by a head
    // kept elsewhere) may drive it.
    if let Some(broken) = &v.broken {
        return Err(Error::Refused(format!(
            "{} does not verify ({broken}): a tampered log cannot drive a rollback",
            req.path.display()
        )));
    }
    if !v.authentic() {
        return Err(Error::Refused(format!(
            "{} is {}: rollback trusts only logs signed by this machine's audit key (or --key, or --expect-head with the head the run printed)",
            req.path.display(),
            match (&v.signed_by, v.format) {
                (_, 1) => "a log from before breakglass signed its records".to_string(),
                (None, _) => "unsigned".to_string(),
                (Some(k), _) if v.head_matches == Some(false) => format!(
                    "signed by key {} but does not end with the expected head",
                    crate::signing::fingerprint(k)
                ),
                (Some(k), _) => format!(
                    "signed by key {}, which this machine does not hold",
                    crate::signing::fingerprint(k)
                ),
            }
        )));
    }
    let Some(Event::RunStart {
        identity: original,
        dry_run: was_dry,
        profile: logged_profile,
        endpoint: logged_endpoint,
        endpoints: logged_endpoints,
        executor: logged_executor,
        region: logged_region,
        protect: logged_protect,
        ..
    }) = records.first().map(|r| &r.event)
    else {
        return Err(Error::Refused("the log has no run-start record".into()));
    };
    if *was_dry {
        return Err(Error::Refused(
            "that log is a dry run: it changed nothing".into(),
        ));
    }
    let run_id = v.run_id.clone().unwrap_or_default();
    let session = connect_as_run(
        global,
        RunConnection {
            profile: logged_profile,
            region: logged_region,
            endpoints: logged_endpoints,
            endpoint: logged_endpoint.as_ref(),
            executor: logged_executor.as_ref(),
            run_id: &run_id,
            allow_env_endpoint: req.allow_env_endpoint,
        },
    )
    .await?;
    pin_to_run(global, original, &session.identity)?;
    errln!(
        "breakglass rollback of run {run_id} ({})",
        req.path.display()
    );
    errln!("  identity: {}", session.identity.arn);
    errln!("  credential: {}", session.source());
    errln!("  endpoint: {}", session.endpoint_display());
    for u in &v.uncertain {
        errln!("warning: the run was interrupted during {u}: not undone, check it by hand");
    }
    let mut plan = crate::rollback::plan(&records, &req.choices);
    // The executor's own chain is never touched, by a rollback either.
    for step in &mut plan {
        let chain = match &step.target.resource {
            crate::targets::Resource::User { name, .. } => {
                session
                    .identity
                    .is_self(&step.target.scope.account, aws::PrincipalKind::User, name)
            }
            crate::targets::Resource::Role { name, .. } => {
                session
                    .identity
                    .is_self(&step.target.scope.account, aws::PrincipalKind::Role, name)
            }
            _ => false,
        };
        if chain && matches!(step.plan, Plan::Undo { .. }) {
            step.plan = Plan::Kept {
                why: "a principal of the executor's credential chain: never touched".into(),
            };
        }
    }
    let started = jiff::Timestamp::now();
    let ctx = Ctx {
        clients: session.clients.clone(),
        identity: session.identity.clone(),
        protection: Protection::new(logged_protect),
        concurrency: usize::from(global.concurrency),
        run_started: started,
        retry: RetryPolicy::default(),
        telemetry: Arc::new(Telemetry::new(usize::from(global.concurrency))),
        executor_arn: String::new(),
        exempt: Vec::new(),
        member_exempt: None,
        regions: vec![session.region.clone()],
        check_permissions: false,
        permissions_only: false,
        run: Arc::default(),
        fleet: Arc::default(),
        audit_key: crate::audit::AuditKey::existing()
            .ok()
            .flatten()
            .map(Arc::new),
    };
    let ctx = reenter_accounts(ctx, &records, &plan, &run_id).await;
    // Every undo checked against AWS now, shown before anything is asked.
    errln!("Rollback plan, latest change first, checked against AWS now:");
    for (n, step) in plan.iter().enumerate() {
        let line = match &step.plan {
            Plan::Irreversible { why } => format!("irreversible: {why}"),
            Plan::Kept { why } => format!("kept: {why}"),
            Plan::Undo { undo } => {
                let here = ctx.acting_on(&step.target.scope.account, undo.from_management());
                let check = match &here {
                    Some(here) => undo.check(here).await,
                    None => Err(aws::local("sts:AssumeRole", "account not reached".into())),
                };
                let state = match check {
                    Ok(crate::rollback::Check::Ready) => "ready".to_string(),
                    Ok(crate::rollback::Check::Done(why)) => format!("already done: {why}"),
                    Ok(crate::rollback::Check::Conflict(why)) => format!(
                        "CONFLICT: {why} ({})",
                        if req.force {
                            "undone anyway: --force"
                        } else {
                            "left alone"
                        }
                    ),
                    Err(e) => format!("cannot be checked: {e}"),
                };
                format!("{} · {state}", undo.describe())
            }
        };
        errln!("  {}. {}: {line}", n + 1, step.target);
    }
    if !req.dry_run && !req.yes {
        confirm(&session.identity, &[], None)?;
    }

    let new_id = audit::new_run_id(started);
    let path = req
        .audit_log
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| {
            std::path::PathBuf::from("breakglass-audit").join(format!("rollback-{new_id}.jsonl"))
        });
    let key = Arc::new(audit::AuditKey::load_or_create()?);
    let log = AuditLog::create(&path, &new_id, key.clone())?;
    log.append(run_start(
        &session,
        &req.path.display().to_string(),
        &format!("rollback of {run_id}"),
        &v.head.clone().unwrap_or_default(),
        req.dry_run,
        BTreeMap::new(),
        Some(run_id.clone()),
        logged_executor.clone(),
        logged_protect,
        &key,
    ))?;
    let mut items = Vec::new();
    for step in &plan {
        let (outcome, call, reason, error) = match &step.plan {
            Plan::Irreversible { why } => (
                Outcome::Skipped,
                None,
                Some(format!("irreversible: {why}")),
                None,
            ),
            Plan::Kept { why } => (Outcome::Skipped, None, Some(format!("kept: {why}")), None),
            Plan::Undo { undo } if req.dry_run => {
                (Outcome::WouldChange, Some(undo.describe()), None, None)
            }
            Plan::Undo { undo } => {
                let intent = log.append(Event::UndoIntent {
                    of: step.of,
                    target: step.target.clone(),
                    call: undo.describe(),
                    undo: undo.clone(),
                })?;
                let here = ctx.acting_on(&step.target.scope.account, undo.from_management());
                let done = match &here {
                    Some(here) => crate::rollback::undo_one(here, undo, req.force).await,
                    None => Err(aws::local(
                        "sts:AssumeRole",
                        format!(
                            "account {} cannot be reached: not undone",
                            step.target.scope.account
                        ),
                    )),
                };
                let (outcome, reason, error) = match done {
                    Ok(None) => (Outcome::Changed, None, None),
                    Ok(Some(why)) => (Outcome::Unchanged, Some(why), None),
                    Err(e) => (Outcome::Failed, None, Some(e)),
                };
                log.append(Event::Result {
                    step: 0,
                    target: step.target.clone(),
                    outcome,
                    intent: Some(intent),
                    call: Some(undo.describe()),
                    reason: reason.clone(),
                    error: error.clone(),
                    effect: None,
                })?;
                items.push((
                    step.target.clone(),
                    outcome,
                    Some(undo.describe()),
                    reason,
                    error,
                ));
                continue;
            }
        };
        log.append(Event::Result {
            step: 0,
            target: step.target.clone(),
            outcome,
            intent: None,
            call: call.clone(),
            reason: reason.clone(),
            error: error.clone(),
            effect: None,
        })?;
        items.push((step.target.clone(), outcome, call, reason, error));
    }
    let mut totals = Counts::default();
    for (_, o, ..) in &items {
        let mut one = Counts::default();
        match o {
            Outcome::Changed => one.changed = 1,
            Outcome::WouldChange => one.would_change = 1,
            Outcome::Unchanged => one.unchanged = 1,
            Outcome::Skipped => one.skipped = 1,
            Outcome::Failed => one.failed = 1,
        }
        totals.merge(&one);
    }
    let status = if totals.failed > 0 {
        "completed_with_failures"
    } else {
        "completed"
    };
    log.append(Event::RunEnd {
        status: status.to_string(),
        totals,
        calls: ctx.telemetry.snapshot(),
        not_contained: None,
    })?;
    out.rollback(&run_id, &items, &totals, &log.path().display().to_string());
    Ok(if totals.failed > 0 {
        ExitCode::Failed
    } else {
        ExitCode::Success
    })
}
