//! One function per command: load, check, confirm, execute, report.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use crate::actions::{ActionKind, Clients, Ctx};
use crate::actions::{Fleet, MemberRole};
use crate::audit::{self, AuditLog, Event};
use crate::aws::{self, Identity, Principal, RetryPolicy, Session, Telemetry};
use crate::cli::{AuditCommand, Cli, Command, GlobalArgs, OutputFormat};
use crate::error::{Error, ExitCode};
use crate::executor;
use crate::playbook::{self, Playbook, Problems};
use crate::render::{self, Printer};
use crate::report::{Counts, StepReport, StepStatus};
use crate::spec::{BoundStep, Regions};
use crate::targets::Protection;

/// Runs the parsed command line and returns the exit code.
pub async fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    let out = Printer::new(cli.global.output);
    match &cli.command {
        Command::Validate {
            playbooks,
            vars,
            scenario,
        } => validate(&out, playbooks, vars, *scenario),
        Command::Plan {
            playbook,
            vars,
            check_permissions,
        } => plan(&cli.global, &out, playbook, vars, *check_permissions).await,
        Command::Run {
            playbook,
            dry_run,
            yes,
            vars,
            audit_log,
            audit_bucket_owner,
            audit_profile,
            allow_env_endpoint,
            skip_preflight,
            no_verify,
            hold,
            every,
        } => {
            let req = RunRequest {
                playbook,
                dry_run: *dry_run,
                yes: *yes,
                vars,
                audit_log,
                audit_bucket_owner: audit_bucket_owner.as_deref(),
                audit_profile: audit_profile.as_deref(),
                allow_env_endpoint: *allow_env_endpoint,
                skip_preflight: *skip_preflight,
                no_verify: *no_verify,
                hold: *hold,
                every: *every,
            };
            run(&cli.global, &out, req).await
        }
        Command::Verify { playbook, vars } => verify(&cli.global, &out, playbook, vars).await,
        Command::Rollback {
            path,
            allow_env_endpoint,
            trust,
            dry_run,
            yes,
            steps,
            reactivate_keys,
            force,
            audit_log,
        } => {
            let req = RollbackRequest {
                path,
                trust,
                allow_env_endpoint: *allow_env_endpoint,
                dry_run: *dry_run,
                yes: *yes,
                force: *force,
                audit_log: audit_log.as_deref(),
                choices: crate::rollback::Choices {
                    reactivate_keys: *reactivate_keys,
                    steps: steps.clone(),
                },
            };
            rollback(&cli.global, &out, req).await
        }
        Command::Audit(AuditCommand::Verify {
            path,
            trust,
            against,
            bucket_owner,
        }) => {
            audit_verify(
                &cli.global,
                &out,
                path,
                trust,
                against.as_deref(),
                bucket_owner.as_deref(),
            )
            .await
        }
        Command::Audit(AuditCommand::Show { path, trust }) => audit_show(&out, path, trust),
        Command::Whoami => whoami(&cli.global, &out).await,
        Command::Actions => {
            out.actions(ActionKind::ALL);
            Ok(ExitCode::Success)
        }
        Command::Schema { scenario } => {
            out.json(&if *scenario {
                crate::tabletop::scenario::schema()
            } else {
                playbook::schema::playbook_schema()
            });
            Ok(ExitCode::Success)
        }
        Command::Tabletop {
            playbook,
            scenario,
            report,
            keep,
            vars,
            hold,
            every,
        } => {
            let req = crate::tabletop::Request {
                playbook,
                scenario,
                report: report.as_deref(),
                keep: *keep,
                vars,
                hold: *hold,
                every: *every,
            };
            crate::tabletop::tabletop(&cli.global, &out, req).await
        }
    }
}

