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

/// serde says "unknown field `x`, expected one of `a`, `b`": keep the first half
/// as the message and turn the list into the hint.
fn split_expected(message: &str) -> (String, Option<String>) {
    let message = &message.replace("unknown variant", "unknown value");
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
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every problem found in one pass; never empty when returned as an error.
#[derive(Debug, Clone, Serialize)]
pub struct Problems(pub Vec<Problem>);

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
