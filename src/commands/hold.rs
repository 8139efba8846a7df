//! After the steps: holding the line, tightening the freeze, reading back.

use crate::actions::BoundStep;
use crate::actions::{ActionKind, Ctx};
use crate::audit::{AuditLog, Event};
use crate::error::Error;
use crate::executor::{self, Phase};
use crate::progress::Progress;
use crate::render::{self, Printer};
use crate::report::StepReport;
use std::sync::Arc;

/// A custom SCP is its author's: one that this run applied (or found in
/// place) while it had to exempt the member role keeps that exemption, and
/// the responder is told so at the end. Steps that failed, never ran, or ran
/// with no member account reached are not named.
pub(super) fn warn_custom_exemptions(ctx: &Ctx, bound: &[BoundStep], reports: &[StepReport]) {
    let Some(member) = ctx.member_exempt.as_deref() else {
        return;
    };
    if ctx.fleet.member_role_arns().is_empty() {
        return;
    }
    for r in reports {
        let custom = bound.iter().any(|b| {
            b.index == r.index
                && b.action == ActionKind::OrgApplyScp
                && matches!(&b.params, crate::actions::ActionParams::OrgApplyScp(p) if p.document.is_some())
        });
        if custom && r.counts.changed + r.counts.unchanged > 0 {
            errln!(
                "warning: step `{}` applied a custom SCP, which still exempts the member role ({member}): remove that exemption from the document and apply it again, or anyone with admin in the management account stays exempt",
                r.name
            );
        }
    }
}

/// Once this run's member-account steps, any hold and the read-back are
/// done, every built-in deny-all SCP it applied is rewritten without the
/// member role: OrganizationAccountAccessRole trusts the management account,
/// so an attacker with admin there would otherwise be exempt from the
/// freeze. The rewrite is an intent/result pair like any change (rollback
/// puts the exemption back first, so it can reach the member accounts).
pub(super) async fn tighten_scp(
    ctx: &Ctx,
    steps: &[BoundStep],
    log: &AuditLog,
) -> Result<Vec<StepReport>, Error> {
    if ctx.member_exempt.is_none() {
        return Ok(Vec::new());
    }
    // Every built-in deny-all of the playbook, whatever its step's status:
    // a step that failed one attach still made the policy. One that was
    // never made is left alone (`only_existing`).
    let applied: Vec<BoundStep> = steps
        .iter()
        .filter(|s| {
            s.action == ActionKind::OrgApplyScp
                && matches!(&s.params, crate::actions::ActionParams::OrgApplyScp(p) if p.document.is_none())
        })
        .map(|s| {
            let mut s = s.clone();
            s.name = format!("{} (member-role exemption removed)", s.name);
            if let crate::actions::ActionParams::OrgApplyScp(p) = &mut s.params {
                p.only_existing = true;
            }
            s
        })
        .collect();
    if applied.is_empty() {
        return Ok(Vec::new());
    }
    let mut tight = ctx.clone();
    tight.member_exempt = None;
    let opts = executor::Options {
        dry_run: false,
        audit: Some(log),
        progress: None,
        interrupt: None,
    };
    executor::execute(&tight, &applied, &opts, |_| {}).await
}

