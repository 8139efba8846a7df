//! The audit chain: any edited, removed, inserted, swapped or cut record fails
//! `audit verify` (exit 1), and an interrupted run is reported with the call
//! that may or may not have happened.

use std::path::Path;

use assert_cmd::Command;
use breakglass::actions::Op;
use breakglass::actions::iam::DeactivateAccessKey;
use breakglass::audit::{AuditKey, AuditLog, Event, Trust};
use breakglass::aws::{CallCounts, Identity};
use breakglass::report::{Counts, Outcome};
use breakglass::targets::{Resource, Scope, Target};

fn target() -> Target {
    Target {
        scope: Scope {
            account: "123456789012".into(),
            region: None,
        },
        resource: Resource::AccessKey {
            user: "alice".into(),
            key_id: "AKIAEXAMPLEEXAMPLE01".into(),
        },
    }
}

/// The audit key of a test: beside the log's folder, as a responder's is.
fn key_path(log: &Path) -> std::path::PathBuf {
    log.parent().expect("folder").join("keys").join("audit-key")
}

/// A complete log of a one-call run; `finish` false stops after the intent.
fn write_log(path: &Path, finish: bool) {
    let key = AuditKey::at(&key_path(path)).expect("key");
    write_log_with(path, finish, key, &[]);
}

fn write_log_with(path: &Path, finish: bool, key: AuditKey, protect: &[&str]) {
    let public = key.public();
    let log = AuditLog::create(path, "run-1", std::sync::Arc::new(key)).expect("create");
    log.append(Event::RunStart {
        tool_version: "test".into(),
        playbook: "p.yaml".into(),
        playbook_name: "p".into(),
        playbook_digest: "00".into(),
        dry_run: false,
        identity: Identity::from_caller(
            "123456789012".into(),
            "arn:aws:iam::123456789012:user/ir".into(),
            "AIDA".into(),
            "AKIAEXECUTOR00000000".into(),
        ),
        profile: "breakglass".into(),
        credential_source: "profile breakglass".into(),
        region: "us-east-1".into(),
        endpoint: None,
        endpoints: Default::default(),
        executor: None,
        vars: Default::default(),
        args: vec![],
        rollback_of: None,
        audit_key: Some(public),
        protect: protect.iter().map(|p| p.to_string()).collect(),
    })
    .expect("append");
    log.append(Event::StepStart {
        step: 0,
        name: "keys".into(),
        action: "iam.deactivate_access_keys".into(),
    })
    .expect("append");
    let op = Op::DeactivateAccessKey(DeactivateAccessKey {
        user: "alice".into(),
        key_id: "AKIAEXAMPLEEXAMPLE01".into(),
        prior_status: "Active".into(),
        user_arn: "arn:aws:iam::123456789012:user/alice".into(),
    });
    let intent = log
        .append(Event::Intent {
            step: 0,
            target: target(),
            call: op.describe(),
            op,
        })
        .expect("append");
    if !finish {
        return;
    }
    log.append(Event::Result {
        step: 0,
        target: target(),
        outcome: Outcome::Changed,
        intent: Some(intent),
        call: None,
        reason: None,
        error: None,
        effect: None,
    })
    .expect("append");
    let counts = Counts {
        changed: 1,
        ..Counts::default()
    };
    log.append(Event::StepEnd {
        step: 0,
        status: "done".into(),
        counts,
        accounts: Default::default(),
        error: None,
    })
    .expect("append");
    log.append(Event::RunEnd {
        status: "completed".into(),
        totals: counts,
        calls: CallCounts::default(),
        not_contained: None,
    })
    .expect("append");
}

/// `audit verify` by the binary, trusting the test's key as its own.
fn verify(path: &Path) -> (i32, String) {
    let out = Command::cargo_bin("breakglass")
        .expect("binary")
        .env("BREAKGLASS_AUDIT_KEY", key_path(path))
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).expect("write");
}

#[test]
fn an_intact_log_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.jsonl");
    write_log(&path, true);
    let (code, out) = verify(&path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified"));
}

#[test]
fn every_kind_of_tampering_is_detected() {
    type Mutation = fn(&mut Vec<String>);
    let mutations: Vec<(&str, Mutation)> = vec![
        ("edit a middle record", |l| {
            l[2] = l[2].replace("alice", "mallory")
        }),
        ("edit the last record", |l| {
            let last = l.len() - 1;
            l[last] = l[last].replace("completed", "completed_ok")
        }),
        ("edit the first record", |l| {
            l[0] = l[0].replace("breakglass", "other")
        }),
        ("delete a middle record", |l| {
            l.remove(3);
        }),
        ("delete the first record", |l| {
            l.remove(0);
        }),
        ("swap two records", |l| l.swap(2, 3)),
        ("duplicate a record", |l| {
            let dup = l[2].clone();
            l.insert(3, dup)
        }),
        ("drop the run end", |l| {
            l.pop();
        }),
    ];
    for (name, mutate) in mutations {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        write_log(&path, true);
        let mut l = lines(&path);
        mutate(&mut l);
        if l.is_empty() {
            std::fs::write(&path, "").expect("write");
        } else {
            write_lines(&path, &l);
        }
        let (code, out) = verify(&path);
        assert_eq!(code, 1, "{name} was not detected:\n{out}");
    }
}

