//! What the exercise showed: the timeline of steps and attacker moves, time to
//! first and to full containment, per-resource outcomes, and what stayed
//! exposed with the reason, read back from the emulator after the run. Written
//! for the debrief as Markdown and as one self-contained HTML page.

mod exposure;
pub use exposure::exposures;

use std::fmt::Write as _;

use crate::report::{Item, StepReport, StepStatus};
use serde::Serialize;

use super::admin::Admin;
use super::scenario::{MoveKind, Scenario};
use super::seed::{MoveRecord, Seeded};
use crate::actions::ec2::{QUARANTINE_GROUP, SOURCE_TAG};

/// One step on the timeline (milliseconds from the start of the run).
#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub index: usize,
    pub name: String,
    pub action: String,
    pub status: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub calls: u64,
    pub throttled: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// One target's fate in one step.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub step: usize,
    pub target: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// Something the run did not contain, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Exposed {
    pub what: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub playbook: String,
    pub endpoint: String,
    pub run_id: String,
    /// The run's own status (`completed`, `completed_with_failures`, …).
    pub status: String,
    pub exit_code: i32,
    pub seeded: Seeded,
    pub timeline: Vec<StepTime>,
    /// When the first containment was in place, and what it was.
    pub first_containment_ms: Option<u64>,
    pub first_containment: String,
    /// When every step had finished with nothing left exposed by a failure.
    pub full_containment_ms: Option<u64>,
    pub attacker: Vec<MoveRecord>,
    pub outcomes: Vec<Outcome>,
    pub exposed: Vec<Exposed>,
    /// Where the emulator differs from AWS, so a gap is not mistaken for the playbook's.
    pub emulator_notes: Vec<String>,
    pub audit_log: String,
    pub total_ms: u64,
}

/// The parts of the run's JSON report the debrief reads, typed.
#[derive(Debug, serde::Deserialize)]
pub struct RunView {
    pub run_id: String,
    pub status: String,
    /// Targets the read-back found not contained (`None`: not checked).
    #[serde(default)]
    pub not_contained: Option<Vec<String>>,
    #[serde(default)]
    pub accounts: Vec<crate::actions::AccountStatus>,
    pub steps: Vec<StepReport>,
}

