//! End to end against moto: one run reaches every member account of an
//! organization through its member role, and says which it could not reach.

mod common;

use common::{Estate, Member, playbook, repo_playbook};

const REVOKE: &str = "breakglass-revoke-older-sessions";
const MEMBER_ROLE: &str = "OrganizationAccountAccessRole";

/// (user, key id) per member account.
type Keys = Vec<(String, String)>;

/// Each member gets two users (keys and console passwords) and one role.
async fn seed(members: &[Member]) -> Vec<Keys> {
    let mut keys = Vec::new();
    for m in members {
        let mut mine = Vec::new();
        for u in ["dev", "ci"] {
            let name = format!("{u}-{}", &m.id[8..]);
            let key = m.user_with_key(&name).await;
            mine.push((name, key));
        }
        m.iam
            .create_role()
            .role_name("app")
            .assume_role_policy_document("{}")
            .send()
            .await
            .expect("role");
        keys.push(mine);
    }
    keys
}

/// `run PLAYBOOK` across every member account, JSON out.
fn run_everywhere(e: &Estate, pb: &str, case: &str) -> common::Ran {
    let case = format!("case_id={case}");
    e.run(&[
        "--accounts",
        "all",
        "--output",
        "json",
        "run",
        pb,
        "--yes",
        "--no-hold",
        "--var",
        &case,
    ])
}

/// The OU or root an account sits in.
async fn parent(e: &Estate, account: &str) -> String {
    e.org()
        .list_parents()
        .child_id(account)
        .send()
        .await
        .expect("parents")
        .parents()
        .first()
        .and_then(|p| p.id())
        .expect("parent")
        .to_string()
}

/// The security groups on a member's instances' interfaces, by name.
async fn groups(m: &Member) -> Vec<String> {
    m.ec2
        .describe_instances()
        .send()
        .await
        .expect("instances")
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .flat_map(|i| i.network_interfaces())
        .flat_map(|n| n.groups())
        .filter_map(|g| g.group_name().map(str::to_string))
        .collect()
}

/// One instance in the member account.
async fn launch(m: &Member) {
    m.ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("instance");
}

