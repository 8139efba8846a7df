//! Checks across a whole playbook: step order, the executor, accounts and
//! variables.

use super::*;

/// A stop or isolation with no earlier snapshot step destroys or freezes
/// evidence that was never copied: warn, naming the step.
pub(super) fn check_order(source: &str, steps: &[StepDef], problems: &mut Vec<Problem>) {
    let mut snapshotted = false;
    let mut protected = false;
    for step in steps {
        if step.action == ActionKind::Ec2StopInstances && protected {
            problems.push(
                Problem::warning(
                    source,
                    Some(step.pos),
                    format!(
                        "step {} (ec2.stop_instances) comes after ec2.enable_termination_protection, whose stop protection refuses the stop",
                        step.index + 1
                    ),
                )
                .with_hint("stop the instances before protecting them"),
            );
        }
        match step.action {
            ActionKind::Ec2EnableTerminationProtection => protected = true,
            ActionKind::Ec2SnapshotVolumes => snapshotted = true,
            ActionKind::Ec2StopInstances | ActionKind::Ec2IsolateInstances if !snapshotted => {
                problems.push(
                    Problem::warning(
                        source,
                        Some(step.pos),
                        format!(
                            "step {} ({}) acts on instances before any ec2.snapshot_volumes step",
                            step.index + 1,
                            step.action.id()
                        ),
                    )
                    .with_hint(
                        "snapshot the same instances in an earlier step to keep the evidence",
                    ),
                );
            }
            _ => {}
        }
    }
}

pub(super) fn check_executor(source: &str, executor: &ExecutorSpec, problems: &mut Vec<Problem>) {
    if let Some(acct) = &executor.expect_account
        && (acct.len() != 12 || !acct.chars().all(|c| c.is_ascii_digit()))
    {
        problems.push(
            Problem::error(
                source,
                Some(acct.pos),
                format!(
                    "expect_account `{}` is not a 12-digit account id",
                    acct.value
                ),
            )
            .with_hint("quote it so YAML keeps leading zeros: expect_account: \"012345678901\""),
        );
    }
    if let Some(role) = &executor.member_role {
        let v = &role.value;
        let ok = if v.starts_with("arn:") {
            v.contains("{account}") && v.contains(":role/")
        } else {
            !v.is_empty() && !v.contains(['/', ':', '{', '}', ' '])
        };
        if !ok {
            problems.push(
                Problem::error(
                    source,
                    Some(role.pos),
                    format!("member_role `{v}` is neither a role name nor an ARN template with {{account}}"),
                )
                .with_hint("such as OrganizationAccountAccessRole, or arn:aws:iam::{account}:role/IR/Responder"),
            );
        }
    }
    if let Some(arn) = &executor.expect_principal
        && !arn.starts_with("arn:")
    {
        problems.push(Problem::error(
            source,
            Some(arn.pos),
            format!("expect_principal `{}` is not an ARN", arn.value),
        ));
    }
}

/// Account ids are 12 digits and OU ids `ou-…`; a selection must select something.
pub(super) fn check_accounts(
    source: &str,
    label: &str,
    spec: &yaml::Located<AccountsSpec>,
    problems: &mut Vec<Problem>,
) {
    let a = &spec.value;
    let mut bad = |msg: String, hint: &str| {
        problems
            .push(Problem::error(source, Some(spec.pos), format!("{label}: {msg}")).with_hint(hint))
    };
    for id in a.ids.iter().chain(&a.exclude) {
        if id.len() != 12 || !id.chars().all(|c| c.is_ascii_digit()) {
            bad(
                format!("`{id}` is not a 12-digit account id"),
                "quote account ids so YAML keeps leading zeros: \"012345678901\"",
            );
        }
    }
    for ou in &a.ous {
        if !ou.starts_with("ou-") {
            bad(
                format!("`{ou}` is not an organizational unit id (ou-…)"),
                "for every account use `all: true`",
            );
        }
    }
    if !a.all && a.ous.is_empty() && a.ids.is_empty() && !a.include_management {
        bad(
            "selects no account".into(),
            "use `all: true`, `ous: [ou-…]` or `ids: [\"…\"]`",
        );
    }
}

pub(super) fn check_vars(
    source: &str,
    root: &Node,
    vars: &BTreeMap<String, VarSpec>,
    problems: &mut Vec<Problem>,
) {
    let Some(vars_node) = root.get("vars").and_then(Node::as_map) else {
        return;
    };
    for (key, _) in vars_node {
        let Some(name) = key.as_str() else { continue };
        if !vars::is_identifier(name) {
            problems.push(Problem::error(
                source,
                Some(key.pos),
                format!("variable name `{name}` must be letters, digits and `_`"),
            ));
        }
        if let Some(spec) = vars.get(name)
            && spec.required
            && spec.default.is_some()
        {
            problems.push(Problem::error(
                source,
                Some(key.pos),
                format!("variable `{name}` is required and has a default: choose one"),
            ));
        }
    }
}