/// Re-sealed with another key (every hash and signature recomputed, the
/// run start naming the new key): the chain holds, the key is not ours.
#[test]
fn a_log_resealed_with_another_key_is_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.jsonl");
    write_log(&path, true);
    let theirs = AuditKey::at(&dir.path().join("attacker-key")).expect("key");
    let forged = dir.path().join("forged.jsonl");
    write_log_with(&forged, true, theirs, &[]);
    std::fs::copy(&forged, &path).expect("replace");
    let (code, out) = verify(&path);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOT TRUSTED"), "{out}");
}

/// Files that are no audit log at all are named as such, exit 2.
#[test]
fn foreign_files_are_not_audit_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("empty.jsonl", ""),
        ("text.txt", "hello\n"),
        (
            "cloudtrail.json",
            "{\"Records\":[{\"eventName\":\"StopLogging\"}]}\n",
        ),
    ];
    for (name, text) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let out = Command::cargo_bin("breakglass")
            .expect("binary")
            .args(["audit", "verify"])
            .arg(&path)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is not a breakglass audit log"),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_record_cut_mid_write_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.jsonl");
    write_log(&path, true);
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, &text[..text.len() - 20]).expect("write");
    let (code, out) = verify(&path);
    assert_eq!(code, 1);
    assert!(out.contains("truncated"), "{out}");
}

#[test]
fn an_interrupted_run_names_the_uncertain_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.jsonl");
    write_log(&path, false);
    let (code, out) = verify(&path);
    assert_eq!(code, 1);
    assert!(out.contains("INTERRUPTED"), "{out}");
    assert!(
        out.contains("UNCERTAIN") && out.contains("AKIAEXAMPLEEXAMPLE01"),
        "{out}"
    );
}

/// 1,000 random edits, deletions, insertions, reorderings and truncations of a
/// real log (seeded, so a failure reproduces): every one is detected.
#[test]
fn a_thousand_random_mutations_are_all_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("log.jsonl");
    write_log(&original, true);
    let text = std::fs::read_to_string(&original).expect("read");
    let trust = Trust::Key(AuditKey::at(&key_path(&original)).expect("key").public());
    let (v, _) = breakglass::audit::read(&original, &trust, None).expect("intact log reads");
    assert!(v.ok(), "the intact log must verify");

    let mut seed: u64 = 0x005E_ED0F_A0D1_7000;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for i in 0..1000 {
        let mut l: Vec<String> = text.lines().map(str::to_string).collect();
        let kind = match next(5) {
            0 => {
                let line = next(l.len());
                let chars: Vec<char> = l[line].chars().collect();
                let at = next(chars.len());
                let alphabet: Vec<char> = "abcdefz0123459\"{}:,[]".chars().collect();
                let mut with = alphabet[next(alphabet.len())];
                if with == chars[at] {
                    with = if with == 'a' { 'b' } else { 'a' };
                }
                let mut edited = chars;
                edited[at] = with;
                l[line] = edited.into_iter().collect();
                "edit"
            }
            1 => {
                l.remove(next(l.len()));
                "delete"
            }
            2 => {
                let copy = l[next(l.len())].clone();
                let at = next(l.len() + 1);
                l.insert(at, copy);
                "insert"
            }
            3 => {
                let a = next(l.len());
                let mut b = next(l.len());
                if a == b {
                    b = (a + 1) % l.len();
                }
                l.swap(a, b);
                "reorder"
            }
            _ => "truncate",
        };
        let path = dir.path().join(format!("m{i}.jsonl"));
        if kind == "truncate" {
            // Anywhere but after the final newline's predecessor (cutting only
            // the newline leaves every record intact).
            let cut = next(text.len() - 1);
            std::fs::write(&path, &text[..cut]).expect("write");
        } else {
            write_lines(&path, &l);
        }
        *kinds.entry(kind).or_default() += 1;
        let detected = match breakglass::audit::read(&path, &trust, None) {
            Err(_) => true,
            Ok((v, _)) => !v.ok(),
        };
        assert!(
            detected,
            "mutation {i} ({kind}) was not detected:\n{}",
            std::fs::read_to_string(&path).unwrap_or_default()
        );
    }
    assert_eq!(kinds.values().sum::<usize>(), 1000, "{kinds:?}");
}