fn validate(
    out: &Printer,
    paths: &[std::path::PathBuf],
    vars: &[(String, String)],
    scenarios: bool,
) -> Result<ExitCode, Error> {
    let mut results = Vec::new();
    for path in paths {
        let result = if scenarios {
            crate::tabletop::scenario::load(path).map(|s| render::Validated {
                name: s.file.name.clone(),
                unit: "moves",
                count: s.moves.len(),
                warnings: Vec::new(),
            })
        } else {
            playbook::load(path).and_then(|pb| {
                if !vars.is_empty() {
                    pb.bind(vars).map_err(Error::InvalidPlaybook)?;
                }
                Ok(render::Validated {
                    name: pb.name.clone(),
                    unit: "steps",
                    count: pb.steps.len(),
                    warnings: pb.warnings,
                })
            })
        };
        results.push((path.display().to_string(), result));
    }
    let all_ok = results.iter().all(|(_, r)| r.is_ok());
    out.validation(&results);
    Ok(if all_ok {
        ExitCode::Success
    } else {
        ExitCode::Usage
    })
}

/// A playbook with its variables bound, ready for AWS.
struct Loaded {
    playbook: Playbook,
    steps: Vec<BoundStep>,
    vars: BTreeMap<String, String>,
}

/// `--accounts`, when given, takes the place of the playbook's own `accounts:`.
fn load(
    path: &std::path::Path,
    vars: &[(String, String)],
    accounts: Option<&crate::spec::AccountsSpec>,
) -> Result<Loaded, Error> {
    let mut playbook = playbook::load(path)?;
    if let Some(a) = accounts {
        playbook.accounts = Some(a.clone());
    }
    let steps = playbook.bind(vars).map_err(Error::InvalidPlaybook)?;
    Ok(Loaded {
        playbook,
        steps,
        vars: vars.iter().cloned().collect(),
    })
}

/// Whether endpoints set outside the command line (variables, the
/// profile) may be used: shown always, refused for changes unless allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoints {
    /// Read-only commands, or `--allow-env-endpoint`.
    Allowed,
    /// A live run or a rollback without `--allow-env-endpoint`.
    FlagOnly,
}

/// Connects with the chosen profile and refuses a mismatched identity.
async fn connect(
    global: &GlobalArgs,
    loaded: Option<&Loaded>,
    endpoints: Endpoints,
) -> Result<Session, Error> {
    let playbook = loaded.map(|l| &l.playbook);
    let mut conn = global.connection(playbook.map(|p| &p.executor))?;
    conn.allow_implicit_endpoints = endpoints == Endpoints::Allowed;
    if let Some(loaded) = loaded {
        conn.session_name = session_name(loaded);
        conn.assume = assume_role(loaded, &conn.session_name);
    } else {
        conn.session_name = session_name_for("whoami");
    }
    let session = aws::connect(&conn).await?;
    if let Some(pb) = playbook {
        check_identity(pb, &session.identity)?;
    }
    Ok(session)
}

/// The playbook's `executor.assume_role`, the last hop of the chain.
fn assume_role(loaded: &Loaded, session_name: &str) -> Option<aws::credentials::RoleHop> {
    let spec = loaded.playbook.executor.assume_role.as_ref()?;
    Some(aws::credentials::RoleHop {
        profile: None,
        role_arn: spec.role_arn.clone(),
        mfa_serial: spec.mfa_serial.clone(),
        external_id: None,
        duration_seconds: spec.duration_seconds.map(|d| d.min(43_200) as i32),
        session_name: Some(
            spec.session_name
                .clone()
                .unwrap_or_else(|| session_name.to_string()),
        ),
    })
}

/// `breakglass-<case id>` (or the time): what CloudTrail shows for every
/// role session the run opens, so the investigation can find the response.
fn session_name(loaded: &Loaded) -> String {
    session_name_for(&loaded.vars.get("case_id").cloned().unwrap_or_else(|| {
        jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string()
    }))
}

/// `breakglass-<tag>`, cut to what STS accepts as a session name.
fn session_name_for(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c))
        .take(52)
        .collect();
    format!("breakglass-{tag}")
}

fn check_identity(pb: &Playbook, id: &Identity) -> Result<(), Error> {
    if let Some(acct) = &pb.executor.expect_account
        && acct.value != id.account
    {
        return Err(Error::IdentityMismatch {
            expected_what: "account",
            expected: acct.value.clone(),
            actual_arn: id.arn.clone(),
            actual_account: id.account.clone(),
        });
    }
    if let Some(arn) = &pb.executor.expect_principal
        && !principal_matches(&arn.value, id)
    {
        return Err(Error::IdentityMismatch {
            expected_what: "principal",
            expected: arn.value.clone(),
            actual_arn: id.arn.clone(),
            actual_account: id.account.clone(),
        });
    }
    Ok(())
}

