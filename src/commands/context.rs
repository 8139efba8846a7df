//! The action context a run acts through: regions, the executor's exact
//! ARN, what every deny exempts, and the member accounts it reaches.

use super::load::Loaded;
use super::session::session_name;
use crate::actions::BoundStep;
use crate::actions::{Clients, Ctx};
use crate::actions::{Fleet, MemberRole};
use crate::audit::{self, Event};
use crate::aws::{self, Identity, Principal, RetryPolicy, Session, Telemetry};
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::playbook::Playbook;
use crate::spec::Regions;
use crate::targets::Protection;
use std::sync::Arc;

/// Everything discovery and the executor need, resolved once per command.
pub(super) async fn context(
    global: &GlobalArgs,
    session: &Session,
    loaded: &Loaded,
    started: jiff::Timestamp,
) -> Result<Ctx, Error> {
    let pb = &loaded.playbook;
    let mut protect = pb.protect.clone();
    let clients = session.clients.clone();
    let retry = RetryPolicy::default();
    let telemetry = Arc::new(Telemetry::new(usize::from(global.concurrency)));
    let executor_arn = executor_arn(&clients, &session.identity, &retry, &telemetry).await;
    // The executor's own principal, exactly (a role with its path): what
    // discovery skips and every deny exempts.
    protect.extend(executor_arn.iter().cloned());
    let mut exempt: Vec<String> = executor_arn.iter().cloned().collect();
    // Every principal of the credential chain: a revoked base user or
    // intermediate role locks out every later run, hold and rollback.
    for arn in session.identity.chain_arns() {
        if !exempt.contains(&arn) {
            exempt.push(arn.clone());
            protect.push(arn);
        }
    }
    // Fanning out, the tool also acts as the member role in every account: a
    // freeze that caught it would shut the response out of the organization.
    // It is exempted only while this run's member-account steps need it
    // (see `tighten_scp`): OrganizationAccountAccessRole trusts the whole
    // management account, attacker included.
    let fans_out = loaded.steps.iter().any(|s| s.accounts.is_some());
    let member_role = MemberRole::new(
        pb.executor.member_role.as_ref().map(|r| r.value.as_str()),
        aws::partition(&session.identity.arn),
    );
    let member_exempt = fans_out.then(|| member_role.pattern());
    let regional = loaded.steps.iter().any(|s| s.action.regional());
    let regions = if regional {
        resolve_regions(&clients, session, pb.regions.as_ref(), &retry, &telemetry).await?
    } else {
        vec![session.region.clone()]
    };
    let mut ctx = Ctx {
        clients,
        identity: session.identity.clone(),
        protection: Protection::new(&protect),
        concurrency: usize::from(global.concurrency),
        run_started: started,
        retry,
        telemetry,
        executor_arn: executor_arn.unwrap_or_default(),
        exempt,
        member_exempt,
        regions,
        check_permissions: false,
        permissions_only: false,
        run: Arc::default(),
        fleet: Arc::default(),
        audit_key: crate::audit::AuditKey::existing()
            .ok()
            .flatten()
            .map(Arc::new),
    };
    if fans_out {
        match Fleet::connect(&ctx, &loaded.steps, member_role, &session_name(loaded)).await {
            Ok(fleet) => {
                // The member role is the executor in each member account it
                // reaches, and only there: a role of that name in the
                // management account (an intruder's, say) is like any other.
                protect.extend(fleet.member_role_arns());
                ctx.protection = Protection::new(&protect);
                ctx.fleet = Arc::new(fleet);
            }
            // A playbook written for a whole organization, its management
            // account included (the flagship), still contains a standalone
            // account: that is every account there is, and the plan says
            // so. Any narrower selection, or one asked for on the command
            // line, fails rather than act on an account it did not name.
            Err(e)
                if global.accounts.is_none()
                    && e.code.as_deref() == Some("AWSOrganizationsNotInUseException")
                    && every_account(loaded, &session.identity.account) =>
            {
                ctx.member_exempt = None;
                let mut home = Fleet::default();
                home.notes.push(format!(
                    "Account {} is in no organization: the playbook's `accounts:` selection falls back to this account alone (AWSOrganizationsNotInUseException).",
                    session.identity.account
                ));
                ctx.fleet = Arc::new(home);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ctx)
}

/// The ARN a deny must exempt to spare the executor: for a role session, the
/// role's ARN with its path (what `aws:PrincipalArn` carries). `None` when it
/// cannot be read: SCP steps then refuse rather than guess.
pub(super) async fn executor_arn(
    clients: &Clients,
    id: &Identity,
    retry: &RetryPolicy,
    telemetry: &Telemetry,
) -> Option<String> {
    match &id.principal {
        Principal::AssumedRole { role_name, .. } => {
            crate::actions::iam::role_arn(clients, &id.account, role_name, retry, telemetry)
                .await
                .ok()
        }
        _ => Some(id.arn.clone()),
    }
}

pub(super) async fn resolve_regions(
    clients: &Clients,
    session: &Session,
    regions: Option<&Regions>,
    retry: &RetryPolicy,
    telemetry: &Telemetry,
) -> Result<Vec<String>, Error> {
    match regions {
        None => Ok(vec![session.region.clone()]),
        Some(Regions::List(list)) => Ok(list.clone()),
        Some(Regions::All) => {
            let names = crate::actions::ec2::enabled_regions(
                clients,
                &session.region,
                &session.identity.account,
                retry,
                telemetry,
            )
            .await?;
            Ok(names)
        }
    }
}

/// Resolves `protect` into the exact ARNs the SCP exempts, warning about
/// patterns and entries that match nobody.
pub(super) async fn resolve_protections(ctx: &mut Ctx, pb: &Playbook) {
    for w in exempt_protected(ctx, pb).await {
        errln!("warning: {w}");
    }
}

/// Adds the exact ARNs `protect` resolves to to what every deny exempts,
/// and returns the warnings about it (`readiness` makes them findings).
pub(super) async fn exempt_protected(ctx: &mut Ctx, pb: &Playbook) -> Vec<String> {
    let (exact, warnings) = crate::safety::resolve_protections(ctx, &pb.protect).await;
    for arn in exact {
        if !ctx.exempt.contains(&arn) {
            ctx.exempt.push(arn);
        }
    }
    warnings
}

/// Refuses (exit 3) a playbook that would deny or disable its own executor.
pub(super) fn refuse_self_lockout(ctx: &Ctx, steps: &[BoundStep]) -> Result<(), Error> {
    let findings = crate::safety::self_lockout(ctx, steps);
    if findings.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = findings.iter().map(ToString::to_string).collect();
    Err(Error::Refused(format!(
        "this playbook would lock out the principal it runs as ({}); nothing was changed: {}",
        ctx.identity.arn,
        list.join("; ")
    )))
}

/// A rollback of a fanned-out run enters its member accounts again, through
/// the member role the run recorded, for the changes it made there.
pub(super) async fn reenter_accounts(
    mut ctx: Ctx,
    records: &[audit::Record],
    plan: &[crate::rollback::Step],
    run_id: &str,
) -> Ctx {
    let role = records.iter().find_map(|r| match &r.event {
        Event::Accounts { member_role, .. } if !member_role.is_empty() => Some(member_role.clone()),
        _ => None,
    });
    let Some(role) = role else {
        return ctx;
    };
    // Validated as a playbook's `executor.member_role` is: a role name, or an
    // ARN template with {account}.
    let valid = if role.starts_with("arn:") {
        role.contains("{account}") && role.contains(":role/")
    } else {
        !role.is_empty() && !role.contains(['/', ':', '{', '}', ' '])
    };
    if !valid {
        errln!(
            "warning: the log's member role `{role}` is not a role name or ARN template: member accounts are not entered"
        );
        return ctx;
    }
    let accounts: std::collections::BTreeSet<String> = plan
        .iter()
        .filter(
            |s| matches!(&s.plan, crate::rollback::Plan::Undo { undo } if !undo.from_management()),
        )
        .map(|s| s.target.scope.account.clone())
        .filter(|a| *a != ctx.identity.account)
        .collect();
    if accounts.is_empty() {
        return ctx;
    }
    let session = format!(
        "breakglass-rollback-{}",
        run_id.chars().take(40).collect::<String>()
    );
    let role = MemberRole::new(Some(&role), aws::partition(&ctx.identity.arn));
    let fleet = Fleet::enter(&ctx, &accounts, role, &session).await;
    for (a, e) in fleet.unreachable() {
        errln!("warning: account {a} cannot be reached ({e}): its changes are not undone");
    }
    ctx.fleet = Arc::new(fleet);
    ctx
}

/// Whether every step's `accounts:` selects every account, the management
/// account included and `home` not excluded: in an account in no
/// organization, that selection is `home` alone.
fn every_account(loaded: &Loaded, home: &str) -> bool {
    loaded
        .steps
        .iter()
        .filter_map(|s| s.accounts.as_ref())
        .all(|a| a.all && a.include_management && !a.exclude.iter().any(|x| x == home))
}
