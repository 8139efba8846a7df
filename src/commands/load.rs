//! Reading and validating playbooks for a command.

use crate::actions::BoundStep;
use crate::error::{Error, ExitCode};
use crate::playbook::{self, Playbook};
use crate::render::{self, Printer};
use std::collections::BTreeMap;

pub(super) fn validate(
    out: &Printer,
    paths: &[std::path::PathBuf],
    vars: &[(String, String)],
    scenarios: bool,
) -> Result<ExitCode, Error> {
    let mut results = Vec::new();
    for path in paths {
        let result = if scenarios {
            crate::tabletop::scenario::load(path).map(|s| render::Validated {
                name: s.file.name.clone(),
                unit: "moves",
                count: s.moves.len(),
                warnings: Vec::new(),
            })
        } else {
            playbook::load(path).and_then(|pb| {
                if !vars.is_empty() {
                    pb.bind(vars).map_err(Error::InvalidPlaybook)?;
                }
                Ok(render::Validated {
                    name: pb.name.clone(),
                    unit: "steps",
                    count: pb.steps.len(),
                    warnings: pb.warnings,
                })
            })
        };
        results.push((path.display().to_string(), result));
    }
    let all_ok = results.iter().all(|(_, r)| r.is_ok());
    out.validation(&results);
    Ok(if all_ok {
        ExitCode::Success
    } else {
        ExitCode::Usage
    })
}

/// A playbook with its variables bound, ready for AWS.
pub(super) struct Loaded {
    pub(super) playbook: Playbook,
    pub(super) steps: Vec<BoundStep>,
    pub(super) vars: BTreeMap<String, String>,
}

/// `--accounts`, when given, takes the place of the playbook's own `accounts:`.
pub(super) fn load(
    path: &std::path::Path,
    vars: &[(String, String)],
    accounts: Option<&crate::spec::AccountsSpec>,
) -> Result<Loaded, Error> {
    let mut playbook = playbook::load(path)?;
    if let Some(a) = accounts {
        playbook.accounts = Some(a.clone());
    }
    let steps = playbook.bind(vars).map_err(Error::InvalidPlaybook)?;
    Ok(Loaded {
        playbook,
        steps,
        vars: vars.iter().cloned().collect(),
    })
}
