//! The IAM actions a playbook names. Each finds its principals and plans
//! its calls through the selection modules beside it (`principals`, `keys`,
//! `sessions`, `policies`).

use super::*;
use crate::actions::{Action, Runs};
use crate::spec::{NoParams, RevokeSessionParams, SessionScope};

/// Runs a discovery whose selection notes (missing names, skips) are
/// collected in `out` and handed to `sink` after the per-principal
/// decisions, which go to `sink` as they are made.
async fn collect(
    sink: &Sink,
    discover: impl AsyncFnOnce(&mut Vec<Planned>) -> Result<(), AwsError>,
) -> Result<Vec<String>, AwsError> {
    let mut out = Vec::new();
    let result = discover(&mut out).await;
    sink.emit_all(out);
    result.map(|()| Vec::new())
}

pub struct DeactivateAccessKeys;

impl Action for DeactivateAccessKeys {
    const INFO: ActionInfo = ActionInfo {
        id: "iam.deactivate_access_keys",
        summary: "Set access keys to Inactive (never deleted: the key id stays for CloudTrail).",
        targets: &[TargetKind::Users, TargetKind::AccessKeys],
        params: &[],
        calls: &["iam:UpdateAccessKey Status=Inactive"],
        reversibility: Reversibility::Reversible(
            "UpdateAccessKey Status=Active (rollback only with --reactivate-keys)",
        ),
        notes: &[
            "Sessions already issued from a key survive: pair with iam.revoke_user_sessions.",
            "The key this run signs with, and every key of the executor's user, are skipped.",
        ],
    };
    const RUNS: Runs = Runs::InAccounts;
    type Params = NoParams;

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &NoParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        let keys = &step.targets.access_keys;
        collect(sink, async |out| {
            if let Some(sel) = &step.targets.users {
                let users = select_users(ctx, sel, out).await?;
                plan_user_keys(ctx, users, sink).await?;
            }
            if let Some(sel) = keys {
                out.extend(plan_named_keys(ctx, &sel.ids).await?);
            }
            Ok(())
        })
        .await
    }
}

pub struct DeleteLoginProfiles;

impl Action for DeleteLoginProfiles {
    const INFO: ActionInfo = ActionInfo {
        id: "iam.delete_login_profiles",
        summary: "Delete console passwords (DeleteLoginProfile).",
        targets: &[TargetKind::Users],
        params: &[],
        calls: &["iam:DeleteLoginProfile"],
        reversibility: Reversibility::Irreversible(
            "the password is gone; a new one must be set and handed over out of band",
        ),
        notes: &["Console sessions already open survive: pair with iam.revoke_user_sessions."],
    };
    const RUNS: Runs = Runs::InAccounts;
    type Params = NoParams;

    fn irreversible(_: &NoParams) -> Option<&'static str> {
        Some("deleted console passwords cannot be restored")
    }

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &NoParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        collect(sink, async |out| {
            if let Some(sel) = &step.targets.users {
                let users = select_users(ctx, sel, out).await?;
                plan_login_profiles(ctx, users, sink).await?;
            }
            Ok(())
        })
        .await
    }
}

pub struct RevokeRoleSessions;

impl Action for RevokeRoleSessions {
    const INFO: ActionInfo = ActionInfo {
        id: "iam.revoke_role_sessions",
        summary: "Deny every session of a role issued before now (inline policy on aws:TokenIssueTime).",
        targets: &[TargetKind::Roles],
        params: &[],
        calls: &["iam:PutRolePolicy breakglass-revoke-older-sessions"],
        reversibility: Reversibility::Reversible("DeleteRolePolicy, or restore the prior document"),
        notes: &[
            "Hits every session of the role, so never applied to the executor's own role.",
            "Service-linked roles cannot take inline policies: skipped with a reason.",
            MANAGED_FALLBACK_NOTE,
        ],
    };
    const RUNS: Runs = Runs::InAccounts;
    type Params = NoParams;

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &NoParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        collect(sink, async |out| {
            if let Some(sel) = &step.targets.roles {
                let roles = select_roles(ctx, sel, out).await?;
                let revoke = PolicyKind::RevokeSessions;
                plan_policies(ctx, PrincipalKind::Role, roles, revoke, sink).await?;
            }
            Ok(())
        })
        .await
    }
}

pub struct RevokeUserSessions;

impl Action for RevokeUserSessions {
    const INFO: ActionInfo = ActionInfo {
        id: "iam.revoke_user_sessions",
        summary: "Deny every temporary session of a user issued before now (inline policy on aws:TokenIssueTime).",
        targets: &[TargetKind::Users],
        params: &[],
        calls: &["iam:PutUserPolicy breakglass-revoke-older-sessions"],
        reversibility: Reversibility::Reversible("DeleteUserPolicy, or restore the prior document"),
        notes: &[
            "Long-term access keys carry no token issue time: deactivate them too.",
            MANAGED_FALLBACK_NOTE,
        ],
    };
    const RUNS: Runs = Runs::InAccounts;
    type Params = NoParams;

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &NoParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        collect(sink, async |out| {
            if let Some(sel) = &step.targets.users {
                let users = select_users(ctx, sel, out).await?;
                let revoke = PolicyKind::RevokeSessions;
                plan_policies(ctx, PrincipalKind::User, users, revoke, sink).await?;
            }
            Ok(())
        })
        .await
    }
}

