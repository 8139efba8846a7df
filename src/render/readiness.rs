//! Readiness findings: aligned lines for a person, one JSON object per line
//! for monitoring.

use super::*;
use crate::readiness::{Finding, Severity};

impl Printer {
    /// One playbook's findings: a verdict line, then each finding with its
    /// fix, problems first.
    pub fn readiness(&self, findings: &[Finding]) {
        if self.format == OutputFormat::Json {
            for f in findings {
                outln!("{}", serde_json::to_string(f).unwrap_or_default());
            }
            return;
        }
        let Some(first) = findings.first() else {
            return;
        };
        let count = |sev: Severity| findings.iter().filter(|f| f.severity == sev).count();
        let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let verdict = if errors > 0 {
            format!(
                "NOT READY ({}, {})",
                plural(errors, "problem"),
                plural(warnings, "warning")
            )
        } else if warnings > 0 {
            format!("ready, with {}", plural(warnings, "warning"))
        } else {
            "ready".to_string()
        };
        let mut s = format!("{}: {verdict}\n", first.playbook);
        let mut sorted: Vec<&Finding> = findings.iter().collect();
        // Stable: within a severity, the order the checks ran in.
        sorted.sort_by_key(|f| std::cmp::Reverse(f.severity));
        for f in sorted {
            let tag = match f.severity {
                Severity::Error => "FAIL",
                Severity::Warning => "warn",
                Severity::Ok => "ok",
            };
            let _ = writeln!(
                s,
                "  {tag:<4}  {:<12}  {}: {}",
                f.check.label(),
                f.subject,
                f.message
            );
            if let Some(fix) = &f.fix {
                let _ = writeln!(s, "        {:<12}  fix: {fix}", "");
            }
        }
        outln!("{}", s.trim_end());
    }
}
