//! The debrief as one self-contained HTML page: the timeline drawn in
//! inline SVG, with a legend and a time axis, then every fact the Markdown
//! has.

use std::fmt::Write as _;

use super::{Report, TIMELINE_HEADER, secs, short};

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
    let _ = writeln!(s, "<p>Seeded: {}.</p>", r.seeded_text());
    let _ = writeln!(
        s,
        "<ul><li>Time to first containment: {}</li><li>Time to full containment: {}</li></ul>",
        esc(&r.first_text()),
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
    let axis = row * (r.timeline.len() as f64 + 1.0) + 2.0;
    // A row per step, one above for the moves' heads, one below for the axis.
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
            "<line class=\"move\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{axis:.1}\" stroke=\"#c00\" stroke-dasharray=\"4 2\"><title>{2} {3} on {4}</title></line>",
            x(m.at_ms),
            row * 0.5,
            secs(m.at_ms),
            m.action.id(),
            esc(&m.on())
        );
    }
    if let Some(ms) = r.first_containment_ms {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{axis:.1}\" stroke=\"#06c\"><title>first containment {1}</title></line>",
            x(ms),
            secs(ms)
        );
    }
    // The time axis: a line under the bars, a tick and a label at each
    // round interval.
    let _ = writeln!(
        s,
        "<line class=\"axis\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{axis:.1}\" y2=\"{axis:.1}\" stroke=\"#333\"/>",
        left + width
    );
    for ms in ticks(total as u64) {
        let _ = writeln!(
            s,
            "<line class=\"tick\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{axis:.1}\" y2=\"{1:.1}\" stroke=\"#333\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(ms),
            axis + 4.0,
            axis + 16.0,
            secs(ms).trim_start_matches('+')
        );
    }
    let _ = writeln!(s, "</svg>");
    let _ = writeln!(
        s,
        "<p class=\"legend\"><span style=\"color:#2a7\">&#9632;</span> step done \
         <span style=\"color:#d33\">&#9632;</span> step failed \
         <span style=\"color:#999\">&#9632;</span> step not run or refused \
         <span style=\"color:#c00\">&#9474;</span> attacker move (dashed) \
         <span style=\"color:#06c\">&#9474;</span> first containment</p>"
    );

    let row = |cells: Vec<String>, tag: &str| {
        let cells: Vec<String> = cells
            .iter()
            .map(|c| format!("<{tag}>{}</{tag}>", esc(c)))
            .collect();
        format!("<tr>{}</tr>", cells.concat())
    };
    let header = TIMELINE_HEADER.iter().map(|h| h.to_string()).collect();
    let _ = writeln!(s, "<table>{}", row(header, "th"));
    for t in &r.timeline {
        let _ = writeln!(s, "{}", row(t.cells(), "td"));
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
                esc(&m.on()),
                if m.succeeded { "succeeded" } else { "failed" },
                esc(&m.detail)
            );
        }
        let _ = writeln!(s, "</ul>");
    }
    let _ = writeln!(s, "<h2>Still exposed</h2><ul class=\"exposed\">");
    if r.still_exposed().next().is_none() {
        let _ = writeln!(s, "<li>Nothing: every target reads back contained.</li>");
    }
    for e in r.still_exposed() {
        let _ = writeln!(
            s,
            "<li><strong>{}</strong> ({}): {}</li>",
            esc(&e.what),
            e.kind.label(),
            esc(&e.why)
        );
    }
    let _ = writeln!(s, "</ul>");
    if r.to_clean_up().next().is_some() {
        let _ = writeln!(
            s,
            "<h2>Left to clean up</h2><p>{}</p><ul class=\"leftover\">",
            esc(super::LEFTOVERS)
        );
        for e in r.to_clean_up() {
            let _ = writeln!(
                s,
                "<li><strong>{}</strong>: {}</li>",
                esc(&e.what),
                esc(&e.why)
            );
        }
        let _ = writeln!(s, "</ul>");
    }
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

/// Where the axis is marked: every 1, 2 or 5 × 10ⁿ ms, whichever gives 4 to
/// 10 marks over `total` ms, from 0.
fn ticks(total: u64) -> Vec<u64> {
    let total = total.max(1);
    let mut step = 1u64;
    'found: for magnitude in 0..12u32 {
        for base in [1u64, 2, 5] {
            step = base * 10u64.pow(magnitude);
            if total / step <= 10 {
                break 'found;
            }
        }
    }
    // Past 10¹² ms (decades) the magnitudes run out: ten marks, unrounded.
    let step = step.max(total / 10 + 1);
    (0..=total / step).map(|n| n * step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_a_legend_an_axis_and_every_count() {
        let page = html(&super::super::terminal::tests::sample());
        assert!(page.contains("class=\"legend\""), "{page}");
        assert!(page.contains("attacker move"), "{page}");
        // 2.45 s of run: a tick every 0.5 s, labelled.
        assert_eq!(page.matches("class=\"tick\"").count(), 5, "{page}");
        assert!(page.contains(">2.0 s</text>"), "{page}");
        assert!(
            page.contains("<th>Unchanged</th><th>Skipped</th>"),
            "{page}"
        );
        assert!(page.contains("Seeded:"), "{page}");
    }

    #[test]
    fn ticks_fall_on_round_times() {
        assert_eq!(
            ticks(9_500),
            [
                0, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 8_000, 9_000
            ]
        );
        assert_eq!(
            ticks(42_000),
            [
                0, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000
            ]
        );
        assert_eq!(ticks(1), [0, 1]);
        assert_eq!(ticks(0), [0, 1]);
        assert!(ticks(u64::MAX).len() <= 11);
    }
}
