//! The command line's conventions, checked on the real binary: completions,
//! the manual page, the version with its commit, `-o`, help on every
//! argument, and the first steps in the top-level help.

use assert_cmd::Command;
use clap::CommandFactory;

fn breakglass(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("breakglass")
        .expect("binary")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_argument_and_flag_has_a_help_line() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&breakglass::cli::Cli::command(), "breakglass", &mut missing);
    assert!(missing.is_empty(), "arguments without help: {missing:#?}");
}

#[test]
fn completions_and_the_manual_come_from_the_same_definition() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let (code, out, err) = breakglass(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for word in ["tabletop", "rollback", "dry-run"] {
            assert!(out.contains(word), "{shell} completes {word}");
        }
    }
    let (code, _, err) = breakglass(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error");
    assert!(err.contains("possible values"), "{err}");

    let (code, man, err) = breakglass(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(man.contains(".TH breakglass 1"), "{man}");
    // Each command's own flags are in it, not only the command names.
    for word in [
        "tabletop",
        "rollback",
        "First steps",
        "Exit codes",
        "dry\\-run",
        "audit\\-log",
    ] {
        assert!(man.contains(word), "the manual mentions {word}");
    }
}

#[test]
fn the_version_names_its_commit_and_build() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let (code, flag, _) = breakglass(&["--version"]);
    assert_eq!(code, 0);
    let (code, sub, _) = breakglass(&["version"]);
    assert_eq!(code, 0);
    assert_eq!(flag, sub, "--version and `version` agree");
    assert!(flag.starts_with(&format!("breakglass {}", env!("CARGO_PKG_VERSION"))));
    assert!(flag.contains(&format!("commit {commit}")), "{flag}");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    assert!(flag.contains(&format!("{profile} build")), "{flag}");
}

