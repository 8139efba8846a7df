//! Every credential setup a responder uses (issue 15), end to end against
//! moto through `--endpoint-url`: each profile kind works for `whoami` and a
//! live lockdown, the chain's calls reach the given endpoint carrying what
//! the profile says, and the chain's own principals are never locked out.
//! The SSO portal, which moto lacks, is answered by the loopback proxy.

mod common;

use std::collections::BTreeMap;

use common::{Estate, playbook, repo_playbook};

const REVOKE: &str = "breakglass-revoke-older-sessions";
const QUARANTINE: &str = "breakglass-quarantine";

fn assumed_of(e: &Estate, role: &str) -> Vec<BTreeMap<String, String>> {
    e.proxy()
        .assumed()
        .into_iter()
        .filter(|a| a.get("RoleArn").is_some_and(|r| r.ends_with(role)))
        .collect()
}

/// A lockdown through `profile`: a fresh user's key goes Inactive; every
/// other argument is passed on.
async fn lockdown_through(e: &Estate, profile: &str, extra: &[&str]) {
    let victim = format!("victim-{}", profile.replace(['_', '.'], "-"));
    let key = e.user_with_key(&victim).await;
    let pb = repo_playbook("credential-lockdown.yaml");
    let mut args = vec![
        "--profile",
        profile,
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--var",
        "case_id=IR-15",
    ];
    args.extend(extra);
    let ran = e.run(&args);
    assert_eq!(ran.code, 0, "{profile}: {}\n{}", ran.stdout, ran.stderr);
    assert_eq!(e.key_status(&victim, &key).await, "Inactive", "{profile}");
}

fn whoami(e: &Estate, profile: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--profile", profile, "--output", "json"];
    args.extend(extra);
    args.push("whoami");
    let ran = e.run(&args);
    assert_eq!(ran.code, 0, "{profile}: {}\n{}", ran.stdout, ran.stderr);
    serde_json::from_str(&ran.stdout).expect("json")
}