pub struct QuarantinePrincipals;

impl Action for QuarantinePrincipals {
    const INFO: ActionInfo = ActionInfo {
        id: "iam.quarantine_principals",
        summary: "Attach an inline deny-all policy to users and roles.",
        targets: &[TargetKind::Users, TargetKind::Roles],
        params: &[],
        calls: &[
            "iam:PutUserPolicy breakglass-quarantine",
            "iam:PutRolePolicy breakglass-quarantine",
        ],
        reversibility: Reversibility::Reversible("DeleteUserPolicy / DeleteRolePolicy"),
        notes: &[
            "Service-linked roles cannot take inline policies: skipped with a reason.",
            MANAGED_FALLBACK_NOTE,
        ],
    };
    const RUNS: Runs = Runs::InAccounts;
    type Params = NoParams;

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &NoParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        collect(sink, async |out| {
            if let Some(sel) = &step.targets.users {
                let users = select_users(ctx, sel, out).await?;
                let deny = PolicyKind::DenyAll;
                plan_policies(ctx, PrincipalKind::User, users, deny, sink).await?;
            }
            if let Some(sel) = &step.targets.roles {
                let roles = select_roles(ctx, sel, out).await?;
                let deny = PolicyKind::DenyAll;
                plan_policies(ctx, PrincipalKind::Role, roles, deny, sink).await?;
            }
            Ok(())
        })
        .await
    }
}

pub struct RevokeSession;

impl Action for RevokeSession {
    const INFO: ActionInfo = ActionInfo {
        id: "iam.revoke_session",
        summary: "Contain stolen temporary credentials (ASIA…): deny the stolen role session by its aws:userid, or (scope: all_sessions) every session of the role issued before now; sessions a user minted are revoked on the user.",
        targets: &[TargetKind::Sessions],
        params: &[(
            "scope",
            "session (default): deny the stolen role session alone; all_sessions: every session of the role issued before now, legitimate ones too",
        )],
        calls: &[
            "sts:GetAccessKeyInfo and cloudtrail:LookupEvents AttributeKey=AccessKeyId (who minted the key, and the session's principalId)",
            "iam:PutRolePolicy breakglass-deny-sessions (StringEquals aws:userid = role-id:session-name)",
            "iam:PutRolePolicy / iam:PutUserPolicy breakglass-revoke-older-sessions (scope: all_sessions, and sessions of users)",
        ],
        reversibility: Reversibility::Reversible("DeleteRolePolicy / DeleteUserPolicy"),
        notes: &[
            "A temporary key is not an IAM access key: no key step can deactivate it; it expires on its own (up to 12 h for a role, 36 h for GetSessionToken).",
            "The minting principal comes from CloudTrail's event history (90 days, per region); when it holds nothing, name it with `role:` (and `session_name:`) or `user:`.",
            "A role session's aws:userid is its role's id and its session name (IAM User Guide, policy variables): the deny reaches that session and any later one of the same name, and no other. Sessions denied before stay in the list.",
            "Sessions of GetSessionToken carry the user's own aws:userid, so they cannot be told apart: sessions of users (GetSessionToken, GetFederationToken) are revoked on their IAM user by issue time.",
            "A session name given by hand must be exact: StringEquals compares aws:userid case-sensitively (IAM User Guide, condition operators). Sessions the stolen one assumed in turn have names of their own and are not denied.",
        ],
    };
    const RUNS: Runs = Runs::InAccounts;
    type Params = RevokeSessionParams;

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        params: &RevokeSessionParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        collect(sink, async |out| {
            let Some(sel) = &step.targets.sessions else {
                return Ok(());
            };
            let owners = select_session_owners(ctx, sel, params.scope, out).await?;
            let revoke = PolicyKind::RevokeSessions;
            plan_policies(ctx, PrincipalKind::User, owners.users, revoke.clone(), sink).await?;
            if params.scope == SessionScope::AllSessions {
                let roles = owners.roles.into_iter().map(|r| r.role).collect();
                return plan_policies(ctx, PrincipalKind::Role, roles, revoke, sink).await;
            }
            for r in owners.roles {
                // Never widened: a session not known by name is not contained
                // by denying the whole role unless the playbook says so.
                for key in &r.unnamed {
                    let reason = format!(
                        "{key} is a session of role {}, and its name is not known: name it (`session_name:`), or revoke every session of the role (`with: {{ scope: all_sessions }}`)",
                        r.role.name
                    );
                    out.push(uncontained_session(ctx, key, reason));
                }
                if r.userids.is_empty() {
                    continue;
                }
                let deny = PolicyKind::DenySessions {
                    userids: r.userids.into_iter().collect(),
                };
                plan_policies(ctx, PrincipalKind::Role, vec![r.role], deny, sink).await?;
            }
            Ok(())
        })
        .await
    }
}
