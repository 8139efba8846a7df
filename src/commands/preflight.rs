//! The preflight: every step read before a live run, each check allowed,
//! denied or not answered.

use crate::actions::BoundStep;
use crate::actions::Ctx;
use crate::aws;
use crate::error::Error;
use crate::executor::{self, Phase};
use crate::progress::Progress;
use crate::report::{StepReport, StepStatus};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a preflight found, each call in one of three answers: allowed,
/// denied, or could not be checked; and the targets the playbook names that
/// do not exist.
pub(super) struct Preflight {
    pub(super) reports: Vec<StepReport>,
    /// Named subjects not found: the run stops, exit 1.
    pub(super) missing: Vec<String>,
    /// Calls AWS says would be denied: the run is refused, exit 3.
    pub(super) denied: Vec<String>,
    /// Changes a full AWS quota would refuse: the run is refused, exit 3.
    pub(super) over_quota: Vec<String>,
    /// Checks that got no answer, each cause once with how many it hit.
    pub(super) unchecked: Vec<String>,
    /// Targets the run cannot contain from where it acts, each with why
    /// (and who can): reported failed by the run, never claimed.
    pub(super) out_of_reach: Vec<String>,
}

impl Preflight {
    fn sort(reports: Vec<StepReport>) -> Preflight {
        let mut missing = Vec::new();
        let mut denied = Vec::new();
        let mut over_quota = Vec::new();
        let mut out_of_reach = Vec::new();
        let mut unchecked: BTreeMap<String, usize> = BTreeMap::new();
        for s in &reports {
            let label = format!("step {} ({})", s.index + 1, s.name);
            if let Some(e) = &s.error {
                *unchecked.entry(format!("{label}: {e}")).or_default() += 1;
            }
            // Failed items, and items whose permission check got no answer.
            for i in s
                .items
                .iter()
                .filter(|i| i.outcome == crate::report::Outcome::Failed || i.error.is_some())
            {
                match &i.error {
                    Some(e) if e.is_missing_subject() => {
                        missing.push(format!("{label}: {}: {}", i.target, e.message));
                    }
                    Some(e) if e.kind == aws::ErrorKind::AccessDenied => {
                        denied.push(format!("{label}: {} · {e}", i.target));
                    }
                    Some(e) if e.is_over_quota() => {
                        over_quota.push(format!("{label}: {}", e.message));
                    }
                    Some(e) => *unchecked.entry(e.to_string()).or_default() += 1,
                    None if i.outcome == crate::report::Outcome::Failed => {
                        out_of_reach.push(format!(
                            "{label}: {}: {}",
                            i.target,
                            i.reason.as_deref().unwrap_or("out of reach")
                        ));
                    }
                    None => {
                        *unchecked
                            .entry(i.reason.clone().unwrap_or_else(|| "no answer".into()))
                            .or_default() += 1
                    }
                }
            }
        }
        Preflight {
            reports,
            missing,
            denied,
            over_quota,
            out_of_reach,
            unchecked: unchecked
                .into_iter()
                .map(|(why, n)| match n {
                    1 => why,
                    n => format!("{why} ({n} checks)"),
                })
                .collect(),
        }
    }

    /// Stops the run before any change when a subject is missing (exit 1)
    /// or a call would be denied (exit 3).
    fn verdict(&self) -> Result<(), Error> {
        if !self.missing.is_empty() {
            return Err(Error::Missing(self.missing.clone()));
        }
        match self.refusal("nothing was changed") {
            Some(why) => Err(Error::Refused(why)),
            None => Ok(()),
        }
    }

    /// Why a full quota or a denial refuses the run, saying what was left
    /// unchanged (`unchanged`).
    fn refusal(&self, unchanged: &str) -> Option<String> {
        if !self.over_quota.is_empty() {
            return Some(format!(
                "preflight: {} change(s) would exceed an AWS quota; {unchanged}: {}",
                self.over_quota.len(),
                self.over_quota.join("; ")
            ));
        }
        if !self.denied.is_empty() {
            return Some(format!(
                "preflight: {} call(s) would be denied; {unchanged} (fix the permissions, or --skip-preflight): {}",
                self.denied.len(),
                self.denied.join("; ")
            ));
        }
        None
    }