#[tokio::test]
async fn a_role_chain_with_mfa_reaches_the_endpoint_and_spares_its_own_hops() {
    let e = Estate::new().await;
    e.role("Jump", "/ir/").await;
    e.role("IR-BreakGlass", "/").await;
    e.write_profile("base", &e.executor_key, &e.executor_secret);
    e.add_config(
        "[profile mid]\nrole_arn = arn:aws:iam::123456789012:role/ir/Jump\nsource_profile = base\nexternal_id = ext-7\n\
         [profile chained]\nrole_arn = arn:aws:iam::123456789012:role/IR-BreakGlass\nsource_profile = mid\n\
         mfa_serial = arn:aws:iam::123456789012:mfa/ir-responder\nduration_seconds = 1800\nrole_session_name = responder-1\n",
    );

    // No terminal and no code: refused before any call.
    let refused = e.run(&["--profile", "chained", "whoami"]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("needs an MFA code"),
        "{}",
        refused.stderr
    );

    // The code from standard input, out of `ps` and the shell history.
    let ran = e.run_with(
        &[
            "--profile",
            "chained",
            "--mfa-code",
            "-",
            "--output",
            "json",
            "whoami",
        ],
        &[],
        "123456\n",
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let who: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json");
    assert_eq!(
        who["identity"]["arn"],
        "arn:aws:sts::123456789012:assumed-role/IR-BreakGlass/responder-1"
    );
    let chain: Vec<&str> = who["identity"]["chain"]
        .as_array()
        .expect("chain")
        .iter()
        .filter_map(|h| h["principal"].as_str())
        .collect();
    assert_eq!(
        chain,
        [
            "arn:aws:iam::123456789012:user/ir/ir-responder",
            "arn:aws:iam::123456789012:role/ir/Jump",
            "arn:aws:iam::123456789012:role/IR-BreakGlass"
        ]
    );
    let jump = assumed_of(&e, "role/ir/Jump");
    assert_eq!(jump[0].get("ExternalId").map(String::as_str), Some("ext-7"));
    let top = assumed_of(&e, "role/IR-BreakGlass");
    let top = top
        .last()
        .expect("the break-glass role was assumed through the proxy");
    assert_eq!(
        top.get("SerialNumber").map(String::as_str),
        Some("arn:aws:iam::123456789012:mfa/ir-responder")
    );
    assert_eq!(top.get("TokenCode").map(String::as_str), Some("123456"));
    assert_eq!(top.get("DurationSeconds").map(String::as_str), Some("1800"));
    assert_eq!(
        top.get("RoleSessionName").map(String::as_str),
        Some("responder-1")
    );

    // A lockdown through the chain contains everyone else; the base user's
    // key and the roles of the chain are untouched.
    lockdown_through(&e, "chained", &["--mfa-code", "654321"]).await;
    assert_eq!(
        e.key_status(&e.executor_user, &e.executor_key).await,
        "Active",
        "the chain's base key"
    );
    assert!(e.inline_policy("role", "Jump", REVOKE).await.is_none());
    assert!(
        e.inline_policy("role", "IR-BreakGlass", REVOKE)
            .await
            .is_none()
    );
}

#[tokio::test]
async fn every_profile_kind_connects_and_contains() {
    let e = Estate::new().await;
    e.role("IR-BreakGlass", "/").await;
    let home = e.dir.path();

    // Static keys with a session token (GetSessionToken, as aws-vault and
    // friends leave them), asked for through the proxy, which answers
    // GetCallerIdentity for the session with its IAM user, as AWS does.
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .endpoint_url(e.proxy().endpoint())
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                &e.executor_key,
                &e.executor_secret,
                None,
                None,
                "test",
            ))
            .build(),
    );
    let token = sts.get_session_token().send().await.expect("session token");
    let c = token.credentials().expect("credentials");
    std::fs::write(
        home.join("credentials"),
        format!(
            "{}[token]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
            std::fs::read_to_string(home.join("credentials")).expect("credentials"),
            c.access_key_id(),
            c.secret_access_key(),
            c.session_token()
        ),
    )
    .expect("write");

    // credential_process, printing the executor's own key (from outside the
    // estate's folder, whose every file is checked for leaked secrets).
    let bin = tempfile::tempdir().expect("tempdir");
    let script = bin.path().join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"{}\", \"SecretAccessKey\": \"{}\"}}'\n",
            e.executor_key, e.executor_secret
        ),
    )
    .expect("script");
    let mut perms = std::fs::metadata(&script).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(&script, perms).expect("chmod");

    // A web identity token (a CI job's OIDC token) for the break-glass role.
    std::fs::write(home.join("oidc-token"), "eyJhbGciOi.test.token").expect("token");

    // IAM Identity Center: the token caches `aws sso login` writes, named by
    // the SHA-1 of the session name (or of the start URL, legacy).
    let cache = home.join(".aws/sso/cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    for (key, token) in [
        ("corp", "tok-corp"),
        ("https://legacy.awsapps.com/start", "tok-legacy"),
    ] {
        use sha1::Digest;
        let name = hex::encode(sha1::Sha1::digest(key.as_bytes()));
        std::fs::write(
            cache.join(format!("{name}.json")),
            format!(r#"{{"accessToken": "{token}", "expiresAt": "2099-01-01T00:00:00Z"}}"#),
        )
        .expect("token cache");
        e.proxy().sso_token(token, "123456789012", "IR-BreakGlass");
    }
    e.add_config(&format!(
        "[profile token]\nregion = us-east-1\n\
         [profile process]\ncredential_process = {}\n\
         [profile web]\nrole_arn = arn:aws:iam::123456789012:role/IR-BreakGlass\nweb_identity_token_file = {}\nrole_session_name = ci-1\n\
         [profile sso]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = IR-BreakGlass\n\
         [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\n\
         [profile sso-legacy]\nsso_start_url = https://legacy.awsapps.com/start\nsso_region = us-east-1\nsso_account_id = 123456789012\nsso_role_name = IR-BreakGlass\n",
        script.display(),
        home.join("oidc-token").display()
    ));

    let expect: &[(&str, &str)] = &[
        ("breakglass", "user/ir/ir-responder"),
        ("token", "user/ir/ir-responder"),
        ("process", "user/ir/ir-responder"),
        ("web", "assumed-role/IR-BreakGlass/ci-1"),
        ("sso", "assumed-role/IR-BreakGlass/sso-user"),
        ("sso-legacy", "assumed-role/IR-BreakGlass/sso-user"),
    ];
    for (profile, principal) in expect {
        let who = whoami(&e, profile, &[]);
        let arn = who["identity"]["arn"].as_str().unwrap_or_default();
        assert!(arn.contains(principal), "{profile}: {who}");
        lockdown_through(&e, profile, &[]).await;
        if principal.starts_with("user/") {
            // The base user signs this chain: its key is never cut.
            assert_eq!(
                e.key_status(&e.executor_user, &e.executor_key).await,
                "Active",
                "{profile}"
            );
        }
    }
    assert!(!assumed_of(&e, "role/IR-BreakGlass").is_empty());

    // An expired SSO login says what to do, exit 2, before any change.
    let corp = hex::encode(<sha1::Sha1 as sha1::Digest>::digest(b"corp"));
    std::fs::write(
        cache.join(format!("{corp}.json")),
        r#"{"accessToken": "tok-corp", "expiresAt": "2001-01-01T00:00:00Z"}"#,
    )
    .expect("expire");
    let expired = e.run(&["--profile", "sso", "whoami"]);
    assert_eq!(expired.code, 2, "{}", expired.stderr);
    assert!(
        expired.stderr.contains("aws sso login --profile sso"),
        "{}",
        expired.stderr
    );
}

