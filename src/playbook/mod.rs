//! Playbooks: YAML text → a validated [`Playbook`] → steps bound to variables.
//!
//! Every problem found carries the file, line and column; validation collects
//! all of them instead of stopping at the first, and never touches the network.

mod checks;
mod text;
use checks::*;
pub(crate) use text::{refuse_bidi_controls, utf8_text};

pub mod schema;
mod vars;

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::actions::{ActionKind, ActionParams, BoundStep};
pub use crate::spec::{
    AccessKeySelector, AccountsSpec, ExecutorSpec, InstanceSelector, LockModeSpec, OnFailure,
    OnMissing, PlaybookFile, Regions, RoleSelector, SessionSelector, SnapshotSelector, StepFile,
    TargetSpec, UserSelector, VarSpec,
};
use crate::yaml::{self, Node, Pos, suggest};
pub use crate::yaml::{Problem, Problems, Severity};

/// A playbook that parsed and passed every check that needs no AWS call.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// The path as the user gave it, for messages.
    pub source: String,
    /// SHA-256 of the file bytes, recorded in the audit log.
    pub digest: String,
    pub name: String,
    pub description: Option<String>,
    pub executor: ExecutorSpec,
    pub vars: BTreeMap<String, VarSpec>,
    pub protect: Vec<String>,
    pub regions: Option<Regions>,
    /// The playbook-level account selection (steps carry their effective one).
    pub accounts: Option<AccountsSpec>,
    /// Hold the line after the steps until stopped (`hold: true`).
    pub hold: bool,
    pub steps: Vec<StepDef>,
    /// Findings that do not stop a run (shown by `validate` and `plan`).
    pub warnings: Vec<Problem>,
}

/// A validated step whose `targets` and `with` may still hold templates.
#[derive(Debug, Clone)]
pub struct StepDef {
    pub index: usize,
    pub name: String,
    pub action: ActionKind,
    pub targets: Option<Node>,
    pub with: Option<Node>,
    pub on_failure: OnFailure,
    pub on_missing: OnMissing,
    pub max_targets: Option<u32>,
    /// The step's own `accounts:` (the playbook's applies when `None`).
    pub accounts: Option<AccountsSpec>,
    pub pos: Pos,
}

/// Keys only a tabletop scenario has: what tells one apart from a playbook.
pub const SCENARIO_KEYS: &[&str] = &[
    "attacker",
    "identity_center",
    "stolen_sessions",
    "users",
    "roles",
    "instances",
    "backups",
    "trails",
    "organization",
    "root_scps",
];

