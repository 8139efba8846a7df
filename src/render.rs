//! Text and JSON rendering. Results go to stdout; progress and the identity
//! header go to stderr, so `--output json` leaves stdout one JSON document.

use std::fmt::Write as _;
use std::io::IsTerminal;

use serde::Serialize;

use crate::Error;
use crate::actions::AccountStatus;
use crate::actions::{ActionKind, Reversibility};
use crate::audit::{Event, Record, Verification};
use crate::aws::{CallCounts, Identity, Session};
use crate::cli::OutputFormat;
use crate::playbook::Playbook;
use crate::report::{Counts, Item, Outcome, StepReport, StepStatus};

/// A file `validate` accepted: a playbook (its steps) or a scenario (its moves).
pub struct Validated {
    pub name: String,
    /// `steps` or `moves`: what `count` counts.
    pub unit: &'static str,
    pub count: usize,
    pub warnings: Vec<crate::yaml::Problem>,
}

/// Everything a run reports, in both formats.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub playbook: String,
    pub dry_run: bool,
    pub status: &'static str,
    pub identity: Identity,
    pub endpoint: String,
    /// Every endpoint, with where it came from (the same shape as `whoami`'s).
    pub endpoints: crate::aws::Endpoints,
    pub totals: Counts,
    pub calls: CallCounts,
    pub millis: u64,
    /// The read-back after a live run: targets still not contained (`None`: not checked).
    pub not_contained: Option<Vec<String>>,
    /// What holding the line after the run found and did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldSummary>,
    pub audit_log: String,
    /// The S3 copy of the audit log, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_mirror: Option<crate::audit::MirrorReport>,
    /// Hash of the last audit record: keep it elsewhere to anchor the log.
    pub audit_head: String,
    /// The last record's signature, and the public key that made it.
    pub audit_signature: String,
    pub audit_key: String,
    /// The accounts a fanned-out run reached or could not reach.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountStatus>,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Default, Serialize)]
pub struct HoldSummary {
    pub checks: u64,
    pub recontained: Vec<String>,
    pub failed: Vec<String>,
    pub interrupted: bool,
}

pub struct Printer {
    format: OutputFormat,
}

/// The running progress line; dropping it stops and erases it.
pub struct Ticker {
    progress: std::sync::Arc<crate::executor::Progress>,
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    pub fn progress(&self) -> &crate::executor::Progress {
        &self.progress
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
        err!("\r\x1b[2K");
    }
}

impl Printer {
    pub fn new(format: OutputFormat) -> Self {
        Printer { format }
    }