/// Holds the line: every `every`, runs the steps again (discovery finds only
/// what drifted; revocations from this run still count) and re-applies, until
/// `length` has passed (`None`: never) or Ctrl-C. Each re-application is an intent/result
/// pair in the audit log, each check a hold_check record.
pub(super) async fn hold_line(
    ctx: &Ctx,
    steps: &[BoundStep],
    log: &AuditLog,
    out: &Printer,
    length: Option<std::time::Duration>,
    every: std::time::Duration,
    interrupt: Option<&executor::Interrupt>,
) -> Result<render::HoldSummary, Error> {
    let deadline = length.and_then(|l| tokio::time::Instant::now().checked_add(l));
    let mut summary = render::HoldSummary::default();
    let opts = executor::Options {
        dry_run: false,
        audit: Some(log),
        progress: out.progress(),
        interrupt,
    };
    let stopped = || async {
        match interrupt {
            Some(i) => i.stopped().await,
            None => std::future::pending().await,
        }
    };
    loop {
        let now = tokio::time::Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let wait = deadline.map_or(every, |d| every.min(d - now));
        tokio::select! {
            _ = pause(out, summary.checks + 1, wait) => {}
            _ = stopped() => {
                summary.interrupted = true;
                break;
            }
        }
        summary.checks += 1;
        let reports = executor::execute(ctx, steps, &opts, |_| {}).await?;
        let mut recontained = Vec::new();
        let mut failed = Vec::new();
        for r in &reports {
            for i in &r.items {
                let line = format!("step {} ({}): {}", r.index + 1, r.name, i.target);
                match i.outcome {
                    crate::report::Outcome::Changed => recontained.push(line),
                    crate::report::Outcome::Failed => failed.push(format!(
                        "{line}: {}",
                        i.error
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    )),
                    _ => {}
                }
            }
        }
        log.append(Event::HoldCheck {
            check: summary.checks,
            recontained: recontained.clone(),
            failed: failed.clone(),
        })?;
        let left = deadline.map(|d| {
            d.saturating_duration_since(tokio::time::Instant::now())
                .as_secs()
        });
        out.hold_check(summary.checks, &recontained, &failed, left);
        summary.recontained.extend(recontained);
        summary.failed.extend(failed);
        // Stopped during the check: what it reached is recorded; the
        // read-back says what is left.
        if interrupt.is_some_and(|i| i.stopping()) {
            summary.interrupted = true;
            break;
        }
    }
    Ok(summary)
}

/// After a live run, reads every step's targets back: what would still need a
/// call is not contained (the run is then not reported as done).
pub(super) async fn read_back(
    ctx: &Ctx,
    steps: &[BoundStep],
    progress: Option<&Progress>,
) -> Result<Vec<String>, Error> {
    let mut open = unreachable(ctx);
    open.extend(read_back_steps(&reading(ctx), steps, progress).await?);
    Ok(open)
}

/// The context the read-back reads in: no permission checks, every
/// revocation counted whenever it was made, its own run state and call
/// counts, on the run's read lanes (the same AWS buckets as the steps it
/// overlaps; [`crate::aws::Telemetry::read_only`]).
pub(super) fn reading(ctx: &Ctx) -> Ctx {
    let mut check = ctx.clone();
    check.run_started = jiff::Timestamp::UNIX_EPOCH;
    check.check_permissions = false;
    check.run = Arc::default();
    check.telemetry = Arc::new(ctx.telemetry.read_only());
    check
}

/// Accounts nothing was read or contained in.
pub(super) fn unreachable(ctx: &Ctx) -> Vec<String> {
    ctx.fleet
        .unreachable()
        .into_iter()
        .map(|(a, e)| {
            format!("account {a}: unreachable, nothing in it was read or contained ({e})")
        })
        .collect()
}

/// What is still open among these steps' targets, in step order; `check`
/// comes from [`reading`].
pub(super) async fn read_back_steps(
    check: &Ctx,
    steps: &[BoundStep],
    progress: Option<&Progress>,
) -> Result<Vec<String>, Error> {
    let reports = executor::read_all(check, steps, Phase::ReadBack, progress).await?;
    let mut open = Vec::new();
    for r in &reports {
        if let Some(e) = &r.error {
            open.push(format!(
                "step {} ({}): cannot read back: {e}",
                r.index + 1,
                r.name
            ));
        }
        for i in &r.items {
            let what = match i.outcome {
                crate::report::Outcome::WouldChange => {
                    i.drift.as_deref().unwrap_or_default().to_string()
                }
                // Unreadable, or out of this run's reach (which says why):
                // not contained as far as anyone can tell.
                crate::report::Outcome::Failed => match (&i.error, &i.reason) {
                    (Some(e), _) => format!("cannot be read back: {e}"),
                    (None, Some(why)) => format!("is out of reach: {why}"),
                    (None, None) => "cannot be read back".into(),
                },
                _ => continue,
            };
            open.push(format!(
                "step {} ({}): {} {what}",
                r.index + 1,
                r.name,
                i.target
            ));
        }
    }
    Ok(open)
}

/// The hold's wait before its next check, with a bar on a terminal.
async fn pause(out: &Printer, check: u64, wait: std::time::Duration) {
    let bar = out
        .progress()
        .map(|p| p.wait(format!("holding: check {check} in"), wait));
    let start = tokio::time::Instant::now();
    loop {
        let gone = start.elapsed();
        if let Some(b) = &bar {
            b.set_position(gone.as_secs());
        }
        if gone >= wait {
            return;
        }
        tokio::time::sleep((wait - gone).min(std::time::Duration::from_secs(1))).await;
    }
}
