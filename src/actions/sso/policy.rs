//! The statement breakglass adds to a permission set's inline policy to deny
//! compromised Identity Center users, and how it is recognised again.
//!
//! AWS behaviour relied on (IAM Identity Center User Guide, "Use a Deny
//! policy to revoke active user permissions" and "Deny user access"):
//! a `Deny *` in the permission set's inline policy conditioned on
//! `identitystore:userId` stops that user's role sessions, already minted
//! ones included, "without impact to other users who might be using the
//! same permission set". A permission set has one inline policy (at most
//! 32,768 characters, `PutInlinePolicyToPermissionSet`), so the statement
//! is merged into whatever is there, never replacing it.

use std::collections::BTreeSet;

use serde_json::{Value, json};

/// The statement's `Sid`: how breakglass finds its own statement again.
pub const SID: &str = "BreakglassDenyIdentityCenterUsers";

/// The condition key (`identitystore:userId` in AWS's examples; condition
/// keys are case-insensitive).
const KEY: &str = "identitystore:UserId";

/// AWS's limits on a permission set's inline policy: "32,768 bytes.
/// Maximum size of non-whitespace characters in the inline policy per
/// permission set is 10,240 bytes" (IAM Identity Center quotas).
pub const MAX_BYTES: usize = 32_768;
pub const MAX_NON_WHITESPACE: usize = 10_240;

/// The user ids the document's breakglass statement denies. A statement
/// that carries the Sid but not exactly the shape breakglass writes (a
/// `Deny` of every action on every resource, on this key alone) denies
/// nobody as far as breakglass is concerned: anyone can write a Sid, and a
/// look-alike must not make a user pass as contained.
pub fn denied(doc: Option<&str>) -> BTreeSet<String> {
    let Some(doc) = doc.and_then(|d| serde_json::from_str::<Value>(d).ok()) else {
        return BTreeSet::new();
    };
    statements(&doc)
        .into_iter()
        .filter(|s| s.get("Sid").and_then(Value::as_str) == Some(SID))
        .filter_map(ours)
        .flatten()
        .collect()
}

