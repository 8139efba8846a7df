//! Putting a deny policy on a user or role (session revocation or
//! quarantine), in a managed policy when the inline ones are full; and
//! taking it off again.

use super::*;
use crate::actions::call::{ArnOf, Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo, current_policy};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutInlinePolicy {
    pub principal: PrincipalRef,
    pub policy_name: String,
    pub policy: PolicyKind,
    /// The exact document sent; filled in by [`Op::prepare`] right before the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// The document of the same name that was there before, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_document: Option<String>,
}

impl Call for PutInlinePolicy {
    fn describe(&self) -> String {
        let Self {
            principal,
            policy_name,
            policy,
            ..
        } = self;
        let (call, key) = match principal.kind {
            PrincipalKind::User => ("iam:PutUserPolicy", "UserName"),
            PrincipalKind::Role => ("iam:PutRolePolicy", "RoleName"),
        };
        let what = match policy {
            PolicyKind::RevokeSessions => "deny * when aws:TokenIssueTime < now".to_string(),
            PolicyKind::DenyAll => "deny *".to_string(),
            PolicyKind::DenySessions { userids } => {
                format!("deny * when aws:userid is {}", userids.join(" or "))
            }
            PolicyKind::InstanceGuard => {
                "deny * to instance credentials used outside their instance's VPC or private IP"
                    .to_string()
            }
        };
        format!(
            "{call} {key}={} PolicyName={policy_name} ({what})",
            principal.name
        )
    }

    fn drift(&self) -> String {
        match self {
            Self {
                policy_name,
                prior_document: None,
                ..
            } => format!("has no {policy_name} policy"),
            Self { policy_name, .. } => {
                format!("its {policy_name} policy is not the one breakglass puts")
            }
        }
    }

    fn prepare(&mut self, now: jiff::Timestamp, _key: Option<&crate::signing::AuditKey>) {
        let Self {
            policy, document, ..
        } = self;
        *document = Some(policy.render(now))
    }

    fn permission_checks(&self, arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        let Self { principal, .. } = self;
        match principal.kind {
            PrincipalKind::User => {
                vec![("iam:PutUserPolicy", arn_of("user", &principal.name, None))]
            }
            PrincipalKind::Role => {
                vec![("iam:PutRolePolicy", arn_of("role", &principal.name, None))]
            }
        }
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self {
            principal,
            policy_name,
            document,
            ..
        } = self;
        let kind = principal.kind;
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
                    PrincipalKind::User => ctx
                        .iam()
                        .put_user_policy()
                        .user_name(&principal.name)
                        .policy_name(policy_name)
                        .policy_document(document)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws::aws_error("iam:PutUserPolicy", e)),
                    PrincipalKind::Role => ctx
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
            // A managed policy holds one document for every run: a list of
            // denied sessions there could not be added to or lifted per run.
            Err(e)
                if crate::actions::managed_deny::is_inline_quota(&e)
                    && matches!(self.policy, PolicyKind::DenySessions { .. }) =>
            {
                Err(refuse(
                    "iam:PutRolePolicy",
                    "a deny-sessions list in a managed policy (the role's inline policies are at IAM's size limit: free room, or use `scope: all_sessions`)",
                ))
            }
            Err(e) if crate::actions::managed_deny::is_inline_quota(&e) => {
                let effect =
                    crate::actions::managed_deny::apply(ctx, principal, policy_name, document)
                        .await?;
                Ok(Some(effect))
            }
            Err(e) => Err(e),
        }
    }

    fn inverse(&self, facts: &Inverting) -> Inverse {
        let effect = facts.effect;
        let undo = Inverse::Undo;
        match self {
            // A breakglass-named policy is deleted, never written back: what was
            // there before the run under that name (an earlier run's, or one
            // an intruder planted) is not something to restore.
            Self {
                principal,
                policy_name,
                document,
                ..
            } if effect.is_some_and(|e| e["managed_policy_arn"].is_string()) => {
                undo(Undo::RemoveManagedDeny(RemoveManagedDeny {
                    principal: principal.clone(),
                    policy_arn: effect
                        .and_then(|e| e["managed_policy_arn"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                    delete: effect.and_then(|e| e["created"].as_bool()).unwrap_or(false),
                    ours: document.clone().unwrap_or_default(),
                    policy_name: policy_name.clone(),
                }))
            }
            Self {
                principal,
                policy_name,
                document,
                policy,
                prior_document,
            } => undo(Undo::RestoreInlinePolicy(RestoreInlinePolicy {
                principal: principal.clone(),
                policy_name: policy_name.clone(),
                ours: document.clone().unwrap_or_default(),
                prior: None,
                remove_sessions: added_sessions(policy, prior_document.as_deref()),
            })),
        }
    }
}

/// The sessions a deny-sessions write added to those denied before it: what
/// its rollback lifts, leaving earlier runs' denials in place.
pub fn added_sessions(policy: &PolicyKind, prior: Option<&str>) -> Vec<String> {
    let PolicyKind::DenySessions { userids } = policy else {
        return Vec::new();
    };
    let before = match prior.and_then(|d| written_by_breakglass(DENY_SESSIONS_POLICY_NAME, d)) {
        Some(Ours::Sessions(ids)) => ids,
        _ => Vec::new(),
    };
    userids
        .iter()
        .filter(|id| !before.contains(id))
        .cloned()
        .collect()
}

/// Remove the policy the run added (`prior` None) or put back the one it
/// replaced; for a deny-sessions policy, lift only the sessions the run
/// added (`remove_sessions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreInlinePolicy {
    pub principal: PrincipalRef,
    pub policy_name: String,
    pub ours: String,
    pub prior: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_sessions: Vec<String>,
}

