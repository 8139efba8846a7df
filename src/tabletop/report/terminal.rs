//! The debrief as the terminal shows it: aligned tables, headings, and
//! colour only when wanted (a terminal, no `NO_COLOR`, no `--no-color`).
//! The Markdown and HTML files keep the per-resource detail; `-v` prints it
//! here too.

use std::fmt::Write as _;

use super::{Report, TIMELINE_HEADER, secs, short};

/// ANSI styles, or none.
struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(&self, t: &str) -> String {
        self.wrap("1", t)
    }
    fn red(&self, t: &str) -> String {
        self.wrap("1;31", t)
    }
    fn green(&self, t: &str) -> String {
        self.wrap("32", t)
    }
}

/// Rows under a header, each column as wide as its widest cell. `style`
/// colours a cell's text; padding is counted on the plain text, so colour
/// never breaks the alignment.
fn table(s: &mut String, header: &[&str], rows: &[Vec<String>], style: &dyn Fn(&str) -> String) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[String], styled: &dyn Fn(&str) -> String| {
        let mut out = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            out.push(' ');
            out.push_str(&styled(cell));
            if i + 1 < cells.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(&" ".repeat(pad + 1));
            }
        }
        let _ = writeln!(s, "{out}");
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    line(&header, &|h| h.to_string());
    for row in rows {
        line(row, style);
    }
}

