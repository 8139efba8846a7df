//! IAM credential containment: access keys, console passwords, session
//! revocation and quarantine policies.
//!
//! Pitfalls handled here: deactivating a key does not end sessions already made
//! from it (pair with revocation); revocation works through `aws:TokenIssueTime`,
//! which long-term keys do not carry; service-linked roles take no inline policy;
//! the executor's own principal and key are never touched.

pub mod deactivate_access_key;
pub mod delete_login_profile;
mod keys;
mod policies;
mod principals;
pub mod put_inline_policy;
mod sessions;
mod simulation;
pub use deactivate_access_key::DeactivateAccessKey;
pub use delete_login_profile::DeleteLoginProfile;
use keys::*;
pub use policies::written_by_breakglass;
use policies::*;
pub(crate) use policies::{plan_role_revocations, url_decode};
pub(crate) use principals::list_principals;
use principals::*;
pub use put_inline_policy::PutInlinePolicy;
pub use sessions::temporary_key_reason;
use sessions::*;
use simulation::*;
pub use simulation::{Simulator, simulate};

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_iam::types::StatusType;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use super::{
    ActionInfo, ActionKind, Ctx, Disposition, Op, Planned, Reversibility, Sink, TargetKind,
};
use crate::aws::{
    self, AwsError, Clients, ErrorKind, PrincipalKind, RetryPolicy, Telemetry, local,
};
use crate::criteria::PrincipalCriteria;
use crate::spec::{BoundStep, RoleSelector, SessionSelector, UserSelector};
use crate::targets::{Resource, Scope, SkipReason, Target};

/// Name of the inline policy that revokes older sessions.
pub const REVOKE_POLICY_NAME: &str = "breakglass-revoke-older-sessions";
/// Name of the inline deny-all quarantine policy.
pub const QUARANTINE_POLICY_NAME: &str = "breakglass-quarantine";

