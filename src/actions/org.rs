//! Organizations: the org-wide freeze with a deny-all service control policy.
//!
//! Pitfalls handled here: SCPs never restrict the management account or
//! service-linked roles (the plan says so and names the account); the policy
//! type must be enabled on the root; the document limit is 5,120 characters,
//! checked before any call; the executor is exempted by its role ARN with the
//! path (`aws:PrincipalArn` never carries a session name); a rerun reuses the
//! policy by name instead of creating a second one.

use serde::{Deserialize, Serialize};

use futures_util::{StreamExt, TryStreamExt};

use super::{
    ActionInfo, ActionParams, Ctx, Discovery, Disposition, Op, Planned, Reversibility, Sink,
};
use crate::aws::{self, AwsError, local};
use crate::spec::BoundStep;
use crate::targets::{Resource, Scope, SkipReason, Target};

/// AWS's limit on an SCP document, in characters.
pub const SCP_MAX_CHARS: usize = 5120;

/// The most SCPs a root, an OU or an account can hold ("Maximum number of
/// policies attached to root, OU or account: 5", AWS Organizations User
/// Guide, Quotas for AWS Organizations): a sixth `AttachPolicy` fails with
/// `ConstraintViolationException` (POLICY_NUMBER_LIMIT_EXCEEDED).
pub const SCPS_PER_TARGET: usize = 5;

pub const APPLY_SCP: ActionInfo = ActionInfo {
    id: "org.apply_scp",
    summary: "Deny everything to every principal except the executor and `protect`, with a service control policy.",
    targets: &[],
    params: &[
        (
            "target",
            "root, OU ids (ou-…) or account ids: one or a list",
        ),
        ("policy", "deny-all (built in; the default)"),
        ("name", "SCP name (default breakglass-deny-all)"),
    ],
    calls: &[
        "organizations:EnablePolicyType (root, if SCPs are off)",
        "organizations:CreatePolicy (or UpdatePolicy)",
        "organizations:AttachPolicy",
    ],
    reversibility: Reversibility::Reversible("DetachPolicy (org.detach_scp), then DeletePolicy"),
    notes: &[
        "SCPs never restrict the management account or service-linked roles.",
        "Runs from the management account or a delegated administrator.",
        "A root already holding five SCPs (AWS's quota) hands the freeze to each OU and account under it; a full OU or account refuses the run before any change.",
    ],
};

pub const DETACH_SCP: ActionInfo = ActionInfo {
    id: "org.detach_scp",
    summary: "Detach a breakglass SCP (ends an org-wide freeze).",
    targets: &[],
    params: &[
        ("target", "root, OU ids or account ids"),
        ("name", "SCP name (default breakglass-deny-all)"),
    ],
    calls: &["organizations:DetachPolicy"],
    reversibility: Reversibility::Reversible("org.apply_scp"),
    notes: &[],
};

pub const MOVE_ACCOUNTS: ActionInfo = ActionInfo {
    id: "org.move_accounts",
    summary: "Move the step's accounts into a quarantine OU, so the SCPs on it bind them.",
    targets: &[],
    params: &[("to", "the quarantine OU id (ou-…)")],
    calls: &["organizations:MoveAccount"],
    reversibility: Reversibility::Reversible("moves each account back to the parent it had"),
    notes: &[
        "The accounts come from `accounts:` (the step's or the playbook's).",
        "The executor's own account and the management account are never moved.",
    ],
};

/// Everything `org.apply_scp` needs to do, as one recorded op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyScp {
    pub name: String,
    pub document: String,
    /// The policy of that name, when it already exists (reused, never duplicated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    /// Its content before this run, when the content is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_content: Option<String>,
    /// The root to enable the SCP policy type on first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_on_root: Option<String>,
    pub attach_to: Vec<String>,
}

/// The built-in deny-all document: every action, every resource, every
/// principal except the exempted ARN patterns.
pub fn deny_all_document(exempt: &[String]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "BreakglassDenyAllExceptResponders",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": { "ArnNotLike": { "aws:PrincipalArn": exempt } }
        }]
    })
    .to_string()
}

/// How a condition operator compares a pattern with the principal's ARN.
#[derive(Clone, Copy)]
enum Compare {
    /// `Arn*`: component by component, with wildcards.
    Arn,
    /// `StringLike`-style: the whole string, with wildcards.
    Glob,
    /// `StringEquals`-style: literally.
    Literal,
}

