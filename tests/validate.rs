//! Playbook validation through the binary: no network, every problem with
//! file:line:column, exit 2. Each case names the exact position and message.

use std::path::Path;

use assert_cmd::Command;

fn breakglass() -> Command {
    let mut cmd = Command::cargo_bin("breakglass").expect("binary");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    // Any AWS call would fail loudly against this closed port.
    cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("NO_COLOR", "1");
    cmd
}

fn validate(name: &str, text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    let out = breakglass()
        .current_dir(dir.path())
        .args(["validate", name])
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD_STEP: &str =
    "steps:\n  - action: iam.deactivate_access_keys\n    targets: { users: { all: true } }\n";

/// (case, file text, expected `file:line:col: error: message` fragments)
fn cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        ("yaml syntax", "name: x\nsteps: [\n".into(), vec!["p.yaml:2:8: error: unclosed bracket"]),
        ("tab indentation", "name: x\nsteps:\n\t- action: a\n".into(), vec!["p.yaml:3:"]),
        (
            "unknown top-level key",
            format!("name: x\ncolour: red\n{GOOD_STEP}"),
            vec!["p.yaml:2:1: error: unknown key `colour`"],
        ),
        (
            "unknown step key",
            "name: x\nsteps:\n  - action: iam.deactivate_access_keys\n    taregts: { users: { all: true } }\n".into(),
            vec!["p.yaml:4:5: error: step 1: unknown field `taregts`"],
        ),
        (
            "unknown action",
            "name: x\nsteps:\n  - action: iam.deactivate_key\n    targets: { users: { all: true } }\n".into(),
            vec!["p.yaml:3:13: error: step 1: unknown action `iam.deactivate_key`", "did you mean `iam.deactivate_access_keys`?"],
        ),
        (
            "wrong type",
            "name: x\nsteps:\n  - action: iam.deactivate_access_keys\n    targets: { users: { all: yes please } }\n".into(),
            vec!["p.yaml:4:30: error: step 1: targets: expected a boolean, found \"yes please\""],
        ),
        (
            "undeclared variable",
            "name: x\nsteps:\n  - action: iam.deactivate_access_keys\n    targets: { access_keys: { ids: [\"{{ key }}\"] } }\n".into(),
            vec!["p.yaml:4:37: error: step 1: variable `key` is not declared"],
        ),
        (
            "required var with default",
            format!("name: x\nvars:\n  case_id: {{ required: true, default: a }}\n{GOOD_STEP}"),
            vec!["p.yaml:3:3: error: variable `case_id` is required and has a default"],
        ),
        (
            "bad selector",
            "name: x\nsteps:\n  - action: iam.deactivate_access_keys\n    targets: { users: { } }\n".into(),
            vec!["p.yaml:4:23: error: step 1: `users` selects nothing"],
        ),
        (
            "target kind the action does not take",
            "name: x\nsteps:\n  - action: iam.revoke_role_sessions\n    targets: { users: { all: true } }\n".into(),
            vec!["p.yaml:4:23: error: step 1: `iam.revoke_role_sessions` does not take `users` targets"],
        ),
        (
            "missing targets",
            "name: x\nsteps:\n  - action: iam.delete_login_profiles\n".into(),
            vec!["p.yaml:3:5: error: step 1: `iam.delete_login_profiles` needs `targets`"],
        ),
        ("empty steps", "name: x\nsteps: []\n".into(), vec!["p.yaml:2:8: error: `steps` is empty"]),
        ("missing steps", "name: x\n".into(), vec!["p.yaml:1:1: error: missing key `steps`"]),
        (
            "bad account id",
            format!("name: x\nexecutor:\n  expect_account: 12345\n{GOOD_STEP}"),
            vec!["p.yaml:3:19: error: account id 12345 must be quoted"],
        ),
        (
            "short account id",
            format!("name: x\nexecutor:\n  expect_account: \"12345\"\n{GOOD_STEP}"),
            vec!["p.yaml:3:19: error: expect_account `12345` is not a 12-digit account id"],
        ),
        (
            "bad on_failure",
            format!("name: x\n{GOOD_STEP}    on_failure: maybe\n"),
            vec!["p.yaml:5:17: error: step 1: unknown value `maybe`"],
        ),
        (
            "unknown parameter",
            format!("name: x\n{GOOD_STEP}    with: {{ force: true }}\n"),
            vec!["p.yaml:5:13: error: step 1: with: unknown field `force`"],
        ),
        (
            "duplicate key",
            format!("name: x\nname: y\n{GOOD_STEP}"),
            vec!["p.yaml:2:1: error:"],
        ),
        (
            "irreversible without consent",
            "name: x\nsteps:\n  - action: iam.delete_login_profiles\n    targets: { users: { all: true } }\n".into(),
            vec!["p.yaml:3:13: error: step 1: `iam.delete_login_profiles` is irreversible", "allow_irreversible: true"],
        ),
        (
            "compliance lock without consent",
            "name: x\nsteps:\n  - action: ec2.lock_snapshots\n    targets: { snapshots: { all: true } }\n    with: { mode: compliance }\n".into(),
            vec!["p.yaml:3:13: error: step 1: `ec2.lock_snapshots` is irreversible: a compliance-mode lock"],
        ),
        (
            "short account id",
            format!("name: x\naccounts: {{ ids: [\"1234\"] }}\n{GOOD_STEP}"),
            vec!["p.yaml:2:11: error: accounts: `1234` is not a 12-digit account id"],
        ),
        (
            "unknown accounts key",
            format!("name: x\naccounts: {{ every: true }}\n{GOOD_STEP}"),
            vec!["p.yaml:2:13: error: unknown field `every`"],
        ),
        (
            "accounts on an organization step",
            "name: x\nsteps:\n  - action: org.apply_scp\n    with: { target: root }\n    accounts: { all: true }\n".into(),
            vec!["p.yaml:5:15: error: step 1: `org.apply_scp` runs once, from the management account"],
        ),
        (
            "move without accounts",
            "name: x\nsteps:\n  - action: org.move_accounts\n    with: { to: ou-ab12-cdef3456 }\n".into(),
            vec!["p.yaml:3:5: error: step 1: `org.move_accounts` needs the accounts to act on"],
        ),
        (
            "root credentials without accounts",
            "name: x\nsteps:\n  - action: org.remove_member_root_credentials\n    allow_irreversible: true\n".into(),
            vec!["p.yaml:3:5: error: step 1: `org.remove_member_root_credentials` needs the accounts to act on"],
        ),
        (
            "root credentials without consent",
            "name: x\naccounts: { all: true }\nsteps:\n  - action: org.remove_member_root_credentials\n".into(),
            vec!["p.yaml:4:13: error: step 1: `org.remove_member_root_credentials` is irreversible: AWS keeps no copy"],
        ),
        (
            "move to something not an OU",
            "name: x\naccounts: { all: true }\nsteps:\n  - action: org.move_accounts\n    with: { to: r-ab12 }\n".into(),
            vec!["p.yaml:5:11: error: step 1: with: `to: r-ab12` is not an organizational unit id"],
        ),
        (
            "member role template without {account}",
            format!("name: x\nexecutor: {{ member_role: \"arn:aws:iam::111122223333:role/x\" }}\n{GOOD_STEP}"),
            vec!["p.yaml:2:26: error: member_role `arn:aws:iam::111122223333:role/x` is neither"],
        ),
        ("not a mapping", "- a\n- b\n".into(), vec!["p.yaml:1:1: error: a playbook is a mapping"]),
        ("empty file", "".into(), vec!["p.yaml:1:1: error: the file is empty"]),
    ]
}

