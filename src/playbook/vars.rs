//! `{{ name }}` templates in step targets and parameters.

use std::collections::BTreeMap;

pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variable names a string refers to, or why its templates are malformed.
pub fn references(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(format!("unclosed `{{{{` in `{s}`"));
        };
        let name = after[..end].trim();
        if !is_identifier(name) {
            return Err(format!("`{{{{ {name} }}}}` is not a variable reference"));
        }
        out.push(name.to_string());
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Replaces each `{{ name }}` with its value; unknown names stay as written
/// (validation has already reported them).
pub fn substitute(s: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match values.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_reports() {
        let mut v = BTreeMap::new();
        v.insert("case_id".to_string(), "IR-7".to_string());
        assert_eq!(
            substitute("case {{ case_id }}/{{case_id}}", &v),
            "case IR-7/IR-7"
        );
        assert_eq!(
            references("a {{ b }} {{c}}"),
            Ok(vec!["b".into(), "c".into()])
        );
        assert!(references("{{ b").is_err());
        assert!(references("{{ a-b }}").is_err());
        assert_eq!(substitute("{{ nope }}", &v), "{{ nope }}");
    }
}