/// A custom SCP must spare a principal: every Deny statement needs an
/// `aws:PrincipalArn` exemption that matches its ARN. Per the IAM condition
/// operator reference, `ArnNotLike`, `ArnNotEquals` and `StringNotLike`
/// compare with `*` and `?` wildcards, while `StringNotEquals` compares
/// literally: a pattern there exempts nothing but its own spelling.
pub fn exempts(document: &str, principal_arn: &str) -> Result<(), String> {
    let doc: serde_json::Value =
        serde_json::from_str(document).map_err(|e| format!("the SCP is not JSON: {e}"))?;
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(s) => s.clone(),
        s @ serde_json::Value::Object(_) => vec![s.clone()],
        _ => return Err("the SCP has no Statement".into()),
    };
    for (i, s) in statements.iter().enumerate() {
        if s["Effect"] != "Deny" {
            continue;
        }
        let spared = [
            ("ArnNotLike", Compare::Arn),
            ("ArnNotEquals", Compare::Arn),
            ("StringNotLike", Compare::Glob),
            ("StringNotEquals", Compare::Literal),
        ]
        .iter()
        .filter_map(|(op, glob)| s["Condition"].get(*op).map(|b| (b, *glob)))
        .filter_map(|(block, glob)| block.as_object().map(|b| (b, glob)))
        .flat_map(|(block, glob)| block.iter().map(move |(k, v)| (k, v, glob)))
        .filter(|(key, _, _)| key.eq_ignore_ascii_case("aws:PrincipalArn"))
        .flat_map(|(_, v, glob)| {
            let patterns: Vec<String> = match v {
                serde_json::Value::String(p) => vec![p.clone()],
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            patterns.into_iter().map(move |p| (p, glob))
        })
        .any(|(pattern, compare)| match compare {
            Compare::Arn => crate::targets::arn_like(&pattern, principal_arn),
            Compare::Glob => crate::targets::glob_match(&pattern, principal_arn),
            Compare::Literal => pattern == principal_arn,
        });
        if !spared {
            let sid = s["Sid"]
                .as_str()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default();
            return Err(format!(
                "Deny statement {}{sid} does not exempt {principal_arn} through aws:PrincipalArn: applying it would lock the responders out",
                i + 1
            ));
        }
    }
    Ok(())
}

struct Org {
    management_account: String,
    root_id: String,
    scp_enabled: bool,
}

async fn describe_org(ctx: &Ctx) -> Result<Org, AwsError> {
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
    let scp_enabled = root.policy_types().iter().any(|p| {
        p.r#type().map(|t| t.as_str()) == Some("SERVICE_CONTROL_POLICY")
            && p.status().map(|s| s.as_str()) == Some("ENABLED")
    });
    Ok(Org {
        management_account: desc
            .organization()
            .and_then(|o| o.master_account_id())
            .unwrap_or_default()
            .to_string(),
        root_id: root.id().unwrap_or_default().to_string(),
        scp_enabled,
    })
}

/// The SCP with this name, with its content, if one exists.
/// The id of the SCP of that name, if there is one (rollback of a freeze
/// that failed before AWS returned the id).
pub async fn policy_id_by_name(ctx: &Ctx, name: &str) -> Result<Option<String>, AwsError> {
    Ok(find_policy(ctx, name).await?.map(|(id, _)| id))
}

async fn find_policy(ctx: &Ctx, name: &str) -> Result<Option<(String, String)>, AwsError> {
    let org = ctx.clients.org();
    let policies = ctx
        .call("organizations:ListPolicies", || {
            org.list_policies()
                .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
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

async fn attached(ctx: &Ctx, policy_id: &str, target: &str) -> Result<bool, AwsError> {
    Ok(scps_on(ctx, target).await?.iter().any(|p| p == policy_id))
}

/// The ids of the SCPs attached to a root, an OU or an account.
async fn scps_on(ctx: &Ctx, target: &str) -> Result<Vec<String>, AwsError> {
    let org = ctx.clients.org();
    let pages = ctx
        .call("organizations:ListPoliciesForTarget", || {
            org.list_policies_for_target()
                .target_id(target)
                .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
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
async fn children_of(ctx: &Ctx, parent: &str) -> Result<Vec<String>, AwsError> {
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
struct Placement {
    attach: Vec<String>,
    full: Vec<(String, String)>,
    notes: Vec<String>,
}

async fn place(
    ctx: &Ctx,
    org: &Org,
    policy_id: Option<&str>,
    targets: &[String],
) -> Result<Placement, AwsError> {
    let mut placement = Placement {
        attach: Vec::new(),
        full: Vec::new(),
        notes: Vec::new(),
    };
    for t in targets {
        let on = scps_on(ctx, t).await?;
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
                    "{t} already holds {} SCPs, the most AWS Organizations allows on one target: detach one, or freeze the OUs and accounts under it instead",
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
                    "the root {t} already holds {} SCPs, the most AWS Organizations allows, and has no OU or member account under it to take the freeze instead: detach one",
                    on.len()
                ),
            ));
            continue;
        }
        placement.notes.push(format!(
            "The root {t} already holds {} SCPs, the most AWS allows: the deny-all goes on each of the {} OUs and accounts directly under it instead. An account or OU added under the root later is not frozen.",
            on.len(),
            children.len()
        ));
        // Each child's count is one read; hundreds of accounts are read at once.
        let counted: Vec<(String, Vec<String>)> = futures_util::stream::iter(children)
            .map(|c| async move {
                let on = scps_on(ctx, &c).await?;
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
                        "the root {t} is full, and {c} under it already holds {} SCPs too, the most AWS Organizations allows on one target: detach one there, or move the account into an OU with room",
                        on.len()
                    ),
                ));
            }
        }
    }
    Ok(placement)
}

