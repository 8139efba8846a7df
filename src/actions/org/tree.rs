//! Reading the organization: its root, OUs, SCPs and RCPs, and where a
//! policy goes under the five-per-target quota.

use super::*;

pub(super) struct Org {
    pub(super) management_account: String,
    pub(super) root_id: String,
    /// The organization's id (`o-…`), which an RCP compares
    /// `aws:PrincipalOrgID` with.
    pub(super) id: String,
    /// Policy types enabled on the root (`SERVICE_CONTROL_POLICY`, …).
    pub(super) enabled: Vec<String>,
}

impl Org {
    pub(super) fn enabled(&self, kind: PolicyKind) -> bool {
        self.enabled.iter().any(|t| t == kind.api().as_str())
    }
}

pub(super) async fn describe_org(ctx: &Ctx) -> Result<Org, AwsError> {
    let org = ctx.clients.org();
    let desc = ctx
        .call("organizations:DescribeOrganization", || {
            org.describe_organization().send()
        })
        .await?;
    let roots = ctx
        .call("organizations:ListRoots", || org.list_roots().send())
        .await?;
    let root = roots.roots().first().ok_or_else(|| {
        local(
            "organizations:ListRoots",
            "the organization has no root".into(),
        )
    })?;
    let enabled = root
        .policy_types()
        .iter()
        .filter(|p| p.status().map(|s| s.as_str()) == Some("ENABLED"))
        .filter_map(|p| p.r#type().map(|t| t.as_str().to_string()))
        .collect();
    let organization = desc.organization();
    Ok(Org {
        id: organization
            .and_then(|o| o.id())
            .unwrap_or_default()
            .to_string(),
        management_account: desc
            .organization()
            .and_then(|o| o.master_account_id())
            .unwrap_or_default()
            .to_string(),
        root_id: root.id().unwrap_or_default().to_string(),
        enabled,
    })
}

/// The id of the policy of that kind and name, if there is one (rollback
/// of a freeze that failed before AWS returned the id).
pub async fn policy_id_by_name(
    ctx: &Ctx,
    kind: PolicyKind,
    name: &str,
) -> Result<Option<String>, AwsError> {
    Ok(find_policy(ctx, kind, name).await?.map(|(id, _)| id))
}

/// The policy of that kind with this name, with its content, if one exists.
pub(super) async fn find_policy(
    ctx: &Ctx,
    kind: PolicyKind,
    name: &str,
) -> Result<Option<(String, String)>, AwsError> {
    let org = ctx.clients.org();
    let policies = ctx
        .call("organizations:ListPolicies", || {
            org.list_policies()
                .filter(kind.api())
                .into_paginator()
                .send()
                .try_collect()
        })
        .await?;
    let policies: Vec<_> = policies
        .iter()
        .flat_map(|p| p.policies().to_vec())
        .collect();
    let Some(id) = policies
        .iter()
        .find(|p| p.name() == Some(name))
        .and_then(|p| p.id())
        .map(str::to_string)
    else {
        return Ok(None);
    };
    let content = ctx
        .call("organizations:DescribePolicy", || {
            org.describe_policy().policy_id(&id).send()
        })
        .await?
        .policy()
        .and_then(|p| p.content())
        .unwrap_or_default()
        .to_string();
    Ok(Some((id, content)))
}

pub(super) async fn attached(ctx: &Ctx, policy_id: &str, target: &str) -> Result<bool, AwsError> {
    let on = policies_on(ctx, PolicyKind::Scp, target).await?;
    Ok(on.iter().any(|p| p == policy_id))
}

/// The ids of the policies of that kind attached to a root, an OU or an
/// account.
pub(super) async fn policies_on(
    ctx: &Ctx,
    kind: PolicyKind,
    target: &str,
) -> Result<Vec<String>, AwsError> {
    let org = ctx.clients.org();
    let pages = ctx
        .call("organizations:ListPoliciesForTarget", || {
            org.list_policies_for_target()
                .target_id(target)
                .filter(kind.api())
                .into_paginator()
                .send()
                .try_collect()
        })
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| {
            p.policies()
                .iter()
                .filter_map(|s| s.id().map(str::to_string))
        })
        .collect())
}

