//! Decoding that goes on past the first problem, so a file's mistakes are
//! reported in one pass.

use serde::Deserialize;

use super::{DecodeError, Node, Pos, Value};

/// Decodes like [`decode`](super::decode), but finds every problem in the
/// node, not just the first: after an error, the mapping entry (or list
/// item) it is about is set aside and decoding runs again. An entry set aside
/// may be one its mapping requires; the "missing field" that follows for that
/// mapping is not a problem of the file.
pub fn decode_all<T: for<'de> Deserialize<'de>>(node: &Node) -> Result<T, Vec<DecodeError>> {
    let mut errors: Vec<DecodeError> = Vec::new();
    let mut current = node.clone();
    // (the mapping's position, the key) of each entry set aside.
    let mut set_aside: Vec<(Pos, String)> = Vec::new();
    // Each pass removes a node, so this ends; the cap keeps a pathological
    // file from costing more than a few dozen decodes.
    for _ in 0..64 {
        let e = match T::deserialize(&current) {
            Ok(v) if errors.is_empty() => return Ok(v),
            Ok(_) => break,
            Err(e) => e,
        };
        if errors
            .iter()
            .any(|seen| seen.pos == e.pos && seen.message == e.message)
        {
            break;
        }
        let pos = e.pos;
        let at_key = e.message.starts_with("unknown field");
        let missing = missing_field(&e.message).map(str::to_string);
        if let Some(field) = &missing {
            let ours = |(at, key): &(Pos, String)| key == field && pos.is_none_or(|p| p == *at);
            if !set_aside.iter().any(ours) {
                errors.push(e);
            }
            // The mapping is read whole before its fields are counted:
            // set it aside as a whole, and look on in its siblings.
            match pos {
                Some(p) if p != current.pos => match set_aside_at(&mut current, p, false) {
                    Some(entry) => set_aside.push(entry),
                    None => break,
                },
                _ => break,
            }
            continue;
        }
        let Some(pos) = pos else {
            errors.push(e);
            break;
        };
        errors.push(e);
        match set_aside_at(&mut current, pos, at_key) {
            Some(entry) => set_aside.push(entry),
            None => break,
        }
    }
    Err(errors)
}

/// The field named by serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Removes the innermost mapping entry or list item an error at `pos` is
/// about, and returns the position of the mapping or list it was in and its
/// key ("" for a list item). Entries are in file order, so the one holding
/// `pos` is the last starting at or before it. An unknown key's error is at
/// the key; any other error is at its value, which may be a mapping starting
/// where its own first key does.
fn set_aside_at(node: &mut Node, pos: Pos, at_key: bool) -> Option<(Pos, String)> {
    let starts_by = |p: Pos| (p.line, p.column) <= (pos.line, pos.column);
    let here = node.pos;
    match &mut node.value {
        Value::Map(entries) => {
            let i = entries.iter().rposition(|(k, _)| starts_by(k.pos))?;
            let (key, value) = &mut entries[i];
            let at = if at_key { key.pos } else { value.pos };
            if at != pos
                && let Some(inner) = set_aside_at(value, pos, at_key)
            {
                return Some(inner);
            }
            let (key, _) = entries.remove(i);
            Some((here, key.as_str().unwrap_or_default().to_string()))
        }
        Value::Seq(items) => {
            let i = items.iter().rposition(|n| starts_by(n.pos))?;
            if (at_key || items[i].pos != pos)
                && let Some(inner) = set_aside_at(&mut items[i], pos, at_key)
            {
                return Some(inner);
            }
            items.remove(i);
            Some((here, String::new()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::tests::Demo;
    use super::*;

    #[test]
    fn decode_all_finds_every_problem() {
        let node = parse("nme: x\ncount: lots\nextra: 1\ncolor: red\n").expect("parses");
        let errs = decode_all::<Demo>(&node).expect_err("three problems");
        let at: Vec<u64> = errs.iter().filter_map(|e| e.pos.map(|p| p.line)).collect();
        // `name` is missing because it is misspelt; `count` is not a number;
        // `color` is unknown. The missing `name` is reported too: it was
        // never set aside, only misspelt.
        assert_eq!(at[..3], [1, 2, 4], "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.message.contains("missing field `name`")),
            "{errs:?}"
        );
        // A required field set aside for its bad value is not also "missing".
        let node = parse("name: [1]\ncolor: red\n").expect("parses");
        let errs = decode_all::<Demo>(&node).expect_err("two problems");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            !errs.iter().any(|e| e.message.contains("missing")),
            "{errs:?}"
        );
        let node = parse("name: x\n").expect("parses");
        assert!(decode_all::<Demo>(&node).is_ok());
        // A missing field in one list item does not hide the next item's
        // problem, nor does a key set aside in one item excuse another.
        let node = parse("- count: 1\n- name: [1]\n- name: x\n  colour: red\n").expect("parses");
        let errs = decode_all::<Vec<Demo>>(&node).expect_err("three problems");
        let found: Vec<(u64, bool)> = errs
            .iter()
            .map(|e| {
                (
                    e.pos.map_or(0, |p| p.line),
                    e.message.contains("missing field `name`"),
                )
            })
            .collect();
        assert_eq!(found, [(1, true), (2, false), (4, false)], "{errs:?}");
    }
}
