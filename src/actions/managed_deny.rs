//! The fallback when a principal's inline policies are full: the same deny
//! in a customer managed policy of its own, attached to the principal.
//!
//! IAM caps a principal's inline policies in aggregate: 2,048 non-whitespace
//! characters for a user, 10,240 for a role (IAM User Guide, "IAM and AWS STS
//! quotas"); at the cap `Put{User,Role}Policy` answers `LimitExceeded`
//! ("Maximum policy size of … exceeded"). Managed policies count against
//! another quota, the number attached (10 by default), so the deny still
//! fits unless that is full too: then the principal is reported not
//! contained, naming both quotas.

use super::Ctx;
use super::iam::PrincipalRef;
use crate::aws::PrincipalKind;
use crate::aws::{self, AwsError, ErrorKind};

/// The path every fallback policy lives under: what rollback deletes, and
/// nothing else.
pub const PATH: &str = "/breakglass/";

/// Whether a `Put{User,Role}Policy` failure is the inline size quota.
pub fn is_inline_quota(e: &AwsError) -> bool {
    e.code.as_deref() == Some("LimitExceeded")
}

/// One policy per principal and kind of deny: `breakglass-quarantine-user-alice`.
pub fn policy_name(inline_name: &str, principal: &PrincipalRef) -> String {
    let kind = match principal.kind {
        PrincipalKind::User => "user",
        PrincipalKind::Role => "role",
    };
    format!("{inline_name}-{kind}-{}", principal.name)
}

pub fn policy_arn(ctx: &Ctx, name: &str) -> String {
    format!(
        "arn:{}:iam::{}:policy{PATH}{name}",
        aws::partition(&ctx.identity.arn),
        ctx.identity.account
    )
}

/// Whether `name` is the fallback policy of this principal and kind: the
/// base name, or the base name with the suffix a name clash forced.
fn is_fallback_of(name: &str, base: &str) -> bool {
    name == base
        || name
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| n.len() == 8 && n.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The fallback policies in the account that are attached to someone:
/// name → ARN. One listing per step and account (there are few), so the
/// per-principal check below runs only where one exists.
pub async fn attached_fallbacks(
    ctx: &Ctx,
) -> Result<std::collections::BTreeMap<String, String>, AwsError> {
    let iam = ctx.iam();
    let pages = ctx
        .pages(
            None,
            "iam:ListPolicies",
            |marker| {
                iam.list_policies()
                    .scope(aws_sdk_iam::types::PolicyScopeType::Local)
                    .path_prefix(PATH)
                    .only_attached(true)
                    .set_marker(marker)
                    .send()
            },
            |p| {
                p.is_truncated
                    .then(|| p.marker().map(str::to_string))
                    .flatten()
            },
        )
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.policies())
        .filter_map(|p| Some((p.policy_name()?.to_string(), p.arn()?.to_string())))
        .collect())
}

/// The fallback policy attached to this principal for this deny, if any.
pub async fn attached_to(
    ctx: &Ctx,
    fallbacks: &std::collections::BTreeMap<String, String>,
    principal: &PrincipalRef,
    inline_name: &str,
) -> Result<Option<String>, AwsError> {
    let base = policy_name(inline_name, principal);
    let candidates: Vec<&String> = fallbacks
        .iter()
        .filter(|(name, _)| is_fallback_of(name, &base))
        .map(|(_, arn)| arn)
        .collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    let on = attached_arns(ctx, principal).await?;
    Ok(candidates.into_iter().find(|arn| on.contains(arn)).cloned())
}

/// Puts `document` into the principal's fallback managed policy (made once,
/// or brought to this document) and attaches it. The effect names the
/// policy and whether this run made it, for rollback. IAM policy names are
/// unique in an account whatever their path (CreatePolicy API reference):
/// when the name is taken outside `/breakglass/` (planted, or someone
/// else's), a suffixed name is used instead.
pub async fn apply(
    ctx: &Ctx,
    principal: &PrincipalRef,
    inline_name: &str,
    document: &str,
) -> Result<serde_json::Value, AwsError> {
    let base = policy_name(inline_name, principal);
    match apply_named(ctx, principal, &base, document).await {
        Err(e) if e.code.as_deref() == Some("EntityAlreadyExists") => {
            let suffix = &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                format!("{base}{}", jiff::Timestamp::now().as_nanosecond()).as_bytes(),
            ))[..8];
            apply_named(ctx, principal, &format!("{base}-{suffix}"), document).await
        }
        other => other,
    }
}

