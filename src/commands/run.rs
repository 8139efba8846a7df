//! `run`: preflight, confirmation, the steps, a hold, the read-back and the
//! report, with every change in the audit log.

use super::context::{context, refuse_self_lockout, resolve_protections};
use super::hold::{hold_line, read_back, tighten_scp};
use super::load::load;
use super::preflight::{check_subjects, preflight};
use super::record::{audit_destinations, audit_mirror, executor_record, run_start};
use super::session::{Endpoints, connect};
use crate::actions::BoundStep;
use crate::audit::{self, AuditLog, Event};
use crate::aws::{Identity, Session};
use crate::cli::GlobalArgs;
use crate::error::{Error, ExitCode};
use crate::executor;
use crate::render::{self, Printer};
use crate::report::{Counts, StepReport, StepStatus};
use std::io::IsTerminal;
use std::sync::Arc;

pub(super) struct RunRequest<'a> {
    pub(super) playbook: &'a std::path::Path,
    pub(super) dry_run: bool,
    pub(super) yes: bool,
    pub(super) vars: &'a [(String, String)],
    pub(super) audit_log: &'a [String],
    pub(super) audit_bucket_owner: Option<&'a str>,
    pub(super) audit_profile: Option<&'a str>,
    pub(super) allow_env_endpoint: bool,
    pub(super) skip_preflight: bool,
    pub(super) no_verify: bool,
    pub(super) hold: Option<std::time::Duration>,
    pub(super) no_hold: bool,
    pub(super) every: std::time::Duration,
}

