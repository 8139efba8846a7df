//! Which action a step runs, and its decoded `with:` parameters: data the
//! playbook produces and the actions consume. What each action does lives
//! in `actions/`.

use serde::Serialize;

use super::model::{
    ApplyScpParams, DetachScpParams, LockModeSpec, LockParams, MoveAccountsParams, NoParams,
    SnapshotParams,
};
use crate::yaml::{self, DecodeError, Node};

/// Every action breakglass knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ActionKind {
    #[serde(rename = "iam.deactivate_access_keys")]
    IamDeactivateAccessKeys,
    #[serde(rename = "iam.delete_login_profiles")]
    IamDeleteLoginProfiles,
    #[serde(rename = "iam.revoke_role_sessions")]
    IamRevokeRoleSessions,
    #[serde(rename = "iam.revoke_user_sessions")]
    IamRevokeUserSessions,
    #[serde(rename = "iam.quarantine_principals")]
    IamQuarantinePrincipals,
    #[serde(rename = "iam.revoke_session")]
    IamRevokeSession,
    #[serde(rename = "org.apply_scp")]
    OrgApplyScp,
    #[serde(rename = "org.detach_scp")]
    OrgDetachScp,
    #[serde(rename = "org.move_accounts")]
    OrgMoveAccounts,
    #[serde(rename = "ec2.snapshot_volumes")]
    Ec2SnapshotVolumes,
    #[serde(rename = "ec2.isolate_instances")]
    Ec2IsolateInstances,
    #[serde(rename = "ec2.enable_termination_protection")]
    Ec2EnableTerminationProtection,
    #[serde(rename = "ec2.stop_instances")]
    Ec2StopInstances,
    #[serde(rename = "ec2.detach_instance_profiles")]
    Ec2DetachInstanceProfiles,
    #[serde(rename = "ec2.lock_snapshots")]
    Ec2LockSnapshots,
}

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