/// Reads and validates a playbook file.
pub fn load(path: &Path) -> Result<Playbook, crate::Error> {
    let bytes = std::fs::read(path).map_err(|source| crate::Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(&path.display().to_string(), &bytes).map_err(crate::Error::InvalidPlaybook)
}

/// Validates a playbook from raw bytes, as read from a file: text that is not
/// UTF-8 is a problem like any other, never a panic (the fuzzers start here).
pub fn parse_bytes(source: &str, bytes: &[u8]) -> Result<Playbook, Problems> {
    parse_playbook(source, utf8_text(source, bytes)?)
}

/// Parses and validates playbook text; `source` names the file in messages.
pub fn parse_playbook(source: &str, text: &str) -> Result<Playbook, Problems> {
    parse_text(source, text).map_err(|p| p.quote(text))
}

fn parse_text(source: &str, text: &str) -> Result<Playbook, Problems> {
    refuse_bidi_controls(source, text)?;
    let mut problems = Vec::new();
    let root = yaml::parse(text).map_err(|e| {
        Problems(vec![
            Problem::error(source, Some(e.pos), e.message).with_hint(
                "check indentation and quoting; `breakglass schema` describes the format",
            ),
        ])
    })?;
    let Some(entries) = root.as_map() else {
        return Err(Problems(vec![Problem::error(
            source,
            Some(root.pos),
            format!(
                "a playbook is a mapping with `name` and `steps`, found {}",
                root.value.kind()
            ),
        )]));
    };

    // A tabletop scenario handed over as a playbook: one problem that says
    // so, not one "unknown key" per section.
    if root.get("steps").is_none()
        && let Some(key) = SCENARIO_KEYS.iter().find_map(|k| root.get(k).map(|_| *k))
    {
        return Err(Problems(vec![
            Problem::error(
                source,
                Some(root.pos),
                format!("this is a tabletop scenario (it has `{key}` and no `steps`), not a playbook"),
            )
            .with_hint(format!(
                "check it with `breakglass validate --scenario {source}`; a tabletop takes it as `--scenario {source}`"
            )),
        ]));
    }

    // Decode section by section so that one bad section does not hide the others.
    let mut name = None;
    let mut description = None;
    let mut executor = ExecutorSpec::default();
    let mut vars = BTreeMap::new();
    let mut protect = Vec::new();
    let mut regions = None;
    let mut steps_node = None;
    let mut max_targets = None;
    let mut accounts: Option<yaml::Located<AccountsSpec>> = None;
    let mut hold = false;
    const SECTIONS: &[&str] = &[
        "name",
        "description",
        "executor",
        "vars",
        "protect",
        "regions",
        "max_targets",
        "accounts",
        "hold",
        "steps",
    ];
    for (key, value) in entries {
        let Some(k) = key.as_str() else {
            problems.push(Problem::error(
                source,
                Some(key.pos),
                "keys must be strings",
            ));
            continue;
        };
        let mut take = |r: Result<(), Vec<yaml::DecodeError>>| {
            if let Err(errors) = r {
                let found = errors
                    .into_iter()
                    .map(|e| Problem::from_decode(source, e, Some(value.pos)));
                problems.extend(found);
            }
        };
        match k {
            "name" => take(yaml::decode_all::<String>(value).map(|v| name = Some(v))),
            "description" => {
                take(yaml::decode_all::<Option<String>>(value).map(|v| description = v))
            }
            "executor" => take(
                yaml::decode_all::<Option<ExecutorSpec>>(value)
                    .map(|v| executor = v.unwrap_or_default()),
            ),
            "vars" => take(
                yaml::decode_all::<Option<BTreeMap<String, VarSpec>>>(value)
                    .map(|v| vars = v.unwrap_or_default()),
            ),
            "protect" => take(
                yaml::decode_all::<Option<Vec<yaml::Located<String>>>>(value)
                    .map(|v| protect = v.unwrap_or_default()),
            ),
            "regions" => take(yaml::decode_all::<yaml::Located<Regions>>(value).map(|v| {
                regions = Some(v);
            })),
            "max_targets" => take(yaml::decode_all::<Option<u32>>(value).map(|v| max_targets = v)),
            "accounts" => take(
                yaml::decode_all::<yaml::Located<AccountsSpec>>(value).map(|v| accounts = Some(v)),
            ),
            "hold" => take(yaml::decode_all::<bool>(value).map(|v| hold = v)),
            "steps" => steps_node = Some(value),
            other => problems.push(
                Problem::error(source, Some(key.pos), format!("unknown key `{other}`"))
                    .with_hint(suggest(other, SECTIONS)),
            ),
        }
    }
    if name.as_deref().is_some_and(|n: &str| n.trim().is_empty()) {
        problems.push(Problem::error(
            source,
            root.get("name").map(|n| n.pos),
            "`name` must not be empty",
        ));
    }
    if name.is_none() && root.get("name").is_none() {
        problems.push(
            Problem::error(source, Some(root.pos), "missing key `name`")
                .with_hint("add `name: <short name>` at the top"),
        );
    }

    check_executor(source, &executor, &mut problems);
    check_vars(source, &root, &vars, &mut problems);
    for p in &protect {
        if !p.value.starts_with("arn:") {
            problems.push(
                Problem::error(
                    source,
                    Some(p.pos),
                    format!("protect entry `{}` is not an ARN pattern", p.value),
                )
                .with_hint("use a principal ARN, wildcards allowed: arn:aws:iam::*:role/IR-*"),
            );
        }
    }
    if let Some(r) = &regions
        && let Regions::List(list) = &r.value
        && list.is_empty()
    {
        problems.push(Problem::error(
            source,
            Some(r.pos),
            "`regions` is empty: list regions or write `all`",
        ));
    }

    let steps = match steps_node {
        None => {
            problems.push(
                Problem::error(source, Some(root.pos), "missing key `steps`")
                    .with_hint("a playbook needs at least one step"),
            );
            Vec::new()
        }
        Some(node) => decode_steps(source, node, &vars, &mut problems),
    };
    if let Some(a) = &accounts {
        check_accounts(source, "accounts", a, &mut problems);
    }
    let steps: Vec<StepDef> = steps
        .into_iter()
        .map(|mut s| {
            s.max_targets = s.max_targets.or(max_targets);
            s
        })
        .collect();
    for s in &steps {
        // An action over accounts with none named would act on none: say so
        // rather than run a step that cannot contain anything.
        if s.action.runs() == crate::actions::Runs::OverAccounts
            && s.accounts.is_none()
            && accounts.is_none()
        {
            problems.push(
                Problem::error(
                    source,
                    Some(s.pos),
                    format!(
                        "step {}: `{}` needs the accounts to act on",
                        s.index + 1,
                        s.action.id()
                    ),
                )
                .with_hint("add `accounts:` to the step or the playbook"),
            );
        }
    }

    check_order(source, &steps, &mut problems);
    let warnings: Vec<Problem> = problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .cloned()
        .collect();
    problems.retain(|p| p.severity == Severity::Error);
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.pos.map(|p| (p.line, p.column)));
        return Err(Problems(problems));
    }
    Ok(Playbook {
        source: source.to_string(),
        digest: hex::encode(Sha256::digest(text.as_bytes())),
        name: name.unwrap_or_default(),
        description,
        executor,
        vars,
        protect: protect.into_iter().map(|p| p.value).collect(),
        regions: regions.map(|r| r.value),
        accounts: accounts.map(|a| a.value),
        hold,
        steps,
        warnings,
    })
}

