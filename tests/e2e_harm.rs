//! Do no harm (issue 14), end to end against moto: a lockdown never reaches
//! further than its words and never leaves anything more exposed. Each test
//! reads the emulator's state back; the loopback proxy adds what moto lacks
//! (lost answers, refusals, CloudTrail's event history).

mod common;

use common::{Estate, playbook, repo_playbook};

const REVOKE: &str = "breakglass-revoke-older-sessions";
const DENY_SESSIONS: &str = "breakglass-deny-sessions";
const QUARANTINE: &str = "breakglass-quarantine";

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every inline policy of every user and role in the account.
async fn inline_policies(e: &Estate) -> Vec<String> {
    let mut out = Vec::new();
    let users = e.iam.list_users().send().await.expect("users");
    for u in users.users() {
        let names = e
            .iam
            .list_user_policies()
            .user_name(u.user_name())
            .send()
            .await
            .expect("user policies");
        out.extend(
            names
                .policy_names()
                .iter()
                .map(|p| format!("{}:{p}", u.user_name())),
        );
    }
    let roles = e.iam.list_roles().send().await.expect("roles");
    for r in roles.roles() {
        let names = e
            .iam
            .list_role_policies()
            .role_name(r.role_name())
            .send()
            .await
            .expect("role policies");
        out.extend(
            names
                .policy_names()
                .iter()
                .map(|p| format!("{}:{p}", r.role_name())),
        );
    }
    out
}

fn mutations(e: &Estate) -> Vec<String> {
    e.proxy().mutations.lock().expect("mutations").clone()
}

#[tokio::test]
async fn a_key_that_resolves_to_nobody_changes_nothing() {
    let e = Estate::new().await;
    let alice = e.user_with_key("alice").await;
    let bob = e.user_with_key("bob").await;
    let deleted = e.add_key("bob").await;
    e.iam
        .delete_access_key()
        .user_name("bob")
        .access_key_id(&deleted)
        .send()
        .await
        .expect("delete key");
    let pb = repo_playbook("compromised-access-key.yaml");
    let pb = pb.to_str().expect("path");
    let unknown = "AKIAUNKNOWNKEY000000";
    let session = "ASIAQWERTYUIOPASDFGH";
    for key in [unknown, session, deleted.as_str()] {
        let var = format!("key_id={key}");
        for extra in [&[][..], &["--skip-preflight"][..]] {
            let mut args = vec!["run", pb, "--yes", "--var", &var, "--var", "case_id=IR-9"];
            args.extend(extra);
            let ran = e.run(&args);
            assert_eq!(
                ran.code, 1,
                "{key} {extra:?}\n{}\n{}",
                ran.stdout, ran.stderr
            );
            assert!(
                ran.stderr.contains(key) && ran.stderr.contains("nothing was changed"),
                "{key}: {}",
                ran.stderr
            );
        }
        let plan = e.run(&["plan", pb, "--var", &var, "--var", "case_id=IR-9"]);
        assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    }
    let asia = e.run(&[
        "run",
        pb,
        "--yes",
        "--var",
        &format!("key_id={session}"),
        "--var",
        "case_id=IR-9",
    ]);
    assert!(
        asia.stderr.contains("temporary session key")
            && asia.stderr.contains("compromised-session.yaml"),
        "{}",
        asia.stderr
    );
    // Nothing changed anywhere: no call reached AWS, every key is active,
    // nobody was quarantined or revoked.
    assert_eq!(mutations(&e), Vec::<String>::new());
    assert_eq!(e.key_status("alice", &alice).await, "Active");
    assert_eq!(e.key_status("bob", &bob).await, "Active");
    assert_eq!(inline_policies(&e).await, Vec::<String>::new());
}

