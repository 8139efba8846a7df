//! Rollback: undo, in reverse order, the changes a run recorded, each from
//! the prior state its audit record holds.
//!
//! Only what the run itself changed is undone (a pre-existing policy of the
//! same name is restored, never deleted); a resource someone changed since is
//! a conflict and is left alone unless `--force`; compromised keys stay
//! inactive unless `--reactivate-keys`; deleted passwords and compliance locks
//! are listed as irreversible. Rollback writes its own audit log.

use serde::Serialize;

use crate::actions::Op;
pub use crate::actions::undo::{Check, Undo, undo_one};
use crate::audit::{Event, Record};
use crate::spec::LockModeSpec;
use crate::targets::Target;

/// What rollback decided for one recorded change.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `seq` of the intent record of the change being undone.
    pub of: u64,
    pub target: Target,
    pub plan: Plan,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plan {
    Undo {
        undo: Undo,
    },
    /// Nobody can undo it (the reason says why).
    Irreversible {
        why: String,
    },
    /// Deliberately not undone (the reason says how to, if wanted).
    Kept {
        why: String,
    },
}

/// Options the responder chose.
#[derive(Debug, Clone, Default)]
pub struct Choices {
    pub reactivate_keys: bool,
    /// Only changes made by steps with these names (all when empty).
    pub steps: Vec<String>,
}

/// What a change was made to, for "the state before the run's first change
/// to it": the target and the kind of change (and the policy name for
/// inline policies). SCP changes are all kept apart: each is a document of
/// this run's own, and undoing them latest first walks back through them.
fn resource_key(seq: u64, target: &Target, op: &Op) -> String {
    let kind = match op {
        Op::PutInlinePolicy { policy_name, .. } => format!("inline:{policy_name}"),
        Op::ApplyScp(_) => format!("scp:{seq}"),
        Op::CreateSnapshots { .. } => format!("snapshots:{seq}"),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v["op"].as_str().map(str::to_string))
            .unwrap_or_default(),
    };
    format!(
        "{}|{kind}",
        serde_json::to_string(target).unwrap_or_default()
    )
}

