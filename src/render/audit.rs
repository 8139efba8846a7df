//! Rollbacks, log verifications and timelines.

use super::*;

impl Printer {
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
        if let Some(t) = &v.torn {
            outln!("CUT: {t}");
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

    pub fn timeline(&self, v: &Verification, records: &[Record]) {
        if self.format == OutputFormat::Json {
            return self.json(&serde_json::json!({ "verification": v, "records": records }));
        }
        let mut s = String::new();
        for r in records {
            // RFC 3339 in UTC: a log read days later, elsewhere, still
            // says when.
            let ts = r.ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ");
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