pub const DEACTIVATE_ACCESS_KEYS: ActionInfo = ActionInfo {
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

pub const DELETE_LOGIN_PROFILES: ActionInfo = ActionInfo {
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

const MANAGED_FALLBACK_NOTE: &str = "A principal whose inline policies are at IAM's size limit gets the deny in a managed policy under /breakglass/ instead (rollback detaches and deletes it).";

pub const REVOKE_ROLE_SESSIONS: ActionInfo = ActionInfo {
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

pub const REVOKE_USER_SESSIONS: ActionInfo = ActionInfo {
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

pub const QUARANTINE_PRINCIPALS: ActionInfo = ActionInfo {
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

pub const REVOKE_SESSION: ActionInfo = ActionInfo {
    id: "iam.revoke_session",
    summary: "Contain stolen temporary credentials (ASIA…): revoke every session of the role or user that minted them, issued before now.",
    targets: &[TargetKind::Sessions],
    params: &[],
    calls: &[
        "sts:GetAccessKeyInfo and cloudtrail:LookupEvents AttributeKey=AccessKeyId (who minted the key)",
        "iam:PutRolePolicy / iam:PutUserPolicy breakglass-revoke-older-sessions",
    ],
    reversibility: Reversibility::Reversible("DeleteRolePolicy / DeleteUserPolicy"),
    notes: &[
        "A temporary key is not an IAM access key: no key step can deactivate it; it expires on its own (up to 12 h for a role, 36 h for GetSessionToken).",
        "The minting principal comes from CloudTrail's event history (90 days, per region); when it holds nothing, name it with `role:` or `user:`.",
        "Every session of that principal issued before now ends, the stolen one included; sessions of GetSessionToken and GetFederationToken are revoked on their IAM user.",
    ],
};

/// A user or role named by an inline-policy op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalRef {
    pub kind: PrincipalKind,
    pub name: String,
}

/// Which breakglass policy an inline-policy op writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicyKind {
    /// Deny everything to sessions issued before the cutoff.
    RevokeSessions,
    /// Deny everything.
    DenyAll,
}

impl PolicyKind {
    pub fn render(&self, now: jiff::Timestamp) -> String {
        let statement = match self {
            PolicyKind::RevokeSessions => serde_json::json!({
                "Sid": "BreakglassRevokeOlderSessions",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": { "DateLessThan": { "aws:TokenIssueTime": iso_seconds(now) } }
            }),
            PolicyKind::DenyAll => serde_json::json!({
                "Sid": "BreakglassQuarantine",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*"
            }),
        };
        serde_json::json!({ "Version": "2012-10-17", "Statement": [statement] }).to_string()
    }
}

/// `2026-11-22T21:40:00Z`: the format IAM condition operators document. Rounded
/// up to the next second so a session issued in the current second is covered.
fn iso_seconds(t: jiff::Timestamp) -> String {
    let secs = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    jiff::Timestamp::from_second(secs)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A selected IAM principal.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) path: String,
}

/// Decides every target of an IAM step. The per-principal reads (keys,
/// passwords, inline policies) hand each decision to `sink` as it is made.
pub async fn discover(ctx: &Ctx, step: &BoundStep, sink: &Sink) -> Result<(), AwsError> {
    let mut out = Vec::new();
    let result = discover_into(ctx, step, sink, &mut out).await;
    sink.emit_all(out);
    result
}

async fn discover_into(
    ctx: &Ctx,
    step: &BoundStep,
    sink: &Sink,
    out: &mut Vec<Planned>,
) -> Result<(), AwsError> {
    match step.action {
        ActionKind::IamDeactivateAccessKeys => {
            if let Some(sel) = &step.targets.users {
                let users = select_users(ctx, sel, out).await?;
                plan_user_keys(ctx, users, sink).await?;
            }
            if let Some(sel) = &step.targets.access_keys {
                out.extend(plan_named_keys(ctx, &sel.ids).await?);
            }
        }
        ActionKind::IamDeleteLoginProfiles => {
            if let Some(sel) = &step.targets.users {
                let users = select_users(ctx, sel, out).await?;
                plan_login_profiles(ctx, users, sink).await?;
            }
        }
        ActionKind::IamRevokeRoleSessions => {
            if let Some(sel) = &step.targets.roles {
                let roles = select_roles(ctx, sel, out).await?;
                let revoke = PolicyKind::RevokeSessions;
                plan_policies(ctx, PrincipalKind::Role, roles, revoke, sink).await?;
            }
        }
        ActionKind::IamRevokeUserSessions => {
            if let Some(sel) = &step.targets.users {
                let users = select_users(ctx, sel, out).await?;
                let revoke = PolicyKind::RevokeSessions;
                plan_policies(ctx, PrincipalKind::User, users, revoke, sink).await?;
            }
        }
        ActionKind::IamRevokeSession => {
            if let Some(sel) = &step.targets.sessions {
                let (users, roles) = select_session_owners(ctx, sel, out).await?;
                let revoke = PolicyKind::RevokeSessions;
                plan_policies(ctx, PrincipalKind::User, users, revoke.clone(), sink).await?;
                plan_policies(ctx, PrincipalKind::Role, roles, revoke, sink).await?;
            }
        }
        ActionKind::IamQuarantinePrincipals => {
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
        }
        _ => {}
    }
    Ok(())
}

/// A role's ARN with its path (what `aws:PrincipalArn` carries for its
/// sessions, and what a deny must name to spare them).
pub async fn role_arn(
    clients: &Clients,
    account: &str,
    role_name: &str,
    retry: &RetryPolicy,
    telemetry: &Telemetry,
) -> Result<String, AwsError> {
    let lane = telemetry.lane(account, "iam:GetRole", None);
    let out = aws::call(retry, telemetry, &lane, || async {
        clients
            .iam
            .get_role()
            .role_name(role_name)
            .send()
            .await
            .map_err(|e| aws::aws_error("iam:GetRole", e))
    })
    .await?;
    out.role()
        .map(|r| r.arn().to_string())
        .ok_or_else(|| aws::local("iam:GetRole", format!("no role {role_name} in the answer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_decoding() {
        assert_eq!(url_decode("%7B%22a%22%3A1%7D"), "{\"a\":1}");
        assert_eq!(url_decode("{\"a\":1}"), "{\"a\":1}");
        assert_eq!(url_decode("%7"), "%7");
    }

    #[test]
    fn who_minted_a_temporary_key() {
        let role = r#"{"userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/app/i-1","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::111122223333:role/svc/app","userName":"app"}}}}"#;
        assert_eq!(
            minted_by(role),
            Some(Ok((PrincipalKind::Role, "app".to_string())))
        );
        let user =
            r#"{"userIdentity":{"type":"IAMUser","userName":"alice","accessKeyId":"ASIAXXX"}}"#;
        assert_eq!(
            minted_by(user),
            Some(Ok((PrincipalKind::User, "alice".to_string())))
        );
        let fed = r#"{"userIdentity":{"type":"FederatedUser","sessionContext":{"sessionIssuer":{"type":"IAMUser","userName":"bob"}}}}"#;
        assert_eq!(
            minted_by(fed),
            Some(Ok((PrincipalKind::User, "bob".to_string())))
        );
        assert!(matches!(
            minted_by(r#"{"userIdentity":{"type":"Root"}}"#),
            Some(Err(_))
        ));
        assert_eq!(minted_by("not json"), None);
    }

    #[test]
    fn only_the_documents_breakglass_writes_count() {
        let now = jiff::Timestamp::now();
        let ours = PolicyKind::RevokeSessions.render(now);
        assert!(written_by_breakglass(REVOKE_POLICY_NAME, &ours).is_some_and(|c| c.is_some()));
        let deny = PolicyKind::DenyAll.render(now);
        assert_eq!(
            written_by_breakglass(QUARANTINE_POLICY_NAME, &deny),
            Some(None)
        );
        // A planted look-alike: a far cutoff plus a condition that never matches.
        let planted = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"2099-01-01T00:00:00Z"},"StringEquals":{"aws:username":"nobody"}}}]}"#;
        assert_eq!(written_by_breakglass(REVOKE_POLICY_NAME, planted), None);
        for doc in [
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
            r#"{"Statement":[{"Effect":"Deny","NotAction":"iam:*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"},{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        ] {
            assert_eq!(
                written_by_breakglass(QUARANTINE_POLICY_NAME, doc),
                None,
                "{doc}"
            );
        }
    }

    #[test]
    fn cutoff_rounds_up() {
        let t: jiff::Timestamp = "2026-11-22T21:40:00.5Z".parse().expect("ts");
        assert_eq!(iso_seconds(t), "2026-11-22T21:40:01Z");
        let t: jiff::Timestamp = "2026-11-22T21:40:00Z".parse().expect("ts");
        assert_eq!(iso_seconds(t), "2026-11-22T21:40:00Z");
    }
}