pub async fn discover(ctx: &Ctx, step: &BoundStep) -> Result<Discovery, AwsError> {
    let org = describe_org(ctx).await?;
    let mut notes = vec![format!(
        "SCPs do not restrict the management account {} nor service-linked roles: contain those with IAM steps.",
        org.management_account
    )];
    if ctx.identity.account == org.management_account {
        notes.push("The executor runs in the management account, which no SCP restricts.".into());
    }
    let (targets, name, custom, only_existing) = match &step.params {
        ActionParams::ApplyScp(p) => (
            p.target.items(),
            p.name.clone(),
            p.document.clone(),
            p.only_existing,
        ),
        ActionParams::DetachScp(p) => (p.target.items(), p.name.clone(), None, false),
        _ => return Err(local("org", "missing parameters".into())),
    };
    let targets: Vec<String> = targets
        .into_iter()
        .map(|t| if t == "root" { org.root_id.clone() } else { t })
        .collect();
    if targets.contains(&org.management_account) {
        notes.push(format!(
            "Target {} is the management account: an SCP there has no effect.",
            org.management_account
        ));
    }
    let scope = Scope {
        account: ctx.identity.account.clone(),
        region: None,
    };
    let existing = find_policy(ctx, &name).await?;
    let mut planned = Vec::new();
    if only_existing && existing.is_none() {
        return Ok(Discovery { planned, notes });
    }
    match &step.params {
        ActionParams::ApplyScp(_) => {
            if ctx.executor_arn.is_empty() {
                return Err(local(
                    "org.apply_scp",
                    "the executor's role ARN could not be read (iam:GetRole), so the SCP cannot exempt it: refusing to lock the responders out".into(),
                ));
            }
            let mut exempt = ctx.exempt.clone();
            exempt.extend(ctx.member_exempt.iter().cloned());
            let document = match custom {
                Some(doc) => {
                    let mut must = ctx.exempt.clone();
                    if ctx.member_exempt.is_some() {
                        must.extend(ctx.fleet.member_role_arns());
                    }
                    for arn in must {
                        exempts(&doc, &arn).map_err(|m| local("org.apply_scp", m))?;
                    }
                    doc
                }
                None => deny_all_document(&exempt),
            };
            if document.len() > SCP_MAX_CHARS {
                return Err(local(
                    "org.apply_scp",
                    format!(
                        "the SCP document is {} characters; AWS allows {SCP_MAX_CHARS}: shorten the protect list",
                        document.len()
                    ),
                ));
            }
            notes.push(format!("Exempted principals: {}", exempt.join(", ")));
            match &ctx.member_exempt {
                Some(member) => notes.push(format!(
                    "{member} is exempted only while this run's member-account steps need it: once they, any hold and the read-back are done, the SCP is rewritten without it (that role trusts the management account, so anyone with admin there could use it)."
                )),
                None => notes.push(
                    "No member role is exempted (no step of this playbook runs in member accounts): a later run across the organization is denied in every account the SCP binds; run the member-account steps in the same playbook as the freeze."
                        .into(),
                ),
            }
            let mut prior_content = None;
            let mut policy_id = None;
            if let Some((id, content)) = &existing {
                if !aws::same_json(content, &document) {
                    prior_content = Some(content.clone());
                }
                policy_id = Some(id.clone());
            }
            let placement = place(ctx, &org, policy_id.as_deref(), &targets).await?;
            notes.extend(placement.notes);
            for (t, why) in placement.full {
                planned.push(Planned {
                    target: Target {
                        scope: scope.clone(),
                        resource: Resource::Scp {
                            name: name.clone(),
                            targets: vec![t],
                        },
                    },
                    disposition: Disposition::Unreadable {
                        error: aws::over_quota("organizations:AttachPolicy", why),
                    },
                });
            }
            let missing = placement.attach;
            let any_full = planned
                .iter()
                .any(|p: &Planned| matches!(&p.disposition, Disposition::Unreadable { .. }));
            let target = Target {
                scope,
                resource: Resource::Scp {
                    name: name.clone(),
                    targets: targets.clone(),
                },
            };
            if any_full && missing.is_empty() && (policy_id.is_none() || prior_content.is_none()) {
                // Nothing to attach anywhere: the quota items say why.
                return Ok(Discovery { planned, notes });
            }
            let disposition = if missing.is_empty() && prior_content.is_none() {
                Disposition::Unchanged {
                    reason: format!(
                        "SCP {} already attached with the same document",
                        policy_id.as_deref().unwrap_or_default()
                    ),
                }
            } else {
                Disposition::Change {
                    op: Op::ApplyScp(ApplyScp {
                        name,
                        document,
                        policy_id,
                        prior_content,
                        enable_on_root: (!org.scp_enabled).then(|| org.root_id.clone()),
                        attach_to: missing,
                    }),
                }
            };
            planned.push(Planned {
                target,
                disposition,
            });
        }
        _ => {
            for t in &targets {
                let target = Target {
                    scope: scope.clone(),
                    resource: Resource::Scp {
                        name: name.clone(),
                        targets: vec![t.clone()],
                    },
                };
                let disposition = match &existing {
                    Some((id, _)) if attached(ctx, id, t).await? => Disposition::Change {
                        op: Op::DetachScp {
                            policy_id: id.clone(),
                            target_id: t.clone(),
                        },
                    },
                    Some(_) => Disposition::Unchanged {
                        reason: "not attached".into(),
                    },
                    None => Disposition::Unchanged {
                        reason: format!("no SCP named {name} exists"),
                    },
                };
                planned.push(Planned {
                    target,
                    disposition,
                });
            }
        }
    }
    Ok(Discovery { planned, notes })
}

