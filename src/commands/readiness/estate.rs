//! What the playbook meets in AWS: member roles, regions, the preflight's
//! permission checks, missing subjects, quotas and self-lockout.

use super::super::context::{context, exempt_protected};
use super::super::load::Loaded;
use super::super::preflight::{Preflight, check};
use crate::actions::Ctx;
use crate::aws::PrincipalKind;
use crate::aws::{RetryPolicy, Session, Telemetry};
use crate::cli::GlobalArgs;
use crate::readiness::{Check, Findings};
use crate::report::Outcome;
use crate::spec::Regions;
use crate::targets::Resource;
use futures_util::StreamExt;
use std::collections::BTreeSet;

/// What the playbook meets in AWS: member roles, regions, the preflight's
/// permission checks, missing subjects, quotas and self-lockout.
pub(super) async fn check_estate(
    global: &GlobalArgs,
    found: &mut Findings,
    session: &Session,
    loaded: &Loaded,
) {
    let mut ctx = match context(global, session, loaded, jiff::Timestamp::now()).await {
        Ok(c) => c,
        Err(e) => {
            found.error(
                Check::MemberRoles,
                "organization",
                e.to_string(),
                "check that the executor can read the organization and its regions",
            );
            return;
        }
    };
    let role = ctx
        .fleet
        .role
        .as_ref()
        .map(|r| r.spec().to_string())
        .unwrap_or_default();
    let accounts = ctx.fleet.statuses();
    let mut reached = 0;
    for a in &accounts {
        match &a.error {
            Some(e) => found.error(
                Check::MemberRoles,
                format!("account {}", a.account),
                format!("the member role {role} is out of reach: {e}"),
                format!(
                    "recreate {role} in {} trusting the management account, or leave the account out (--accounts all,!{})",
                    a.account, a.account
                ),
            ),
            None => reached += 1,
        }
    }
    if reached > 0 {
        found.ok(
            Check::MemberRoles,
            role.clone(),
            format!("{reached} account(s) reachable"),
        );
    }
    for note in &ctx.fleet.notes {
        found.warn(
            Check::MemberRoles,
            "accounts",
            note.clone(),
            "check the selection",
        );
    }
    check_regions(global, found, &ctx, session, loaded).await;
    for w in exempt_protected(&mut ctx, &loaded.playbook).await {
        found.warn(
            Check::Safety,
            "protect",
            w,
            "fix or remove the protect entry",
        );
    }
    let lockouts = crate::safety::self_lockout(&ctx, &loaded.steps);
    for l in &lockouts {
        found.error(
            Check::Safety,
            format!("step {} ({})", l.step + 1, l.step_name),
            l.reason.clone(),
            "exempt the executor and its chain, or leave them out of the step",
        );
    }
    match check(&ctx, &loaded.steps, None).await {
        Ok(pre) => {
            preflight_findings(found, &pre, &ctx.executor_arn);
            check_inline_room(found, &ctx, &pre).await;
            check_policy_slots(found, &ctx, &pre).await;
        }
        Err(e) => found.error(
            Check::Permissions,
            "preflight",
            e.to_string(),
            "`breakglass plan --check-permissions` shows the step that failed",
        ),
    }
}

/// Each region the playbook names is enabled in the executor's account
/// (DescribeRegions lists only enabled regions unless AllRegions is set:
/// EC2 API reference, DescribeRegions).
async fn check_regions(
    global: &GlobalArgs,
    found: &mut Findings,
    ctx: &Ctx,
    session: &Session,
    loaded: &Loaded,
) {
    if !loaded.steps.iter().any(|s| s.action.regional()) {
        return;
    }
    let Some(Regions::List(named)) = loaded.playbook.regions.as_ref() else {
        return;
    };
    // Opt-in regions are enabled per account: the executor's, and every
    // member account a step reaches.
    let mut accounts = vec![session.identity.account.clone()];
    accounts.extend(
        ctx.fleet
            .statuses()
            .into_iter()
            .filter(|a| a.error.is_none() && a.account != session.identity.account)
            .map(|a| a.account),
    );
    let telemetry = Telemetry::new(usize::from(global.concurrency));
    let mut all_on = true;
    let mut read = 0;
    for account in &accounts {
        let Some(there) = ctx.in_account(account) else {
            continue;
        };
        read += 1;
        let enabled = crate::actions::ec2::enabled_regions(
            &there.clients,
            &session.region,
            account,
            &RetryPolicy::default(),
            &telemetry,
        )
        .await;
        match enabled {
            Ok(enabled) => {
                for r in named.iter().filter(|r| !enabled.contains(r)) {
                    all_on = false;
                    found.error(
                        Check::Regions,
                        format!("region {r}"),
                        format!("not enabled in account {account}"),
                        format!(
                            "enable {r} in {account} (Account settings, AWS Regions), or take it out of regions:"
                        ),
                    );
                }
            }
            Err(e) => {
                all_on = false;
                found.warn(
                    Check::Regions,
                    format!("account {account}"),
                    format!("cannot list enabled regions: {e}"),
                    "allow ec2:DescribeRegions",
                );
            }
        }
    }
    if all_on {
        found.ok(
            Check::Regions,
            "regions",
            format!("{} enabled in {read} account(s)", named.join(", ")),
        );
    }
}

