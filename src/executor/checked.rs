//! A `--yes` run: the preflight alongside the steps, each step gated on its
//! own check.

use std::time::Instant;

use super::{Options, Phase, execute_gated, run_step};
use crate::Error;
use crate::actions::{ActionKind, BoundStep, Ctx, Disposition, Planned};
use crate::report::{StepReport, StepStatus};

/// Why the check of a step stops the run before that step changes anything.
pub struct Stop {
    /// `Refused` (a denial, a full quota) or `Failed` (a missing subject).
    pub status: StepStatus,
    pub reason: String,
}

/// A `--yes` run: the preflight and the steps at once. The first step is
/// checked and run alone; then the other steps are checked in order, one
/// at a time, while the steps run, and step N starts as soon as its own
/// check is in and `judge` passes it. The checks of steps 1 to N-1 were
/// judged before those steps ran, so a step AWS would deny stops the run
/// before it changes anything, and the freeze of step 1 never waits for
/// the reads of step 9. The freeze, as step 1, acts on what its check
/// discovered ([`reusable`]).
pub async fn execute_checked(
    ctx: &Ctx,
    check: &Ctx,
    steps: &[BoundStep],
    opts: &Options<'_>,
    judge: &mut dyn FnMut(&BoundStep, StepReport) -> Option<Stop>,
    on_step: impl FnMut(&StepReport),
) -> Result<Vec<StepReport>, Error> {
    let (senders, receivers): (Vec<_>, Vec<_>) = steps
        .iter()
        .map(|_| tokio::sync::oneshot::channel())
        .unzip();
    let dry = Options {
        dry_run: true,
        audit: None,
        progress: opts.progress,
        interrupt: None,
    };
    let dry = &dry;
    let mut each =
        steps
            .iter()
            .enumerate()
            .zip(senders)
            .map(|((position, step), sender)| async move {
                let keep = reusable(position, step).then(std::sync::Mutex::default);
                // The plan is as old as the first read, not the last.
                let at = Instant::now();
                let report = run_step(check, step, dry, Phase::Check, None, keep.as_ref()).await;
                let found = match (&report, keep) {
                    (Ok(r), Some(keep)) if r.error.is_none() => {
                        let planned = keep.into_inner().unwrap_or_else(|p| p.into_inner());
                        // A target the check could not read is read again.
                        let whole = !planned
                            .iter()
                            .any(|p| matches!(p.disposition, Disposition::Unreadable { .. }));
                        whole.then(|| Found {
                            planned,
                            notes: r.notes.clone(),
                            at,
                        })
                    }
                    _ => None,
                };
                // The receiver is gone only once the run has stopped.
                let _ = sender.send((report, found));
            });
    let (first_done, first_step_over) = tokio::sync::oneshot::channel();
    let checks = async move {
        // The first step is checked and run alone, so its calls never queue
        // in a lane behind the reads of later checks: the freeze lands first.
        if let Some(first) = each.next() {
            first.await;
        }
        let _ = first_step_over.await;
        // Then the others, in step order, one at a time: a check is due
        // only when its step starts, and the check of the next step must
        // not share its lanes with later ones. Four at a time, the keys
        // step's check shared IAM's read lane with the next three (3,000
        // reads) and its step waited 19 s for it; alone it is in first.
        // The checks stay ahead: they read, the steps are paced writes.
        for check in each {
            check.await;
        }
    };
    let gate = Gate {
        checks: receivers,
        judge,
        first_done: Some(first_done),
    };
    let run = std::pin::pin!(execute_gated(ctx, steps, opts, Some(gate), on_step));
    let checks = std::pin::pin!(checks);
    match futures_util::future::select(run, checks).await {
        futures_util::future::Either::Left((done, _)) => done,
        futures_util::future::Either::Right((_, run)) => run.await,
    }
}

/// What a step's check discovered, for the step to act on if it starts
/// soon enough after ([`FRESH`]).
pub(super) struct Found {
    pub(super) planned: Vec<Planned>,
    pub(super) notes: Vec<String>,
    pub(super) at: Instant,
}

/// How old a check's discovery may be for its step to act on it rather
/// than discover again. An op decided on a read skips what that read found
/// in place, so a target changed in between would be left as changed: the
/// window is the check itself, seconds at most.
const FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a step may act on its check's discovery: only the org-wide freeze
/// as the first step, which is checked and run alone (nothing of this run
/// changes AWS between its check and its start), so its first change comes
/// one discovery sooner. Later steps are checked while earlier ones change
/// AWS (an SCP taking the root's last policy slot, say), and termination
/// protection skips calls its read found unneeded: both discover again.
///
/// Never termination protection: its `--yes` check plans without each
/// instance's settings (`Ctx::permissions_only`), so a step acting on it
/// would record no prior for rollback to put back.
fn reusable(position: usize, step: &BoundStep) -> bool {
    position == 0 && step.action == ActionKind::OrgApplyScp
}

/// A step's check: its report, and what it discovered when the step may reuse it.
type Checked = (Result<StepReport, Error>, Option<Found>);

/// The checks a step waits for in [`execute_checked`], in step order.
pub(super) struct Gate<'a> {
    pub(super) checks: Vec<tokio::sync::oneshot::Receiver<Checked>>,
    pub(super) judge: &'a mut dyn FnMut(&BoundStep, StepReport) -> Option<Stop>,
    /// Fired once the first step is over: the other checks then start.
    pub(super) first_done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Gate<'_> {
    pub(super) fn first_step_over(&mut self) {
        if let Some(done) = self.first_done.take() {
            let _ = done.send(());
        }
    }

    /// Waits for the check of the step at `position` and judges it: a stop,
    /// or what the check discovered if it is fresh enough to act on.
    pub(super) async fn admit(
        &mut self,
        position: usize,
        step: &BoundStep,
    ) -> Result<Result<Option<Found>, Stop>, Error> {
        let Some(receiver) = self.checks.get_mut(position) else {
            return Ok(Ok(None));
        };
        match receiver.await {
            Ok((report, found)) => Ok(match (self.judge)(step, report?) {
                Some(stop) => Err(stop),
                None => Ok(found.filter(|f| f.at.elapsed() <= FRESH)),
            }),
            Err(_) => Ok(Err(Stop {
                status: StepStatus::Refused,
                reason: "refused: the step's check did not finish; nothing in it was changed"
                    .into(),
            })),
        }
    }
}
