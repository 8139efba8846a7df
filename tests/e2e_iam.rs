//! End to end against moto: the binary, the real SDK code paths, API state read back.

mod common;

use common::{Estate, playbook, repo_playbook};

const REVOKE: &str = "breakglass-revoke-older-sessions";
const QUARANTINE: &str = "breakglass-quarantine";
const SSO_ROLE: &str = "AWSReservedSSO_Admin_0123456789abcdef";

/// The `aws:TokenIssueTime` cutoff of a revocation policy.
fn cutoff(doc: &serde_json::Value) -> jiff::Timestamp {
    let s = &doc["Statement"][0];
    assert_eq!(s["Effect"], "Deny");
    assert_eq!(s["Action"], "*");
    assert_eq!(s["Resource"], "*");
    s["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        .as_str()
        .expect("TokenIssueTime condition")
        .parse()
        .expect("timestamp")
}

async fn lockdown_estate() -> (Estate, String, String) {
    let e = Estate::new().await;
    let alice = e.user_with_key("alice").await;
    let bob = e.user_with_key("bob").await;
    e.role("app", "/").await;
    e.role("IR-BreakGlass", "/").await;
    e.role(SSO_ROLE, "/aws-reserved/sso.amazonaws.com/").await;
    e.iam
        .create_service_linked_role()
        .aws_service_name("autoscaling.amazonaws.com")
        .send()
        .await
        .expect("service-linked role");
    (e, alice, bob)
}

#[tokio::test]
async fn credential_lockdown_contains_everyone_but_the_executor() {
    let (e, alice, bob) = lockdown_estate().await;
    let pb = repo_playbook("credential-lockdown.yaml");
    let started = jiff::Timestamp::now();
    let log = e.path("run.jsonl");
    let ran = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--var",
        "case_id=IR-1",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);

    assert_eq!(e.key_status("alice", &alice).await, "Inactive");
    assert_eq!(e.key_status("bob", &bob).await, "Inactive");
    assert!(!e.has_login_profile("alice").await);
    assert!(!e.has_login_profile("bob").await);
    let role_doc = e
        .inline_policy("role", "app", REVOKE)
        .await
        .expect("app revoked");
    assert!(
        cutoff(&role_doc)
            >= started
                .checked_sub(jiff::SignedDuration::from_secs(1))
                .expect("t")
    );
    let user_doc = e
        .inline_policy("user", "alice", REVOKE)
        .await
        .expect("alice revoked");
    assert!(
        cutoff(&user_doc)
            >= started
                .checked_sub(jiff::SignedDuration::from_secs(1))
                .expect("t")
    );

    // The executor keeps its key and console access; protected and
    // service-linked roles are untouched.
    assert_eq!(
        e.key_status(&e.executor_user, &e.executor_key).await,
        "Active"
    );
    assert!(e.has_login_profile(&e.executor_user).await);
    assert!(
        e.inline_policy("user", &e.executor_user, REVOKE)
            .await
            .is_none()
    );
    assert!(
        e.inline_policy("role", "IR-BreakGlass", REVOKE)
            .await
            .is_none()
    );
    assert!(
        ran.stdout
            .contains("protected by arn:aws:iam::*:role/IR-BreakGlass"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("service-linked role"), "{}", ran.stdout);
    // IAM refuses changes to an Identity Center role: skipped, pointing to
    // the action that reaches its users, and never written to.
    let written = e.iam.list_role_policies().role_name(SSO_ROLE).send().await;
    assert!(written.expect("role policies").policy_names().is_empty());
    assert!(
        ran.stdout.contains(&format!(
            "role {SSO_ROLE} · IAM Identity Center role (AWSReservedSSO_*), which IAM cannot edit: contain its users with sso.contain_users"
        )),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("verify: every target reads back contained"),
        "{}",
        ran.stdout
    );

    let verify = e.run(&["audit", "verify", log.to_str().expect("path")]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(&e.executor_secret));

    // A rerun converges: nothing left to change, still exit 0.
    let again = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--var",
        "case_id=IR-1",
        "--output",
        "json",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let report: serde_json::Value = serde_json::from_str(&again.stdout).expect("json report");
    assert_eq!(report["totals"]["failed"], 0);
    assert_eq!(report["status"], "completed");
    // Keys and login profiles are already contained; revocations from an
    // earlier run are renewed only when they predate this run.
    assert_eq!(report["steps"][0]["counts"]["changed"], 0);
    assert_eq!(report["steps"][3]["counts"]["changed"], 0);
}

#[tokio::test]
async fn dry_run_and_plan_change_nothing() {
    let (e, alice, _) = lockdown_estate().await;
    let pb = repo_playbook("credential-lockdown.yaml");
    let plan = e.run(&["plan", pb.to_str().expect("path"), "--var", "case_id=IR-1"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("iam:UpdateAccessKey UserName=alice"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("the key this run signs with"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("the executor itself"),
        "{}",
        plan.stdout
    );

    let log = e.path("dry.jsonl");
    let ran = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--dry-run",
        "--var",
        "case_id=IR-1",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains("would change"), "{}", ran.stdout);
    assert_eq!(e.key_status("alice", &alice).await, "Active");
    assert!(e.has_login_profile("alice").await);
    assert!(e.inline_policy("role", "app", REVOKE).await.is_none());

    let first = std::fs::read_to_string(&log).expect("log");
    let line: serde_json::Value =
        serde_json::from_str(first.lines().next().expect("line")).expect("json");
    let start = &line["record"];
    assert_eq!(start["event"], "run_start");
    assert_eq!(start["dry_run"], true);
    assert!(
        !first.contains("\"event\":\"intent\""),
        "a dry run announces no call"
    );
    assert_eq!(
        e.run(&["audit", "verify", log.to_str().expect("path")])
            .code,
        0
    );
}

#[tokio::test]
async fn compromised_access_key_contains_its_owner_only() {
    let e = Estate::new().await;
    let leaked = e.user_with_key("ci-bot").await;
    let second = e.add_key("ci-bot").await;
    let other = e.user_with_key("alice").await;
    let pb = repo_playbook("compromised-access-key.yaml");
    let var = format!("key_id={leaked}");
    let ran = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--var",
        &var,
        "--var",
        "case_id=IR-2",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);

    assert_eq!(e.key_status("ci-bot", &leaked).await, "Inactive");
    assert_eq!(
        e.key_status("ci-bot", &second).await,
        "Active",
        "only the leaked key"
    );
    assert_eq!(e.key_status("alice", &other).await, "Active");
    assert!(e.inline_policy("user", "ci-bot", REVOKE).await.is_some());
    let q = e
        .inline_policy("user", "ci-bot", QUARANTINE)
        .await
        .expect("quarantined");
    assert_eq!(q["Statement"][0]["Effect"], "Deny");
    assert!(e.inline_policy("user", "alice", QUARANTINE).await.is_none());
}

#[tokio::test]
async fn naming_the_executor_refuses_the_run() {
    let e = Estate::new().await;
    let alice = e.user_with_key("alice").await;
    let pb = playbook(
        &e,
        "self.yaml",
        r#"
name: self-harm
steps:
  - action: iam.deactivate_access_keys
    targets: { users: { names: [alice] } }
  - action: iam.quarantine_principals
    targets: { users: { names: [ir-responder] } }
  - action: iam.deactivate_access_keys
    targets: { access_keys: { ids: ["EXECUTOR_KEY"] } }
"#
        .replace("EXECUTOR_KEY", &e.executor_key)
        .as_str(),
    );
    for args in [&["run", "--yes"][..], &["plan"][..]] {
        let mut argv = args.to_vec();
        argv.insert(1, pb.to_str().expect("path"));
        let ran = e.run(&argv);
        assert_eq!(ran.code, 3, "{}\n{}", ran.stdout, ran.stderr);
        assert!(ran.stderr.contains("step 2 (iam.quarantine_principals): `iam.quarantine_principals` names the user ir-responder of the executor's credential chain"), "{}", ran.stderr);
        assert!(ran.stderr.contains(&format!("step 3 (iam.deactivate_access_keys): `iam.deactivate_access_keys` names key {}, which the executor's credential chain signs with", e.executor_key)), "{}", ran.stderr);
    }
    // Refused before any change: even step 1, which was harmless, did not run.
    let mutations = e.proxy().mutations.lock().expect("lock").clone();
    assert!(mutations.is_empty(), "{mutations:?}");
    assert_eq!(e.key_status("alice", &alice).await, "Active");
    assert_eq!(
        e.key_status(&e.executor_user, &e.executor_key).await,
        "Active"
    );
    assert!(
        e.inline_policy("user", &e.executor_user, QUARANTINE)
            .await
            .is_none()
    );
}

#[tokio::test]
async fn environment_credentials_never_replace_the_profile() {
    let e = Estate::new().await;
    let intruder_key = e.user_with_key("intruder").await;
    let out = e
        .cmd()
        .env("AWS_ACCESS_KEY_ID", &intruder_key)
        .env("AWS_SECRET_ACCESS_KEY", "whatever")
        .args(["whoami", "--output", "json"])
        .output()
        .expect("run");
    e.assert_no_secret_leaked(&out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        who["identity"]["arn"],
        "arn:aws:iam::123456789012:user/ir/ir-responder"
    );
    assert_eq!(who["identity"]["access_key_id"], e.executor_key.as_str());
    assert_eq!(who["endpoint"]["source"], "--endpoint-url");
}

#[tokio::test]
async fn identity_mismatch_and_missing_confirmation_refuse_without_changes() {
    let e = Estate::new().await;
    let alice = e.user_with_key("alice").await;
    let pb = playbook(
        &e,
        "pinned.yaml",
        r#"
name: pinned
executor:
  expect_account: "999999999999"
steps:
  - action: iam.deactivate_access_keys
    targets: { users: { all: true } }
"#,
    );
    let ran = e.run(&["run", pb.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("999999999999") && ran.stderr.contains("123456789012"),
        "{}",
        ran.stderr
    );
    assert_eq!(e.key_status("alice", &alice).await, "Active");

    let pb = playbook(
        &e,
        "principal.yaml",
        r#"
name: principal
executor:
  expect_principal: arn:aws:iam::123456789012:role/IR-BreakGlass
steps:
  - action: iam.deactivate_access_keys
    targets: { users: { all: true } }
"#,
    );
    let ran = e.run(&["run", pb.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);

    // No terminal and no --yes: refused before any change.
    let pb = repo_playbook("credential-lockdown.yaml");
    let ran = e.run(&["run", pb.to_str().expect("path"), "--var", "case_id=IR-3"]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(ran.stderr.contains("--yes"), "{}", ran.stderr);
    assert_eq!(e.key_status("alice", &alice).await, "Active");

    // A missing required variable is a usage error, also before any change.
    let ran = e.run(&["run", pb.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("--var case_id=VALUE"), "{}", ran.stderr);
    assert_eq!(e.key_status("alice", &alice).await, "Active");
    let mutations = e.proxy().mutations.lock().expect("lock").clone();
    assert!(
        mutations.is_empty(),
        "no refusal may let a mutating call through: {mutations:?}"
    );
}

#[tokio::test]
async fn selectors_narrow_by_path_tags_and_exclude() {
    let e = Estate::new().await;
    let c1 = e.user_with_key("c1").await;
    e.iam
        .create_user()
        .user_name("c2")
        .path("/contractors/")
        .send()
        .await
        .expect("c2");
    let c2 = e.add_key("c2").await;
    e.iam
        .create_user()
        .user_name("c3")
        .path("/contractors/")
        .send()
        .await
        .expect("c3");
    let c3 = e.add_key("c3").await;
    e.iam
        .tag_user()
        .user_name("c3")
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value("red")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("tag");
    let pb = playbook(
        &e,
        "narrow.yaml",
        r#"
name: narrow
steps:
  - action: iam.deactivate_access_keys
    targets: { users: { path_prefix: /contractors/, tags: { team: red } } }
  - action: iam.quarantine_principals
    targets: { users: { all: true, exclude: [c1] } }
"#,
    );
    let ran = e.run(&["run", pb.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.key_status("c3", &c3).await, "Inactive");
    assert_eq!(e.key_status("c2", &c2).await, "Active");
    assert_eq!(e.key_status("c1", &c1).await, "Active");
    assert!(e.inline_policy("user", "c2", QUARANTINE).await.is_some());
    assert!(e.inline_policy("user", "c1", QUARANTINE).await.is_none());
}

#[tokio::test]
async fn verify_reads_state_back_and_names_drift() {
    let (e, alice, _) = lockdown_estate().await;
    let pb = repo_playbook("credential-lockdown.yaml");
    let pb = pb.to_str().expect("path");
    let before = e.run(&["verify", pb, "--var", "case_id=IR-4"]);
    assert_eq!(before.code, 1, "{}", before.stdout);
    assert!(
        before.stdout.contains("NOT CONTAINED key"),
        "{}",
        before.stdout
    );

    let ran = e.run(&["run", pb, "--yes", "--var", "case_id=IR-4"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let after = e.run(&["verify", pb, "--var", "case_id=IR-4"]);
    assert_eq!(after.code, 0, "{}", after.stdout);

    // The attacker turns alice's key back on: verify says exactly which one.
    e.iam
        .update_access_key()
        .user_name("alice")
        .access_key_id(&alice)
        .status(aws_sdk_iam::types::StatusType::Active)
        .send()
        .await
        .expect("re-enable");
    let drift = e.run(&["verify", pb, "--var", "case_id=IR-4", "--output", "json"]);
    assert_eq!(drift.code, 1);
    let doc: serde_json::Value = serde_json::from_str(&drift.stdout).expect("json");
    let keys = &doc["steps"][0];
    assert_eq!(keys["contained"], false);
    let open: Vec<&serde_json::Value> = keys["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| t["state"] == "not_contained")
        .collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["target"]["key_id"], alice.as_str());
    assert_eq!(open[0]["drift"], "is Active");
    let text = e.run(&["verify", pb, "--var", "case_id=IR-4"]);
    assert!(
        text.stdout.contains(&format!(
            "NOT CONTAINED key {alice} of user alice is Active"
        )),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn an_endpoint_from_the_environment_alone_is_refused_for_live_runs() {
    let e = Estate::new().await;
    let alice = e.user_with_key("alice").await;
    let pb = repo_playbook("credential-lockdown.yaml");
    let pb = pb.to_str().expect("path");
    let base = |extra: &[&str]| {
        let mut cmd = assert_cmd::Command::cargo_bin("breakglass").expect("binary");
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", e.path("credentials"))
            .env("AWS_CONFIG_FILE", e.path("config"))
            .env("AWS_ENDPOINT_URL", e.proxy().endpoint())
            .current_dir(e.dir.path())
            .args(["run", pb, "--yes", "--var", "case_id=IR-5"])
            .args(extra);
        cmd.output().expect("run")
    };
    let refused = base(&[]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-env-endpoint"));
    assert_eq!(e.key_status("alice", &alice).await, "Active");

    let allowed = base(&["--allow-env-endpoint"]);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert_eq!(e.key_status("alice", &alice).await, "Inactive");
}

#[tokio::test]
async fn max_targets_refuses_a_step_that_reaches_too_far() {
    let e = Estate::new().await;
    let mut keys = Vec::new();
    for u in ["u1", "u2", "u3"] {
        keys.push((u, e.user_with_key(u).await));
    }
    let pb = playbook(
        &e,
        "limited.yaml",
        r#"
name: limited
max_targets: 2
steps:
  - action: iam.deactivate_access_keys
    targets: { users: { all: true } }
  - action: iam.quarantine_principals
    targets: { users: { names: [u1] } }
"#,
    );
    let pb = pb.to_str().expect("path");
    let plan = e.run(&["plan", pb]);
    assert_eq!(plan.code, 3, "{}", plan.stdout);
    let ran = e.run(&["run", pb, "--yes"]);
    assert_eq!(ran.code, 3, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("discovery found 3 targets and max_targets is 2"),
        "{}",
        ran.stdout
    );
    for (u, k) in &keys {
        assert_eq!(e.key_status(u, k).await, "Active");
    }
    assert!(
        e.inline_policy("user", "u1", QUARANTINE).await.is_none(),
        "later steps do not run"
    );
}

#[tokio::test]
async fn a_denied_step_stops_the_run_before_it_changes_anything() {
    let e = Estate::new().await;
    let alice = e.user_with_key("alice").await;
    e.role("app", "/").await;
    e.proxy()
        .denied_actions
        .lock()
        .expect("lock")
        .insert("iam:PutRolePolicy".to_string());
    let pb = repo_playbook("credential-lockdown.yaml");
    let pb = pb.to_str().expect("path");

    let plan = e.run(&["plan", pb, "--var", "case_id=IR-6", "--check-permissions"]);
    assert_eq!(plan.code, 1, "{}", plan.stdout);
    assert!(plan.stdout.contains("PreflightDenied"), "{}", plan.stdout);
    assert!(plan.stdout.contains("implicitDeny"), "{}", plan.stdout);

    // With --yes each step starts once its own check passes: steps 1 and 2
    // (keys, user sessions) run, step 3 (role sessions), which AWS would
    // deny, stops the run before it changes anything, and step 4 never runs.
    let ran = e.run(&["run", pb, "--yes", "--var", "case_id=IR-6"]);
    assert_eq!(ran.code, 3, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("preflight: 1 call(s) would be denied")
            && ran
                .stderr
                .contains("nothing in this step or after it was changed"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("role app"), "{}", ran.stderr);
    let mutations = e.proxy().mutations.lock().expect("lock").clone();
    let called = |a: &str| mutations.iter().any(|k| k.contains(a));
    assert!(
        !called("PutRolePolicy") && !called("DeleteLoginProfile"),
        "nothing from the denied step on may reach AWS: {mutations:?}"
    );
    assert!(called("UpdateAccessKey"), "{mutations:?}");
    assert_eq!(e.key_status("alice", &alice).await, "Inactive");

    // Step 1 denied: nothing at all is changed.
    let bob = e.user_with_key("bob").await;
    e.proxy().mutations.lock().expect("lock").clear();
    e.proxy()
        .denied_actions
        .lock()
        .expect("lock")
        .insert("iam:UpdateAccessKey".to_string());
    let ran = e.run(&["run", pb, "--yes", "--var", "case_id=IR-6"]);
    assert_eq!(ran.code, 3, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("would be denied; nothing was changed"),
        "{}",
        ran.stderr
    );
    let mutations = e.proxy().mutations.lock().expect("lock").clone();
    assert!(mutations.is_empty(), "{mutations:?}");
    assert_eq!(e.key_status("bob", &bob).await, "Active");
    e.proxy()
        .denied_actions
        .lock()
        .expect("lock")
        .remove("iam:UpdateAccessKey");

    // --skip-preflight runs it anyway (the denial is the emulator's word only here).
    e.proxy().mutations.lock().expect("lock").clear();
    let ran = e.run(&[
        "run",
        pb,
        "--yes",
        "--var",
        "case_id=IR-6",
        "--skip-preflight",
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let mutations = e.proxy().mutations.lock().expect("lock").clone();
    assert!(
        mutations.iter().any(|m| m.contains("PutRolePolicy")),
        "{mutations:?}"
    );
}

#[tokio::test]
async fn the_audit_log_is_mirrored_to_s3_and_a_dead_mirror_stops_nothing() {
    let e = Estate::new().await;
    let alice = e.user_with_key("alice").await;
    e.s3()
        .create_bucket()
        .bucket("forensics")
        .send()
        .await
        .expect("bucket");
    let pb = repo_playbook("credential-lockdown.yaml");
    let pb = pb.to_str().expect("path");
    let log = e.path("mirrored.jsonl");
    let ran = e.run(&[
        "run",
        pb,
        "--yes",
        "--var",
        "case_id=IR-14",
        "--audit-log",
        log.to_str().expect("path"),
        "--audit-log",
        "s3://forensics/ir",
        "--audit-bucket-owner",
        "123456789012",
        "--output",
        "json",
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json");
    let run_id = report["run_id"].as_str().expect("run id");
    let local: Vec<String> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(report["audit_mirror"]["uploaded"], local.len());
    assert_eq!(report["audit_mirror"]["failed"], 0);
    let listed = e
        .s3()
        .list_objects_v2()
        .bucket("forensics")
        .prefix(format!("ir/{run_id}/"))
        .send()
        .await
        .expect("list");
    assert_eq!(listed.contents().len(), local.len());
    let last = e
        .s3()
        .get_object()
        .bucket("forensics")
        .key(format!("ir/{run_id}/{:06}.json", local.len() - 1))
        .send()
        .await
        .expect("last record")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(
        String::from_utf8_lossy(&last),
        format!("{}\n", local[local.len() - 1]),
        "the copy is byte-identical, its newline included"
    );

    // A mirror that cannot write is loud, containment goes on, and the run
    // says the mirror is incomplete (exit 1).
    e.iam
        .update_access_key()
        .user_name("alice")
        .access_key_id(&alice)
        .status(aws_sdk_iam::types::StatusType::Active)
        .send()
        .await
        .expect("re-enable");
    let ran = e.run(&[
        "run",
        pb,
        "--yes",
        "--var",
        "case_id=IR-14",
        "--audit-log",
        "s3://no-such-bucket/x",
        "--audit-bucket-owner",
        "123456789012",
    ]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("audit_mirror_incomplete"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stderr
            .contains("warning: audit mirror s3://no-such-bucket/x/"),
        "{}",
        ran.stderr
    );
    assert!(ran.stdout.contains("FAILED"), "{}", ran.stdout);
    assert_eq!(e.key_status("alice", &alice).await, "Inactive");
}

#[tokio::test]
async fn an_interrupted_run_is_reported_and_its_uncertain_change_left_alone() {
    let e = Estate::new().await;
    let alice = e.user_with_key("alice").await;
    let bob = e.user_with_key("bob").await;
    let pb = playbook(
        &e,
        "keys.yaml",
        "name: keys\nsteps:\n  - action: iam.deactivate_access_keys\n    targets: { users: { names: [alice, bob] } }\n    on_failure: continue\n",
    );
    let log = e.path("full.jsonl");
    // One call at a time, so the first change's result precedes the second's intent.
    let ran = e.run(&[
        "--concurrency",
        "1",
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    // Cut the log as a SIGKILL would: after the last intent record, before its result.
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(str::to_string)
        .collect();
    let last_intent = lines
        .iter()
        .rposition(|l| l.contains("\"event\":\"intent\""))
        .expect("an intent");
    let uncertain: serde_json::Value = serde_json::from_str(&lines[last_intent]).expect("json");
    let uncertain_key = uncertain["record"]["target"]["key_id"]
        .as_str()
        .expect("key")
        .to_string();
    let cut = e.path("cut.jsonl");
    std::fs::write(&cut, lines[..=last_intent].join("\n") + "\n").expect("write");

    let verify = e.run(&["audit", "verify", cut.to_str().expect("path")]);
    assert_eq!(verify.code, 1);
    assert!(verify.stdout.contains("INTERRUPTED"), "{}", verify.stdout);
    assert!(
        verify.stdout.contains("UNCERTAIN") && verify.stdout.contains(&uncertain_key),
        "{}",
        verify.stdout
    );

    let back = e.run(&[
        "rollback",
        cut.to_str().expect("path"),
        "--yes",
        "--reactivate-keys",
    ]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(
        back.stderr.contains("interrupted during"),
        "{}",
        back.stderr
    );
    assert!(back.stderr.contains(&uncertain_key), "{}", back.stderr);
    // The confirmed change is undone; the uncertain one is left for a human.
    let (certain_user, certain_key) = if uncertain_key == alice {
        ("bob", &bob)
    } else {
        ("alice", &alice)
    };
    let uncertain_user = if certain_user == "bob" {
        "alice"
    } else {
        "bob"
    };
    assert_eq!(e.key_status(certain_user, certain_key).await, "Active");
    assert_eq!(
        e.key_status(uncertain_user, &uncertain_key).await,
        "Inactive"
    );
}

/// An Identity Center estate: `mallory` (compromised) holds `Admin` in the
/// account directly and `ReadOnly` through group `ops`; `alice` holds the
/// same; `Billing` is nobody's. `Admin` already has an inline policy.
struct Sso {
    instance: String,
    store: String,
    mallory: String,
    alice: String,
    ops: String,
    admin: String,
    read_only: String,
    billing: String,
}

const ADMIN_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;

async fn sso_estate(e: &Estate) -> Sso {
    let sso = e.sso_admin();
    let ids = e.identitystore();
    let listed = sso.list_instances().send().await.expect("instances");
    let inst = &listed.instances()[0];
    let instance = inst.instance_arn().expect("arn").to_string();
    let store = inst.identity_store_id().expect("store").to_string();
    let user = |name: &str| {
        ids.create_user()
            .identity_store_id(&store)
            .user_name(name)
            .display_name(name)
            .name(
                aws_sdk_identitystore::types::Name::builder()
                    .given_name(name)
                    .family_name("Example")
                    .build(),
            )
            .send()
    };
    let mallory = user("mallory").await.expect("user").user_id().to_string();
    let alice = user("alice").await.expect("user").user_id().to_string();
    let ops = ids
        .create_group()
        .identity_store_id(&store)
        .display_name("ops")
        .send()
        .await
        .expect("group")
        .group_id()
        .to_string();
    for u in [&mallory, &alice] {
        ids.create_group_membership()
            .identity_store_id(&store)
            .group_id(&ops)
            .member_id(aws_sdk_identitystore::types::MemberId::UserId(u.clone()))
            .send()
            .await
            .expect("membership");
    }
    let ps = |name: &str| {
        sso.create_permission_set()
            .instance_arn(&instance)
            .name(name)
            // moto answers a default duration as a number, which the SDK
            // refuses; AWS's is an ISO 8601 duration.
            .session_duration("PT1H")
            .send()
    };
    let arn =
        |out: aws_sdk_ssoadmin::operation::create_permission_set::CreatePermissionSetOutput| {
            out.permission_set()
                .and_then(|p| p.permission_set_arn())
                .expect("ps arn")
                .to_string()
        };
    let admin = arn(ps("Admin").await.expect("ps"));
    let read_only = arn(ps("ReadOnly").await.expect("ps"));
    let billing = arn(ps("Billing").await.expect("ps"));
    sso.put_inline_policy_to_permission_set()
        .instance_arn(&instance)
        .permission_set_arn(&admin)
        .inline_policy(ADMIN_POLICY)
        .send()
        .await
        .expect("inline");
    use aws_sdk_ssoadmin::types::{PrincipalType, TargetType};
    let assign = |ps: &str, kind: PrincipalType, who: &str| {
        sso.create_account_assignment()
            .instance_arn(&instance)
            .target_id("123456789012")
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(ps)
            .principal_type(kind)
            .principal_id(who)
            .send()
    };
    assign(&admin, PrincipalType::User, &mallory)
        .await
        .expect("assign");
    assign(&admin, PrincipalType::User, &alice)
        .await
        .expect("assign");
    assign(&read_only, PrincipalType::Group, &ops)
        .await
        .expect("assign");
    // AWS provisions a permission set to an account when it is assigned
    // there; moto waits to be asked.
    for ps in [&admin, &read_only] {
        sso.provision_permission_set()
            .instance_arn(&instance)
            .permission_set_arn(ps)
            .target_type(aws_sdk_ssoadmin::types::ProvisionTargetType::AllProvisionedAccounts)
            .send()
            .await
            .expect("provision");
    }
    Sso {
        instance,
        store,
        mallory,
        alice,
        ops,
        admin,
        read_only,
        billing,
    }
}

impl Sso {
    /// The user ids a permission set's breakglass statement denies.
    async fn denied(&self, e: &Estate, ps: &str) -> Vec<String> {
        let doc = self.policy(e, ps).await;
        let Some(doc) = doc else { return Vec::new() };
        let doc: serde_json::Value = serde_json::from_str(&doc).expect("json");
        let statements = doc["Statement"].as_array().cloned().unwrap_or_default();
        statements
            .iter()
            .filter(|s| s["Sid"] == "BreakglassDenyIdentityCenterUsers")
            .flat_map(|s| {
                assert_eq!(s["Effect"], "Deny");
                assert_eq!(s["Action"], "*");
                assert_eq!(s["Resource"], "*");
                s["Condition"]["StringEquals"]["identitystore:UserId"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|v| v.as_str().expect("id").to_string())
            .collect()
    }

    async fn policy(&self, e: &Estate, ps: &str) -> Option<String> {
        let out = e
            .sso_admin()
            .get_inline_policy_for_permission_set()
            .instance_arn(&self.instance)
            .permission_set_arn(ps)
            .send()
            .await
            .expect("inline policy");
        out.inline_policy()
            .filter(|p| !p.is_empty())
            .map(str::to_string)
    }

    /// The permission sets a user is assigned directly.
    async fn assigned(&self, e: &Estate, user: &str) -> Vec<String> {
        let out = e
            .sso_admin()
            .list_account_assignments_for_principal()
            .instance_arn(&self.instance)
            .principal_type(aws_sdk_ssoadmin::types::PrincipalType::User)
            .principal_id(user)
            .send()
            .await
            .expect("assignments");
        out.account_assignments()
            .iter()
            .filter_map(|a| a.permission_set_arn().map(str::to_string))
            .collect()
    }

    /// The groups a user is in.
    async fn groups(&self, e: &Estate, user: &str) -> Vec<String> {
        let out = e
            .identitystore()
            .list_group_memberships_for_member()
            .identity_store_id(&self.store)
            .member_id(aws_sdk_identitystore::types::MemberId::UserId(user.into()))
            .send()
            .await
            .expect("memberships");
        out.group_memberships()
            .iter()
            .filter_map(|m| m.group_id().map(str::to_string))
            .collect()
    }
}

#[tokio::test]
async fn identity_center_user_is_contained_without_touching_colleagues() {
    let mut e = Estate::new().await;
    e.with_proxy();
    let s = sso_estate(&e).await;
    let pb = repo_playbook("compromised-identity-center-user.yaml");
    let pb = pb.to_str().expect("path");

    // A group name with a typo reaches nobody and changes nothing.
    let typo = playbook(
        &e,
        "typo.yaml",
        "name: typo\nsteps:\n  - action: sso.contain_users\n    with: { groups: [opps] }\n",
    );
    let ran = e.run(&["run", typo.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("nothing was changed") && ran.stderr.contains("no group named opps"),
        "{}",
        ran.stderr
    );
    assert_eq!(s.groups(&e, &s.alice).await, vec![s.ops.clone()]);
    assert_eq!(s.policy(&e, &s.admin).await.as_deref(), Some(ADMIN_POLICY));

    let dry = e.run(&[
        "run",
        pb,
        "--var",
        "user=mallory",
        "--var",
        "case_id=IR-9",
        "--dry-run",
    ]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains("sso:DeleteAccountAssignment"),
        "{}",
        dry.stdout
    );
    assert_eq!(s.assigned(&e, &s.mallory).await, vec![s.admin.clone()]);

    // Answers lost: the retries find the work done and add nothing twice.
    e.proxy().lose("PutInlinePolicyToPermissionSet", 1);
    e.proxy().lose("DeleteGroupMembership", 1);
    e.proxy().lose("DeleteAccountAssignment", 1);
    let log = e.path("sso.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&[
        "run",
        pb,
        "--var",
        "user=mallory",
        "--var",
        "case_id=IR-9",
        "--yes",
        "--audit-log",
        log,
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("Active sessions"), "{}", ran.stdout);
    assert_eq!(e.proxy().lost("PutInlinePolicyToPermissionSet"), 1);
    assert_eq!(e.proxy().lost("DeleteGroupMembership"), 1);
    assert_eq!(e.proxy().lost("DeleteAccountAssignment"), 1);

    // Denied in every permission set, those it held (one through its group)
    // and the one it did not; the permission set's own statement is kept;
    // nobody else is denied.
    for ps in [&s.admin, &s.read_only, &s.billing] {
        assert_eq!(s.denied(&e, ps).await, vec![s.mallory.clone()]);
    }
    assert!(
        s.policy(&e, &s.admin)
            .await
            .expect("policy")
            .contains("s3:*")
    );
    // Its access is gone; alice's is whole.
    assert!(s.assigned(&e, &s.mallory).await.is_empty());
    assert!(s.groups(&e, &s.mallory).await.is_empty());
    assert_eq!(s.assigned(&e, &s.alice).await, vec![s.admin.clone()]);
    assert_eq!(s.groups(&e, &s.alice).await, vec![s.ops.clone()]);

    let verify = e.run(&[
        "verify",
        pb,
        "--var",
        "user=mallory",
        "--var",
        "case_id=IR-9",
    ]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.contains("denies mallory in every account"),
        "{}",
        verify.stdout
    );
    assert_eq!(e.run(&["audit", "verify", log]).code, 0);

    // A permission set changed since it was provisioned (here by a person,
    // with the same document) is not contained, and is not provisioned
    // unasked: that would push the person's change live. Asked to, a run
    // provisions it without writing anything twice.
    let doc = s.policy(&e, &s.admin).await.expect("policy");
    e.sso_admin_at(&e.proxy().endpoint())
        .put_inline_policy_to_permission_set()
        .instance_arn(&s.instance)
        .permission_set_arn(&s.admin)
        .inline_policy(doc)
        .send()
        .await
        .expect("put");
    let vars = ["--var", "user=mallory", "--var", "case_id=IR-9"];
    let stale = e.run(&[&["verify", pb][..], &vars].concat());
    assert_ne!(stale.code, 0, "{}", stale.stdout);
    assert!(
        stale.stdout.contains("changes not yet provisioned"),
        "{}",
        stale.stdout
    );
    let unasked = e.run(&[&["run", pb, "--yes"][..], &vars].concat());
    assert_eq!(unasked.code, 1, "{}\n{}", unasked.stdout, unasked.stderr);
    let pending = playbook(
        &e,
        "pending.yaml",
        "name: pending\nsteps:\n  - action: sso.contain_users\n    with: { users: [mallory], provision_pending: true }\n",
    );
    let pending = pending.to_str().expect("path");
    let again = e.run(&["run", pending, "--yes"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains("sso:ProvisionPermissionSet Admin"),
        "{}",
        again.stdout
    );
    assert_eq!(s.denied(&e, &s.admin).await, vec![s.mallory.clone()]);

    // Rollback gives everything back, the permission set's policy as it was.
    let back = e.run(&["rollback", log, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(s.assigned(&e, &s.mallory).await, vec![s.admin.clone()]);
    assert_eq!(s.groups(&e, &s.mallory).await, vec![s.ops.clone()]);
    for ps in [&s.admin, &s.read_only, &s.billing] {
        assert!(s.denied(&e, ps).await.is_empty());
    }
    assert_eq!(s.policy(&e, &s.billing).await, None);
    let restored: serde_json::Value =
        serde_json::from_str(&s.policy(&e, &s.admin).await.expect("policy")).expect("json");
    let original: serde_json::Value = serde_json::from_str(ADMIN_POLICY).expect("json");
    assert_eq!(restored, original);
}