/// The OUs and accounts directly under `parent`.
pub(super) async fn children_of(ctx: &Ctx, parent: &str) -> Result<Vec<String>, AwsError> {
    let org = ctx.clients.org();
    let ous = ctx
        .call("organizations:ListOrganizationalUnitsForParent", || {
            org.list_organizational_units_for_parent()
                .parent_id(parent)
                .into_paginator()
                .send()
                .try_collect()
        })
        .await?;
    let accounts = ctx
        .call("organizations:ListAccountsForParent", || {
            org.list_accounts_for_parent()
                .parent_id(parent)
                .into_paginator()
                .send()
                .try_collect()
        })
        .await?;
    let mut out: Vec<String> = ous
        .iter()
        .flat_map(|p| {
            p.organizational_units()
                .iter()
                .filter_map(|o| o.id().map(str::to_string))
        })
        .collect();
    out.extend(accounts.iter().flat_map(|p| {
        p.accounts()
            .iter()
            .filter_map(|a| a.id().map(str::to_string))
    }));
    Ok(out)
}

/// Where the deny-all goes, target by target: where it already is, where it
/// must be attached, and where AWS's five-SCP quota stops it. A full root
/// hands the freeze to each OU and account directly under it (the
/// documented fallback; the management account, which no SCP restricts, is
/// left out); a full OU or account is a quota problem the preflight names.
pub(super) struct Placement {
    pub(super) attach: Vec<String>,
    pub(super) full: Vec<(String, String)>,
    pub(super) notes: Vec<String>,
}

pub(super) async fn place(
    ctx: &Ctx,
    org: &Org,
    kind: PolicyKind,
    policy_id: Option<&str>,
    targets: &[String],
) -> Result<Placement, AwsError> {
    let label = kind.label();
    let mut placement = Placement {
        attach: Vec::new(),
        full: Vec::new(),
        notes: Vec::new(),
    };
    for t in targets {
        let on = policies_on(ctx, kind, t).await?;
        if policy_id.is_some_and(|id| on.iter().any(|p| p == id)) {
            continue;
        }
        if on.len() < SCPS_PER_TARGET {
            placement.attach.push(t.clone());
            continue;
        }
        if *t != org.root_id {
            placement.full.push((
                t.clone(),
                format!(
                    "{t} already holds {} {label}s, the most AWS Organizations allows on one target: detach one, or freeze the OUs and accounts under it instead",
                    on.len()
                ),
            ));
            continue;
        }
        let children: Vec<String> = children_of(ctx, t)
            .await?
            .into_iter()
            .filter(|c| *c != org.management_account)
            .collect();
        if children.is_empty() {
            placement.full.push((
                t.clone(),
                format!(
                    "the root {t} already holds {} {label}s, the most AWS Organizations allows, and has no OU or member account under it to take the freeze instead: detach one",
                    on.len()
                ),
            ));
            continue;
        }
        placement.notes.push(format!(
            "The root {t} already holds {} {label}s, the most AWS allows: the policy goes on each of the {} OUs and accounts directly under it instead. An account or OU added under the root later is not covered.",
            on.len(),
            children.len()
        ));
        // Each child's count is one read; hundreds of accounts are read at once.
        let counted: Vec<(String, Vec<String>)> = futures_util::stream::iter(children)
            .map(|c| async move {
                let on = policies_on(ctx, kind, &c).await?;
                Ok::<_, AwsError>((c, on))
            })
            .buffered(ctx.concurrency.max(1))
            .try_collect()
            .await?;
        for (c, on) in counted {
            if policy_id.is_some_and(|id| on.iter().any(|p| p == id)) {
                continue;
            }
            if on.len() < SCPS_PER_TARGET {
                placement.attach.push(c);
            } else {
                placement.full.push((
                    c.clone(),
                    format!(
                        "the root {t} is full, and {c} under it already holds {} {label}s too, the most AWS Organizations allows on one target: detach one there, or move the account into an OU with room",
                        on.len()
                    ),
                ));
            }
        }
    }
    Ok(placement)
}

/// The parent (root or OU) an account sits in now.
pub async fn parent_of(ctx: &Ctx, account: &str) -> Result<String, AwsError> {
    let org = ctx.clients.org();
    let out = ctx
        .call("organizations:ListParents", || {
            org.list_parents().child_id(account).send()
        })
        .await?;
    out.parents()
        .first()
        .and_then(|p| p.id())
        .map(str::to_string)
        .ok_or_else(|| {
            local(
                "organizations:ListParents",
                format!("account {account} has no parent"),
            )
        })
}
