//! `plan` and `verify`: the read-only passes over a playbook.

use super::context::{context, refuse_self_lockout, resolve_protections};
use super::load::{Loaded, load};
use super::session::{Endpoints, connect};
use crate::aws::Session;
use crate::cli::GlobalArgs;
use crate::error::{Error, ExitCode};
use crate::executor;
use crate::render::Printer;
use crate::report::{StepReport, StepStatus};

/// Which read-only pass: a plan of what a run would do, or a check of the
/// state a run leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    Plan { check_permissions: bool },
    Verify,
}

/// Loads, connects and discovers every step without changing anything.
pub(super) async fn read_only(
    global: &GlobalArgs,
    out: &Printer,
    path: &std::path::Path,
    vars: &[(String, String)],
    pass: Pass,
) -> Result<ReadOnly, Error> {
    let loaded = load(path, vars, global.accounts.as_ref())?;
    let session = connect(global, Some(&loaded), Endpoints::Allowed).await?;
    let (mode, since) = match pass {
        Pass::Plan { .. } => ("plan (read-only)", jiff::Timestamp::now()),
        // Any revocation in place counts, whatever its age.
        Pass::Verify => ("verify (read-only)", jiff::Timestamp::UNIX_EPOCH),
    };
    out.header(&session, &loaded.playbook, mode);
    let mut ctx = context(global, &session, &loaded, since).await?;
    match pass {
        Pass::Plan { check_permissions } => ctx.check_permissions = check_permissions,
        // A run leaves its SCP without the member-role exemption: that is
        // the contained state (see `tighten_scp`).
        Pass::Verify => ctx.member_exempt = None,
    }
    let accounts = ctx.fleet.statuses();
    out.accounts(&accounts, &ctx.fleet.notes);
    resolve_protections(&mut ctx, &loaded.playbook).await;
    refuse_self_lockout(&ctx, &loaded.steps)?;
    let opts = executor::Options {
        dry_run: true,
        audit: None,
        progress: None,
        interrupt: None,
    };
    let steps = executor::execute(&ctx, &loaded.steps, &opts, |_| {}).await?;
    Ok(ReadOnly {
        loaded,
        session,
        accounts,
        steps,
    })
}

/// What `plan` and `verify` found.
pub(super) struct ReadOnly {
    pub(super) loaded: Loaded,
    pub(super) session: Session,
    pub(super) accounts: Vec<crate::actions::AccountStatus>,
    pub(super) steps: Vec<StepReport>,
}

impl ReadOnly {
    fn unreachable(&self) -> bool {
        self.accounts.iter().any(|a| a.error.is_some())
    }
}

pub(super) async fn plan(
    global: &GlobalArgs,
    out: &Printer,
    path: &std::path::Path,
    vars: &[(String, String)],
    check_permissions: bool,
) -> Result<ExitCode, Error> {
    let found = read_only(global, out, path, vars, Pass::Plan { check_permissions }).await?;
    let steps = &found.steps;
    out.plan(
        &found.loaded.playbook,
        &found.session,
        &found.accounts,
        steps,
    );
    Ok(if steps.iter().any(|s| s.status == StepStatus::Refused) {
        ExitCode::Refused
    } else if found.unreachable() || steps.iter().any(|s| s.status != StepStatus::Done) {
        ExitCode::Failed
    } else {
        ExitCode::Success
    })
}

/// Discovery in read-only mode is the read-back: a target that would need a
/// call is not contained. Any revocation in place counts, whatever its age.
pub(super) async fn verify(
    global: &GlobalArgs,
    out: &Printer,
    path: &std::path::Path,
    vars: &[(String, String)],
) -> Result<ExitCode, Error> {
    let found = read_only(global, out, path, vars, Pass::Verify).await?;
    out.verify(&found.loaded.playbook, &found.session, &found.steps);
    // An account that cannot be read is not known to be contained.
    let contained = !found.unreachable()
        && found
            .steps
            .iter()
            .all(|s| s.status == StepStatus::Done && s.counts.would_change == 0);
    Ok(if contained {
        ExitCode::Success
    } else {
        ExitCode::Failed
    })
}