/// One step per selector kind, each naming something that does not exist:
/// each reports exactly that name as not found, and nothing else is selected.
#[tokio::test]
async fn every_selector_kind_reports_a_missing_name_and_selects_nothing_else() {
    let e = Estate::new().await;
    e.user_with_key("alice").await;
    e.role("app", "/").await;
    e.instances("us-east-1", 1, false).await;
    let pb = playbook(
        &e,
        "missing.yaml",
        "name: missing\nsteps:\n\
         - action: iam.deactivate_access_keys\n  targets: { access_keys: { ids: [AKIAMISSINGKEY000000] } }\n  on_failure: continue\n\
         - action: iam.revoke_user_sessions\n  targets: { users: { names: [nobody] } }\n  on_failure: continue\n\
         - action: iam.revoke_user_sessions\n  targets: { users: { access_key_ids: [AKIAMISSINGKEY000001] } }\n  on_failure: continue\n\
         - action: iam.revoke_role_sessions\n  targets: { roles: { names: [no-role] } }\n  on_failure: continue\n\
         - action: iam.revoke_session\n  targets: { sessions: { key_ids: [ASIAMISSINGKEY000002] } }\n  on_failure: continue\n\
         - action: ec2.isolate_instances\n  targets: { instances: { ids: [i-0123456789abcdef0] } }\n  on_failure: continue\n\
         - action: ec2.lock_snapshots\n  targets: { snapshots: { ids: [snap-0123456789abcdef0] } }\n",
    );
    let pb = pb.to_str().expect("path");
    let plan = e.run(&["--output", "json", "plan", pb]);
    assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    let report = json(&plan.stdout);
    let names = [
        "AKIAMISSINGKEY000000",
        "nobody",
        "AKIAMISSINGKEY000001",
        "no-role",
        "ASIAMISSINGKEY000002",
        "i-0123456789abcdef0",
        "snap-0123456789abcdef0",
    ];
    for (step, name) in report["steps"].as_array().expect("steps").iter().zip(names) {
        let items = step["items"].as_array().expect("items");
        assert_eq!(items.len(), 1, "step {}: {step}", step["index"]);
        assert_eq!(items[0]["outcome"], "failed", "{step}");
        // A stolen session nobody can name stays usable: it fails the step
        // as a check, which `on_missing: skip` cannot turn into a skip.
        let code = match name.starts_with("ASIA") {
            true => "BreakglassCheck",
            false => "BreakglassNotFound",
        };
        assert_eq!(items[0]["error"]["code"], code, "{step}");
        assert!(
            items[0]["error"]["message"].to_string().contains(name),
            "{step}"
        );
    }
    let ran = e.run(&["run", pb, "--yes"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(mutations(&e), Vec::<String>::new());
    // With `on_missing: skip` a step goes on without the missing name, and
    // still selects nothing else.
    let skip = playbook(
        &e,
        "skip.yaml",
        "name: skip\nsteps:\n- action: iam.revoke_user_sessions\n  targets: { users: { names: [nobody] } }\n  on_missing: skip\n",
    );
    let ran = e.run(&["run", skip.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(inline_policies(&e).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_stolen_session_revokes_the_role_that_minted_it_or_asks_for_it() {
    let e = Estate::new().await;
    e.role("app", "/svc/").await;
    e.role("other", "/").await;
    let pb = repo_playbook("compromised-session.yaml");
    let pb = pb.to_str().expect("path");
    let key = "ASIAAPPSESSION000001";
    // CloudTrail has no event made with the key yet: nothing changes and
    // the run says which variable names the owner.
    let var = format!("key_id={key}");
    let ran = e.run(&["run", pb, "--yes", "--var", &var, "--var", "case_id=IR-3"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("--var role="), "{}", ran.stderr);
    assert_eq!(mutations(&e), Vec::<String>::new());

    // CloudTrail's event names a session of a role `app` with another id:
    // the role was made again since, so a deny by that id would deny
    // nothing. The step fails and changes nothing.
    let event = |role_id: &str| {
        r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"ROLEID:i-0abc","arn":"arn:aws:sts::123456789012:assumed-role/app/i-0abc","accountId":"123456789012","accessKeyId":"ASIAAPPSESSION000001","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"ROLEID","arn":"arn:aws:iam::123456789012:role/svc/app","accountId":"123456789012","userName":"app"}}},"eventName":"ListBuckets"}"#
            .replace("ROLEID", role_id)
    };
    e.proxy().trail_event(key, &event("AROAOLDROLE0000000000"));
    let ran = e.run(&["run", pb, "--yes", "--var", &var, "--var", "case_id=IR-3"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("made again"), "{}", ran.stdout);
    assert_eq!(mutations(&e), Vec::<String>::new());

    // With the role's own id, that session alone is denied, by its
    // aws:userid, on that role only.
    let app = role_id(&e, "app").await;
    let key = "ASIAAPPSESSION000002";
    e.proxy().trail_event(key, &event(&app));
    let var = format!("key_id={key}");
    let ran = e.run(&["run", pb, "--yes", "--var", &var, "--var", "case_id=IR-3"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let denied = e.inline_policy("role", "app", DENY_SESSIONS).await;
    assert_eq!(session_userids(denied), [format!("{app}:i-0abc")]);
    assert!(e.inline_policy("role", "app", REVOKE).await.is_none());
    assert!(
        e.inline_policy("role", "other", DENY_SESSIONS)
            .await
            .is_none()
    );

    // Named explicitly, the role needs no CloudTrail, but the session needs
    // its name: a role alone is never widened to all its sessions.
    let unknown = "key_id=ASIAUNKNOWNSESSION00";
    let base = ["run", pb, "--yes", "--var", unknown, "--var", "role=other"];
    let ran = e.run(&[&base[..], &["--var", "case_id=IR-3"]].concat());
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("scope: all_sessions"), "{}", ran.stderr);
    assert!(
        e.inline_policy("role", "other", DENY_SESSIONS)
            .await
            .is_none()
    );
    let ran = e.run(
        &[
            &base[..],
            &["--var", "session=ci-42", "--var", "case_id=IR-3"],
        ]
        .concat(),
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let id = role_id(&e, "other").await;
    let denied = e.inline_policy("role", "other", DENY_SESSIONS).await;
    assert_eq!(session_userids(denied), [format!("{id}:ci-42")]);

    // A second stolen session of the same role adds to the list.
    let log = e.path("ci-43.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(
        &[
            &base[..],
            &["--var", "session=ci-43", "--var", "case_id=IR-3"],
            &["--audit-log", log],
        ]
        .concat(),
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let denied = e.inline_policy("role", "other", DENY_SESSIONS).await;
    assert_eq!(
        session_userids(denied),
        [format!("{id}:ci-42"), format!("{id}:ci-43")]
    );
    // Its rollback lifts its own session and leaves the earlier one denied.
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    let denied = e.inline_policy("role", "other", DENY_SESSIONS).await;
    assert_eq!(session_userids(denied), [format!("{id}:ci-42")]);

    // A role and a session name are enough, without the key id.
    let ran = e.run(&[
        "run",
        pb,
        "--yes",
        "--var",
        "role=other",
        "--var",
        "session=ci-44",
        "--var",
        "case_id=IR-3",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let denied = e.inline_policy("role", "other", DENY_SESSIONS).await;
    assert_eq!(
        session_userids(denied),
        [format!("{id}:ci-42"), format!("{id}:ci-44")]
    );
    // A role alone is not: nothing would name the session.
    let ran = e.run(&[
        "run",
        pb,
        "--yes",
        "--var",
        "role=other",
        "--var",
        "case_id=IR-3",
    ]);
    assert_eq!(ran.code, 2, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("`sessions.key_ids` is empty"),
        "{}",
        ran.stderr
    );

    // Two writes to one role's list in one run: its rollback lifts both,
    // and leaves what other runs denied.
    let two = playbook(
        &e,
        "two.yaml",
        "name: two\nsteps:\n\
         - action: iam.revoke_session\n  targets: { sessions: { key_ids: [], role: other, session_name: ci-50 } }\n\
         - action: iam.revoke_session\n  targets: { sessions: { key_ids: [], role: other, session_name: ci-51 } }\n",
    );
    let log = e.path("two.jsonl");
    let log = log.to_str().expect("path");
    let two = two.to_str().expect("path");
    let ran = e.run(&["run", two, "--yes", "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let denied = session_userids(e.inline_policy("role", "other", DENY_SESSIONS).await);
    assert_eq!(denied.len(), 4, "{denied:?}");
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    let denied = e.inline_policy("role", "other", DENY_SESSIONS).await;
    assert_eq!(
        session_userids(denied),
        [format!("{id}:ci-42"), format!("{id}:ci-44")]
    );

    // The broad alternative, when the playbook asks for it: every session
    // of the role issued before now.
    let text = std::fs::read_to_string(repo_playbook("compromised-session.yaml"))
        .expect("playbook")
        .replace("scope: session", "scope: all_sessions");
    let broad = e.path("broad.yaml");
    std::fs::write(&broad, text).expect("write");
    let broad = broad.to_str().expect("path");
    let ran = e.run(&[
        "run",
        broad,
        "--yes",
        "--var",
        unknown,
        "--var",
        "role=other",
        "--var",
        "case_id=IR-3",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(e.inline_policy("role", "other", REVOKE).await.is_some());
}

/// A role's unique id (AROA…), as moto made it.
async fn role_id(e: &Estate, name: &str) -> String {
    let role = e.iam.get_role().role_name(name).send().await.expect("role");
    role.role()
        .map(|r| r.role_id().to_string())
        .expect("role id")
}

/// The `aws:userid` values a breakglass-deny-sessions policy denies.
fn session_userids(policy: Option<serde_json::Value>) -> Vec<String> {
    let policy = policy.expect("a deny-sessions policy");
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Effect"], "Deny", "{policy}");
    assert_eq!(statement["Action"], "*", "{policy}");
    statement["Condition"]["StringEquals"]["aws:userid"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The ENI of an instance and its security groups, now.
async fn eni_groups(e: &Estate, instance: &str) -> Vec<String> {
    let i = e.instance("us-east-1", instance).await;
    let mut g: Vec<String> = i
        .network_interfaces()
        .iter()
        .flat_map(|n| n.groups())
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    g.sort();
    g
}

async fn group_id(e: &Estate, name: &str) -> String {
    e.security_groups_named("us-east-1", name)
        .await
        .first()
        .and_then(|g| g.group_id())
        .expect("group")
        .to_string()
}

#[tokio::test]
async fn isolation_never_leaves_an_interface_on_the_allow_all_group() {
    let e = Estate::new().await;
    let id = e.instances("us-east-1", 1, false).await.remove(0);
    let original = eni_groups(&e, &id).await;
    let pb = playbook(
        &e,
        "isolate.yaml",
        &format!(
            "name: isolate\nsteps:\n- action: ec2.isolate_instances\n  targets: {{ instances: {{ ids: [{id}] }} }}\n"
        ),
    );
    let pb = pb.to_str().expect("path");

    // The move to the quarantine group (the second modify) is refused: the
    // interface goes back to its own groups, and the run says so.
    e.proxy().refuse(
        "ModifyNetworkInterfaceAttribute",
        2,
        403,
        "UnauthorizedOperation",
    );
    let ran = e.run(&["run", pb, "--yes"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("put back on its original groups"),
        "{}",
        ran.stdout
    );
    assert_eq!(eni_groups(&e, &id).await, original);
    // The flush group lets everything through, IPv6 included.
    let flush = e
        .security_groups_named("us-east-1", "breakglass-flush")
        .await;
    let flush = flush.first().expect("flush group");
    let v6 = |perms: &[aws_sdk_ec2::types::IpPermission]| {
        perms.iter().any(|p| {
            p.ipv6_ranges()
                .iter()
                .any(|r| r.cidr_ipv6() == Some("::/0"))
        })
    };
    assert!(v6(flush.ip_permissions()) && v6(flush.ip_permissions_egress()));

    // The answer to the second move is lost after AWS made it: the retry
    // converges on the quarantine group.
    e.proxy().lose("ModifyNetworkInterfaceAttribute", 1);
    let ran = e.run(&["run", pb, "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let quarantine = group_id(&e, QUARANTINE).await;
    assert_eq!(eni_groups(&e, &id).await, vec![quarantine.clone()]);

    // A run killed between the two moves leaves the interface on the flush
    // group: verify calls it exposed, a rerun fixes it, and the rollback of
    // that rerun does not put it back on the flush group.
    let flush_id = group_id(&e, "breakglass-flush").await;
    let eni = e.instance("us-east-1", &id).await.network_interfaces()[0]
        .network_interface_id()
        .expect("eni")
        .to_string();
    e.ec2("us-east-1")
        .modify_network_interface_attribute()
        .network_interface_id(&eni)
        .groups(&flush_id)
        .send()
        .await
        .expect("strand on flush");
    let verify = e.run(&["verify", pb]);
    assert_eq!(verify.code, 1, "{}\n{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.contains("EXPOSED"), "{}", verify.stdout);
    let log = e.path("rerun.jsonl");
    let ran = e.run(&[
        "run",
        pb,
        "--yes",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(eni_groups(&e, &id).await, vec![quarantine.clone()]);
    let back = e.run(&["rollback", log.to_str().expect("path"), "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(eni_groups(&e, &id).await, vec![quarantine]);
    assert!(back.stdout.contains("stays isolated"), "{}", back.stdout);
}

#[tokio::test]
async fn creates_whose_answers_are_lost_happen_exactly_once() {
    let e = Estate::new().await;
    e.organization().await;
    let ids = e.instances("us-east-1", 2, false).await;
    let alice = e.user_with_key("alice").await;
    let pb = playbook(
        &e,
        "lost.yaml",
        "name: lost\nsteps:\n\
         - action: org.apply_scp\n  with: { target: root }\n\
         - action: iam.deactivate_access_keys\n  targets: { users: { all: true } }\n\
         - action: ec2.snapshot_volumes\n  targets: { instances: { all: true } }\n\
         - action: ec2.isolate_instances\n  targets: { instances: { all: true } }\n",
    );
    let p = e.proxy();
    p.lose("CreatePolicy", 1);
    p.lose("CreateSecurityGroup", 2);
    p.lose("CreateSnapshots", 2);
    // Another writer holds the user for a moment: IAM says try again.
    p.refuse("UpdateAccessKey", 1, 409, "ConcurrentModification");
    let ran = e.run(&["run", pb.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(p.lost("CreatePolicy"), 1);
    assert_eq!(p.lost("CreateSecurityGroup"), 2);
    assert_eq!(p.lost("CreateSnapshots"), 2);
    assert_eq!(e.key_status("alice", &alice).await, "Inactive");

    let ours = e.scps("breakglass-deny-all").await.len();
    assert_eq!(ours, 1, "one SCP");
    assert_eq!(
        e.security_groups_named("us-east-1", QUARANTINE).await.len(),
        1
    );
    assert_eq!(
        e.security_groups_named("us-east-1", "breakglass-flush")
            .await
            .len(),
        1
    );
    for id in &ids {
        let volumes: Vec<String> = e
            .instance("us-east-1", id)
            .await
            .block_device_mappings()
            .iter()
            .filter_map(|b| b.ebs().and_then(|v| v.volume_id()).map(str::to_string))
            .collect();
        assert!(!volumes.is_empty());
        for v in volumes {
            let snaps = e
                .ec2("us-east-1")
                .describe_snapshots()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("volume-id")
                        .values(&v)
                        .build(),
                )
                .send()
                .await
                .expect("snapshots");
            assert_eq!(snaps.snapshots().len(), 1, "one snapshot of {v}");
        }
    }
}

#[tokio::test]
async fn termination_protection_also_holds_against_a_shutdown_from_inside() {
    let e = Estate::new().await;
    let ec2 = e.ec2("us-east-1");
    let id = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .instance_initiated_shutdown_behavior(aws_sdk_ec2::types::ShutdownBehavior::Terminate)
        .send()
        .await
        .expect("run")
        .instances()[0]
        .instance_id()
        .expect("id")
        .to_string();
    let settings = || async {
        use aws_sdk_ec2::types::InstanceAttributeName as A;
        let read = |a: A| {
            ec2.describe_instance_attribute()
                .instance_id(&id)
                .attribute(a)
                .send()
        };
        let flag = read(A::DisableApiTermination)
            .await
            .expect("flag")
            .disable_api_termination()
            .and_then(|v| v.value());
        let stop = read(A::DisableApiStop)
            .await
            .expect("stop flag")
            .disable_api_stop()
            .and_then(|v| v.value());
        let behavior = read(A::InstanceInitiatedShutdownBehavior)
            .await
            .expect("behavior")
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value())
            .map(str::to_string);
        let delete: Vec<bool> = e
            .instance("us-east-1", &id)
            .await
            .block_device_mappings()
            .iter()
            .filter_map(|b| b.ebs().and_then(|v| v.delete_on_termination()))
            .collect();
        (
            flag.unwrap_or(false),
            stop.unwrap_or(false),
            behavior,
            delete,
        )
    };
    let before = settings().await;
    assert!(!before.1, "{before:?}");
    assert_eq!(before.2.as_deref(), Some("terminate"));
    assert!(before.3.contains(&true), "{before:?}");

    let pb = playbook(
        &e,
        "protect.yaml",
        &format!(
            "name: protect\nsteps:\n- action: ec2.enable_termination_protection\n  targets: {{ instances: {{ ids: [{id}] }} }}\n"
        ),
    );
    let log = e.path("protect.jsonl");
    let ran = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let after = settings().await;
    assert!(after.0, "termination protection on");
    assert!(after.1, "stop protection on");
    assert_eq!(after.2.as_deref(), Some("stop"));
    assert!(after.3.iter().all(|d| !d), "{after:?}");
    // A stop, which would lose the memory, is refused.
    let stop = ec2.stop_instances().instance_ids(&id).send().await;
    assert!(stop.is_err(), "stop protection refuses a stop: {stop:?}");
    let verify = e.run(&["verify", pb.to_str().expect("path")]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);

    let back = e.run(&["rollback", log.to_str().expect("path"), "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(settings().await, before);
}

#[tokio::test]
async fn the_freeze_exempts_exact_principals_never_a_name_pattern() {
    let e = Estate::new().await;
    e.organization().await;
    e.role("IR-One", "/ir/").await;
    let pb = playbook(
        &e,
        "freeze.yaml",
        "name: freeze\nprotect:\n  - arn:aws:iam::*:role/ir/IR-*\n  - arn:aws:iam::*:role/IR-BreakGlass\nsteps:\n  - action: org.apply_scp\n    with: { target: root }\n",
    );
    let ran = e.run(&["run", pb.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("is a pattern") && ran.stderr.contains("role/ir/IR-One"),
        "{}",
        ran.stderr
    );
    let (_, doc) = e.scps("breakglass-deny-all").await.remove(0);
    let exempt: Vec<String> = doc["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
        .as_array()
        .expect("exemptions")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    // The pattern became its one match now; an attacker's later IR-Anything
    // is not exempt. Exact names stay as written; the executor is exact.
    assert_eq!(
        exempt,
        vec![
            "arn:aws:iam::123456789012:user/ir/ir-responder".to_string(),
            "arn:aws:iam::*:role/IR-BreakGlass".to_string(),
            "arn:aws:iam::123456789012:role/ir/IR-One".to_string(),
        ]
    );
}
