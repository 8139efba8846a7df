//! Text and JSON rendering. Results go to stdout; progress and the identity
//! header go to stderr, so `--output json` leaves stdout one JSON document.

mod audit;
mod readiness;
mod runs;

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
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RunReport {
    pub run_id: String,
    pub playbook: String,
    pub dry_run: bool,
    pub status: &'static str,
    pub identity: Identity,
    /// Where every call went unless a service has its own: `{url, source}`
    /// as `whoami` gives it, `null` for AWS's own endpoints.
    pub endpoint: Option<crate::aws::Endpoint>,
    /// The region the run's calls went to unless a step named others.
    pub region: String,
    /// Every endpoint, with where it came from (the same shape as `whoami`'s).
    pub endpoints: crate::aws::Endpoints,
    pub totals: Counts,
    pub calls: CallCounts,
    pub millis: u64,
    /// The read-back after a live run: targets still not contained (`None`: not checked).
    pub not_contained: Option<Vec<String>>,
    /// What holding the line after the run found and did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldSummary>,
    pub audit_log: String,
    /// The S3 copy of the audit log, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_mirror: Option<crate::audit::MirrorReport>,
    /// Hash of the last audit record: keep it elsewhere to anchor the log.
    pub audit_head: String,
    /// The last record's signature, and the public key that made it.
    pub audit_signature: String,
    pub audit_key: String,
    /// The accounts a fanned-out run reached or could not reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountStatus>,
    pub steps: Vec<StepReport>,
}

/// The JSON Schema of [`RunReport`]: what `run -o json` prints, checked in
/// as schemas/report.schema.json for whoever parses it.
pub fn report_schema() -> serde_json::Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .root_schema_for::<RunReport>()
        .to_value()
}

#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct HoldSummary {
    pub checks: u64,
    pub recontained: Vec<String>,
    pub failed: Vec<String>,
    pub interrupted: bool,
}

pub struct Printer {
    format: OutputFormat,
    detail: Detail,
    /// ANSI colour on stdout: a terminal, and neither `NO_COLOR` nor `--no-color`.
    colour: bool,
    /// The progress bars, once [`Printer::progress`] has started them: lines
    /// on stderr are printed above them.
    bars: std::sync::OnceLock<crate::progress::Progress>,
}

/// How much of a plan, run or verification text output shows (JSON always
/// has every target): a run over 300 users is a screen, not 900 lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// `-q`: the steps and targets that need the responder, and the totals.
    Quiet,
    /// A line per step, and each target that failed or is not contained.
    Summary,
    /// `-v`: every target, with the call made for it.
    Every,
}

impl Printer {
    pub fn new(format: OutputFormat, detail: Detail, no_color: bool) -> Self {
        let colour = !no_color
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::io::stdout().is_terminal();
        Printer {
            format,
            detail,
            colour,
            bars: std::sync::OnceLock::new(),
        }
    }

    pub fn detail(&self) -> Detail {
        self.detail
    }

    pub fn colour(&self) -> bool {
        self.colour
    }

    /// The lines for a step's targets: every one with `-v`, else only those
    /// `needs_responder` picks, then how many were left out.
    fn targets(
        &self,
        s: &mut String,
        step: &StepReport,
        needs_responder: impl Fn(&Item) -> bool,
        line: impl Fn(&Item) -> String,
    ) {
        let mut left_out = 0;
        for item in &step.items {
            if self.detail == Detail::Every || needs_responder(item) {
                let _ = writeln!(s, "  {}", line(item));
            } else {
                left_out += 1;
            }
        }
        if left_out > 0 && self.detail == Detail::Summary {
            let _ = writeln!(
                s,
                "  ({left_out} more target{}: -v lists each)",
                if left_out == 1 { "" } else { "s" }
            );
        }
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
                    // "1 step", "2 steps": the unit is plural.
                    let unit = match v.count {
                        1 => v.unit.trim_end_matches('s'),
                        _ => v.unit,
                    };
                    outln!("{path}: ok ({}, {} {unit})", v.name, v.count);
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
        // On stderr like the header, whatever the output format. With no
        // account reached beyond home, a note can still say why (a playbook
        // across an organization run in an account in none).
        if !accounts.is_empty() {
            let reached = accounts.iter().filter(|a| a.reach != "unreachable").count();
            errln!("  accounts: {reached} of {} reached", accounts.len());
        }
        for a in accounts {
            if let Some(e) = &a.error {
                errln!("    UNREACHABLE {}: {e}", a.account);
            }
        }
        for n in notes {
            errln!("  NOTE {n}");
        }
    }

    /// Progress bars on stderr for the phases of a run; only for text output
    /// on a terminal (never in logs or JSON).
    pub fn progress(&self) -> Option<&crate::progress::Progress> {
        if self.format != OutputFormat::Text {
            return None;
        }
        if let Some(bars) = self.bars.get() {
            return Some(bars);
        }
        let bars = crate::progress::Progress::on_terminal()?;
        Some(self.bars.get_or_init(|| bars))
    }

    /// Prints to stderr above the progress bars, if any are drawn.
    pub fn above_bars(&self, f: impl FnOnce()) {
        match self.bars.get() {
            Some(bars) => bars.suspend(f),
            None => f(),
        }
    }

    /// Text for people, or (`--output json`) this document instead.
    pub fn text_or_json<T: Serialize + ?Sized>(&self, text: &str, document: &T) {
        if self.format == OutputFormat::Json {
            return self.json(document);
        }
        outln!("{text}");
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
