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
mod tests {
    use super::*;
    use crate::actions::iam::PolicyKind;
    use crate::actions::org::{builtin_document, deny_all_document};

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
        let quarantine = rendered(PolicyKind::DenyAll, "2026-12-02T10:00:00Z");
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

    /// A document as breakglass renders it.
    fn rendered(kind: PolicyKind, at: &str) -> Named {
        let now: jiff::Timestamp = at.parse().expect("test time");
        Named {
            name: kind.policy_name().into(),
            document: serde_json::from_str(&kind.render(now)).expect("rendered JSON"),
        }
    }

    #[test]
    fn deny_older_sessions_ends_sessions_issued_before_the_cutoff_and_spares_keys() {
        let revoke = rendered(PolicyKind::RevokeSessions, "2026-12-02T10:00:00Z");
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
        let deny = rendered(
            PolicyKind::DenySessions {
                userids: vec!["AROAEXAMPLE:stolen".into()],
            },
            "2026-12-02T10:00:00Z",
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
    fn the_instance_guard_denies_instance_credentials_used_outside_their_vpc() {
        let guard = rendered(PolicyKind::InstanceGuard, "2026-12-02T10:00:00Z");
        let p = Policies {
            identity: vec![admin(), guard],
            scps: Vec::new(),
        };
        let instance = user("x", Some("2026-12-02T09:00:00Z"))
            .with(
                "ec2:SourceInstanceARN",
                "arn:aws:ec2:us-east-1:111122223333:instance/i-1",
            )
            .with("aws:Ec2InstanceSourceVpc", "vpc-1")
            .with("aws:Ec2InstanceSourcePrivateIPv4", "10.0.0.5");
        // From outside: no aws:SourceVpc, so the variable stands for nothing.
        let outside = evaluate(&instance, &p);
        assert!(denied(&outside, "breakglass-instance-guard"), "{outside:?}");
        // From the instance itself, through its VPC.
        let inside = instance
            .clone()
            .with("aws:SourceVpc", "vpc-1")
            .with("aws:VpcSourceIp", "10.0.0.5");
        assert_eq!(evaluate(&inside, &p), Decision::Allowed);
        // Not instance credentials: the guard does not apply.
        assert_eq!(
            evaluate(&user("x", Some("2026-12-02T09:00:00Z")), &p),
            Decision::Allowed
        );
        // AWS calling for it (aws:ViaAWSService) is spared.
        let via = instance.with("aws:ViaAWSService", "true");
        assert_eq!(evaluate(&via, &p), Decision::Allowed);
    }

    #[test]
    fn the_preserve_scp_denies_evidence_destruction_to_all_but_the_responders() {
        let exempt = vec![format!("arn:aws:iam::{ACCOUNT}:user/ir/*")];
        let preserve = Named {
            name: "breakglass-preserve".into(),
            document: serde_json::from_str(&builtin_document("preserve", &exempt)).expect("JSON"),
        };
        let p = Policies {
            identity: vec![admin()],
            scps: vec![vec![full_access(), preserve]],
        };
        let with = |action: &str, who: &str| {
            let mut r = user(who, None);
            r.action = action.into();
            evaluate(&r, &p)
        };
        for action in [
            "ec2:DeleteFlowLogs",
            "organizations:LeaveOrganization",
            "s3:PutLifecycleConfiguration",
            "cloudtrail:DeleteTrail",
        ] {
            assert!(
                denied(&with(action, "devops"), "breakglass-preserve"),
                "{action}"
            );
            assert_eq!(with(action, "ir/responder"), Decision::Allowed, "{action}");
        }
        assert_eq!(with("ec2:RunInstances", "devops"), Decision::Allowed);
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
        // An operator not modelled never applies to a present key.
        assert!(!holds("IpAddress", key.as_ref(), &want));
        // Set qualifiers decide an absent key themselves.
        assert!(holds("ForAllValues:StringNotLike", None, &want));
        assert!(!holds("ForAnyValue:StringNotEquals", None, &want));
        assert!(holds("ForAnyValue:StringEquals", key.as_ref(), &want));
        // Dates as IAM takes them: with a time, a day, epoch seconds.
        let at = Some(vec!["2026-12-02T10:00:00Z".to_string()]);
        assert!(holds(
            "DateLessThan",
            at.as_ref(),
            &["2026-12-03".to_string()]
        ));
        assert!(holds(
            "DateGreaterThan",
            at.as_ref(),
            &["1700000000".to_string()]
        ));
        // NotAction: everything but the listed actions.
        let s: Value = serde_json::json!({"NotAction": ["iam:Get*"]});
        let hit = |action: &str| listed(&s, "Action", "NotAction", |p| glob_match(p, action));
        assert!(hit("iam:DeleteUser"));
        assert!(!hit("iam:GetUser"));
    }
}
