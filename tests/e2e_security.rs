//! breakglass cannot be turned against the estate (issue 24): each exploit a
//! security review turned into a working attack against moto, replayed, and
//! shown to fail, reading the emulator's state back.

mod common;

use std::io::Read;

use common::{Estate, playbook};

const REVOKE: &str = "breakglass-revoke-older-sessions";
const QUARANTINE: &str = "breakglass-quarantine";

fn mutations(e: &Estate) -> Vec<String> {
    e.proxy().mutations.lock().expect("mutations").clone()
}

/// An estate with alice and her key, and a playbook that quarantines her.
async fn fenced_alice() -> (Estate, std::path::PathBuf) {
    let e = Estate::new().await;
    e.user_with_key("alice").await;
    let pb = playbook(
        &e,
        "fence.yaml",
        "name: fence\nsteps:\n  - action: iam.quarantine_principals\n    targets: { users: { names: [alice] } }\n",
    );
    (e, pb)
}

/// A log written, sealed and signed by an attacker's own key: it verifies as
/// a chain, but rollback trusts only this responder's key, so it opens
/// nothing. The same log re-sealed after an edit fails outright.
#[tokio::test]
async fn a_forged_resealed_log_opens_nothing() {
    let (e, pb) = fenced_alice().await;
    let log = e.path("fence.jsonl");
    let ran = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(e.inline_policy("user", "alice", QUARANTINE).await.is_some());

    // The attacker re-seals the whole log with a key of their own, the run
    // start naming it, after turning the quarantine into an "undo" that
    // would write `Allow *` into it.
    let attacker = breakglass::audit::AuditKey::at(&e.path("elsewhere/attacker-key")).expect("key");
    let text = std::fs::read_to_string(&log).expect("log");
    let mut prev = "0".repeat(64);
    let mut forged = String::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("line");
        let mut record = v["record"].clone();
        record["prev"] = serde_json::Value::String(prev.clone());
        if record["event"] == "run_start" {
            record["audit_key"] = serde_json::Value::String(attacker.public());
        }
        if record["event"] == "intent" {
            record["op"]["prior_document"] = serde_json::Value::String(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#.into(),
            );
        }
        let body = record.to_string();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(body.as_bytes());
        let hash = hex::encode(digest);
        forged.push_str(&format!(
            "{{\"v\":2,\"record\":{body},\"hash\":\"{hash}\",\"sig\":\"{}\"}}\n",
            attacker.sign(&digest)
        ));
        prev = hash;
    }
    let forged_path = e.path("forged.jsonl");
    std::fs::write(&forged_path, forged).expect("write");
    let before = mutations(&e).len();
    let verify = e.run(&["audit", "verify", forged_path.to_str().expect("path")]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(verify.stdout.contains("NOT TRUSTED"), "{}", verify.stdout);
    let back = e.run(&["rollback", forged_path.to_str().expect("path"), "--yes"]);
    assert_eq!(back.code, 3, "{}\n{}", back.stdout, back.stderr);
    assert!(
        back.stderr.contains("which this machine does not hold"),
        "{}",
        back.stderr
    );
    assert_eq!(mutations(&e).len(), before, "nothing was sent");
    let doc = e
        .inline_policy("user", "alice", QUARANTINE)
        .await
        .expect("still quarantined");
    assert_eq!(doc["Statement"][0]["Effect"], "Deny");

    // The genuine log rolls back; `--expect-head` with a wrong head refuses.
    let wrong = e.run(&[
        "rollback",
        log.to_str().expect("path"),
        "--yes",
        "--expect-head",
        &"f".repeat(64),
    ]);
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);
    let back = e.run(&["rollback", log.to_str().expect("path"), "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(e.inline_policy("user", "alice", QUARANTINE).await.is_none());
}

/// During a hold the intruder writes `Allow *` into the quarantine policy;
/// the hold puts the deny back (recording the intruder's document as its
/// "prior"); the rollback restores the state before the run's first change,
/// so no attacker document comes back.
#[tokio::test]
async fn a_hold_and_its_rollback_leave_no_attacker_document() {
    let (e, pb) = fenced_alice().await;
    let log = e.path("hold.jsonl");
    let mut cmd = e.cmd();
    cmd.args([
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--hold",
        "5s",
        "--every",
        "1s",
        "--audit-log",
        log.to_str().expect("path"),
    ]);
    let run = tokio::task::spawn_blocking(move || cmd.output().expect("run"));
    let allow =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let mut wrote = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if e.inline_policy("user", "alice", QUARANTINE).await.is_some() {
            e.iam
                .put_user_policy()
                .user_name("alice")
                .policy_name(QUARANTINE)
                .policy_document(allow)
                .send()
                .await
                .expect("intruder writes");
            wrote = true;
            break;
        }
    }
    assert!(wrote, "the run quarantined alice");
    let out = run.await.expect("join");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = e
        .inline_policy("user", "alice", QUARANTINE)
        .await
        .expect("policy");
    assert_eq!(
        doc["Statement"][0]["Effect"], "Deny",
        "the hold put the deny back"
    );

    let back = e.run(&["rollback", log.to_str().expect("path"), "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(
        e.inline_policy("user", "alice", QUARANTINE).await.is_none(),
        "no attacker document restored"
    );
}

/// Markers an attacker plants to look "already contained" are replaced: a
/// revocation with a far cutoff and a condition that never matches, a
/// quarantine group that lets everything in, and a snapshot with
/// breakglass's tags but no token of its key.
#[tokio::test]
async fn planted_markers_are_replaced_and_a_reopened_group_is_flagged() {
    let e = Estate::new().await;
    e.role("app", "/").await;
    let planted = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"2099-01-01T00:00:00Z"},"StringEquals":{"aws:username":"nobody"}}}]}"#;
    e.iam
        .put_role_policy()
        .role_name("app")
        .policy_name(REVOKE)
        .policy_document(planted)
        .send()
        .await
        .expect("plant");
    let id = e.instances("us-east-1", 1, false).await.remove(0);
    let ec2 = e.ec2("us-east-1");
    let vpc = e
        .instance("us-east-1", &id)
        .await
        .vpc_id()
        .expect("vpc")
        .to_string();
    let group = ec2
        .create_security_group()
        .group_name(QUARANTINE)
        .description("planted")
        .vpc_id(&vpc)
        .send()
        .await
        .expect("plant group")
        .group_id()
        .expect("id")
        .to_string();
    let open = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("-1")
        .ip_ranges(
            aws_sdk_ec2::types::IpRange::builder()
                .cidr_ip("0.0.0.0/0")
                .build(),
        )
        .build();
    ec2.authorize_security_group_ingress()
        .group_id(&group)
        .ip_permissions(open.clone())
        .send()
        .await
        .expect("open it");
    let volume = e.instance("us-east-1", &id).await.block_device_mappings()[0]
        .ebs()
        .and_then(|v| v.volume_id())
        .expect("volume")
        .to_string();
    ec2.create_snapshot()
        .volume_id(&volume)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Snapshot)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("breakglass:source-instance")
                        .value(&id)
                        .build(),
                )
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("breakglass:token")
                        .value("0011.2233")
                        .build(),
                )
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("case")
                        .value("IR-7")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("plant snapshot");

    let pb = playbook(
        &e,
        "contain.yaml",
        &format!(
            "name: contain\nsteps:\n  - action: iam.revoke_role_sessions\n    targets: {{ roles: {{ names: [app] }} }}\n  - action: ec2.snapshot_volumes\n    targets: {{ instances: {{ ids: [{id}] }} }}\n    with: {{ tags: {{ case: IR-7 }} }}\n  - action: ec2.isolate_instances\n    targets: {{ instances: {{ ids: [{id}] }} }}\n"
        ),
    );
    let pb = pb.to_str().expect("path");
    let ran = e.run(&["--output", "json", "run", pb, "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json");
    for step in 0..3 {
        assert_eq!(
            report["steps"][step]["counts"]["changed"], 1,
            "{}",
            report["steps"][step]
        );
    }
    // The revocation is breakglass's own now: one statement, no extra condition.
    let doc = e
        .inline_policy("role", "app", REVOKE)
        .await
        .expect("policy");
    assert!(
        doc["Statement"][0]["Condition"]["StringEquals"].is_null(),
        "{doc}"
    );
    let cutoff: jiff::Timestamp =
        doc["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
            .as_str()
            .expect("cutoff")
            .parse()
            .expect("time");
    assert!(
        cutoff
            < jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(60))
                .expect("t")
    );
    // A real snapshot was taken beside the planted one.
    let snaps = ec2
        .describe_snapshots()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("volume-id")
                .values(&volume)
                .build(),
        )
        .send()
        .await
        .expect("snapshots");
    assert_eq!(snaps.snapshots().len(), 2);
    // The planted group lost its rule and holds the interface.
    let g = e.security_groups_named("us-east-1", QUARANTINE).await;
    assert!(g[0].ip_permissions().is_empty() && g[0].ip_permissions_egress().is_empty());

    // Reopened after isolation, the group is drift for verify and a rerun.
    ec2.authorize_security_group_ingress()
        .group_id(&group)
        .ip_permissions(open)
        .send()
        .await
        .expect("reopen");
    let verify = e.run(&["verify", pb]);
    assert_eq!(verify.code, 1, "{}\n{}", verify.stdout, verify.stderr);
    let again = e.run(&["run", pb, "--yes"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let g = e.security_groups_named("us-east-1", QUARANTINE).await;
    assert!(g[0].ip_permissions().is_empty(), "the rule is gone again");
}

/// A service endpoint variable or a profile's endpoint_url would receive
/// every signed call: a live run refuses it before sending anything.
#[tokio::test]
async fn redirected_service_endpoints_are_refused() {
    let e = Estate::new().await;
    let alice = e.user_with_key("alice").await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let fake = format!("http://{}", listener.local_addr().expect("addr"));
    let pb = common::repo_playbook("credential-lockdown.yaml");
    let pb = pb.to_str().expect("path");
    let mut cmd = e.std_cmd();
    let out = cmd
        .env("AWS_ENDPOINT_URL_IAM", &fake)
        .env("AWS_ENDPOINT_URL_STS", &fake)
        .args(["run", pb, "--yes", "--var", "case_id=IR-24"])
        .output()
        .expect("run");
    // With --endpoint-url on the command line, the variables are ignored:
    // the run goes where it was told, and nothing reaches the fake host.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listener.accept().is_err(),
        "nothing reached the redirected endpoint"
    );

    // Without it, the variables would decide: refused, nothing sent.
    let bob = e.user_with_key("bob").await;
    let ran = e.run_without_endpoint(
        &["run", pb, "--yes", "--var", "case_id=IR-24"],
        &[("AWS_ENDPOINT_URL_IAM", &fake)],
    );
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("AWS_ENDPOINT_URL_IAM") && ran.stderr.contains("nothing was sent"),
        "{}",
        ran.stderr
    );
    assert!(
        listener.accept().is_err(),
        "nothing reached the redirected endpoint"
    );
    assert_eq!(e.key_status("bob", &bob).await, "Active");
    assert_eq!(
        e.key_status("alice", &alice).await,
        "Inactive",
        "from the first run"
    );

    // A profile's endpoint_url is a source like any other.
    e.add_config(&format!("[profile redirected]\nendpoint_url = {fake}\n"));
    std::fs::write(
        e.path("credentials"),
        format!(
            "{}[redirected]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            std::fs::read_to_string(e.path("credentials")).expect("creds"),
            e.executor_key,
            e.executor_secret
        ),
    )
    .expect("write");
    let ran = e.run_without_endpoint(
        &[
            "--profile",
            "redirected",
            "run",
            pb,
            "--yes",
            "--var",
            "case_id=IR-24",
        ],
        &[],
    );
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("profile redirected endpoint_url"),
        "{}",
        ran.stderr
    );
    assert!(
        listener.accept().is_err(),
        "nothing reached the redirected endpoint"
    );
}

