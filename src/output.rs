//! Printing that never panics and never lets data steer the terminal.
//!
//! `breakglass … | head` closes the pipe early, and a containment run must not
//! die because its reader went away (std's `println!` panics on a closed
//! stdout): write errors are dropped here. And text that comes from a log, a
//! playbook or AWS can carry escape sequences (a conceal sequence once hid a
//! line of `audit show`) or bidirectional controls: every line printed goes
//! through [`clean`], which spells them out instead.

use std::borrow::Cow;

/// Whether a character would steer the terminal or reorder what it shows:
/// C0 controls but newline and tab, DEL, C1 controls, the bidirectional
/// embeddings, overrides, isolates and marks, and the line separators.
fn steers(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every steering character written as `\uXXXX` (which is also
/// a valid escape inside a JSON string, so JSON output stays JSON).
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(steers) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if steers(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `println!` to stdout, cleaned, ignoring a closed or failing stream.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = writeln!(std::io::stdout().lock(), "{}", $crate::output::clean(&text));
    }};
}

/// `print!` to stdout, cleaned, ignoring a closed or failing stream.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = write!(std::io::stdout().lock(), "{}", $crate::output::clean(&text));
    }};
}

/// `eprintln!` to stderr, cleaned, ignoring a closed or failing stream.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = writeln!(std::io::stderr().lock(), "{}", $crate::output::clean(&text));
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_bidi_controls_are_spelled_out() {
        assert_eq!(clean("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(clean("a\u{1b}[8mb"), "a\\u001b[8mb");
        assert_eq!(clean("x\u{202e}y\u{2066}"), "x\\u202ey\\u2066");
        assert_eq!(clean("bell\u{7}"), "bell\\u0007");
        let json = format!("{{\"k\":\"{}\"}}", clean("\u{202e}"));
        assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
    }
}
