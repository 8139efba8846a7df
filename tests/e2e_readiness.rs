//! `readiness` against moto behind the loopback proxy: the healthy path
//! passes, each way the break-glass path breaks before an incident is
//! reported with its fix, and nothing is ever changed.

mod common;

use common::{Estate, playbook, repo_playbook};

/// The findings `readiness -o json` printed, one JSON object per line.
fn findings(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The finding of this check and severity whose subject or message
/// contains `text`; panics with every finding when there is none.
fn find<'a>(
    all: &'a [serde_json::Value],
    check: &str,
    severity: &str,
    text: &str,
) -> &'a serde_json::Value {
    all.iter()
        .find(|f| {
            f["check"] == check
                && f["severity"] == severity
                && (f["subject"].as_str().is_some_and(|s| s.contains(text))
                    || f["message"].as_str().is_some_and(|m| m.contains(text)))
        })
        .unwrap_or_else(|| {
            panic!(
                "no {severity} {check} finding about `{text}` in:\n{}",
                serde_json::to_string_pretty(all).unwrap_or_default()
            )
        })
}

fn errors(all: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    all.iter().filter(|f| f["severity"] == "error").collect()
}

/// Mutating calls the proxy saw, other than taking a role's session.
fn changes(e: &Estate) -> Vec<String> {
    e.proxy()
        .mutations
        .lock()
        .expect("lock")
        .iter()
        .filter(|m| *m != "AssumeRole")
        .cloned()
        .collect()
}

const READY: &str = "name: ready\nexecutor:\n  expect_account: \"123456789012\"\nregions: [us-east-1, eu-west-1]\nsteps:\n  - action: iam.deactivate_access_keys\n    targets: { users: { names: [alice] } }\n  - action: ec2.block_public_sharing\n  - action: iam.quarantine_principals\n    targets: { users: { names: [alice] } }\n";