    /// Streams `value` to stdout: a plan over ten thousand principals is
    /// never held a second time as a JSON tree or string.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let written = serde_json::to_writer_pretty(&mut out, value)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                writeln!(out)
                    .and_then(|()| out.flush())
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            errln!("error: cannot write output: {e}");
        }
    }

    pub fn actions(&self, actions: &[ActionKind]) {
        let infos: Vec<_> = actions.iter().map(|a| a.info()).collect();
        if self.format == OutputFormat::Json {
            return self.json(&infos);
        }
        let mut s = String::new();
        for info in infos {
            let _ = writeln!(s, "{}\n  {}", info.id, info.summary);
            let targets: Vec<&str> = info.targets.iter().map(|t| t.key()).collect();
            let _ = writeln!(s, "  targets: {}", targets.join(", "));
            if info.params.is_empty() {
                let _ = writeln!(s, "  with: (no parameters)");
            }
            for (name, doc) in info.params {
                let _ = writeln!(s, "  with.{name}: {doc}");
            }
            let _ = writeln!(s, "  calls: {}", info.calls.join("; "));
            match info.reversibility {
                Reversibility::Reversible(how) => {
                    let _ = writeln!(s, "  reversible: yes ({how})");
                }
                Reversibility::Irreversible(why) => {
                    let _ = writeln!(s, "  reversible: NO ({why})");
                }
            }
            for note in info.notes {
                let _ = writeln!(s, "  note: {note}");
            }
            s.push('\n');
        }
        out!("{s}");
    }

    pub fn validation(&self, results: &[(String, Result<Validated, Error>)]) {
        if self.format == OutputFormat::Json {
            let docs: Vec<_> = results
                .iter()
                .map(|(path, r)| match r {
                    Ok(v) => serde_json::json!({
                        "file": path, "valid": true, "name": v.name,
                        v.unit: v.count, "warnings": v.warnings,
                    }),
                    Err(Error::InvalidPlaybook(p)) => serde_json::json!({
                        "file": path, "valid": false, "problems": p.0,
                    }),
                    Err(e) => serde_json::json!({
                        "file": path, "valid": false, "error": e.to_string(),
                    }),
                })
                .collect();
            return self.json(&docs);
        }
        for (path, r) in results {
            match r {
                Ok(v) => {
                    for w in &v.warnings {
                        errln!("{w}");
                    }
                    outln!("{path}: ok ({}, {} {})", v.name, v.count, v.unit);
                }
                Err(Error::InvalidPlaybook(p)) => {
                    errln!("{p}");
                    let n = p.0.len();
                    outln!(
                        "{path}: invalid ({n} problem{})",
                        if n == 1 { "" } else { "s" }
                    );
                }
                Err(e) => {
                    errln!("{path}: error: {e}");
                    outln!("{path}: invalid");
                }
            }
        }
    }

    /// Who and where, before anything else happens.
    pub fn header(&self, session: &Session, pb: &Playbook, mode: &str) {
        errln!("breakglass {mode}: {} ({})", pb.name, pb.source);
        errln!(
            "  identity: {} (account {})",
            session.identity.arn,
            session.identity.account
        );
        errln!("  credential: {}", session.source());
        errln!(
            "  region: {} (from {})",
            session.region,
            session.region_source
        );
        errln!("  endpoint: {}", session.endpoint_display());
        for w in &pb.warnings {
            errln!("{w}");
        }
    }

    /// Differences between a log and its S3 mirror.
    pub fn mirror_comparison(&self, url: &str, differences: &[String]) {
        if self.format == OutputFormat::Json {
            return self.json(&serde_json::json!({
                "mirror": url,
                "matches": differences.is_empty(),
                "differences": differences,
            }));
        }
        if differences.is_empty() {
            outln!("mirror {url}: every record matches the log");
        } else {
            outln!("mirror {url}: {} difference(s)", differences.len());
            for d in differences {
                outln!("  {d}");
            }
        }
    }

    pub fn whoami(&self, session: &Session) {
        if self.format == OutputFormat::Json {
            return self.json(&serde_json::json!({
                "identity": session.identity,
                "profile": session.profile,
                "profile_source": session.profile_source,
                "region": session.region,
                "region_source": session.region_source,
                "endpoint": session.endpoints().global,
                "endpoints": session.endpoints(),
            }));
        }
        let id = &session.identity;
        outln!("account:    {}", id.account);
        outln!("principal:  {}", id.arn);
        outln!("access key: {}", id.access_key_id);
        outln!(
            "profile:    {} (from {})",
            session.profile,
            session.profile_source
        );
        for (i, hop) in id.chain.iter().enumerate() {
            let label = if i == 0 { "chain:" } else { "" };
            outln!("{label:<11} {hop}");
        }
        outln!(
            "region:     {} (from {})",
            session.region,
            session.region_source
        );
        outln!("endpoint:   {}", session.endpoint_display());
    }

    /// Where a fanned-out run goes: printed before the plan or the
    /// confirmation, so an unreachable account is known before anything changes.
    pub fn accounts(&self, accounts: &[AccountStatus], notes: &[String]) {
        // On stderr like the header, whatever the output format.
        if accounts.is_empty() {
            return;
        }
        let reached = accounts.iter().filter(|a| a.reach != "unreachable").count();
        errln!("  accounts: {reached} of {} reached", accounts.len());
        for a in accounts {
            if let Some(e) = &a.error {
                errln!("    UNREACHABLE {}: {e}", a.account);
            }
        }
        for n in notes {
            errln!("  NOTE {n}");
        }
    }

    pub fn plan(
        &self,
        pb: &Playbook,
        session: &Session,
        accounts: &[AccountStatus],
        steps: &[StepReport],
    ) {
        if self.format == OutputFormat::Json {
            #[derive(Serialize)]
            struct PlanDoc<'a> {
                playbook: &'a str,
                identity: &'a Identity,
                endpoint: String,
                #[serde(skip_serializing_if = "<[AccountStatus]>::is_empty")]
                accounts: &'a [AccountStatus],
                steps: &'a [StepReport],
            }
            return self.json(&PlanDoc {
                playbook: &pb.name,
                identity: &session.identity,
                endpoint: session.endpoint_display(),
                accounts,
                steps,
            });
        }
        let mut s = String::new();
        for step in steps {
            let c = &step.counts;
            let _ = writeln!(
                s,
                "step {} · {} ({})\n  {} call(s); {} already contained; {} skipped{}",
                step.index + 1,
                step.name,
                step.action,
                c.would_change,
                c.unchanged,
                c.skipped,
                if step.on_failure == crate::spec::OnFailure::Continue {
                    "; on failure: continue"
                } else {
                    ""
                }
            );
            if let Some(e) = &step.error {
                let _ = writeln!(s, "  ERROR {e}");
            }
            per_account(&mut s, step);
            for note in &step.notes {
                let _ = writeln!(s, "  NOTE {note}");
            }
            for item in &step.items {
                let _ = writeln!(s, "  {}", item_line(step, item));
            }
            s.push('\n');
            // A step at a time: a plan over ten thousand principals is never
            // held twice.
            out!("{s}");
            s.clear();
        }
    }

    pub fn verify(&self, pb: &Playbook, session: &Session, steps: &[StepReport]) {
        let state = |o: Outcome| match o {
            Outcome::WouldChange => "not_contained",
            Outcome::Unchanged => "contained",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Changed => "changed",
        };
        if self.format == OutputFormat::Json {
            let steps: Vec<_> = steps
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "index": s.index,
                        "name": s.name,
                        "action": s.action,
                        "contained": s.status == StepStatus::Done && s.counts.would_change == 0,
                        "error": s.error,
                        "targets": s.items.iter().map(|i| serde_json::json!({
                            "target": i.target,
                            "state": state(i.outcome),
                            "drift": i.drift,
                            "detail": i.reason.as_ref().or(i.call.as_ref()),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            return self.json(&serde_json::json!({
                "playbook": pb.name,
                "identity": session.identity,
                "steps": steps,
            }));
        }
        let mut s = String::new();
        for step in steps {
            let open = step.counts.would_change;
            let verdict = if step.error.is_some() {
                "UNKNOWN"
            } else if open == 0 {
                "contained"
            } else {
                "NOT CONTAINED"
            };
            let _ = writeln!(
                s,
                "step {} · {} ({}): {verdict} ({} contained, {open} not contained, {} skipped)",
                step.index + 1,
                step.name,
                step.action,
                step.counts.unchanged,
                step.counts.skipped
            );
            if let Some(e) = &step.error {
                let _ = writeln!(s, "  ERROR {e}");
            }
            for item in &step.items {
                let detail = match item.outcome {
                    Outcome::WouldChange => format!(
                        "NOT CONTAINED {} {} · needs {}",
                        target_text(step, item),
                        item.drift.as_deref().unwrap_or(""),
                        item.call.as_deref().unwrap_or("a call")
                    ),
                    Outcome::Unchanged => format!(
                        "contained     {} · {}",
                        target_text(step, item),
                        item.reason.as_deref().unwrap_or("")
                    ),
                    _ => item_line(step, item),
                };
                let _ = writeln!(s, "  {detail}");
            }
        }
        out!("{s}");
    }

    /// One line per hold check: a status line on stderr, or a JSON event on stdout.
    pub fn hold_check(&self, check: u64, recontained: &[String], failed: &[String], left: u64) {
        if self.format == OutputFormat::Json {
            outln!(
                "{}",
                serde_json::json!({
                    "event": "hold_check", "check": check,
                    "recontained": recontained, "failed": failed, "seconds_left": left,
                })
            );
            return;
        }
        errln!(
            "  hold check {check}: {} drift(s) re-contained, {} failed; {left} s left",
            recontained.len(),
            failed.len()
        );
        for d in recontained {
            errln!("    re-contained {d}");
        }
        for d in failed {
            errln!("    NOT re-contained {d}");
        }
    }

    /// One progress line per finished step (stderr, text mode only).
    /// A progress line on stderr for the steps of a run, redrawn a few times
    /// a second; only for text output on a terminal (never in logs or JSON).
    pub fn progress(&self) -> Option<Ticker> {
        if self.format != OutputFormat::Text || !std::io::stderr().is_terminal() {
            return None;
        }
        let progress = std::sync::Arc::new(crate::executor::Progress::default());
        let shown = progress.clone();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(200));
            loop {
                every.tick().await;
                if let Some(line) = shown.line() {
                    err!("\r\x1b[2K  {line}");
                }
            }
        });
        Some(Ticker { progress, task })
    }

    pub fn step_done(&self, step: &StepReport) {
        if self.format == OutputFormat::Text {
            if std::io::stderr().is_terminal() {
                // Over the progress line, if one is drawn.
                err!("\r\x1b[2K");
            }
            let mark = match step.status {
                StepStatus::Done => "done",
                StepStatus::Failed => "FAILED",
                StepStatus::NotRun => "not run",
                StepStatus::Refused => "REFUSED",
            };
            errln!(
                "  step {} {} [{}]: {} ({} ms)",
                step.index + 1,
                step.name,
                mark,
                counts_line(&step.counts),
                step.millis
            );
        }
    }

    pub fn run(&self, r: &RunReport) {
        if self.format == OutputFormat::Json {
            return self.json(r);
        }
        let mut s = String::new();
        let kind = if r.dry_run { "dry run" } else { "run" };
        let _ = writeln!(s, "{kind} {} of {}: {}", r.run_id, r.playbook, r.status);
        for step in &r.steps {
            let _ = writeln!(
                s,
                "\nstep {} · {} ({}): {}",
                step.index + 1,
                step.name,
                step.action,
                counts_line(&step.counts)
            );
            if let Some(e) = &step.error {
                let _ = writeln!(s, "  ERROR {e}");
            }
            per_account(&mut s, step);
            for note in &step.notes {
                let _ = writeln!(s, "  NOTE {note}");
            }
            for item in &step.items {
                let _ = writeln!(s, "  {}", item_line(step, item));
            }
        }
        if !r.accounts.is_empty() {
            let mut totals: std::collections::BTreeMap<&str, Counts> = Default::default();
            for step in &r.steps {
                for (a, c) in &step.accounts {
                    totals.entry(a.as_str()).or_default().merge(c);
                }
            }
            let _ = writeln!(s, "\naccounts:");
            for a in &r.accounts {
                let line = match &a.error {
                    Some(e) => format!("UNREACHABLE: {e}"),
                    None => totals
                        .get(a.account.as_str())
                        .map(counts_line)
                        .unwrap_or_else(|| "no target".into()),
                };
                let name = a
                    .name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                let _ = writeln!(s, "  {}{name} [{}]: {line}", a.account, a.reach);
            }
        }
        if let Some(h) = &r.hold {
            let _ = writeln!(
                s,
                "\nhold: {} check(s){}; {} drift(s) re-contained, {} not",
                h.checks,
                if h.interrupted {
                    " (ended by Ctrl-C)"
                } else {
                    ""
                },
                h.recontained.len(),
                h.failed.len()
            );
            for d in &h.recontained {
                let _ = writeln!(s, "  re-contained {d}");
            }
            for d in &h.failed {
                let _ = writeln!(s, "  NOT re-contained {d}");
            }
        }
        match &r.not_contained {
            Some(open) if open.is_empty() => {
                let _ = writeln!(s, "\nverify: every target reads back contained");
            }
            Some(open) => {
                let _ = writeln!(s, "\nverify: NOT CONTAINED after the run:");
                for o in open {
                    let _ = writeln!(s, "  {o}");
                }
            }
            None => {}
        }
        let _ = writeln!(
            s,
            "\ntotal: {}\ncalls: {} ({} throttled, {} retried) in {} ms\naudit log: {}\naudit head: {} (keep it elsewhere: audit verify --expect-head)\naudit signature: {} by key {}",
            counts_line(&r.totals),
            r.calls.calls,
            r.calls.throttled,
            r.calls.retries,
            r.millis,
            r.audit_log,
            r.audit_head,
            r.audit_signature,
            r.audit_key
        );
        if r.status == "interrupted" {
            let _ = writeln!(
                s,
                "\nINTERRUPTED: steps not started are listed above as not run. Next:\n  breakglass audit verify {log}    (names any call that may or may not have happened)\n  breakglass run … again           (converges: what is done stays done)\n  breakglass rollback {log}        (undoes what was done)",
                log = r.audit_log
            );
        }
        if let Some(m) = &r.audit_mirror {
            let _ = writeln!(
                s,
                "audit mirror: {} ({} records copied, {} FAILED{})",
                m.target,
                m.uploaded,
                m.failed,
                m.first_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
        out!("{s}");
    }

    /// (target, outcome, call, reason, error) per recorded change, latest first.
    #[allow(clippy::type_complexity)]
    pub fn rollback(
        &self,
        run_id: &str,
        items: &[(
            crate::targets::Target,
            Outcome,
            Option<String>,
            Option<String>,
            Option<crate::aws::AwsError>,
        )],
        totals: &Counts,
        audit_log: &str,
    ) {
        if self.format == OutputFormat::Json {
            let list: Vec<_> = items
                .iter()
                .map(|(t, o, c, r, e)| {
                    serde_json::json!({ "target": t, "outcome": o, "call": c, "reason": r, "error": e })
                })
                .collect();
            return self.json(&serde_json::json!({
                "rollback_of": run_id, "items": list, "totals": totals, "audit_log": audit_log,
            }));
        }
        let mut s = format!("rollback of {run_id}\n");
        for (t, o, c, r, e) in items {
            let mut line = format!("  {:<12} {t}", outcome_word(*o));
            for part in [c.clone(), r.clone(), e.as_ref().map(ToString::to_string)]
                .into_iter()
                .flatten()
            {
                let _ = write!(line, " · {part}");
            }
            let _ = writeln!(s, "{line}");
        }
        let _ = writeln!(s, "total: {}\naudit log: {audit_log}", counts_line(totals));
        out!("{s}");
    }

    pub fn verification(&self, v: &Verification) {
        if self.format == OutputFormat::Json {
            return self.json(v);
        }
        outln!(
            "{}: {} records, run {}",
            v.path,
            v.records,
            v.run_id.as_deref().unwrap_or("?")
        );
        if let Some(b) = &v.broken {
            outln!("BROKEN at {b}");
        } else {
            outln!("hash chain: ok (head {})", v.head.as_deref().unwrap_or("-"));
        }
        match (&v.signed_by, v.format) {
            (_, 1) => outln!(
                "UNSIGNED: a log from before breakglass signed its records (format 1): its chain is checked, but anyone who can write it could have re-sealed it; rollback refuses it"
            ),
            (None, _) => outln!("UNSIGNED: no signing key named"),
            (Some(k), _) if v.broken.is_none() => {
                let fp = crate::signing::fingerprint(k);
                if v.trusted_key {
                    outln!("signatures: ok, every record signed by audit key {fp} (trusted)");
                } else {
                    outln!(
                        "signatures: ok, by audit key {fp}, which this machine does not hold: NOT TRUSTED (pass --key {k} if it is a colleague's, or --expect-head with the head the run printed)"
                    );
                }
            }
            (Some(_), _) => {}
        }
        match v.head_matches {
            Some(true) => outln!("head: matches the expected head"),
            Some(false) => {
                outln!("head: DOES NOT match the expected head (records were cut or replaced)")
            }
            None => {}
        }
        if !v.complete && v.broken.is_none() {
            outln!("INTERRUPTED: the run has no run-end record");
        }
        for u in &v.uncertain {
            outln!(
                "UNCERTAIN: announced but no result recorded (may or may not have happened): {u}"
            );
        }
        if v.ok() {
            outln!("verified");
        }
    }

    /// Text for people, or (`--output json`) this document instead.
    pub fn text_or_json<T: Serialize + ?Sized>(&self, text: &str, document: &T) {
        if self.format == OutputFormat::Json {
            return self.json(document);
        }
        outln!("{text}");
    }

    pub fn timeline(&self, v: &Verification, records: &[Record]) {
        if self.format == OutputFormat::Json {
            return self.json(&serde_json::json!({ "verification": v, "records": records }));
        }
        let mut s = String::new();
        for r in records {
            let ts = r.ts.strftime("%H:%M:%S%.3f");
            let line = match &r.event {
                Event::RunStart {
                    playbook_name,
                    dry_run,
                    identity,
                    endpoint,
                    ..
                } => format!(
                    "run start{} · {playbook_name} · as {} · {}",
                    if *dry_run { " (dry run)" } else { "" },
                    identity.arn,
                    endpoint
                        .as_ref()
                        .map(|e| e.url.as_str())
                        .unwrap_or("AWS endpoints")
                ),
                Event::Accounts { accounts, .. } => format!(
                    "accounts · {} reached, {} unreachable",
                    accounts.iter().filter(|a| a.reach != "unreachable").count(),
                    accounts.iter().filter(|a| a.reach == "unreachable").count()
                ),
                Event::StepStart { step, name, action } => {
                    format!("step {} · {name} ({action})", step + 1)
                }
                Event::Intent { call, .. } | Event::UndoIntent { call, .. } => {
                    format!("  → {call}")
                }
                Event::Result {
                    target,
                    outcome,
                    reason,
                    error,
                    ..
                } => {
                    let detail = error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .or(reason.as_ref().map(|r| format!(": {r}")))
                        .unwrap_or_default();
                    format!("  {} {target}{detail}", outcome_word(*outcome))
                }
                Event::StepEnd { step, counts, .. } => {
                    format!("step {} end · {}", step + 1, counts_line(counts))
                }
                Event::HoldCheck {
                    check,
                    recontained,
                    failed,
                } => format!(
                    "hold check {check} · {} re-contained, {} failed",
                    recontained.len(),
                    failed.len()
                ),
                Event::RunEnd { status, totals, .. } => {
                    format!("run end · {status} · {}", counts_line(totals))
                }
            };
            let _ = writeln!(s, "{ts} {line}");
        }
        out!("{s}");
        self.verification(v);
    }
}

/// One line per account under a fanned-out step.
fn per_account(s: &mut String, step: &StepReport) {
    for (account, c) in &step.accounts {
        let _ = writeln!(s, "  account {account}: {}", counts_line(c));
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Changed => "changed",
        Outcome::WouldChange => "would change",
        Outcome::Unchanged => "unchanged",
        Outcome::Skipped => "skipped",
        Outcome::Failed => "FAILED",
    }
}

/// The target as a line names it: with its account when the step fanned out.
fn target_text(step: &StepReport, item: &Item) -> String {
    if step.accounts.is_empty() {
        item.target.to_string()
    } else {
        format!("{} in {}", item.target, item.target.scope.account)
    }
}

fn item_line(step: &StepReport, item: &Item) -> String {
    let mut line = format!(
        "{:<12} {}",
        outcome_word(item.outcome),
        target_text(step, item)
    );
    if let Some(c) = &item.call {
        let _ = write!(line, " · {c}");
    }
    if let Some(r) = &item.reason {
        let _ = write!(line, " · {r}");
    }
    if let Some(e) = &item.error {
        let _ = write!(line, " · {e}");
    }
    line
}

fn counts_line(c: &Counts) -> String {
    let mut parts = Vec::new();
    if c.would_change > 0 {
        parts.push(format!("{} would change", c.would_change));
    }
    parts.push(format!("{} changed", c.changed));
    parts.push(format!("{} unchanged", c.unchanged));
    parts.push(format!("{} skipped", c.skipped));
    parts.push(format!("{} failed", c.failed));
    parts.join(", ")
}