/// Audit logs are private (0600 in a 0700 folder), never written through a
/// symbolic link, and what a log holds cannot steer the terminal.
#[tokio::test]
async fn audit_files_are_private_and_their_text_cannot_steer_the_terminal() {
    use std::os::unix::fs::PermissionsExt;
    let e = Estate::new().await;
    e.user_with_key("alice").await;
    let pb = playbook(
        &e,
        "name.yaml",
        "name: escape\nsteps:\n  - name: \"keys \\e[8mhidden\\e[0m \\u202Eenil\"\n    action: iam.deactivate_access_keys\n    targets: { users: { all: true } }\n",
    );
    let ran = e.run(&["run", pb.to_str().expect("path"), "--yes"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let dir = e.path("breakglass-audit");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let log = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|d| d.ok().map(|d| d.path()))
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a log");
    assert_eq!(mode(&log), 0o600);
    let key = e.path(".config/breakglass/audit-key");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(key.parent().expect("dir")), 0o700);
    for out in [&ran.stdout, &ran.stderr] {
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{202e}'),
            "{out:?}"
        );
    }
    let show = e.run(&["audit", "show", log.to_str().expect("path")]);
    assert!(show.stdout.contains("\\u001b[8m"), "{}", show.stdout);
    // Each record says when, with its date and zone (RFC 3339).
    let first = show.stdout.split_whitespace().next().unwrap_or_default();
    assert!(
        first.parse::<jiff::Timestamp>().is_ok() && first.ends_with('Z'),
        "{}",
        show.stdout
    );
    assert!(!show.stdout.contains('\u{1b}') && !show.stdout.contains('\u{202e}'));

    // A log path through a symbolic link is refused, nothing written there.
    let target = e.path("elsewhere.jsonl");
    std::fs::write(&target, "").expect("target");
    let link = e.path("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let ran = e.run(&[
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--audit-log",
        link.to_str().expect("path"),
    ]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "");
}

