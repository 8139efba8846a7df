//! A step ready to run: variables substituted, selectors and parameters decoded.

use super::{ActionKind, ActionParams};
use crate::spec::{AccountsSpec, OnFailure, OnMissing, TargetSpec};

/// A step with its variables substituted and its selectors and parameters decoded.
#[derive(Debug, Clone)]
pub struct BoundStep {
    pub index: usize,
    pub name: String,
    pub action: ActionKind,
    pub targets: TargetSpec,
    pub params: ActionParams,
    pub on_failure: OnFailure,
    pub on_missing: OnMissing,
    pub max_targets: Option<u32>,
    /// The accounts the step fans out to (its own or the playbook's); `None`
    /// runs it in the executor's account.
    pub accounts: Option<AccountsSpec>,
}

impl BoundStep {
    /// Whether the step names resources that must exist (a key id, a user,
    /// an instance id), as opposed to reaching whatever its filters admit.
    pub fn names_subjects(&self) -> bool {
        let t = &self.targets;
        t.access_keys.is_some()
            || t.sessions.is_some()
            || t.users
                .as_ref()
                .is_some_and(|u| !u.names.is_empty() || !u.access_key_ids.is_empty())
            || t.roles.as_ref().is_some_and(|r| !r.names.is_empty())
            || t.instances.as_ref().is_some_and(|i| !i.ids.is_empty())
            || t.snapshots.as_ref().is_some_and(|s| !s.ids.is_empty())
            || self.params.names_subjects()
    }
}