#[test]
fn short_flags_first_steps_and_plurals() {
    let pb = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/org-freeze.yaml");
    let (code, out, err) = breakglass(&["validate", "-o", "json", pb]);
    assert_eq!(code, 0, "{err}");
    let parsed: serde_json::Value = serde_json::from_str(&out).expect("-o json is JSON");
    assert_eq!(parsed[0]["steps"], 1);
    let (_, text, _) = breakglass(&["validate", pb]);
    assert!(text.contains("1 step)"), "{text}");

    let (code, help, _) = breakglass(&["--help"]);
    assert_eq!(code, 0);
    for step in [
        "First steps",
        "validate",
        "plan",
        "--dry-run",
        "tabletop",
        "completions",
    ] {
        assert!(help.contains(step), "the help names {step}");
    }
    // -v and -q are both accepted, and not together.
    let (code, _, err) = breakglass(&["-v", "validate", pb]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = breakglass(&["-q", "-v", "validate", pb]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("'--quiet' cannot be used with '--verbose'"),
        "{err}"
    );
}

#[test]
fn messages_use_yaml_and_aws_words_not_rust_types() {
    let (code, _, err) = breakglass(&["--call-timeout", "5", "actions"]);
    assert_eq!(code, 2);
    assert!(err.contains("`5` has no unit: write 5s"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let pb = dir.path().join("huge.yaml");
    std::fs::write(
        &pb,
        "name: huge\nregions: [us-east-1]\nsteps:\n  - action: ec2.lock_snapshots\n    targets: { snapshots: { all: true } }\n    with: { duration_days: 1e20 }\n",
    )
    .expect("write");
    let (code, out, err) = breakglass(&["validate", pb.to_str().expect("path")]);
    assert_eq!(code, 2, "{out}");
    let said = format!("{out}{err}");
    assert!(said.contains("huge.yaml:6:"), "{said}");
    assert!(said.contains("expected a whole number from 0 to"), "{said}");
    for rust in ["u32", "floating point"] {
        assert!(!said.contains(rust), "{rust} leaked: {said}");
    }
}

#[test]
fn a_misspelt_key_gets_a_did_you_mean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = dir.path().join("typo.yaml");
    std::fs::write(
        &pb,
        "name: typo\nsteps:\n  - action: iam.deactivate_access_keys\n    targetz: { users: { all: true } }\n",
    )
    .expect("write");
    let (code, out, err) = breakglass(&["validate", pb.to_str().expect("path")]);
    assert_eq!(code, 2, "{out}");
    let said = format!("{out}{err}");
    assert!(said.contains("typo.yaml:4:"), "{said}");
    assert!(said.contains("did you mean `targets`?"), "{said}");
    assert!(
        said.contains("keys here:"),
        "the allowed keys are listed: {said}"
    );
    // The line is quoted under the message, the column marked.
    assert!(
        err.contains(" 4 |     targetz: { users: { all: true } }\n   |     ^"),
        "a source snippet: {err}"
    );

    // A key that is nothing like any allowed one gets the list, no guess.
    std::fs::write(
        &pb,
        "name: typo\nsteps:\n  - action: iam.deactivate_access_keys\n    region: us-east-1\n",
    )
    .expect("write");
    let (_, out, err) = breakglass(&["validate", pb.to_str().expect("path")]);
    let said = format!("{out}{err}");
    assert!(!said.contains("did you mean"), "{said}");
    assert!(said.contains("keys here:"), "{said}");

    // A step that is not a map says so in YAML's words.
    std::fs::write(&pb, "name: typo\nsteps: [foo]\n").expect("write");
    let (_, out, err) = breakglass(&["validate", pb.to_str().expect("path")]);
    let said = format!("{out}{err}");
    assert!(said.contains("expected a map of keys"), "{said}");
    assert!(!said.contains("struct"), "{said}");
}

#[test]
fn a_file_of_the_other_kind_says_which_it_is() {
    let root = env!("CARGO_MANIFEST_DIR");
    let scenario = format!("{root}/scenarios/code-spaces.yaml");
    let (code, _, err) = breakglass(&["validate", &scenario]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("this is a tabletop scenario") && err.contains("validate --scenario"),
        "{err}"
    );
    assert!(
        !err.contains("unknown key"),
        "one problem, not one per section: {err}"
    );
    let pb = format!("{root}/playbooks/org-freeze.yaml");
    let (code, _, err) = breakglass(&["validate", "--scenario", &pb]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("this is a playbook") && err.contains("--scenario SCENARIO"),
        "{err}"
    );
}

#[test]
fn help_offers_only_the_flags_a_command_uses() {
    let help = |args: &[&str]| {
        let (code, out, err) = breakglass(args);
        assert_eq!(code, 0, "{err}");
        out
    };
    let tabletop = help(&["tabletop", "--help"]);
    for refused in ["--profile", "--endpoint-url"] {
        assert!(
            !tabletop.contains(refused),
            "tabletop offers {refused}:\n{tabletop}"
        );
    }
    assert!(tabletop.contains("--concurrency"), "{tabletop}");
    let validate = help(&["validate", "--help"]);
    for unused in [
        "--profile",
        "--region",
        "--endpoint-url",
        "--mfa-code",
        "--accounts",
    ] {
        assert!(
            !validate.contains(unused),
            "validate offers {unused}:\n{validate}"
        );
    }
    assert!(validate.contains("--output"), "{validate}");
    let run = help(&["run", "--help"]);
    for used in [
        "--profile",
        "--endpoint-url",
        "--mfa-code",
        "--accounts",
        "--quiet",
    ] {
        assert!(run.contains(used), "run hides {used}:\n{run}");
    }
    // Hidden from help is not refused: a global flag before any command
    // still parses.
    let (code, _, err) = breakglass(&["--region", "eu-west-1", "actions"]);
    assert_eq!(code, 0, "{err}");
    // After the command too, where the hidden copy parses it.
    let pb = format!("{}/playbooks/org-freeze.yaml", env!("CARGO_MANIFEST_DIR"));
    let (code, _, err) = breakglass(&["validate", &pb, "--profile", "x", "--region", "eu-west-1"]);
    assert_eq!(code, 0, "{err}");
    // And it reaches the command: tabletop still refuses a --profile it
    // does not offer, before starting anything.
    let scenario = format!(
        "{}/scenarios/leaked-access-key.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, _, err) = breakglass(&["tabletop", &pb, "--scenario", &scenario, "--profile", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--profile"), "{err}");
}
