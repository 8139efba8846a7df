//! Organizations: the org-wide freeze with a deny-all service control policy.
//!
//! Pitfalls handled here: SCPs never restrict the management account or
//! service-linked roles (the plan says so and names the account); the policy
//! type must be enabled on the root; the document limit is 5,120 characters,
//! checked before any call; the executor is exempted by its role ARN with the
//! path (`aws:PrincipalArn` never carries a session name); a rerun reuses the
//! policy by name instead of creating a second one.

pub mod apply_rcp;
pub mod apply_scp;
pub mod detach_scp;
mod document;
pub mod move_account;
mod moves;
mod root_session;
pub mod roots;
pub mod steps;
mod tree;
pub use apply_scp::ApplyScp;
pub use detach_scp::DetachScp;
pub use document::{
    MEMBER_ROLE_DENIED, PRESERVE_ACTIONS, ROOT_SESSION_ACTIONS, builtin_document, builtin_fitting,
    deny_all_document, exempts,
};
pub use move_account::MoveAccount;
pub use moves::{discover_moves, move_account};
use tree::*;
pub use tree::{parent_of, policy_id_by_name};

/// How many more policies of `kind` a root, OU or account can take under
/// AWS Organizations' quota of five per target.
pub async fn free_slots(ctx: &Ctx, kind: PolicyKind, target: &str) -> Result<usize, AwsError> {
    let on = tree::policies_on(ctx, kind, target).await?;
    Ok(SCPS_PER_TARGET.saturating_sub(on.len()))
}

use serde::{Deserialize, Serialize};

use futures_util::{StreamExt, TryStreamExt};

use super::BoundStep;
use super::{
    ActionInfo, ActionParams, Ctx, Discovery, Disposition, Op, Planned, Reversibility, Sink,
};
use crate::aws::{self, AwsError, local};
use crate::targets::{Resource, Scope, SkipReason, Target};

/// AWS's limit on an SCP document, in characters.
pub const SCP_MAX_CHARS: usize = 5120;

/// Which kind of organization policy: a service control policy binds the
/// organization's principals, a resource control policy its resources
/// (whoever asks, outside principals included). Both are created, attached
/// and quota'd the same way; the op records which, SCP when absent (logs
/// written before RCPs read the same).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    #[default]
    Scp,
    Rcp,
}

impl PolicyKind {
    pub fn api(self) -> aws_sdk_organizations::types::PolicyType {
        match self {
            PolicyKind::Scp => aws_sdk_organizations::types::PolicyType::ServiceControlPolicy,
            PolicyKind::Rcp => aws_sdk_organizations::types::PolicyType::ResourceControlPolicy,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            PolicyKind::Scp => "SCP",
            PolicyKind::Rcp => "RCP",
        }
    }

    pub fn is_scp(&self) -> bool {
        *self == PolicyKind::Scp
    }

    /// The target a policy step names, as plans and reports show it.
    fn resource(self, name: &str, targets: Vec<String>) -> Resource {
        match self {
            PolicyKind::Scp => Resource::Scp {
                name: name.to_string(),
                targets,
            },
            PolicyKind::Rcp => Resource::Named {
                kind: "RCP".into(),
                id: format!("{name} on {}", targets.join(", ")),
            },
        }
    }
}

/// The most SCPs a root, an OU or an account can hold ("Maximum number of
/// policies attached to root, OU or account: 5", AWS Organizations User
/// Guide, Quotas for AWS Organizations): a sixth `AttachPolicy` fails with
/// `ConstraintViolationException` (POLICY_NUMBER_LIMIT_EXCEEDED).
pub const SCPS_PER_TARGET: usize = 5;

