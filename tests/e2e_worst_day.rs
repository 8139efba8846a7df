//! AWS on its worst day, against moto through the proxy: full quotas, an
//! asynchronous `EnablePolicyType`, concurrent modifications, throttled and
//! unavailable permission checks, metered reads, a failing and a slow
//! region. Each test reads the emulator's state afterwards: the tool
//! converged, took its documented fallback, or refused before any change.

mod common;

use common::{Estate, playbook, repo_playbook};

fn json(text: &str) -> serde_json::Value {
    serde_json::Deserializer::from_str(text)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .last()
        .expect("a JSON report")
}

fn mutations(e: &Estate) -> Vec<String> {
    e.proxy().mutations.lock().expect("mutations").clone()
}

/// Calls the proxy has seen so far whose action `matches`.
fn seen(e: &Estate, matches: impl Fn(&str) -> bool) -> usize {
    e.proxy()
        .worst
        .lock()
        .expect("worst")
        .seen
        .iter()
        .filter(|(a, _)| matches(a))
        .map(|(_, n)| n)
        .sum()
}

/// The SCP ids attached to a root, an OU or an account.
async fn scps_on(e: &Estate, target: &str) -> Vec<String> {
    e.org()
        .list_policies_for_target()
        .target_id(target)
        .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("policies for target")
        .policies()
        .iter()
        .filter_map(|p| p.id().map(str::to_string))
        .collect()
}