/// The preflight's answers as findings: a denial, a missing subject or a
/// full quota would stop a run; a check without an answer is a warning.
fn preflight_findings(found: &mut Findings, pre: &Preflight, executor: &str) {
    // The preflight names each problem `step N (name): …`: that step is
    // what the finding concerns.
    let split = |text: &str| -> (String, String) {
        match text.split_once("): ") {
            Some((step, rest)) if step.starts_with("step ") => {
                (format!("{step})"), rest.to_string())
            }
            _ => ("preflight".to_string(), text.to_string()),
        }
    };
    for m in &pre.missing {
        let (subject, message) = split(m);
        found.error(
            Check::Targets,
            subject,
            message,
            "update the playbook's names, or its variables",
        );
    }
    for d in &pre.denied {
        let (subject, message) = split(d);
        found.error(
            Check::Permissions,
            subject,
            format!("{message} (as {executor})"),
            "grant the executor this action (the preflight of a run refuses the same way)",
        );
    }
    for o in &pre.out_of_reach {
        let (subject, message) = split(o);
        found.error(
            Check::Targets,
            subject,
            message,
            "the message says who can reach it, or what to turn on",
        );
    }
    for q in &pre.over_quota {
        let (subject, message) = split(q);
        found.error(
            Check::Quota,
            subject,
            message,
            "make room (detach a policy), or target the OUs and accounts under it",
        );
    }
    for u in &pre.unchecked {
        let unsupported = [
            "not implemented",
            "InvalidAction",
            "UnknownOperation",
            "UnsupportedOperation",
            "NotImplemented",
        ]
        .iter()
        .any(|w| u.contains(w));
        if unsupported {
            found.warn(
                Check::Support,
                "endpoint",
                u.clone(),
                "this endpoint does not offer the call: on an emulator, expect the tabletop shim's answers only",
            );
        } else {
            found.warn(
                Check::Permissions,
                executor,
                format!("not checked: {u}"),
                "allow iam:SimulatePrincipalPolicy (and EC2 DryRun) so every call can be checked",
            );
        }
    }
    for r in &pre.reports {
        for note in &r.notes {
            if note.contains("the most AWS allows") || note.contains("already holds") {
                found.warn(
                    Check::Quota,
                    format!("step {} ({})", r.index + 1, r.name),
                    note.clone(),
                    "detach a policy from the root so the freeze covers accounts added later",
                );
            }
        }
    }
    // A step with nothing to act on today had none of its calls checked:
    // said, never counted as allowed.
    for r in pre
        .reports
        .iter()
        .filter(|r| r.items.is_empty() && r.error.is_none())
    {
        found.warn(
            Check::Permissions,
            format!("step {} ({})", r.index + 1, r.name),
            "nothing to act on today, so none of its calls was checked",
            "`breakglass plan --check-permissions` checks it once it has targets; a tabletop rehearses it",
        );
    }
    let checked: usize = pre.reports.iter().map(|r| r.items.len()).sum();
    if pre.denied.is_empty() && pre.unchecked.is_empty() && pre.missing.is_empty() && checked > 0 {
        found.ok(
            Check::Permissions,
            executor,
            format!("every call allowed ({checked} targets checked)"),
        );
    }
}

