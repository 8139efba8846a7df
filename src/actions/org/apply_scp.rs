//! Freezing with a deny-all SCP: enabling the policy type, creating or
//! updating the policy, attaching it; and detaching (and deleting) it again.

use super::*;
use crate::actions::call::{ArnOf, Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo, scp_id};
use crate::aws::ErrorKind;

/// Everything `org.apply_scp` (or `org.apply_rcp`) needs to do, as one
/// recorded op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyScp {
    /// SCP or RCP; absent in logs written before RCPs, which were all SCPs.
    #[serde(default, skip_serializing_if = "PolicyKind::is_scp")]
    pub kind: PolicyKind,
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

impl Call for ApplyScp {
    fn describe(&self) -> String {
        let a = self;
        let mut calls = Vec::new();
        if let Some(root) = &a.enable_on_root {
            calls.push(format!(
                "organizations:EnablePolicyType RootId={root} {}",
                a.kind.api().as_str()
            ));
        }
        match (&a.policy_id, &a.prior_content) {
            (None, _) => calls.push(format!("organizations:CreatePolicy Name={}", a.name)),
            (Some(id), Some(_)) => calls.push(format!("organizations:UpdatePolicy PolicyId={id}")),
            (Some(_), None) => {}
        }
        for t in &a.attach_to {
            calls.push(format!("organizations:AttachPolicy TargetId={t}"));
        }
        calls.join("; ")
    }

    fn drift(&self) -> String {
        let kind = self.kind.label();
        if self.attach_to.is_empty() {
            format!("{kind} {} has a different document", self.name)
        } else {
            format!(
                "{kind} {} is not attached to {}",
                self.name,
                self.attach_to.join(", ")
            )
        }
    }