fn decode_steps(
    source: &str,
    node: &Node,
    vars: &BTreeMap<String, VarSpec>,
    problems: &mut Vec<Problem>,
) -> Vec<StepDef> {
    let items = match &node.value {
        yaml::Value::Seq(items) => items,
        yaml::Value::Null => {
            problems.push(Problem::error(
                source,
                Some(node.pos),
                "`steps` is empty: a playbook needs at least one step",
            ));
            return Vec::new();
        }
        other => {
            problems.push(Problem::error(
                source,
                Some(node.pos),
                format!("`steps` must be a list, found {}", other.kind()),
            ));
            return Vec::new();
        }
    };
    if items.is_empty() {
        problems.push(Problem::error(
            source,
            Some(node.pos),
            "`steps` is empty: a playbook needs at least one step",
        ));
    }
    let mut steps = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let step: StepFile = match yaml::decode_all(item) {
            Ok(s) => s,
            Err(errors) => {
                let label = format!("step {}", index + 1);
                problems.extend(decode_problems(source, &label, errors, item.pos));
                continue;
            }
        };
        let label = format!("step {}", index + 1);
        let Some(action) = ActionKind::from_id(&step.action) else {
            let ids: Vec<&str> = ActionKind::ALL.iter().map(|a| a.id()).collect();
            problems.push(
                Problem::error(
                    source,
                    Some(step.action.pos),
                    format!("{label}: unknown action `{}`", step.action.value),
                )
                .with_hint(suggest(&step.action, &ids)),
            );
            continue;
        };
        // Templates must name declared variables.
        for n in [&step.targets, &step.with].into_iter().flatten() {
            n.for_each_str(&mut |s, pos| match vars::references(s) {
                Ok(refs) => {
                    for r in refs {
                        if !vars.contains_key(&r) {
                            problems.push(
                                Problem::error(
                                    source,
                                    Some(pos),
                                    format!("{label}: variable `{r}` is not declared"),
                                )
                                .with_hint(format!(
                                    "declare it under `vars:` ({r}: {{ required: true }})"
                                )),
                            );
                        }
                    }
                }
                Err(msg) => {
                    problems.push(Problem::error(source, Some(pos), format!("{label}: {msg}")))
                }
            });
        }
        // Decode with templates left in place: types and keys are checked now,
        // values again when variables are bound.
        match decode_step_body(source, &label, action, &step.targets, &step.with, item.pos) {
            Err(p) => problems.extend(p),
            Ok((_, mut params)) => {
                if let (Some(why), false) = (params.irreversible(), step.allow_irreversible) {
                    problems.push(
                        Problem::error(
                            source,
                            Some(step.action.pos),
                            format!("{label}: `{}` is irreversible: {why}", action.id()),
                        )
                        .with_hint(
                            "add `allow_irreversible: true` to the step if that is intended",
                        ),
                    );
                }
                let pos = step.with.as_ref().map(|n| n.pos).unwrap_or(item.pos);
                if let Err(p) = read_policy_file(source, &label, &mut params, pos) {
                    problems.extend(p);
                }
            }
        }
        if let Some(a) = &step.accounts {
            if action.takes_accounts() {
                check_accounts(source, &format!("{label}: accounts"), a, problems);
            } else {
                problems.push(
                    Problem::error(
                        source,
                        Some(a.pos),
                        format!(
                            "{label}: `{}` runs once, from the management account: `accounts` does not apply to it",
                            action.id()
                        ),
                    )
                    .with_hint("choose where the policy goes with `with: target:`"),
                );
            }
        }
        steps.push(StepDef {
            index,
            name: step.name.clone().unwrap_or_else(|| action.id().to_string()),
            action,
            targets: step.targets,
            with: step.with,
            on_failure: step.on_failure,
            on_missing: step.on_missing,
            max_targets: step.max_targets,
            accounts: step.accounts.map(|a| a.value),
            pos: item.pos,
        });
    }
    steps
}

