//! Tabletop exercises: a playbook run for real against a local emulator seeded
//! with a compromised estate, with the attacker moving during the response.
//!
//! The run itself is this same binary's `run` command in a child process, so
//! the exercise goes through exactly the code a real incident would; the child
//! gets only the emulator's endpoint and a throwaway profile, never the
//! caller's environment, so it cannot reach AWS.

pub mod actor;
pub mod admin;
mod buckets;
mod ec2_moves;
pub mod emulator;
pub mod estate;
pub mod evaluate;
mod identity_seeds;
pub mod members;
mod move_kind;
pub mod moves;
pub mod report;
pub mod roots;
pub mod scenario;
pub mod seed;
pub mod shim;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::audit::{self, Event};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{Error, ExitCode};
use crate::playbook;
use crate::render::Printer;
use admin::Admin;
use emulator::Emulator;
use moves::MoveRecord;
use report::{Report, StepTime};

/// `breakglass tabletop`'s arguments.
pub struct Request<'a> {
    pub playbook: &'a Path,
    pub scenario: &'a Path,
    pub report: Option<&'a Path>,
    pub keep: bool,
    pub vars: &'a [(String, String)],
    pub hold: Option<Duration>,
    pub every: Duration,
    /// Check readiness on the seeded estate instead of running the playbook.
    pub readiness: bool,
}

/// The profile the child run signs with, in a private directory removed on drop.
struct Profile {
    dir: PathBuf,
}

impl Profile {
    fn write(key: &str, secret: &str) -> Result<Profile, Error> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "breakglass-tabletop-{}-{nanos}",
            std::process::id()
        ));
        let io = |e: std::io::Error| Error::Emulator(format!("tabletop profile: {e}"));
        std::fs::create_dir(&dir).map_err(io)?;
        let profile = Profile { dir };
        private_file(
            &profile.dir.join("credentials"),
            &format!("[tabletop]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"),
        )
        .map_err(io)?;
        private_file(
            &profile.dir.join("config"),
            "[profile tabletop]\nregion = us-east-1\n",
        )
        .map_err(io)?;
        Ok(profile)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// Runs the exercise and writes the report.
