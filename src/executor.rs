//! Runs bound steps in order. Within a step, each target's call starts as soon
//! as discovery has decided it (discovery and action overlap), concurrently up
//! to a bound and paced per throttling lane, with intent and result records
//! around every call. A step with `max_targets` discovers everything first, so
//! the limit is checked before any change. `plan` and `--dry-run` go through
//! this same path and make no change.
//!
//! `on_failure: abort` lets the failing step finish its other targets (a half
//! contained step helps nobody) and then stops before the next step, so a
//! failed snapshot is never followed by the stop that would destroy memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, stream};

use crate::Error;
use crate::actions::Reach;
use crate::actions::{self, ActionKind, Ctx, Disposition, Op, Planned, Sink};

use crate::actions::BoundStep;
use crate::audit::{AuditLog, Event};
use crate::aws::CallCounts;
use crate::progress::{Bar, Progress};
use crate::report::{Counts, Item, Outcome, StepReport, StepStatus};
use crate::spec::{OnFailure, OnMissing};
use crate::targets::{Scope, Target};

mod checked;
mod interrupt;

use checked::{Found, Gate};
pub use checked::{Stop, execute_checked};
pub use interrupt::Interrupt;

/// How a run is carried out.
pub struct Options<'a> {
    /// Reads only; every change is reported as `would_change`.
    pub dry_run: bool,
    /// `None` for `plan`, which records nothing.
    pub audit: Option<&'a AuditLog>,
    /// Bars on a terminal, when someone is watching.
    pub progress: Option<&'a Progress>,
    /// Ctrl-C and SIGTERM: once set, no new call starts.
    pub interrupt: Option<&'a Interrupt>,
}

/// Which pass over a step this is: its label on the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The preflight's read-only check.
    Check,
    /// The step itself (or, in a dry run, its check).
    Run,
    /// The read-back after it.
    ReadBack,
}

impl Phase {
    fn label(self, step: &BoundStep) -> String {
        let what = match self {
            Phase::Check => "check ",
            Phase::Run => "",
            Phase::ReadBack => "read back ",
        };
        format!("{what}step {} {}", step.index + 1, step.name)
    }
}

/// Runs every step in order. Returns early only when the audit log cannot be
/// written (no call is made without its intent record).
pub async fn execute(
    ctx: &Ctx,
    steps: &[BoundStep],
    opts: &Options<'_>,
    on_step: impl FnMut(&StepReport),
) -> Result<Vec<StepReport>, Error> {
    execute_gated(ctx, steps, opts, None, on_step).await
}