/// The log is checked over the bytes as written: records whose keys come in
/// another order (as another build of serde_json would write them), sealed
/// with the same key, verify all the same, with the binary and with the
/// documented Python script.
#[test]
fn any_build_and_a_short_script_verify_the_same_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.jsonl");
    write_log(&path, true);
    let key = AuditKey::at(&key_path(&path)).expect("key");
    // Re-write every record with its keys reversed, re-sealed in order.
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for line in lines(&path) {
        let v: serde_json::Value = serde_json::from_str(&line).expect("line");
        let mut record = v["record"].as_object().expect("record").clone();
        record.insert("prev".into(), serde_json::Value::String(prev.clone()));
        let mut pairs: Vec<(String, serde_json::Value)> = record.into_iter().collect();
        pairs.reverse();
        let body = format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::Value::String(k.clone()), v))
                .collect::<Vec<_>>()
                .join(",")
        );
        let digest = <sha2::Sha256 as sha2::Digest>::digest(body.as_bytes());
        let hash = hex::encode(digest);
        let sig = key.sign(&digest);
        out.push_str(&format!(
            "{{\"v\":2,\"record\":{body},\"hash\":\"{hash}\",\"sig\":\"{sig}\"}}\n"
        ));
        prev = hash;
    }
    let reordered = dir.path().join("reordered.jsonl");
    std::fs::write(&reordered, out).expect("write");
    std::fs::create_dir_all(reordered.parent().expect("dir").join("keys")).expect("dir");
    for log in [&path, &reordered] {
        let (code, text) = verify(log);
        assert_eq!(code, 0, "{}: {text}", log.display());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify-audit-log.py");
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(log)
            .arg(key.public())
            .output()
            .expect("python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        assert!(
            stdout.contains("signatures checked"),
            "the emulator's virtualenv has `cryptography`: {stdout}"
        );
    }
    // One edited byte and the script says so too.
    let mut text = std::fs::read_to_string(&reordered).expect("read");
    text = text.replacen("alice", "mallory", 1);
    std::fs::write(&reordered, text).expect("write");
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify-audit-log.py"))
        .arg(&reordered)
        .output()
        .expect("python");
    assert_eq!(out.status.code(), Some(1));
    // Intact but checked against no key: chained, not trusted.
    let out = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify-audit-log.py"))
        .arg(&path)
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("NOT TRUSTED"), "{stdout}");
}

/// Calls and undos as logs recorded them before each call moved into its
/// own file (the ops from a tabletop run of that build, the rest written
/// from its enum definitions): each still reads, and writes back the same.
#[test]
fn logs_from_before_the_registry_read_the_same() {
    use breakglass::rollback::Undo;
    fn same<T: serde::Serialize + serde::de::DeserializeOwned>(file: &str) -> usize {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
            .expect("fixture");
        let mut n = 0;
        for line in text.lines() {
            let old: serde_json::Value = serde_json::from_str(line).expect("json");
            let parsed: T = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let again = serde_json::to_value(&parsed).expect("serialize");
            assert_eq!(again, old, "{line}");
            n += 1;
        }
        n
    }
    assert_eq!(same::<Op>("tests/fixtures/ops-before-registry.jsonl"), 12);
    assert_eq!(
        same::<Undo>("tests/fixtures/undos-before-registry.jsonl"),
        11
    );
}

/// What the playbook protected, the run never touched, and its rollback
/// does not either: a log naming a change to a protected principal gets no
/// undo for it.
#[test]
fn rollback_leaves_protected_principals_alone() {
    use breakglass::rollback::{Choices, Plan, plan};
    let dir = tempfile::tempdir().expect("tempdir");
    let choices = Choices {
        reactivate_keys: true,
        ..Choices::default()
    };
    for (protect, undone) in [(&[][..], true), (&["arn:aws:iam::*:user/alice"][..], false)] {
        let path = dir.path().join(format!("run-{}.jsonl", protect.len()));
        let key = AuditKey::at(&key_path(&path)).expect("key");
        write_log_with(&path, true, key, protect);
        let trust = Trust::Key(AuditKey::at(&key_path(&path)).expect("key").public());
        let (_, records) = breakglass::audit::read(&path, &trust, None).expect("reads");
        let steps = plan(&records, &choices);
        assert_eq!(steps.len(), 1);
        match &steps[0].plan {
            Plan::Undo { .. } => assert!(undone, "a protected key would be turned back on"),
            Plan::Kept { why } => {
                assert!(!undone, "{why}");
                assert!(why.contains("protected"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