pub async fn tabletop(
    global: &GlobalArgs,
    out: &Printer,
    req: Request<'_>,
) -> Result<ExitCode, Error> {
    if global.endpoint_url.is_some() {
        return Err(Error::Usage {
            flag: "--endpoint-url".into(),
            message: "a tabletop runs only against the emulator it starts itself".into(),
        });
    }
    if global.profile.is_some() {
        return Err(Error::Usage {
            flag: "--profile".into(),
            message: "a tabletop signs with the scenario's executor, created in the emulator"
                .into(),
        });
    }
    // Everything is checked before the emulator starts: a typo costs nothing.
    let scenario = scenario::load(req.scenario)?;
    let pb = playbook::load(req.playbook)?;
    let mut vars: Vec<(String, String)> = scenario
        .file
        .vars
        .iter()
        // A scenario serves several playbooks: each takes the variables it declares.
        .filter(|(k, _)| pb.vars.contains_key(*k))
        .filter(|(k, _)| !req.vars.iter().any(|(given, _)| given == *k))
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect();
    vars.extend(req.vars.iter().cloned());
    // Seeded ids are not known yet: stand-ins of the right shape check the rest.
    let stand_ins: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| {
            let v = if v.starts_with("@access_key:") {
                "AKIAIOSFODNN7STANDIN".to_string()
            } else if v.starts_with("@instance:") {
                "i-0123456789abcdef0".to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    pb.bind(&stand_ins).map_err(Error::InvalidPlaybook)?;

    let emulator = Emulator::start()?;
    // The run and the attacker both go through the snapshot-lock shim.
    let (port, roleless, roots) = shim::start(emulator.port)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let admin = Admin::new(endpoint.clone());
    let mut seeded = seed::seed(&admin, &scenario).await?;
    if let Ok(mut r) = roleless.lock() {
        r.extend(seeded.roleless.iter().cloned());
    }
    if let Ok(mut r) = roots.lock() {
        // The executor's account is the management account.
        r.management = seeded.account.clone();
        r.members = seeded.member_accounts.values().cloned().collect();
        if scenario.file.centralized_root_access {
            r.features = Some(["RootCredentialsManagement".to_string()].into());
        }
        for (name, user) in &seeded.root_users {
            if let Some(id) = seeded.member_accounts.get(name) {
                r.users.insert(id.clone(), user.clone());
            }
        }
    }
    seeded.roots = Some(roots);
    let profile = Profile::write(&seeded.executor_key, &seeded.executor_secret)?;
    let vars: Vec<(String, String)> = vars
        .into_iter()
        .map(|(k, v)| {
            let resolved = if let Some(user) = v.strip_prefix("@access_key:") {
                seeded.user_keys.get(user).and_then(|k| k.first()).cloned()
            } else if let Some(region) = v.strip_prefix("@instance:") {
                seeded
                    .instances
                    .get(region)
                    .and_then(|i| i.first())
                    .cloned()
            } else {
                Some(v.clone())
            };
            (k, resolved.unwrap_or(v))
        })
        .collect();

    crate::files::private_dir(Path::new("breakglass-audit")).map_err(Error::Emulator)?;
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let audit_path = PathBuf::from(format!(
        "breakglass-audit/tabletop-{}-{stamp}.jsonl",
        file_name_part(&scenario.file.name)
    ));
    let exe = std::env::current_exe()
        .map_err(|e| Error::Emulator(format!("cannot find breakglass itself: {e}")))?;
    let mut cmd = tokio::process::Command::new(exe);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env(
        "AWS_SHARED_CREDENTIALS_FILE",
        profile.dir.join("credentials"),
    )
    .env("AWS_CONFIG_FILE", profile.dir.join("config"))
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .args([
        "--endpoint-url",
        &endpoint,
        "--profile",
        "tabletop",
        "--output",
        // A readiness check speaks to the responder directly.
        if req.readiness && global.output == OutputFormat::Text {
            "text"
        } else {
            "json"
        },
    ])
    .arg("--concurrency")
    .arg(global.concurrency.to_string())
    .args(
        global
            .accounts
            .iter()
            .flat_map(|a| ["--accounts".to_string(), a.to_flag()]),
    )
    .stdin(Stdio::null())
    .kill_on_drop(true);
    if req.readiness {
        // Before the incident: no attacker, no run; the findings as they are.
        cmd.arg("readiness").arg(req.playbook);
        for (k, v) in &vars {
            cmd.arg("--var").arg(format!("{k}={v}"));
        }
        let status = cmd
            .status()
            .await
            .map_err(|e| Error::Emulator(format!("cannot run the readiness check: {e}")))?;
        // The check's own verdict, usage errors and refusals included.
        return Ok(match status.code() {
            Some(0) => ExitCode::Success,
            Some(2) => ExitCode::Usage,
            Some(3) => ExitCode::Refused,
            _ => ExitCode::Failed,
        });
    }
    cmd.arg("run")
        .arg(req.playbook)
        // moto has no iam:SimulatePrincipalPolicy for the permission preflight.
        .args(["--yes", "--skip-preflight", "--audit-log"])
        .arg(&audit_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &vars {
        cmd.arg("--var").arg(format!("{k}={v}"));
    }
    // A playbook that holds until stopped is told to stop after a hold as
    // long as the attacker's script plus two checks: the hold starts when
    // the steps end, so it outlasts the last move by two checks at least.
    let hold = req.hold.or_else(|| {
        pb.hold.then(|| {
            let last = scenario.moves.last().map_or(Duration::ZERO, |(at, _)| *at);
            last + 2 * req.every
        })
    });
    if let Some(hold) = hold {
        cmd.arg("--hold")
            .arg(format!("{}s", hold.as_secs().max(1)))
            .arg("--every")
            .arg(format!("{}s", req.every.as_secs().max(1)));
    }

    let t0 = Instant::now();
    let t0_wall = jiff::Timestamp::now();
    let child = cmd
        .spawn()
        .map_err(|e| Error::Emulator(format!("cannot start the run: {e}")))?;
    let attacker = async {
        // Moves at one time are made at once (a scenario cannot rely on an
        // order among them), each judged against the moves before them.
        let mut records: Vec<MoveRecord> = Vec::new();
        for group in scenario.moves.chunk_by(|a, b| a.0 == b.0) {
            let Some((at, _)) = group.first() else {
                continue;
            };
            tokio::time::sleep_until((t0 + *at).into()).await;
            let made = futures_util::future::join_all(group.iter().map(|(at, m)| {
                play_move(
                    &admin,
                    &scenario,
                    &seeded,
                    (*at, m),
                    &records,
                    (t0, t0_wall),
                )
            }))
            .await;
            records.extend(made);
        }
        records
    };
    // Ctrl-C or SIGTERM ends the exercise cleanly: returning drops the child
    // run (killed), the emulator (stopped) and the throwaway profile
    // (removed).
    let (output, moves) = tokio::select! {
        both = async { tokio::join!(child.wait_with_output(), attacker) } => both,
        _ = interrupted() => {
            return Err(Error::Emulator(
                "interrupted: the run was stopped, the emulator shut down and the throwaway profile removed".into(),
            ));
        }
    };
    let total_ms = t0.elapsed().as_millis() as u64;
    let output = output.map_err(|e| Error::Emulator(format!("the run: {e}")))?;
    let exit_code = output.status.code().unwrap_or(-1);
    // The run's own warnings (protect entries matching nothing, say) matter
    // in the debrief too.
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        if line.starts_with("warning:") {
            errln!("{line}");
        }
    }
    // With --hold, one line per hold check comes before the run's report.
    let raw: serde_json::Value = serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .last()
        .ok_or_else(|| {
            Error::Emulator(format!(
                "the run produced no report (exit {exit_code}): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        })?;
    if raw.get("steps").is_none() {
        return Err(Error::Emulator(format!(
            "the run stopped before any step (exit {exit_code}): {}",
            raw["error"].as_str().unwrap_or("no detail")
        )));
    }
    let run: report::RunView = serde_json::from_value(raw)
        .map_err(|e| Error::Emulator(format!("the run's report does not read back: {e}")))?;

    let timeline = step_times(&audit_path, t0_wall, &run);
    // moto answers a call it lacks with a 500 page or NotImplemented.
    let emulator_gaps: Vec<usize> = timeline
        .iter()
        .filter(|t| t.status == "failed")
        .filter(|t| {
            let Some(step) = run.steps.iter().find(|s| s.index == t.index) else {
                return false;
            };
            let text = format!(
                "{}{}",
                step.error.as_deref().unwrap_or_default(),
                serde_json::to_string(&step.items).unwrap_or_default()
            );
            [
                "not yet implemented",
                "NotImplemented",
                "InvalidAction",
                "500 Internal Server Error",
            ]
            .iter()
            .any(|m| text.contains(m))
        })
        .map(|t| t.index)
        .collect();
    let exposed = report::exposures(
        &admin,
        &scenario,
        &seeded,
        &run,
        &moves,
        &timeline,
        &emulator_gaps,
    )
    .await;
    let (first_containment_ms, first_containment) = first_containment(&timeline);
    // The exercise's verdict is what the emulator shows, not what the run
    // says of itself: anything destroyed or still usable is not contained,
    // and exits 1 (issue 21). A worse exit of the run's own stays.
    let lost = exposed.iter().any(|e| e.kind.loses());
    let (status, exit_code) = match (lost, exit_code) {
        (true, 0 | 1) => ("not_contained".to_string(), 1),
        _ => (run.status.clone(), exit_code),
    };
    // When the last step ended: the freeze rewritten after the hold (a step
    // index again) tightens what was already contained.
    let full_containment_ms = (exit_code == 0 && status == "completed")
        .then(|| {
            let mut seen = std::collections::BTreeSet::new();
            timeline
                .iter()
                .filter(|t| seen.insert(t.index))
                .map(|t| t.end_ms)
                .max()
        })
        .flatten();
    let mut emulator_notes = vec![
        "The permission preflight was skipped: moto does not implement iam:SimulatePrincipalPolicy.".to_string(),
        "moto enforces neither SCPs nor IAM policies. breakglass evaluates them before playing two kinds of move: those made `as:` a principal (its own policies, its keys' status and its sessions' issue time) and those in member accounts (the SCPs from the organization's root down; with `as:`, the principal's AssumeRole into the member role first). Other moves succeed wherever an administrator of the management account could act. RCPs are evaluated where a member account's bucket was opened to the attacker's account (the outsider's read, judged at the end). Not evaluated: resource policies themselves, RCPs on other requests (no other move reaches a service RCPs cover from outside), permissions boundaries, group policies, statements scoped to a resource (requests name `*`), and the member role's own policies in member accounts.".to_string(),
        "moto has no EBS snapshot locking: breakglass emulates LockSnapshot, DescribeLockedSnapshots and the refusal to delete a locked snapshot in front of it.".to_string(),
        "moto's DescribeRegions lists every region it knows, opt-in regions and other partitions included: breakglass answers only the regions enabled for the account, as AWS does, so `regions: all` covers what it covers in AWS.".to_string(),
        "moto has no snapshot or AMI block public access and drops a bucket's SSE-C block: breakglass emulates them in front of it, and refuses an SSE-C write to a bucket that blocks SSE-C as S3 does (the AMI setting shows at once, where AWS takes up to 10 minutes), but does not refuse a public share once sharing is blocked.".to_string(),
    ];
    if seeded.identity_center.is_some() {
        emulator_notes.push("moto provisions permission sets at once and ignores ListAccountsForProvisionedPermissionSet's ProvisioningStatus: breakglass answers ProvisionPermissionSet IN_PROGRESS, DescribePermissionSetProvisioningStatus, and which sets changed since provisioned in front of it. moto evaluates no identitystore:UserId condition: the report reads the deny from the permission set's policy.".to_string());
    }
    if !seeded.root_users.is_empty() || scenario.file.centralized_root_access {
        emulator_notes.push("moto has no root user, no sts:AssumeRoot and no iam:ListOrganizationsFeatures: breakglass emulates centralized root access and the member root users in front of it, each root session scoped by its task policy as AWS documents it.".to_string());
    }
    for t in timeline.iter().filter(|t| emulator_gaps.contains(&t.index)) {
        emulator_notes.push(format!(
            "Step {} ({}) failed because moto does not implement a call it needs (EC2 snapshot locking, for one); against AWS it would run.",
            t.index + 1,
            t.name
        ));
    }
    let run_id = run.run_id.clone();
    let report = Report {
        scenario: scenario.file.name.clone(),
        playbook: pb.name.clone(),
        endpoint: endpoint.clone(),
        run_id: run_id.clone(),
        status,
        exit_code,
        seeded,
        timeline,
        first_containment_ms,
        first_containment,
        full_containment_ms,
        attacker: moves,
        outcomes: report::outcomes(&run),
        exposed,
        emulator_notes,
        audit_log: audit_path.display().to_string(),
        total_ms,
    };

    let base = req
        .report
        .map(|p| p.with_extension(""))
        .unwrap_or_else(|| PathBuf::from(format!("breakglass-audit/tabletop-{run_id}")));
    let md_path = base.with_extension("md");
    let html_path = base.with_extension("html");
    let write = |path: &Path, text: String| {
        if let Some(dir) = path.parent() {
            crate::files::private_dir(dir).map_err(Error::Emulator)?;
        }
        crate::files::write_private(path, text.as_bytes())
            .map_err(|e| Error::Emulator(format!("cannot write {}: {e}", path.display())))
    };
    write(&md_path, report::markdown(&report))?;
    write(&html_path, report::html(&report))?;
    let every = out.detail() == crate::render::Detail::Every;
    out.text_or_json(
        &format!(
            "{}report: {} and {}",
            report::terminal(&report, out.colour(), every),
            md_path.display(),
            html_path.display()
        ),
        &report,
    );

    if req.keep {
        let direct = emulator.endpoint();
        let pid = emulator.keep();
        errln!(
            "the emulator keeps running at {direct} (pid {pid}; snapshot locks ended with breakglass); inspect it with\n  AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=x aws --endpoint-url {direct} --region us-east-1 iam list-users\nstop it with: kill {pid}"
        );
    }
    Ok(match exit_code {
        0 => ExitCode::Success,
        2 => ExitCode::Usage,
        3 => ExitCode::Refused,
        _ => ExitCode::Failed,
    })
}

/// One attacker move at its time: judged as AWS would judge it (the
/// actor's own credential, then a member account's SCPs), played unless
/// refused, and recorded.
async fn play_move(
    admin: &admin::Admin,
    scenario: &scenario::Scenario,
    seeded: &seed::Seeded,
    (at, m): (Duration, &scenario::Move),
    records: &[MoveRecord],
    (t0, t0_wall): (Instant, jiff::Timestamp),
) -> MoveRecord {
    let started = t0.elapsed();
    // The actor's own credential first (for a member-account move,
    // the AssumeRole into it), then the member's SCPs.
    let mut refused = actor::refusal(admin, scenario, seeded, m, records, t0_wall)
        .await
        .map(|why| match &m.account {
            Some(a) => format!("cannot enter account {a}: {why}"),
            None => why,
        });
    if refused.is_none() && m.account.is_some() {
        refused = members::refusal(admin, seeded, m).await;
    }
    let (subject, result) = match refused {
        Some(why) => (actor::subject_of(m), Err(why)),
        None if m.account.is_some() => members::play(admin, seeded, m).await,
        None => moves::play(admin, seeded, m).await,
    };
    // One refusal in full, the rest counted: they repeat the reason.
    let refusals = |refused: &[String]| match refused {
        [] => String::new(),
        [one] => format!("refused: {one}"),
        [first, rest @ ..] => format!(
            "refused {}: {first} (and {} more)",
            refused.len(),
            rest.len()
        ),
    };
    let (succeeded, detail, resources, refused) = match result {
        Ok((r, refused)) if r.is_empty() => {
            let detail = if refused.is_empty() {
                "found nothing to act on".to_string()
            } else {
                refusals(&refused)
            };
            (false, detail, r, refused)
        }
        Ok((r, refused)) => {
            let mut detail = r.join(", ");
            if !refused.is_empty() {
                detail.push_str(&format!("; {}", refusals(&refused)));
            }
            (true, detail, r, refused)
        }
        Err(e) => (false, format!("refused: {e}"), Vec::new(), Vec::new()),
    };
    MoveRecord {
        planned_ms: at.as_millis() as u64,
        at_ms: started.as_millis() as u64,
        action: m.action,
        subject,
        account: m.account.clone(),
        succeeded,
        detail,
        refused,
        resources,
    }
}

/// A scenario's name as part of a file name: letters, digits, `.`, `_`
/// and `-` only (a name is no path), never starting with a dot.
fn file_name_part(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "scenario".into()
    } else {
        cleaned
    }
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Step start and end from the audit log, as offsets from the run's start.
fn step_times(audit_path: &Path, t0: jiff::Timestamp, run: &report::RunView) -> Vec<StepTime> {
    let ms = |ts: jiff::Timestamp| {
        (ts - t0)
            .total(jiff::Unit::Millisecond)
            .map(|m| m.max(0.0) as u64)
            .unwrap_or(0)
    };
    let records = audit::read(audit_path, &audit::Trust::Local, None)
        .map(|(_, r)| r)
        .unwrap_or_default();
    let mut times: Vec<StepTime> = Vec::new();
    for s in &run.steps {
        let index = s.index;
        // A step's index again (the freeze rewritten without the member
        // role, after any hold re-ran every step) is its latest records.
        let again = times.iter().any(|t| t.index == index);
        let find = |start: bool| {
            let of = |r: &audit::Record| match &r.event {
                Event::StepStart { step, .. } if start && *step == index => Some(ms(r.ts)),
                Event::StepEnd { step, .. } if !start && *step == index => Some(ms(r.ts)),
                _ => None,
            };
            match again {
                true => records.iter().rev().find_map(of),
                false => records.iter().find_map(of),
            }
        };
        let (start, end) = (find(true), find(false));
        times.push(StepTime {
            index,
            name: s.name.clone(),
            action: s.action.to_string(),
            status: s.status.as_str().to_string(),
            start_ms: start.unwrap_or_default(),
            end_ms: end.or(start).unwrap_or_default(),
            calls: s.calls.calls,
            throttled: s.calls.throttled,
            changed: s.counts.changed,
            unchanged: s.counts.unchanged,
            skipped: s.counts.skipped,
            failed: s.counts.failed,
        });
    }
    times
}

/// The org-wide deny in place, or else the first step that contained anything.
fn first_containment(timeline: &[StepTime]) -> (Option<u64>, String) {
    if let Some(t) = timeline
        .iter()
        .find(|t| t.action == "org.apply_scp" && t.status == "done")
    {
        return (
            Some(t.end_ms),
            "the organization-wide deny SCP in place".into(),
        );
    }
    timeline
        .iter()
        .find(|t| t.status == "done" && t.changed + t.unchanged > 0)
        .map(|t| (Some(t.end_ms), format!("step {}: {}", t.index + 1, t.name)))
        .unwrap_or((None, "nothing was contained".into()))
}
