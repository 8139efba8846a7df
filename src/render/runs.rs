//! Plans, steps and runs as a responder reads them: what was done, what was not, and why.

use super::*;

impl Printer {
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
                endpoint: Option<crate::aws::Endpoint>,
                region: &'a str,
                #[serde(skip_serializing_if = "<[AccountStatus]>::is_empty")]
                accounts: &'a [AccountStatus],
                steps: &'a [StepReport],
            }
            return self.json(&PlanDoc {
                playbook: &pb.name,
                identity: &session.identity,
                endpoint: session.endpoints().global.clone(),
                region: &session.region,
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
            let failed = needs_responder;
            self.targets(&mut s, step, failed, |i| item_line(step, i));
            s.push('\n');
            // A step at a time: a plan over ten thousand principals is never
            // held twice.
            out!("{s}");
            s.clear();
        }
    }

    pub fn step_done(&self, step: &StepReport) {
        if self.format == OutputFormat::Text {
            let mark = match step.status {
                StepStatus::Done => "done",
                StepStatus::Failed => "FAILED",
                StepStatus::NotRun => "not run",
                StepStatus::Refused => "REFUSED",
            };
            self.above_bars(|| {
                errln!(
                    "  step {} {} [{}]: {} ({} ms)",
                    step.index + 1,
                    step.name,
                    mark,
                    counts_line(&step.counts),
                    step.millis
                )
            });
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
            // An interrupted run shows every step: its unstarted targets
            // are counted as skipped in steps that still read "done".
            let clean = step.status == StepStatus::Done
                && step.error.is_none()
                && step.counts.failed == 0
                && step.notes.is_empty()
                && r.status != "interrupted"
                && !step.items.iter().any(needs_responder);
            if self.detail == Detail::Quiet && clean {
                continue;
            }
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
            let failed = needs_responder;
            self.targets(&mut s, step, failed, |i| item_line(step, i));
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

    /// One line per hold check: a status line on stderr, or a JSON event on stdout.
    /// One hold check; `left` is `None` for a hold that lasts until stopped.
    pub fn hold_check(
        &self,
        check: u64,
        recontained: &[String],
        failed: &[String],
        left: Option<u64>,
    ) {
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
        let left = left.map_or_else(
            || "holding until stopped (Ctrl-C)".to_string(),
            |s| format!("{s} s left"),
        );
        errln!(
            "  hold check {check}: {} drift(s) re-contained, {} failed; {left}",
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
            // What JSON calls contained: done, nothing open, nothing failed.
            let verdict = if step.counts.failed > 0 {
                "FAILED"
            } else if step.error.is_some() || step.status != StepStatus::Done {
                "UNKNOWN"
            } else if open == 0 {
                "contained"
            } else {
                "NOT CONTAINED"
            };
            if self.detail == Detail::Quiet && verdict == "contained" {
                continue;
            }
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
            // What is contained goes without saying, unless asked (-v).
            let open = |i: &Item| !matches!(i.outcome, Outcome::Unchanged | Outcome::Skipped);
            self.targets(&mut s, step, open, |item| match item.outcome {
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
            });
        }
        out!("{s}");
    }
}

/// A target the default text output names: it failed, or carries an error
/// (a permission check that could not be made, say).
fn needs_responder(item: &Item) -> bool {
    item.outcome == Outcome::Failed || item.error.is_some()
}