/// Reads an SCP file named by `org.apply_scp` (relative to the playbook's
/// directory), checks it is JSON within the SCP size limit, and keeps it.
fn read_policy_file(
    source: &str,
    label: &str,
    params: &mut ActionParams,
    pos: Pos,
) -> Result<(), Vec<Problem>> {
    let ActionParams::OrgApplyScp(p) = params else {
        return Ok(());
    };
    // The preserve SCP is a policy of its own: under the deny-all's name it
    // would replace the freeze's document.
    if p.policy == "preserve" && p.name == crate::spec::DEFAULT_SCP_NAME {
        p.name = "breakglass-preserve".into();
    }
    if ["deny-all", "preserve"].contains(&p.policy.as_str()) || p.policy.contains("{{") {
        return Ok(());
    }
    let dir = Path::new(source).parent().unwrap_or(Path::new("."));
    let path = dir.join(&p.policy);
    let fail = |m: String| vec![Problem::error(source, Some(pos), format!("{label}: {m}"))];
    let text = std::fs::read_to_string(&path)
        .map_err(|e| fail(format!("cannot read policy file {}: {e}", path.display())))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| fail(format!("policy file {} is not JSON: {e}", path.display())))?;
    let compact = doc.to_string();
    if compact.len() > crate::actions::org::SCP_MAX_CHARS {
        return Err(fail(format!(
            "policy file {} is {} characters once compacted; AWS allows {}",
            path.display(),
            compact.len(),
            crate::actions::org::SCP_MAX_CHARS
        )));
    }
    p.document = Some(compact);
    Ok(())
}