#[tokio::test]
async fn a_healthy_path_is_ready_and_each_break_is_named_with_its_fix() {
    let e = Estate::new().await;
    e.user_with_key("alice").await;
    let pb = playbook(&e, "ready.yaml", READY);
    let pb = pb.to_str().expect("path");
    let log = e.path("logs/ready.jsonl");
    let log = log.to_str().expect("path");

    // The plan of the same playbook: a line per step and a count of the
    // targets by default, each target with `-v`, not the count with `-q`.
    let every = e.run(&["-v", "plan", pb]);
    let summary = e.run_as_typed(&["plan", pb]);
    let quiet = e.run(&["-q", "plan", pb]);
    let codes = (every.code, summary.code, quiet.code);
    assert_eq!(codes, (0, 0, 0), "{}\n{}", every.stderr, quiet.stderr);
    assert!(every.stdout.contains("user alice"), "{}", every.stdout);
    assert!(!summary.stdout.contains("user alice"), "{}", summary.stdout);
    assert!(summary.stdout.contains("step 3"), "{}", summary.stdout);
    assert!(
        summary.stdout.contains("(1 more target: -v lists each)"),
        "{}",
        summary.stdout
    );
    assert!(!quiet.stdout.contains("more target"), "{}", quiet.stdout);

    let ran = e.run(&["-o", "json", "readiness", pb, "--audit-log", log]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let all = findings(&ran.stdout);
    assert!(errors(&all).is_empty(), "{all:#?}");
    find(&all, "credentials", "ok", "ir-responder");
    find(&all, "identity", "ok", "expect_account");
    find(&all, "regions", "ok", "eu-west-1");
    find(&all, "permissions", "ok", "every call allowed");
    find(&all, "audit", "ok", "logs");
    find(&all, "quota", "ok", "room for the deny on 1 principal");
    // Every finding names its playbook, and a warning carries its fix.
    assert!(all.iter().all(|f| f["playbook"] == pb), "{all:#?}");
    let key = find(&all, "audit", "warning", "signing key");
    assert!(key["fix"].as_str().is_some_and(|f| f.contains("--trust")));

    // A region disabled since the playbook was written.
    e.proxy()
        .worst
        .lock()
        .expect("lock")
        .disabled_regions
        .insert("eu-west-1".into());
    let ran = e.run(&["-o", "json", "readiness", pb]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let all = findings(&ran.stdout);
    let region = find(&all, "regions", "error", "region eu-west-1");
    assert!(
        region["fix"]
            .as_str()
            .is_some_and(|f| f.contains("enable eu-west-1"))
    );
    e.proxy()
        .worst
        .lock()
        .expect("lock")
        .disabled_regions
        .clear();

    // A permission taken away: the preflight's denial, named.
    e.proxy()
        .denied_actions
        .lock()
        .expect("lock")
        .insert("iam:UpdateAccessKey".into());
    let ran = e.run(&["-o", "json", "readiness", pb]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let all = findings(&ran.stdout);
    let denied = find(&all, "permissions", "error", "iam:UpdateAccessKey");
    assert!(denied["fix"].as_str().is_some_and(|f| f.contains("grant")));
    e.proxy().denied_actions.lock().expect("lock").clear();

    // Inline policies that already fill IAM's 2,048 characters for a user
    // (moto enforces no quota): the quarantine would go in as a managed
    // deny, which a run does on its own, so a warning with its fix.
    let filler = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::{}/*"}}]}}"#,
        "b".repeat(1850)
    );
    e.iam
        .put_user_policy()
        .user_name("alice")
        .policy_name("legacy-buckets")
        .policy_document(filler)
        .send()
        .await
        .expect("inline policy");
    let ran = e.run(&["-o", "json", "readiness", pb]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let all = findings(&ran.stdout);
    let full = find(&all, "quota", "warning", "user alice in 123456789012");
    assert!(
        full["message"]
            .as_str()
            .is_some_and(|m| m.contains("of IAM's 2048 characters")),
        "{full}"
    );
    // And every managed-policy slot taken too (GetAccountSummary's quota,
    // 10 by default): no deny fits, so the run could not contain alice.
    for n in 0..10 {
        let made = e
            .iam
            .create_policy()
            .policy_name(format!("legacy-{n}"))
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}"#)
            .send()
            .await
            .expect("policy");
        let arn = made
            .policy()
            .and_then(|p| p.arn())
            .expect("arn")
            .to_string();
        e.iam
            .attach_user_policy()
            .user_name("alice")
            .policy_arn(arn)
            .send()
            .await
            .expect("attach");
    }
    let ran = e.run(&["-o", "json", "readiness", pb]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let all = findings(&ran.stdout);
    find(
        &all,
        "quota",
        "error",
        "neither an inline nor a managed deny fits",
    );

    // A pin that no longer matches, an audit path that cannot be made and
    // a mirror bucket that does not exist, in one pass, in text.
    let moved = playbook(
        &e,
        "moved.yaml",
        &READY.replace("123456789012", "111122223333"),
    );
    std::fs::write(e.path("not-a-dir"), "").expect("file");
    let blocked = e.path("not-a-dir/run.jsonl");
    let ran = e.run(&[
        "readiness",
        moved.to_str().expect("path"),
        "--audit-log",
        blocked.to_str().expect("path"),
        "--audit-log",
        "s3://no-such-forensics-bucket/ir",
        "--audit-bucket-owner",
        "123456789012",
    ]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("NOT READY (4 problems"),
        "{}",
        ran.stdout
    );
    for expected in [
        "FAIL  identity",
        "expects account 111122223333",
        "not-a-dir is not a directory",
        "s3://no-such-forensics-bucket/ir/: the mirror bucket cannot be reached: s3:GetBucketLocation: NoSuchBucket",
        "fix: point the profile back at the break-glass identity",
    ] {
        assert!(ran.stdout.contains(expected), "{expected}:\n{}", ran.stdout);
    }

    // JSON shapes agree across commands: the endpoint is `{url, source}`
    // in a plan as in `whoami`.
    let plan = e.run(&["-o", "json", "plan", pb]);
    let who = e.run(&["-o", "json", "whoami"]);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    let who: serde_json::Value = serde_json::from_str(&who.stdout).expect("whoami JSON");
    assert_eq!(plan["endpoint"]["source"], "--endpoint-url", "{plan}");
    assert_eq!(plan["endpoint"], who["endpoint"]);
    // A run's JSON report is what the checked-in schema describes, by an
    // independent validator (python-jsonschema from .venv).
    let dry = e.run(&["-o", "json", "run", pb, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    let report = e.path("report.json");
    std::fs::write(&report, &dry.stdout).expect("report");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let checked = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/check-schemas.py"))
        .arg("report")
        .arg(&report)
        .output()
        .expect("python from scripts/setup-emulator.sh");
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success() && said.contains("1 file(s) checked, 0 problem(s)"),
        "{said}"
    );

    assert_eq!(changes(&e), Vec::<String>::new(), "readiness changed AWS");
}

#[tokio::test]
async fn a_role_that_needs_mfa_is_read_not_assumed() {
    let e = Estate::new().await;
    e.user_with_key("alice").await;
    let serial = e
        .iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("ir-responder")
        .send()
        .await
        .expect("mfa device")
        .virtual_mfa_device()
        .map(|d| d.serial_number().to_string())
        .expect("serial");
    e.iam
        .enable_mfa_device()
        .user_name("ir-responder")
        .serial_number(&serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .expect("enable mfa");
    let trust = |who: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::123456789012:user/{who}"}},"Action":"sts:AssumeRole","Condition":{{"Bool":{{"aws:MultiFactorAuthPresent":"true"}}}}}}]}}"#
        )
    };
    e.iam
        .create_role()
        .role_name("IR-BreakGlass")
        .assume_role_policy_document(trust("ir/ir-responder"))
        .max_session_duration(3600)
        .send()
        .await
        .expect("role");
    let pb_text = |serial: &str, duration: u32| {
        format!(
            "name: fenced\nexecutor:\n  assume_role:\n    role_arn: arn:aws:iam::123456789012:role/IR-BreakGlass\n    mfa_serial: {serial}\n    duration_seconds: {duration}\nsteps:\n  - action: iam.quarantine_principals\n    targets: {{ users: {{ names: [alice] }} }}\n"
        )
    };
    let pb = playbook(&e, "fenced.yaml", &pb_text(&serial, 3600));
    let pb = pb.to_str().expect("path");

    // Unattended, with no code: the hop is read, never assumed, and what
    // only the role could check is not claimed: not proven is not ready.
    let ran = e.run(&["-o", "json", "readiness", pb, "--hold", "2h"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let all = findings(&ran.stdout);
    // A two-hour hold on a one-hour MFA session: renewal needs a person.
    let hold = find(&all, "session", "warning", "outlasts its 3600s session");
    assert!(
        hold["subject"]
            .as_str()
            .is_some_and(|s| s.contains("IR-BreakGlass"))
    );
    find(&all, "mfa", "ok", "assigned to user ir-responder");
    find(&all, "credentials", "ok", "trust policy lets");
    let unproven = find(&all, "credentials", "error", "not assumed");
    assert!(
        unproven["fix"]
            .as_str()
            .is_some_and(|f| f.contains("--mfa-code"))
    );
    assert_eq!(errors(&all).len(), 1, "{all:#?}");
    let assumed: Vec<_> = e
        .proxy()
        .assumed()
        .into_iter()
        .filter(|a| {
            a.get("RoleArn")
                .is_some_and(|r| r.ends_with("IR-BreakGlass"))
        })
        .collect();
    assert!(
        assumed.is_empty(),
        "readiness assumed the MFA role: {assumed:?}"
    );

    // The device replaced, a session longer than the role grants: both named.
    let replaced = playbook(
        &e,
        "replaced.yaml",
        &pb_text("arn:aws:iam::123456789012:mfa/old-token", 7200),
    );
    let ran = e.run(&["-o", "json", "readiness", replaced.to_str().expect("path")]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let all = findings(&ran.stdout);
    let mfa = find(&all, "mfa", "error", "old-token");
    assert!(
        mfa["message"].as_str().is_some_and(|m| m.contains(&serial)),
        "the finding names the device the user has now: {mfa}"
    );
    let session = find(&all, "session", "error", "MaxSessionDuration 3600");
    assert!(session["fix"].as_str().is_some_and(|f| f.contains("3600")));

    // The trust policy changed to somebody else.
    e.iam
        .update_assume_role_policy()
        .role_name("IR-BreakGlass")
        .policy_document(trust("mallory"))
        .send()
        .await
        .expect("trust");
    let ran = e.run(&["-o", "json", "readiness", pb]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let all = findings(&ran.stdout);
    let trust = find(&all, "credentials", "error", "does not let");
    assert!(
        trust["subject"]
            .as_str()
            .is_some_and(|s| s.contains("IR-BreakGlass"))
    );
    assert!(
        trust["fix"]
            .as_str()
            .is_some_and(|f| f.contains("sts:AssumeRole"))
    );

    // With a code, the hop is assumed for real; AWS's refusal (the proxy's
    // here: moto evaluates no trust policy) names the hop.
    e.proxy()
        .denied_roles
        .lock()
        .expect("lock")
        .insert("arn:aws:iam::123456789012:role/IR-BreakGlass".into());
    let ran = e.run(&["--mfa-code", "123456", "-o", "json", "readiness", pb]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let all = findings(&ran.stdout);
    let refused = find(&all, "credentials", "error", "AccessDenied");
    assert!(
        refused["subject"]
            .as_str()
            .is_some_and(|s| s.contains("executor.assume_role")),
        "{refused}"
    );
    assert!(
        refused["fix"]
            .as_str()
            .is_some_and(|f| f.contains("trust policy"))
    );

    assert_eq!(changes(&e), Vec::<String>::new(), "readiness changed AWS");
}

#[tokio::test]
async fn a_deleted_member_role_and_a_full_root_are_found_across_playbooks() {
    let e = Estate::new().await;
    let root = e.organization().await;
    let members = e.members(2).await;
    let gone = &members[1];
    e.proxy().denied_roles.lock().expect("lock").insert(format!(
        "arn:aws:iam::{}:role/OrganizationAccountAccessRole",
        gone.id
    ));
    // Before: the root holds FullAWSAccess only, four slots free.
    let freeze = repo_playbook("org-freeze.yaml");
    let before = e.run(&["-o", "json", "readiness", freeze.to_str().expect("path")]);
    let counted = findings(&before.stdout);
    let slots = find(&counted, "quota", "ok", &format!("SCP slots on {root}"));
    assert_eq!(slots["message"], "4 of 5 free", "{slots}");
    // The root already holds FullAWSAccess and four more: AWS's five.
    let org = e.org();
    for n in 0..4 {
        let made = org
            .create_policy()
            .name(format!("guardrail-{n}"))
            .description("older guardrail")
            .r#type(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
            .content(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
            .send()
            .await
            .expect("policy");
        let id = made
            .policy()
            .and_then(|p| p.policy_summary())
            .and_then(|p| p.id())
            .expect("id")
            .to_string();
        org.attach_policy()
            .policy_id(id)
            .target_id(&root)
            .send()
            .await
            .expect("attach");
    }
    let lockdown = repo_playbook("credential-lockdown.yaml");
    let ran = e.run(&[
        "--accounts",
        "all",
        "-o",
        "json",
        "readiness",
        freeze.to_str().expect("path"),
        lockdown.to_str().expect("path"),
        "--var",
        "case_id=IR-9",
    ]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let all = findings(&ran.stdout);
    let member = find(
        &all,
        "member_roles",
        "error",
        &format!("account {}", gone.id),
    );
    assert!(
        member["fix"]
            .as_str()
            .is_some_and(|f| f.contains("recreate OrganizationAccountAccessRole")),
        "{member}"
    );
    assert!(
        !all.iter()
            .any(|f| f["severity"] == "error"
                && f["subject"] == format!("account {}", members[0].id)),
        "the reachable member is not blamed"
    );
    let full = find(&all, "quota", "warning", "already holds 5");
    assert!(
        full["playbook"]
            .as_str()
            .is_some_and(|p| p.ends_with("org-freeze.yaml"))
    );
    assert!(full["fix"].as_str().is_some_and(|f| f.contains("detach")));
    // A full root is never counted as room.
    assert!(
        !all.iter()
            .any(|f| f["severity"] == "ok" && f["subject"] == format!("SCP slots on {root}")),
        "{all:#?}"
    );
    assert_eq!(changes(&e), Vec::<String>::new(), "readiness changed AWS");
}
