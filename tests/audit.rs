//! The audit chain: any edited, removed, inserted, swapped or cut record fails
//! `audit verify` (exit 1), and an interrupted run is reported with the call
//! that may or may not have happened.

use std::path::Path;

use assert_cmd::Command;
use breakglass::actions::Op;
use breakglass::audit::{AuditLog, Event};
use breakglass::aws::{CallCounts, Identity};
use breakglass::executor::{Counts, Outcome};
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

/// A complete log of a one-call run; `finish` false stops after the intent.
fn write_log(path: &Path, finish: bool) {
    let log = AuditLog::create(path, "run-1").expect("create");
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
    })
    .expect("append");
    log.append(Event::StepStart {
        step: 0,
        name: "keys".into(),
        action: "iam.deactivate_access_keys".into(),
    })
    .expect("append");
    let op = Op::DeactivateAccessKey {
        user: "alice".into(),
        key_id: "AKIAEXAMPLEEXAMPLE01".into(),
        prior_status: "Active".into(),
    };
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

fn verify(path: &Path) -> (i32, String) {
    let out = Command::cargo_bin("breakglass")
        .expect("binary")
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
        ("empty the log", |l| l.clear()),
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
    let (v, _) = breakglass::audit::read(&original).expect("intact log reads");
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
        let detected = match breakglass::audit::read(&path) {
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
