//! End to end against moto: the org-wide SCP freeze and EC2 evidence
//! preservation and isolation, across two regions, read back through the API.

mod common;

use aws_sdk_ec2::types::Filter;
use common::{Estate, playbook, repo_playbook};

/// The breakglass SCP's (id, parsed document).
#[tokio::test]
async fn org_freeze_exempts_the_executor_and_is_idempotent() {
    let e = Estate::new().await;
    let root = e.organization().await;
    let pb = repo_playbook("org-freeze.yaml");
    let pb = pb.to_str().expect("path");

    let plan = e.run(&["plan", pb]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout
            .contains("do not restrict the management account 123456789012"),
        "{}",
        plan.stdout
    );

    let ran = e.run(&["run", pb, "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let policies = e.scps("breakglass-deny-all").await;
    assert_eq!(policies.len(), 1);
    let (id, doc) = &policies[0];
    let statement = &doc["Statement"][0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(statement["Action"], "*");
    let exempt: Vec<&str> = statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
        .as_array()
        .expect("exemptions")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        exempt.contains(&"arn:aws:iam::123456789012:user/ir/ir-responder"),
        "{exempt:?}"
    );
    assert!(
        exempt.contains(&"arn:aws:iam::*:role/IR-BreakGlass"),
        "{exempt:?}"
    );
    let attached = e
        .org()
        .list_policies_for_target()
        .target_id(&root)
        .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("attached");
    assert!(
        attached
            .policies()
            .iter()
            .any(|p| p.id() == Some(id.as_str()))
    );

    // A rerun finds it in place: no second policy, nothing changed.
    let again = e.run(&["run", pb, "--yes", "--output", "json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let report: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(report["totals"]["changed"], 0);
    assert_eq!(report["totals"]["unchanged"], 1);
    assert_eq!(e.scps("breakglass-deny-all").await.len(), 1);

    // Detaching ends the freeze.
    let thaw = playbook(
        &e,
        "thaw.yaml",
        "name: thaw\nsteps:\n  - action: org.detach_scp\n    with: { target: root }\n",
    );
    let ran = e.run(&["run", thaw.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let attached = e
        .org()
        .list_policies_for_target()
        .target_id(&root)
        .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("attached");
    assert!(
        !attached
            .policies()
            .iter()
            .any(|p| p.id() == Some(id.as_str()))
    );
}

/// Associates instance profile `arn` with instance `id` (us-east-1).
async fn associate(e: &Estate, id: &str, arn: &str) {
    e.ec2("us-east-1")
        .associate_iam_instance_profile()
        .instance_id(id)
        .iam_instance_profile(
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .arn(arn)
                .build(),
        )
        .send()
        .await
        .expect("associate");
}

/// An instance profile `app-profile` holding role `app-role`.
async fn instance_profile(e: &Estate) -> String {
    e.role("app-role", "/").await;
    let profile = e
        .iam
        .create_instance_profile()
        .instance_profile_name("app-profile")
        .send()
        .await
        .expect("profile");
    e.iam
        .add_role_to_instance_profile()
        .instance_profile_name("app-profile")
        .role_name("app-role")
        .send()
        .await
        .expect("add role");
    profile
        .instance_profile()
        .map(|p| p.arn().to_string())
        .expect("arn")
}

#[tokio::test]
async fn compromised_instance_is_preserved_and_isolated() {
    let mut e = Estate::new().await;
    e.with_proxy();
    let ids = e.instances("us-east-1", 2, false).await;
    let profile_arn = instance_profile(&e).await;
    associate(&e, &ids[0], &profile_arn).await;
    let (target, bystander) = (&ids[0], &ids[1]);
    let before = e.instance("us-east-1", target).await;
    let original_groups: Vec<String> = before.network_interfaces()[0]
        .groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    let volume = before.block_device_mappings()[0]
        .ebs()
        .and_then(|b| b.volume_id())
        .expect("root volume")
        .to_string();

    let pb = repo_playbook("compromised-instance.yaml");
    let log = e.path("ci.jsonl");
    let var = format!("instance_id={target}");
    let ran = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--var",
        &var,
        "--var",
        "case_id=IR-9",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);

    let ec2 = e.ec2("us-east-1");
    let snaps = ec2
        .describe_snapshots()
        .filters(Filter::builder().name("volume-id").values(&volume).build())
        .send()
        .await
        .expect("snapshots");
    let snap = snaps.snapshots().first().expect("a snapshot of the volume");
    let tag = |k: &str| {
        snap.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    assert_eq!(tag("case").as_deref(), Some("IR-9"));
    assert_eq!(
        tag("breakglass:source-instance").as_deref(),
        Some(target.as_str())
    );

    let after = e.instance("us-east-1", target).await;
    let groups: Vec<String> = after.network_interfaces()[0]
        .groups()
        .iter()
        .filter_map(|g| g.group_name().map(str::to_string))
        .collect();
    assert_eq!(groups, vec!["breakglass-quarantine".to_string()]);
    let quarantine = e
        .security_groups_named("us-east-1", "breakglass-quarantine")
        .await;
    let q = quarantine.first().expect("quarantine group");
    assert!(
        q.ip_permissions_egress().is_empty(),
        "egress must be revoked"
    );
    assert!(q.ip_permissions().is_empty());
    let protection = ec2
        .describe_instance_attribute()
        .instance_id(target)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .expect("attribute");
    assert_eq!(
        protection.disable_api_termination().and_then(|v| v.value()),
        Some(true)
    );

    // Its role is gone from the instance and the role's sessions are revoked.
    let assoc = ec2
        .describe_iam_instance_profile_associations()
        .filters(Filter::builder().name("instance-id").values(target).build())
        .send()
        .await
        .expect("associations");
    assert!(
        assoc
            .iam_instance_profile_associations()
            .iter()
            .all(|a| a.state().map(|s| s.as_str()) != Some("associated")),
        "{assoc:?}"
    );
    assert!(
        e.inline_policy("role", "app-role", "breakglass-revoke-older-sessions")
            .await
            .is_some()
    );

    // The bystander is untouched.
    let other = e.instance("us-east-1", bystander).await;
    assert_ne!(
        other.network_interfaces()[0].groups()[0].group_name(),
        Some("breakglass-quarantine")
    );

    // The audit log holds the original groups for rollback.
    let text = std::fs::read_to_string(&log).expect("log");
    let intent = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["record"].take())
        .find(|r| r["event"] == "intent" && r["op"]["op"] == "isolate_instance")
        .expect("isolation intent");
    let recorded: Vec<String> = intent["op"]["interfaces"][0]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    assert_eq!(recorded, original_groups);
    assert_eq!(
        e.run(&["audit", "verify", log.to_str().expect("path")])
            .code,
        0
    );

    // A rerun converges: already snapshotted, protected and isolated.
    let again = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--var",
        &var,
        "--var",
        "case_id=IR-9",
        "--output",
        "json",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let report: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(report["totals"]["changed"], 0, "{report}");
}

#[tokio::test]
async fn full_lockdown_contains_two_regions_and_spares_the_executor() {
    let mut e = Estate::new().await;
    e.with_proxy();
    e.organization().await;
    let alice = e.user_with_key("alice").await;
    e.role("app", "/").await;
    let east = e.instances("us-east-1", 1, false).await;
    let west = e.instances("eu-west-1", 1, false).await;
    let pb = repo_playbook("full-lockdown.yaml");
    let pb = pb.to_str().expect("path");

    // Dry run first: EC2 answers DryRun=true, nothing changes.
    let dry = e.run(&["run", pb, "--dry-run", "--var", "case_id=IR-10"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains("permission check: allowed"),
        "{}",
        dry.stdout
    );
    assert!(e.scps("breakglass-deny-all").await.is_empty());
    assert_eq!(e.key_status("alice", &alice).await, "Active");

    let log = e.path("full.jsonl");
    let ran = e.run(&[
        "run",
        pb,
        "--yes",
        "--no-hold",
        "--var",
        "case_id=IR-10",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.scps("breakglass-deny-all").await.len(), 1);
    assert_eq!(e.key_status("alice", &alice).await, "Inactive");
    assert_eq!(
        e.key_status(&e.executor_user, &e.executor_key).await,
        "Active"
    );
    for (region, id) in [("us-east-1", &east[0]), ("eu-west-1", &west[0])] {
        let i = e.instance(region, id).await;
        assert_eq!(
            i.network_interfaces()[0].groups()[0].group_name(),
            Some("breakglass-quarantine"),
            "{region}"
        );
    }
    assert_eq!(
        e.run(&["audit", "verify", log.to_str().expect("path")])
            .code,
        0
    );
    let verify = e.run(&["verify", pb, "--var", "case_id=IR-10"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
}

/// The flagship's `accounts: all` in an account that is in no organization
/// still contains that account (moto answers DescribeOrganization with
/// AWSOrganizationsNotInUseException, as AWS does): nothing widens, and
/// nothing is silently skipped.
#[tokio::test]
async fn the_flagship_in_a_standalone_account_contains_that_account() {
    let mut e = Estate::new().await;
    e.with_proxy();
    let alice = e.user_with_key("alice").await;
    let east = e.instances("us-east-1", 1, false).await;
    let pb = repo_playbook("full-lockdown.yaml");
    let ran = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--no-hold",
        "--var",
        "case_id=IR-SOLO",
    ]);
    assert!(
        ran.stderr.contains("is in no organization"),
        "{}\n{}",
        ran.stdout,
        ran.stderr
    );
    assert_eq!(e.key_status("alice", &alice).await, "Inactive");
    let i = e.instance("us-east-1", &east[0]).await;
    assert_eq!(
        i.network_interfaces()[0].groups()[0].group_name(),
        Some("breakglass-quarantine")
    );
    // The SCP and RCP steps have no organization to act on: the run says
    // so (exit 1).
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
}

#[tokio::test]
async fn one_stop_protected_instance_does_not_stop_the_rest() {
    let e = Estate::new().await;
    let free = e.instances("us-east-1", 2, false).await;
    let protected = e.instances("us-east-1", 1, true).await;
    let pb = playbook(
        &e,
        "stop.yaml",
        "name: stop\nsteps:\n  - action: ec2.snapshot_volumes\n    targets: { instances: { all: true } }\n  - action: ec2.stop_instances\n    targets: { instances: { all: true } }\n    allow_irreversible: true\n",
    );
    let ran = e.run(&["run", pb.to_str().expect("path"), "--yes"]);
    assert_eq!(
        ran.code, 1,
        "one stop fails: {}\n{}",
        ran.stdout, ran.stderr
    );
    for id in &free {
        let state = e
            .instance("us-east-1", id)
            .await
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string());
        assert!(
            matches!(state.as_deref(), Some("stopped" | "stopping")),
            "{id}: {state:?}"
        );
    }
    let state = e
        .instance("us-east-1", &protected[0])
        .await
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string());
    assert_eq!(state.as_deref(), Some("running"));
    assert!(
        ran.stdout.contains("OperationNotPermitted"),
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn protect_backups_locks_every_snapshot_in_governance_mode() {
    let mut e = Estate::new().await;
    e.with_proxy();
    let ec2 = e.ec2("eu-west-1");
    let volume = ec2
        .create_volume()
        .availability_zone("eu-west-1a")
        .size(8)
        .send()
        .await
        .expect("volume");
    let snap = ec2
        .create_snapshot()
        .volume_id(volume.volume_id().expect("id"))
        .send()
        .await
        .expect("snapshot");
    let snap_id = snap.snapshot_id().expect("id").to_string();
    let pb = repo_playbook("protect-backups.yaml");
    let pb = pb.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let locks = e
        .proxy
        .as_ref()
        .expect("proxy")
        .locks
        .lock()
        .expect("locks")
        .clone();
    assert_eq!(locks.get(&snap_id), Some(&("governance".to_string(), 30)));
    // Public snapshots other accounts own are never selected.
    assert_eq!(locks.len(), 1, "{locks:?}");
    let again = e.run(&["run", pb, "--yes", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(report["totals"]["unchanged"], 1, "{report}");
    assert_eq!(report["totals"]["changed"], 0);

    // Compliance mode only when written, and the plan says what it means.
    let strict = playbook(
        &e,
        "strict.yaml",
        "name: strict\nregions: [eu-west-1]\nsteps:\n  - action: ec2.lock_snapshots\n    targets: { snapshots: { all: true } }\n    with: { mode: compliance, duration_days: 7 }\n    allow_irreversible: true\n",
    );
    let plan = e.run(&["plan", strict.to_str().expect("path")]);
    assert!(plan.stdout.contains("COMPLIANCE mode"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("LockMode=compliance"),
        "{}",
        plan.stdout
    );

    // With a cool-off, a compliance lock can still be lifted within it: the
    // rollback does, as EC2 allows during `compliance-cooloff`.
    let cooled = playbook(
        &e,
        "cooled.yaml",
        "name: cooled\nregions: [eu-west-1]\nsteps:\n  - action: ec2.lock_snapshots\n    targets: { snapshots: { all: true } }\n    with: { mode: compliance, duration_days: 7, cool_off_hours: 24 }\n    allow_irreversible: true\n",
    );
    let cooled = cooled.to_str().expect("path");
    let plan = e.run(&["plan", cooled]);
    assert!(plan.stdout.contains("CoolOffPeriod=24"), "{}", plan.stdout);
    let log = e.path("cooled.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", cooled, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let lock = |e: &Estate| {
        e.proxy()
            .locks
            .lock()
            .expect("locks")
            .get(&snap_id)
            .cloned()
    };
    assert_eq!(lock(&e), Some(("compliance-cooloff".to_string(), 7)));
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(lock(&e), None, "lifted within the cool-off");

    // By age: a snapshot taken today is not a day old.
    let aged = playbook(
        &e,
        "aged.yaml",
        "name: aged\nregions: [eu-west-1]\nsteps:\n  - action: ec2.lock_snapshots\n    targets: { snapshots: { all: true, older_than_days: 1 } }\n",
    );
    let ran = e.run(&["run", aged.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(lock(&e), None, "too young to be selected");

    let governance = playbook(
        &e,
        "governance.yaml",
        "name: g\nregions: [eu-west-1]\nsteps:\n  - action: ec2.lock_snapshots\n    targets: { snapshots: { all: true } }\n    with: { mode: governance, cool_off_hours: 24 }\n",
    );
    let checked = e.run(&["validate", governance.to_str().expect("path")]);
    assert_eq!(checked.code, 2, "{}", checked.stdout);
    assert!(
        checked.stderr.contains("compliance mode only"),
        "{}",
        checked.stderr
    );
}

#[tokio::test]
async fn a_failed_snapshot_keeps_its_instance_running() {
    let mut e = Estate::new().await;
    let ids = e.instances("us-east-1", 2, false).await;
    let proxy = e.with_proxy();
    proxy
        .failing_snapshots
        .lock()
        .expect("lock")
        .insert(ids[0].clone());
    let pb = playbook(
        &e,
        "snap-stop.yaml",
        "name: snap-stop\nsteps:\n  - action: ec2.snapshot_volumes\n    targets: { instances: { all: true } }\n    on_failure: continue\n  - action: ec2.stop_instances\n    targets: { instances: { all: true } }\n    allow_irreversible: true\n",
    );
    let ran = e.run(&["run", pb.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("IncorrectState"), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("its snapshot failed earlier"),
        "{}",
        ran.stdout
    );
    // The read-back after the run does not call that instance contained.
    assert!(
        ran.stdout.contains("verify: NOT CONTAINED after the run"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains(&format!("instance {} (us-east-1)", ids[0])),
        "{}",
        ran.stdout
    );
    let state = |i: aws_sdk_ec2::types::Instance| {
        i.state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
    };
    assert_eq!(
        state(e.instance("us-east-1", &ids[0]).await).as_deref(),
        Some("running")
    );
    assert!(matches!(
        state(e.instance("us-east-1", &ids[1]).await).as_deref(),
        Some("stopped" | "stopping")
    ));
}

#[tokio::test]
async fn a_custom_scp_must_spare_the_executor() {
    let e = Estate::new().await;
    e.organization().await;
    std::fs::write(
        e.path("lockout.json"),
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"All","Effect":"Deny","Action":"*","Resource":"*"}]}"#,
    )
    .expect("write");
    std::fs::write(
        e.path("spare.json"),
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"S3","Effect":"Deny","Action":"s3:*","Resource":"*",
           "Condition":{"ArnNotLike":{"aws:PrincipalArn":["arn:aws:iam::*:user/ir/*"]}}}]}"#,
    )
    .expect("write");
    let bad = playbook(
        &e,
        "bad.yaml",
        "name: bad\nsteps:\n  - action: org.apply_scp\n    with: { target: root, policy: lockout.json, name: custom }\n",
    );
    let ran = e.run(&["run", bad.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 3, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("does not exempt arn:aws:iam"),
        "{}",
        ran.stderr
    );
    assert!(e.scps("custom").await.is_empty(), "nothing was created");

    let good = playbook(
        &e,
        "good.yaml",
        "name: good\nsteps:\n  - action: org.apply_scp\n    with: { target: root, policy: spare.json, name: custom }\n",
    );
    let ran = e.run(&["run", good.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let policies = e.scps("custom").await;
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].1["Statement"][0]["Action"], "s3:*");

    let missing = playbook(
        &e,
        "missing.yaml",
        "name: m\nsteps:\n  - action: org.apply_scp\n    with: { target: root, policy: nope.json }\n",
    );
    let ran = e.run(&["validate", missing.to_str().expect("path")]);
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr
            .contains("missing.yaml:4:11: error: step 1: cannot read policy file"),
        "{}",
        ran.stderr
    );
}

#[tokio::test]
async fn the_break_glass_role_is_assumed_with_mfa_and_never_locked_out() {
    let e = Estate::new().await;
    e.organization().await;
    e.role("responder-role", "/ir/").await;
    e.role("app", "/").await;
    let pb = playbook(
        &e,
        "mfa.yaml",
        r#"
name: mfa
executor:
  expect_principal: arn:aws:iam::123456789012:role/ir/responder-role
  assume_role:
    role_arn: arn:aws:iam::123456789012:role/ir/responder-role
    mfa_serial: arn:aws:iam::123456789012:mfa/responder
vars:
  case_id: { required: true }
steps:
  - action: org.apply_scp
    with: { target: root }
  - action: iam.revoke_role_sessions
    targets: { roles: { all: true } }
"#,
    );
    let pb = pb.to_str().expect("path");

    // No terminal and no code: refused before any call.
    let ran = e.run(&["run", pb, "--yes", "--var", "case_id=IR-11"]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(ran.stderr.contains("--mfa-code"), "{}", ran.stderr);
    assert!(e.scps("breakglass-deny-all").await.is_empty());

    let log = e.path("mfa.jsonl");
    let ran = e.run(&[
        "run",
        pb,
        "--yes",
        "--var",
        "case_id=IR-11",
        "--mfa-code",
        "937451",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr
            .contains("assumed-role/responder-role/breakglass-IR-11"),
        "the session name carries the case id: {}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("with MFA arn:aws:iam::123456789012:mfa/responder"),
        "{}",
        ran.stderr
    );

    // The SCP exempts the role ARN with its path, not the session ARN.
    let (_, doc) = &e.scps("breakglass-deny-all").await[0];
    let exempt = doc["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"].to_string();
    assert!(
        exempt.contains("arn:aws:iam::123456789012:role/ir/responder-role"),
        "{exempt}"
    );
    // Its own role keeps its sessions; the others lose theirs.
    assert!(
        e.inline_policy("role", "responder-role", "breakglass-revoke-older-sessions")
            .await
            .is_none()
    );
    assert!(
        e.inline_policy("role", "app", "breakglass-revoke-older-sessions")
            .await
            .is_some()
    );

    let text = std::fs::read_to_string(&log).expect("log");
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("line")).expect("json");
    let start = &line["record"];
    assert!(
        start["credential_source"]
            .as_str()
            .is_some_and(|s| s.contains("with MFA"))
    );
    assert!(!text.contains("937451"), "the MFA code is never recorded");
    assert!(text.contains("<redacted>"));
}

#[tokio::test]
async fn an_ec2_call_the_executor_may_not_make_refuses_the_run() {
    let e = Estate::new().await;
    let ids = e.instances("us-east-1", 1, false).await;
    e.proxy()
        .denied_dry_runs
        .lock()
        .expect("lock")
        .insert("ModifyInstanceAttribute".to_string());
    let pb = repo_playbook("compromised-instance.yaml");
    let pb = pb.to_str().expect("path");
    let var = format!("instance_id={}", ids[0]);
    let plan = e.run(&["plan", pb, "--var", &var, "--var", "case_id=IR-12"]);
    assert_eq!(plan.code, 1, "{}", plan.stdout);
    assert!(
        plan.stdout.contains("UnauthorizedOperation"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("permission check: allowed"),
        "the other calls are allowed: {}",
        plan.stdout
    );

    // With --yes, steps 1 to 4 (checked clean) run while step 5 is still
    // being checked; step 5, which would be denied, stops the run before it
    // calls anything.
    let ran = e.run(&["run", pb, "--yes", "--var", &var, "--var", "case_id=IR-12"]);
    assert_eq!(ran.code, 3, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("UnauthorizedOperation")
            && ran
                .stderr
                .contains("nothing in this step or after it was changed"),
        "{}",
        ran.stderr
    );
    let mutations = e.proxy().mutations.lock().expect("lock").clone();
    assert!(
        !mutations.iter().any(|m| m == "ModifyInstanceAttribute"),
        "{mutations:?}"
    );
    assert!(
        mutations.iter().any(|m| m == "CreateSnapshots"),
        "{mutations:?}"
    );
}

#[tokio::test]
async fn a_protect_entry_that_matches_nothing_is_a_warning() {
    let e = Estate::new().await;
    e.role("IR-BreakGlass", "/").await;
    let pb = playbook(
        &e,
        "typo.yaml",
        "name: typo\nprotect:\n  - arn:aws:iam::*:role/IR-BrakeGlass\n  - arn:aws:iam::*:role/IR-*\nsteps:\n  - action: iam.revoke_role_sessions\n    targets: { roles: { all: true } }\n",
    );
    let plan = e.run(&["plan", pb.to_str().expect("path")]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stderr
            .contains("protect entry arn:aws:iam::*:role/IR-BrakeGlass matches no user or role"),
        "{}",
        plan.stderr
    );
    assert!(
        !plan.stderr.contains("arn:aws:iam::*:role/IR-* matches no"),
        "{}",
        plan.stderr
    );
}

/// What a rollback must restore, read through the API.
#[derive(Debug, Clone, PartialEq)]
struct State {
    keys: Vec<(String, String)>,
    user_policies: Vec<(String, Option<serde_json::Value>)>,
    role_policies: Vec<(String, Option<serde_json::Value>)>,
    root_scps: Vec<String>,
    groups: Vec<(String, Vec<String>)>,
    termination: Vec<(String, Option<bool>)>,
    profiles: Vec<(String, usize)>,
    locks: usize,
}

async fn state(
    e: &Estate,
    root: &str,
    users: &[(&str, &str)],
    instances: &[(&str, &str)],
) -> State {
    let mut keys = Vec::new();
    let mut user_policies = Vec::new();
    for (u, k) in users {
        keys.push((u.to_string(), e.key_status(u, k).await));
        user_policies.push((
            u.to_string(),
            e.inline_policy("user", u, "breakglass-revoke-older-sessions")
                .await,
        ));
    }
    let mut role_policies = Vec::new();
    for r in ["app-role", "app"] {
        role_policies.push((
            r.to_string(),
            e.inline_policy("role", r, "breakglass-revoke-older-sessions")
                .await,
        ));
    }
    let root_scps = e
        .org()
        .list_policies_for_target()
        .target_id(root)
        .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("scps")
        .policies()
        .iter()
        .filter_map(|p| p.name().map(str::to_string))
        .collect();
    let mut groups = Vec::new();
    let mut termination = Vec::new();
    let mut profiles = Vec::new();
    for (region, id) in instances {
        let i = e.instance(region, id).await;
        let mut g: Vec<String> = i.network_interfaces()[0]
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect();
        g.sort();
        groups.push((id.to_string(), g));
        let attr = e
            .ec2(region)
            .describe_instance_attribute()
            .instance_id(*id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
            .send()
            .await
            .expect("attribute");
        termination.push((
            id.to_string(),
            attr.disable_api_termination().and_then(|v| v.value()),
        ));
        let assoc = e
            .ec2(region)
            .describe_iam_instance_profile_associations()
            .filters(Filter::builder().name("instance-id").values(*id).build())
            .send()
            .await
            .expect("associations");
        let n = assoc
            .iam_instance_profile_associations()
            .iter()
            .filter(|a| a.state().map(|s| s.as_str()) == Some("associated"))
            .count();
        profiles.push((id.to_string(), n));
    }
    let locks = e.proxy().locks.lock().expect("locks").len();
    State {
        keys,
        user_policies,
        role_policies,
        root_scps,
        groups,
        termination,
        profiles,
        locks,
    }
}

#[tokio::test]
async fn rollback_restores_everything_reversible() {
    let e = Estate::new().await;
    let root = e.organization().await;
    let alice = e.user_with_key("alice").await;
    let bob = e.user_with_key("bob").await;
    // bob already had a policy with breakglass's name (an earlier run's, or
    // one an intruder planted): rollback deletes breakglass-named policies
    // and never writes a document back into one.
    let theirs = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"*"}]}"#;
    e.iam
        .put_user_policy()
        .user_name("bob")
        .policy_name("breakglass-revoke-older-sessions")
        .policy_document(theirs)
        .send()
        .await
        .expect("bob's own policy");
    e.role("app", "/").await;
    let profile_arn = instance_profile(&e).await;
    let east = e.instances("us-east-1", 1, false).await;
    let west = e.instances("eu-west-1", 1, false).await;
    e.ec2("us-east-1")
        .associate_iam_instance_profile()
        .instance_id(&east[0])
        .iam_instance_profile(
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .arn(&profile_arn)
                .build(),
        )
        .send()
        .await
        .expect("associate");
    let users = [("alice", alice.as_str()), ("bob", bob.as_str())];
    let instances = [
        ("us-east-1", east[0].as_str()),
        ("eu-west-1", west[0].as_str()),
    ];
    let before = state(&e, &root, &users, &instances).await;

    let pb = repo_playbook("full-lockdown.yaml");
    let log = e.path("run.jsonl");
    let ran = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--no-hold",
        "--var",
        "case_id=IR-13",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let contained = state(&e, &root, &users, &instances).await;
    assert_ne!(before, contained);

    // A tampered log cannot drive a rollback.
    let text = std::fs::read_to_string(&log).expect("log");
    let tampered = e.path("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("alice", "mallory", 1)).expect("write");
    let refused = e.run(&["rollback", tampered.to_str().expect("path"), "--yes"]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);

    let dry = e.run(&["rollback", log.to_str().expect("path"), "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(
        state(&e, &root, &users, &instances).await,
        contained,
        "a dry rollback changes nothing"
    );

    let back = e.run(&[
        "rollback",
        log.to_str().expect("path"),
        "--yes",
        "--reactivate-keys",
        "--audit-log",
        e.path("rb.jsonl").to_str().expect("path"),
    ]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(
        back.stdout
            .contains("irreversible: the console password was deleted"),
        "{}",
        back.stdout
    );
    assert!(
        back.stdout.contains("kept: snapshots are evidence"),
        "{}",
        back.stdout
    );
    let after = state(&e, &root, &users, &instances).await;
    let mut expected = before.clone();
    for (user, policy) in expected.user_policies.iter_mut() {
        if user == "bob" {
            *policy = None;
        }
    }
    assert_eq!(after, expected, "everything reversible is back");
    assert!(
        !e.has_login_profile("alice").await,
        "passwords stay deleted"
    );
    assert_eq!(
        e.run(&[
            "audit",
            "verify",
            e.path("rb.jsonl").to_str().expect("path")
        ])
        .code,
        0
    );
    let rb = std::fs::read_to_string(e.path("rb.jsonl")).expect("log");
    assert!(
        rb.lines()
            .next()
            .is_some_and(|l| l.contains("\"rollback_of\""))
    );

    // Idempotent: a second rollback finds everything already restored.
    let again = e.run(&[
        "rollback",
        log.to_str().expect("path"),
        "--yes",
        "--reactivate-keys",
        "--output",
        "json",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let report: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(report["totals"]["changed"], 0, "{report}");
}

#[tokio::test]
async fn hold_re_contains_what_the_intruder_undoes() {
    let e = Estate::new().await;
    let alice = e.user_with_key("alice").await;
    let ids = e.instances("us-east-1", 1, false).await;
    let original: Vec<String> = e.instance("us-east-1", &ids[0]).await.network_interfaces()[0]
        .groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    let eni = e.instance("us-east-1", &ids[0]).await.network_interfaces()[0]
        .network_interface_id()
        .expect("eni")
        .to_string();
    let pb = playbook(
        &e,
        "hold.yaml",
        "name: hold\nsteps:\n  - action: iam.deactivate_access_keys\n    targets: { users: { all: true } }\n  - action: ec2.snapshot_volumes\n    targets: { instances: { all: true } }\n  - action: ec2.isolate_instances\n    targets: { instances: { all: true } }\n",
    );
    let log = e.path("hold.jsonl");
    let mut cmd = e.cmd();
    cmd.args([
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--hold",
        "6s",
        "--every",
        "2s",
        "--output",
        "json",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    let run = tokio::task::spawn_blocking(move || cmd.output().expect("run"));

    // The intruder waits for the containment, then undoes two pieces of it.
    let ec2 = e.ec2("us-east-1");
    let mut contained = false;
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let i = e.instance("us-east-1", &ids[0]).await;
        if i.network_interfaces()[0].groups()[0].group_name() == Some("breakglass-quarantine") {
            contained = true;
            break;
        }
    }
    assert!(contained, "the run isolated the instance");
    e.iam
        .update_access_key()
        .user_name("alice")
        .access_key_id(&alice)
        .status(aws_sdk_iam::types::StatusType::Active)
        .send()
        .await
        .expect("re-enable");
    ec2.modify_network_interface_attribute()
        .network_interface_id(&eni)
        .set_groups(Some(original.clone()))
        .send()
        .await
        .expect("re-attach the original group");

    let out = run.await.expect("join");
    e.assert_no_secret_leaked(&out);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        e.key_status("alice", &alice).await,
        "Inactive",
        "the key is off again"
    );
    let i = e.instance("us-east-1", &ids[0]).await;
    assert_eq!(
        i.network_interfaces()[0].groups()[0].group_name(),
        Some("breakglass-quarantine")
    );

    // One JSON event per check, then the report; the log names each re-containment.
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "hold_check")
        .collect();
    assert!(events.len() >= 2, "{stdout}");
    let text = std::fs::read_to_string(&log).expect("log");
    let rechecked: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["record"].take())
        .filter(|r| r["event"] == "hold_check")
        .flat_map(|r| {
            r["recontained"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
        })
        .collect();
    assert!(
        rechecked.iter().any(|l| l.contains(&alice)),
        "{rechecked:?}"
    );
    assert!(
        rechecked.iter().any(|l| l.contains(&ids[0])),
        "{rechecked:?}"
    );
    assert_eq!(
        e.run(&["audit", "verify", log.to_str().expect("path")])
            .code,
        0
    );
}

/// Creates trail `name` in `region` (moto creates trails stopped: the
/// state an attacker leaves them in); returns its ARN.
async fn stopped_trail(e: &Estate, region: &str, name: &str, all_regions: bool) -> String {
    let made = e
        .cloudtrail(region)
        .create_trail()
        .name(name)
        .s3_bucket_name("trail-logs")
        .is_multi_region_trail(all_regions)
        .send()
        .await
        .expect("trail");
    assert!(
        !e.trail_logging(region, name).await,
        "{name} starts stopped"
    );
    made.trail_arn().expect("arn").to_string()
}

async fn stop_trail(e: &Estate, region: &str, name: &str) {
    let ct = e.cloudtrail(region);
    ct.stop_logging().name(name).send().await.expect("stop");
}

#[tokio::test]
async fn a_stopped_trail_is_started_in_its_home_region() {
    let mut e = Estate::new().await;
    e.with_proxy();
    e.s3()
        .create_bucket()
        .bucket("trail-logs")
        .send()
        .await
        .expect("bucket");
    stopped_trail(&e, "us-east-1", "local-trail", false).await;
    // Logs every region and was created in one the playbook does not select:
    // found through its shadows (in both selected regions, planned once),
    // started where it was created.
    let all_regions = stopped_trail(&e, "ap-northeast-1", "all-regions", true).await;
    stopped_trail(&e, "ap-southeast-2", "elsewhere", false).await;
    let pb = playbook(
        &e,
        "trails.yaml",
        "name: trails\nregions: [us-east-1, eu-west-1]\nsteps:\n  - action: cloudtrail.ensure_logging\n",
    );
    let pb = pb.to_str().expect("path");

    let dry = e.run(&["run", pb, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    for planned in [
        "trail local-trail (us-east-1)",
        "trail all-regions (ap-northeast-1)",
    ] {
        assert!(dry.stdout.contains(planned), "{planned}: {}", dry.stdout);
    }
    assert!(!dry.stdout.contains("trail elsewhere"), "{}", dry.stdout);
    assert!(!e.trail_logging("us-east-1", "local-trail").await);

    // The first answer is lost: the call is made again, and each trail's
    // once more at most.
    e.proxy().lose("StartLogging", 1);
    let log = e.path("trails.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.proxy().lost("StartLogging"), 1);
    let seen = e.proxy().worst.lock().expect("worst").seen.clone();
    assert_eq!(
        seen.get("StartLogging"),
        Some(&3),
        "two trails, one retry: {seen:?}"
    );
    assert!(e.trail_logging("us-east-1", "local-trail").await);
    assert!(e.trail_logging("ap-northeast-1", "all-regions").await);
    assert!(
        !e.trail_logging("ap-southeast-2", "elsewhere").await,
        "a trail no selected region lists is left alone"
    );
    assert_eq!(e.run(&["verify", pb]).code, 0);

    // The attacker stops one again: verify names the drift.
    stop_trail(&e, "ap-northeast-1", "all-regions").await;
    let drift = e.run(&["verify", pb]);
    assert_eq!(drift.code, 1, "{}\n{}", drift.stdout, drift.stderr);
    assert!(drift.stdout.contains("is not logging"), "{}", drift.stdout);

    // Rollback never stops a trail.
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(back.stdout.contains("stays logging"), "{}", back.stdout);
    assert!(e.trail_logging("us-east-1", "local-trail").await);

    // Named by ARN: that trail only.
    stop_trail(&e, "us-east-1", "local-trail").await;
    let named = playbook(
        &e,
        "named.yaml",
        &format!(
            "name: named\nregions: [us-east-1]\nsteps:\n  - action: cloudtrail.ensure_logging\n    with: {{ trails: [\"{all_regions}\"] }}\n"
        ),
    );
    let ran = e.run(&["run", named.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(e.trail_logging("ap-northeast-1", "all-regions").await);
    assert!(!e.trail_logging("us-east-1", "local-trail").await);

    // A trail named but not there stops the run before any change, even
    // without the preflight.
    let missing = playbook(
        &e,
        "missing.yaml",
        "name: missing\nregions: [us-east-1]\nsteps:\n  - action: cloudtrail.ensure_logging\n  - action: cloudtrail.ensure_logging\n    with: { trails: [no-such-trail] }\n",
    );
    let missing = missing.to_str().expect("path");
    for flags in [&["--yes"][..], &["--yes", "--skip-preflight"]] {
        let ran = e.run(&[&["run", missing][..], flags].concat());
        assert_ne!(ran.code, 0, "{flags:?}: {}", ran.stdout);
        assert!(
            ran.stderr.contains("no trail no-such-trail")
                && ran.stderr.contains("nothing was changed"),
            "{flags:?}: {}\n{}",
            ran.stdout,
            ran.stderr
        );
        assert!(
            !e.trail_logging("us-east-1", "local-trail").await,
            "{flags:?}"
        );
    }
}

/// A customer managed key in `region`, scheduled for deletion when `doomed`.
async fn kms_key(e: &Estate, region: &str, doomed: bool) -> String {
    let kms = e.kms(region);
    let made = kms.create_key().send().await.expect("key");
    let id = made.key_metadata().expect("meta").key_id().to_string();
    if doomed {
        let scheduled = kms
            .schedule_key_deletion()
            .key_id(&id)
            .pending_window_in_days(7);
        scheduled.send().await.expect("schedule");
        assert_eq!(e.key_state(region, &id).await, "PendingDeletion");
    }
    id
}

#[tokio::test]
async fn keys_scheduled_for_deletion_are_saved_and_enabled() {
    let mut e = Estate::new().await;
    e.with_proxy();
    let east = kms_key(&e, "us-east-1", true).await;
    let west = kms_key(&e, "eu-west-1", true).await;
    let fine = kms_key(&e, "us-east-1", false).await;
    let pb = playbook(
        &e,
        "keys.yaml",
        "name: keys\nregions: [us-east-1, eu-west-1]\nsteps:\n  - action: kms.cancel_key_deletion\n",
    );
    let pb = pb.to_str().expect("path");
    let east_only = playbook(
        &e,
        "east.yaml",
        &format!(
            "name: east\nregions: [us-east-1]\nsteps:\n  - action: kms.cancel_key_deletion\n    with: {{ keys: [{east}] }}\n"
        ),
    );

    let dry = e.run(&["run", pb, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    for id in [&east, &west] {
        assert!(
            dry.stdout.contains(&format!("would change KMS key {id}")),
            "{}",
            dry.stdout
        );
    }
    assert!(!dry.stdout.contains(&format!("would change KMS key {fine}")));
    assert_eq!(e.key_state("us-east-1", &east).await, "PendingDeletion");

    // The first cancel is made and its answer lost; the retry is refused as
    // AWS refuses a key no longer pending deletion. The key is read, found
    // cancelled, and enabled.
    e.proxy().lose("CancelKeyDeletion", 1);
    e.proxy()
        .refuse("CancelKeyDeletion", 2, 400, "KMSInvalidStateException");
    let ran = e.run(&["run", east_only.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.proxy().lost("CancelKeyDeletion"), 1);
    assert_eq!(e.key_state("us-east-1", &east).await, "Enabled");
    assert_eq!(e.key_state("eu-west-1", &west).await, "PendingDeletion");

    let log = e.path("keys.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    for (region, id) in [
        ("us-east-1", &east),
        ("eu-west-1", &west),
        ("us-east-1", &fine),
    ] {
        assert_eq!(e.key_state(region, id).await, "Enabled", "{id}");
    }
    assert_eq!(e.run(&["verify", pb]).code, 0);

    // Rollback never schedules a deletion again.
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(back.stdout.contains("stays"), "{}", back.stdout);
    assert_eq!(e.key_state("us-east-1", &east).await, "Enabled");
}

#[tokio::test]
async fn shared_snapshots_and_images_are_taken_back() {
    let mut e = Estate::new().await;
    e.with_proxy();
    let ec2 = e.ec2("us-east-1");
    let volume = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .send()
        .await
        .expect("volume");
    let snapshot = |n: &str| {
        let ec2 = ec2.clone();
        let volume = volume.volume_id().expect("id").to_string();
        let n = n.to_string();
        async move {
            let made = ec2
                .create_snapshot()
                .volume_id(volume)
                .description(n)
                .send();
            made.await
                .expect("snapshot")
                .snapshot_id()
                .expect("id")
                .to_string()
        }
    };
    let stolen = snapshot("shared with the attacker").await;
    let public = snapshot("public").await;
    let partner = snapshot("shared with the backup account").await;
    let private = snapshot("not shared").await;
    let share = |id: String, who: Option<&str>| {
        let (users, groups) = match who {
            Some(a) => (Some(vec![a.to_string()]), None),
            None => (None, Some(vec!["all".to_string()])),
        };
        let call = ec2
            .modify_snapshot_attribute()
            .snapshot_id(id)
            .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
            .operation_type(aws_sdk_ec2::types::OperationType::Add)
            .set_user_ids(users)
            .set_group_names(groups);
        async move {
            call.send().await.expect("share");
        }
    };
    share(stolen.clone(), Some("999988887777")).await;
    share(public.clone(), None).await;
    share(partner.clone(), Some("111122223333")).await;
    let instance = e.instances("us-east-1", 1, false).await;
    let image = ec2
        .create_image()
        .instance_id(&instance[0])
        .name("golden")
        .send()
        .await
        .expect("image")
        .image_id()
        .expect("id")
        .to_string();
    ec2.modify_image_attribute()
        .image_id(&image)
        .launch_permission(
            aws_sdk_ec2::types::LaunchPermissionModifications::builder()
                .add(
                    aws_sdk_ec2::types::LaunchPermission::builder()
                        .user_id("999988887777")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("share image");
    let grants = |id: String| {
        let ec2 = ec2.clone();
        async move {
            let attr = ec2
                .describe_snapshot_attribute()
                .snapshot_id(id)
                .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
                .send()
                .await
                .expect("attribute");
            attr.create_volume_permissions().len()
        }
    };
    let pb = playbook(
        &e,
        "unshare.yaml",
        "name: unshare\nregions: [us-east-1]\nsteps:\n  - action: ec2.unshare\n    with: { keep_accounts: [\"111122223333\"] }\n",
    );
    let pb = pb.to_str().expect("path");

    let dry = e.run(&["run", pb, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    for (kind, id) in [
        ("snapshot", &stolen),
        ("snapshot", &public),
        ("image", &image),
    ] {
        let line = format!("would change {kind} {id} (us-east-1)");
        assert!(dry.stdout.contains(&line), "{line}: {}", dry.stdout);
    }
    let kept = format!("would change snapshot {partner}");
    assert!(!dry.stdout.contains(&kept), "{}", dry.stdout);
    assert_eq!(grants(stolen.clone()).await, 1, "a dry run changes nothing");

    e.proxy().lose("ModifySnapshotAttribute", 1);
    let log = e.path("unshare.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.proxy().lost("ModifySnapshotAttribute"), 1);
    assert_eq!(grants(stolen.clone()).await, 0);
    assert_eq!(grants(public.clone()).await, 0);
    assert_eq!(
        grants(partner.clone()).await,
        1,
        "the kept account's grant stays"
    );
    assert_eq!(grants(private.clone()).await, 0);
    let launch = ec2
        .describe_image_attribute()
        .image_id(&image)
        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
        .send()
        .await
        .expect("image attribute");
    assert!(launch.launch_permissions().is_empty(), "{launch:?}");
    assert_eq!(e.run(&["verify", pb]).code, 0);

    // Shared again: verify names it.
    share(stolen.clone(), Some("999988887777")).await;
    let drift = e.run(&["verify", pb]);
    assert_eq!(drift.code, 1, "{}", drift.stdout);
    assert!(
        drift.stdout.contains("is shared with account 999988887777"),
        "{}",
        drift.stdout
    );
    let again = e.run(&["run", pb, "--yes"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);

    // Rollback shares nothing again, and says what was removed.
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(back.stdout.contains("999988887777"), "{}", back.stdout);
    assert_eq!(grants(stolen).await, 0);
}

#[tokio::test]
async fn backup_vaults_are_locked_and_governance_locks_roll_back() {
    let mut e = Estate::new().await;
    e.with_proxy();
    for (region, name) in [
        ("us-east-1", "prod-backups"),
        ("eu-west-1", "dr"),
        ("us-east-1", "strict"),
    ] {
        let made = e
            .backup(region)
            .create_backup_vault()
            .backup_vault_name(name)
            .send();
        made.await.expect("vault");
    }
    let strict = e.backup("us-east-1").put_backup_vault_lock_configuration();
    let strict = strict.backup_vault_name("strict").min_retention_days(30);
    strict.send().await.expect("lock");
    let pb = playbook(
        &e,
        "vaults.yaml",
        "name: vaults\nregions: [us-east-1, eu-west-1]\nsteps:\n  - action: backup.lock_vaults\n    with: { mode: governance, min_retention_days: 7 }\n",
    );
    let pb = pb.to_str().expect("path");

    let dry = e.run(&["run", pb, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert_eq!(e.vault_lock("us-east-1", "prod-backups").await, None);

    e.proxy().lose("PutBackupVaultLockConfiguration", 1);
    let log = e.path("vaults.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.proxy().lost("PutBackupVaultLockConfiguration"), 1);
    assert_eq!(e.vault_lock("us-east-1", "prod-backups").await, Some(7));
    assert_eq!(e.vault_lock("eu-west-1", "dr").await, Some(7));
    assert_eq!(
        e.vault_lock("us-east-1", "strict").await,
        Some(30),
        "a stronger lock stays"
    );
    assert_eq!(e.run(&["verify", pb]).code, 0);

    // A governance lock is not the compliance lock a playbook asks for: it
    // can be lifted. Planned, and not verified.
    let strict_pb = playbook(
        &e,
        "strict.yaml",
        "name: strict\nregions: [us-east-1]\nsteps:\n  - action: backup.lock_vaults\n    with: { mode: compliance, changeable_for_days: 3, vaults: [prod-backups] }\n    allow_irreversible: true\n",
    );
    let strict_pb = strict_pb.to_str().expect("path");
    let plan = e.run(&["run", strict_pb, "--dry-run"]);
    assert!(
        plan.stdout
            .contains("would change backup vault prod-backups (us-east-1)"),
        "{}",
        plan.stdout
    );
    let weaker = e.run(&["verify", strict_pb]);
    assert_eq!(weaker.code, 1, "{}", weaker.stdout);
    assert!(
        weaker.stdout.contains("governance lock"),
        "{}",
        weaker.stdout
    );

    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(e.vault_lock("us-east-1", "prod-backups").await, None);
    assert_eq!(e.vault_lock("eu-west-1", "dr").await, None);
    assert_eq!(e.vault_lock("us-east-1", "strict").await, Some(30));

    // No minimum: the lock alone protects what the vault holds.
    let plain = playbook(
        &e,
        "plain.yaml",
        "name: plain\nregions: [eu-west-1]\nsteps:\n  - action: backup.lock_vaults\n    with: { mode: governance, vaults: [dr] }\n",
    );
    let ran = e.run(&["run", plain.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.vault_lock("eu-west-1", "dr").await, Some(0));

    // Compliance only when written, with its grace time, and marked irreversible.
    for (with, problem) in [
        (
            "{ mode: compliance, min_retention_days: 7 }",
            "needs changeable_for_days",
        ),
        (
            "{ mode: governance, min_retention_days: 7, changeable_for_days: 3 }",
            "write `mode: compliance`",
        ),
        (
            "{ mode: compliance, min_retention_days: 7, changeable_for_days: 3 }",
            "allow_irreversible",
        ),
    ] {
        let text = format!(
            "name: c\nregions: [us-east-1]\nsteps:\n  - action: backup.lock_vaults\n    with: {with}\n"
        );
        let bad = playbook(&e, "compliance.yaml", &text);
        let checked = e.run(&["validate", bad.to_str().expect("path")]);
        assert_eq!(checked.code, 2, "{with}");
        assert!(
            checked.stderr.contains(problem) || checked.stdout.contains(problem),
            "{with}: {}\n{}",
            checked.stdout,
            checked.stderr
        );
    }
}

/// A region's block public access state for `Snapshot` or `Image`, as the
/// proxy (standing in for EC2, which moto lacks here) holds it.
fn blocked(e: &Estate, region: &str, what: &str) -> String {
    let table = e.proxy().blocks.lock().expect("blocks");
    let key = (region.to_string(), what.to_string());
    table
        .get(&key)
        .map_or("unblocked".into(), |(s, _)| s.clone())
}

#[tokio::test]
async fn public_sharing_is_blocked_never_lowered_and_rolled_back() {
    let mut e = Estate::new().await;
    e.with_proxy();
    let set = |region: &str, what: &str, state: &str, by: &str| {
        let mut table = e.proxy().blocks.lock().expect("blocks");
        let key = (region.to_string(), what.to_string());
        table.insert(key, (state.to_string(), by.to_string()));
    };
    set("us-east-1", "Snapshot", "block-new-sharing", "account");
    let pb = playbook(
        &e,
        "sharing.yaml",
        "name: sharing\nregions: [us-east-1, eu-west-1]\nsteps:\n  - action: ec2.block_public_sharing\n",
    );
    let pb = pb.to_str().expect("path");

    let dry = e.run(&["run", pb, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout
            .contains("would change snapshot block public access us-east-1"),
        "{}",
        dry.stdout
    );
    assert_eq!(blocked(&e, "eu-west-1", "Snapshot"), "unblocked");

    // The first enable is carried out and its answer lost: the retry sets
    // the same state again, which EC2 accepts.
    e.proxy().lose("EnableSnapshotBlockPublicAccess", 1);
    let log = e.path("sharing.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.proxy().lost("EnableSnapshotBlockPublicAccess"), 1);
    for region in ["us-east-1", "eu-west-1"] {
        assert_eq!(blocked(&e, region, "Snapshot"), "block-all-sharing");
        assert_eq!(blocked(&e, region, "Image"), "block-new-sharing");
    }
    assert_eq!(e.run(&["verify", pb]).code, 0);

    // A milder mode never lowers a stricter one: that would make public
    // snapshots public again.
    let milder = playbook(
        &e,
        "milder.yaml",
        "name: milder\nregions: [us-east-1]\nsteps:\n  - action: ec2.block_public_sharing\n    with: { snapshots: block-new-sharing }\n",
    );
    let ran = e.run(&["run", milder.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("already block-all-sharing"),
        "{}",
        ran.stdout
    );
    assert_eq!(blocked(&e, "us-east-1", "Snapshot"), "block-all-sharing");

    // Rollback puts each region's own prior setting back.
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(blocked(&e, "us-east-1", "Snapshot"), "block-new-sharing");
    assert_eq!(blocked(&e, "eu-west-1", "Snapshot"), "unblocked");
    assert_eq!(blocked(&e, "eu-west-1", "Image"), "unblocked");

    // A setting a declarative policy manages is out of the account's reach:
    // failed, saying who can change it, and left as it is.
    set("eu-west-1", "Image", "unblocked", "declarative-policy");
    let images = playbook(
        &e,
        "images.yaml",
        "name: images\nregions: [eu-west-1]\nsteps:\n  - action: ec2.block_public_sharing\n    with: { snapshots: leave }\n",
    );
    let ran = e.run(&["run", images.to_str().expect("path"), "--yes"]);
    assert_ne!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("declarative policy"), "{}", ran.stdout);
    assert_eq!(blocked(&e, "eu-west-1", "Image"), "unblocked");
    assert_eq!(blocked(&e, "eu-west-1", "Snapshot"), "unblocked");

    let nothing = playbook(
        &e,
        "nothing.yaml",
        "name: nothing\nregions: [eu-west-1]\nsteps:\n  - action: ec2.block_public_sharing\n    with: { snapshots: leave, images: false }\n",
    );
    let checked = e.run(&["validate", nothing.to_str().expect("path")]);
    assert_eq!(checked.code, 2, "{}", checked.stdout);
    assert!(
        checked.stderr.contains("blocks nothing"),
        "{}",
        checked.stderr
    );
}

/// Calls moto's S3 Control public access block route directly, for the
/// account the executor is in (the route and the `x-amz-account-id` header
/// are the S3 Control API reference's; moto reads the service from the
/// credential scope and checks no signature), and returns the raw answer.
fn s3_block(e: &Estate, method: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", e.moto.port)).expect("moto");
    write!(
        s,
        "{method} /v20180820/configuration/publicAccessBlock HTTP/1.1\r\nHost: 127.0.0.1\r\nx-amz-account-id: 123456789012\r\nAuthorization: AWS4-HMAC-SHA256 Credential={}/20261202/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        common::ADMIN_KEY,
        body.len()
    )
    .expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    answer
}

#[tokio::test]
async fn the_account_blocks_s3_public_access_and_rolls_back() {
    let mut e = Estate::new().await;
    e.with_proxy();
    let flags = |acls: bool, ignore: bool| {
        format!(
            "<PublicAccessBlockConfiguration xmlns=\"http://awss3control.amazonaws.com/doc/2018-08-20/\"><BlockPublicAcls>{acls}</BlockPublicAcls><IgnorePublicAcls>{ignore}</IgnorePublicAcls><BlockPublicPolicy>{ignore}</BlockPublicPolicy><RestrictPublicBuckets>{ignore}</RestrictPublicBuckets></PublicAccessBlockConfiguration>"
        )
    };
    s3_block(&e, "PUT", &flags(true, false));
    let pb = playbook(
        &e,
        "s3.yaml",
        "name: s3\nsteps:\n  - action: s3.block_public_access\n",
    );
    let pb = pb.to_str().expect("path");

    let dry = e.run(&["run", pb, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout
            .contains("would change S3 account public access block 123456789012"),
        "{}",
        dry.stdout
    );
    assert!(s3_block(&e, "GET", "").contains("<IgnorePublicAcls>false"));

    // The first put is carried out and its answer lost; the retry puts the
    // same configuration again.
    e.proxy().lose("PutPublicAccessBlock", 1);
    let log = e.path("s3.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.proxy().lost("PutPublicAccessBlock"), 1);
    let now = s3_block(&e, "GET", "");
    for flag in [
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    ] {
        assert!(
            now.contains(&format!("<{flag}>true</{flag}>")),
            "{flag}: {now}"
        );
    }
    assert_eq!(e.run(&["verify", pb]).code, 0);

    // Rollback puts back the flags the account had.
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    let now = s3_block(&e, "GET", "");
    assert!(
        now.contains("<BlockPublicAcls>true</BlockPublicAcls>"),
        "{now}"
    );
    assert!(
        now.contains("<IgnorePublicAcls>false</IgnorePublicAcls>"),
        "{now}"
    );

    // An account with no configuration gets none back.
    s3_block(&e, "DELETE", "");
    let log = e.path("s3-none.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(s3_block(&e, "GET", "").contains("<RestrictPublicBuckets>true"));
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(
        s3_block(&e, "GET", "").contains("NoSuchPublicAccessBlockConfiguration"),
        "deleted again"
    );
}

#[tokio::test]
async fn the_preserve_scp_denies_evidence_destruction_to_all_but_the_responders() {
    let e = Estate::new().await;
    e.organization().await;
    let pb = playbook(
        &e,
        "preserve.yaml",
        "name: preserve\nprotect: [arn:aws:iam::*:role/IR-BreakGlass]\nsteps:\n  - action: org.apply_scp\n    with: { target: root, policy: preserve }\n",
    );
    let pb = pb.to_str().expect("path");
    let log = e.path("preserve.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    // Its own policy: the freeze's deny-all is neither made nor replaced.
    assert!(e.scps("breakglass-deny-all").await.is_empty());
    let made = e.scps("breakglass-preserve").await;
    assert_eq!(made.len(), 1);
    let statement = &made[0].1["Statement"][0];
    assert_eq!(statement["Effect"], "Deny");
    let denied: Vec<&str> = statement["Action"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    for action in [
        "cloudtrail:StopLogging",
        "kms:ScheduleKeyDeletion",
        "ec2:DeleteSnapshot",
        "backup:DeleteRecoveryPoint",
        "s3:PutLifecycleConfiguration",
    ] {
        assert!(denied.contains(&action), "{action}: {denied:?}");
    }
    assert!(!denied.contains(&"*"), "{denied:?}");
    let exempt = statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"].to_string();
    assert!(
        exempt.contains("arn:aws:iam::123456789012:user/ir/ir-responder"),
        "{exempt}"
    );
    assert_eq!(e.run(&["verify", pb]).code, 0);
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(e.scps("breakglass-preserve").await.is_empty());
}

#[tokio::test]
async fn the_rcp_denies_outsiders_and_spares_the_responders_and_sign_in() {
    use aws_sdk_organizations::types::PolicyType;
    let e = Estate::new().await;
    let root = e.organization().await;
    let org_id = e.org().describe_organization().send().await.expect("org");
    let org_id = org_id.organization().and_then(|o| o.id()).expect("id");
    let pb = playbook(
        &e,
        "rcp.yaml",
        "name: rcp\nprotect: [arn:aws:iam::*:role/IR-BreakGlass]\nsteps:\n  - action: org.apply_rcp\n    with: { target: root }\n",
    );
    let pb = pb.to_str().expect("path");
    let plan = e.run(&["plan", pb]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout
            .contains("RCPs do not affect resources in the management account 123456789012"),
        "{}",
        plan.stdout
    );
    // A wildcard-account exemption would spare the attacker's own role of
    // that name: an RCP binds outsiders, so it is dropped, and said so.
    assert!(
        plan.stdout.contains("Not exempted")
            && plan.stdout.contains("arn:aws:iam::*:role/IR-BreakGlass"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("EnablePolicyType RootId=")
            && plan.stdout.contains("RESOURCE_CONTROL_POLICY"),
        "{}",
        plan.stdout
    );

    let log = e.path("rcp.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let made = e
        .policies(PolicyType::ResourceControlPolicy, "breakglass-deny-outside")
        .await;
    assert_eq!(made.len(), 1, "{made:?}");
    let (id, doc) = &made[0];
    let statement = &doc["Statement"][0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(statement["Principal"], "*");
    let actions = statement["Action"].to_string();
    assert!(actions.contains("\"s3:*\"") && actions.contains("\"sts:AssumeRole\""));
    // Federated sign-in is not an outsider's way in: left open.
    assert!(
        !actions.contains("AssumeRoleWithSAML") && !actions.contains("AssumeRoleWithWebIdentity")
    );
    let condition = &statement["Condition"];
    assert_eq!(
        condition["StringNotEqualsIfExists"]["aws:PrincipalOrgID"],
        org_id
    );
    assert_eq!(
        condition["BoolIfExists"]["aws:PrincipalIsAWSService"],
        "false"
    );
    let exempt = condition["ArnNotLike"]["aws:PrincipalArn"].to_string();
    assert!(
        exempt.contains("arn:aws:iam::123456789012:user/ir/ir-responder"),
        "{condition}"
    );
    assert!(!exempt.contains("iam::*:"), "{condition}");
    let attached = e
        .org()
        .list_policies_for_target()
        .target_id(&root)
        .filter(PolicyType::ResourceControlPolicy)
        .send()
        .await
        .expect("attached");
    assert!(
        attached
            .policies()
            .iter()
            .any(|p| p.id() == Some(id.as_str()))
    );
    // No SCP was touched.
    assert!(e.scps("breakglass-deny-outside").await.is_empty());

    let again = e.run(&["run", pb, "--yes", "--output", "json"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let report: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(report["totals"]["unchanged"], 1, "{report}");
    assert_eq!(
        e.policies(PolicyType::ResourceControlPolicy, "breakglass-deny-outside")
            .await
            .len(),
        1
    );

    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(
        e.policies(PolicyType::ResourceControlPolicy, "breakglass-deny-outside")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn buckets_get_versioning_and_an_sse_c_block_that_rolls_back() {
    use aws_sdk_s3::types::{
        BucketLocationConstraint, CreateBucketConfiguration, ServerSideEncryption,
        ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    let mut e = Estate::new().await;
    e.with_proxy();
    let s3 = e.s3();
    for (bucket, region) in [
        ("prod-data", None),
        ("dr-copies", Some("eu-west-1")),
        ("far-away", Some("ap-southeast-2")),
    ] {
        let made = s3
            .create_bucket()
            .bucket(bucket)
            .set_create_bucket_configuration(region.map(|r| {
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(r))
                    .build()
            }));
        made.send().await.expect("bucket");
    }
    // dr-copies has a rule of its own, which the block must keep.
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .expect("default"),
        )
        .bucket_key_enabled(true)
        .build();
    let config = ServerSideEncryptionConfiguration::builder()
        .rules(rule)
        .build()
        .expect("config");
    let put = s3.put_bucket_encryption().bucket("dr-copies");
    put.server_side_encryption_configuration(config)
        .send()
        .await
        .expect("encryption");
    // Read back as AWS answers, through the proxy (moto's answer for a
    // never-versioned bucket is not S3's).
    let aws = s3.config().to_builder().endpoint_url(e.proxy().endpoint());
    let aws = aws_sdk_s3::Client::from_conf(aws.build());
    let versioned = |bucket: &'static str| {
        let s3 = aws.clone();
        async move {
            let out = s3.get_bucket_versioning().bucket(bucket).send().await;
            out.expect("versioning")
                .status()
                .map(|s| s.as_str().to_string())
        }
    };
    let blocked = |e: &Estate| e.proxy().sse_c.lock().expect("sse-c").clone();

    let pb = playbook(
        &e,
        "buckets.yaml",
        "name: buckets\nregions: [us-east-1, eu-west-1]\nsteps:\n  - action: s3.protect_buckets\n",
    );
    let pb = pb.to_str().expect("path");
    let dry = e.run(&["run", pb, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout
            .contains("would change S3 bucket versioning prod-data"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("regions this playbook does not select"));
    assert_eq!(versioned("prod-data").await, None);

    let log = e.path("buckets.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    for bucket in ["prod-data", "dr-copies"] {
        assert_eq!(
            versioned(bucket).await.as_deref(),
            Some("Enabled"),
            "{bucket}"
        );
    }
    assert_eq!(versioned("far-away").await, None, "an unselected region");
    assert_eq!(
        blocked(&e),
        ["dr-copies".to_string(), "prod-data".to_string()].into()
    );
    let kept = aws.get_bucket_encryption().bucket("dr-copies").send().await;
    let kept = kept.expect("encryption");
    let kept = &kept
        .server_side_encryption_configuration()
        .expect("config")
        .rules()[0];
    assert_eq!(
        kept.bucket_key_enabled(),
        Some(true),
        "its own rule is kept"
    );
    let blocked_types = kept.blocked_encryption_types().expect("blocked");
    assert_eq!(blocked_types.encryption_type()[0].as_str(), "SSE-C");
    assert_eq!(e.run(&["verify", pb]).code, 0);
    let again = e.run(&["run", pb, "--yes", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(report["totals"]["changed"], 0, "{report}");

    // Rollback puts each bucket's encryption back and keeps versioning on.
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(back.stdout.contains("stays versioned"), "{}", back.stdout);
    assert!(blocked(&e).is_empty());
    assert_eq!(versioned("prod-data").await.as_deref(), Some("Enabled"));
    let none = s3.get_bucket_encryption().bucket("prod-data").send().await;
    assert!(none.is_err(), "prod-data had no configuration: {none:?}");
    // dr-copies has its own rule back: bucket key on, SSE-C allowed again.
    let dr = aws.get_bucket_encryption().bucket("dr-copies").send().await;
    let dr = dr.expect("dr-copies keeps its own rule");
    let rule = &dr
        .server_side_encryption_configuration()
        .expect("config")
        .rules()[0];
    assert_eq!(rule.bucket_key_enabled(), Some(true));
    assert!(rule.blocked_encryption_types().is_none(), "{rule:?}");

    let named = playbook(
        &e,
        "named.yaml",
        "name: named\nregions: [us-east-1]\nsteps:\n  - action: s3.protect_buckets\n    with: { buckets: [no-such-bucket], versioning: false }\n",
    );
    let ran = e.run(&["run", named.to_str().expect("path"), "--yes"]);
    assert_ne!(ran.code, 0, "{}", ran.stdout);
    assert!(
        ran.stderr.contains("owns no bucket no-such-bucket"),
        "{}\n{}",
        ran.stdout,
        ran.stderr
    );
}

#[tokio::test]
async fn narrowed_event_selectors_log_every_management_event_again() {
    use aws_sdk_cloudtrail::types::{
        AdvancedEventSelector, AdvancedFieldSelector, DataResource, EventSelector, ReadWriteType,
    };
    let mut e = Estate::new().await;
    e.with_proxy();
    e.s3()
        .create_bucket()
        .bucket("trail-logs")
        .send()
        .await
        .expect("bucket");
    let ct = e.cloudtrail("us-east-1");
    for name in ["basic", "advanced", "untouched"] {
        let made = ct.create_trail().name(name).s3_bucket_name("trail-logs");
        made.send().await.expect("trail");
        ct.start_logging().name(name).send().await.expect("start");
    }
    // The attacker's move: management events out, data events kept.
    let data = DataResource::builder()
        .r#type("AWS::S3::Object")
        .values("arn:aws:s3:::prod-data/")
        .build();
    let muted = EventSelector::builder()
        .read_write_type(ReadWriteType::All)
        .include_management_events(false)
        .data_resources(data)
        .build();
    let put = ct
        .put_event_selectors()
        .trail_name("basic")
        .event_selectors(muted);
    put.send().await.expect("selectors");
    let data_only = AdvancedFieldSelector::builder()
        .field("eventCategory")
        .equals("Data")
        .build()
        .expect("field");
    let data_only = AdvancedEventSelector::builder()
        .name("data only")
        .field_selectors(data_only)
        .build()
        .expect("selector");
    let put = ct.put_event_selectors().trail_name("advanced");
    put.advanced_event_selectors(data_only)
        .send()
        .await
        .expect("advanced");

    let pb = playbook(
        &e,
        "selectors.yaml",
        "name: selectors\nregions: [us-east-1]\nsteps:\n  - action: cloudtrail.ensure_logging\n",
    );
    let pb = pb.to_str().expect("path");
    let dry = e.run(&["run", pb, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    for name in ["basic", "advanced"] {
        assert!(
            dry.stdout
                .contains(&format!("would change trail event selectors {name}")),
            "{name}: {}",
            dry.stdout
        );
    }
    assert!(
        !dry.stdout
            .contains("would change trail event selectors untouched")
    );

    let ran = e.run(&["run", pb, "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let basic = ct.get_event_selectors().trail_name("basic").send().await;
    let basic = basic.expect("selectors");
    let basic = basic.event_selectors();
    assert_eq!(basic.len(), 2, "{basic:?}");
    assert_eq!(basic[0].data_resources().len(), 1, "the data events stay");
    assert_eq!(basic[1].include_management_events(), Some(true));
    assert_eq!(basic[1].read_write_type(), Some(&ReadWriteType::All));
    let advanced = ct.get_event_selectors().trail_name("advanced").send().await;
    let advanced = advanced.expect("selectors");
    let advanced = advanced.advanced_event_selectors();
    assert_eq!(advanced.len(), 2, "{advanced:?}");
    assert_eq!(advanced[1].field_selectors()[0].equals(), ["Management"]);
    assert_eq!(e.run(&["verify", pb]).code, 0);
    let again = e.run(&["run", pb, "--yes", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(report["totals"]["changed"], 0, "{report}");

    // `management_events: false` leaves selectors alone.
    let put = ct.put_event_selectors().trail_name("untouched");
    let muted = EventSelector::builder()
        .read_write_type(ReadWriteType::ReadOnly)
        .include_management_events(true)
        .build();
    put.event_selectors(muted).send().await.expect("narrow");
    let off = playbook(
        &e,
        "off.yaml",
        "name: keep-selectors\nregions: [us-east-1]\nsteps:\n  - action: cloudtrail.ensure_logging\n    with: { management_events: false }\n",
    );
    let ran = e.run(&["run", off.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let left = ct
        .get_event_selectors()
        .trail_name("untouched")
        .send()
        .await;
    assert_eq!(left.expect("selectors").event_selectors().len(), 1);
}

#[tokio::test]
async fn a_guarded_instance_keeps_its_profile_and_its_credentials_work_only_on_it() {
    let mut e = Estate::new().await;
    e.with_proxy();
    let ids = e.instances("us-east-1", 1, false).await;
    let id = &ids[0];
    let profile_arn = instance_profile(&e).await;
    associate(&e, id, &profile_arn).await;
    let pb = playbook(
        &e,
        "guard.yaml",
        &format!(
            "name: guard\nregions: [us-east-1]\nsteps:\n  - action: ec2.detach_instance_profiles\n    targets: {{ instances: {{ ids: [{id}] }} }}\n    with: {{ mode: guard }}\n"
        ),
    );
    let pb = pb.to_str().expect("path");
    let log = e.path("guard.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("VPC endpoint"), "{}", ran.stdout);

    // The instance keeps its profile; no session of the role is revoked.
    let associated = || async {
        let assoc = e
            .ec2("us-east-1")
            .describe_iam_instance_profile_associations()
            .filters(Filter::builder().name("instance-id").values(id).build())
            .send()
            .await
            .expect("associations");
        assoc
            .iam_instance_profile_associations()
            .iter()
            .any(|a| a.state().map(|s| s.as_str()) == Some("associated"))
    };
    assert!(associated().await);
    assert!(
        e.inline_policy("role", "app-role", "breakglass-revoke-older-sessions")
            .await
            .is_none()
    );
    // The role denies its instance credentials off the instance, as the IAM
    // User Guide's aws:Ec2InstanceSourceVpc example does.
    let guard = e
        .inline_policy("role", "app-role", "breakglass-instance-guard")
        .await
        .expect("guard");
    let statements = guard["Statement"].as_array().expect("statements");
    assert_eq!(statements.len(), 2, "{guard}");
    for (s, (key, variable)) in statements.iter().zip([
        ("aws:Ec2InstanceSourceVpc", "${aws:SourceVpc}"),
        ("aws:Ec2InstanceSourcePrivateIPv4", "${aws:VpcSourceIp}"),
    ]) {
        assert_eq!(s["Effect"], "Deny", "{s}");
        assert_eq!(s["Action"], "*", "{s}");
        assert_eq!(s["Condition"]["StringNotEquals"][key], variable, "{s}");
        assert_eq!(s["Condition"]["Null"]["ec2:SourceInstanceARN"], "false");
        assert_eq!(s["Condition"]["BoolIfExists"]["aws:ViaAWSService"], "false");
    }
    let verify = e.run(&["verify", pb]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    assert!(
        verify
            .stdout
            .contains("instance credential guard already attached"),
        "{}",
        verify.stdout
    );

    // Rollback takes the guard away; the profile stays.
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(
        e.inline_policy("role", "app-role", "breakglass-instance-guard")
            .await
            .is_none()
    );
    assert!(associated().await);
}