/// Room for the deny each principal would get as an inline policy. At
/// IAM's inline quota the run puts it in a managed policy instead (one
/// more of the principal's managed-policy slots), so a full principal is a
/// warning here, not a failure.
async fn check_inline_room(found: &mut Findings, ctx: &Ctx, pre: &Preflight) {
    use crate::actions::iam::{PolicyKind, PrincipalRef, counted, inline_room, managed_room};
    // The largest of the denies a run puts, as it would render it now.
    let now = jiff::Timestamp::now();
    let need = [
        PolicyKind::RevokeSessions,
        PolicyKind::DenyAll,
        PolicyKind::InstanceGuard,
    ]
    .iter()
    .map(|k| counted(&k.render(now)))
    .max()
    .unwrap_or_default();
    let mut wanted: BTreeSet<(String, PrincipalKind, String)> = BTreeSet::new();
    for r in &pre.reports {
        for item in r.items.iter().filter(|i| i.outcome == Outcome::WouldChange) {
            let puts = item.call.as_deref().is_some_and(|c| {
                c.starts_with("iam:PutUserPolicy ") || c.starts_with("iam:PutRolePolicy ")
            });
            let principal = match &item.target.resource {
                Resource::User { name, .. } => Some((PrincipalKind::User, name.clone())),
                Resource::Role { name, .. } => Some((PrincipalKind::Role, name.clone())),
                _ => None,
            };
            if let (true, Some((kind, name))) = (puts, principal) {
                wanted.insert((item.target.scope.account.clone(), kind, name));
            }
        }
    }
    if wanted.is_empty() {
        return;
    }
    let read = futures_util::stream::iter(wanted)
        .map(|(account, kind, name)| async move {
            let principal = PrincipalRef { kind, name };
            let there = ctx.in_account(&account)?;
            let room = inline_room(&there, &principal, "").await;
            // Full inline: the deny goes in a managed policy, which needs
            // a free managed-policy slot.
            let managed = match &room {
                Ok(r) if r.used + need > r.limit => Some(managed_room(&there, &principal).await),
                _ => None,
            };
            Some((account, principal, room, managed))
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .filter_map(|r| async move { r })
        .collect::<Vec<_>>()
        .await;
    let mut roomy = 0;
    for (account, principal, room, managed) in read {
        let what = match principal.kind {
            PrincipalKind::User => "user",
            PrincipalKind::Role => "role",
        };
        let subject = format!("{what} {} in {account}", principal.name);
        match (room, managed) {
            (Ok(r), Some(Ok(m))) if m.used >= m.limit => found.error(
                Check::Quota,
                subject,
                format!(
                    "its inline policies use {} of IAM's {} characters and it has {} of {} managed policies attached: neither an inline nor a managed deny fits, so the run cannot contain it",
                    r.used, r.limit, m.used, m.limit
                ),
                "detach a managed policy or trim its inline policies",
            ),
            (Ok(r), _) if r.used + need > r.limit => found.warn(
                Check::Quota,
                subject,
                format!(
                    "its inline policies use {} of IAM's {} characters, and the deny needs about {need}: the run puts it in a managed policy instead",
                    r.used, r.limit
                ),
                "leave the principal a free managed-policy slot, or trim its inline policies",
            ),
            (Ok(_), _) => roomy += 1,
            (Err(e), _) => found.warn(
                Check::Quota,
                subject,
                format!("its inline policies cannot be read: {e}"),
                "allow iam:List{User,Role}Policies and iam:Get{User,Role}Policy to have the room checked",
            ),
        }
    }
    if roomy > 0 {
        found.ok(
            Check::Quota,
            "inline policies",
            format!("room for the deny on {roomy} principal(s)"),
        );
    }
}

/// The free slots on each root, OU or account an organization policy step
/// attaches to (five of each kind per target: AWS Organizations quotas).
async fn check_policy_slots(found: &mut Findings, ctx: &Ctx, pre: &Preflight) {
    use crate::actions::org::{PolicyKind, free_slots};
    let mut seen = BTreeSet::new();
    for r in &pre.reports {
        let kind = match r.action.as_ref() {
            "org.apply_scp" => PolicyKind::Scp,
            "org.apply_rcp" => PolicyKind::Rcp,
            _ => continue,
        };
        for item in &r.items {
            // An RCP item names its targets as `NAME on T1, T2`
            // (`org::PolicyKind::resource`).
            let targets: Vec<String> = match &item.target.resource {
                Resource::Scp { targets, .. } => targets.clone(),
                Resource::Named { kind, id } if kind == "RCP" => id
                    .split_once(" on ")
                    .map(|(_, on)| on.split(", ").map(str::to_string).collect())
                    .unwrap_or_default(),
                _ => continue,
            };
            for t in &targets {
                if !seen.insert((kind.label(), t.clone())) {
                    continue;
                }
                let subject = format!("{} slots on {t}", kind.label());
                match free_slots(ctx, kind, t).await {
                    // A full target is the quota finding the step's own
                    // discovery made (a fallback note, or a refusal).
                    Ok(0) => {}
                    Ok(free) => found.ok(Check::Quota, subject, format!("{free} of 5 free")),
                    Err(e) => found.warn(
                        Check::Quota,
                        subject,
                        format!("cannot be counted: {e}"),
                        "allow organizations:ListPoliciesForTarget",
                    ),
                }
            }
        }
    }
}