async fn apply_named(
    ctx: &Ctx,
    principal: &PrincipalRef,
    name: &str,
    document: &str,
) -> Result<serde_json::Value, AwsError> {
    let arn = policy_arn(ctx, name);
    let iam = ctx.iam();
    let created = aws::create_once(
        &["EntityAlreadyExists"],
        || async {
            ctx.call_once(None, "iam:CreatePolicy", || {
                iam.create_policy()
                    .policy_name(name)
                    .path(PATH)
                    .description("breakglass: deny, in place of a full inline policy quota")
                    .policy_document(document)
                    .send()
            })
            .await
            .map(|_| arn.clone())
        },
        || async { exists(ctx, &arn).await.map(|e| e.then(|| arn.clone())) },
    )
    .await?;
    let ours = created.by_this_run();
    if !created.is_new() {
        set_document(ctx, &arn, document).await?;
    }
    let attached = ctx
        .call_raw(None, "iam:AttachUserPolicy", || async {
            match principal.kind {
                PrincipalKind::User => iam
                    .attach_user_policy()
                    .user_name(&principal.name)
                    .policy_arn(&arn)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| aws::aws_error("iam:AttachUserPolicy", e)),
                PrincipalKind::Role => iam
                    .attach_role_policy()
                    .role_name(&principal.name)
                    .policy_arn(&arn)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| aws::aws_error("iam:AttachRolePolicy", e)),
            }
        })
        .await;
    match attached {
        Ok(()) => Ok(serde_json::json!({ "managed_policy_arn": arn, "created": ours })),
        Err(e) if e.code.as_deref() == Some("LimitExceeded") => {
            if ours {
                // Unattached and ours: nothing to keep it for.
                let _ = delete(ctx, &arn).await;
            }
            Err(aws::over_quota(
                e.operation.as_str(),
                format!(
                    "NOT CONTAINED: the inline policies of {} {} are at IAM's size limit and it already has the most managed policies IAM allows ({}): detach one of its managed policies and run again",
                    match principal.kind {
                        PrincipalKind::User => "user",
                        PrincipalKind::Role => "role",
                    },
                    principal.name,
                    e.message
                ),
            ))
        }
        Err(e) => Err(e),
    }
}