/// Every seeded key has the status `want` gives for its account.
async fn assert_keys(members: &[Member], keys: &[Keys], want: impl Fn(&Member) -> &'static str) {
    for (m, mine) in members.iter().zip(keys) {
        for (user, key) in mine {
            assert_eq!(m.key_status(user, key).await, want(m), "{user} in {}", m.id);
        }
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The audit log the run wrote (its path, relative to where it ran, is in the report).
fn audit_records(e: &Estate, report: &serde_json::Value) -> Vec<serde_json::Value> {
    let path = e.path(report["audit_log"].as_str().expect("audit path"));
    std::fs::read_to_string(path)
        .expect("audit log")
        .lines()
        .map(|l| json(l)["record"].take())
        .collect()
}

#[tokio::test]
async fn credential_lockdown_contains_every_member_account() {
    let e = Estate::new().await;
    e.organization().await;
    let members = e.members(5).await;
    let keys = seed(&members).await;
    // The management account's own users stay out unless asked for.
    let home_key = e.user_with_key("home-dev").await;
    let pb = repo_playbook("credential-lockdown.yaml");
    let pb = pb.to_str().expect("path");

    let plan = e.run(&[
        "--accounts",
        "all",
        "--output",
        "json",
        "plan",
        pb,
        "--var",
        "case_id=IR-7",
    ]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    let planned = json(&plan.stdout);
    let reach: Vec<&str> = planned["accounts"]
        .as_array()
        .expect("accounts in the plan")
        .iter()
        .map(|a| a["reach"].as_str().expect("reach"))
        .collect();
    assert_eq!(reach, vec!["member"; 5], "{}", plan.stdout);
    let per_account = &planned["steps"][0]["accounts"];
    for m in &members {
        assert_eq!(
            per_account[&m.id]["would_change"], 2,
            "two keys to deactivate in {}: {per_account}",
            m.id
        );
    }
    assert!(
        plan.stderr
            .contains("management account 123456789012 is not selected"),
        "{}",
        plan.stderr
    );

    let ran = run_everywhere(&e, pb, "IR-7");
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = json(&ran.stdout);
    assert_eq!(report["status"], "completed");
    assert_eq!(report["not_contained"], serde_json::json!([]));
    for (m, mine) in members.iter().zip(&keys) {
        for (user, key) in mine {
            assert_eq!(
                m.key_status(user, key).await,
                "Inactive",
                "{user} in {}",
                m.id
            );
            assert!(!m.has_login_profile(user).await, "{user} in {}", m.id);
        }
        assert!(
            m.role_policies("app").await.contains(&REVOKE.to_string()),
            "role app in {} has its sessions revoked",
            m.id
        );
        // The role the run acts through is never revoked: that would cut the run.
        assert!(
            !m.role_policies(MEMBER_ROLE)
                .await
                .contains(&REVOKE.to_string()),
            "member role in {} left alone",
            m.id
        );
    }
    assert_eq!(e.key_status("home-dev", &home_key).await, "Active");
    // The preflight asked each account's IAM about the role the run acts as there.
    let simulated = e.proxy().simulated.lock().expect("lock").clone();
    for m in &members {
        let role = format!("arn:aws:iam::{}:role/{MEMBER_ROLE}", m.id);
        assert!(simulated.contains(&role), "{role} not in {simulated:?}");
    }

    // Every change names the account it was made in, in the audit log too.
    let records = audit_records(&e, &report);
    let member_ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
    let intents: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["event"] == "intent").collect();
    assert!(!intents.is_empty(), "intent records");
    for r in &intents {
        let account = r
            .pointer("/target/scope/account")
            .and_then(|a| a.as_str())
            .expect("account on the intent");
        assert!(member_ids.contains(&account), "{r}");
    }
    assert!(
        records.iter().any(|r| r
            .to_string()
            .contains("\"member_role\":\"OrganizationAccountAccessRole\"")),
        "the accounts record names the member role"
    );
    let verified = e.run(&[
        "audit",
        "verify",
        report["audit_log"].as_str().expect("path"),
    ]);
    assert_eq!(verified.code, 0, "{}", verified.stderr);

    // A second run finds the keys and passwords already done everywhere
    // (revocations are renewed on purpose: they cut sessions newer than the last).
    let again = run_everywhere(&e, pb, "IR-7");
    assert_eq!(again.code, 0, "{}", again.stderr);
    let again = json(&again.stdout);
    for step in [0, 3] {
        let c = &again["steps"][step]["counts"];
        assert_eq!(c["changed"], 0, "step {step}: {c}");
        assert_eq!(c["unchanged"], 10, "step {step}: {c}");
    }
}

#[tokio::test]
async fn an_unassumable_member_is_unreachable_and_the_others_are_contained() {
    let e = Estate::new().await;
    e.organization().await;
    let members = e.members(5).await;
    let keys = seed(&members).await;
    let locked = &members[2];
    e.proxy()
        .denied_roles
        .lock()
        .expect("lock")
        .insert(format!("arn:aws:iam::{}:role/{MEMBER_ROLE}", locked.id));
    let pb = repo_playbook("credential-lockdown.yaml");
    let pb = pb.to_str().expect("path");

    // The plan names it before anything changes.
    let text = e.run(&["--accounts", "all", "plan", pb, "--var", "case_id=IR-8"]);
    assert_eq!(text.code, 1, "{}", text.stderr);
    assert!(
        text.stderr.contains(&format!("UNREACHABLE {}", locked.id)),
        "{}",
        text.stderr
    );
    // Each target line names its account, and each step counts per account.
    let reached = &members[0].id;
    assert!(
        text.stdout
            .contains(&format!("of user dev-{} in {reached}", &reached[8..])),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains(&format!("account {reached}: 2 would change")),
        "{}",
        text.stdout
    );

    let ran = run_everywhere(&e, pb, "IR-8");
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let report = json(&ran.stdout);
    assert_eq!(report["status"], "completed_with_failures");
    let unreachable: Vec<&serde_json::Value> = report["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter(|a| a["reach"] == "unreachable")
        .collect();
    assert_eq!(unreachable.len(), 1, "{}", report["accounts"]);
    assert_eq!(unreachable[0]["account"], locked.id.as_str());
    assert!(
        unreachable[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("AccessDenied")),
        "{}",
        unreachable[0]
    );
    assert!(
        report["not_contained"]
            .as_array()
            .expect("read back")
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains(&locked.id))),
        "the read-back names the unreachable account: {}",
        report["not_contained"]
    );
    let locked_id = locked.id.clone();
    assert_keys(&members, &keys, |m| {
        if m.id == locked_id {
            "Active"
        } else {
            "Inactive"
        }
    })
    .await;
    let records = audit_records(&e, &report);
    assert!(
        records.iter().any(
            |r| r.to_string().contains("\"unreachable\"") && r.to_string().contains(&locked.id)
        ),
        "the audit log records the unreachable account"
    );
}

#[tokio::test]
async fn the_freeze_exempts_the_member_role_and_accounts_move_to_quarantine() {
    let e = Estate::new().await;
    let root = e.organization().await;
    let members = e.members(5).await;
    let quarantine = e
        .org()
        .create_organizational_unit()
        .parent_id(&root)
        .name("Quarantine")
        .send()
        .await
        .expect("ou")
        .organizational_unit()
        .and_then(|o| o.id())
        .expect("ou id")
        .to_string();
    for m in &members {
        launch(m).await;
    }
    seed(&members).await;
    let pb = playbook(
        &e,
        "org.yaml",
        &format!(
            "name: org-wide\nvars:\n  case_id: {{ required: true }}\naccounts: {{ all: true, exclude: [\"{}\"] }}\nsteps:\n  - action: org.apply_scp\n    with: {{ target: root }}\n  - action: org.move_accounts\n    with: {{ to: {quarantine} }}\n  - action: ec2.snapshot_volumes\n    targets: {{ instances: {{ all: true }} }}\n    with: {{ tags: {{ case: \"{{{{ case_id }}}}\" }} }}\n  - action: ec2.isolate_instances\n    targets: {{ instances: {{ all: true }} }}\n",
            members[4].id
        ),
    );
    let pb = pb.to_str().expect("path");
    let ran = e.run(&[
        "--output",
        "json",
        "run",
        pb,
        "--yes",
        "--var",
        "case_id=IR-9",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = json(&ran.stdout);

    // The SCP spared the member role while the member steps ran, then was
    // rewritten without it (the role trusts the management account): it
    // exempts the executor only.
    let (_, doc) = e.scps("breakglass-deny-all").await.remove(0);
    let exempt = doc["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"].to_string();
    assert!(
        !exempt.contains("OrganizationAccountAccessRole"),
        "{exempt}"
    );
    assert!(exempt.contains("ir-responder"), "{exempt}");
    let log_text =
        std::fs::read_to_string(e.path(report["audit_log"].as_str().expect("path"))).expect("log");
    let updates = log_text
        .lines()
        .filter(|l| l.contains("\"event\":\"intent\"") && l.contains("organizations:UpdatePolicy"))
        .count();
    assert_eq!(
        updates, 1,
        "the member-role exemption is removed once, logged"
    );
    let last = report["steps"]
        .as_array()
        .expect("steps")
        .last()
        .expect("a step");
    assert!(
        last["name"]
            .as_str()
            .is_some_and(|n| n.contains("member-role exemption removed"))
            && last["counts"]["changed"] == 1,
        "{last}"
    );

    // Four accounts moved (the fifth was excluded), each instance isolated.
    for (i, m) in members.iter().enumerate() {
        let parent = parent(&e, &m.id).await;
        let groups = groups(m).await;
        if i == 4 {
            assert_eq!(parent, root, "the excluded account stays put");
            assert!(
                !groups.iter().any(|g| g.contains("quarantine")),
                "{groups:?}"
            );
        } else {
            assert_eq!(parent, quarantine, "account {} moved", m.id);
            assert!(
                groups.iter().all(|g| g.contains("quarantine")) && !groups.is_empty(),
                "account {}: {groups:?}",
                m.id
            );
        }
    }
    let moved = report["steps"][1]["counts"]["changed"].as_u64();
    assert_eq!(moved, Some(4), "{}", report["steps"][1]);

    // Rollback moves them back to where they were and restores the groups,
    // entering each member account again.
    let log = report["audit_log"].as_str().expect("path");
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    for m in &members[..4] {
        assert_eq!(parent(&e, &m.id).await, root, "{} moved back", m.id);
        let groups = groups(m).await;
        assert!(
            !groups.iter().any(|g| g.contains("quarantine")),
            "{groups:?}"
        );
    }
}

#[tokio::test]
async fn plans_that_would_shut_out_the_fan_out_are_refused() {
    let e = Estate::new().await;
    e.organization().await;
    e.members(1).await;
    // Naming the member role in a revocation would cut the run's own sessions.
    let named = playbook(
        &e,
        "named.yaml",
        "name: named\naccounts: { all: true }\nsteps:\n  - action: iam.revoke_role_sessions\n    targets: { roles: { names: [OrganizationAccountAccessRole] } }\n",
    );
    let ran = e.run(&["run", named.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 3, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("member role"), "{}", ran.stderr);

    // A custom SCP that spares only the executor would freeze the member role.
    std::fs::write(
        e.path("narrow.json"),
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"ArnNotLike":{"aws:PrincipalArn":["arn:aws:iam::123456789012:user/ir/ir-responder"]}}}]}"#,
    )
    .expect("write policy");
    let narrow = playbook(
        &e,
        "narrow.yaml",
        "name: narrow\naccounts: { all: true }\nsteps:\n  - action: org.apply_scp\n    with: { target: root, policy: narrow.json, name: narrow }\n  - action: iam.deactivate_access_keys\n    targets: { users: { all: true } }\n",
    );
    let ran = e.run(&["run", narrow.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 3, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("OrganizationAccountAccessRole"),
        "{}",
        ran.stderr
    );
    assert!(
        !e.proxy()
            .mutations
            .lock()
            .expect("lock")
            .iter()
            .any(|m| m != "AssumeRole"),
        "nothing was changed"
    );
}

#[tokio::test]
async fn full_lockdown_contains_every_member_account() {
    let e = Estate::new().await;
    e.organization().await;
    let members = e.members(5).await;
    let keys = seed(&members).await;
    for m in &members {
        launch(m).await;
    }
    let pb = repo_playbook("full-lockdown.yaml");
    let ran = run_everywhere(&e, pb.to_str().expect("path"), "IR-10");
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = json(&ran.stdout);
    assert_eq!(report["not_contained"], serde_json::json!([]));
    for (m, mine) in members.iter().zip(&keys) {
        for (user, key) in mine {
            assert_eq!(
                m.key_status(user, key).await,
                "Inactive",
                "{user} in {}",
                m.id
            );
        }
        let instances = m.ec2.describe_instances().send().await.expect("instances");
        let instance = instances
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .expect("the member's instance");
        let groups: Vec<&str> = instance
            .network_interfaces()
            .iter()
            .flat_map(|n| n.groups())
            .filter_map(|g| g.group_name())
            .collect();
        assert_eq!(groups, vec!["breakglass-quarantine"], "{}", m.id);
        let volume = instance
            .block_device_mappings()
            .first()
            .and_then(|b| b.ebs())
            .and_then(|b| b.volume_id())
            .expect("volume");
        let snaps = m
            .ec2
            .describe_snapshots()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("volume-id")
                    .values(volume)
                    .build(),
            )
            .send()
            .await
            .expect("snapshots");
        assert!(
            snaps.snapshots().iter().any(|s| s
                .tags()
                .iter()
                .any(|t| t.key() == Some("case") && t.value() == Some("IR-10"))),
            "evidence snapshot in {}",
            m.id
        );
    }
}