fn target_text(target: &crate::targets::Target) -> String {
    let t = serde_json::to_value(target).unwrap_or_default();
    if let (Some(key), Some(user)) = (t["key_id"].as_str(), t["user"].as_str()) {
        return format!("access key {key} of user {user}");
    }
    // A `named` resource says its own kind (`trail`).
    let kind = t["kind"]
        .as_str()
        .or_else(|| t["type"].as_str())
        .unwrap_or("target");
    let name = t["name"]
        .as_str()
        .or_else(|| t["id"].as_str())
        .or_else(|| t["arn"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| t.to_string());
    match t["scope"]["region"].as_str() {
        Some(r) => format!("{kind} {name} ({r})"),
        None => format!("{kind} {name}"),
    }
}

/// The run report's steps that ran `action`.
fn steps_of<'a>(run: &'a RunView, action: &'a str) -> impl Iterator<Item = &'a StepReport> {
    run.steps.iter().filter(move |s| s.action == action)
}

/// Outcomes from the run's JSON report.
pub fn outcomes(run: &RunView) -> Vec<Outcome> {
    let mut out = Vec::new();
    for s in &run.steps {
        for i in &s.items {
            let why = i
                .reason
                .clone()
                .or_else(|| i.error.as_ref().map(|e| e.message.clone()));
            out.push(Outcome {
                step: s.index,
                target: target_text(&i.target),
                outcome: i.outcome.as_str().to_string(),
                why,
            });
        }
    }
    out
}

fn secs(ms: u64) -> String {
    format!("+{:.1} s", ms as f64 / 1000.0)
}

/// Markdown for the debrief (also what the terminal shows).
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Tabletop: {} × {}\n", r.scenario, r.playbook);
    let _ = writeln!(
        s,
        "Live run {} against the local emulator {}: **{}** (exit {}), {} in all.\n",
        r.run_id,
        r.endpoint,
        r.status,
        r.exit_code,
        secs(r.total_ms).trim_start_matches('+')
    );
    let _ = writeln!(
        s,
        "Seeded: {} users, {} access keys, {} roles, {} instances, {} volumes, {} backup snapshots, {} trails.\n",
        r.seeded.users,
        r.seeded.access_keys,
        r.seeded.roles,
        r.seeded.instances.values().map(Vec::len).sum::<usize>(),
        r.seeded.volumes,
        r.seeded.snapshots,
        r.seeded.trails
    );
    let first = match r.first_containment_ms {
        Some(ms) => format!("{} ({})", secs(ms), r.first_containment),
        None => "never".into(),
    };
    let full = match r.full_containment_ms {
        Some(ms) => secs(ms),
        None => "not reached (see below)".into(),
    };
    let _ = writeln!(s, "- Time to first containment: {first}");
    let _ = writeln!(s, "- Time to full containment: {full}\n");
    let _ = writeln!(s, "## Timeline\n");
    let _ = writeln!(
        s,
        "| # | Step | Start | End | Calls | Throttled | Changed | Unchanged | Skipped | Failed | Status |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for t in &r.timeline {
        let _ = writeln!(
            s,
            "| {} | {} (`{}`) | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.index + 1,
            t.name,
            t.action,
            secs(t.start_ms),
            secs(t.end_ms),
            t.calls,
            t.throttled,
            t.changed,
            t.unchanged,
            t.skipped,
            t.failed,
            t.status
        );
    }
    if !r.attacker.is_empty() {
        let _ = writeln!(s, "\n## Attacker moves\n");
        for m in &r.attacker {
            let _ = writeln!(
                s,
                "- {} `{}` on {}: {} {}",
                secs(m.at_ms),
                m.action.id(),
                m.subject,
                if m.succeeded { "succeeded" } else { "failed" },
                m.detail
            );
        }
    }
    let _ = writeln!(s, "\n## Still exposed\n");
    if r.exposed.is_empty() {
        let _ = writeln!(s, "Nothing: every target reads back contained.");
    }
    for e in &r.exposed {
        let _ = writeln!(s, "- **{}**: {}", e.what, e.why);
    }
    if !r.emulator_notes.is_empty() {
        let _ = writeln!(s, "\n## The emulator is not AWS\n");
        for n in &r.emulator_notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    let _ = writeln!(s, "\n## Per resource\n");
    for t in &r.timeline {
        let items: Vec<&Outcome> = r.outcomes.iter().filter(|o| o.step == t.index).collect();
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(s, "### {}. {}\n", t.index + 1, t.name);
        for o in items {
            match &o.why {
                Some(w) => {
                    let _ = writeln!(s, "- {}: {} ({w})", o.target, o.outcome);
                }
                None => {
                    let _ = writeln!(s, "- {}: {}", o.target, o.outcome);
                }
            }
        }
        s.push('\n');
    }
    let _ = writeln!(s, "Audit log: `{}`", r.audit_log);
    s
}

/// At most `n` characters, with an ellipsis when cut (labels beside bars).
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One HTML page, no external assets: the timeline drawn in inline SVG.
pub fn html(r: &Report) -> String {
    let mut s = String::new();
    let title = esc(&format!("Tabletop: {} × {}", r.scenario, r.playbook));
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:72em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}\
         .exposed{{color:#a00}}svg text{{font-size:11px}}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(
        s,
        "<p>Run {} against {}: <strong>{}</strong> (exit {}).</p>",
        esc(&r.run_id),
        esc(&r.endpoint),
        esc(&r.status),
        r.exit_code
    );
    let _ = writeln!(
        s,
        "<ul><li>Time to first containment: {}</li><li>Time to full containment: {}</li></ul>",
        r.first_containment_ms
            .map(|ms| esc(&format!("{} ({})", secs(ms), r.first_containment)))
            .unwrap_or_else(|| "never".into()),
        r.full_containment_ms
            .map(secs)
            .unwrap_or_else(|| "not reached".into())
    );

    // The timeline: one bar per step, a red line per attacker move.
    let total = r
        .timeline
        .iter()
        .map(|t| t.end_ms)
        .chain(r.attacker.iter().map(|m| m.at_ms))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (left, width, row) = (330.0, 600.0, 22.0);
    let x = |ms: u64| left + width * ms as f64 / total;
    let height = row * (r.timeline.len() as f64 + 2.0);
    let _ = writeln!(
        s,
        "<h2>Timeline</h2>\n<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"timeline of steps and attacker moves\">",
        left + width + 20.0
    );
    for (n, t) in r.timeline.iter().enumerate() {
        let y = row * (n as f64 + 1.0);
        let colour = match t.status.as_str() {
            "done" => "#2a7",
            "failed" => "#d33",
            _ => "#999",
        };
        let _ = writeln!(
            s,
            "<text x=\"4\" y=\"{:.1}\">{}. {}</text><rect class=\"step\" data-step=\"{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{}: {} to {}, {} calls, {} throttled</title></rect>",
            y + 14.0,
            t.index + 1,
            esc(&short(&t.name, 48)),
            t.index,
            x(t.start_ms),
            y + 3.0,
            (x(t.end_ms) - x(t.start_ms)).max(2.0),
            row - 6.0,
            esc(&t.name),
            secs(t.start_ms),
            secs(t.end_ms),
            t.calls,
            t.throttled
        );
    }
    for m in &r.attacker {
        let _ = writeln!(
            s,
            "<line class=\"move\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{height:.1}\" stroke=\"#c00\" stroke-dasharray=\"4 2\"><title>{2} {3} on {4}</title></line>",
            x(m.at_ms),
            row * 0.5,
            secs(m.at_ms),
            m.action.id(),
            esc(&m.subject)
        );
    }
    if let Some(ms) = r.first_containment_ms {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{height:.1}\" stroke=\"#06c\"><title>first containment {1}</title></line>",
            x(ms),
            secs(ms)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"{:.1}\">0 s</text><text x=\"{:.1}\" y=\"{:.1}\">{}</text></svg>",
        height - 4.0,
        left + width - 40.0,
        height - 4.0,
        secs(total as u64)
    );

    let _ = writeln!(
        s,
        "<table><tr><th>#</th><th>Step</th><th>Start</th><th>End</th><th>Calls</th><th>Throttled</th><th>Changed</th><th>Failed</th><th>Status</th></tr>"
    );
    for t in &r.timeline {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.index + 1,
            esc(&t.name),
            secs(t.start_ms),
            secs(t.end_ms),
            t.calls,
            t.throttled,
            t.changed,
            t.failed,
            esc(&t.status)
        );
    }
    let _ = writeln!(s, "</table>");
    if !r.attacker.is_empty() {
        let _ = writeln!(s, "<h2>Attacker moves</h2><ul>");
        for m in &r.attacker {
            let _ = writeln!(
                s,
                "<li>{} <code>{}</code> on {}: {} {}</li>",
                secs(m.at_ms),
                m.action.id(),
                esc(&m.subject),
                if m.succeeded { "succeeded" } else { "failed" },
                esc(&m.detail)
            );
        }
        let _ = writeln!(s, "</ul>");
    }
    let _ = writeln!(s, "<h2>Still exposed</h2><ul class=\"exposed\">");
    if r.exposed.is_empty() {
        let _ = writeln!(s, "<li>Nothing: every target reads back contained.</li>");
    }
    for e in &r.exposed {
        let _ = writeln!(
            s,
            "<li><strong>{}</strong>: {}</li>",
            esc(&e.what),
            esc(&e.why)
        );
    }
    let _ = writeln!(s, "</ul>");
    if !r.emulator_notes.is_empty() {
        let _ = writeln!(s, "<h2>The emulator is not AWS</h2><ul>");
        for n in &r.emulator_notes {
            let _ = writeln!(s, "<li>{}</li>", esc(n));
        }
        let _ = writeln!(s, "</ul>");
    }
    let _ = writeln!(
        s,
        "<h2>Per resource</h2><table><tr><th>Step</th><th>Target</th><th>Outcome</th><th>Why</th></tr>"
    );
    for o in &r.outcomes {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            o.step + 1,
            esc(&o.target),
            esc(&o.outcome),
            esc(o.why.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(
        s,
        "</table>\n<p>Audit log: <code>{}</code></p>\n</body></html>",
        esc(&r.audit_log)
    );
    s
}
