//! IAM credential containment: access keys, console passwords, session
//! revocation and quarantine policies.
//!
//! Pitfalls handled here: deactivating a key does not end sessions already made
//! from it (pair with revocation); revocation works through `aws:TokenIssueTime`,
//! which long-term keys do not carry; service-linked roles take no inline policy;
//! the executor's own principal and key are never touched.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_iam::types::StatusType;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use super::{
    ActionInfo, ActionKind, Ctx, Disposition, Op, Planned, Reversibility, Sink, TargetKind,
};
use crate::aws::{self, AwsError, ErrorKind, PrincipalKind, local};
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
    pub kind: PrincipalRefKind,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalRefKind {
    User,
    Role,
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
                plan_policies(ctx, PrincipalRefKind::Role, roles, revoke, sink).await?;
            }
        }
        ActionKind::IamRevokeUserSessions => {
            if let Some(sel) = &step.targets.users {
                let users = select_users(ctx, sel, out).await?;
                let revoke = PolicyKind::RevokeSessions;
                plan_policies(ctx, PrincipalRefKind::User, users, revoke, sink).await?;
            }
        }
        ActionKind::IamRevokeSession => {
            if let Some(sel) = &step.targets.sessions {
                let (users, roles) = select_session_owners(ctx, sel, out).await?;
                let revoke = PolicyKind::RevokeSessions;
                plan_policies(ctx, PrincipalRefKind::User, users, revoke.clone(), sink).await?;
                plan_policies(ctx, PrincipalRefKind::Role, roles, revoke, sink).await?;
            }
        }
        ActionKind::IamQuarantinePrincipals => {
            if let Some(sel) = &step.targets.users {
                let users = select_users(ctx, sel, out).await?;
                let deny = PolicyKind::DenyAll;
                plan_policies(ctx, PrincipalRefKind::User, users, deny, sink).await?;
            }
            if let Some(sel) = &step.targets.roles {
                let roles = select_roles(ctx, sel, out).await?;
                let deny = PolicyKind::DenyAll;
                plan_policies(ctx, PrincipalRefKind::Role, roles, deny, sink).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn scope(ctx: &Ctx) -> Scope {
    Scope {
        account: ctx.identity.account.clone(),
        region: None,
    }
}

fn user_target(ctx: &Ctx, p: &Principal) -> Target {
    Target {
        scope: scope(ctx),
        resource: Resource::User {
            name: p.name.clone(),
            arn: p.arn.clone(),
        },
    }
}

fn role_target(ctx: &Ctx, p: &Principal) -> Target {
    Target {
        scope: scope(ctx),
        resource: Resource::Role {
            name: p.name.clone(),
            arn: p.arn.clone(),
        },
    }
}

/// Why this principal must be left alone, if it must.
fn guard(ctx: &Ctx, kind: PrincipalKind, p: &Principal) -> Option<SkipReason> {
    if ctx.identity.is_self(&ctx.identity.account, kind, &p.name) {
        return Some(SkipReason::Executor);
    }
    if let Some(pattern) = ctx.protection.matching(&p.arn) {
        return Some(SkipReason::Protected {
            pattern: pattern.to_string(),
        });
    }
    if kind == PrincipalKind::Role && p.path.starts_with("/aws-service-role/") {
        return Some(SkipReason::ServiceLinkedRole);
    }
    None
}

async fn select_users(
    ctx: &Ctx,
    sel: &UserSelector,
    out: &mut Vec<Planned>,
) -> Result<Vec<Principal>, AwsError> {
    select_principals(ctx, PrincipalRefKind::User, &sel.criteria(), out).await
}

async fn select_roles(
    ctx: &Ctx,
    sel: &RoleSelector,
    out: &mut Vec<Planned>,
) -> Result<Vec<Principal>, AwsError> {
    select_principals(ctx, PrincipalRefKind::Role, &sel.criteria(), out).await
}

/// The principals a selector reaches. Named ones are looked up one by one,
/// and each that does not exist becomes a missing item in `out`; only
/// [`PrincipalCriteria::Every`] ever lists the account.
async fn select_principals(
    ctx: &Ctx,
    kind: PrincipalRefKind,
    criteria: &PrincipalCriteria,
    out: &mut Vec<Planned>,
) -> Result<Vec<Principal>, AwsError> {
    let found = match criteria {
        PrincipalCriteria::Every(f) => list_principals(ctx, kind, f.path_prefix.as_deref()).await?,
        PrincipalCriteria::Named {
            names,
            key_ids,
            filters,
        } => {
            let mut names: BTreeSet<String> = names.iter().cloned().collect();
            for key_id in key_ids {
                match resolve_key(ctx, key_id).await? {
                    Ok(owner) => {
                        names.insert(owner);
                    }
                    Err(reason) => out.push(missing_key(ctx, key_id, reason)),
                }
            }
            let mut found = Vec::new();
            for name in &names {
                match get_principal(ctx, kind, name).await? {
                    Some(p) => found.push(p),
                    None => out.push(missing(ctx, kind, name)),
                }
            }
            // Filters narrow a named selection; they never add to it.
            if let Some(prefix) = &filters.path_prefix {
                found.retain(|p| p.path.starts_with(prefix.as_str()));
            }
            found
        }
    };
    let f = criteria.filters();
    let found = filter_tags(ctx, kind, found, &f.tags).await?;
    Ok(found
        .into_iter()
        .filter(|p| !f.exclude.contains(&p.name))
        .collect())
}

/// A named user or role that does not exist: reported as such, never
/// replaced by anything else.
fn missing(ctx: &Ctx, kind: PrincipalRefKind, name: &str) -> Planned {
    let p = Principal {
        name: name.to_string(),
        arn: String::new(),
        path: String::new(),
    };
    let (target, what) = match kind {
        PrincipalRefKind::User => (user_target(ctx, &p), "user"),
        PrincipalRefKind::Role => (role_target(ctx, &p), "role"),
    };
    Planned {
        target,
        disposition: Disposition::Missing {
            reason: format!("no {what} named {name} in account {}", ctx.identity.account),
        },
    }
}

fn missing_key(ctx: &Ctx, key_id: &str, reason: String) -> Planned {
    Planned {
        target: Target {
            scope: scope(ctx),
            resource: Resource::AccessKey {
                user: String::new(),
                key_id: key_id.to_string(),
            },
        },
        disposition: Disposition::Missing { reason },
    }
}

/// The users and roles that minted a step's temporary keys.
async fn select_session_owners(
    ctx: &Ctx,
    sel: &SessionSelector,
    out: &mut Vec<Planned>,
) -> Result<(Vec<Principal>, Vec<Principal>), AwsError> {
    let named = |v: &Option<String>| v.clone().filter(|n| !n.trim().is_empty());
    let mut users = BTreeSet::new();
    let mut roles = BTreeSet::new();
    for key_id in &sel.key_ids {
        let owner = match (named(&sel.role), named(&sel.user)) {
            (Some(role), _) => Ok((PrincipalRefKind::Role, role)),
            (None, Some(user)) => Ok((PrincipalRefKind::User, user)),
            (None, None) => session_owner(ctx, key_id).await?,
        };
        match owner {
            Ok((PrincipalRefKind::Role, name)) => {
                roles.insert(name);
            }
            Ok((PrincipalRefKind::User, name)) => {
                users.insert(name);
            }
            Err(reason) => out.push(missing_key(ctx, key_id, reason)),
        }
    }
    let mut found = (Vec::new(), Vec::new());
    for (kind, names, into) in [
        (PrincipalRefKind::User, users, &mut found.0),
        (PrincipalRefKind::Role, roles, &mut found.1),
    ] {
        for name in names {
            let Some(p) = get_principal(ctx, kind, &name).await? else {
                out.push(missing(ctx, kind, &name));
                continue;
            };
            // A session this step cannot end must fail it, never pass as
            // "skipped": the stolen key would stay usable.
            let pkind = match kind {
                PrincipalRefKind::User => PrincipalKind::User,
                PrincipalRefKind::Role => PrincipalKind::Role,
            };
            let why = if p.path.starts_with("/aws-reserved/sso.amazonaws.com/") {
                Some(format!(
                    "{} is an IAM Identity Center role (AWSReservedSSO_*), which IAM cannot edit: contain the Identity Center user instead (a deny in its permission set, then ProvisionPermissionSet)",
                    p.name
                ))
            } else {
                guard(ctx, pkind, &p).map(|reason| {
                    format!(
                        "the key was minted by {} ({reason}): its sessions cannot be revoked from this identity; contain it from another",
                        p.name
                    )
                })
            };
            match why {
                Some(reason) => out.push(Planned {
                    target: match kind {
                        PrincipalRefKind::User => user_target(ctx, &p),
                        PrincipalRefKind::Role => role_target(ctx, &p),
                    },
                    disposition: Disposition::Unreadable {
                        error: local("iam.revoke_session", reason),
                    },
                }),
                None => into.push(p),
            }
        }
    }
    Ok(found)
}

/// Who minted a temporary key: `sts:GetAccessKeyInfo` tells the account,
/// CloudTrail's event history (`LookupEvents` by `AccessKeyId`, 90 days of
/// management events in each region) the principal, from the
/// `userIdentity` of any event made with the key. The API references of
/// both document exactly this use.
async fn session_owner(
    ctx: &Ctx,
    key_id: &str,
) -> Result<Result<(PrincipalRefKind, String), String>, AwsError> {
    let hint = "name it with --var role=NAME (or --var user=NAME for GetSessionToken and GetFederationToken sessions)";
    let sts = ctx.clients.sts();
    let info = ctx
        .call("sts:GetAccessKeyInfo", || {
            sts.get_access_key_info().access_key_id(key_id).send()
        })
        .await?;
    let account = info.account().unwrap_or_default();
    if !account.is_empty() && account != ctx.identity.account {
        return Ok(Err(format!(
            "{key_id} belongs to account {account}, not {}: run in that account (--accounts {account})",
            ctx.identity.account
        )));
    }
    let mut regions: Vec<String> = ctx.regions.clone();
    if !regions.iter().any(|r| r == "us-east-1") {
        regions.push("us-east-1".into());
    }
    let attribute = aws_sdk_cloudtrail::types::LookupAttribute::builder()
        .attribute_key(aws_sdk_cloudtrail::types::LookupAttributeKey::AccessKeyId)
        .attribute_value(key_id)
        .build()
        .map_err(|e| local("cloudtrail:LookupEvents", e.to_string()))?;
    for region in &regions {
        let trail = ctx.clients.cloudtrail(region);
        let events = ctx
            .call_in(region, "cloudtrail:LookupEvents", || {
                trail
                    .lookup_events()
                    .lookup_attributes(attribute.clone())
                    .max_results(5)
                    .send()
            })
            .await?;
        for e in events.events() {
            let Some(json) = e.cloud_trail_event() else {
                continue;
            };
            if let Some(owner) = minted_by(json) {
                return Ok(owner);
            }
        }
    }
    Ok(Err(format!(
        "cannot tell who minted {key_id}: CloudTrail holds no event made with it in {}; {hint}",
        regions.join(", ")
    )))
}

/// The principal behind a CloudTrail event's `userIdentity`, as the
/// CloudTrail userIdentity reference describes it: an `AssumedRole`
/// session's issuer is a role; an `IAMUser` using a temporary key made it
/// with GetSessionToken; a `FederatedUser`'s issuer is the IAM user that
/// called GetFederationToken. A root session cannot be revoked by policy.
fn minted_by(event_json: &str) -> Option<Result<(PrincipalRefKind, String), String>> {
    let event: serde_json::Value = serde_json::from_str(event_json).ok()?;
    let who = &event["userIdentity"];
    let issuer = &who["sessionContext"]["sessionIssuer"];
    let name = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    match who["type"].as_str()? {
        "AssumedRole" => name(&issuer["userName"]).map(|n| Ok((PrincipalRefKind::Role, n))),
        "IAMUser" => name(&who["userName"]).map(|n| Ok((PrincipalRefKind::User, n))),
        "FederatedUser" => name(&issuer["userName"]).map(|n| Ok((PrincipalRefKind::User, n))),
        "Root" => Some(Err(
            "the key is a session of the account's root user: no IAM policy can revoke it (rotate the root credentials)".into(),
        )),
        other => Some(Err(format!(
            "the key belongs to a {other} identity, which IAM policies cannot revoke"
        ))),
    }
}

/// Why a temporary key cannot be contained as an access key.
pub fn temporary_key_reason(key_id: &str) -> String {
    format!(
        "{key_id} is a temporary session key (ASIA…) issued by STS, not an IAM access key: \
         no key step can reach it. Contain it by revoking the sessions of the role or user \
         that minted it (playbooks/compromised-session.yaml)"
    )
}

/// The user in this account that owns an access key, or why there is none.
/// An `ASIA…` id is never looked up: it is a session, not a key. The owner
/// `GetAccessKeyLastUsed` names is confirmed with `ListAccessKeys` in this
/// account, so a key of another account never selects a same-named user here.
async fn resolve_key(ctx: &Ctx, key_id: &str) -> Result<Result<String, String>, AwsError> {
    if key_id.starts_with("ASIA") {
        return Ok(Err(temporary_key_reason(key_id)));
    }
    let account = &ctx.identity.account;
    let Some(owner) = key_owner(ctx, key_id).await? else {
        return Ok(Err(format!(
            "no IAM user in account {account} owns access key {key_id} (a typo, a deleted key, or a key of another account)"
        )));
    };
    let listed = match list_keys(ctx, &owner).await {
        Ok(keys) => keys,
        Err(e) if e.kind == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    if listed.iter().any(|(k, _)| k == key_id) {
        Ok(Ok(owner))
    } else {
        Ok(Err(format!(
            "access key {key_id} is not a key of any user in account {account}"
        )))
    }
}

pub(crate) async fn list_principals(
    ctx: &Ctx,
    kind: PrincipalRefKind,
    path_prefix: Option<&str>,
) -> Result<Vec<Principal>, AwsError> {
    let prefix = path_prefix.map(str::to_string);
    let iam = ctx.iam();
    Ok(match kind {
        PrincipalRefKind::User => ctx
            .pages(
                None,
                "iam:ListUsers",
                |marker| {
                    iam.list_users()
                        .set_path_prefix(prefix.clone())
                        .set_marker(marker)
                        .send()
                },
                |p| {
                    p.is_truncated
                        .then(|| p.marker().map(str::to_string))
                        .flatten()
                },
            )
            .await?
            .iter()
            .flat_map(|p| p.users())
            .map(|u| Principal {
                name: u.user_name().to_string(),
                arn: u.arn().to_string(),
                path: u.path().to_string(),
            })
            .collect(),
        PrincipalRefKind::Role => ctx
            .pages(
                None,
                "iam:ListRoles",
                |marker| {
                    iam.list_roles()
                        .set_path_prefix(prefix.clone())
                        .set_marker(marker)
                        .send()
                },
                |p| {
                    p.is_truncated
                        .then(|| p.marker().map(str::to_string))
                        .flatten()
                },
            )
            .await?
            .iter()
            .flat_map(|p| p.roles())
            .map(|r| Principal {
                name: r.role_name().to_string(),
                arn: r.arn().to_string(),
                path: r.path().to_string(),
            })
            .collect(),
    })
}

async fn get_principal(
    ctx: &Ctx,
    kind: PrincipalRefKind,
    name: &str,
) -> Result<Option<Principal>, AwsError> {
    let found = ctx
        .call_raw(None, "iam:GetUser", || async {
            match kind {
                PrincipalRefKind::User => ctx
                    .iam()
                    .get_user()
                    .user_name(name)
                    .send()
                    .await
                    .map(|o| {
                        o.user().map(|u| Principal {
                            name: u.user_name().to_string(),
                            arn: u.arn().to_string(),
                            path: u.path().to_string(),
                        })
                    })
                    .map_err(|e| aws::aws_error("iam:GetUser", e)),
                PrincipalRefKind::Role => ctx
                    .iam()
                    .get_role()
                    .role_name(name)
                    .send()
                    .await
                    .map(|o| {
                        o.role().map(|r| Principal {
                            name: r.role_name().to_string(),
                            arn: r.arn().to_string(),
                            path: r.path().to_string(),
                        })
                    })
                    .map_err(|e| aws::aws_error("iam:GetRole", e)),
            }
        })
        .await;
    match found {
        Ok(p) => Ok(p),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The user that owns an access key (GetAccessKeyLastUsed answers for any key in the account).
async fn key_owner(ctx: &Ctx, key_id: &str) -> Result<Option<String>, AwsError> {
    let r = ctx
        .call("iam:GetAccessKeyLastUsed", || {
            ctx.iam()
                .get_access_key_last_used()
                .access_key_id(key_id)
                .send()
        })
        .await;
    match r {
        Ok(o) => Ok(o.user_name().map(str::to_string)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn filter_tags(
    ctx: &Ctx,
    kind: PrincipalRefKind,
    principals: Vec<Principal>,
    tags: &BTreeMap<String, String>,
) -> Result<Vec<Principal>, AwsError> {
    if tags.is_empty() {
        return Ok(principals);
    }
    // List calls do not return tags: one read per principal, in parallel.
    let checked: Vec<Option<Principal>> = stream::iter(principals)
        .map(|p| async move {
            let have = principal_tags(ctx, kind, &p.name).await?;
            let ok = tags.iter().all(|(k, v)| have.get(k) == Some(v));
            Ok::<_, AwsError>(ok.then_some(p))
        })
        .buffered(ctx.concurrency)
        .try_collect()
        .await?;
    Ok(checked.into_iter().flatten().collect())
}

async fn principal_tags(
    ctx: &Ctx,
    kind: PrincipalRefKind,
    name: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    ctx.call_raw(None, "iam:ListUserTags", || async {
        let tags: Vec<(String, String)> = match kind {
            PrincipalRefKind::User => ctx
                .iam()
                .list_user_tags()
                .user_name(name)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map(|v| {
                    v.into_iter()
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| aws::aws_error("iam:ListUserTags", e))?,
            PrincipalRefKind::Role => ctx
                .iam()
                .list_role_tags()
                .role_name(name)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map(|v| {
                    v.into_iter()
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| aws::aws_error("iam:ListRoleTags", e))?,
        };
        Ok(tags.into_iter().collect())
    })
    .await
}

/// Plans every access key of every selected user.
async fn plan_user_keys(ctx: &Ctx, users: Vec<Principal>, sink: &Sink) -> Result<(), AwsError> {
    stream::iter(users)
        .map(|u| async move {
            let keys = match list_keys(ctx, &u.name).await {
                Ok(keys) => keys,
                // Deleted since it was listed: it holds no key any more.
                Err(e) if e.kind == ErrorKind::NotFound => {
                    sink.emit(Planned {
                        target: user_target(ctx, &u),
                        disposition: Disposition::Unchanged {
                            reason: "deleted since it was listed".into(),
                        },
                    });
                    return Ok(());
                }
                // This user's keys stay unknown; the other users go on.
                Err(error) => {
                    sink.emit(Planned {
                        target: user_target(ctx, &u),
                        disposition: Disposition::Unreadable { error },
                    });
                    return Ok(());
                }
            };
            let skip = guard(ctx, PrincipalKind::User, &u);
            for (key_id, status) in keys {
                sink.emit(plan_key(ctx, &u, key_id, status, skip.clone()));
            }
            Ok::<_, AwsError>(())
        })
        .buffer_unordered(ctx.concurrency)
        .try_collect()
        .await
}

/// Plans keys named by id, after finding their owners in this account.
async fn plan_named_keys(ctx: &Ctx, ids: &[String]) -> Result<Vec<Planned>, AwsError> {
    let mut out = Vec::new();
    for id in ids {
        let owner = match resolve_key(ctx, id).await? {
            Ok(owner) => owner,
            Err(reason) => {
                out.push(missing_key(ctx, id, reason));
                continue;
            }
        };
        let Some(user) = get_principal(ctx, PrincipalRefKind::User, &owner).await? else {
            out.push(missing(ctx, PrincipalRefKind::User, &owner));
            continue;
        };
        let skip = guard(ctx, PrincipalKind::User, &user);
        let status = list_keys(ctx, &owner)
            .await?
            .into_iter()
            .find(|(k, _)| k == id)
            .map(|(_, s)| s);
        match status {
            Some(status) => out.push(plan_key(ctx, &user, id.clone(), status, skip)),
            // Deleted between the two reads.
            None => out.push(missing_key(
                ctx,
                id,
                format!("access key {id} of {owner} no longer exists"),
            )),
        }
    }
    Ok(out)
}

fn plan_key(
    ctx: &Ctx,
    owner: &Principal,
    key_id: String,
    status: String,
    user_skip: Option<SkipReason>,
) -> Planned {
    let user = owner.name.as_str();
    let target = Target {
        scope: scope(ctx),
        resource: Resource::AccessKey {
            user: user.to_string(),
            key_id: key_id.clone(),
        },
    };
    let disposition = if ctx.identity.chain_keys().any(|k| k == key_id) {
        Disposition::Skip {
            reason: SkipReason::ExecutorKey,
        }
    } else if let Some(reason) = user_skip {
        Disposition::Skip { reason }
    } else if status == "Inactive" {
        Disposition::Unchanged {
            reason: "already Inactive".into(),
        }
    } else {
        Disposition::Change {
            op: Op::DeactivateAccessKey {
                user: user.to_string(),
                key_id,
                prior_status: status,
                user_arn: owner.arn.clone(),
            },
        }
    };
    Planned {
        target,
        disposition,
    }
}

async fn list_keys(ctx: &Ctx, user: &str) -> Result<Vec<(String, String)>, AwsError> {
    ctx.call_raw(None, "iam:ListAccessKeys", || async {
        ctx.iam()
            .list_access_keys()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map(|v| {
                v.into_iter()
                    .map(|k| {
                        (
                            k.access_key_id().unwrap_or_default().to_string(),
                            k.status()
                                .map(|s| s.as_str().to_string())
                                .unwrap_or_default(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .map_err(|e| aws::aws_error("iam:ListAccessKeys", e))
    })
    .await
}

async fn plan_login_profiles(
    ctx: &Ctx,
    users: Vec<Principal>,
    sink: &Sink,
) -> Result<(), AwsError> {
    stream::iter(users)
        .map(|u| async move {
            let target = user_target(ctx, &u);
            if let Some(reason) = guard(ctx, PrincipalKind::User, &u) {
                return Ok(Planned {
                    target,
                    disposition: Disposition::Skip { reason },
                });
            }
            let r = ctx
                .call("iam:GetLoginProfile", || {
                    ctx.iam().get_login_profile().user_name(&u.name).send()
                })
                .await;
            let disposition = match r {
                Ok(_) => Disposition::Change {
                    op: Op::DeleteLoginProfile {
                        user: u.name.clone(),
                    },
                },
                Err(e) if e.kind == ErrorKind::NotFound => Disposition::Unchanged {
                    reason: "no console password".into(),
                },
                Err(error) => Disposition::Unreadable { error },
            };
            Ok(Planned {
                target,
                disposition,
            })
        })
        .buffer_unordered(ctx.concurrency)
        .try_for_each(|p| {
            sink.emit(p);
            std::future::ready(Ok(()))
        })
        .await
}

/// Session revocations for roles named by another action (the role behind a
/// detached instance profile): same guards as `iam.revoke_role_sessions`.
pub(crate) async fn plan_role_revocations(
    ctx: &Ctx,
    role_names: &[String],
) -> Result<Vec<Planned>, AwsError> {
    let mut roles = Vec::new();
    let mut out = Vec::new();
    for name in role_names {
        match get_principal(ctx, PrincipalRefKind::Role, name).await? {
            Some(p) => roles.push(p),
            None => out.push(missing(ctx, PrincipalRefKind::Role, name)),
        }
    }
    let (sink, mut decided) = Sink::channel();
    let revoke = PolicyKind::RevokeSessions;
    plan_policies(ctx, PrincipalRefKind::Role, roles, revoke, &sink).await?;
    drop(sink);
    while let Some(p) = decided.recv().await {
        out.push(p);
    }
    Ok(out)
}

async fn plan_policies(
    ctx: &Ctx,
    kind: PrincipalRefKind,
    principals: Vec<Principal>,
    policy: PolicyKind,
    sink: &Sink,
) -> Result<(), AwsError> {
    let policy_name = match policy {
        PolicyKind::RevokeSessions => REVOKE_POLICY_NAME,
        PolicyKind::DenyAll => QUARANTINE_POLICY_NAME,
    };
    let pkind = match kind {
        PrincipalRefKind::User => PrincipalKind::User,
        PrincipalRefKind::Role => PrincipalKind::Role,
    };
    // Fallback managed policies in use (few): a listing that fails only
    // means a contained principal may be planned again, which is harmless.
    let fallbacks = &super::managed_deny::attached_fallbacks(ctx)
        .await
        .unwrap_or_default();
    stream::iter(principals)
        .map(|p| {
            let policy = policy.clone();
            async move {
                let target = match kind {
                    PrincipalRefKind::User => user_target(ctx, &p),
                    PrincipalRefKind::Role => role_target(ctx, &p),
                };
                if let Some(reason) = guard(ctx, pkind, &p) {
                    return Ok(Planned {
                        target,
                        disposition: Disposition::Skip { reason },
                    });
                }
                let prior = match inline_policy(ctx, kind, &p.name, policy_name).await {
                    Ok(prior) => prior,
                    Err(error) => {
                        return Ok(Planned {
                            target,
                            disposition: Disposition::Unreadable { error },
                        });
                    }
                };
                let principal = PrincipalRef {
                    kind,
                    name: p.name.clone(),
                };
                let in_place = match prior
                    .as_deref()
                    .and_then(|d| already_in_place(ctx, &policy, d))
                {
                    Some(reason) => Some(reason),
                    None => {
                        match managed_in_place(ctx, fallbacks, &principal, policy_name, &policy)
                            .await
                        {
                            Ok(found) => found,
                            Err(error) => {
                                return Ok(Planned {
                                    target,
                                    disposition: Disposition::Unreadable { error },
                                });
                            }
                        }
                    }
                };
                let disposition = match in_place {
                    Some(reason) => Disposition::Unchanged { reason },
                    None => Disposition::Change {
                        op: Op::PutInlinePolicy {
                            principal,
                            policy_name: policy_name.to_string(),
                            policy,
                            document: None,
                            prior_document: prior,
                        },
                    },
                };
                Ok(Planned {
                    target,
                    disposition,
                })
            }
        })
        .buffer_unordered(ctx.concurrency)
        .try_for_each(|p| {
            sink.emit(p);
            std::future::ready(Ok(()))
        })
        .await
}

/// Whether the deny is already in the principal's fallback managed policy
/// (its inline policies being full): attached, and saying exactly what
/// breakglass writes.
async fn managed_in_place(
    ctx: &Ctx,
    fallbacks: &BTreeMap<String, String>,
    principal: &PrincipalRef,
    policy_name: &str,
    policy: &PolicyKind,
) -> Result<Option<String>, AwsError> {
    let Some(arn) =
        super::managed_deny::attached_to(ctx, fallbacks, principal, policy_name).await?
    else {
        return Ok(None);
    };
    Ok(super::managed_deny::document(ctx, &arn)
        .await?
        .and_then(|d| already_in_place(ctx, policy, &d))
        .map(|why| {
            format!("{why} (in managed policy {arn}: its inline policies are at IAM's size limit)")
        }))
}

/// The current document of an inline policy, URL-decoded, or `None` if absent.
async fn inline_policy(
    ctx: &Ctx,
    kind: PrincipalRefKind,
    principal: &str,
    policy_name: &str,
) -> Result<Option<String>, AwsError> {
    let r = ctx
        .call_raw(None, "iam:GetUserPolicy", || async {
            match kind {
                PrincipalRefKind::User => ctx
                    .iam()
                    .get_user_policy()
                    .user_name(principal)
                    .policy_name(policy_name)
                    .send()
                    .await
                    .map(|o| o.policy_document().to_string())
                    .map_err(|e| aws::aws_error("iam:GetUserPolicy", e)),
                PrincipalRefKind::Role => ctx
                    .iam()
                    .get_role_policy()
                    .role_name(principal)
                    .policy_name(policy_name)
                    .send()
                    .await
                    .map(|o| o.policy_document().to_string())
                    .map_err(|e| aws::aws_error("iam:GetRolePolicy", e)),
            }
        })
        .await;
    match r {
        Ok(doc) => Ok(Some(url_decode(&doc))),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a breakglass-named policy document is, when it is exactly one that
/// breakglass writes: the quarantine's deny-all (`None` cutoff), or the
/// revocation's deny-all with its cutoff. Anything else under those names
/// (another statement, another condition, an `Allow`, a `NotAction`) is
/// not breakglass's, whoever wrote it: never proof of containment, never
/// restored, never trusted.
pub fn written_by_breakglass(policy_name: &str, document: &str) -> Option<Option<jiff::Timestamp>> {
    let doc: serde_json::Value = serde_json::from_str(document).ok()?;
    let top = doc.as_object()?;
    if top.keys().any(|k| k != "Version" && k != "Statement") {
        return None;
    }
    let statement = match &doc["Statement"] {
        serde_json::Value::Array(s) if s.len() == 1 => s[0].as_object()?,
        serde_json::Value::Object(s) => s,
        _ => return None,
    };
    let allowed = ["Sid", "Effect", "Action", "Resource", "Condition"];
    if statement.keys().any(|k| !allowed.contains(&k.as_str()))
        || statement.get("Effect")? != "Deny"
        || statement.get("Action")? != "*"
        || statement.get("Resource")? != "*"
    {
        return None;
    }
    match (policy_name, statement.get("Condition")) {
        (QUARANTINE_POLICY_NAME, None) => Some(None),
        (REVOKE_POLICY_NAME, Some(c)) => {
            let c = c.as_object()?;
            let date = c.get("DateLessThan")?.as_object()?;
            if c.len() != 1 || date.len() != 1 {
                return None;
            }
            let cutoff = date.get("aws:TokenIssueTime")?.as_str()?.parse().ok()?;
            Some(Some(cutoff))
        }
        _ => None,
    }
}

/// Whether an existing breakglass-named policy already does the job, and
/// why: it must be exactly what breakglass writes (see
/// [`written_by_breakglass`]), and a revocation must cut off no earlier than
/// this run began and no later than now (a planted far-future cutoff is not
/// one of ours).
fn already_in_place(ctx: &Ctx, policy: &PolicyKind, document: &str) -> Option<String> {
    let name = match policy {
        PolicyKind::DenyAll => QUARANTINE_POLICY_NAME,
        PolicyKind::RevokeSessions => REVOKE_POLICY_NAME,
    };
    match written_by_breakglass(name, document)? {
        None => Some("deny-all quarantine policy already attached".to_string()),
        Some(cutoff) => {
            let latest = jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(60))
                .ok()?;
            (cutoff >= ctx.run_started && cutoff <= latest)
                .then(|| format!("sessions issued before {cutoff} already revoked by this run"))
        }
    }
}

/// IAM returns policy documents URL-encoded (RFC 3986).
pub(crate) fn url_decode(s: &str) -> String {
    if s.trim_start().starts_with('{') {
        return s.to_string();
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn describe(op: &Op) -> String {
    match op {
        Op::DeactivateAccessKey { user, key_id, .. } => {
            format!("iam:UpdateAccessKey UserName={user} AccessKeyId={key_id} Status=Inactive")
        }
        Op::DeleteLoginProfile { user } => format!("iam:DeleteLoginProfile UserName={user}"),
        Op::PutInlinePolicy {
            principal,
            policy_name,
            policy,
            ..
        } => {
            let (call, key) = match principal.kind {
                PrincipalRefKind::User => ("iam:PutUserPolicy", "UserName"),
                PrincipalRefKind::Role => ("iam:PutRolePolicy", "RoleName"),
            };
            let what = match policy {
                PolicyKind::RevokeSessions => "deny * when aws:TokenIssueTime < now",
                PolicyKind::DenyAll => "deny *",
            };
            format!(
                "{call} {key}={} PolicyName={policy_name} ({what})",
                principal.name
            )
        }
        _ => String::new(),
    }
}

/// Makes the call; `Ok(Some(effect))` when a deny went into a managed
/// policy in place of a full inline quota (see [`super::managed_deny`]).
pub async fn apply(ctx: &Ctx, op: &Op) -> Result<Option<serde_json::Value>, AwsError> {
    match op {
        Op::DeactivateAccessKey { user, key_id, .. } => {
            // Defence in depth: discovery already skipped it.
            if *key_id == ctx.identity.access_key_id {
                return Err(refuse("iam:UpdateAccessKey", "the key this run signs with"));
            }
            ctx.call("iam:UpdateAccessKey", || {
                ctx.iam()
                    .update_access_key()
                    .user_name(user)
                    .access_key_id(key_id)
                    .status(StatusType::Inactive)
                    .send()
            })
            .await
            .map(|_| None)
        }
        Op::DeleteLoginProfile { user } => {
            if ctx
                .identity
                .is_self(&ctx.identity.account, PrincipalKind::User, user)
            {
                return Err(refuse("iam:DeleteLoginProfile", "the executor's own user"));
            }
            let r = ctx
                .call("iam:DeleteLoginProfile", || {
                    ctx.iam().delete_login_profile().user_name(user).send()
                })
                .await
                .map(|_| ());
            match r {
                // Gone already (a retried call that had succeeded): the goal state holds.
                Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
                other => other.map(|()| None),
            }
        }
        Op::PutInlinePolicy {
            principal,
            policy_name,
            document,
            ..
        } => {
            let kind = match principal.kind {
                PrincipalRefKind::User => PrincipalKind::User,
                PrincipalRefKind::Role => PrincipalKind::Role,
            };
            if ctx
                .identity
                .is_self(&ctx.identity.account, kind, &principal.name)
            {
                return Err(refuse("iam:Put*Policy", "the executor's own principal"));
            }
            let Some(document) = document else {
                return Err(refuse("iam:Put*Policy", "an unprepared policy document"));
            };
            let put = ctx
                .call_raw(None, "iam:PutUserPolicy", || async {
                    match principal.kind {
                        PrincipalRefKind::User => ctx
                            .iam()
                            .put_user_policy()
                            .user_name(&principal.name)
                            .policy_name(policy_name)
                            .policy_document(document)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| aws::aws_error("iam:PutUserPolicy", e)),
                        PrincipalRefKind::Role => ctx
                            .iam()
                            .put_role_policy()
                            .role_name(&principal.name)
                            .policy_name(policy_name)
                            .policy_document(document)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| aws::aws_error("iam:PutRolePolicy", e)),
                    }
                })
                .await;
            match put {
                Ok(()) => Ok(None),
                Err(e) if super::managed_deny::is_inline_quota(&e) => {
                    let effect =
                        super::managed_deny::apply(ctx, principal, policy_name, document).await?;
                    Ok(Some(effect))
                }
                Err(e) => Err(e),
            }
        }
        _ => Ok(None),
    }
}

/// Asks IAM whether the executor may make each (action, resource) call.
/// Checks from concurrent tasks are coalesced into few calls (see [`Simulator`]).
pub async fn simulate(ctx: &Ctx, checks: &[(&'static str, String)]) -> Result<(), AwsError> {
    let answers = futures_util::future::join_all(
        checks
            .iter()
            .map(|(action, resource)| ctx.run.simulator.check(ctx, action, resource)),
    )
    .await;
    answers.into_iter().collect()
}

/// Resources per `SimulatePrincipalPolicy` call: the API evaluates every
/// listed action on every listed resource and pages the answers.
const SIMULATION_BATCH: usize = 50;

type Answer = tokio::sync::oneshot::Sender<Result<(), AwsError>>;

/// Coalesces permission checks: a preflight over a thousand users costs a
/// few dozen simulation calls instead of a thousand. Each check waits a
/// moment for others to join, then whoever gets the turn asks for all the
/// checks waiting, grouped by action, and answers each of them.
#[derive(Debug, Default)]
pub struct Simulator {
    /// (account, action, resource, answer): each account's checks are asked
    /// of that account's IAM, for the principal the run acts as there.
    waiting: std::sync::Mutex<Vec<Waiting>>,
    turn: tokio::sync::Mutex<()>,
}

type Waiting = (String, &'static str, String, Answer);

impl Simulator {
    pub async fn check(
        &self,
        ctx: &Ctx,
        action: &'static str,
        resource: &str,
    ) -> Result<(), AwsError> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let account = ctx.identity.account.clone();
        self.lock()
            .push((account, action, resource.to_string(), tx));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        {
            let _turn = self.turn.lock().await;
            if let Ok(answer) = rx.try_recv() {
                return answer;
            }
            let batch = std::mem::take(&mut *self.lock());
            let mut by_action: BTreeMap<(String, &'static str), Vec<(String, Answer)>> =
                BTreeMap::new();
            for (account, a, r, tx) in batch {
                by_action.entry((account, a)).or_default().push((r, tx));
            }
            // Every account's and action's batch at once: across fifty
            // accounts, asking one after another was most of the preflight.
            let mut batches = Vec::new();
            for ((account, a), mut waiting) in by_action {
                let Some(here) = ctx.in_account(&account) else {
                    for (_, tx) in waiting {
                        let _ = tx.send(Err(local(
                            "iam:SimulatePrincipalPolicy",
                            format!("account {account} cannot be reached"),
                        )));
                    }
                    continue;
                };
                while !waiting.is_empty() {
                    let rest = waiting.split_off(waiting.len().min(SIMULATION_BATCH));
                    let chunk = std::mem::replace(&mut waiting, rest);
                    batches.push((here.clone().into_owned(), a, chunk));
                }
            }
            futures_util::future::join_all(batches.into_iter().map(
                |(here, a, chunk)| async move {
                    let resources: Vec<String> = chunk.iter().map(|(r, _)| r.clone()).collect();
                    let decisions = simulate_batch(&here, a, &resources).await;
                    for (r, tx) in chunk {
                        let _ = tx.send(verdict(&here, a, &r, &decisions));
                    }
                },
            ))
            .await;
        }
        rx.await.unwrap_or_else(|_| {
            Err(local(
                "iam:SimulatePrincipalPolicy",
                "the permission check was dropped".into(),
            ))
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        match self.waiting.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// resource ARN → IAM's decision for one action, or the error of the call.
type Decisions = Result<BTreeMap<String, String>, AwsError>;

async fn simulate_batch(ctx: &Ctx, action: &str, resources: &[String]) -> Decisions {
    let results = ctx
        .call("iam:SimulatePrincipalPolicy", || {
            ctx.iam()
                .simulate_principal_policy()
                .policy_source_arn(&ctx.executor_arn)
                .action_names(action)
                .set_resource_arns(Some(resources.to_vec()))
                .into_paginator()
                .items()
                .send()
                .try_collect()
        })
        .await
        .map_err(|e| {
            // The simulator itself did not answer (not allowed to the
            // executor, a 5xx, throttled past its retries): that says
            // nothing about the call checked.
            aws::unchecked(format!(
                "iam:SimulatePrincipalPolicy answered {e}: permission checks unavailable here"
            ))
        })?;
    Ok(results
        .iter()
        .map(|r| {
            (
                r.eval_resource_name().unwrap_or("*").to_string(),
                r.eval_decision().as_str().to_string(),
            )
        })
        .collect())
}

fn verdict(ctx: &Ctx, action: &str, resource: &str, decisions: &Decisions) -> Result<(), AwsError> {
    let decisions = decisions.as_ref().map_err(Clone::clone)?;
    let decision = decisions
        .get(resource)
        .or_else(|| decisions.get("*"))
        .map(String::as_str)
        .unwrap_or("no decision returned");
    if decision == "allowed" {
        return Ok(());
    }
    Err(AwsError {
        operation: action.to_string(),
        code: Some("PreflightDenied".into()),
        message: format!(
            "iam:SimulatePrincipalPolicy for {} on {resource}: {decision}",
            ctx.executor_arn
        ),
        kind: ErrorKind::AccessDenied,
    })
}

fn refuse(operation: &str, what: &str) -> AwsError {
    AwsError {
        operation: operation.to_string(),
        code: Some("BreakglassSafetyRule".into()),
        message: format!("refused to act on {what}"),
        kind: ErrorKind::Other,
    }
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
            Some(Ok((PrincipalRefKind::Role, "app".to_string())))
        );
        let user =
            r#"{"userIdentity":{"type":"IAMUser","userName":"alice","accessKeyId":"ASIAXXX"}}"#;
        assert_eq!(
            minted_by(user),
            Some(Ok((PrincipalRefKind::User, "alice".to_string())))
        );
        let fed = r#"{"userIdentity":{"type":"FederatedUser","sessionContext":{"sessionIssuer":{"type":"IAMUser","userName":"bob"}}}}"#;
        assert_eq!(
            minted_by(fed),
            Some(Ok((PrincipalRefKind::User, "bob".to_string())))
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