/// The undo plan of a verified log, latest change first. Each resource goes
/// back to its state before the run's *first* change to it: a hold that
/// re-applied containment records, as "prior", whatever an intruder had put
/// there in between, and that is never restored.
pub fn plan(records: &[Record], choices: &Choices) -> Vec<Step> {
    let step_names: std::collections::BTreeMap<usize, String> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::StepStart { step, name, .. } => Some((*step, name.clone())),
            _ => None,
        })
        .collect();
    let intents: std::collections::BTreeMap<u64, (&Target, &Op)> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Intent { target, op, .. } => Some((r.seq, (target, op))),
            _ => None,
        })
        .collect();
    // The documents this run itself wrote into each SCP: the only ones a
    // rollback may write back.
    let own_scp_documents: Vec<&str> = intents
        .values()
        .filter_map(|(_, op)| match op {
            Op::ApplyScp(a) => Some(a.document.as_str()),
            _ => None,
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut firsts = Vec::new();
    for r in records {
        let Event::Result {
            intent: Some(of),
            outcome,
            effect,
            step,
            ..
        } = &r.event
        else {
            continue;
        };
        // A freeze is many attaches: one that failed part-way may have left
        // some targets frozen, so it is undone where found too.
        let partial = *outcome == crate::report::Outcome::Failed
            && intents
                .get(of)
                .is_some_and(|(_, op)| matches!(op, Op::ApplyScp(_)));
        if *outcome != crate::report::Outcome::Changed && !partial {
            continue;
        }
        let name = step_names.get(step).cloned().unwrap_or_default();
        if !choices.steps.is_empty() && !choices.steps.contains(&name) {
            continue;
        }
        let Some((target, op)) = intents.get(of) else {
            continue;
        };
        if seen.insert(resource_key(*of, target, op)) {
            firsts.push((*of, (*target).clone(), (*op).clone(), effect.clone()));
        }
    }
    firsts
        .into_iter()
        .rev()
        .map(|(of, target, op, effect)| Step {
            of,
            target,
            plan: inverse(&op, effect.as_ref(), choices, &own_scp_documents),
        })
        .collect()
}

fn inverse(
    op: &Op,
    effect: Option<&serde_json::Value>,
    choices: &Choices,
    own_scp_documents: &[&str],
) -> Plan {
    let undo = |undo| Plan::Undo { undo };
    match op {
        Op::DeactivateAccessKey {
            user,
            key_id,
            prior_status,
            ..
        } => {
            if prior_status != "Active" {
                Plan::Kept {
                    why: format!("it was {prior_status} before the run"),
                }
            } else if choices.reactivate_keys {
                undo(Undo::ReactivateAccessKey {
                    user: user.clone(),
                    key_id: key_id.clone(),
                })
            } else {
                Plan::Kept {
                    why: "a compromised key should stay inactive: pass --reactivate-keys to turn it back on".into(),
                }
            }
        }
        Op::DeleteLoginProfile { .. } => Plan::Irreversible {
            why: "the console password was deleted: issue a new one out of band".into(),
        },
        // A breakglass-named policy is deleted, never written back: what was
        // there before the run under that name (an earlier run's, or one
        // an intruder planted) is not something to restore.
        Op::PutInlinePolicy {
            principal,
            policy_name,
            document,
            ..
        } if effect.is_some_and(|e| e["managed_policy_arn"].is_string()) => {
            undo(Undo::RemoveManagedDeny {
                principal: principal.clone(),
                policy_arn: effect
                    .and_then(|e| e["managed_policy_arn"].as_str())
                    .unwrap_or_default()
                    .to_string(),
                delete: effect.and_then(|e| e["created"].as_bool()).unwrap_or(false),
                ours: document.clone().unwrap_or_default(),
                policy_name: policy_name.clone(),
            })
        }
        Op::PutInlinePolicy {
            principal,
            policy_name,
            document,
            ..
        } => undo(Undo::RestoreInlinePolicy {
            principal: principal.clone(),
            policy_name: policy_name.clone(),
            ours: document.clone().unwrap_or_default(),
            prior: None,
        }),
        Op::ApplyScp(a) => {
            let policy_id = effect
                .and_then(|e| e["policy_id"].as_str())
                .map(str::to_string)
                .or_else(|| a.policy_id.clone())
                .unwrap_or_default();
            let created = effect.and_then(|e| e["created"].as_bool()).unwrap_or(false);
            // Content goes back only when it was this run's own (the
            // member-role exemption its closing rewrite removed).
            let prior_content = a.prior_content.clone().filter(|p| {
                own_scp_documents
                    .iter()
                    .any(|d| crate::aws::same_json(d, p))
            });
            undo(Undo::DetachScp {
                policy_id,
                targets: a.attach_to.clone(),
                delete: created,
                prior_content,
                name: a.name.clone(),
                ours: own_scp_documents.iter().map(|d| d.to_string()).collect(),
            })
        }
        Op::DetachScp {
            policy_id,
            target_id,
        } => undo(Undo::AttachScp {
            policy_id: policy_id.clone(),
            target_id: target_id.clone(),
        }),
        Op::MoveAccount { account, from, to } => undo(Undo::MoveAccount {
            account: account.clone(),
            from: to.clone(),
            to: from.clone(),
        }),
        Op::CreateSnapshots { .. } => Plan::Kept {
            why: "snapshots are evidence: breakglass never deletes them".into(),
        },
        Op::IsolateInstance {
            region,
            interfaces,
            on_flush,
            ..
        } => {
            let strings = |key: &str| -> Vec<String> {
                effect
                    .and_then(|e| e[key].as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|g| g.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            // The allow-all flush group is never a state to go back to: an
            // interface found on it had other groups before breakglass, and
            // only the log of the run that moved it there knows them.
            let flush = strings("flush_groups");
            let flushed: Vec<&str> = interfaces
                .iter()
                .filter(|i| on_flush.contains(&i.id) || i.groups.iter().any(|g| flush.contains(g)))
                .map(|i| i.id.as_str())
                .collect();
            if !flushed.is_empty() {
                return Plan::Kept {
                    why: format!(
                        "{} sat on the allow-all flush group when this run began, so its groups before breakglass are not in this log: it stays isolated (roll back the earlier run's log)",
                        flushed.join(", ")
                    ),
                };
            }
            let mut quarantine_groups = strings("quarantine_groups");
            if let Some(q) = effect.and_then(|e| e["quarantine_group"].as_str())
                && !quarantine_groups.iter().any(|g| g == q)
            {
                quarantine_groups.push(q.to_string());
            }
            undo(Undo::RestoreGroups {
                region: region.clone(),
                interfaces: interfaces.clone(),
                quarantine_group: quarantine_groups.first().cloned().unwrap_or_default(),
                quarantine_groups,
                created_groups: effect
                    .and_then(|e| e["created_groups"].as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|g| g.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        }
        Op::EnableTerminationProtection {
            region,
            instance_id,
            prior,
        } => undo(Undo::DisableTerminationProtection {
            region: region.clone(),
            instance_id: instance_id.clone(),
            prior: prior.clone(),
        }),
        Op::StopInstance {
            region,
            instance_id,
            prior_state,
        } => {
            if prior_state == "running" || prior_state == "pending" {
                undo(Undo::StartInstance {
                    region: region.clone(),
                    instance_id: instance_id.clone(),
                })
            } else {
                Plan::Kept {
                    why: format!("it was {prior_state} before the run"),
                }
            }
        }
        Op::LockSnapshot {
            region,
            snapshot_id,
            mode,
            ..
        } => match mode {
            LockModeSpec::Governance => undo(Undo::UnlockSnapshot {
                region: region.clone(),
                snapshot_id: snapshot_id.clone(),
            }),
            LockModeSpec::Compliance => Plan::Irreversible {
                why: "a compliance-mode lock lasts until it expires".into(),
            },
        },
        Op::DisassociateInstanceProfile {
            region,
            instance_id,
            profile_arn,
            ..
        } => undo(Undo::AssociateInstanceProfile {
            region: region.clone(),
            instance_id: instance_id.clone(),
            profile_arn: profile_arn.clone(),
        }),
    }
}