impl RestoreInlinePolicy {
    /// The sessions denied now, when the policy is a deny-sessions of ours.
    fn denied_now(&self, current: Option<&str>) -> Option<Vec<String>> {
        match current.and_then(|d| written_by_breakglass(&self.policy_name, d)) {
            Some(Ours::Sessions(ids)) => Some(ids),
            _ => None,
        }
    }
}

impl Revert for RestoreInlinePolicy {
    fn describe(&self) -> String {
        let Self {
            principal,
            policy_name,
            prior,
            remove_sessions,
            ..
        } = self;
        if !remove_sessions.is_empty() {
            let (kind, put, delete) = match principal.kind {
                PrincipalKind::User => ("user", "iam:PutUserPolicy", "iam:DeleteUserPolicy"),
                PrincipalKind::Role => ("role", "iam:PutRolePolicy", "iam:DeleteRolePolicy"),
            };
            return format!(
                "{put} {kind} {} PolicyName={policy_name} without session(s) {} ({delete} if none is left)",
                principal.name,
                remove_sessions.join(", ")
            );
        }
        let (kind, verb) = match (principal.kind, prior.is_some()) {
            (PrincipalKind::User, false) => ("user", "iam:DeleteUserPolicy"),
            (PrincipalKind::User, true) => ("user", "iam:PutUserPolicy (prior document)"),
            (PrincipalKind::Role, false) => ("role", "iam:DeleteRolePolicy"),
            (PrincipalKind::Role, true) => ("role", "iam:PutRolePolicy (prior document)"),
        };
        format!("{verb} {kind} {} PolicyName={policy_name}", principal.name)
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let Self {
            principal,
            policy_name,
            ours,
            prior,
            remove_sessions,
        } = self;
        let current = current_policy(ctx, principal, policy_name).await?;
        if !remove_sessions.is_empty()
            && let Some(denied) = self.denied_now(current.as_deref())
        {
            return Ok(if remove_sessions.iter().any(|id| denied.contains(id)) {
                Check::Ready
            } else {
                Check::Done("the run's sessions are no longer denied".into())
            });
        }
        Ok(match current {
            None if prior.is_none() => Check::Done("the policy is already gone".into()),
            Some(doc) if prior.as_deref().is_some_and(|p| crate::aws::same_json(&doc, p)) => {
                Check::Done("the prior document is already in place".into())
            }
            // Ours, or one a hold of this run re-applied (another cutoff).
            Some(doc)
                if crate::aws::same_json(&doc, ours)
                    || crate::actions::iam::written_by_breakglass(policy_name, &doc)
                        .is_some() =>
            {
                Check::Ready
            }
            Some(_) => Check::Conflict(
                "the policy says something breakglass never writes (changed since the run): left alone".into(),
            ),
            None => Check::Conflict("the policy was deleted since the run".into()),
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let Self {
            principal,
            policy_name,
            prior,
            remove_sessions,
            ..
        } = self;
        let iam = ctx.iam();
        let name = &principal.name;
        // Read again at the call: the sessions other runs denied since stay.
        let mut prior = prior.clone();
        if !remove_sessions.is_empty() {
            let current = current_policy(ctx, principal, policy_name).await?;
            // Changed since the check: a policy that is gone stays gone, and
            // one breakglass did not write is never deleted.
            let Some(denied) = self.denied_now(current.as_deref()) else {
                return match current {
                    None => Ok(()),
                    Some(_) => Err(refuse(
                        "iam:PutRolePolicy",
                        "a deny-sessions policy changed since the check",
                    )),
                };
            };
            let rest: Vec<String> = denied
                .into_iter()
                .filter(|id| !remove_sessions.contains(id))
                .collect();
            if !rest.is_empty() {
                let keep = PolicyKind::DenySessions { userids: rest };
                prior = Some(keep.render(jiff::Timestamp::UNIX_EPOCH));
            }
        }
        match (principal.kind, &prior) {
            (PrincipalKind::User, None) => ctx
                .call("iam:DeleteUserPolicy", || {
                    iam.delete_user_policy()
                        .user_name(name)
                        .policy_name(policy_name)
                        .send()
                })
                .await
                .map(|_| ()),
            (PrincipalKind::Role, None) => ctx
                .call("iam:DeleteRolePolicy", || {
                    iam.delete_role_policy()
                        .role_name(name)
                        .policy_name(policy_name)
                        .send()
                })
                .await
                .map(|_| ()),
            (PrincipalKind::User, Some(doc)) => ctx
                .call("iam:PutUserPolicy", || {
                    iam.put_user_policy()
                        .user_name(name)
                        .policy_name(policy_name)
                        .policy_document(doc)
                        .send()
                })
                .await
                .map(|_| ()),
            (PrincipalKind::Role, Some(doc)) => ctx
                .call("iam:PutRolePolicy", || {
                    iam.put_role_policy()
                        .role_name(name)
                        .policy_name(policy_name)
                        .policy_document(doc)
                        .send()
                })
                .await
                .map(|_| ()),
        }
    }
}

/// Detach the managed policy a deny went into (the principal's inline
/// policies were full), and delete it when the run made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoveManagedDeny {
    pub principal: PrincipalRef,
    pub policy_arn: String,
    pub delete: bool,
    /// The document the run wrote: the policy must still say it (or
    /// another breakglass deny) to be deleted.
    pub ours: String,
    pub policy_name: String,
}

impl Revert for RemoveManagedDeny {
    fn describe(&self) -> String {
        let Self {
            principal,
            policy_arn,
            delete,
            ..
        } = self;
        let (verb, key) = match principal.kind {
            PrincipalKind::User => ("iam:DetachUserPolicy", "UserName"),
            PrincipalKind::Role => ("iam:DetachRolePolicy", "RoleName"),
        };
        let mut s = format!("{verb} {key}={} PolicyArn={policy_arn}", principal.name);
        if *delete {
            s.push_str("; iam:DeletePolicy");
        }
        s
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let Self {
            principal,
            policy_arn,
            ours,
            policy_name,
            ..
        } = self;
        use crate::actions::managed_deny;
        let attached = managed_deny::attached(ctx, principal, policy_arn).await?;
        let document = managed_deny::document(ctx, policy_arn).await?;
        Ok(match document {
            None if !attached => Check::Done("the policy is already gone".into()),
            Some(doc)
                if crate::aws::same_json(&doc, ours)
                    || crate::actions::iam::written_by_breakglass(policy_name, &doc)
                        .is_some() =>
            {
                Check::Ready
            }
            Some(_) => Check::Conflict(
                "the managed policy says something breakglass never writes (changed since the run): left alone".into(),
            ),
            None => Check::Conflict("the managed policy was deleted since the run".into()),
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let Self {
            principal,
            policy_arn,
            delete,
            ..
        } = self;
        use crate::actions::managed_deny;
        managed_deny::detach(ctx, principal, policy_arn).await?;
        if *delete {
            managed_deny::delete(ctx, policy_arn).await?;
        }
        Ok(())
    }
}
