//! Findings about a playbook, each tied to a file, line and column.

use std::fmt;

use serde::Serialize;

use super::{DecodeError, Pos};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The file (or the flag, such as `--var`) the problem is in.
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    #[serde(skip)]
    pub pos: Option<Pos>,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The line of the file the problem is on, quoted under it in text
    /// (see [`Problems::quote`]).
    #[serde(skip)]
    pub source_line: Option<String>,
}

impl Problem {
    pub fn error(file: &str, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_string(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            pos,
            severity: Severity::Error,
            message: message.into(),
            hint: None,
            source_line: None,
        }
    }

    pub fn warning(file: &str, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(file, pos, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A decoding error, at its own position or else at `fallback`.
    pub fn from_decode(file: &str, e: DecodeError, fallback: Option<Pos>) -> Self {
        let (message, hint) = split_expected(&e.message);
        let p = Problem::error(file, e.pos.or(fallback), message);
        match hint {
            Some(h) => p.with_hint(h),
            None => p,
        }
    }
}

/// serde's words in YAML's: a responder reads "expected a whole number",
/// not "expected u32", and "the number 1e20", not "floating point `1e20`".
fn plain(message: &str) -> String {
    let mut m = message.replace("unknown variant", "unknown value");
    // The range matters: -1 and 300 are whole numbers, just not here.
    for (rust, words) in [
        ("u8", "a whole number from 0 to 255"),
        ("u16", "a whole number from 0 to 65535"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u64", "a whole number, 0 or more"),
        ("usize", "a whole number, 0 or more"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
        ("f32", "a number"),
        ("f64", "a number"),
    ] {
        m = m.replace(&format!("expected {rust}"), &format!("expected {words}"));
    }
    // Which Rust type a map or a one-or-list value decodes into is no
    // business of the reader's.
    if let Some(i) = m.find("expected struct ") {
        m.replace_range(i.., "expected a map of keys");
    }
    if m.starts_with("data did not match any variant of untagged enum") {
        m = "expected one value or a list of them".into();
    }
    for kind in ["floating point", "integer"] {
        m = m.replace(&format!("{kind} `"), "the number `");
    }
    let m = m
        .replace("expected a sequence", "expected a list")
        .replace("invalid type: sequence", "invalid type: a list")
        .replace("invalid type: map", "invalid type: a map")
        .replace("invalid type: string ", "invalid type: ");
    // "invalid type: X, expected Y" reads better the other way round.
    match m
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        Some((found, expected)) => format!("expected {expected}, found {found}"),
        None => m,
    }
}

/// "did you mean" for a misspelt key or action id.
pub fn suggest(got: &str, known: &[&str]) -> String {
    // A name this long is no typo; comparing it costs time for nothing
    // (found by the fuzzer: a 30 KB action name).
    if got.chars().count() > 100 {
        return format!("expected one of: {}", known.join(", "));
    }
    let best = known
        .iter()
        .map(|k| (edit_distance(got, k), *k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= 3.max(got.chars().count() / 2) => format!("did you mean `{k}`?"),
        _ => format!("expected one of: {}", known.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = Vec::with_capacity(b.len() + 1);
    for (i, ca) in a.chars().enumerate() {
        cur.clear();
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// "did you mean" for a misspelt key, only when one is a near miss (a third
/// of its letters or fewer changed: `targetz`, not `region` for `action`),
/// and always with the keys allowed there, so a wrong guess hides nothing.
fn suggest_key(got: &str, known: &[&str]) -> String {
    let keys = known.join(", ");
    let near = known
        .iter()
        .map(|k| (edit_distance(got, k), *k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= 1.max(got.chars().count() / 3));
    match near {
        Some((_, k)) => format!("did you mean `{k}`? (keys here: {keys})"),
        None => format!("keys here: {keys}"),
    }
}

/// serde says "unknown field `x`, expected one of `a`, `b`": keep the first half
/// as the message and turn the list into the hint, a "did you mean" when one
/// of them is close.
fn split_expected(message: &str) -> (String, Option<String>) {
    let message = &plain(message);
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((got, tail)) = rest.split_once('`')
        && let Some(list) = tail
            .strip_prefix(", expected one of ")
            .or_else(|| tail.strip_prefix(", expected "))
    {
        let known: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
        if !known.is_empty() {
            return (
                format!("unknown field `{got}`"),
                Some(suggest_key(got, &known)),
            );
        }
    }
    if let Some(m) = message.strip_suffix(", there are no fields") {
        return (m.to_string(), Some("this takes no keys here".into()));
    }
    for sep in [", expected one of ", ", expected "] {
        if let Some(i) = message.find(sep)
            && message.starts_with("unknown")
        {
            let rest = &message[i + sep.len()..];
            return (message[..i].to_string(), Some(format!("expected {rest}")));
        }
    }
    (message.to_string(), None)
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.pos {
            Some(p) => write!(
                f,
                "{}:{}:{}: {sev}: {}",
                self.file, p.line, p.column, self.message
            )?,
            None => write!(f, "{}: {sev}: {}", self.file, self.message)?,
        }
        if let (Some(text), Some(p)) = (&self.source_line, self.pos) {
            // The line as written, tabs as spaces so the caret lines up.
            let text = text.replace('\t', " ");
            let gutter = " ".repeat(p.line.to_string().len());
            let caret = " ".repeat(p.column.saturating_sub(1) as usize);
            write!(
                f,
                "\n {gutter} |\n {} | {text}\n {gutter} | {caret}^",
                p.line
            )?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every problem found in one pass; never empty when returned as an error.
#[derive(Debug, Clone, Serialize)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Each problem with the line of `text` it points at, to quote under
    /// its message (a line too long to be useful is left out).
    pub fn quote(mut self, text: &str) -> Problems {
        let lines: Vec<&str> = text.lines().collect();
        for p in &mut self.0 {
            let line = p
                .pos
                .and_then(|pos| lines.get((pos.line as usize).checked_sub(1)?));
            p.source_line = line
                .filter(|l| l.chars().count() <= 200)
                .map(|l| l.to_string());
        }
        self
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