/// The tabletop runs the emulator named by BREAKGLASS_MOTO_SERVER (or the
/// checkout's own) with every AWS_ variable removed, and never one planted
/// in the working directory.
#[tokio::test]
async fn a_planted_emulator_never_runs_and_the_real_one_sees_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let planted = dir.path().join(".venv/bin");
    std::fs::create_dir_all(&planted).expect("dir");
    let witness = dir.path().join("planted-ran");
    std::fs::write(
        planted.join("moto_server"),
        format!("#!/bin/sh\ntouch {}\nexit 1\n", witness.display()),
    )
    .expect("plant");
    let mut perms = std::fs::metadata(planted.join("moto_server"))
        .expect("meta")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(planted.join("moto_server"), perms.clone()).expect("chmod");
    // A wrapper that records the environment it gets, then runs the real one.
    let env_file = dir.path().join("emulator-env");
    let wrapper = dir.path().join("wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nenv > {}\nexec {} \"$@\"\n",
            env_file.display(),
            common::moto_server().display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, perms).expect("chmod");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = assert_cmd::Command::cargo_bin("breakglass")
        .expect("binary")
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("AWS_SECRET_ACCESS_KEY", "THE-RESPONDERS-REAL-SECRET")
        .env("AWS_ACCESS_KEY_ID", "AKIARESPONDER0000000")
        .env("BREAKGLASS_MOTO_SERVER", &wrapper)
        .env("NO_COLOR", "1")
        .args(["tabletop"])
        .arg(root.join("playbooks/compromised-access-key.yaml"))
        .arg("--scenario")
        .arg(root.join("scenarios/leaked-access-key.yaml"))
        .output()
        .expect("tabletop");
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !witness.exists(),
        "the planted emulator in the working directory never ran"
    );
    let mut env = String::new();
    std::fs::File::open(&env_file)
        .expect("the emulator ran")
        .read_to_string(&mut env)
        .expect("read");
    assert!(!env.contains("THE-RESPONDERS-REAL-SECRET"), "{env}");
    assert!(!env.lines().any(|l| l.starts_with("AWS_")), "{env}");
}
