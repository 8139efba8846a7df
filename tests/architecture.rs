//! The shape of the code, checked: the top-level modules of `src/` import
//! each other without a cycle, no source file is over 700 lines, and no
//! mutating AWS operation is called outside `src/actions/` (the tabletop's
//! seeding of its own local emulator aside). docs/ARCHITECTURE.md explains
//! the layers these rules keep.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `src/actions/iam/keys.rs` → `actions`; `src/app.rs` → `app`.
fn top_module(path: &Path) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = path.strip_prefix(&src).expect("under src");
    let first = rel.components().next().expect("component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The text without comments (line and doc comments), so prose that names
/// a module does not count as a use of it.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file refers to: `crate::x`, `use crate::{x, y}`,
/// and the crate-root re-exports (`crate::Error` is the `error` module).
fn references(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The group up to its matching brace; names at its top level.
            let mut depth = 0;
            let mut part = String::new();
            let mut parts = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => parts.push(std::mem::take(&mut part)),
                    _ => {}
                }
                if depth == 0 && c != ',' && c != '}' {
                    part.push(c);
                }
            }
            parts.push(part);
            for part in parts {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out.into_iter()
        .map(|n| match n.as_str() {
            "Error" | "ExitCode" => "error".to_string(),
            _ => n,
        })
        .filter(|n| modules.contains(n))
        .collect()
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let files = sources();
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| top_module(f))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = top_module(f);
        if m == "lib" || m == "main" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(f).expect("read"));
        let entry = graph.entry(m.clone()).or_default();
        for r in references(&code, &modules) {
            if r != m {
                entry.insert(r);
            }
        }
    }
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}\nthe graph: {graph:#?}", cycle.join(" → "));
        }
    }
}

#[test]
fn no_source_file_is_over_700_lines() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(&f).expect("read").lines().count();
            (n > 700).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over 700 lines: {long:#?}");
}

/// SDK builder methods of the calls that change something, by verb.
const MUTATING: &[&str] = &[
    "put_",
    "attach_",
    "detach_",
    "create_",
    "delete_",
    "update_",
    "modify_",
    "enable_",
    "disable_",
    "move_",
    "lock_",
    "unlock_",
    "stop_",
    "start_",
    "associate_",
    "disassociate_",
    "revoke_",
    "authorize_",
    "terminate_",
    "tag_",
    "untag_",
    "deactivate_",
    "reset_",
];

/// Lines (numbered from 1) that call an SDK operation that changes
/// something: a method call (`.put_object(`) whose name starts with one of
/// the verbs, anywhere on the line.
fn mutating_calls(code: &str) -> Vec<(usize, String)> {
    code.lines()
        .enumerate()
        .filter(|(_, line)| {
            line.match_indices('.').any(|(i, _)| {
                let call = &line[i + 1..];
                let name: String = call
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                MUTATING.iter().any(|v| name.starts_with(v)) && call[name.len()..].starts_with('(')
            })
        })
        .map(|(n, line)| (n + 1, line.trim().to_string()))
        .collect()
}

#[test]
fn the_checks_see_what_they_look_for() {
    let sdk = "let put = client\n    .put_object()\n    .bucket(b)\n    .send();\n    .list_users()\nc.delete_policy().policy_id(p);\n";
    assert_eq!(
        mutating_calls(sdk),
        vec![
            (2, ".put_object()".to_string()),
            (6, "c.delete_policy().policy_id(p);".to_string())
        ]
    );
    let modules: BTreeSet<String> = ["audit", "actions", "aws", "error", "render"]
        .map(String::from)
        .into();
    let code = code_of(
        "use crate::{actions::{Op, undo::{Undo}}, aws::Clients, render};\n// crate::audit in prose\nlet e: crate::Error;",
    );
    assert_eq!(
        references(&code, &modules),
        ["actions", "aws", "error", "render"]
            .map(String::from)
            .into()
    );
}