impl ActionKind {
    pub const ALL: &'static [ActionKind] = &[
        ActionKind::IamDeactivateAccessKeys,
        ActionKind::IamDeleteLoginProfiles,
        ActionKind::IamRevokeRoleSessions,
        ActionKind::IamRevokeUserSessions,
        ActionKind::IamQuarantinePrincipals,
        ActionKind::IamRevokeSession,
        ActionKind::OrgApplyScp,
        ActionKind::OrgDetachScp,
        ActionKind::OrgMoveAccounts,
        ActionKind::Ec2SnapshotVolumes,
        ActionKind::Ec2IsolateInstances,
        ActionKind::Ec2EnableTerminationProtection,
        ActionKind::Ec2StopInstances,
        ActionKind::Ec2DetachInstanceProfiles,
        ActionKind::Ec2LockSnapshots,
    ];

    /// The id a playbook names it by (`iam.deactivate_access_keys`).
    pub fn id(self) -> &'static str {
        match self {
            ActionKind::IamDeactivateAccessKeys => "iam.deactivate_access_keys",
            ActionKind::IamDeleteLoginProfiles => "iam.delete_login_profiles",
            ActionKind::IamRevokeRoleSessions => "iam.revoke_role_sessions",
            ActionKind::IamRevokeUserSessions => "iam.revoke_user_sessions",
            ActionKind::IamQuarantinePrincipals => "iam.quarantine_principals",
            ActionKind::IamRevokeSession => "iam.revoke_session",
            ActionKind::OrgApplyScp => "org.apply_scp",
            ActionKind::OrgDetachScp => "org.detach_scp",
            ActionKind::OrgMoveAccounts => "org.move_accounts",
            ActionKind::Ec2SnapshotVolumes => "ec2.snapshot_volumes",
            ActionKind::Ec2IsolateInstances => "ec2.isolate_instances",
            ActionKind::Ec2EnableTerminationProtection => "ec2.enable_termination_protection",
            ActionKind::Ec2StopInstances => "ec2.stop_instances",
            ActionKind::Ec2DetachInstanceProfiles => "ec2.detach_instance_profiles",
            ActionKind::Ec2LockSnapshots => "ec2.lock_snapshots",
        }
    }

    pub fn from_id(id: &str) -> Option<ActionKind> {
        Self::ALL.iter().copied().find(|a| a.id() == id)
    }

    /// Why this step cannot be undone, when it cannot: such steps need
    /// `allow_irreversible: true` in the playbook.
    pub fn irreversible(self, params: &ActionParams) -> Option<&'static str> {
        match (self, params) {
            (ActionKind::IamDeleteLoginProfiles, _) => {
                Some("deleted console passwords cannot be restored")
            }
            (ActionKind::Ec2StopInstances, _) => {
                Some("stopping an instance destroys its memory, which may be evidence")
            }
            (ActionKind::Ec2LockSnapshots, ActionParams::Lock(p))
                if p.mode == LockModeSpec::Compliance =>
            {
                Some(
                    "a compliance-mode lock cannot be lifted by anyone, the root user included, until it expires",
                )
            }
            _ => None,
        }
    }

    /// True for actions that run inside each selected account (IAM, EC2);
    /// Organizations actions run once, from the management account.
    pub fn account_scoped(self) -> bool {
        !self.id().starts_with("org.")
    }

    /// True for actions a step's `accounts:` applies to: the account-scoped
    /// ones, and `org.move_accounts`, which moves those accounts.
    pub fn takes_accounts(self) -> bool {
        self.account_scoped() || self == ActionKind::OrgMoveAccounts
    }

    /// True for actions whose targets live in regions (run once per region).
    pub fn regional(self) -> bool {
        self.id().starts_with("ec2.")
    }

    /// Decodes the step's `with:` block into this action's parameters.
    pub fn decode_params(self, with: Option<&Node>) -> Result<ActionParams, DecodeError> {
        let empty = Node {
            pos: yaml::Pos::default(),
            value: yaml::Value::Map(Vec::new()),
        };
        let node = with.unwrap_or(&empty);
        let check_targets = |targets: Vec<String>| {
            targets
                .iter()
                .try_for_each(|t| check_target(t))
                .map_err(|m| DecodeError::at(node.pos, m))
        };
        Ok(match self {
            ActionKind::OrgApplyScp => {
                let p: ApplyScpParams = yaml::decode(node)?;
                check_targets(p.target.items())?;
                if p.policy != "deny-all" && !p.policy.ends_with(".json") {
                    return Err(DecodeError::at(
                        node.pos,
                        format!(
                            "unknown policy `{}`: use `deny-all` or a .json file next to the playbook",
                            p.policy
                        ),
                    ));
                }
                ActionParams::ApplyScp(p)
            }
            ActionKind::OrgDetachScp => {
                let p: DetachScpParams = yaml::decode(node)?;
                check_targets(p.target.items())?;
                ActionParams::DetachScp(p)
            }
            ActionKind::OrgMoveAccounts => {
                let p: MoveAccountsParams = yaml::decode(node)?;
                if !p.to.starts_with("ou-") {
                    return Err(DecodeError::at(
                        node.pos,
                        format!("`to: {}` is not an organizational unit id (ou-…)", p.to),
                    ));
                }
                ActionParams::MoveAccounts(p)
            }
            ActionKind::Ec2SnapshotVolumes => ActionParams::Snapshot(yaml::decode(node)?),
            ActionKind::Ec2LockSnapshots => {
                let p: LockParams = yaml::decode(node)?;
                if !(1..=36500).contains(&p.duration_days) {
                    return Err(DecodeError::at(
                        node.pos,
                        format!("duration_days {} is outside 1..36500", p.duration_days),
                    ));
                }
                ActionParams::Lock(p)
            }
            _ => {
                let _: Option<NoParams> = yaml::decode(node)?;
                ActionParams::None
            }
        })
    }

    /// JSON Schema of this action's `with:` block.
    pub fn params_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        match self {
            ActionKind::OrgApplyScp => generator.subschema_for::<ApplyScpParams>(),
            ActionKind::OrgDetachScp => generator.subschema_for::<DetachScpParams>(),
            ActionKind::OrgMoveAccounts => generator.subschema_for::<MoveAccountsParams>(),
            ActionKind::Ec2SnapshotVolumes => generator.subschema_for::<SnapshotParams>(),
            ActionKind::Ec2LockSnapshots => generator.subschema_for::<LockParams>(),
            _ => generator.subschema_for::<NoParams>(),
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

/// Decoded `with:` parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionParams {
    None,
    ApplyScp(ApplyScpParams),
    DetachScp(DetachScpParams),
    MoveAccounts(MoveAccountsParams),
    Snapshot(SnapshotParams),
    Lock(LockParams),
}