    fn management_call(&self) -> bool {
        true
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        let a = self;
        let mut v = Vec::new();
        if a.enable_on_root.is_some() {
            v.push(("organizations:EnablePolicyType", "*".to_string()));
        }
        match (&a.policy_id, &a.prior_content) {
            (None, _) => v.push(("organizations:CreatePolicy", "*".to_string())),
            (Some(_), Some(_)) => v.push(("organizations:UpdatePolicy", "*".to_string())),
            _ => {}
        }
        if !a.attach_to.is_empty() {
            v.push(("organizations:AttachPolicy", "*".to_string()));
        }
        v
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let org = ctx.clients.org();
        let a = self;
        if let Some(root) = &a.enable_on_root {
            let r = ctx
                .call("organizations:EnablePolicyType", || {
                    org.enable_policy_type()
                        .root_id(root)
                        .policy_type(a.kind.api())
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
                                    .description(match a.kind {
                                        PolicyKind::Scp => {
                                            "breakglass: deny all but the responders"
                                        }
                                        PolicyKind::Rcp => {
                                            "breakglass: deny principals outside the organization"
                                        }
                                    })
                                    .r#type(a.kind.api())
                                    .content(&a.document)
                                    .send()
                            })
                            .await?;
                        out.policy()
                            .and_then(|p| p.policy_summary())
                            .and_then(|s| s.id())
                            .map(str::to_string)
                            .ok_or_else(|| {
                                local("organizations:CreatePolicy", "no policy id returned".into())
                            })
                    },
                    || async { Ok(find_policy(ctx, a.kind, &a.name).await?.map(|(id, _)| id)) },
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
                    let content = find_policy(ctx, a.kind, &a.name)
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

    fn inverse(&self, facts: &Inverting) -> Inverse {
        let effect = facts.effect;
        let own_scp_documents = facts.own_scp_documents;
        let undo = Inverse::Undo;
        let a = self;
        let policy_id = effect
            .and_then(|e| e["policy_id"].as_str())
            .map(str::to_string)
            .or_else(|| a.policy_id.clone())
            .unwrap_or_default();
        let created = effect.and_then(|e| e["created"].as_bool()).unwrap_or(false);
        // Content goes back only when it was this run's own (the
        // member-role exemption its closing rewrite removed).
        let prior_content = a.prior_content.clone().filter(|p| {
            own_scp_documents
                .iter()
                .any(|d| crate::aws::same_json(d, p))
        });
        undo(Undo::DetachScp(RemoveScp {
            kind: a.kind,
            policy_id,
            targets: a.attach_to.clone(),
            delete: created,
            prior_content,
            name: a.name.clone(),
            ours: own_scp_documents.iter().map(|d| d.to_string()).collect(),
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoveScp {
    #[serde(default, skip_serializing_if = "PolicyKind::is_scp")]
    pub kind: PolicyKind,
    pub policy_id: String,
    pub targets: Vec<String>,
    /// Delete the policy afterwards: the run created it.
    pub delete: bool,
    /// Content to put back: an earlier document of this same run.
    pub prior_content: Option<String>,
    /// The policy's name as the run made it.
    #[serde(default)]
    pub name: String,
    /// Every document the run wrote into an SCP: the policy must still
    /// say one of them, or it is not breakglass's to detach or delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ours: Vec<String>,
}

impl Revert for RemoveScp {
    fn describe(&self) -> String {
        let Self {
            policy_id,
            targets,
            delete,
            prior_content,
            ..
        } = self;
        let mut s = format!(
            "organizations:DetachPolicy PolicyId={policy_id} from {}",
            targets.join(", ")
        );
        if prior_content.is_some() {
            s.push_str("; organizations:UpdatePolicy (prior content)");
        }
        if *delete {
            s.push_str("; organizations:DeletePolicy");
        }
        s
    }

    fn management_call(&self) -> bool {
        true
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let Self {
            policy_id,
            name,
            ours,
            ..
        } = self;
        let Some(policy_id) = &scp_id(ctx, self.kind, policy_id, name).await? else {
            return Ok(Check::Done(format!(
                "no {} named {name} exists",
                self.kind.label()
            )));
        };
        let org = ctx.clients.org();
        let r = ctx
            .call("organizations:DescribePolicy", || {
                org.describe_policy().policy_id(policy_id).send()
            })
            .await;
        let policy = match r {
            Err(e) if e.kind == ErrorKind::NotFound => {
                return Ok(Check::Done(format!(
                    "the {} no longer exists",
                    self.kind.label()
                )));
            }
            other => other?,
        };
        let p = policy.policy();
        let now_name = p
            .and_then(|p| p.policy_summary())
            .and_then(|s| s.name())
            .unwrap_or_default();
        let content = p.and_then(|p| p.content()).unwrap_or_default();
        Ok(if !name.is_empty() && now_name != name {
            Check::Conflict(format!("the policy is now named {now_name}, not {name}"))
        } else if !ours.is_empty() && !ours.iter().any(|d| crate::aws::same_json(d, content)) {
            Check::Conflict(format!(
                "the {} now says something breakglass did not write: left alone",
                self.kind.label()
            ))
        } else {
            Check::Ready
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let Self {
            policy_id,
            targets,
            delete,
            prior_content,
            name,
            ..
        } = self;
        let Some(policy_id) = &scp_id(ctx, self.kind, policy_id, name).await? else {
            return Ok(());
        };
        let org = ctx.clients.org();
        for t in targets {
            let r = ctx
                .call("organizations:DetachPolicy", || {
                    org.detach_policy().policy_id(policy_id).target_id(t).send()
                })
                .await
                .map(|_| ());
            crate::aws::goal_if(r, &["PolicyNotAttachedException"])?;
        }
        if let Some(content) = prior_content {
            ctx.call("organizations:UpdatePolicy", || {
                org.update_policy()
                    .policy_id(policy_id)
                    .content(content)
                    .send()
            })
            .await?;
        }
        if *delete {
            let r = ctx
                .call("organizations:DeletePolicy", || {
                    org.delete_policy().policy_id(policy_id).send()
                })
                .await;
            if let Err(e) = r {
                // Still attached elsewhere (someone else's use): leave it.
                if e.code.as_deref() != Some("PolicyInUseException") {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
