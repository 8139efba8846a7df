//! The evaluator on the policy shapes breakglass writes, and on AWS's
//! documented evaluation order.

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
        ..Policies::default()
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
        ..Policies::default()
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
        ..Policies::default()
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
        ..Policies::default()
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
        document: serde_json::from_str(&deny_all_document(&exempt, None)).expect("JSON"),
    };
    let p = Policies {
        identity: vec![admin()],
        scps: vec![vec![full_access()], vec![full_access(), freeze]],
        ..Policies::default()
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
fn the_member_role_exempted_for_a_run_may_contain_but_not_leave_or_mint() {
    let member = "arn:aws:iam::*:role/OrganizationAccountAccessRole";
    let exempt = vec![format!("arn:aws:iam::{ACCOUNT}:user/ir/*")];
    let freeze = Named {
        name: "breakglass-freeze".into(),
        document: serde_json::from_str(&deny_all_document(&exempt, Some(member))).expect("JSON"),
    };
    let p = Policies {
        identity: vec![admin()],
        scps: vec![vec![full_access(), freeze]],
        ..Policies::default()
    };
    let role = "arn:aws:iam::444455556666:role/OrganizationAccountAccessRole";
    let as_member = |action: &str| {
        Request {
            action: action.into(),
            resource: "*".into(),
            principal: role.into(),
            ..Request::default()
        }
        .with("aws:PrincipalArn", role)
    };
    // What the run does there goes through ...
    for a in [
        "iam:UpdateAccessKey",
        "iam:PutRolePolicy",
        "ec2:CreateSnapshots",
    ] {
        assert_eq!(evaluate(&as_member(a), &p), Decision::Allowed, "{a}");
    }
    // ... what an intruder entering through the role does is refused.
    for a in [
        "organizations:LeaveOrganization",
        "iam:CreateUser",
        "ec2:RunInstances",
        "ec2:DeleteSnapshot",
    ] {
        let d = evaluate(&as_member(a), &p);
        assert!(
            denied(&d, "explicit deny in a service control policy"),
            "{a}: {d:?}"
        );
    }
    // The responders themselves are not bound by the role's statement.
    let mut responder = user("ir/responder", None);
    responder.action = "iam:CreateUser".into();
    assert_eq!(evaluate(&responder, &p), Decision::Allowed);
    // Once the exemption is lifted, the role is denied everything.
    let tight = Named {
        name: "breakglass-freeze".into(),
        document: serde_json::from_str(&deny_all_document(&exempt, None)).expect("JSON"),
    };
    let p = Policies {
        identity: vec![admin()],
        scps: vec![vec![full_access(), tight]],
        ..Policies::default()
    };
    assert!(denied(
        &evaluate(&as_member("iam:UpdateAccessKey"), &p),
        "explicit deny"
    ));
}

#[test]
fn the_rcp_denies_outsiders_on_a_member_accounts_resources_and_spares_insiders() {
    use crate::actions::org::apply_rcp::outside_document;
    let org = "o-exampleorgid";
    let responder = format!("arn:aws:iam::{ACCOUNT}:role/IR-BreakGlass");
    let rcp = Named {
        name: "breakglass-deny-outside".into(),
        document: serde_json::from_str(&outside_document(org, std::slice::from_ref(&responder)))
            .expect("JSON"),
    };
    let full = named(
        "RCPFullAWSAccess",
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}"#,
    );
    // The bucket policy's grant to the outsider stands in for its
    // identity policy: what remains to refuse it is the RCP.
    let p = Policies {
        identity: vec![admin()],
        rcps: vec![vec![full.clone()], vec![full, rcp]],
        ..Policies::default()
    };
    let read = |principal: &str| {
        Request {
            action: "s3:GetObject".into(),
            resource: "arn:aws:s3:::prod-exports/report.csv".into(),
            principal: principal.into(),
            ..Request::default()
        }
        .with("aws:PrincipalArn", principal)
        .with("aws:PrincipalIsAWSService", "false")
    };
    let outsider = read("arn:aws:iam::999999999999:root");
    let d = evaluate(&outsider, &p);
    assert!(
        denied(
            &d,
            "explicit deny in a resource control policy (breakglass-deny-outside)"
        ),
        "{d:?}"
    );
    let insider = read("arn:aws:iam::444455556666:role/app").with("aws:PrincipalOrgID", org);
    assert_eq!(evaluate(&insider, &p), Decision::Allowed);
    assert_eq!(evaluate(&read(&responder), &p), Decision::Allowed);
    // A level with no RCP that allows refuses everyone.
    let bare = Policies {
        identity: vec![admin()],
        rcps: vec![Vec::new()],
        ..Policies::default()
    };
    assert!(denied(
        &evaluate(&insider, &bare),
        "no resource control policy allows"
    ));
}

#[test]
fn an_assume_root_session_may_only_remove_root_credentials_under_the_freeze() {
    let freeze = Named {
        name: "freeze".into(),
        document: serde_json::from_str(&deny_all_document(&[], None)).expect("JSON"),
    };
    let p = Policies {
        identity: vec![admin()],
        scps: vec![vec![full_access(), freeze]],
        ..Policies::default()
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
        ..Policies::default()
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
        document: serde_json::from_str(&builtin_document("preserve", &exempt, None)).expect("JSON"),
    };
    let p = Policies {
        identity: vec![admin()],
        scps: vec![vec![full_access(), preserve]],
        ..Policies::default()
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
        ..Policies::default()
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
        ..Policies::default()
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