pub(super) async fn run(
    global: &GlobalArgs,
    out: &Printer,
    req: RunRequest<'_>,
) -> Result<ExitCode, Error> {
    let (local_log, mirror) = audit_destinations(req.audit_log)?;
    if mirror.is_some() && req.audit_bucket_owner.is_none() {
        return Err(Error::Usage {
            flag: "--audit-bucket-owner".into(),
            message: "an s3:// audit log needs the account that owns the bucket (every write carries ExpectedBucketOwner)".into(),
        });
    }
    // The signing key first: without it nothing is recorded, so nothing runs.
    let key = Arc::new(audit::AuditKey::load_or_create()?);
    let loaded = load(req.playbook, req.vars, global.accounts.as_ref())?;
    let endpoints = if req.dry_run || req.allow_env_endpoint {
        Endpoints::Allowed
    } else {
        Endpoints::FlagOnly
    };
    let session = connect(global, Some(&loaded), endpoints).await?;
    let mode = if req.dry_run {
        "dry run (no changes)"
    } else {
        "LIVE RUN"
    };
    out.header(&session, &loaded.playbook, mode);
    let mut ctx = context(global, &session, &loaded, jiff::Timestamp::now()).await?;
    ctx.audit_key = Some(key.clone());
    let accounts = ctx.fleet.statuses();
    out.accounts(&accounts, &ctx.fleet.notes);
    resolve_protections(&mut ctx, &loaded.playbook).await;
    refuse_self_lockout(&ctx, &loaded.steps)?;
    // clap refuses --hold with --dry-run; a dry run has nothing to hold.
    // `--hold` bounds the playbook's own `hold: true`, which holds until
    // stopped.
    let hold = match (req.hold, loaded.playbook.hold) {
        _ if req.dry_run || req.no_hold => None,
        (Some(length), _) => Some(Some(length)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    warn_mfa_renewal(
        &session,
        hold.map(|h| h.unwrap_or(std::time::Duration::MAX)),
    );
    if hold == Some(None) {
        errln!(
            "note: this playbook holds the line after its steps until stopped (Ctrl-C or SIGTERM), checking every {} s; `--hold DURATION` bounds it",
            req.every.as_secs()
        );
    }
    // With --yes the preflight runs alongside the steps: each step starts
    // once its own check passes (see `executor::execute_checked`).
    let pipelined = req.yes && !req.dry_run && !req.skip_preflight;
    let mut planned = None;
    if req.dry_run {
        ctx.check_permissions = true;
    } else if pipelined {
        // A named subject that is not there is a typo: it stops the run
        // before any change, never halfway through it.
        check_subjects(&ctx, &loaded.steps).await?;
        errln!(
            "preflight: each step starts once its own checks pass (a step AWS would refuse stops the run before that step changes anything)"
        );
    } else if !req.skip_preflight {
        let found = preflight(&ctx, &loaded.steps, out.progress()).await?;
        found.warn(req.yes);
        planned = Some(found.reports);
    } else {
        check_subjects(&ctx, &loaded.steps).await?;
    }
    let mirror = match (mirror, req.audit_bucket_owner) {
        (Some((bucket, prefix)), Some(owner)) => {
            Some(audit_mirror(global, &session, bucket, prefix, owner, req.audit_profile).await?)
        }
        _ => None,
    };
    if !req.dry_run && !req.yes {
        confirm(&session.identity, &loaded.steps, planned.as_deref())?;
    }

    let started = jiff::Timestamp::now();
    ctx.run_started = started;
    let run_id = audit::new_run_id(started);
    let audit_path = local_log.unwrap_or_else(|| audit::default_path(&run_id, req.dry_run));
    let log = AuditLog::create(&audit_path, &run_id, key.clone())?;
    if !req.dry_run {
        errln!("audit log: {}", log.path().display());
    }
    if let Some(m) = mirror {
        log.mirror_to(m);
    }
    log.append(run_start(
        &session,
        &loaded.playbook.source,
        &loaded.playbook.name,
        &loaded.playbook.digest,
        req.dry_run,
        loaded.vars.clone(),
        None,
        executor_record(&loaded.playbook),
        &loaded.playbook.protect,
        &key,
    ))?;
    if !accounts.is_empty() {
        log.append(Event::Accounts {
            accounts: accounts.clone(),
            member_role: ctx
                .fleet
                .role
                .as_ref()
                .map(|r| r.spec().to_string())
                .unwrap_or_default(),
        })?;
    }

    let interrupt = (!req.dry_run).then(executor::Interrupt::listen);
    let opts = executor::Options {
        dry_run: req.dry_run,
        audit: Some(&log),
        progress: out.progress(),
        interrupt: interrupt.as_deref(),
    };
    let check = pipelined.then(|| super::preflight::gating(&ctx));
    let verify = !(req.dry_run || req.no_verify);
    // Without a hold, each step is read back as soon as it ends, while the
    // next one runs; with one, the state at the hold's end is what counts.
    let per_step = verify && hold.is_none();
    let reading = super::hold::reading(&ctx);
    let (ended, ended_steps) = tokio::sync::mpsc::unbounded_channel::<usize>();
    // The lockdown proper: steps, hold, read-back. A second interrupt
    // abandons it where it stands; the log still gets its run end.
    let contain = async {
        let mut refusing = false;
        let on_step = move |s: &StepReport| {
            out.step_done(s);
            // A refused run is not read back (nothing after the refusal ran).
            refusing |= s.status == StepStatus::Refused;
            if per_step && !refusing {
                let _ = ended.send(s.index);
            }
        };
        let run_steps = async {
            match &check {
                Some(check) => {
                    let mut first = true;
                    let mut judge = |_: &BoundStep, r: StepReport| {
                        let mut stop = None;
                        out.above_bars(|| stop = super::preflight::judge(r, first));
                        first = false;
                        stop
                    };
                    executor::execute_checked(
                        &ctx,
                        check,
                        &loaded.steps,
                        &opts,
                        &mut judge,
                        on_step,
                    )
                    .await
                }
                None => executor::execute(&ctx, &loaded.steps, &opts, on_step).await,
            }
        };
        let read_each = read_back_as_they_end(&reading, &loaded.steps, ended_steps, out);
        let (steps, read_each) = tokio::join!(run_steps, read_each);
        let steps = steps?;
        let stopped = interrupt.as_ref().is_some_and(|i| i.stopping());
        let refused = run_status(&steps) == "refused";
        let held = match hold {
            Some(length) if !refused && !stopped => Some(
                hold_line(
                    &ctx,
                    &loaded.steps,
                    &log,
                    out,
                    length,
                    req.every,
                    interrupt.as_deref(),
                )
                .await?,
            ),
            _ => None,
        };
        let verified = if !verify {
            None
        } else if per_step {
            // A refused run still says what its earlier steps left open.
            let mut open = super::hold::unreachable(&ctx);
            open.extend(read_each?);
            Some(open)
        } else if refused {
            None
        } else {
            Some(read_back(&ctx, &loaded.steps, out.progress()).await?)
        };
        Ok::<_, Error>((steps, held, verified))
    };
    let abandoned = async {
        match &interrupt {
            Some(i) => i.abandoned().await,
            None => std::future::pending().await,
        }
    };
    let contained = tokio::select! {
        r = contain => Some(r),
        _ = abandoned => None,
    };
    // Whatever happened above, the member-role exemption does not outlive
    // the run.
    let tightened = if req.dry_run {
        Ok(Vec::new())
    } else {
        tighten_scp(&ctx, &loaded.steps, &log).await
    };
    let (mut steps, held, verified) = match contained {
        Some(Ok(done)) => done,
        Some(Err(e)) => {
            if let Err(t) = &tightened {
                errln!("warning: the SCP still exempts the member role: {t}");
            }
            return Err(e);
        }
        None => (Vec::new(), None, None),
    };
    super::hold::warn_custom_exemptions(&ctx, &loaded.steps, &steps);
    let tightened = match tightened {
        Ok(t) => t,
        Err(e) => {
            errln!("warning: the SCP still exempts the member role: {e}");
            Vec::new()
        }
    };

    let mut totals = Counts::default();
    for s in &steps {
        totals.merge(&s.counts);
    }
    let millis = (jiff::Timestamp::now() - started)
        .total(jiff::Unit::Millisecond)
        .map(|m| m as u64)
        .unwrap_or(0);
    // Stopping a hold is how a hold ends, not an interrupted run.
    let interrupted = interrupt.as_ref().is_some_and(|i| i.stopping())
        && !held.as_ref().is_some_and(|h| h.interrupted);
    let mut status = run_status(&steps);
    if interrupted {
        status = "interrupted";
    }
    if status == "completed" && accounts.iter().any(|a| a.error.is_some()) {
        // Whatever the steps did, an unreachable account was not contained.
        status = "completed_with_failures";
    }
    if status == "completed" && verified.as_ref().is_some_and(|v| !v.is_empty()) {
        status = "not_contained";
    }
    for r in &tightened {
        out.step_done(r);
        totals.merge(&r.counts);
        if r.status != StepStatus::Done && status == "completed" {
            status = "completed_with_failures";
        }
    }
    steps.extend(tightened);
    log.append(Event::RunEnd {
        status: status.to_string(),
        totals,
        calls: ctx.telemetry.snapshot(),
        not_contained: verified.clone(),
    })?;
    let audit_mirror = log.close_mirror(std::time::Duration::from_secs(60)).await;
    if status == "completed" && audit_mirror.as_ref().is_some_and(|m| !m.complete()) {
        // A mirror that lost records is not the anchor the run promised.
        status = "audit_mirror_incomplete";
    }
    let report = render::RunReport {
        run_id,
        playbook: loaded.playbook.name.clone(),
        dry_run: req.dry_run,
        status,
        identity: session.identity.clone(),
        endpoint: session.endpoints().global.clone(),
        region: session.region.clone(),
        endpoints: session.endpoints().clone(),
        totals,
        calls: ctx.telemetry.snapshot(),
        millis,
        not_contained: verified,
        hold: held,
        audit_log: log.path().display().to_string(),
        audit_mirror,
        audit_head: log.head(),
        audit_signature: log.head_signature(),
        audit_key: log.key().public(),
        accounts,
        steps,
    };
    out.run(&report);
    Ok(match status {
        "completed" => ExitCode::Success,
        "refused" => ExitCode::Refused,
        _ => ExitCode::Failed,
    })
}

/// How long a per-step read-back waits before it reads an open target again.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads back each step whose index arrives on `ended`, while later steps
/// run, until the sender is dropped: the open targets, in step order.
async fn read_back_as_they_end(
    reading: &crate::actions::Ctx,
    steps: &[BoundStep],
    mut ended: tokio::sync::mpsc::UnboundedReceiver<usize>,
    out: &Printer,
) -> Result<Vec<String>, Error> {
    use futures_util::StreamExt;
    let mut running = futures_util::stream::FuturesUnordered::new();
    let mut open = std::collections::BTreeMap::new();
    let mut listening = true;
    while listening || !running.is_empty() {
        tokio::select! {
            index = ended.recv(), if listening => match index {
                None => listening = false,
                Some(index) => {
                    let step = steps.iter().filter(|s| s.index == index);
                    let step: Vec<BoundStep> = step.cloned().collect();
                    running.push(async move {
                        let read = || super::hold::read_back_steps(reading, &step, out.progress());
                        let mut lines = read().await;
                        // Right after a step, a read may not see its change
                        // yet (IAM, EC2 and Organizations are eventually
                        // consistent: IAM User Guide, "Changes that I make
                        // are not always immediately visible"): what looks
                        // open is read once more before it counts.
                        if lines.as_ref().is_ok_and(|l| !l.is_empty()) {
                            tokio::time::sleep(SETTLE).await;
                            lines = read().await;
                        }
                        (index, lines)
                    });
                }
            },
            Some((index, lines)) = running.next(), if !running.is_empty() => {
                open.insert(index, lines?);
            }
        }
    }
    Ok(open.into_values().flatten().collect())
}

/// A session from a hop that needs MFA is renewed with a fresh code: on a
/// terminal one is asked for, without one it cannot be. Said before a hold
/// starts, not when its calls begin to fail (sessions last an hour unless
/// the profile's `duration_seconds` says otherwise).
pub(super) fn warn_mfa_renewal(session: &Session, hold: Option<std::time::Duration>) {
    let Some(hold) = hold else { return };
    let Some(hop) = session
        .identity
        .chain
        .iter()
        .find(|h| h.mfa_serial.is_some())
    else {
        return;
    };
    let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if hold.as_secs() >= 15 * 60 {
        if terminal {
            errln!(
                "note: {hop} needs an MFA code: when its session nears its end during the hold, a new code is asked for on this terminal"
            );
        } else {
            errln!(
                "warning: {hop} needs an MFA code to renew its session, and there is no terminal to ask on: a hold longer than that session (an hour unless duration_seconds says otherwise) fails its calls once it ends"
            );
        }
    }
}

pub(super) fn run_status(steps: &[StepReport]) -> &'static str {
    if steps.iter().any(|s| s.status == StepStatus::Refused) {
        "refused"
    } else if steps.iter().any(|s| s.status == StepStatus::NotRun) {
        "aborted"
    } else if steps.iter().any(|s| s.status == StepStatus::Failed) {
        "completed_with_failures"
    } else {
        "completed"
    }
}

/// The responder types the account id; anything else, or no terminal, refuses.
pub(super) fn confirm(
    identity: &Identity,
    steps: &[BoundStep],
    planned: Option<&[StepReport]>,
) -> Result<(), Error> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(Error::Refused(
            "no terminal to confirm on: pass --yes to run without confirmation".into(),
        ));
    }
    // What the responder is about to do, counted by the preflight; `all: true`
    // selectors say so, since they reach everything.
    if let Some(reports) = planned {
        errln!("This run will make:");
        for (r, step) in reports.iter().zip(steps) {
            let t = &step.targets;
            let all = [
                t.users.as_ref().is_some_and(|u| u.all),
                t.roles.as_ref().is_some_and(|r| r.all),
                t.instances.as_ref().is_some_and(|i| i.all),
                t.snapshots.as_ref().is_some_and(|s| s.all),
            ]
            .contains(&true);
            let across = match r.accounts.len() {
                0 => String::new(),
                n => format!(" across {n} accounts"),
            };
            errln!(
                "  step {} {}: {} call(s){across}{}{}",
                r.index + 1,
                r.name,
                r.counts.would_change,
                if all { " (all: true)" } else { "" },
                if step.params.irreversible().is_some() {
                    " · IRREVERSIBLE"
                } else {
                    ""
                }
            );
        }
    }
    let typed: String = dialoguer::Input::new()
        .with_prompt(format!(
            "Type the account id {} to make these changes",
            identity.account
        ))
        .allow_empty(true)
        .interact_text()
        .map_err(|e| Error::Refused(format!("confirmation not read: {e}")))?;
    if typed.trim() == identity.account {
        Ok(())
    } else {
        Err(Error::Refused(
            "confirmation declined: the account id did not match; nothing was changed".into(),
        ))
    }
}