async fn exists(ctx: &Ctx, arn: &str) -> Result<bool, AwsError> {
    let r = ctx
        .call("iam:GetPolicy", || {
            ctx.iam().get_policy().policy_arn(arn).send()
        })
        .await;
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The document of the policy's default version, URL-decoded.
pub async fn document(ctx: &Ctx, arn: &str) -> Result<Option<String>, AwsError> {
    let iam = ctx.iam();
    let policy = match ctx
        .call("iam:GetPolicy", || iam.get_policy().policy_arn(arn).send())
        .await
    {
        Ok(p) => p,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(version) = policy.policy().and_then(|p| p.default_version_id()) else {
        return Ok(None);
    };
    let v = ctx
        .call("iam:GetPolicyVersion", || {
            iam.get_policy_version()
                .policy_arn(arn)
                .version_id(version)
                .send()
        })
        .await?;
    Ok(v.policy_version()
        .and_then(|v| v.document())
        .map(super::iam::url_decode))
}

/// Makes `document` the default version, first deleting the oldest
/// non-default version when the policy holds IAM's maximum of five.
async fn set_document(ctx: &Ctx, arn: &str, document: &str) -> Result<(), AwsError> {
    if document_is(ctx, arn, document).await? {
        return Ok(());
    }
    let iam = ctx.iam();
    let versions = ctx
        .call("iam:ListPolicyVersions", || {
            iam.list_policy_versions().policy_arn(arn).send()
        })
        .await?;
    let mut old: Vec<_> = versions
        .versions()
        .iter()
        .filter(|v| !v.is_default_version())
        .collect();
    old.sort_by_key(|v| v.create_date().map(|d| d.secs()));
    if versions.versions().len() >= 5
        && let Some(id) = old.first().and_then(|v| v.version_id())
    {
        delete_version(ctx, arn, id).await?;
    }
    // Not retried blindly: a lost answer may have made the version already.
    let r = ctx
        .call_once(None, "iam:CreatePolicyVersion", || {
            iam.create_policy_version()
                .policy_arn(arn)
                .policy_document(document)
                .set_as_default(true)
                .send()
        })
        .await
        .map(|_| ());
    match r {
        Err(e) if e.kind == ErrorKind::Transient && document_is(ctx, arn, document).await? => {
            Ok(())
        }
        other => other,
    }
}

async fn document_is(ctx: &Ctx, arn: &str, wanted: &str) -> Result<bool, AwsError> {
    Ok(document(ctx, arn)
        .await?
        .is_some_and(|d| aws::same_json(&d, wanted)))
}

/// Whether the principal has the policy attached.
pub async fn attached(ctx: &Ctx, principal: &PrincipalRef, arn: &str) -> Result<bool, AwsError> {
    Ok(attached_arns(ctx, principal)
        .await?
        .iter()
        .any(|a| a == arn))
}

/// The ARNs of the fallback policies attached to the principal.
async fn attached_arns(ctx: &Ctx, principal: &PrincipalRef) -> Result<Vec<String>, AwsError> {
    let iam = ctx.iam();
    let arns: Vec<String> = match principal.kind {
        PrincipalKind::User => ctx
            .call("iam:ListAttachedUserPolicies", || {
                iam.list_attached_user_policies()
                    .user_name(&principal.name)
                    .path_prefix(PATH)
                    .send()
            })
            .await?
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect(),
        PrincipalKind::Role => ctx
            .call("iam:ListAttachedRolePolicies", || {
                iam.list_attached_role_policies()
                    .role_name(&principal.name)
                    .path_prefix(PATH)
                    .send()
            })
            .await?
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect(),
    };
    Ok(arns)
}

/// Detaches the policy from the principal (gone already counts).
pub async fn detach(ctx: &Ctx, principal: &PrincipalRef, arn: &str) -> Result<(), AwsError> {
    let iam = ctx.iam();
    let r = ctx
        .call_raw(None, "iam:DetachUserPolicy", || async {
            match principal.kind {
                PrincipalKind::User => iam
                    .detach_user_policy()
                    .user_name(&principal.name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| aws::aws_error("iam:DetachUserPolicy", e)),
                PrincipalKind::Role => iam
                    .detach_role_policy()
                    .role_name(&principal.name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| aws::aws_error("iam:DetachRolePolicy", e)),
            }
        })
        .await;
    aws::goal_if(r, &["NoSuchEntity"])
}

/// Deletes the policy with its non-default versions (IAM refuses to delete
/// a policy that still has them); gone already counts.
pub async fn delete(ctx: &Ctx, arn: &str) -> Result<(), AwsError> {
    let iam = ctx.iam();
    let versions = match ctx
        .call("iam:ListPolicyVersions", || {
            iam.list_policy_versions().policy_arn(arn).send()
        })
        .await
    {
        Ok(v) => v,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for v in versions
        .versions()
        .iter()
        .filter(|v| !v.is_default_version())
    {
        if let Some(id) = v.version_id() {
            delete_version(ctx, arn, id).await?;
        }
    }
    let r = ctx
        .call("iam:DeletePolicy", || {
            iam.delete_policy().policy_arn(arn).send()
        })
        .await
        .map(|_| ());
    aws::goal_if(r, &["NoSuchEntity"])
}

/// Deletes one non-default version (gone already counts).
async fn delete_version(ctx: &Ctx, arn: &str, id: &str) -> Result<(), AwsError> {
    let r = ctx
        .call("iam:DeletePolicyVersion", || {
            ctx.iam()
                .delete_policy_version()
                .policy_arn(arn)
                .version_id(id)
                .send()
        })
        .await
        .map(|_| ());
    aws::goal_if(r, &["NoSuchEntity"])
}