/// Decodes a step's selectors and parameters and checks they fit the action.
fn decode_step_body(
    source: &str,
    label: &str,
    action: ActionKind,
    targets: &Option<Node>,
    with: &Option<Node>,
    step_pos: Pos,
) -> Result<(TargetSpec, ActionParams), Vec<Problem>> {
    let mut problems = Vec::new();
    let spec = match targets {
        None => Some(TargetSpec::default()),
        Some(node) => match yaml::decode_all::<Option<TargetSpec>>(node) {
            Ok(t) => Some(t.unwrap_or_default()),
            Err(errors) => {
                let label = format!("{label}: targets");
                problems.extend(decode_problems(source, &label, errors, node.pos));
                None
            }
        },
    };
    let targets_pos = targets.as_ref().map(|n| n.pos).unwrap_or(step_pos);
    // Selectors that did not decode are reported already, not also as missing.
    let checks = spec.as_ref().map_or_else(Vec::new, |spec| {
        crate::targets::check_spec(action.id(), action.info().targets, spec, targets_pos)
    });
    for (msg, pos, hint) in checks {
        let mut p = Problem::error(source, Some(pos), format!("{label}: {msg}"));
        if let Some(h) = hint {
            p = p.with_hint(h);
        }
        problems.push(p);
    }
    match action.decode_params(with.as_ref(), step_pos) {
        Ok(params) if problems.is_empty() => Ok((spec.unwrap_or_default(), params)),
        Ok(_) => Err(problems),
        Err(errors) => {
            let pos = with.as_ref().map_or(step_pos, |n| n.pos);
            problems.extend(decode_problems(
                source,
                &format!("{label}: with"),
                errors,
                pos,
            ));
            Err(problems)
        }
    }
}

/// Decoding errors as problems, each labelled with where in the playbook it is.
fn decode_problems(
    source: &str,
    label: &str,
    errors: Vec<yaml::DecodeError>,
    fallback: Pos,
) -> impl Iterator<Item = Problem> {
    errors.into_iter().map(move |e| {
        let mut p = Problem::from_decode(source, e, Some(fallback));
        p.message = format!("{label}: {}", p.message);
        p
    })
}

impl Playbook {
    /// Substitutes variables (`--var` values over defaults) and decodes every
    /// step. Unknown `--var` names and missing required variables are errors.
    pub fn bind(&self, given: &[(String, String)]) -> Result<Vec<BoundStep>, Problems> {
        let mut problems = Vec::new();
        let mut values = BTreeMap::new();
        for (k, v) in given {
            if !self.vars.contains_key(k) {
                let names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
                problems.push(
                    Problem::error(
                        "--var",
                        None,
                        format!("`{k}` is not a variable of playbook {}", self.source),
                    )
                    .with_hint(if names.is_empty() {
                        "this playbook declares no variables".to_string()
                    } else {
                        format!("declared: {}", names.join(", "))
                    }),
                );
            }
            values.insert(k.clone(), v.clone());
        }
        for (name, spec) in &self.vars {
            if !values.contains_key(name) {
                match &spec.default {
                    Some(d) => {
                        values.insert(name.clone(), d.clone());
                    }
                    None if spec.required => problems.push(
                        Problem::error(
                            "--var",
                            None,
                            format!("playbook {} requires variable `{name}`", self.source),
                        )
                        .with_hint(format!("pass --var {name}=VALUE")),
                    ),
                    None => {
                        values.insert(name.clone(), String::new());
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        let mut bound = Vec::new();
        for step in &self.steps {
            let subst = |n: &Node| n.map_strings(&|s| vars::substitute(s, &values));
            let targets = step.targets.as_ref().map(subst);
            let with = step.with.as_ref().map(subst);
            let label = format!("step {} ({})", step.index + 1, step.name);
            let decoded =
                decode_step_body(&self.source, &label, step.action, &targets, &with, step.pos)
                    .and_then(|(targets, mut params)| {
                        let pos = with.as_ref().map(|n| n.pos).unwrap_or(step.pos);
                        read_policy_file(&self.source, &label, &mut params, pos)?;
                        Ok((targets, params))
                    });
            match decoded {
                Ok((targets, params)) => bound.push(BoundStep {
                    index: step.index,
                    name: step.name.clone(),
                    action: step.action,
                    targets,
                    params,
                    on_failure: step.on_failure,
                    on_missing: step.on_missing,
                    max_targets: step.max_targets,
                    accounts: step
                        .accounts
                        .clone()
                        .or_else(|| self.accounts.clone())
                        .filter(|_| step.action.takes_accounts()),
                }),
                Err(p) => problems.extend(p),
            }
        }
        if problems.is_empty() {
            Ok(bound)
        } else {
            Err(Problems(problems))
        }
    }
}