pub fn describe(op: &Op) -> String {
    match op {
        Op::ApplyScp(a) => {
            let mut calls = Vec::new();
            if let Some(root) = &a.enable_on_root {
                calls.push(format!(
                    "organizations:EnablePolicyType RootId={root} SERVICE_CONTROL_POLICY"
                ));
            }
            match (&a.policy_id, &a.prior_content) {
                (None, _) => calls.push(format!("organizations:CreatePolicy Name={}", a.name)),
                (Some(id), Some(_)) => {
                    calls.push(format!("organizations:UpdatePolicy PolicyId={id}"))
                }
                (Some(_), None) => {}
            }
            for t in &a.attach_to {
                calls.push(format!("organizations:AttachPolicy TargetId={t}"));
            }
            calls.join("; ")
        }
        Op::DetachScp {
            policy_id,
            target_id,
        } => format!("organizations:DetachPolicy PolicyId={policy_id} TargetId={target_id}"),
        Op::MoveAccount { account, from, to } => format!(
            "organizations:MoveAccount AccountId={account} SourceParentId={from} DestinationParentId={to}"
        ),
        _ => String::new(),
    }
}

pub async fn apply(ctx: &Ctx, op: &Op) -> Result<Option<serde_json::Value>, AwsError> {
    let org = ctx.clients.org();
    match op {
        Op::ApplyScp(a) => {
            if let Some(root) = &a.enable_on_root {
                let r = ctx
                    .call("organizations:EnablePolicyType", || {
                        org.enable_policy_type()
                            .root_id(root)
                            .policy_type(
                                aws_sdk_organizations::types::PolicyType::ServiceControlPolicy,
                            )
                            .send()
                    })
                    .await
                    .map(|_| ());
                aws::goal_if(r, &["PolicyTypeAlreadyEnabledException"])?;
            }
            let mut prior_found = None;
            let (policy_id, created) = match &a.policy_id {
                Some(id) => {
                    if a.prior_content.is_some() {
                        ctx.call("organizations:UpdatePolicy", || {
                            org.update_policy()
                                .policy_id(id)
                                .content(&a.document)
                                .send()
                        })
                        .await
                        .map(|_| ())?;
                    }
                    (id.clone(), false)
                }
                None => {
                    // CreatePolicy takes no idempotency token: a lost
                    // answer is followed by a read by name, and a
                    // DuplicatePolicyException adopts the policy made.
                    let created = aws::create_once(
                            &["DuplicatePolicyException"],
                            || async {
                                let out = ctx
                                    .call_once(None, "organizations:CreatePolicy", || {
                                        org.create_policy()
                                            .name(&a.name)
                                            .description("breakglass: deny all but the responders")
                                            .r#type(
                                                aws_sdk_organizations::types::PolicyType::ServiceControlPolicy,
                                            )
                                            .content(&a.document)
                                            .send()
                                    })
                                    .await?;
                                out.policy()
                                    .and_then(|p| p.policy_summary())
                                    .and_then(|s| s.id())
                                    .map(str::to_string)
                                    .ok_or_else(|| {
                                        local(
                                            "organizations:CreatePolicy",
                                            "no policy id returned".into(),
                                        )
                                    })
                            },
                            || async {
                                Ok(find_policy(ctx, &a.name).await?.map(|(id, _)| id))
                            },
                        )
                        .await?;
                    let ours = created.by_this_run();
                    let fresh = created.is_new();
                    let id = created.into_inner();
                    if !fresh {
                        // Found rather than made now: make sure it says what
                        // this run means. One that was there before the run
                        // (made since discovery read) is not this run's to
                        // delete at rollback, and its content is recorded.
                        let content = find_policy(ctx, &a.name)
                            .await?
                            .map(|(_, c)| c)
                            .unwrap_or_default();
                        if !ours {
                            prior_found = Some(content.clone());
                        }
                        if !aws::same_json(&content, &a.document) {
                            ctx.call("organizations:UpdatePolicy", || {
                                org.update_policy()
                                    .policy_id(&id)
                                    .content(&a.document)
                                    .send()
                            })
                            .await?;
                        }
                    }
                    (id, ours)
                }
            };
            for t in &a.attach_to {
                attach_scp(ctx, &policy_id, t, a.enable_on_root.is_some()).await?;
            }
            let mut effect = serde_json::json!({ "policy_id": policy_id, "created": created });
            if let Some(prior) = prior_found {
                effect["prior_content"] = serde_json::Value::String(prior);
            }
            Ok(Some(effect))
        }
        Op::DetachScp {
            policy_id,
            target_id,
        } => {
            let r = ctx
                .call("organizations:DetachPolicy", || {
                    org.detach_policy()
                        .policy_id(policy_id)
                        .target_id(target_id)
                        .send()
                })
                .await
                .map(|_| ());
            aws::goal_if(r, &["PolicyNotAttachedException"]).map(|()| None)
        }
        Op::MoveAccount { account, from, to } => {
            move_account(ctx, account, from, to).await.map(|()| None)
        }
        _ => Ok(None),
    }
}

