//! Which users and roles a step reaches: listed or named, filtered by tag
//! and path, with the executor's chain and `protect` skipped.

use super::*;

pub(super) fn scope(ctx: &Ctx) -> Scope {
    Scope {
        account: ctx.identity.account.clone(),
        region: None,
    }
}

pub(super) fn user_target(ctx: &Ctx, p: &Principal) -> Target {
    Target {
        scope: scope(ctx),
        resource: Resource::User {
            name: p.name.clone(),
            arn: p.arn.clone(),
        },
    }
}

pub(super) fn role_target(ctx: &Ctx, p: &Principal) -> Target {
    Target {
        scope: scope(ctx),
        resource: Resource::Role {
            name: p.name.clone(),
            arn: p.arn.clone(),
        },
    }
}

/// Why this principal must be left alone, if it must.
pub(super) fn guard(ctx: &Ctx, kind: PrincipalKind, p: &Principal) -> Option<SkipReason> {
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
    // IAM refuses changes to them: "Cannot perform the operation on the
    // protected role 'AWSReservedSSO_…' - this role is only modifiable by
    // AWS" (AWS re:Post knowledge center, identity-center-aws-reserved-sso);
    // they change through their permission set. A deny or a quarantine
    // would fail on every one of them.
    if kind == PrincipalKind::Role && p.path.starts_with("/aws-reserved/sso.amazonaws.com/") {
        return Some(SkipReason::IdentityCenterRole);
    }
    None
}

pub(super) async fn select_users(
    ctx: &Ctx,
    sel: &UserSelector,
    out: &mut Vec<Planned>,
) -> Result<Vec<Principal>, AwsError> {
    select_principals(ctx, PrincipalKind::User, &sel.criteria(), out).await
}

pub(super) async fn select_roles(
    ctx: &Ctx,
    sel: &RoleSelector,
    out: &mut Vec<Planned>,
) -> Result<Vec<Principal>, AwsError> {
    select_principals(ctx, PrincipalKind::Role, &sel.criteria(), out).await
}

/// The principals a selector reaches. Named ones are looked up one by one,
/// and each that does not exist becomes a missing item in `out`; only
/// [`PrincipalCriteria::Every`] ever lists the account.
pub(super) async fn select_principals(
    ctx: &Ctx,
    kind: PrincipalKind,
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
pub(super) fn missing(ctx: &Ctx, kind: PrincipalKind, name: &str) -> Planned {
    let p = Principal {
        name: name.to_string(),
        id: String::new(),
        arn: String::new(),
        path: String::new(),
    };
    let (target, what) = match kind {
        PrincipalKind::User => (user_target(ctx, &p), "user"),
        PrincipalKind::Role => (role_target(ctx, &p), "role"),
    };
    Planned {
        target,
        disposition: Disposition::Missing {
            reason: format!("no {what} named {name} in account {}", ctx.identity.account),
        },
    }
}

pub(crate) async fn list_principals(
    ctx: &Ctx,
    kind: PrincipalKind,
    path_prefix: Option<&str>,
) -> Result<Vec<Principal>, AwsError> {
    let prefix = path_prefix.map(str::to_string);
    let iam = ctx.iam();
    Ok(match kind {
        PrincipalKind::User => ctx
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
                id: u.user_id().to_string(),
                arn: u.arn().to_string(),
                path: u.path().to_string(),
            })
            .collect(),
        PrincipalKind::Role => ctx
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
                id: r.role_id().to_string(),
                arn: r.arn().to_string(),
                path: r.path().to_string(),
            })
            .collect(),
    })
}

pub(super) async fn get_principal(
    ctx: &Ctx,
    kind: PrincipalKind,
    name: &str,
) -> Result<Option<Principal>, AwsError> {
    let found = ctx
        .call_raw(None, "iam:GetUser", || async {
            match kind {
                PrincipalKind::User => ctx
                    .iam()
                    .get_user()
                    .user_name(name)
                    .send()
                    .await
                    .map(|o| {
                        o.user().map(|u| Principal {
                            name: u.user_name().to_string(),
                            id: u.user_id().to_string(),
                            arn: u.arn().to_string(),
                            path: u.path().to_string(),
                        })
                    })
                    .map_err(|e| aws::aws_error("iam:GetUser", e)),
                PrincipalKind::Role => ctx
                    .iam()
                    .get_role()
                    .role_name(name)
                    .send()
                    .await
                    .map(|o| {
                        o.role().map(|r| Principal {
                            name: r.role_name().to_string(),
                            id: r.role_id().to_string(),
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

pub(super) async fn filter_tags(
    ctx: &Ctx,
    kind: PrincipalKind,
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

pub(super) async fn principal_tags(
    ctx: &Ctx,
    kind: PrincipalKind,
    name: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    ctx.call_raw(None, "iam:ListUserTags", || async {
        let tags: Vec<(String, String)> = match kind {
            PrincipalKind::User => ctx
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
            PrincipalKind::Role => ctx
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
