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
use crate::actions::call::{Inverse, Inverting};
pub use crate::actions::undo::{Check, Undo, undo_one};
use crate::audit::{Event, Record};
use crate::targets::{Protection, Resource, Target};

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
        Op::PutInlinePolicy(p) => format!("inline:{}", p.policy_name),
        Op::ApplyScp(_) => format!("scp:{seq}"),
        Op::CreateSnapshots(_) => format!("snapshots:{seq}"),
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
        // So is a permission-set deny whose provisioning failed after the
        // policy was written: the users it asked for are lifted where found.
        let partial = *outcome == crate::report::Outcome::Failed
            && intents
                .get(of)
                .is_some_and(|(_, op)| matches!(op, Op::ApplyScp(_) | Op::DenyUsers(_)));
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
        let key = resource_key(*of, target, op);
        if seen.insert(key.clone()) {
            firsts.push((*of, (*target).clone(), (*op).clone(), effect.clone()));
        } else {
            denied_later(&mut firsts, &key, op, effect.as_ref());
        }
    }
    // What the run's playbook protected, the run never touched: its
    // rollback does not either, whatever a log says was done to it.
    let (protect, partition) = records
        .iter()
        .find_map(|r| match &r.event {
            Event::RunStart {
                protect, identity, ..
            } => Some((
                Protection::new(protect),
                crate::aws::partition(&identity.arn).to_string(),
            )),
            _ => None,
        })
        .unwrap_or_else(|| (Protection::new(&[]), "aws".to_string()));
    firsts
        .into_iter()
        .rev()
        .map(|(of, target, op, effect)| {
            let inverse = op.inverse(&Inverting {
                effect: effect.as_ref(),
                reactivate_keys: choices.reactivate_keys,
                own_scp_documents: &own_scp_documents,
            });
            let plan = match (inverse, protected(&protect, &partition, &target, &op)) {
                (Inverse::Undo(_), Some(pattern)) => Plan::Kept {
                    why: format!("protected by the playbook (`{pattern}`): never touched"),
                },
                (Inverse::Undo(undo), None) => Plan::Undo { undo },
                (Inverse::Irreversible { why }, _) => Plan::Irreversible { why },
                (Inverse::Kept { why }, _) => Plan::Kept { why },
            };
            Step { of, target, plan }
        })
        .collect()
}

/// A later deny-sessions write to a policy the run wrote before: its
/// sessions join the first write's, so that the rollback (undoing the first
/// write, against what was there before the run) lifts them all.
fn denied_later(
    firsts: &mut [(u64, Target, Op, Option<serde_json::Value>)],
    key: &str,
    op: &Op,
    effect: Option<&serde_json::Value>,
) {
    use crate::actions::iam::PolicyKind;
    if let Op::DenyUsers(later) = op {
        return denied_users_later(firsts, key, later, effect);
    }
    let Op::PutInlinePolicy(later) = op else {
        return;
    };
    // Only what the later write added: a session someone else denied in
    // between stays denied.
    let more = crate::actions::iam::put_inline_policy::added_sessions(
        &later.policy,
        later.prior_document.as_deref(),
    );
    let first = firsts
        .iter_mut()
        .find(|(of, target, op, _)| resource_key(*of, target, op) == key);
    if let Some((_, _, Op::PutInlinePolicy(first), _)) = first
        && let PolicyKind::DenySessions { userids } = &mut first.policy
    {
        for id in more {
            if !userids.contains(&id) {
                userids.push(id);
            }
        }
    }
}

/// The same for an Identity Center permission set: the users a later write
/// added (its recorded `added`, or, with no answer, what it asked for) join
/// the first write's, so that the rollback lifts them all.
fn denied_users_later(
    firsts: &mut [(u64, Target, Op, Option<serde_json::Value>)],
    key: &str,
    later: &crate::actions::sso::DenyUsers,
    effect: Option<&serde_json::Value>,
) {
    let more: Vec<String> = effect
        .and_then(|e| e.get("added"))
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_else(|| later.user_ids.clone());
    let first = firsts
        .iter_mut()
        .find(|(of, target, op, _)| resource_key(*of, target, op) == key);
    let Some((_, _, Op::DenyUsers(first), first_effect)) = first else {
        return;
    };
    let recorded = first_effect
        .as_mut()
        .and_then(|e| e.get_mut("added"))
        .and_then(serde_json::Value::as_array_mut);
    match recorded {
        Some(list) => {
            for id in more {
                let id = serde_json::Value::String(id);
                if !list.contains(&id) {
                    list.push(id);
                }
            }
        }
        None => {
            for id in more {
                if !first.user_ids.contains(&id) {
                    first.user_ids.push(id);
                }
            }
        }
    }
}

/// The `protect` pattern that covers the principal a change was made to,
/// if any: its ARN as IAM listed it when the log has it, else built from
/// the account and name.
fn protected<'a>(
    protect: &'a Protection,
    partition: &str,
    target: &Target,
    op: &Op,
) -> Option<&'a str> {
    let account = &target.scope.account;
    let built = |kind: &str, name: &str| format!("arn:{partition}:iam::{account}:{kind}/{name}");
    let arn = match (&target.resource, op) {
        (Resource::User { arn, .. } | Resource::Role { arn, .. }, _) if !arn.is_empty() => {
            arn.clone()
        }
        (_, Op::DeactivateAccessKey(k)) if !k.user_arn.is_empty() => k.user_arn.clone(),
        (Resource::User { name, .. }, _) => built("user", name),
        (Resource::Role { name, .. }, _) => built("role", name),
        (Resource::AccessKey { user, .. }, _) => built("user", user),
        _ => return None,
    };
    protect.matching(&arn)
}
