//! The kinds of target a playbook step may select, and the spelling of an
//! organization target: data the playbook produces. Which actions exist,
//! and what each does, lives in `actions/` (its registry).

use serde::Serialize;

/// The kinds of target a step may select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Users,
    Roles,
    AccessKeys,
    Sessions,
    Instances,
    Snapshots,
}

impl TargetKind {
    /// The key under `targets:` in a playbook.
    pub fn key(self) -> &'static str {
        match self {
            TargetKind::Users => "users",
            TargetKind::Roles => "roles",
            TargetKind::AccessKeys => "access_keys",
            TargetKind::Sessions => "sessions",
            TargetKind::Instances => "instances",
            TargetKind::Snapshots => "snapshots",
        }
    }
}

/// Checks a target spelling: `root`, `r-…`, `ou-…` or a 12-digit account id.
pub fn check_target(t: &str) -> Result<(), String> {
    let account = t.len() == 12 && t.chars().all(|c| c.is_ascii_digit());
    if t == "root" || t.starts_with("r-") || t.starts_with("ou-") || account {
        Ok(())
    } else {
        Err(format!(
            "`{t}` is not an organization target: use root, an OU id (ou-…) or a 12-digit account id"
        ))
    }
}