#[test]
fn no_mutating_aws_operation_is_called_outside_actions() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for f in sources() {
        let rel = f.strip_prefix(&src).expect("under src").to_path_buf();
        // The tabletop seeds (and plays the attacker in) the local emulator
        // it starts itself.
        let emulator_only = [
            "tabletop/seed.rs",
            "tabletop/moves.rs",
            "tabletop/buckets.rs",
            "tabletop/ec2_moves.rs",
            "tabletop/members.rs",
        ];
        if rel.starts_with("actions") || emulator_only.iter().any(|p| rel == Path::new(p)) {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&f).expect("read"));
        // Only files that hold an SDK client can call an operation.
        if !code.contains("aws_sdk_")
            && !code.contains(".iam()")
            && !code.contains(".org()")
            && !code.contains(".ec2(")
            && !code.contains(".s3(")
        {
            continue;
        }
        found.extend(
            mutating_calls(&code)
                .into_iter()
                .map(|(n, t)| format!("{}:{n}: {t}", rel.display())),
        );
    }
    assert!(
        found.is_empty(),
        "mutating AWS calls outside src/actions/: {found:#?}"
    );
}

#[test]
fn aws_is_called_only_from_the_modules_that_talk_to_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let talkers = ["actions", "aws", "tabletop"];
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|f| !talkers.contains(&top_module(f).as_str()))
        .filter(|f| code_of(&std::fs::read_to_string(f).expect("read")).contains(".send()"))
        .map(|f| {
            f.strip_prefix(&src)
                .expect("under src")
                .display()
                .to_string()
        })
        .collect();
    assert!(
        found.is_empty(),
        "AWS SDK calls outside actions/, aws/ and tabletop/: {found:#?}"
    );
}

/// `ec2:DeleteSnapshot` → `.delete_snapshot()`: the SDK builder method.
fn sdk_method(action: &str) -> String {
    let op: Vec<char> = action
        .split_once(':')
        .map_or(action, |(_, op)| op)
        .chars()
        .collect();
    let mut out = String::from(".");
    for (i, c) in op.iter().enumerate() {
        // A word starts at a capital after a small letter, or at the last
        // capital of a run followed by a small letter (`DBInstance`).
        let prev = i.checked_sub(1).and_then(|p| op.get(p));
        let next = op.get(i + 1);
        let starts = c.is_ascii_uppercase()
            && (prev.is_some_and(|p| p.is_ascii_lowercase())
                || (prev.is_some_and(|p| p.is_ascii_uppercase())
                    && next.is_some_and(|n| n.is_ascii_lowercase())));
        if starts {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out + "()"
}

/// The freeze denies the exempted member role what breakglass never does
/// (`MEMBER_ROLE_DENIED`): a step or a rollback that started calling one of
/// them would be refused in every member account. No code under
/// `src/actions/`, `src/commands/`, `src/aws/` or `src/audit/` makes any
/// of those calls.
#[test]
fn nothing_breakglass_calls_is_denied_to_the_member_role() {
    assert_eq!(sdk_method("ec2:DeleteSnapshot"), ".delete_snapshot()");
    assert_eq!(sdk_method("rds:DeleteDBInstance"), ".delete_db_instance()");
    assert_eq!(
        sdk_method("iam:CreateOpenIDConnectProvider"),
        ".create_open_id_connect_provider()"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let ours: Vec<(PathBuf, String)> = sources()
        .into_iter()
        .filter(|f| {
            ["actions", "commands", "aws", "audit"]
                .iter()
                .any(|d| f.starts_with(root.join(d)))
        })
        .map(|f| {
            let code = code_of(&std::fs::read_to_string(&f).expect("read"));
            (f, code)
        })
        .collect();
    let mut called = Vec::new();
    for action in breakglass::actions::org::MEMBER_ROLE_DENIED {
        // Where the IAM action and the SDK's operation are named apart.
        let methods = match *action {
            "s3:PutLifecycleConfiguration" => vec![".put_bucket_lifecycle_configuration()".into()],
            "s3:DeleteObject" => vec![".delete_object()".into(), ".delete_objects()".into()],
            "s3:PutBucketPolicy" => vec![".put_bucket_policy()".into()],
            _ => vec![sdk_method(action)],
        };
        for method in methods {
            for (f, code) in &ours {
                if code.contains(&method) {
                    called.push(format!("{action} ({method}) in {}", f.display()));
                }
            }
        }
    }
    assert!(
        called.is_empty(),
        "denied to the member role, yet called: {called:#?}"
    );
}