#[test]
fn broken_playbooks_are_reported_with_positions() {
    let mut failures = Vec::new();
    for (case, text, expected) in cases() {
        let (code, stderr) = validate("p.yaml", &text);
        if code != 2 {
            failures.push(format!("{case}: exit {code}, stderr:\n{stderr}"));
            continue;
        }
        for e in expected {
            if !stderr.contains(e) {
                failures.push(format!("{case}: expected `{e}` in:\n{stderr}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "name: x\ncolour: red\nsteps:\n  - action: nope\n  - action: iam.delete_login_profiles\n    targets: { roles: { all: true } }\n";
    let (code, stderr) = validate("p.yaml", text);
    assert_eq!(code, 2);
    for e in ["p.yaml:2:1:", "p.yaml:4:13:", "p.yaml:6:23:"] {
        assert!(stderr.contains(e), "missing {e} in:\n{stderr}");
    }
}

#[test]
fn every_problem_inside_one_step_is_reported_at_once() {
    // Three mistakes in one step's keys, two in its selector, two in its
    // parameters: each at its own line, and no "missing field" for a key that
    // is only misspelt or has a bad value.
    let text = "name: x\nsteps:\n  - action: iam.deactivate_access_keys\n    nmae: a\n    on_failur: continue\n    max_targets: lots\n  - action: iam.quarantine_principals\n    targets:\n      users: { nmes: [a] }\n      rolez: { all: true }\n    with:\n      policy_nme: x\n      mode: sideways\n";
    let (code, stderr) = validate("p.yaml", text);
    assert_eq!(code, 2, "{stderr}");
    for e in [
        "p.yaml:4:5: error: step 1: unknown field `nmae`",
        "p.yaml:5:5: error: step 1: unknown field `on_failur`",
        "p.yaml:6:18: error: step 1:",
        "p.yaml:9:16: error: step 2: targets: unknown field `nmes`",
        "p.yaml:10:7: error: step 2: targets: unknown field `rolez`",
        "p.yaml:12:7: error: step 2: with: unknown field `policy_nme`",
        "p.yaml:13:7: error: step 2: with: unknown field `mode`",
    ] {
        assert!(stderr.contains(e), "missing {e} in:\n{stderr}");
    }
    assert!(!stderr.contains("missing field"), "{stderr}");
}

#[test]
fn shipped_playbooks_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("playbooks/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 2, "shipped playbooks missing");
    let out = breakglass()
        .arg("validate")
        .args(&names)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_output_lists_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, "name: x\ncolour: red\n").expect("write");
    let out = breakglass()
        .args(["--output", "json", "validate"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let problems = doc[0]["problems"].as_array().expect("problems");
    assert!(problems.iter().any(|p| p["line"] == 2 && p["column"] == 1));
}

#[test]
fn vars_are_checked_when_given() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let out = breakglass()
        .args(["validate", "--var", "nope=1"])
        .arg(dir.join("credential-lockdown.yaml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--var: error: `nope` is not a variable"),
        "{stderr}"
    );
    assert!(stderr.contains("requires variable `case_id`"), "{stderr}");
}

#[test]
fn schema_describes_actions_and_rejects_unknown_keys() {
    let out = breakglass().arg("schema").output().expect("run");
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json schema");
    assert_eq!(schema["additionalProperties"], false);
    let step = &schema["$defs"]["StepFile"];
    let ids = step["properties"]["action"]["enum"]
        .as_array()
        .expect("action enum");
    assert!(ids.iter().any(|i| i == "iam.deactivate_access_keys"));
    assert_eq!(step["allOf"].as_array().map(Vec::len), Some(ids.len()));
}

/// The checked-in schemas are what the binary prints (regenerate with
/// `breakglass schema > schemas/playbook.schema.json` and `breakglass schema
/// --scenario > schemas/scenario.schema.json`), and an independent validator
/// (python-jsonschema in .venv) accepts every shipped playbook and scenario
/// and rejects a wrong one.
#[test]
fn checked_in_schemas_match_and_shipped_files_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (args, file) in [
        (vec!["schema"], "schemas/playbook.schema.json"),
        (vec!["schema", "--scenario"], "schemas/scenario.schema.json"),
        (vec!["schema", "--report"], "schemas/report.schema.json"),
    ] {
        let out = breakglass().args(&args).output().expect("run");
        assert!(out.status.success());
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema");
        let text = std::fs::read_to_string(root.join(file)).expect("checked-in schema");
        let checked_in: serde_json::Value = serde_json::from_str(&text).expect("schema json");
        assert!(
            printed == checked_in,
            "{file} drifted from `breakglass {}`: regenerate it",
            args.join(" ")
        );
    }
    let python = root.join(".venv/bin/python");
    let script = root.join("scripts/check-schemas.py");
    let shipped = std::process::Command::new(&python)
        .arg(&script)
        .output()
        .expect("python from scripts/setup-emulator.sh");
    let said = String::from_utf8_lossy(&shipped.stdout);
    assert!(shipped.status.success(), "{said}");
    assert!(said.contains("18 file(s) checked, 0 problem(s)"), "{said}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: x\nsteps:\n  - action: iam.nope\n").expect("write");
    let rejected = std::process::Command::new(&python)
        .arg(&script)
        .arg("playbook")
        .arg(&bad)
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&rejected.stdout);
    assert_eq!(rejected.status.code(), Some(1), "{said}");
    assert!(said.contains("steps/0/action"), "{said}");
}

#[test]
fn actions_catalog_states_reversibility() {
    let out = breakglass()
        .args(["actions", "--output", "json"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let actions: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let login = actions
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == "iam.delete_login_profiles"))
        .expect("delete_login_profiles");
    assert_eq!(login["reversibility"]["kind"], "irreversible");
}

#[test]
fn stopping_before_any_snapshot_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    let warned = |yaml: &str| {
        std::fs::write(&path, yaml).expect("write");
        let out = breakglass()
            .arg("validate")
            .arg(&path)
            .output()
            .expect("run");
        assert!(out.status.success(), "a warning, not an error");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = warned(
        "name: x\nsteps:\n  - action: ec2.stop_instances\n    targets: { instances: { all: true } }\n    allow_irreversible: true\n  - action: ec2.snapshot_volumes\n    targets: { instances: { all: true } }\n",
    );
    assert!(
        stderr.contains("p.yaml:3:5: warning: step 1 (ec2.stop_instances) acts on instances before any ec2.snapshot_volumes step"),
        "{stderr}"
    );
    // A stop after the protection step meets its stop protection.
    let stderr = warned(
        "name: x\nsteps:\n  - action: ec2.snapshot_volumes\n    targets: { instances: { all: true } }\n  - action: ec2.enable_termination_protection\n    targets: { instances: { all: true } }\n  - action: ec2.stop_instances\n    targets: { instances: { all: true } }\n    allow_irreversible: true\n",
    );
    assert!(
        stderr.contains("p.yaml:7:5: warning: step 3 (ec2.stop_instances) comes after ec2.enable_termination_protection, whose stop protection refuses the stop"),
        "{stderr}"
    );
}

#[test]
fn organization_targets_and_lock_parameters_are_checked() {
    let (code, stderr) = validate(
        "p.yaml",
        "name: x\nsteps:\n  - action: org.apply_scp\n    with: { target: [root, prod] }\n  - action: ec2.lock_snapshots\n    targets: { snapshots: { all: true } }\n    with: { mode: forever }\n",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("p.yaml:4:11: error: step 1: with: `prod` is not an organization target"),
        "{stderr}"
    );
    assert!(
        stderr.contains("p.yaml:7:19: error: step 2: with: unknown value `forever`"),
        "{stderr}"
    );
}

#[test]
fn a_reader_that_goes_away_never_makes_it_panic() {
    // `breakglass … | head`: the pipe closes before the output is written.
    for args in [
        vec!["schema"],
        vec!["validate", "playbooks/full-lockdown.yaml"],
        vec!["actions"],
    ] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("breakglass"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn a_bad_accounts_flag_names_the_flag_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = breakglass()
        .current_dir(dir.path())
        .args(["--accounts", "all,12345", "plan", "p.yaml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--accounts") && stderr.contains("`12345` is not"),
        "{stderr}"
    );
}

/// The offline advisory check (scripts/advisories.py, used by deny.sh when
/// the live RustSec database is unreachable) denies a locked crate inside an
/// advisory's affected range and passes one outside it, and says which
/// database and commit it used.
#[test]
fn the_offline_advisory_check_denies_an_affected_lock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("scripts")).expect("mkdir");
    std::fs::copy(
        root.join("scripts/advisories.py"),
        work.join("scripts/advisories.py"),
    )
    .expect("copy script");
    std::fs::copy(root.join("deny.toml"), work.join("deny.toml")).expect("copy deny.toml");
    std::fs::write(
        work.join("Cargo.toml"),
        "[package]\nname = \"x\"\nversion = \"0.1.0\"\n[dependencies]\nwidget = \"1\"\n",
    )
    .expect("manifest");
    let db = dir.path().join("db");
    std::fs::create_dir_all(db.join("crates/widget")).expect("mkdir db");
    std::fs::write(
        db.join("crates/widget/RUSTSEC-2099-0001.md"),
        "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"widget\"\ndate = \"2099-01-01\"\n\n[versions]\npatched = [\">= 1.2.0\"]\nunaffected = [\"< 1.0.0\"]\n```\n\n# Widgets leak\n",
    )
    .expect("advisory");
    std::fs::write(
        dir.path().join("db.SOURCE"),
        "snapshot of github.com/rustsec/advisory-db\ncommit 0123456789abcdef0123456789abcdef01234567, committed 2099-01-02.\n",
    )
    .expect("source");
    let check = |version: &str| {
        std::fs::write(
            work.join("Cargo.lock"),
            format!("version = 3\n[[package]]\nname = \"widget\"\nversion = \"{version}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n"),
        )
        .expect("lock");
        let out = std::process::Command::new("python3")
            .arg(work.join("scripts/advisories.py"))
            .arg(&db)
            .arg(dir.path().join("db.SOURCE"))
            .output()
            .expect("python3");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, said) = check("1.1.9");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("DENIED: RUSTSEC-2099-0001 widget 1.1.9"),
        "{said}"
    );
    assert!(
        said.contains("(commit 0123456789abcdef0123456789abcdef01234567, 2099-01-02)"),
        "{said}"
    );
    let (code, said) = check("1.2.0");
    assert_eq!(code, Some(0), "{said}");
    let (code, said) = check("0.9.0");
    assert_eq!(code, Some(0), "{said}");
}

#[test]
fn flags_that_contradict_each_other_are_refused_before_anything_runs() {
    // A dry run changes nothing, so it has nothing to hold: saying both is
    // an error that names the flags, never a hold silently dropped.
    let out = breakglass()
        .args([
            "run",
            "playbooks/credential-lockdown.yaml",
            "--dry-run",
            "--hold",
            "5m",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--hold") && stderr.contains("--dry-run"),
        "{stderr}"
    );
}