#[tokio::test]
async fn configuration_errors_are_one_line_and_exit_two() {
    let e = Estate::new().await;
    e.add_config(&format!(
        "[profile env]\nrole_arn = arn:aws:iam::123456789012:role/IR-BreakGlass\ncredential_source = Environment\n\
         [profile empty]\nregion = eu-west-1\n\
         [profile denied]\nrole_arn = arn:aws:iam::123456789012:role/Nope\nsource_profile = breakglass\n\
         [profile no-token]\nrole_arn = arn:aws:iam::123456789012:role/IR-BreakGlass\nweb_identity_token_file = {}\n\
         [profile failing-process]\ncredential_process = /bin/false\n\
         [profile no-login]\nsso_session = nobody\nsso_account_id = 123456789012\nsso_role_name = IR-BreakGlass\n\
         [sso-session nobody]\nsso_start_url = https://nobody.awsapps.com/start\nsso_region = us-east-1\n",
        e.dir.path().join("no-such-token").display()
    ));
    e.proxy()
        .denied_roles
        .lock()
        .expect("lock")
        .insert("arn:aws:iam::123456789012:role/Nope".into());
    let cases: &[(&str, i32, &str)] = &[
        (
            "nowhere",
            2,
            "profile `nowhere` is in neither the AWS config file nor the credentials file",
        ),
        ("empty", 2, "profile `empty` holds no credential"),
        ("env", 3, "credential_source = Environment is refused"),
        // AccessDenied on the hop: the principal that asked, and what to check.
        (
            "denied",
            1,
            "is arn:aws:iam::123456789012:user/ir/ir-responder allowed sts:AssumeRole on it, and does the role's trust policy admit it?",
        ),
        ("no-token", 2, "cannot read web_identity_token_file"),
        (
            "failing-process",
            1,
            "external process exited with code exit status: 1",
        ),
        ("no-login", 2, "run `aws sso login --profile no-login`"),
    ];
    for (profile, code, message) in cases {
        let ran = e.run(&["--profile", profile, "whoami"]);
        assert_eq!(ran.code, *code, "{profile}: {}", ran.stderr);
        assert!(ran.stderr.contains(message), "{profile}: {}", ran.stderr);
        // The SDK's Debug structures never reach the responder.
        assert!(
            !ran.stderr.contains("ProviderError(") && !ran.stderr.contains("DispatchFailure("),
            "{}",
            ran.stderr
        );
    }

    // AWS_PROFILE and AWS_REGION are honoured, each shown with its source.
    e.write_profile("other", &e.executor_key, &e.executor_secret);
    let ran = e.run_with(
        &["whoami"],
        &[("AWS_PROFILE", "other"), ("AWS_REGION", "eu-west-1")],
        "",
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains("other (from AWS_PROFILE)")
            && ran.stdout.contains("eu-west-1 (from AWS_REGION)"),
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn a_hold_outlives_a_short_session() {
    let e = Estate::new().await;
    e.role("IR-BreakGlass", "/").await;
    let alice = e.user_with_key("alice").await;
    // Sessions say they last 310 s, and breakglass renews when 300 s are
    // left. The proxy refuses each one (ExpiredToken, as AWS answers) 18 s
    // after it was issued: a hold of 25 s that kept signing with its first
    // session would fail its later checks.
    e.proxy()
        .short_sessions(std::time::Duration::from_secs(310));
    e.proxy()
        .sessions_die_after(std::time::Duration::from_secs(18));
    let pb = playbook(
        &e,
        "hold.yaml",
        "name: hold\nexecutor:\n  assume_role: { role_arn: arn:aws:iam::123456789012:role/IR-BreakGlass }\nsteps:\n  - action: iam.deactivate_access_keys\n    targets: { users: { all: true } }\n",
    );
    let ran = e.run(&[
        "--output",
        "json",
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--hold",
        "25s",
        "--every",
        "5s",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    // One line per hold check, then the report.
    let report: serde_json::Value = serde_json::Deserializer::from_str(&ran.stdout)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .last()
        .expect("a report");
    assert_eq!(
        report["hold"]["failed"].as_array().map(Vec::len),
        Some(0),
        "{}",
        report["hold"]
    );
    assert!(
        report["hold"]["checks"].as_u64() >= Some(4),
        "{}",
        report["hold"]
    );
    assert!(
        assumed_of(&e, "role/IR-BreakGlass").len() >= 2,
        "the session was renewed during the hold"
    );
    assert_eq!(e.key_status("alice", &alice).await, "Inactive");
}

#[tokio::test]
async fn rollback_connects_as_the_run_did_and_to_its_endpoint() {
    let e = Estate::new().await;
    e.role("IR-BreakGlass", "/").await;
    e.user_with_key("alice").await;
    let pb = playbook(
        &e,
        "fence.yaml",
        "name: fence\nexecutor:\n  assume_role:\n    role_arn: arn:aws:iam::123456789012:role/IR-BreakGlass\n    mfa_serial: arn:aws:iam::123456789012:mfa/ir-responder\nsteps:\n  - action: iam.quarantine_principals\n    targets: { users: { names: [alice] } }\n",
    );
    let log = e.path("fence.jsonl");
    let log = log.to_str().expect("path");
    let ran = e.run(&[
        "--mfa-code",
        "111111",
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--audit-log",
        log,
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(e.inline_policy("user", "alice", QUARANTINE).await.is_some());

    // No --endpoint-url: the rollback goes where the run went (the proxy in
    // front of the emulator), through the same role with a fresh MFA code.
    let back = e.run_without_endpoint(&["--mfa-code", "222222", "rollback", log, "--yes"], &[]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(e.inline_policy("user", "alice", QUARANTINE).await.is_none());
    let codes: Vec<String> = assumed_of(&e, "role/IR-BreakGlass")
        .iter()
        .filter_map(|a| a.get("TokenCode").cloned())
        .collect();
    assert!(codes.contains(&"222222".to_string()), "{codes:?}");

    // Signed by somebody else, the same profile is refused: the principal
    // of the run is pinned.
    let plain = playbook(
        &e,
        "plain.yaml",
        "name: plain\nsteps:\n  - action: iam.quarantine_principals\n    targets: { users: { names: [alice] } }\n",
    );
    let log2 = e.path("plain.jsonl");
    let log2 = log2.to_str().expect("path");
    let ran = e.run(&[
        "run",
        plain.to_str().expect("path"),
        "--yes",
        "--audit-log",
        log2,
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    e.iam
        .create_user()
        .user_name("bob")
        .send()
        .await
        .expect("bob");
    let made = e
        .iam
        .create_access_key()
        .user_name("bob")
        .send()
        .await
        .expect("key");
    let made = made.access_key().expect("key");
    let (bob_key, bob_secret) = (made.access_key_id(), made.secret_access_key());
    std::fs::write(
        e.path("credentials"),
        format!(
            "[breakglass]\naws_access_key_id = {bob_key}\naws_secret_access_key = {bob_secret}\n"
        ),
    )
    .expect("swap");
    let refused = e.run(&["rollback", log2, "--yes"]);
    assert_eq!(refused.code, 3, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("principal of the run"),
        "{}",
        refused.stderr
    );
    assert!(e.inline_policy("user", "alice", QUARANTINE).await.is_some());
}