/// The users an exact breakglass statement denies.
fn ours(s: &Value) -> Option<BTreeSet<String>> {
    let obj = s.as_object()?;
    let every = |v: Option<&Value>| match v {
        Some(Value::String(a)) => a == "*",
        Some(Value::Array(a)) => a.len() == 1 && a[0] == "*",
        _ => false,
    };
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ["Sid", "Effect", "Action", "Resource", "Condition"].into();
    if keys != expected
        || obj.get("Effect").and_then(Value::as_str) != Some("Deny")
        || !every(obj.get("Action"))
        || !every(obj.get("Resource"))
    {
        return None;
    }
    let condition = obj.get("Condition")?.as_object()?;
    let [(op, block)] = condition.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    let block = block.as_object().filter(|_| op == "StringEquals")?;
    let [(key, ids)] = block.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    if !key.eq_ignore_ascii_case(KEY) {
        return None;
    }
    match ids {
        Value::String(id) => Some([id.clone()].into()),
        Value::Array(ids) => ids.iter().map(|i| i.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

fn statements(doc: &Value) -> Vec<&Value> {
    match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    }
}

/// `doc` with its breakglass statement (any statement with the Sid) replaced
/// by one denying `ids`, every other statement kept as it was. `Ok(None)`:
/// nothing is left, and the inline policy is to be deleted. An `Err` says
/// why the document cannot be written (unreadable, or over AWS's limit).
pub fn with_denied(doc: Option<&str>, ids: &BTreeSet<String>) -> Result<Option<String>, String> {
    let mut doc = match doc.filter(|d| !d.trim().is_empty()) {
        None => json!({ "Version": "2012-10-17", "Statement": [] }),
        Some(d) => serde_json::from_str::<Value>(d)
            .map_err(|e| format!("its inline policy is not JSON ({e})"))?,
    };
    let Some(obj) = doc.as_object_mut() else {
        return Err("its inline policy is not a JSON object".into());
    };
    let mut kept: Vec<Value> = match obj.remove("Statement") {
        None => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => return Err("its inline policy's Statement is not a list".into()),
    };
    let named_like_ours = |s: &Value| s.get("Sid").and_then(Value::as_str) == Some(SID);
    // A statement with breakglass's Sid that is not exactly what breakglass
    // writes is somebody else's: replacing it would lose it for good (no
    // rollback could give it back), so the permission set is refused.
    if kept.iter().any(|s| named_like_ours(s) && ours(s).is_none()) {
        return Err(format!(
            "its inline policy has a statement named {SID} that breakglass did not write: read it, remove or rename it, and run again"
        ));
    }
    kept.retain(|s| !named_like_ours(s));
    if !ids.is_empty() {
        kept.push(json!({
            "Sid": SID,
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": { "StringEquals": { KEY: ids } },
        }));
    }
    if kept.is_empty() {
        return Ok(None);
    }
    obj.insert("Statement".into(), Value::Array(kept));
    obj.entry("Version").or_insert_with(|| json!("2012-10-17"));
    let text = doc.to_string();
    let dense = text.chars().filter(|c| !c.is_whitespace()).count();
    if text.len() > MAX_BYTES || dense > MAX_NON_WHITESPACE {
        return Err(format!(
            "its inline policy would be {dense} non-whitespace characters ({} bytes), over AWS's {MAX_NON_WHITESPACE} ({MAX_BYTES}): free room in it, or deny the users with an SCP",
            text.len()
        ));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_statement_is_merged_and_found_again() {
        let theirs = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        let doc = with_denied(Some(theirs), &ids(&["u-1", "u-2"]))
            .expect("fits")
            .expect("some");
        assert!(doc.contains("s3:*"), "{doc}");
        assert_eq!(denied(Some(&doc)), ids(&["u-1", "u-2"]));
        // Lifting every user leaves their statement alone.
        let back = with_denied(Some(&doc), &BTreeSet::new())
            .expect("fits")
            .expect("some");
        assert_eq!(denied(Some(&back)), BTreeSet::new());
        assert!(back.contains("s3:*") && !back.contains(SID), "{back}");
        // With no policy before, nothing left means no policy.
        let only = with_denied(None, &ids(&["u-1"]))
            .expect("fits")
            .expect("some");
        assert_eq!(with_denied(Some(&only), &BTreeSet::new()), Ok(None));
    }

    #[test]
    fn a_look_alike_statement_denies_nobody() {
        for fake in [
            r#"{"Statement":[{"Sid":"BreakglassDenyIdentityCenterUsers","Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"identitystore:UserId":["u-1"]}}}]}"#,
            r#"{"Statement":[{"Sid":"BreakglassDenyIdentityCenterUsers","Effect":"Deny","Action":"s3:GetObject","Resource":"*","Condition":{"StringEquals":{"identitystore:UserId":["u-1"]}}}]}"#,
            r#"{"Statement":[{"Sid":"BreakglassDenyIdentityCenterUsers","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"identitystore:UserId":["u-1"]},"Bool":{"aws:ViaAWSService":"true"}}}]}"#,
            r#"{"Statement":[{"Sid":"BreakglassDenyIdentityCenterUsers","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:SourceIp":["u-1"]}}}]}"#,
            r#"{"Statement":[{"Sid":"BreakglassDenyIdentityCenterUsers","Effect":"Deny","NotAction":"*","Resource":"*","Condition":{"StringEquals":{"identitystore:UserId":["u-1"]}}}]}"#,
        ] {
            assert_eq!(denied(Some(fake)), BTreeSet::new(), "{fake}");
            // Nor is it overwritten: it is somebody else's.
            let refused = with_denied(Some(fake), &ids(&["u-1"]));
            assert!(
                refused.is_err_and(|e| e.contains("did not write")),
                "{fake}"
            );
        }
    }

    #[test]
    fn an_oversized_or_unreadable_policy_is_refused() {
        let big = format!(
            r#"{{"Statement":[{{"Effect":"Allow","Action":"s3:*","Resource":"{}"}}]}}"#,
            "x".repeat(MAX_NON_WHITESPACE)
        );
        assert!(with_denied(Some(&big), &ids(&["u-1"])).is_err());
        assert!(with_denied(Some("not json"), &ids(&["u-1"])).is_err());
    }
}