async fn execute_gated(
    ctx: &Ctx,
    steps: &[BoundStep],
    opts: &Options<'_>,
    mut gate: Option<Gate<'_>>,
    mut on_step: impl FnMut(&StepReport),
) -> Result<Vec<StepReport>, Error> {
    let mut reports = Vec::new();
    let mut aborted = false;
    for (position, step) in steps.iter().enumerate() {
        if position > 0
            && let Some(g) = gate.as_mut()
        {
            g.first_step_over();
        }
        if opts.interrupt.is_some_and(Interrupt::stopping) {
            let mut report = not_run(step);
            report.error = Some("not run: the run was interrupted".into());
            on_step(&report);
            reports.push(report);
            continue;
        }
        if aborted {
            let report = not_run(step);
            on_step(&report);
            reports.push(report);
            continue;
        }
        let mut found = None;
        if let Some(g) = gate.as_mut() {
            // An interrupt does not wait for the check to finish.
            let admitted = match opts.interrupt {
                Some(i) => tokio::select! {
                    a = g.admit(position, step) => Some(a?),
                    _ = i.stopped() => None,
                },
                None => Some(g.admit(position, step).await?),
            };
            let report = match admitted {
                Some(Ok(fresh)) => {
                    found = fresh;
                    None
                }
                Some(Err(stop)) => Some(stopped(step, stop, opts)?),
                None => {
                    let mut report = not_run(step);
                    report.error = Some("not run: the run was interrupted".into());
                    Some(report)
                }
            };
            if let Some(report) = report {
                aborted = true;
                on_step(&report);
                reports.push(report);
                continue;
            }
        }
        let before = ctx.telemetry.snapshot();
        let mut report = run_step(ctx, step, opts, Phase::Run, found, None).await?;
        report.calls = ctx.telemetry.snapshot().since(&before);
        aborted |= stops(step, &report);
        on_step(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// A step its check stopped: recorded, with nothing called.
fn stopped(step: &BoundStep, stop: Stop, opts: &Options<'_>) -> Result<StepReport, Error> {
    let mut report = not_run(step);
    report.status = stop.status;
    report.error = Some(stop.reason);
    if let Some(a) = opts.audit {
        a.append(Event::StepStart {
            step: step.index,
            name: step.name.clone(),
            action: step.action.id().to_string(),
        })?;
        a.append(Event::StepEnd {
            step: step.index,
            status: format!("{:?}", report.status).to_lowercase(),
            counts: Counts::default(),
            accounts: BTreeMap::new(),
            error: report.error.clone(),
        })?;
    }
    Ok(report)
}

/// A read-only pass over every step at once: the preflight before a live
/// run and the read-back after it. Nothing changes, so no step needs to wait
/// for the one before (across fifty accounts, waiting cost a quarter of the
/// pass), and every step is read whatever an earlier one found: a check
/// that could not be answered in step 1 must not hide a denial, a missing
/// subject or a full quota in step 3. Reports come back in playbook order;
/// the steps share the wire, so their `calls` are not counted apart.
pub async fn read_all(
    ctx: &Ctx,
    steps: &[BoundStep],
    phase: Phase,
    progress: Option<&Progress>,
) -> Result<Vec<StepReport>, Error> {
    let opts = Options {
        dry_run: true,
        audit: None,
        progress,
        interrupt: None,
    };
    futures_util::future::join_all(
        steps
            .iter()
            .map(|s| Box::pin(run_step(ctx, s, &opts, phase, None, None))),
    )
    .await
    .into_iter()
    .collect()
}

/// Whether the run stops after this step: a refusal always, a failure
/// unless the step says `on_failure: continue`.
fn stops(step: &BoundStep, report: &StepReport) -> bool {
    match report.status {
        StepStatus::Refused => true,
        StepStatus::Failed => step.on_failure == OnFailure::Abort,
        _ => false,
    }
}

fn not_run(step: &BoundStep) -> StepReport {
    StepReport {
        index: step.index,
        name: step.name.clone(),
        action: step.action.id().into(),
        status: StepStatus::NotRun,
        on_failure: step.on_failure,
        counts: Counts::default(),
        items: Vec::new(),
        notes: Vec::new(),
        error: Some("not run: an earlier step failed and stopped the run".into()),
        millis: 0,
        calls: CallCounts::default(),
        accounts: BTreeMap::new(),
    }
}

/// One pass over a step. `given`: act on what its check discovered instead
/// of discovering again. `keep`: collect what discovery decides (a check
/// whose step may reuse it).
async fn run_step(
    ctx: &Ctx,
    step: &BoundStep,
    opts: &Options<'_>,
    phase: Phase,
    given: Option<Found>,
    keep: Option<&std::sync::Mutex<Vec<Planned>>>,
) -> Result<StepReport, Error> {
    let started = Instant::now();
    let shown = opts.progress.map(|p| p.targets(phase.label(step)));
    let bar = shown.as_ref();
    let record = |event: Event| -> Result<Option<u64>, Error> {
        opts.audit.map(|a| a.append(event)).transpose()
    };
    record(Event::StepStart {
        step: step.index,
        name: step.name.clone(),
        action: step.action.id().to_string(),
    })?;

    let (sink, decided) = Sink::channel();
    let (given, given_notes) = match given {
        Some(f) => (Some(f.planned), Some(f.notes)),
        None => (None, None),
    };
    let discovery = async move {
        let found = match given_notes {
            Some(notes) => Ok(notes),
            None => actions::discover(ctx, step, &sink).await,
        };
        drop(sink);
        found
    };
    let decided = match given {
        Some(planned) => stream::iter(planned).boxed_local(),
        None => UnboundedReceiverStream(decided).boxed_local(),
    };
    let decided = decided.inspect(|p| {
        if let Some(keep) = keep {
            keep.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(p.clone());
        }
    });
    let mut refusal = None;
    let (found, mut items) = if step.max_targets.is_some() {
        // The limit is checked on the whole discovery, before any change.
        let found = discovery.await;
        let planned: Vec<Planned> = decided.collect().await;
        let mut items = Vec::new();
        if found.is_ok() {
            refusal = over_limit(step, &planned);
            if refusal.is_none() {
                items = carry_out(ctx, step, opts, bar, stream::iter(planned)).await?;
            }
        }
        (found, items)
    } else {
        // Calls start as targets are decided: discovery overlaps with action.
        let (found, items) = tokio::join!(discovery, carry_out(ctx, step, opts, bar, decided));
        (found, items?)
    };
    let mut notes = Vec::new();
    let mut error = None;
    match found {
        Ok(found) => notes = found,
        Err(e) => {
            if step.action == ActionKind::Ec2SnapshotVolumes {
                // Which instances went unsnapshotted is unknown: stop none of them.
                if let Ok(mut failed) = ctx.run.failed_snapshots.lock() {
                    failed.whole_step();
                }
            }
            error = Some(format!("discovery failed: {e}"))
        }
    }

    drop(shown);
    // Calls finish in any order; reports read better in a stable one. The
    // key is built once per item, and the spare room the vector grew into
    // goes back: a plan keeps every step's items until it prints them.
    items.sort_by_cached_key(|i| (i.outcome, i.target.to_string()));
    items.shrink_to_fit();
    let mut counts = Counts::default();
    let mut accounts: BTreeMap<String, Counts> = BTreeMap::new();
    let selected = ctx.fleet.accounts(step.index);
    if let Some(list) = selected {
        // Every reached account shows, the ones with nothing to do included
        // (the unreachable ones are reported once, for the whole run).
        for a in list {
            if matches!(ctx.fleet.reach(a), Some(Reach::Reached { .. })) {
                accounts.entry(a.clone()).or_default();
            }
        }
    }
    for item in &items {
        counts.add(item.outcome);
        if selected.is_some() {
            accounts
                .entry(item.target.scope.account.clone())
                .or_default()
                .add(item.outcome);
        }
    }
    let status = if refusal.is_some() {
        StepStatus::Refused
    } else if error.is_some() || counts.failed > 0 {
        StepStatus::Failed
    } else {
        StepStatus::Done
    };
    let error = error.or(refusal);
    record(Event::StepEnd {
        step: step.index,
        status: format!("{status:?}").to_lowercase(),
        counts,
        accounts: accounts.clone(),
        error: error.clone(),
    })?;
    Ok(StepReport {
        index: step.index,
        name: step.name.clone(),
        action: step.action.id().into(),
        status,
        on_failure: step.on_failure,
        counts,
        items,
        notes,
        error,
        millis: started.elapsed().as_millis() as u64,
        calls: CallCounts::default(),
        accounts,
    })
}

/// Records what needs no call, and makes (or, in a dry run, checks) every
/// call of the step as targets arrive, each between its intent and result
/// records. Calls queue per lane (the target's account and region, which is
/// how AWS meters them), each lane with up to `concurrency` calls under way:
/// a lane waiting out its throttling never holds back another region's calls.
async fn carry_out(
    ctx: &Ctx,
    step: &BoundStep,
    opts: &Options<'_>,
    bar: Option<&Bar>,
    planned: impl futures_util::Stream<Item = Planned>,
) -> Result<Vec<Item>, Error> {
    let per_lane = ctx.concurrency.max(1);
    let mut planned = std::pin::pin!(planned);
    let mut open = true;
    let mut queues: HashMap<Scope, (usize, VecDeque<(Target, Op)>)> = HashMap::new();
    let mut running = FuturesUnordered::new();
    let mut items = Vec::new();
    loop {
        for (lane, (busy, queue)) in queues.iter_mut() {
            while *busy < per_lane {
                let Some((target, op)) = queue.pop_front() else {
                    break;
                };
                if opts.interrupt.is_some_and(Interrupt::stopping) {
                    let item = Item::new(target, Outcome::Skipped)
                        .reason("not started: the run was interrupted".into());
                    items.push(finish(opts, step, bar, item, None)?);
                    continue;
                }
                *busy += 1;
                let lane = lane.clone();
                running.push(async move { (lane, change(ctx, step, opts, bar, target, op).await) });
            }
        }
        if !open && running.is_empty() {
            return Ok(items);
        }
        tokio::select! {
            next = planned.next(), if open => match next {
                None => open = false,
                Some(Planned { target, disposition }) => {
                    if let Some(b) = bar {
                        b.decided();
                    }
                    match disposition {
                    Disposition::Change { .. } if opts.interrupt.is_some_and(Interrupt::stopping) => {
                        let item = Item::new(target, Outcome::Skipped)
                            .reason("not started: the run was interrupted".into());
                        items.push(finish(opts, step, bar, item, None)?);
                    }
                    Disposition::Change { op } => queues
                        .entry(target.scope.clone())
                        .or_default()
                        .1
                        .push_back((target, op)),
                    Disposition::Unchanged { reason } => {
                        let item = Item::new(target, Outcome::Unchanged).reason(reason);
                        items.push(finish(opts, step, bar, item, None)?);
                    }
                    Disposition::Skip { reason } => {
                        let item = Item::new(target, Outcome::Skipped).reason(reason.to_string());
                        items.push(finish(opts, step, bar, item, None)?);
                    }
                    Disposition::Missing { reason } => {
                        let item = match step.on_missing {
                            OnMissing::Skip => Item::new(target, Outcome::Skipped)
                                .reason(format!("not found (on_missing: skip): {reason}")),
                            OnMissing::Fail => Item::new(target, Outcome::Failed)
                                .reason("not found".into())
                                .error(crate::aws::missing(reason)),
                        };
                        items.push(finish(opts, step, bar, item, None)?);
                    }
                    Disposition::Unreadable { error } => {
                        let item = Item::new(target, Outcome::Failed)
                            .reason("its state could not be read".into())
                            .error(error);
                        items.push(finish(opts, step, bar, item, None)?);
                    }
                    Disposition::OutOfReach { reason } => {
                        let item = Item::new(target, Outcome::Failed).reason(reason);
                        items.push(finish(opts, step, bar, item, None)?);
                    }
                }},
            },
            Some((lane, item)) = running.next(), if !running.is_empty() => {
                if let Some((busy, _)) = queues.get_mut(&lane) {
                    *busy -= 1;
                }
                items.push(item?);
            }
        }
    }
}

/// One target's call (or, in a dry run, its check).
async fn change(
    ctx: &Ctx,
    step: &BoundStep,
    opts: &Options<'_>,
    bar: Option<&Bar>,
    target: Target,
    mut op: Op,
) -> Result<Item, Error> {
    let call = op.describe();
    let Some(ctx) = ctx.acting_on(&target.scope.account, op.from_management()) else {
        let item = Item::new(target, Outcome::Failed)
            .call(call)
            .reason("its account could not be reached".into());
        return finish(opts, step, bar, item, None);
    };
    let ctx = ctx.as_ref();
    if opts.dry_run {
        let drift = op.drift();
        // Where AWS can say whether the call would be allowed, ask it.
        let mut item = match op.dry_run(ctx, &target).await {
            None => Item::new(target, Outcome::WouldChange).call(call),
            Some(Ok(())) => Item::new(target, Outcome::WouldChange)
                .call(call)
                .reason("permission check: allowed".into()),
            // Three answers: denied (or a quota, a missing subject) fails
            // the item; a check that got no answer (throttled past its
            // retries, a 5xx, a timeout) is neither allowed nor denied.
            Some(Err(e)) if e.is_unanswered() => Item::new(target, Outcome::WouldChange)
                .call(call)
                .reason(format!("permission check: could not be checked ({e})"))
                .error(e),
            Some(Err(e)) => Item::new(target, Outcome::Failed)
                .call(call)
                .reason("permission check: the live call would fail".into())
                .error(e),
        };
        item.drift = Some(drift);
        return finish(opts, step, bar, item, None);
    }
    op.prepare(jiff::Timestamp::now(), ctx.audit_key.as_deref());
    let intent = match opts.audit {
        Some(a) => Some(a.append(Event::Intent {
            step: step.index,
            target: target.clone(),
            call: call.clone(),
            op: op.clone(),
        })?),
        None => None,
    };
    let item = match op.apply(ctx).await {
        Ok(effect) => {
            let mut item = Item::new(target, Outcome::Changed).call(call);
            item.effect = effect.map(Box::new);
            item
        }
        Err(e) => Item::new(target, Outcome::Failed).call(call).error(e),
    };
    finish(opts, step, bar, item, intent)
}

/// A tokio receiver as a stream (what tokio-stream's wrapper does, without the crate).
struct UnboundedReceiverStream(tokio::sync::mpsc::UnboundedReceiver<Planned>);

impl futures_util::Stream for UnboundedReceiverStream {
    type Item = Planned;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Planned>> {
        self.0.poll_recv(cx)
    }
}

/// Why a step's discovery exceeds its `max_targets`, if it does. Skipped
/// targets do not count: they are never touched.
fn over_limit(step: &BoundStep, planned: &[Planned]) -> Option<String> {
    let max = step.max_targets?;
    let found = planned
        .iter()
        .filter(|p| {
            !matches!(
                p.disposition,
                Disposition::Skip { .. } | Disposition::Missing { .. }
            )
        })
        .count();
    (found > max as usize).then(|| {
        format!(
            "refused: discovery found {found} targets and max_targets is {max}; nothing was changed (check the selector, or raise the limit)"
        )
    })
}

/// Records one target's outcome and returns it for the report.
fn finish(
    opts: &Options<'_>,
    step: &BoundStep,
    bar: Option<&Bar>,
    item: Item,
    intent: Option<u64>,
) -> Result<Item, Error> {
    if let Some(b) = bar {
        b.finished();
    }
    if let Some(a) = opts.audit {
        a.append(Event::Result {
            step: step.index,
            target: item.target.clone(),
            outcome: item.outcome,
            intent,
            call: item.call.clone(),
            reason: item.reason.clone(),
            error: item.error.as_deref().cloned(),
            effect: item.effect.as_deref().cloned(),
        })?;
    }
    Ok(item)
}