/// Attaches new allow-all SCPs to `target` until it holds five.
async fn fill(e: &Estate, target: &str, tag: &str) {
    let org = e.org();
    let mut n = scps_on(e, target).await.len();
    while n < 5 {
        let id = org
            .create_policy()
            .name(format!("guard-{tag}-{n}"))
            .description("a guardrail")
            .r#type(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
            .content(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
            .send()
            .await
            .expect("create guardrail")
            .policy()
            .and_then(|p| p.policy_summary())
            .and_then(|s| s.id())
            .expect("id")
            .to_string();
        org.attach_policy()
            .policy_id(&id)
            .target_id(target)
            .send()
            .await
            .expect("attach guardrail");
        n += 1;
    }
}

/// A root already holding five SCPs hands the freeze to each OU and account
/// under it; when one of those is full too, the preflight refuses before any
/// change and names the quota. A `ConcurrentModificationException` on the
/// way is asked again.
#[tokio::test]
async fn a_full_root_freezes_each_ou_and_account_under_it() {
    let e = Estate::new().await;
    let root = e.organization().await;
    let member = e.members(1).await.remove(0).id;
    let ou = e
        .org()
        .create_organizational_unit()
        .parent_id(&root)
        .name("workloads")
        .send()
        .await
        .expect("ou")
        .organizational_unit()
        .and_then(|o| o.id())
        .expect("ou id")
        .to_string();
    fill(&e, &root, "root").await;
    fill(&e, &ou, "ou").await;
    e.proxy()
        .worst
        .lock()
        .expect("worst")
        .quotas
        .scps_per_target = true;
    let pb = repo_playbook("org-freeze.yaml");
    let pb = pb.to_str().expect("path");

    let refused = e.run(&["run", pb, "--yes"]);
    assert_eq!(refused.code, 3, "{}\n{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("AWS quota"), "{}", refused.stderr);
    assert!(refused.stderr.contains(&ou), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("already holds 5 SCPs"),
        "{}",
        refused.stderr
    );
    assert!(mutations(&e).is_empty(), "{:?}", mutations(&e));
    assert!(e.scps("breakglass-deny-all").await.is_empty());

    // Room on the OU: the freeze goes on the OU and the member account.
    let guard = scps_on(&e, &ou)
        .await
        .into_iter()
        .find(|p| p != "p-FullAWSAccess")
        .expect("a guardrail");
    e.org()
        .detach_policy()
        .policy_id(&guard)
        .target_id(&ou)
        .send()
        .await
        .expect("detach");
    e.proxy()
        .refuse("AttachPolicy", 1, 400, "ConcurrentModificationException");
    let ran = e.run(&["run", pb, "--yes", "--output", "json"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = json(&ran.stdout);
    let notes = report["steps"][0]["notes"].to_string();
    assert!(notes.contains("already holds 5 SCPs"), "{notes}");
    let (id, _) = e.scps("breakglass-deny-all").await.remove(0);
    assert!(!scps_on(&e, &root).await.contains(&id));
    assert!(scps_on(&e, &ou).await.contains(&id));
    assert!(scps_on(&e, &member).await.contains(&id));
    assert!(!scps_on(&e, "123456789012").await.contains(&id));
    assert!(report["not_contained"].as_array().is_none_or(Vec::is_empty));
}

/// Just after `EnablePolicyType` AWS may still refuse the attach with
/// `PolicyTypeNotEnabledException` (the enable is asynchronous): the attach
/// is asked again until it holds.
#[tokio::test]
async fn an_attach_refused_just_after_enabling_scps_is_asked_again() {
    let e = Estate::new().await;
    let root = e.organization().await;
    // moto makes the organization with SCPs not yet enabled on the root.
    e.proxy().worst.lock().expect("worst").enable_lag = 2;
    let pb = repo_playbook("org-freeze.yaml");
    let ran = e.run(&["run", pb.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.proxy().worst.lock().expect("worst").lagged, 2);
    let (id, _) = e.scps("breakglass-deny-all").await.remove(0);
    assert!(scps_on(&e, &root).await.contains(&id));
}

async fn attached_policies(e: &Estate, user: &str) -> Vec<String> {
    e.iam
        .list_attached_user_policies()
        .user_name(user)
        .send()
        .await
        .expect("attached")
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect()
}

/// A user whose inline policies are at IAM's size limit gets the same deny
/// in a managed policy of its own, even when an intruder planted a policy of
/// that name elsewhere; one whose managed policies are full too is reported
/// not contained, naming both quotas. `verify` and a rerun find the
/// fallback; rollback detaches and deletes the policy the run made.
#[tokio::test]
async fn full_inline_policies_fall_back_to_a_managed_deny() {
    let e = Estate::new().await;
    e.user_with_key("alice").await;
    e.user_with_key("bob").await;
    // IAM policy names are unique whatever the path: this one takes alice's.
    e.iam
        .create_policy()
        .policy_name("breakglass-quarantine-user-alice")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .expect("planted policy");
    {
        let mut w = e.proxy().worst.lock().expect("worst");
        w.quotas.inline_full.extend(["alice".into(), "bob".into()]);
        w.quotas.managed_full.insert("bob".into());
    }
    let pb = playbook(
        &e,
        "fence.yaml",
        "name: fence\nsteps:\n  - action: iam.quarantine_principals\n    targets: { users: { names: [alice, bob] } }\n    on_failure: continue\n",
    );
    let pb = pb.to_str().expect("path");
    let log = e.path("fence.jsonl");
    let ran = e.run(&[
        "run",
        pb,
        "--yes",
        "--output",
        "json",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let report = json(&ran.stdout);
    let on_alice = attached_policies(&e, "alice").await;
    assert_eq!(on_alice.len(), 1, "{on_alice:?}");
    let arn = on_alice[0].clone();
    assert!(
        arn.starts_with(
            "arn:aws:iam::123456789012:policy/breakglass/breakglass-quarantine-user-alice-"
        ),
        "{arn}"
    );
    let version = e
        .iam
        .get_policy_version()
        .policy_arn(&arn)
        .version_id("v1")
        .send()
        .await
        .expect("version");
    let doc = common::percent_decode(
        version
            .policy_version()
            .and_then(|v| v.document())
            .expect("document"),
    );
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(doc["Statement"][0]["Effect"], "Deny");
    assert_eq!(doc["Statement"][0]["Action"], "*");
    assert!(attached_policies(&e, "bob").await.is_empty());
    assert!(
        e.iam
            .get_policy()
            .policy_arn(
                "arn:aws:iam::123456789012:policy/breakglass/breakglass-quarantine-user-bob"
            )
            .send()
            .await
            .is_err(),
        "an unattachable fallback policy is not left behind"
    );
    let items = report["steps"][0]["items"].to_string();
    assert!(items.contains("NOT CONTAINED"), "{items}");
    assert!(items.contains("PoliciesPerUser"), "{items}");
    // The read-back counts alice as contained (her deny is in the managed
    // policy) and bob as not; so does a later `verify`.
    let drift = report["not_contained"].to_string();
    assert!(drift.contains("bob"), "{drift}");
    assert!(!drift.contains("alice"), "{drift}");
    let verify = e.run(&["verify", pb]);
    assert!(
        verify.stdout.contains("NOT CONTAINED user bob"),
        "{}",
        verify.stdout
    );
    assert!(
        !verify.stdout.contains("NOT CONTAINED user alice"),
        "{}",
        verify.stdout
    );

    // A rerun finds alice's deny in place and changes nothing of hers.
    e.proxy()
        .worst
        .lock()
        .expect("worst")
        .quotas
        .managed_full
        .clear();
    let again = e.run(&["run", pb, "--yes", "--output", "json"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let again = json(&again.stdout);
    let alice_item = again["steps"][0]["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["target"]["name"] == "alice")
        .expect("alice")
        .clone();
    assert_eq!(alice_item["outcome"], "unchanged", "{alice_item}");

    let back = e.run(&[
        "rollback",
        log.to_str().expect("path"),
        "--yes",
        "--endpoint-url",
        &e.proxy().endpoint(),
    ]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(attached_policies(&e, "alice").await.is_empty());
    assert!(e.iam.get_policy().policy_arn(&arn).send().await.is_err());
    // The planted policy is not breakglass's: left alone.
    assert!(
        e.iam
            .get_policy()
            .policy_arn("arn:aws:iam::123456789012:policy/breakglass-quarantine-user-alice")
            .send()
            .await
            .is_ok()
    );
}

/// Permission checks that are throttled are asked again, never read as
/// denials; a permission simulator that answers 500 is "could not be
/// checked", said once with its cause, and `--yes` goes on. EC2 reads are
/// metered per API as EC2 documents, here tightly.
#[tokio::test]
async fn throttled_and_unavailable_permission_checks_never_refuse_a_run() {
    let e = Estate::new().await;
    e.user_with_key("alice").await;
    e.user_with_key("carol").await;
    e.iam
        .create_user()
        .user_name("dave")
        .path("/contractors/")
        .send()
        .await
        .expect("dave");
    let ids = e.instances("us-east-1", 3, false).await;
    let mut shaping = common::proxy::Shaping::new(std::time::Duration::ZERO, Default::default());
    shaping.read_limits = [("ec2".to_string(), (1.0, 2.0))].into_iter().collect();
    let shaping = std::sync::Arc::new(shaping);
    e.proxy().shape(shaping.clone());
    {
        let mut w = e.proxy().worst.lock().expect("worst");
        w.throttle_dry_runs = 3;
        w.throttle_simulations = 3;
    }
    let pb = playbook(
        &e,
        "contain.yaml",
        "name: contain\nregions: [us-east-1]\nsteps:\n  - action: iam.quarantine_principals\n    targets: { users: { names: [alice, dave] } }\n  - action: ec2.isolate_instances\n    targets: { instances: { all: true } }\n",
    );
    let pb = pb.to_str().expect("path");
    let ran = e.run(&["run", pb, "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(!ran.stderr.contains("would be denied"), "{}", ran.stderr);
    {
        let w = e.proxy().worst.lock().expect("worst");
        assert_eq!(w.dry_runs_throttled, 3);
        assert_eq!(w.simulations_throttled, 3);
        // The simulated resource carries the user's path, as IAM lists it.
        assert!(
            w.simulated_resources
                .contains("arn:aws:iam::123456789012:user/contractors/dave"),
            "{:?}",
            w.simulated_resources
        );
    }
    let throttled_reads = shaping
        .log
        .lock()
        .expect("log")
        .iter()
        .filter(|s| s.throttled && !s.mutating && s.service == "ec2")
        .count();
    assert!(throttled_reads > 0, "the read bucket never ran dry");
    for id in &ids {
        let i = e.instance("us-east-1", id).await;
        assert_eq!(
            i.network_interfaces()[0].groups()[0].group_name(),
            Some("breakglass-quarantine")
        );
    }
    assert!(
        e.inline_policy("user", "alice", "breakglass-quarantine")
            .await
            .is_some()
    );

    e.proxy().worst.lock().expect("worst").simulation_down = true;
    let pb2 = playbook(
        &e,
        "carol.yaml",
        "name: carol\nsteps:\n  - action: iam.quarantine_principals\n    targets: { users: { names: [carol] } }\n",
    );
    // A dry run says "could not be checked" and fails nothing for it.
    let dry = e.run(&["run", pb2.to_str().expect("path"), "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains("could not be checked"),
        "{}",
        dry.stdout
    );
    let ran = e.run(&["run", pb2.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("could not be checked"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("SimulatePrincipalPolicy"),
        "{}",
        ran.stderr
    );
    assert!(
        e.inline_policy("user", "carol", "breakglass-quarantine")
            .await
            .is_some()
    );
}

/// A region that fails stays in its own item; the instances of the other
/// regions, a slow one among them, are isolated; the run says it was not
/// complete.
#[tokio::test]
async fn a_failing_region_fails_alone() {
    let e = Estate::new().await;
    let east = e.instances("us-east-1", 1, false).await;
    let slow = e.instances("eu-west-1", 1, false).await;
    e.instances("us-west-2", 1, false).await;
    {
        let mut w = e.proxy().worst.lock().expect("worst");
        w.failing_regions.insert("us-west-2".into());
        w.slow_regions
            .insert("eu-west-1".into(), std::time::Duration::from_millis(150));
    }
    let pb = playbook(
        &e,
        "isolate.yaml",
        "name: isolate\nregions: [us-east-1, eu-west-1, us-west-2]\nsteps:\n  - action: ec2.isolate_instances\n    targets: { instances: { all: true } }\n",
    );
    let ran = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--skip-preflight",
        "--output",
        "json",
    ]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let report = json(&ran.stdout);
    assert_eq!(report["status"], "completed_with_failures", "{report}");
    let items = report["steps"][0]["items"]
        .as_array()
        .expect("items")
        .clone();
    let failed: Vec<&serde_json::Value> =
        items.iter().filter(|i| i["outcome"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{items:?}");
    assert_eq!(failed[0]["target"]["scope"]["region"], "us-west-2");
    for (region, id) in [("us-east-1", &east[0]), ("eu-west-1", &slow[0])] {
        let i = e.instance(region, id).await;
        assert_eq!(
            i.network_interfaces()[0].groups()[0].group_name(),
            Some("breakglass-quarantine"),
            "{region}"
        );
    }
}

/// Ctrl-C during a live run: no new call starts, the one under way finishes
/// and is recorded, the run end says "interrupted", the report names the
/// log and the next commands, and the log verifies.
#[tokio::test]
async fn ctrl_c_stops_new_calls_and_leaves_a_verifiable_log() {
    let e = Estate::new().await;
    let mut keys = Vec::new();
    for n in 0..8 {
        let user = format!("user{n}");
        keys.push((user.clone(), e.user_with_key(&user).await));
    }
    e.proxy()
        .shape(std::sync::Arc::new(common::proxy::Shaping::new(
            std::time::Duration::from_millis(150),
            Default::default(),
        )));
    let pb = playbook(
        &e,
        "keys.yaml",
        "name: keys\nsteps:\n  - action: iam.deactivate_access_keys\n    targets: { users: { all: true } }\n",
    );
    let log = e.path("interrupted.jsonl");
    let child = e
        .std_cmd()
        .args([
            "--concurrency",
            "1",
            "run",
            pb.to_str().expect("path"),
            "--yes",
            "--skip-preflight",
            "--audit-log",
            log.to_str().expect("path"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"event\":\"intent\"")) {
        assert!(std::time::Instant::now() < deadline, "no change started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: signals a child process of this test, by its id.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("interrupted: no new call starts"),
        "{stderr}"
    );
    assert!(stdout.contains("INTERRUPTED"), "{stdout}");
    assert!(
        stdout.contains(&format!("breakglass rollback {}", log.display())),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a line")).expect("json");
    assert_eq!(last["record"]["event"], "run_end");
    assert_eq!(last["record"]["status"], "interrupted");
    // Every intent has its result: the call under way finished.
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["record"].clone())
        .collect();
    let intents: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["event"] == "intent").collect();
    let answered = records
        .iter()
        .filter(|r| r["event"] == "result" && !r["intent"].is_null())
        .count();
    assert!(!intents.is_empty());
    assert_eq!(intents.len(), answered, "{text}");
    let verify = e.run(&["audit", "verify", log.to_str().expect("path")]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    let mut inactive = 0;
    for (user, key) in &keys {
        if e.key_status(user, key).await == "Inactive" {
            inactive += 1;
        }
    }
    assert!(
        inactive >= 1 && inactive < keys.len(),
        "{inactive} of {}",
        keys.len()
    );
}

/// Answers lost after AWS acted, for the calls a freeze and a credential
/// lockdown make: each is asked again or read back, and the run converges
/// with every change made once and the log verifying.
#[tokio::test]
async fn lost_answers_of_every_change_converge() {
    let e = Estate::new().await;
    let root = e.organization().await;
    let key = e.user_with_key("alice").await;
    for action in [
        "EnablePolicyType",
        "AttachPolicy",
        "UpdateAccessKey",
        "PutUserPolicy",
    ] {
        e.proxy().lose(action, 1);
    }
    let pb = playbook(
        &e,
        "lockdown.yaml",
        "name: lockdown\nsteps:\n  - action: org.apply_scp\n    with: { target: root }\n  - action: iam.deactivate_access_keys\n    targets: { users: { names: [alice] } }\n  - action: iam.quarantine_principals\n    targets: { users: { names: [alice] } }\n",
    );
    let log = e.path("lost.jsonl");
    let ran = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    for action in [
        "EnablePolicyType",
        "AttachPolicy",
        "UpdateAccessKey",
        "PutUserPolicy",
    ] {
        assert_eq!(e.proxy().lost(action), 1, "{action}");
    }
    let scps = e.scps("breakglass-deny-all").await;
    assert_eq!(scps.len(), 1);
    assert!(scps_on(&e, &root).await.contains(&scps[0].0));
    assert_eq!(e.key_status("alice", &key).await, "Inactive");
    assert!(
        e.inline_policy("user", "alice", "breakglass-quarantine")
            .await
            .is_some()
    );
    let verify = e.run(&["audit", "verify", log.to_str().expect("path")]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
}

/// With `--yes`, the org-wide freeze as the first step acts on what its
/// check discovered: the organization is read in the check and in the
/// read-back, as often as a run without the preflight reads it (in the step
/// and in the read-back), not a third time.
#[tokio::test]
async fn the_freeze_acts_on_its_check_instead_of_reading_again() {
    let e = Estate::new().await;
    e.organization().await;
    let pb = repo_playbook("org-freeze.yaml");
    let pb = pb.to_str().expect("path");
    let reads = || seen(&e, |a| a.starts_with("List") || a.starts_with("Describe"));
    let first = e.run(&["run", pb, "--yes", "--skip-preflight"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let before = reads();
    let again = e.run(&["run", pb, "--yes", "--skip-preflight"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let without_check = reads() - before;
    let before = reads();
    let checked = e.run(&["run", pb, "--yes"]);
    assert_eq!(checked.code, 0, "{}\n{}", checked.stdout, checked.stderr);
    let with_check = reads() - before;
    assert!(without_check > 0);
    assert_eq!(
        with_check, without_check,
        "the check's reads stand in for the step's"
    );
}

/// With `--yes`, termination protection's check asks only whether AWS would
/// allow the calls: the three attribute reads per instance (EC2 meters them
/// at 20 a second per region) are the step's and the read-back's, and the
/// check's for one instance per region only. The step still records each
/// instance's settings for rollback, and a DryRun denied on an instance
/// already protected refuses nothing (the step would make no call there).
/// The DryRun check itself is still made: see
/// `e2e_org_ec2::an_ec2_call_the_executor_may_not_make_refuses_the_run`.
#[tokio::test]
async fn a_yes_check_leaves_the_attribute_reads_to_the_step() {
    use aws_sdk_ec2::types::InstanceAttributeName as A;
    let e = Estate::new().await;
    let ids = e.instances("us-east-1", 3, false).await;
    let pb = playbook(
        &e,
        "protect.yaml",
        "name: protect\nsteps:\n- action: ec2.enable_termination_protection\n  targets: { instances: { all: true } }\n",
    );
    let pb = pb.to_str().expect("path");
    let reads = || seen(&e, |a| a == "DescribeInstanceAttribute");
    let flag = |id: String, attribute: A| {
        let ec2 = e.ec2("us-east-1");
        async move {
            let out = ec2
                .describe_instance_attribute()
                .instance_id(&id)
                .attribute(attribute.clone())
                .send()
                .await
                .expect("read");
            match attribute {
                A::DisableApiStop => out.disable_api_stop().and_then(|v| v.value()),
                _ => out.disable_api_termination().and_then(|v| v.value()),
            }
        }
    };
    let log = e.path("protect.jsonl");
    let log = log.to_str().expect("path");
    let checked = e.run(&["run", pb, "--yes", "--audit-log", log]);
    assert_eq!(checked.code, 0, "{}\n{}", checked.stdout, checked.stderr);
    for id in &ids {
        assert_eq!(flag(id.clone(), A::DisableApiTermination).await, Some(true));
        assert_eq!(flag(id.clone(), A::DisableApiStop).await, Some(true));
    }
    // The step and the read-back, three reads per instance each, and the
    // check's one instance in its one region.
    let per_instance = 2 * 3 * ids.len();
    assert_eq!(reads(), per_instance + 3, "the check reads one instance");

    let before = reads();
    let unchecked = e.run(&["run", pb, "--yes", "--skip-preflight"]);
    assert_eq!(
        unchecked.code, 0,
        "{}\n{}",
        unchecked.stdout, unchecked.stderr
    );
    assert_eq!(reads() - before, per_instance);

    // Every instance protected already: a denied DryRun refuses nothing.
    e.proxy()
        .denied_dry_runs
        .lock()
        .expect("lock")
        .insert("ModifyInstanceAttribute".to_string());
    let denied = e.run(&["run", pb, "--yes"]);
    assert_eq!(denied.code, 0, "{}\n{}", denied.stdout, denied.stderr);
    e.proxy()
        .denied_dry_runs
        .lock()
        .expect("lock")
        .remove("ModifyInstanceAttribute");

    // The first run recorded what it found: rollback puts stop protection
    // back off (with no record it would leave it on).
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    for id in &ids {
        assert_eq!(flag(id.clone(), A::DisableApiStop).await, Some(false));
        assert_eq!(
            flag(id.clone(), A::DisableApiTermination).await,
            Some(false)
        );
    }

    // The first instance (by id, the one the check reads) protected, the
    // others not: a denied DryRun on the others still refuses the step, and
    // nothing is changed.
    let mut sorted = ids.clone();
    sorted.sort();
    let one = playbook(
        &e,
        "one.yaml",
        &format!(
            "name: one\nsteps:\n- action: ec2.enable_termination_protection\n  targets: {{ instances: {{ ids: [{}] }} }}\n",
            sorted[0]
        ),
    );
    let first = e.run(&["run", one.to_str().expect("path"), "--yes"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    e.proxy()
        .denied_dry_runs
        .lock()
        .expect("lock")
        .insert("ModifyInstanceAttribute".to_string());
    let changes = || {
        mutations(&e)
            .iter()
            .filter(|m| m.as_str() == "ModifyInstanceAttribute")
            .count()
    };
    let before = changes();
    let refused = e.run(&["run", pb, "--yes"]);
    assert_eq!(refused.code, 3, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("would be denied"),
        "{}",
        refused.stderr
    );
    assert_eq!(changes(), before, "nothing changed");
    assert_eq!(
        flag(sorted[1].clone(), A::DisableApiTermination).await,
        Some(false)
    );
}

/// Each region is planned on its own: with one instance at a time per
/// region, termination protection's attribute reads in the second region
/// start before the first region's end (in one queue sorted by region, they
/// waited out the first region's read bucket).
#[tokio::test]
async fn regions_are_planned_side_by_side() {
    let e = Estate::new().await;
    e.instances("us-east-1", 3, false).await;
    e.instances("eu-west-1", 3, false).await;
    let shaping = std::sync::Arc::new(common::proxy::Shaping::new(
        std::time::Duration::from_millis(20),
        Default::default(),
    ));
    e.proxy().shape(shaping.clone());
    let pb = playbook(
        &e,
        "protect.yaml",
        "name: protect\nregions: [us-east-1, eu-west-1]\nsteps:\n- action: ec2.enable_termination_protection\n  targets: { instances: { all: true } }\n",
    );
    let ran = e.run(&["--concurrency", "1", "plan", pb.to_str().expect("path")]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let reads: Vec<(std::time::SystemTime, String)> = shaping
        .log
        .lock()
        .expect("log")
        .iter()
        .filter(|s| s.action == "DescribeInstanceAttribute")
        .map(|s| (s.at, s.region.clone()))
        .collect();
    assert_eq!(reads.len(), 2 * 3 * 3, "{reads:?}");
    let span = |region: &str| {
        let at: Vec<_> = reads
            .iter()
            .filter(|(_, r)| r == region)
            .map(|(t, _)| *t)
            .collect();
        (at.iter().min().copied(), at.iter().max().copied())
    };
    let ((us_first, us_last), (eu_first, eu_last)) = (span("us-east-1"), span("eu-west-1"));
    assert!(
        eu_first < us_last && us_first < eu_last,
        "the regions were planned one after the other: {reads:?}"
    );
}