/// The report for a terminal: what the Markdown says, laid out for reading
/// there. `every` adds the per-resource lines.
pub fn terminal(r: &Report, colour: bool, every: bool) -> String {
    let paint = Paint(colour);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}",
        paint.bold(&format!("Tabletop: {} × {}", r.scenario, r.playbook))
    );
    let verdict = format!("{} (exit {})", r.status, r.exit_code);
    let verdict = if r.exit_code == 0 && r.exposed.is_empty() {
        paint.green(&verdict)
    } else {
        paint.red(&verdict)
    };
    let _ = writeln!(
        s,
        "  run {} against {}: {verdict}, {} in all",
        r.run_id,
        r.endpoint,
        secs(r.total_ms).trim_start_matches('+')
    );
    let _ = writeln!(s, "  seeded: {}", r.seeded_text());
    let first = r.first_text();
    let full = match r.full_containment_ms {
        Some(ms) => secs(ms),
        None => paint.red("not reached (see below)"),
    };
    let _ = writeln!(s, "  first containment: {first}");
    let _ = writeln!(s, "  full containment:  {full}");

    let _ = writeln!(s, "\n{}", paint.bold("Timeline"));
    let rows: Vec<Vec<String>> = r.timeline.iter().map(|t| t.cells()).collect();
    let header = TIMELINE_HEADER.map(str::to_lowercase);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let style = |cell: &str| match cell {
        "done" => paint.green(cell),
        "failed" | "refused" | "not_run" => paint.red(cell),
        _ => cell.to_string(),
    };
    table(&mut s, &header, &rows, &style);

    if !r.attacker.is_empty() {
        let _ = writeln!(s, "\n{}", paint.bold("Attacker moves"));
        let rows: Vec<Vec<String>> = r
            .attacker
            .iter()
            .map(|m| {
                vec![
                    secs(m.at_ms),
                    m.action.id().to_string(),
                    m.on(),
                    if m.succeeded { "succeeded" } else { "failed" }.to_string(),
                    // Whole in the report files.
                    short(&m.detail, 100),
                ]
            })
            .collect();
        let header = ["at", "move", "on", "result", "detail"];
        table(&mut s, &header, &rows, &|c| c.to_string());
    }

    let _ = writeln!(s, "\n{}", paint.bold("Still exposed"));
    if r.still_exposed().next().is_none() {
        let _ = writeln!(
            s,
            "  {}",
            paint.green("nothing: every target reads back contained")
        );
    }
    for e in r.still_exposed() {
        let what = match e.kind.loses() {
            true => paint.red(&e.what),
            false => e.what.clone(),
        };
        let _ = writeln!(s, "  {what} [{}]: {}", e.kind.label(), e.why);
    }
    if r.to_clean_up().next().is_some() {
        let _ = writeln!(s, "\n{}", paint.bold("Left to clean up"));
        let _ = writeln!(s, "  {}", super::LEFTOVERS);
        for e in r.to_clean_up() {
            let _ = writeln!(s, "  {}: {}", e.what, e.why);
        }
    }
    if !r.emulator_notes.is_empty() {
        let _ = writeln!(s, "\n{}", paint.bold("The emulator is not AWS"));
        for n in &r.emulator_notes {
            let _ = writeln!(s, "  - {n}");
        }
    }
    if every {
        let _ = writeln!(s, "\n{}", paint.bold("Per resource"));
        let rows: Vec<Vec<String>> = r
            .outcomes
            .iter()
            .map(|o| {
                vec![
                    (o.step + 1).to_string(),
                    o.target.clone(),
                    o.outcome.clone(),
                    o.why.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(&mut s, &["step", "target", "outcome", "why"], &rows, &|c| {
            c.to_string()
        });
    }
    let _ = writeln!(s, "\naudit log: {}", r.audit_log);
    s
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{Exposed, ExposureKind, Outcome, StepTime};
    use super::*;

    /// A small report: two steps, one exposure, one outcome.
    pub(in crate::tabletop::report) fn sample() -> Report {
        let step = |index: usize, name: &str, status: &str| StepTime {
            index,
            name: name.into(),
            action: "iam.deactivate_access_keys".into(),
            status: status.into(),
            start_ms: 100 * index as u64,
            end_ms: 100 * index as u64 + 2_350,
            calls: 3,
            throttled: 0,
            changed: 2,
            unchanged: 1,
            skipped: 0,
            failed: u64::from(status == "failed"),
        };
        Report {
            scenario: "code-spaces".into(),
            playbook: "full-lockdown".into(),
            endpoint: "http://127.0.0.1:5000".into(),
            run_id: "r1".into(),
            status: "completed_with_failures".into(),
            exit_code: 1,
            seeded: Default::default(),
            timeline: vec![
                step(0, "Keys", "done"),
                step(1, "A much longer step name", "failed"),
            ],
            first_containment_ms: Some(800),
            first_containment: "key of alice".into(),
            full_containment_ms: None,
            attacker: Vec::new(),
            outcomes: vec![Outcome {
                step: 0,
                target: "access key AKIA1 of user alice".into(),
                outcome: "changed".into(),
                why: None,
            }],
            exposed: vec![Exposed {
                kind: ExposureKind::Open,
                what: "trail main".into(),
                why: "stopped at +1.0 s".into(),
            }],
            emulator_notes: Vec::new(),
            audit_log: "audit.jsonl".into(),
            total_ms: 2_450,
        }
    }

    #[test]
    fn the_report_reads_as_aligned_text_not_markdown() {
        let r = sample();
        let text = terminal(&r, false, false);
        assert!(!text.contains('|') && !text.contains("##"), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("full containment:  not reached"), "{text}");
        assert!(
            text.contains("trail main [open]: stopped at +1.0 s"),
            "{text}"
        );
        // The two step rows put their status in the same column.
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("iam.deactivate"))
            .collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert_eq!(rows[0].find("done"), rows[1].find("failed"), "{text}");
        // Per resource only with -v.
        assert!(!text.contains("AKIA1"), "{text}");
        assert!(terminal(&r, false, true).contains("access key AKIA1 of user alice"));
        // Colour marks the failure and the exposure, when wanted.
        let colour = terminal(&r, true, false);
        assert!(colour.contains("\x1b[1;31mfailed\x1b[0m"), "{colour}");
        assert!(colour.contains("\x1b[1;31mtrail main\x1b[0m"), "{colour}");
    }

    #[test]
    fn columns_line_up_and_colour_does_not_move_them() {
        let rows = vec![
            vec!["1".to_string(), "a long step name".into(), "done".into()],
            vec!["12".to_string(), "short".into(), "failed".into()],
        ];
        let mut plain = String::new();
        table(&mut plain, &["#", "step", "status"], &rows, &|c| {
            c.to_string()
        });
        let lines: Vec<&str> = plain.lines().collect();
        // Every row's last column starts at the same place.
        let at: Vec<usize> = lines
            .iter()
            .map(|l| l.rfind(|c: char| c.is_whitespace()).unwrap_or(0))
            .collect();
        assert!(at.windows(2).all(|w| w[0] == w[1]), "{plain}");
        assert_eq!(lines[1], "  1   a long step name  done");

        let paint = Paint(true);
        let mut coloured = String::new();
        table(
            &mut coloured,
            &["#", "step", "status"],
            &rows,
            &|c| match c {
                "failed" => paint.red(c),
                _ => c.to_string(),
            },
        );
        let stripped = coloured.replace("\x1b[1;31m", "").replace("\x1b[0m", "");
        assert_eq!(stripped, plain);
        assert!(coloured.contains("\x1b[1;31mfailed\x1b[0m"));
    }
}
