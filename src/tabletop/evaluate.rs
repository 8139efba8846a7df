//! Policy evaluation where moto has none: whether AWS would let the
//! attacker's request through the policies the run wrote (quarantine denies,
//! deny-older-sessions, per-session denies, SCPs), so that a refused move
//! reads as AWS's `AccessDenied` instead of succeeding in the emulator.
//!
//! It follows the IAM User Guide, "Policy evaluation logic": an explicit
//! deny in any applicable policy wins; then every level of the organization
//! from its root down to the account needs an SCP that allows the action
//! (Organizations User Guide, "SCP evaluation"); then an identity-based
//! policy must allow it. SCPs do not bind the management account's users
//! and roles, nor service-linked roles (Organizations User Guide, "Service
//! control policies"). Conditions follow "IAM JSON policy elements:
//! Condition operators": a key absent from the request makes a condition
//! false, except for negated operators (true), `…IfExists` (true) and
//! `Null`; several operators or keys are ANDed, several values ORed (NORed
//! for negated operators). RCPs bind requests for resources in member
//! accounts, whoever makes them, outsiders included (Organizations User
//! Guide, "Resource control policies": they "don't affect resources in the
//! management account"); callers pass them only for such a resource of a
//! service RCPs cover. Resource policies, permissions boundaries and session
//! policies are not evaluated.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::targets::{arn_like, glob_match};

/// One request, as AWS's enforcement code sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `iam:CreateAccessKey`.
    pub action: String,
    /// The resource's ARN, or `*` when the move names none.
    pub resource: String,
    /// The principal's ARN, for the message.
    pub principal: String,
    /// Condition keys present in the request context (any case) and their
    /// values: `aws:PrincipalArn`, `aws:userid`, `aws:TokenIssueTime`.
    pub context: BTreeMap<String, Vec<String>>,
    /// The principal belongs to the organization's management account, or
    /// to an account in no organization: no SCP binds it.
    pub management_account: bool,
    /// A service-linked role: no SCP binds it.
    pub service_linked: bool,
}

impl Request {
    /// Adds a condition key to the request context.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Request {
        self.context
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.into());
        self
    }

    fn values(&self, key: &str) -> Option<&Vec<String>> {
        self.context.get(&key.to_ascii_lowercase())
    }
}

/// A policy document and what to call it in a refusal.
#[derive(Debug, Clone)]
pub struct Named {
    pub name: String,
    pub document: Value,
}

/// The policies that apply to a request.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// The principal's own policies, inline and attached.
    pub identity: Vec<Named>,
    /// SCPs by level, the organization's root first and the account last:
    /// every level must allow.
    pub scps: Vec<Vec<Named>>,
    /// RCPs by level over the resource's account, the same way; empty when
    /// none apply (a resource in the management account, or of a service
    /// RCPs do not cover).
    pub rcps: Vec<Vec<Named>>,
}

/// AWS's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// `AccessDenied`, with AWS's message shape (IAM User Guide,
    /// "Troubleshoot access denied error messages").
    Denied(String),
}

/// Evaluates `request` against `policies` the way AWS does.
pub fn evaluate(request: &Request, policies: &Policies) -> Decision {
    let scps_bind = !request.management_account && !request.service_linked;
    let levels: &[Vec<Named>] = if scps_bind { &policies.scps } else { &[] };
    let denied = |why: String| {
        Decision::Denied(format!(
            "AccessDenied: {} is not authorized to perform: {} on resource: {} {why}",
            request.principal, request.action, request.resource
        ))
    };
    let scps: Vec<&Named> = levels.iter().flatten().collect();
    let rcps: Vec<&Named> = policies.rcps.iter().flatten().collect();
    let identity: Vec<&Named> = policies.identity.iter().collect();
    for (set, kind) in [
        (scps, "a service control policy"),
        (rcps, "a resource control policy"),
        (identity, "an identity-based policy"),
    ] {
        if let Some(p) = set.iter().find(|p| matches(request, &p.document, "Deny")) {
            return denied(format!("with an explicit deny in {kind} ({})", p.name));
        }
    }
    if levels
        .iter()
        .any(|level| !level.iter().any(|p| matches(request, &p.document, "Allow")))
    {
        return denied(format!(
            "because no service control policy allows the {} action",
            request.action
        ));
    }
    if policies
        .rcps
        .iter()
        .any(|level| !level.iter().any(|p| matches(request, &p.document, "Allow")))
    {
        return denied(format!(
            "because no resource control policy allows the {} action",
            request.action
        ));
    }
    if !policies
        .identity
        .iter()
        .any(|p| matches(request, &p.document, "Allow"))
    {
        return denied(format!(
            "because no identity-based policy allows the {} action",
            request.action
        ));
    }
    Decision::Allowed
}