#[tokio::test]
async fn a_throttled_account_does_not_hold_back_the_others() {
    let e = Estate::new().await;
    e.organization().await;
    let members = e.members(3).await;
    let mut keys = Vec::new();
    for m in &members {
        let mut mine = Vec::new();
        for i in 0..8 {
            let user = format!("u{i}");
            mine.push((user.clone(), m.user_with_key(&user).await));
        }
        keys.push(mine);
    }
    // AWS throttles the first member hard: one change a second.
    let slow = members[0].id.clone();
    let mut shaping = common::proxy::Shaping::new(std::time::Duration::ZERO, Default::default());
    shaping.account_limits.insert(slow.clone(), (1.0, 1.0));
    e.proxy().shape(std::sync::Arc::new(shaping));

    let pb = playbook(
        &e,
        "keys.yaml",
        "name: keys\naccounts: { all: true }\nsteps:\n  - action: iam.deactivate_access_keys\n    targets: { users: { all: true } }\n",
    );
    let ran = e.run(&[
        "--output",
        "json",
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--skip-preflight",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = json(&ran.stdout);
    assert!(
        report["calls"]["throttled"].as_u64() > Some(0),
        "{}",
        report["calls"]
    );
    assert_keys(&members, &keys, |_| "Inactive").await;
    // The other accounts' keys were all deactivated long before the slow
    // account's last one: its lane waits alone.
    let done = |fast: bool| -> Vec<jiff::Timestamp> {
        audit_records(&e, &report)
            .iter()
            .filter(|r| r["event"] == "result" && r["outcome"] == "changed")
            .filter(|r| (r["target"]["scope"]["account"] == slow.as_str()) != fast)
            .filter_map(|r| r["ts"].as_str()?.parse().ok())
            .collect()
    };
    let (fast, throttled) = (done(true), done(false));
    assert_eq!((fast.len(), throttled.len()), (16, 8));
    let fast_end = fast.iter().max().expect("fast results");
    let slow_end = throttled.iter().max().expect("slow results");
    let gap = slow_end.duration_since(*fast_end).as_secs_f64();
    assert!(
        gap > 3.0,
        "the fast accounts finished only {gap:.2} s before the throttled one"
    );
}

#[tokio::test]
async fn the_management_account_is_contained_only_when_asked() {
    let e = Estate::new().await;
    e.organization().await;
    let members = e.members(2).await;
    let keys = seed(&members).await;
    let home_key = e.user_with_key("home-dev").await;
    let pb = playbook(
        &e,
        "keys.yaml",
        "name: keys\nsteps:\n  - action: iam.deactivate_access_keys\n    targets: { users: { all: true } }\n",
    );
    let pb = pb.to_str().expect("path");

    // Left out by default, and the plan says what that means.
    let plan = e.run(&["--accounts", "all", "plan", pb]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stderr.contains("is not selected") && plan.stderr.contains("no SCP binds it"),
        "{}",
        plan.stderr
    );

    // Asked for: it is contained with the executor's own credential, and the
    // executor's own key is still never touched.
    let ran = e.run(&[
        "--accounts",
        "all,management",
        "--output",
        "json",
        "run",
        pb,
        "--yes",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("is included") && ran.stderr.contains("executor's own credential"),
        "{}",
        ran.stderr
    );
    let report = json(&ran.stdout);
    let reach: Vec<(&str, &str)> = report["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| {
            (
                a["account"].as_str().unwrap_or_default(),
                a["reach"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert!(reach.contains(&("123456789012", "executor")), "{reach:?}");
    assert_eq!(e.key_status("home-dev", &home_key).await, "Inactive");
    assert_eq!(
        e.key_status(&e.executor_user, &e.executor_key).await,
        "Active",
        "the executor's own key"
    );
    assert_keys(&members, &keys, |_| "Inactive").await;
}

#[tokio::test]
async fn a_freeze_with_no_member_steps_exempts_no_member_role() {
    let e = Estate::new().await;
    e.organization().await;
    e.members(1).await;
    let pb = repo_playbook("org-freeze.yaml");
    let pb = pb.to_str().expect("path");
    let notes = |ran: &common::Ran| {
        let report = json(&ran.stdout);
        report["steps"][0]["notes"].to_string()
    };
    // With or without --accounts, the freeze has no step in member accounts:
    // the member role (which trusts the management account) is not spared.
    for args in [vec![], vec!["--accounts", "all"]] {
        let mut all = args.clone();
        all.extend(["--output", "json", "run", pb, "--yes"]);
        let ran = e.run(&all);
        assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
        let notes = notes(&ran);
        assert!(notes.contains("No member role is exempted"), "{notes}");
        assert!(!notes.contains("OrganizationAccountAccessRole"), "{notes}");
    }
}

/// Root users are emulated by the loopback proxy (moto has no root user, no
/// `sts:AssumeRoot` and no `iam:ListOrganizationsFeatures`; see
/// `breakglass::tabletop::roots` for the AWS behaviour it follows).
#[tokio::test]
async fn member_root_credentials_are_deleted_only_with_centralized_root_access() {
    use breakglass::tabletop::roots::RootUser;
    let e = Estate::new().await;
    e.organization().await;
    let members = e.members(2).await;
    let (exposed, clean) = (&members[0], &members[1]);
    let roots = e.proxy().roots.clone();
    if let Ok(mut r) = roots.lock() {
        r.management = "123456789012".into();
        r.members = members.iter().map(|m| m.id.clone()).collect();
        r.users.insert(
            exposed.id.clone(),
            RootUser {
                password: true,
                access_keys: vec!["AKIAROOTONE".into(), "AKIAROOTTWO".into()],
                certificates: vec!["CERTROOT".into()],
                mfa_devices: vec![format!("arn:aws:iam::{}:mfa/root", exposed.id)],
            },
        );
    }
    let root_of = |account: &str| {
        roots
            .lock()
            .map(|r| r.users.get(account).cloned().unwrap_or_default())
            .unwrap_or_default()
    };
    let pb = repo_playbook("member-root-lockdown.yaml");
    let pb = pb.to_str().expect("path");

    // Trusted access for IAM is off: every account is out of reach, the plan
    // says how to turn it on, and nothing changes.
    let ready = e.run(&["readiness", pb]);
    assert_eq!(ready.code, 1, "{}\n{}", ready.stdout, ready.stderr);
    assert!(
        ready
            .stdout
            .contains("enable-organizations-root-credentials-management"),
        "readiness names the fix: {}",
        ready.stdout
    );
    let off = e.run(&["--output", "json", "run", pb, "--yes"]);
    assert_eq!(off.code, 1, "{}\n{}", off.stdout, off.stderr);
    assert!(
        off.stderr
            .contains("2 target(s) are out of this run's reach"),
        "the preflight says so before the run, not as unanswered checks: {}",
        off.stderr
    );
    assert!(
        off.stdout
            .contains("aws iam enable-organizations-root-credentials-management"),
        "{}",
        off.stdout
    );
    assert_eq!(root_of(&exposed.id).access_keys.len(), 2);
    let off = json(&off.stdout);
    assert!(
        off["not_contained"].as_array().is_some_and(|n| n.len() == 2
            && n.iter().all(|n| n
                .as_str()
                .is_some_and(|n| n.contains("is out of reach: trusted access for IAM")))),
        "{}",
        off["not_contained"]
    );

    // Trusted access on, the feature off: said as such.
    if let Ok(mut r) = roots.lock() {
        r.features = Some(Default::default());
    }
    let plan = e.run(&["plan", pb]);
    assert!(
        plan.stdout.contains("`RootCredentialsManagement` is off"),
        "{}",
        plan.stdout
    );

    // On, with the first deletion's answer lost: the retry meets
    // NoSuchEntity, which is the goal, and every credential goes.
    if let Ok(mut r) = roots.lock() {
        r.features = Some(["RootCredentialsManagement".to_string()].into());
    }
    let plan = e.run(&["plan", pb]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("aws iam enable-organizations-root-sessions"),
        "RootSessions off is worth a note: {}",
        plan.stdout
    );
    // The management account, selected, is out of AssumeRoot's reach.
    let with_management = e.run(&["--accounts", "all,management", "plan", pb]);
    assert!(
        with_management
            .stdout
            .contains("the management account's root user cannot be reached"),
        "{}",
        with_management.stdout
    );
    assert!(
        plan.stdout.contains("AKIAROOTONE") && plan.stdout.contains("a password"),
        "the plan names what would be deleted: {}",
        plan.stdout
    );
    assert!(
        root_of(&exposed.id).password,
        "the plan reads in an audit session and deletes nothing"
    );
    e.proxy().lose("DeleteAccessKey", 1);
    let ran = e.run(&["--output", "json", "run", pb, "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.proxy().lost("DeleteAccessKey"), 1);
    assert!(
        root_of(&exposed.id).is_empty(),
        "{:?}",
        root_of(&exposed.id)
    );
    let report = json(&ran.stdout);
    let c = &report["steps"][0]["counts"];
    assert_eq!(
        (c["changed"].as_u64(), c["unchanged"].as_u64()),
        (Some(1), Some(1)),
        "{c}"
    );
    assert!(root_of(&clean.id).is_empty());
    // Deleting took an AssumeRoot session scoped to IAMDeleteRootUserCredentials,
    // in the exposed account only; reading took audit sessions.
    let sessions = roots.lock().map(|r| r.sessions()).unwrap_or_default();
    let took = |account: &str, task: &str| sessions.iter().any(|(a, t)| a == account && t == task);
    assert!(
        took(&exposed.id, "IAMDeleteRootUserCredentials"),
        "{sessions:?}"
    );
    assert!(
        !took(&clean.id, "IAMDeleteRootUserCredentials"),
        "{sessions:?}"
    );
    assert!(
        took(&clean.id, "IAMAuditRootUserCredentials"),
        "{sessions:?}"
    );
    let verified = e.run(&[
        "audit",
        "verify",
        report["audit_log"].as_str().expect("path"),
    ]);
    assert_eq!(verified.code, 0, "{}", verified.stderr);

    // verify reads every member's root user again; a key the intruder adds
    // afterwards is drift.
    let verify = e.run(&["verify", pb]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    if let Ok(mut r) = roots.lock()
        && let Some(u) = r.users.get_mut(&exposed.id)
    {
        u.access_keys.push("AKIAROOTNEW".into());
    }
    let verify = e.run(&["verify", pb]);
    assert_ne!(verify.code, 0, "{}", verify.stdout);
    assert!(verify.stdout.contains("AKIAROOTNEW"), "{}", verify.stdout);

    // Rollback cannot bring root credentials back, and says so.
    let rollback = e.run(&[
        "rollback",
        report["audit_log"].as_str().expect("path"),
        "--yes",
    ]);
    assert!(
        rollback.stdout.contains("irreversible")
            && rollback.stdout.contains("IAMCreateRootUserPassword"),
        "{}\n{}",
        rollback.stdout,
        rollback.stderr
    );
    assert!(
        root_of(&exposed.id)
            .access_keys
            .contains(&"AKIAROOTNEW".to_string())
    );

    // An account whose member role is gone is unreachable for every other
    // step, but its root user is reached through AssumeRoot all the same.
    if let Ok(mut r) = roots.lock()
        && let Some(u) = r.users.get_mut(&exposed.id)
    {
        u.access_keys.clear();
    }
    if let Ok(mut r) = roots.lock() {
        r.users.entry(clean.id.clone()).or_default().password = true;
    }
    e.proxy()
        .denied_roles
        .lock()
        .expect("lock")
        .insert(format!("arn:aws:iam::{}:role/{MEMBER_ROLE}", clean.id));
    let roleless = e.run(&["--output", "json", "run", pb, "--yes"]);
    assert_eq!(
        roleless.code, 1,
        "unreachable is reported: {}",
        roleless.stderr
    );
    assert!(root_of(&clean.id).is_empty(), "{:?}", root_of(&clean.id));
}