/// `expect_principal` names a user ARN, or a role ARN (with or without its
/// path) for a credential that is a session of that role.
fn principal_matches(expected: &str, id: &Identity) -> bool {
    if expected == id.arn {
        return true;
    }
    let account_ok = expected.split(':').nth(4) == Some(id.account.as_str());
    let resource = expected.splitn(6, ':').nth(5).unwrap_or_default();
    let last = resource.rsplit('/').next().unwrap_or_default();
    match &id.principal {
        Principal::AssumedRole { role_name, .. } => {
            account_ok && resource.starts_with("role/") && last == role_name
        }
        Principal::User { name } => account_ok && resource.starts_with("user/") && last == name,
        _ => false,
    }
}

/// Everything discovery and the executor need, resolved once per command.
async fn context(
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
    if fans_out {
        protect.push(member_role.pattern());
    }
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
        run: Arc::default(),
        fleet: Arc::default(),
        audit_key: crate::audit::AuditKey::existing()
            .ok()
            .flatten()
            .map(Arc::new),
    };
    if fans_out {
        let fleet = Fleet::connect(&ctx, &loaded.steps, member_role, &session_name(loaded)).await?;
        ctx.fleet = Arc::new(fleet);
    }
    Ok(ctx)
}

/// The ARN a deny must exempt to spare the executor: for a role session, the
/// role's ARN with its path (what `aws:PrincipalArn` carries). `None` when it
/// cannot be read: SCP steps then refuse rather than guess.
async fn executor_arn(
    clients: &Clients,
    id: &Identity,
    retry: &RetryPolicy,
    telemetry: &Telemetry,
) -> Option<String> {
    match &id.principal {
        Principal::AssumedRole { role_name, .. } => aws::call(
            retry,
            telemetry,
            &telemetry.lane(&id.account, "iam:GetRole", None),
            || async {
                clients
                    .iam
                    .get_role()
                    .role_name(role_name)
                    .send()
                    .await
                    .map_err(|e| aws::aws_error("iam:GetRole", e))
            },
        )
        .await
        .ok()
        .and_then(|o| o.role().map(|r| r.arn().to_string())),
        _ => Some(id.arn.clone()),
    }
}

async fn resolve_regions(
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
            let ec2 = clients.ec2(&session.region);
            let lane = telemetry.lane(
                &session.identity.account,
                "ec2:DescribeRegions",
                Some(&session.region),
            );
            let out = aws::call(retry, telemetry, &lane, || async {
                ec2.describe_regions()
                    .send()
                    .await
                    .map_err(|e| aws::aws_error("ec2:DescribeRegions", e))
            })
            .await?;
            let mut names: Vec<String> = out
                .regions()
                .iter()
                .filter_map(|r| r.region_name().map(str::to_string))
                .collect();
            names.sort();
            Ok(names)
        }
    }
}

/// Which read-only pass: a plan of what a run would do, or a check of the
/// state a run leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Plan { check_permissions: bool },
    Verify,
}

