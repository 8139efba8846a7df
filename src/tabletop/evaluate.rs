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
//! for negated operators). Resource policies, permissions boundaries and
//! session policies are not evaluated.

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
    let identity: Vec<&Named> = policies.identity.iter().collect();
    for (set, kind) in [
        (scps, "a service control policy"),
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
            keys.iter()
                .all(|(key, wanted)| holds(operator, request.values(key), &strings(wanted)))
        })
    })
}

/// One operator on one key.
fn holds(operator: &str, present: Option<&Vec<String>>, wanted: &[String]) -> bool {
    // The set qualifiers matter for multivalued keys, which no key the
    // tabletop puts in a request is.
    let op = operator
        .trim_start_matches("ForAnyValue:")
        .trim_start_matches("ForAllValues:");
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
        // An operator not modelled here never applies: said in the report's
        // "emulator is not AWS" section.
        _ => return false,
    };
    let positive = values
        .iter()
        .any(|v| wanted.iter().any(|w| compare(w, v) == Some(true)));
    positive != negated
}

/// How the request's time `value` compares with the policy's `wanted`.
fn date(value: &str, wanted: &str) -> Option<std::cmp::Ordering> {
    let v: jiff::Timestamp = value.parse().ok()?;
    let w: jiff::Timestamp = wanted.parse().ok()?;
    Some(v.cmp(&w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::org::deny_all_document;

    const ACCOUNT: &str = "111122223333";

    fn named(name: &str, document: &str) -> Named {
        Named {
            name: name.into(),
            document: serde_json::from_str(document).expect("test policy is JSON"),
        }
    }

    fn admin() -> Named {
        named(
            "AdministratorAccess",
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        )
    }

    fn full_access() -> Named {
        named(
            "FullAWSAccess",
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
        )
    }

    fn user(name: &str, issued: Option<&str>) -> Request {
        let arn = format!("arn:aws:iam::{ACCOUNT}:user/{name}");
        let mut r = Request {
            action: "iam:CreateAccessKey".into(),
            resource: "*".into(),
            principal: arn.clone(),
            ..Request::default()
        }
        .with("aws:PrincipalArn", arn)
        .with("aws:userid", "AIDAEXAMPLE");
        if let Some(t) = issued {
            r = r.with("aws:TokenIssueTime", t);
        }
        r
    }

    fn denied(d: &Decision, fragment: &str) -> bool {
        matches!(d, Decision::Denied(m) if m.contains(fragment))
    }

    #[test]
    fn the_quarantine_denies_everything_and_wins_over_administrator_access() {
        let quarantine = named(
            "breakglass-quarantine",
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"BreakglassQuarantine","Effect":"Deny","Action":"*","Resource":"*"}]}"#,
        );
        let p = Policies {
            identity: vec![admin(), quarantine],
            scps: Vec::new(),
        };
        let d = evaluate(&user("devops", None), &p);
        assert!(
            denied(
                &d,
                "with an explicit deny in an identity-based policy (breakglass-quarantine)"
            ),
            "{d:?}"
        );
        let p = Policies {
            identity: vec![admin()],
            scps: Vec::new(),
        };
        assert_eq!(evaluate(&user("devops", None), &p), Decision::Allowed);
    }

    #[test]
    fn deny_older_sessions_ends_sessions_issued_before_the_cutoff_and_spares_keys() {
        let revoke = named(
            "breakglass-revoke-older-sessions",
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"2026-12-02T10:00:00Z"}}}]}"#,
        );
        let p = Policies {
            identity: vec![admin(), revoke],
            scps: Vec::new(),
        };
        let older = evaluate(&user("devops", Some("2026-12-02T09:59:59Z")), &p);
        assert!(denied(&older, "explicit deny in an identity-based policy"));
        let newer = evaluate(&user("devops", Some("2026-12-02T10:00:01Z")), &p);
        assert_eq!(newer, Decision::Allowed);
        // A long-term key's request carries no aws:TokenIssueTime, so the
        // condition is false: the key must be deactivated too.
        assert_eq!(evaluate(&user("devops", None), &p), Decision::Allowed);
    }

    #[test]
    fn the_per_session_deny_matches_only_its_userid() {
        let deny = named(
            "breakglass-deny-sessions",
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:userid":["AROAEXAMPLE:stolen"]}}}]}"#,
        );
        let p = Policies {
            identity: vec![admin(), deny],
            scps: Vec::new(),
        };
        let session = |name: &str| {
            let mut r = user("x", Some("2026-12-02T09:00:00Z"));
            r.context
                .insert("aws:userid".into(), vec![format!("AROAEXAMPLE:{name}")]);
            r
        };
        assert!(denied(&evaluate(&session("stolen"), &p), "explicit deny"));
        // StringEquals is case-sensitive.
        assert_eq!(evaluate(&session("Stolen"), &p), Decision::Allowed);
        assert_eq!(evaluate(&session("colleague"), &p), Decision::Allowed);
    }

    #[test]
    fn the_freeze_binds_member_accounts_and_spares_the_responders() {
        let exempt = vec![format!("arn:aws:iam::{ACCOUNT}:user/ir/*")];
        let freeze = Named {
            name: "breakglass-freeze".into(),
            document: serde_json::from_str(&deny_all_document(&exempt)).expect("JSON"),
        };
        let p = Policies {
            identity: vec![admin()],
            scps: vec![vec![full_access()], vec![full_access(), freeze]],
        };
        let d = evaluate(&user("devops", None), &p);
        assert!(
            denied(
                &d,
                "with an explicit deny in a service control policy (breakglass-freeze)"
            ),
            "{d:?}"
        );
        let responder = user("ir/responder", None);
        assert_eq!(evaluate(&responder, &p), Decision::Allowed);
        // SCPs never bind the management account, nor service-linked roles.
        let mut management = user("devops", None);
        management.management_account = true;
        assert_eq!(evaluate(&management, &p), Decision::Allowed);
        let mut linked = user("devops", None);
        linked.service_linked = true;
        assert_eq!(evaluate(&linked, &p), Decision::Allowed);
    }

    #[test]
    fn an_assume_root_session_may_only_remove_root_credentials_under_the_freeze() {
        let freeze = Named {
            name: "freeze".into(),
            document: serde_json::from_str(&deny_all_document(&[])).expect("JSON"),
        };
        let p = Policies {
            identity: vec![admin()],
            scps: vec![vec![full_access(), freeze]],
        };
        let root = |action: &str| {
            Request {
                action: action.into(),
                resource: "*".into(),
                principal: format!("arn:aws:iam::{ACCOUNT}:root"),
                ..Request::default()
            }
            .with("aws:PrincipalArn", format!("arn:aws:iam::{ACCOUNT}:root"))
            .with("aws:AssumedRoot", "true")
        };
        assert_eq!(
            evaluate(&root("iam:DeleteAccessKey"), &p),
            Decision::Allowed
        );
        assert!(denied(
            &evaluate(&root("iam:CreateLoginProfile"), &p),
            "service control policy"
        ));
    }

    #[test]
    fn every_level_must_allow_and_identity_must_allow() {
        // A level with no Allow (FullAWSAccess detached, nothing in its
        // place) denies implicitly.
        let p = Policies {
            identity: vec![admin()],
            scps: vec![vec![full_access()], Vec::new()],
        };
        assert!(denied(
            &evaluate(&user("devops", None), &p),
            "because no service control policy allows the iam:CreateAccessKey action"
        ));
        let only_ec2 = named(
            "ec2",
            r#"{"Statement":[{"Effect":"Allow","Action":["EC2:*"],"Resource":"*"}]}"#,
        );
        let p = Policies {
            identity: vec![only_ec2],
            scps: Vec::new(),
        };
        assert!(denied(
            &evaluate(&user("devops", None), &p),
            "because no identity-based policy allows"
        ));
        let mut r = user("devops", None);
        r.action = "ec2:TerminateInstances".into();
        // Action names compare without regard to case.
        assert_eq!(evaluate(&r, &p), Decision::Allowed);
    }

    #[test]
    fn absent_keys_follow_the_documented_rules() {
        let key = Some(vec!["a".to_string()]);
        let want = ["a".to_string()];
        assert!(holds("StringEquals", key.as_ref(), &want));
        assert!(!holds("StringEquals", None, &want));
        assert!(holds("StringNotEquals", None, &want));
        assert!(holds("ArnNotLike", None, &want));
        assert!(holds("StringEqualsIfExists", None, &want));
        assert!(holds("Null", None, &["true".to_string()]));
        assert!(!holds("Null", key.as_ref(), &["true".to_string()]));
        // Negated operators with several values: none may match (NOR).
        let both = ["a".to_string(), "b".to_string()];
        assert!(!holds("StringNotEquals", key.as_ref(), &both));
        // An operator not modelled never applies.
        assert!(!holds("IpAddress", key.as_ref(), &want));
        // NotAction: everything but the listed actions.
        let s: Value = serde_json::json!({"NotAction": ["iam:Get*"]});
        let hit = |action: &str| listed(&s, "Action", "NotAction", |p| glob_match(p, action));
        assert!(hit("iam:DeleteUser"));
        assert!(!hit("iam:GetUser"));
    }
}
