//! What the exercise showed: the timeline of steps and attacker moves, time to
//! first and to full containment, per-resource outcomes, and what stayed
//! exposed with the reason, read back from the emulator after the run. Written
//! for the debrief as Markdown and as one self-contained HTML page.

mod buckets;
mod exposure;
mod html;
mod identities;
mod instances;
mod member_estate;
mod member_moves;
mod persistence;
mod terminal;
pub use exposure::exposures;
pub use html::html;
pub use terminal::terminal;

use std::fmt::Write as _;

use crate::report::{Item, StepReport, StepStatus};
use serde::Serialize;

use super::admin::Admin;
use super::moves::MoveRecord;
use super::scenario::{MoveKind, Scenario};
use super::seed::Seeded;
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
    pub kind: ExposureKind,
    pub what: String,
    pub why: String,
}

/// What an exposure means for the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExposureKind {
    /// Evidence or backups destroyed.
    Lost,
    /// Still usable or open to the attacker: a key, a session, a share, an
    /// instance on the network, a trail not logging, an account not reached.
    Open,
    /// Nothing the attacker can use, left to clean up after the
    /// investigation (a policy the attacker attached to a cut-off user).
    Leftover,
    /// Left out by the playbook's own selection (an instance not among its
    /// targets): named, so that the choice is seen.
    NotSelected,
    /// What AWS offers no control for (the management account's root, a
    /// service-linked role), or the emulator cannot show.
    OutOfReach,
}

impl ExposureKind {
    /// Whether it makes the exercise "not contained", whatever the run said.
    pub fn loses(self) -> bool {
        matches!(self, ExposureKind::Lost | ExposureKind::Open)
    }

    /// As the report says it beside each exposure.
    pub fn label(self) -> &'static str {
        match self {
            ExposureKind::Lost => "lost",
            ExposureKind::Open => "open",
            ExposureKind::Leftover => "to clean up",
            ExposureKind::OutOfReach => "out of reach",
            ExposureKind::NotSelected => "not selected",
        }
    }
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

/// The timeline's columns, in every rendering.
const TIMELINE_HEADER: [&str; 11] = [
    "#",
    "Step",
    "Start",
    "End",
    "Calls",
    "Throttled",
    "Changed",
    "Unchanged",
    "Skipped",
    "Failed",
    "Status",
];

impl StepTime {
    /// The step's row under [`TIMELINE_HEADER`], as plain text.
    fn cells(&self) -> Vec<String> {
        vec![
            (self.index + 1).to_string(),
            format!("{} ({})", self.name, self.action),
            secs(self.start_ms),
            secs(self.end_ms),
            self.calls.to_string(),
            self.throttled.to_string(),
            self.changed.to_string(),
            self.unchanged.to_string(),
            self.skipped.to_string(),
            self.failed.to_string(),
            self.status.clone(),
        ]
    }
}

impl Report {
    /// What is still exposed (leftovers are listed apart: nothing there is
    /// usable, and it is not the report's to hide by mixing it in).
    fn still_exposed(&self) -> impl Iterator<Item = &Exposed> {
        self.exposed
            .iter()
            .filter(|e| e.kind != ExposureKind::Leftover)
    }

    /// What nobody can use any more, left to clean up after the
    /// investigation (breakglass deletes nothing that may be evidence).
    fn to_clean_up(&self) -> impl Iterator<Item = &Exposed> {
        self.exposed
            .iter()
            .filter(|e| e.kind == ExposureKind::Leftover)
    }

    /// What seeding made: "4 users, 3 access keys, …".
    fn seeded_text(&self) -> String {
        let n = &self.seeded;
        format!(
            "{} users, {} access keys, {} roles, {} instances, {} volumes, {} backup snapshots, {} trails",
            n.users,
            n.access_keys,
            n.roles,
            n.instances.values().map(Vec::len).sum::<usize>(),
            n.volumes,
            n.snapshots,
            n.trails
        ) + &self.identities_text()
    }