    /// Says what the run cannot reach and which checks got no answer.
    pub(super) fn warn(&self, yes: bool) {
        if !self.out_of_reach.is_empty() {
            errln!(
                "warning: {} target(s) are out of this run's reach: they will be reported failed, never contained:",
                self.out_of_reach.len()
            );
            for why in &self.out_of_reach {
                errln!("  {why}");
            }
        }
        if !self.unchecked.is_empty() {
            errln!(
                "warning: {} permission check(s) could not be checked (neither allowed nor denied); the run may meet denials AWS did not report in advance:",
                self.unchecked.len()
            );
            for why in &self.unchecked {
                errln!("  {why}");
            }
            if !yes {
                errln!("(the confirmation below goes on regardless; --yes does too)");
            }
        }
    }
}

/// The verdict on one step's check in a `--yes` run, where the steps start
/// while later ones are still being checked ([`executor::execute_checked`]):
/// its warnings are printed, and a missing subject, a full quota or a
/// denial stops the run before this step changes anything. `first` is true
/// when no step ran before it (then "nothing was changed" holds).
pub(super) fn judge(report: StepReport, first: bool) -> Option<executor::Stop> {
    let found = Preflight::sort(vec![report]);
    found.warn(true);
    let unchanged = if first {
        "nothing was changed"
    } else {
        "nothing in this step or after it was changed (the steps before it ran)"
    };
    let (status, reason) = if !found.missing.is_empty() {
        (
            StepStatus::Failed,
            format!("not found, {unchanged}: {}", found.missing.join("; ")),
        )
    } else {
        (StepStatus::Refused, found.refusal(unchanged)?)
    };
    errln!("{reason}");
    Some(executor::Stop { status, reason })
}

/// Before a live run: discover every step read-only and ask AWS whether each
/// call would be allowed. A denial refuses the run (exit 3) and a missing
/// subject stops it (exit 1), both before any change; a check that got no
/// answer is shown with its cause and left to the responder.
pub(super) async fn preflight(
    ctx: &Ctx,
    steps: &[BoundStep],
    progress: Option<&Progress>,
) -> Result<Preflight, Error> {
    let found = check(ctx, steps, progress).await?;
    found.verdict()?;
    Ok(found)
}

/// The context the preflight reads in: permission checks on, its own run
/// state and call counts, on the run's read lanes (the same AWS buckets);
/// its DryRun checks are paced apart from the changes
/// ([`crate::aws::Telemetry::read_only`]).
pub(super) fn checking(ctx: &Ctx) -> Ctx {
    let mut pre = ctx.clone();
    pre.check_permissions = true;
    pre.run = Arc::default();
    pre.telemetry = Arc::new(ctx.telemetry.read_only());
    pre
}

/// The context of a `--yes` run's checks: [`checking`], asking only
/// whether AWS would allow each call (`Ctx::permissions_only`): each step
/// reads what holds already when it starts.
pub(super) fn gating(ctx: &Ctx) -> Ctx {
    let mut gate = checking(ctx);
    gate.permissions_only = true;
    gate
}

/// The preflight's reads and permission checks, without a verdict: what
/// `readiness` reports finding by finding.
pub(super) async fn check(
    ctx: &Ctx,
    steps: &[BoundStep],
    progress: Option<&Progress>,
) -> Result<Preflight, Error> {
    let pre = checking(ctx);
    Ok(Preflight::sort(
        executor::read_all(&pre, steps, Phase::Check, progress).await?,
    ))
}

/// With `--skip-preflight`, the steps that name their subjects (a key id,
/// a user, an instance) are still read: a subject that does not exist
/// stops the run before any change, never halfway through it.
pub(super) async fn check_subjects(ctx: &Ctx, steps: &[BoundStep]) -> Result<(), Error> {
    let named: Vec<BoundStep> = steps
        .iter()
        .filter(|s| s.names_subjects())
        .cloned()
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    let mut pre = ctx.clone();
    pre.run = Arc::default();
    pre.telemetry = Arc::new(ctx.telemetry.read_only());
    let found = Preflight::sort(executor::read_all(&pre, &named, Phase::Check, None).await?);
    if found.missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Missing(found.missing))
    }
}