/// Whether any statement of `document` with `effect` applies to `request`.
fn matches(request: &Request, document: &Value, effect: &str) -> bool {
    let statements = match &document["Statement"] {
        Value::Array(s) => s.iter().collect(),
        s @ Value::Object(_) => vec![s],
        _ => Vec::new(),
    };
    statements.into_iter().any(|s| {
        s["Effect"] == effect
            && listed(s, "Action", "NotAction", |p| {
                glob_match(
                    &p.to_ascii_lowercase(),
                    &request.action.to_ascii_lowercase(),
                )
            })
            && listed(s, "Resource", "NotResource", |p| {
                glob_match(p, &request.resource)
            })
            && conditions(request, &s["Condition"])
    })
}

/// `Action`/`NotAction` (or `Resource`/`NotResource`): one of the patterns
/// matches, or none does.
fn listed(s: &Value, positive: &str, negative: &str, hit: impl Fn(&str) -> bool) -> bool {
    let any = |v: &Value| strings(v).iter().any(|p| hit(p));
    match (&s[positive], &s[negative]) {
        (v, _) if !v.is_null() => any(v),
        (_, v) if !v.is_null() => !any(v),
        _ => false,
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

/// Every operator block, and every key within it, must hold.
fn conditions(request: &Request, block: &Value) -> bool {
    let Some(operators) = block.as_object() else {
        return true;
    };
    operators.iter().all(|(operator, keys)| {
        keys.as_object().is_some_and(|keys| {
            keys.iter().all(|(key, wanted)| {
                let wanted = resolve(request, &strings(wanted));
                holds(operator, request.values(key), &wanted)
            })
        })
    })
}

/// Policy variables (`${aws:SourceVpc}`) take the request's values; one
/// whose key the request lacks stands for nothing, so it matches nothing
/// and its negation holds (IAM User Guide, "Policy variables": the guard
/// breakglass writes relies on this).
fn resolve(request: &Request, wanted: &[String]) -> Vec<String> {
    wanted
        .iter()
        .flat_map(
            |w| match w.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                Some(key) => request.values(key).cloned().unwrap_or_default(),
                None => vec![w.clone()],
            },
        )
        .collect()
}

/// One operator on one key.
fn holds(operator: &str, present: Option<&Vec<String>>, wanted: &[String]) -> bool {
    // Set qualifiers decide an absent key on their own: `ForAllValues` is
    // true over an empty set and `ForAnyValue` false, whatever the operator
    // ("Set operators for multivalued context keys"). A present key is
    // single-valued in every request the tabletop makes.
    let absent_key = present.is_none_or(|v| v.is_empty());
    if let Some(rest) = operator.strip_prefix("ForAllValues:") {
        return absent_key || holds(rest, present, wanted);
    }
    if let Some(rest) = operator.strip_prefix("ForAnyValue:") {
        return !absent_key && holds(rest, present, wanted);
    }
    let op = operator;
    let (op, if_exists) = match op.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (op, false),
    };
    if op == "Null" {
        let absent = present.is_none_or(|v| v.is_empty());
        return wanted
            .iter()
            .any(|w| w.eq_ignore_ascii_case("true") == absent);
    }
    let negated = op.contains("Not");
    let Some(values) = present.filter(|v| !v.is_empty()) else {
        return if_exists || negated;
    };
    let compare: fn(&str, &str) -> Option<bool> = match op.replace("Not", "").as_str() {
        "StringEquals" => |w, v| Some(w == v),
        "StringEqualsIgnoreCase" => |w, v| Some(w.eq_ignore_ascii_case(v)),
        "StringLike" => |w, v| Some(glob_match(w, v)),
        "ArnEquals" | "ArnLike" => |w, v| Some(arn_like(w, v)),
        "Bool" => |w, v| Some(w.eq_ignore_ascii_case(v)),
        "DateEquals" => |w, v| date(v, w).map(|o| o.is_eq()),
        "DateLessThan" => |w, v| date(v, w).map(|o| o.is_lt()),
        "DateLessThanEquals" => |w, v| date(v, w).map(|o| o.is_le()),
        "DateGreaterThan" => |w, v| date(v, w).map(|o| o.is_gt()),
        "DateGreaterThanEquals" => |w, v| date(v, w).map(|o| o.is_ge()),
        // An operator not modelled here (numeric, IP, binary) never applies:
        // the key is present, so its negation is not decided either.
        _ => return false,
    };
    let positive = values
        .iter()
        .any(|v| wanted.iter().any(|w| compare(w, v) == Some(true)));
    positive != negated
}

/// How the request's time `value` compares with the policy's `wanted`
/// (ISO 8601 with a time, a date alone, or epoch seconds, as IAM takes).
fn date(value: &str, wanted: &str) -> Option<std::cmp::Ordering> {
    Some(instant(value)?.cmp(&instant(wanted)?))
}

fn instant(s: &str) -> Option<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return jiff::Timestamp::from_second(secs).ok();
    }
    let day: jiff::civil::Date = s.parse().ok()?;
    day.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