pub async fn discover(ctx: &Ctx, step: &BoundStep) -> Result<Discovery, AwsError> {
    let org = describe_org(ctx).await?;
    let mut notes = vec![format!(
        "SCPs do not restrict the management account {} nor service-linked roles: contain those with IAM steps.",
        org.management_account
    )];
    if ctx.identity.account == org.management_account {
        notes.push("The executor runs in the management account, which no SCP restricts.".into());
    }
    let (targets, name, custom, only_existing, builtin) = match &step.params {
        ActionParams::OrgApplyScp(p) => (
            p.target.items(),
            p.name.clone(),
            p.document.clone(),
            p.only_existing,
            p.policy.as_str(),
        ),
        ActionParams::OrgDetachScp(p) => (p.target.items(), p.name.clone(), None, false, ""),
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
    let existing = find_policy(ctx, PolicyKind::Scp, &name).await?;
    let mut planned = Vec::new();
    if only_existing && existing.is_none() {
        return Ok(Discovery { planned, notes });
    }
    match &step.params {
        ActionParams::OrgApplyScp(_) => {
            if ctx.executor_arn.is_empty() {
                return Err(local(
                    "org.apply_scp",
                    "the executor's role ARN could not be read (iam:GetRole), so the SCP cannot exempt it: refusing to lock the responders out".into(),
                ));
            }
            let mut exempt = ctx.exempt.clone();
            exempt.extend(ctx.member_exempt.iter().cloned());
            let is_custom = custom.is_some();
            let mut member_limited = false;
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
                None => {
                    let member = ctx.member_exempt.as_deref();
                    let (doc, limited) = builtin_fitting(builtin, &ctx.exempt, member);
                    member_limited = limited;
                    doc
                }
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
                // breakglass rewrites only its own document: a custom one
                // keeps what its author wrote, the member role included.
                Some(member) if is_custom => {
                    if !ctx.fleet.member_role_arns().is_empty() {
                        notes.push(format!(
                            "{member} is exempted by this custom SCP, and stays exempted: breakglass rewrites only its built-in deny-all. Once the member-account steps are done, remove that exemption from the document and apply it again (that role trusts the management account, so anyone with admin there is exempt while it stays)."
                        ));
                    }
                }
                Some(member) if !member_limited => notes.push(format!(
                    "{member} is exempted only while this run's member-account steps need it, WITHOUT the statement that keeps it to containment: with this protect list the SCP would pass AWS's {SCP_MAX_CHARS} characters. Shorten the protect list to keep an intruder with admin in the management account from acting through it. Once the member-account steps, any hold and the read-back are done, the SCP is rewritten without it."
                )),
                Some(member) => notes.push(format!(
                    "{member} is exempted only while this run's member-account steps need it, and even then denied leaving the organization, minting users, keys or roles, launching or terminating instances and destroying evidence: once they, any hold and the read-back are done, the SCP is rewritten without it (that role trusts the management account, so anyone with admin there could use it)."
                )),
                None => notes.push(
                    "No member role is exempted (no step of this playbook runs in member accounts): a later run across the organization is denied in every account the SCP binds; run the member-account steps in the same playbook as the freeze."
                        .into(),
                ),
            }
            planned.extend(
                plan_policy(
                    ctx,
                    &org,
                    PolicyKind::Scp,
                    &name,
                    document,
                    &targets,
                    existing,
                    &mut notes,
                )
                .await?,
            );
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
                        op: Op::DetachScp(DetachScp {
                            policy_id: id.clone(),
                            target_id: t.clone(),
                        }),
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

/// Plans one policy of `kind` named `name` with `document` on `targets`:
/// reused by name (its content replaced if it differs, the old content
/// recorded), attached where it is not, and a quota item wherever a target
/// is full.
#[allow(clippy::too_many_arguments)]
async fn plan_policy(
    ctx: &Ctx,
    org: &Org,
    kind: PolicyKind,
    name: &str,
    document: String,
    targets: &[String],
    existing: Option<(String, String)>,
    notes: &mut Vec<String>,
) -> Result<Vec<Planned>, AwsError> {
    let scope = Scope {
        account: ctx.identity.account.clone(),
        region: None,
    };
    let mut planned = Vec::new();
    let mut prior_content = None;
    let mut policy_id = None;
    if let Some((id, content)) = &existing {
        if !aws::same_json(content, &document) {
            prior_content = Some(content.clone());
        }
        policy_id = Some(id.clone());
    }
    let placement = place(ctx, org, kind, policy_id.as_deref(), targets).await?;
    notes.extend(placement.notes);
    for (t, why) in placement.full {
        planned.push(Planned {
            target: Target {
                scope: scope.clone(),
                resource: kind.resource(name, vec![t]),
            },
            disposition: Disposition::Unreadable {
                error: aws::over_quota("organizations:AttachPolicy", why),
            },
        });
    }
    let missing = placement.attach;
    let any_full = !planned.is_empty();
    if any_full && missing.is_empty() && (policy_id.is_none() || prior_content.is_none()) {
        // Nothing to attach anywhere: the quota items say why.
        return Ok(planned);
    }
    let disposition = if missing.is_empty() && prior_content.is_none() {
        Disposition::Unchanged {
            reason: format!(
                "{} {} already attached with the same document",
                kind.label(),
                policy_id.as_deref().unwrap_or_default()
            ),
        }
    } else {
        Disposition::Change {
            op: Op::ApplyScp(ApplyScp {
                kind,
                name: name.to_string(),
                document,
                policy_id,
                prior_content,
                enable_on_root: (!org.enabled(kind)).then(|| org.root_id.clone()),
                attach_to: missing,
            }),
        }
    };
    planned.push(Planned {
        target: Target {
            scope,
            resource: kind.resource(name, targets.to_vec()),
        },
        disposition,
    });
    Ok(planned)
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

#[cfg(test)]
mod tests {
    use super::*;

    const EXECUTOR: &str = "arn:aws:iam::111122223333:role/ir/IR-BreakGlass";

    #[test]
    fn the_built_in_document_spares_the_executor() {
        let doc = deny_all_document(
            &[EXECUTOR.to_string(), "arn:aws:iam::*:role/IR-*".into()],
            None,
        );
        assert_eq!(exempts(&doc, EXECUTOR), Ok(()));
    }

    /// Whether the built-in document denies `action` to `principal`, a root
    /// session or not, evaluated the way AWS evaluates these two shapes
    /// (conditions ANDed, `Null: true` when the key is absent, `NotAction`
    /// matching every other action).
    fn denies(doc: &str, principal: &str, root_session: bool, action: &str) -> bool {
        let doc: serde_json::Value = serde_json::from_str(doc).unwrap_or_default();
        doc["Statement"].as_array().into_iter().flatten().any(|s| {
            let listed = |v: &serde_json::Value| match v {
                serde_json::Value::String(a) => a == "*" || a == action,
                v => v.as_array().into_iter().flatten().any(|a| a == action),
            };
            let acts = match s.get("NotAction") {
                Some(n) => !listed(n),
                None => listed(&s["Action"]),
            };
            let exempt = s["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str())
                .any(|p| crate::targets::arn_like(p, principal));
            let absent = s["Condition"]["Null"]["aws:AssumedRoot"] == "true";
            acts && !exempt && (absent != root_session)
        })
    }

    #[test]
    fn a_protect_list_that_crowds_out_the_member_role_statement_still_freezes() {
        let member = "arn:aws:iam::*:role/OrganizationAccountAccessRole";
        let exempt: Vec<String> = (0..22)
            .map(|n| format!("arn:aws:iam::111122223333:role/ir/IR-Responder-{n:02}"))
            .collect();
        let (doc, limited) = builtin_fitting("deny-all", &exempt, Some(member));
        assert!(builtin_document("deny-all", &exempt, Some(member)).len() > SCP_MAX_CHARS);
        assert!(!limited);
        assert!(doc.len() <= SCP_MAX_CHARS, "{}", doc.len());
        assert!(!doc.contains("BreakglassMemberRoleContainsOnly"));
        // The role is still exempt, or the fan-out would be shut out.
        exempts(
            &doc,
            "arn:aws:iam::444455556666:role/OrganizationAccountAccessRole",
        )
        .expect("member role exempt");
        let (short, limited) = builtin_fitting("deny-all", &exempt[..2], Some(member));
        assert!(limited && short.contains("BreakglassMemberRoleContainsOnly"));
    }

    #[test]
    fn the_member_role_statement_fits_and_binds_only_the_member_role() {
        let member = "arn:aws:iam::*:role/OrganizationAccountAccessRole";
        let exempt: Vec<String> = (0..5)
            .map(|n| format!("arn:aws:iam::111122223333:role/ir/IR-Responder-{n}"))
            .collect();
        for policy in ["deny-all", "preserve"] {
            let doc = builtin_document(policy, &exempt, Some(member));
            assert!(doc.len() < SCP_MAX_CHARS, "{policy}: {}", doc.len());
            let v: serde_json::Value = serde_json::from_str(&doc).expect("JSON");
            let last = v["Statement"].as_array().and_then(|s| s.last()).cloned();
            let last = last.expect("statements");
            assert_eq!(last["Sid"], "BreakglassMemberRoleContainsOnly", "{policy}");
            assert_eq!(last["Condition"]["ArnLike"]["aws:PrincipalArn"][0], member);
            // The responders are spared it, so the document still passes the
            // check a custom SCP must pass.
            exempts(&doc, &exempt[0]).expect("responders exempt");
        }
        // Without the member role, neither document names it.
        assert!(
            !builtin_document("deny-all", &exempt, None).contains("OrganizationAccountAccessRole")
        );
    }

    #[test]
    fn the_freeze_lets_root_sessions_remove_root_credentials_and_nothing_else() {
        let doc = deny_all_document(&[EXECUTOR.to_string()], None);
        let root = "arn:aws:iam::444455556666:root";
        for a in ROOT_SESSION_ACTIONS {
            assert!(!denies(&doc, root, true, a), "{a}");
        }
        // Password recovery and a bucket policy's deletion stay denied to
        // root sessions, and everything to the root user signing in itself.
        assert!(denies(&doc, root, true, "iam:CreateLoginProfile"));
        assert!(denies(&doc, root, true, "s3:DeleteBucketPolicy"));
        assert!(denies(&doc, root, false, "iam:DeleteAccessKey"));
        assert!(denies(
            &doc,
            "arn:aws:iam::444455556666:user/x",
            false,
            "s3:GetObject"
        ));
        assert!(!denies(&doc, EXECUTOR, false, "iam:DeleteAccessKey"));
        assert!(doc.len() < SCP_MAX_CHARS, "{}", doc.len());
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