/// Loads, connects and discovers every step without changing anything.
async fn read_only(
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
struct ReadOnly {
    loaded: Loaded,
    session: Session,
    accounts: Vec<crate::actions::AccountStatus>,
    steps: Vec<StepReport>,
}

impl ReadOnly {
    fn unreachable(&self) -> bool {
        self.accounts.iter().any(|a| a.error.is_some())
    }
}

async fn plan(
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
async fn verify(
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

struct RunRequest<'a> {
    playbook: &'a std::path::Path,
    dry_run: bool,
    yes: bool,
    vars: &'a [(String, String)],
    audit_log: &'a [String],
    audit_bucket_owner: Option<&'a str>,
    audit_profile: Option<&'a str>,
    allow_env_endpoint: bool,
    skip_preflight: bool,
    no_verify: bool,
    hold: Option<std::time::Duration>,
    every: std::time::Duration,
}

async fn run(global: &GlobalArgs, out: &Printer, req: RunRequest<'_>) -> Result<ExitCode, Error> {
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
    warn_mfa_renewal(&session, req.hold.filter(|_| !req.dry_run));
    let mut planned = None;
    if req.dry_run {
        ctx.check_permissions = true;
    } else if !req.skip_preflight {
        let found = preflight(&ctx, &loaded.steps).await?;
        if !found.unchecked.is_empty() {
            errln!(
                "warning: {} permission check(s) could not be checked (neither allowed nor denied); the run may meet denials AWS did not report in advance:",
                found.unchecked.len()
            );
            for why in &found.unchecked {
                errln!("  {why}");
            }
            if !req.yes {
                errln!("(the confirmation below goes on regardless; --yes does too)");
            }
        }
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
    let ticker = out.progress();
    let opts = executor::Options {
        dry_run: req.dry_run,
        audit: Some(&log),
        progress: ticker.as_ref().map(|t| t.progress()),
        interrupt: interrupt.as_deref(),
    };
    // The lockdown proper: steps, hold, read-back. A second interrupt
    // abandons it where it stands; the log still gets its run end.
    let contain = async {
        let steps = executor::execute(&ctx, &loaded.steps, &opts, |s| out.step_done(s)).await?;
        let stopped = interrupt.as_ref().is_some_and(|i| i.stopping());
        let refused = run_status(&steps) == "refused";
        let held = match req.hold {
            Some(length) if !req.dry_run && !refused && !stopped => Some(
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
        // The read-back comes last: after a hold, the state at its end is what counts.
        let verified = if req.dry_run || req.no_verify || refused {
            None
        } else {
            Some(read_back(&ctx, &loaded.steps).await?)
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
    drop(ticker);
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
    let interrupted = interrupt.as_ref().is_some_and(|i| i.stopping());
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
        endpoint: session.endpoint_display(),
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

/// A session from a hop that needs MFA is renewed with a fresh code: on a
/// terminal one is asked for, without one it cannot be. Said before a hold
/// starts, not when its calls begin to fail (sessions last an hour unless
/// the profile's `duration_seconds` says otherwise).
fn warn_mfa_renewal(session: &Session, hold: Option<std::time::Duration>) {
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

/// Once this run's member-account steps, any hold and the read-back are
/// done, every built-in deny-all SCP it applied is rewritten without the
/// member role: OrganizationAccountAccessRole trusts the management account,
/// so an attacker with admin there would otherwise be exempt from the
/// freeze. The rewrite is an intent/result pair like any change (rollback
/// puts the exemption back first, so it can reach the member accounts).
async fn tighten_scp(
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
                && matches!(&s.params, crate::actions::ActionParams::ApplyScp(p) if p.document.is_none())
        })
        .map(|s| {
            let mut s = s.clone();
            s.name = format!("{} (member-role exemption removed)", s.name);
            if let crate::actions::ActionParams::ApplyScp(p) = &mut s.params {
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
/// `length` has passed or Ctrl-C. Each re-application is an intent/result
/// pair in the audit log, each check a hold_check record.
async fn hold_line(
    ctx: &Ctx,
    steps: &[BoundStep],
    log: &AuditLog,
    out: &Printer,
    length: std::time::Duration,
    every: std::time::Duration,
    interrupt: Option<&executor::Interrupt>,
) -> Result<render::HoldSummary, Error> {
    let deadline = tokio::time::Instant::now() + length;
    let mut summary = render::HoldSummary::default();
    let opts = executor::Options {
        dry_run: false,
        audit: Some(log),
        progress: None,
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
        if now >= deadline {
            break;
        }
        let wait = every.min(deadline - now);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
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
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        out.hold_check(summary.checks, &recontained, &failed, left.as_secs());
        summary.recontained.extend(recontained);
        summary.failed.extend(failed);
    }
    Ok(summary)
}

/// Where a run's records go: a local file and, optionally, an S3 bucket and prefix.
type AuditDestinations = (Option<std::path::PathBuf>, Option<(String, String)>);

/// `--audit-log` values: at most one local path and one `s3://` mirror.
fn audit_destinations(values: &[String]) -> Result<AuditDestinations, Error> {
    let usage = |message: String| Error::Usage {
        flag: "--audit-log".into(),
        message,
    };
    let mut local = None;
    let mut mirror = None;
    for v in values {
        if v.starts_with("s3://") {
            let parsed = audit::parse_s3_url(v)
                .ok_or_else(|| usage(format!("`{v}` is not s3://bucket/prefix")))?;
            if mirror.replace(parsed).is_some() {
                return Err(usage("give at most one s3:// mirror".into()));
            }
        } else if local.replace(std::path::PathBuf::from(v)).is_some() {
            return Err(usage("give at most one local path".into()));
        }
    }
    Ok((local, mirror))
}

/// After a live run, reads every step's targets back: what would still need a
/// call is not contained (the run is then not reported as done).
async fn read_back(ctx: &Ctx, steps: &[BoundStep]) -> Result<Vec<String>, Error> {
    let mut check = ctx.clone();
    check.run_started = jiff::Timestamp::UNIX_EPOCH;
    check.check_permissions = false;
    check.run = Arc::default();
    check.telemetry = Arc::new(Telemetry::new(ctx.concurrency));
    let reports = executor::read_all(&check, steps).await?;
    let mut open: Vec<String> = ctx
        .fleet
        .unreachable()
        .into_iter()
        .map(|(a, e)| {
            format!("account {a}: unreachable, nothing in it was read or contained ({e})")
        })
        .collect();
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
                // Unreadable: not contained as far as anyone can tell.
                crate::report::Outcome::Failed => format!(
                    "cannot be read back: {}",
                    i.error
                        .as_ref()
                        .map_or("unknown error".into(), |e| e.to_string())
                ),
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

/// The run-start record: what ran, as whom, through which chain, where.
#[allow(clippy::too_many_arguments)]
fn run_start(
    session: &Session,
    playbook: &str,
    name: &str,
    digest: &str,
    dry_run: bool,
    vars: BTreeMap<String, String>,
    rollback_of: Option<String>,
    executor: Option<audit::ExecutorRecord>,
    key: &audit::AuditKey,
) -> Event {
    Event::RunStart {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        playbook: playbook.to_string(),
        playbook_name: name.to_string(),
        playbook_digest: digest.to_string(),
        dry_run,
        identity: session.identity.clone(),
        profile: session.profile.clone(),
        credential_source: session.source(),
        region: session.region.clone(),
        endpoint: session.endpoints().global.clone(),
        endpoints: session.endpoints().clone(),
        executor,
        vars,
        args: redacted_args(std::env::args().skip(1)),
        rollback_of,
        audit_key: Some(key.public()),
    }
}

/// The S3 copy of the log: the bucket of the forensic account (checked to
/// be that account's with `ExpectedBucketOwner`), in its own region,
/// written with `--audit-profile` or the break-glass credential. A bucket
/// without Object Lock in compliance mode is said to be deletable.
async fn audit_mirror(
    global: &GlobalArgs,
    session: &Session,
    bucket: String,
    prefix: String,
    owner: &str,
    profile: Option<&str>,
) -> Result<audit::Mirror, Error> {
    let clients = match profile {
        None => session.clients.clone(),
        Some(p) => {
            let mut conn = global.connection(None)?;
            conn.profile = p.to_string();
            conn.profile_source = "--audit-profile".into();
            conn.allow_implicit_endpoints = false;
            conn.session_name = session_name_for("audit-mirror");
            aws::connect(&conn).await?.clients
        }
    };
    // An unreachable mirror is loud but stops no containment: the run's
    // status then says the mirror is incomplete, and it exits 1.
    let client = match audit::bucket_client(&clients, &session.region, &bucket, owner).await {
        Ok(c) => c,
        Err(e) => {
            errln!("warning: audit mirror s3://{bucket}/{prefix}: {e}");
            clients.s3(&session.region)
        }
    };
    let lock = client
        .get_object_lock_configuration()
        .bucket(&bucket)
        .expected_bucket_owner(owner)
        .send()
        .await;
    let compliance = lock
        .as_ref()
        .ok()
        .and_then(|o| o.object_lock_configuration())
        .is_some_and(|c| {
            c.rule()
                .and_then(|r| r.default_retention())
                .and_then(|d| d.mode())
                .is_some_and(|m| m.as_str() == "COMPLIANCE")
        });
    if !compliance {
        errln!(
            "warning: audit mirror s3://{bucket}/{prefix}: the bucket has no default Object Lock retention in COMPLIANCE mode: whoever holds its account's admin can delete the copy"
        );
    }
    Ok(audit::Mirror {
        client,
        bucket,
        prefix,
        owner: owner.to_string(),
    })
}

/// What a rollback needs to connect as the run did: the playbook's
/// `executor.assume_role` (the MFA device, never a code).
fn executor_record(pb: &Playbook) -> Option<audit::ExecutorRecord> {
    pb.executor
        .assume_role
        .as_ref()
        .map(|a| audit::ExecutorRecord {
            role_arn: a.role_arn.clone(),
            mfa_serial: a.mfa_serial.clone(),
            duration_seconds: a.duration_seconds,
        })
}

/// The command line for the audit log, with secret values (the MFA code)
/// replaced: nothing secret is ever written there.
fn redacted_args(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in args {
        if hide_next {
            out.push("<redacted>".into());
            hide_next = false;
        } else if a == "--mfa-code" {
            hide_next = true;
            out.push(a);
        } else if a.starts_with("--mfa-code=") {
            out.push("--mfa-code=<redacted>".into());
        } else {
            out.push(a);
        }
    }
    out
}

fn run_status(steps: &[StepReport]) -> &'static str {
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

/// What a preflight found, each call in one of three answers: allowed,
/// denied, or could not be checked; and the targets the playbook names that
/// do not exist.
struct Preflight {
    reports: Vec<StepReport>,
    /// Named subjects not found: the run stops, exit 1.
    missing: Vec<String>,
    /// Calls AWS says would be denied: the run is refused, exit 3.
    denied: Vec<String>,
    /// Changes a full AWS quota would refuse: the run is refused, exit 3.
    over_quota: Vec<String>,
    /// Checks that got no answer, each cause once with how many it hit.
    unchecked: Vec<String>,
}

impl Preflight {
    fn sort(reports: Vec<StepReport>) -> Preflight {
        let mut missing = Vec::new();
        let mut denied = Vec::new();
        let mut over_quota = Vec::new();
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
        if !self.over_quota.is_empty() {
            return Err(Error::Refused(format!(
                "preflight: {} change(s) would exceed an AWS quota; nothing was changed: {}",
                self.over_quota.len(),
                self.over_quota.join("; ")
            )));
        }
        if !self.denied.is_empty() {
            return Err(Error::Refused(format!(
                "preflight: {} call(s) would be denied; nothing was changed (fix the permissions, or --skip-preflight): {}",
                self.denied.len(),
                self.denied.join("; ")
            )));
        }
        Ok(())
    }
}

/// Before a live run: discover every step read-only and ask AWS whether each
/// call would be allowed. A denial refuses the run (exit 3) and a missing
/// subject stops it (exit 1), both before any change; a check that got no
/// answer is shown with its cause and left to the responder.
async fn preflight(ctx: &Ctx, steps: &[BoundStep]) -> Result<Preflight, Error> {
    let mut pre = ctx.clone();
    pre.check_permissions = true;
    pre.run = Arc::default();
    pre.telemetry = Arc::new(Telemetry::new(ctx.concurrency));
    let found = Preflight::sort(executor::read_all(&pre, steps).await?);
    found.verdict()?;
    Ok(found)
}

/// With `--skip-preflight`, the steps that name their subjects (a key id,
/// a user, an instance) are still read: a subject that does not exist
/// stops the run before any change, never halfway through it.
async fn check_subjects(ctx: &Ctx, steps: &[BoundStep]) -> Result<(), Error> {
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
    pre.telemetry = Arc::new(Telemetry::new(ctx.concurrency));
    let found = Preflight::sort(executor::read_all(&pre, &named).await?);
    if found.missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Missing(found.missing))
    }
}

/// Resolves `protect` into the exact ARNs the SCP exempts, warning about
/// patterns and entries that match nobody.
async fn resolve_protections(ctx: &mut Ctx, pb: &Playbook) {
    let (exact, warnings) = crate::safety::resolve_protections(ctx, &pb.protect).await;
    for w in warnings {
        errln!("warning: {w}");
    }
    for arn in exact {
        if !ctx.exempt.contains(&arn) {
            ctx.exempt.push(arn);
        }
    }
}

/// Refuses (exit 3) a playbook that would deny or disable its own executor.
fn refuse_self_lockout(ctx: &Ctx, steps: &[BoundStep]) -> Result<(), Error> {
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

/// The responder types the account id; anything else, or no terminal, refuses.
fn confirm(
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
                if step.action.irreversible(&step.params).is_some() {
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

/// A rollback of a fanned-out run enters its member accounts again, through
/// the member role the run recorded, for the changes it made there.
async fn reenter_accounts(
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

/// What a run recorded about how it connected.
struct RunConnection<'a> {
    profile: &'a str,
    region: &'a str,
    endpoints: &'a aws::Endpoints,
    /// Logs from before `endpoints` was recorded.
    endpoint: Option<&'a aws::Endpoint>,
    executor: Option<&'a audit::ExecutorRecord>,
    run_id: &'a str,
    allow_env_endpoint: bool,
}

/// A rollback connects as the run did: the run's profile, region,
/// endpoints and `executor.assume_role` (with a fresh MFA code), unless
/// `--profile`, `--region` or `--endpoint-url` say otherwise on the command
/// line. A rollback of an emulator run goes to that emulator, never to AWS.
async fn connect_as_run(global: &GlobalArgs, run: RunConnection<'_>) -> Result<Session, Error> {
    let mut conn = global.connection(None)?;
    if global.profile.is_none() {
        conn.profile = run.profile.to_string();
        conn.profile_source = "the audit log".into();
    }
    if global.region.is_none() {
        conn.region = Some((run.region.to_string(), "the audit log".into()));
    }
    let logged = run.endpoints.global.as_ref().or(run.endpoint);
    if global.endpoint_url.is_none() {
        match logged {
            // Recorded when the run was made: that is where its changes are.
            Some(e) => {
                conn.endpoint_flag = Some(aws::Endpoint {
                    url: e.url.clone(),
                    source: "the audit log".into(),
                })
            }
            None if !run.endpoints.services.is_empty() => {
                return Err(Error::Refused(
                    "the run sent some services to endpoints of their own: pass --endpoint-url to say where to roll back".into(),
                ));
            }
            None => {}
        }
    }
    conn.allow_implicit_endpoints = run.allow_env_endpoint;
    conn.session_name = session_name_for(&format!(
        "rollback-{}",
        run.run_id.chars().take(40).collect::<String>()
    ));
    conn.assume = run.executor.map(|e| aws::credentials::RoleHop {
        profile: None,
        role_arn: e.role_arn.clone(),
        mfa_serial: e.mfa_serial.clone(),
        external_id: None,
        duration_seconds: e.duration_seconds.map(|d| d.min(43_200) as i32),
        session_name: None,
    });
    Ok(aws::connect(&conn).await?)
}

/// The rollback acts as the run's own principal (the same user, or the same
/// role, in the same account), unless `--profile` chose another on purpose.
fn pin_to_run(global: &GlobalArgs, run: &Identity, now: &Identity) -> Result<(), Error> {
    let mismatch = |what: &'static str, expected: &str| Error::IdentityMismatch {
        expected_what: what,
        expected: expected.to_string(),
        actual_arn: now.arn.clone(),
        actual_account: now.account.clone(),
    };
    if now.account != run.account {
        return Err(mismatch("account of the run", &run.account));
    }
    if global.profile.is_none() && now.principal != run.principal {
        let same_role = matches!(
            (&now.principal, &run.principal),
            (Principal::AssumedRole { role_name: a, .. }, Principal::AssumedRole { role_name: b, .. }) if a == b
        );
        if !same_role {
            return Err(mismatch(
                "principal of the run (--profile to choose another)",
                &run.arn,
            ));
        }
    }
    Ok(())
}

struct RollbackRequest<'a> {
    path: &'a std::path::Path,
    trust: &'a crate::cli::TrustArgs,
    allow_env_endpoint: bool,
    dry_run: bool,
    yes: bool,
    force: bool,
    audit_log: Option<&'a std::path::Path>,
    choices: crate::rollback::Choices,
}

/// Verifies the run's log, then undoes its changes latest first, each checked
/// against the resource's state now, with an audit log of its own.
async fn rollback(
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
        protection: Protection::new(&[]),
        concurrency: usize::from(global.concurrency),
        run_started: started,
        retry: RetryPolicy::default(),
        telemetry: Arc::new(Telemetry::new(usize::from(global.concurrency))),
        executor_arn: String::new(),
        exempt: Vec::new(),
        member_exempt: None,
        regions: vec![session.region.clone()],
        check_permissions: false,
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

async fn whoami(global: &GlobalArgs, out: &Printer) -> Result<ExitCode, Error> {
    let session = connect(global, None, Endpoints::Allowed).await?;
    out.whoami(&session);
    Ok(ExitCode::Success)
}

/// Checks a log: chain, signatures, the signing key, completeness; with
/// `--against`, that its S3 mirror holds exactly the same records.
async fn audit_verify(
    global: &GlobalArgs,
    out: &Printer,
    path: &std::path::Path,
    trust: &crate::cli::TrustArgs,
    against: Option<&str>,
    owner: Option<&str>,
) -> Result<ExitCode, Error> {
    let (v, _) = audit::read(path, &trust.trust(), trust.expect_head.as_deref())?;
    out.verification(&v);
    let mut ok = v.ok();
    if let Some(url) = against {
        let (bucket, prefix) = audit::parse_s3_url(url).ok_or_else(|| Error::Usage {
            flag: "--against".into(),
            message: format!("`{url}` is not s3://bucket/prefix"),
        })?;
        let owner = owner.ok_or_else(|| Error::Usage {
            flag: "--bucket-owner".into(),
            message: "comparing with a mirror needs the account that owns the bucket".into(),
        })?;
        let session = connect(global, None, Endpoints::Allowed).await?;
        let differences = audit::compare_mirror(
            &session.clients,
            &session.region,
            path,
            &v,
            &bucket,
            &prefix,
            owner,
        )
        .await?;
        out.mirror_comparison(url, &differences);
        ok &= differences.is_empty();
    }
    Ok(if ok {
        ExitCode::Success
    } else {
        ExitCode::Failed
    })
}

fn audit_show(
    out: &Printer,
    path: &std::path::Path,
    trust: &crate::cli::TrustArgs,
) -> Result<ExitCode, Error> {
    let (v, records) = audit::read(path, &trust.trust(), trust.expect_head.as_deref())?;
    out.timeline(&v, &records);
    Ok(if v.ok() {
        ExitCode::Success
    } else {
        ExitCode::Failed
    })
}

/// Renders an error for the chosen output format; returns its exit code.
pub fn report_error(format: OutputFormat, err: Error) -> ExitCode {
    let code = err.exit_code();
    match format {
        OutputFormat::Json => {
            let problems = match &err {
                Error::InvalidPlaybook(Problems(p)) => serde_json::to_value(p).ok(),
                _ => None,
            };
            let doc = serde_json::json!({
                "error": err.to_string(),
                "exit_code": code as i32,
                "problems": problems,
            });
            outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Text => match err {
            Error::InvalidPlaybook(problems) => errln!("{problems}"),
            other => {
                // The message and help may quote AWS or a log: cleaned before
                // miette adds its own colours, which must stay colours.
                let shown = Cleaned {
                    message: crate::output::clean(&other.to_string()).into_owned(),
                    code: miette::Diagnostic::code(&other).map(|c| c.to_string()),
                    help: other.help().map(|h| crate::output::clean(&h).into_owned()),
                };
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr().lock(), "{:?}", miette::Report::new(shown));
            }
        },
    }
    code
}

/// An error as shown: its text already cleaned of terminal controls.
#[derive(Debug)]
struct Cleaned {
    message: String,
    code: Option<String>,
    help: Option<String>,
}

impl std::fmt::Display for Cleaned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cleaned {}

impl miette::Diagnostic for Cleaned {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.code
            .as_ref()
            .map(|c| Box::new(c) as Box<dyn std::fmt::Display>)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
}
