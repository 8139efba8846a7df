//! Refusing input that reads differently than it parses: invalid UTF-8 and
//! bidirectional controls (Trojan Source).

use super::*;

/// The text of a YAML file, or a positioned problem where it stops being UTF-8.
pub(crate) fn utf8_text<'a>(source: &str, bytes: &'a [u8]) -> Result<&'a str, Problems> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let pos = yaml::Pos {
            line: good.iter().filter(|&&b| b == b'\n').count() as u64 + 1,
            column: (good.len() - line_start) as u64 + 1,
        };
        Problems(vec![Problem::error(
            source,
            Some(pos),
            format!(
                "the file is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )])
    })
}

/// Refuses Unicode bidirectional controls ("Trojan Source"): they make a
/// reviewer see text in a different order from what runs, and a playbook is
/// reviewed before it is trusted with a break-glass credential.
pub(crate) fn refuse_bidi_controls(source: &str, text: &str) -> Result<(), Problems> {
    let is_bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    let found: Vec<Problem> = text
        .lines()
        .enumerate()
        .flat_map(|(l, line)| {
            line.chars()
                .enumerate()
                .filter(move |&(_, c)| is_bidi(c))
                .map(move |(col, c)| (l, col, c))
        })
        .map(|(l, col, c)| {
            let pos = yaml::Pos {
                line: l as u64 + 1,
                column: col as u64 + 1,
            };
            Problem::error(
                source,
                Some(pos),
                format!(
                    "bidirectional control character U+{:04X}: it makes the text display in a different order from how it reads",
                    c as u32
                ),
            )
            .with_hint("remove it; a playbook must read as it runs")
        })
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(Problems(found))
    }
}