    /// What seeding made beyond IAM and EC2: ", 2 Identity Center users
    /// (2 permission sets), 1 stolen session".
    fn identities_text(&self) -> String {
        let mut more = String::new();
        if let Some(ic) = &self.seeded.identity_center {
            more += &format!(
                ", {} Identity Center users ({} permission sets)",
                ic.users.len(),
                ic.permission_sets.len()
            );
        }
        if self.seeded.images > 0 {
            more += &format!(", {} images", self.seeded.images);
        }
        if self.seeded.buckets > 0 {
            more += &format!(
                ", {} buckets ({} objects)",
                self.seeded.buckets, self.seeded.objects
            );
        }
        if self.seeded.stolen_sessions > 0 {
            more += &format!(", {} stolen sessions", self.seeded.stolen_sessions);
        }
        let estates = &self.seeded.member_estates;
        if !estates.is_empty() {
            let count = |f: fn(&crate::tabletop::estate::MemberEstate) -> usize| {
                estates.values().map(f).sum::<usize>()
            };
            more += &format!(
                "; in {} member accounts: {} users, {} access keys, {} instances, {} backup snapshots",
                estates.len(),
                count(|e| e.users),
                count(|e| e.user_keys.values().map(Vec::len).sum()),
                count(|e| e.instances.values().map(Vec::len).sum()),
                count(|e| e.snapshots.values().map(Vec::len).sum()),
            );
        }
        if !self.seeded.root_users.is_empty() {
            more += &format!(
                ", {} member root users with credentials",
                self.seeded.root_users.len()
            );
        }
        more
    }

    /// When the first containment was in place, and what it was.
    fn first_text(&self) -> String {
        match self.first_containment_ms {
            Some(ms) => format!("{} ({})", secs(ms), self.first_containment),
            None => "never".into(),
        }
    }
}

/// What the "Left to clean up" section says of itself.
const LEFTOVERS: &str = "Nothing here is usable by the attacker while what the run put in place stands (each says what holds it: some only the SCP or the RCP, and work again once it is lifted); breakglass deletes nothing that may be evidence, so remove each after the investigation, and those held by an organization policy before lifting it.";

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

/// At most `n` characters, with an ellipsis when cut (labels beside bars).
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn secs(ms: u64) -> String {
    format!("+{:.1} s", ms as f64 / 1000.0)
}

/// Markdown for the debrief.
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
    let _ = writeln!(s, "Seeded: {}.\n", r.seeded_text());
    let first = r.first_text();
    let full = match r.full_containment_ms {
        Some(ms) => secs(ms),
        None => "not reached (see below)".into(),
    };
    let _ = writeln!(s, "- Time to first containment: {first}");
    let _ = writeln!(s, "- Time to full containment: {full}\n");
    let _ = writeln!(s, "## Timeline\n");
    let _ = writeln!(s, "| {} |", TIMELINE_HEADER.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(TIMELINE_HEADER.len()));
    for t in &r.timeline {
        // A `|` in a step's name would end its cell.
        let cells: Vec<String> = t.cells().iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    if !r.attacker.is_empty() {
        let _ = writeln!(s, "\n## Attacker moves\n");
        for m in &r.attacker {
            let _ = writeln!(
                s,
                "- {} `{}` on {}: {} {}",
                secs(m.at_ms),
                m.action.id(),
                m.on(),
                if m.succeeded { "succeeded" } else { "failed" },
                m.detail
            );
        }
    }
    let _ = writeln!(s, "\n## Still exposed\n");
    if r.still_exposed().next().is_none() {
        let _ = writeln!(s, "Nothing: every target reads back contained.");
    }
    for e in r.still_exposed() {
        let _ = writeln!(s, "- **{}** ({}): {}", e.what, e.kind.label(), e.why);
    }
    if r.to_clean_up().next().is_some() {
        let _ = writeln!(s, "\n## Left to clean up\n");
        let _ = writeln!(s, "{LEFTOVERS}\n");
        for e in r.to_clean_up() {
            let _ = writeln!(s, "- **{}**: {}", e.what, e.why);
        }
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