/// `AttachPolicy`, already attached counting as done. `EnablePolicyType`
/// "is an asynchronous request that AWS performs in the background"
/// (Organizations API reference), so just after it an attach may still be
/// refused with `PolicyTypeNotEnabledException`: then it is asked again,
/// backing off, for up to a minute.
async fn attach_scp(
    ctx: &Ctx,
    policy_id: &str,
    target: &str,
    just_enabled: bool,
) -> Result<(), AwsError> {
    let org = ctx.clients.org();
    let mut delay = std::time::Duration::from_millis(250);
    let mut waited = std::time::Duration::ZERO;
    loop {
        let r = ctx
            .call("organizations:AttachPolicy", || {
                org.attach_policy()
                    .policy_id(policy_id)
                    .target_id(target)
                    .send()
            })
            .await
            .map(|_| ());
        match r {
            Err(e)
                if just_enabled
                    && e.code.as_deref() == Some("PolicyTypeNotEnabledException")
                    && waited < std::time::Duration::from_secs(60) =>
            {
                tokio::time::sleep(delay).await;
                waited += delay;
                delay = (delay * 2).min(std::time::Duration::from_secs(8));
            }
            other => return aws::goal_if(other, &["DuplicatePolicyAttachmentException"]),
        }
    }
}

/// `MoveAccount`; an account already in `to` counts as moved (a rerun). A
/// retry after a lost answer would name a source parent the account has
/// left, so any failure is checked against where the account is now.
pub async fn move_account(ctx: &Ctx, account: &str, from: &str, to: &str) -> Result<(), AwsError> {
    let org = ctx.clients.org();
    let mut last = None;
    for _ in 0..ctx.retry.transient_attempts {
        let r = ctx
            .call_once(None, "organizations:MoveAccount", || {
                org.move_account()
                    .account_id(account)
                    .source_parent_id(from)
                    .destination_parent_id(to)
                    .send()
            })
            .await
            .map(|_| ());
        let e = match aws::goal_if(r, &["DuplicateAccountException"]) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match parent_of(ctx, account).await {
            Ok(now) if now == to => return Ok(()),
            Ok(now) if now == from && e.kind == aws::ErrorKind::Transient => last = Some(e),
            _ => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| local("organizations:MoveAccount", "not attempted".into())))
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

/// `org.move_accounts`: each selected account not yet in the quarantine OU
/// is moved there, its current parent recorded for rollback.
pub async fn discover_moves(
    ctx: &Ctx,
    step: &BoundStep,
    sink: &Sink,
) -> Result<Vec<String>, AwsError> {
    let ActionParams::MoveAccounts(p) = &step.params else {
        return Err(local("org.move_accounts", "missing parameters".into()));
    };
    let accounts = ctx.fleet.accounts(step.index).unwrap_or_default();
    let management = ctx.fleet.management.clone().unwrap_or_default();
    let management = &management;
    let decide = |account: String| async move {
        let target = Target {
            scope: Scope {
                account: account.clone(),
                region: None,
            },
            resource: Resource::Account {
                id: account.clone(),
            },
        };
        let disposition = if account == ctx.identity.account {
            Disposition::Skip {
                reason: SkipReason::Executor,
            }
        } else if account == *management {
            Disposition::Unchanged {
                reason: "the management account cannot be moved into an OU".into(),
            }
        } else {
            match parent_of(ctx, &account).await {
                Err(error) => Disposition::Unreadable { error },
                Ok(parent) if parent == p.to => Disposition::Unchanged {
                    reason: format!("already in {}", p.to),
                },
                Ok(parent) => Disposition::Change {
                    op: Op::MoveAccount {
                        account,
                        from: parent,
                        to: p.to.clone(),
                    },
                },
            }
        };
        Planned {
            target,
            disposition,
        }
    };
    let mut decided = futures_util::stream::iter(accounts.iter().cloned())
        .map(decide)
        .buffer_unordered(ctx.concurrency.max(1));
    while let Some(planned) = decided.next().await {
        sink.emit(planned);
    }
    Ok(vec![format!(
        "The SCPs attached to {} now bind the moved accounts; those on their old parents no longer do.",
        p.to
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXECUTOR: &str = "arn:aws:iam::111122223333:role/ir/IR-BreakGlass";

    #[test]
    fn the_built_in_document_spares_the_executor() {
        let doc = deny_all_document(&[EXECUTOR.to_string(), "arn:aws:iam::*:role/IR-*".into()]);
        assert_eq!(exempts(&doc, EXECUTOR), Ok(()));
    }

    #[test]
    fn a_custom_deny_without_exemption_is_refused() {
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
        assert!(exempts(doc, EXECUTOR).is_err());
        // A path-less role ARN does not match a role with a path.
        let doc = r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/IR-BreakGlass"}}}}"#;
        assert!(exempts(doc, EXECUTOR).is_err());
        let doc = r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"ArnNotLike":{"aws:PrincipalArn":["arn:aws:iam::*:role/ir/*"]}}}}"#;
        assert_eq!(exempts(doc, EXECUTOR), Ok(()));
        // StringNotEquals compares literally: its `*` is a character.
        let doc = r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringNotEquals":{"aws:PrincipalArn":["arn:aws:iam::*:role/ir/*"]}}}}"#;
        assert!(exempts(doc, EXECUTOR).is_err());
        let doc = format!(
            r#"{{"Statement":{{"Effect":"Deny","Action":"*","Resource":"*","Condition":{{"StringNotEquals":{{"aws:PrincipalArn":"{EXECUTOR}"}}}}}}}}"#
        );
        assert_eq!(exempts(&doc, EXECUTOR), Ok(()));
        // ArnNotLike compares each colon-separated part on its own: a `*`
        // in the account part cannot swallow the resource.
        let doc = r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*"}}}}"#;
        assert!(exempts(doc, EXECUTOR).is_err());
        let doc = r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringNotLike":{"aws:PrincipalArn":"arn:aws:iam::*"}}}}"#;
        assert_eq!(exempts(doc, EXECUTOR), Ok(()));
    }
}
