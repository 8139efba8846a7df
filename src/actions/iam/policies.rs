//! The deny policies (session revocation, quarantine): written inline, or in
//! a managed policy when the inline ones are full, and recognised as ours.

use super::*;

/// Session revocations for roles named by another action (the role behind a
/// detached instance profile): same guards as `iam.revoke_role_sessions`.
pub(crate) async fn plan_role_revocations(
    ctx: &Ctx,
    role_names: &[String],
) -> Result<Vec<Planned>, AwsError> {
    plan_role_policies(ctx, role_names, PolicyKind::RevokeSessions).await
}

/// `policy` on roles named by another action, with the same guards.
pub(crate) async fn plan_role_policies(
    ctx: &Ctx,
    role_names: &[String],
    policy: PolicyKind,
) -> Result<Vec<Planned>, AwsError> {
    let mut roles = Vec::new();
    let mut out = Vec::new();
    for name in role_names {
        match get_principal(ctx, PrincipalKind::Role, name).await? {
            Some(p) => roles.push(p),
            None => out.push(missing(ctx, PrincipalKind::Role, name)),
        }
    }
    let (sink, mut decided) = Sink::channel();
    plan_policies(ctx, PrincipalKind::Role, roles, policy, &sink).await?;
    drop(sink);
    while let Some(p) = decided.recv().await {
        out.push(p);
    }
    Ok(out)
}

pub(super) async fn plan_policies(
    ctx: &Ctx,
    kind: PrincipalKind,
    principals: Vec<Principal>,
    policy: PolicyKind,
    sink: &Sink,
) -> Result<(), AwsError> {
    let policy_name = policy.policy_name();
    let pkind = kind;
    // Fallback managed policies in use (few): a listing that fails only
    // means a contained principal may be planned again, which is harmless.
    let fallbacks = &crate::actions::managed_deny::attached_fallbacks(ctx)
        .await
        .unwrap_or_default();
    stream::iter(principals)
        .map(|p| {
            let policy = policy.clone();
            async move {
                let target = match kind {
                    PrincipalKind::User => user_target(ctx, &p),
                    PrincipalKind::Role => role_target(ctx, &p),
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
                // Sessions denied before stay denied: the new list adds to
                // the old one, never replaces it.
                let policy = match (policy, prior.as_deref()) {
                    (PolicyKind::DenySessions { userids }, Some(doc)) => {
                        let mut all: BTreeSet<String> = userids.into_iter().collect();
                        if let Some(Ours::Sessions(denied)) =
                            written_by_breakglass(policy_name, doc)
                        {
                            all.extend(denied);
                        }
                        PolicyKind::DenySessions {
                            userids: all.into_iter().collect(),
                        }
                    }
                    (policy, _) => policy,
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
                        op: Op::PutInlinePolicy(PutInlinePolicy {
                            principal,
                            policy_name: policy_name.to_string(),
                            policy,
                            document: None,
                            prior_document: prior,
                        }),
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
pub(super) async fn managed_in_place(
    ctx: &Ctx,
    fallbacks: &BTreeMap<String, String>,
    principal: &PrincipalRef,
    policy_name: &str,
    policy: &PolicyKind,
) -> Result<Option<String>, AwsError> {
    let Some(arn) =
        crate::actions::managed_deny::attached_to(ctx, fallbacks, principal, policy_name).await?
    else {
        return Ok(None);
    };
    Ok(crate::actions::managed_deny::document(ctx, &arn)
        .await?
        .and_then(|d| already_in_place(ctx, policy, &d))
        .map(|why| {
            format!("{why} (in managed policy {arn}: its inline policies are at IAM's size limit)")
        }))
}

/// The current document of an inline policy, URL-decoded, or `None` if absent.
pub(super) async fn inline_policy(
    ctx: &Ctx,
    kind: PrincipalKind,
    principal: &str,
    policy_name: &str,
) -> Result<Option<String>, AwsError> {
    let r = ctx
        .call_raw(None, "iam:GetUserPolicy", || async {
            match kind {
                PrincipalKind::User => ctx
                    .iam()
                    .get_user_policy()
                    .user_name(principal)
                    .policy_name(policy_name)
                    .send()
                    .await
                    .map(|o| o.policy_document().to_string())
                    .map_err(|e| aws::aws_error("iam:GetUserPolicy", e)),
                PrincipalKind::Role => ctx
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

/// A policy document breakglass wrote, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ours {
    /// The quarantine's deny-all.
    Quarantine,
    /// The revocation's deny-all before this cutoff.
    Revocation(jiff::Timestamp),
    /// The deny to these sessions (`aws:userid` values).
    Sessions(Vec<String>),
    /// The guard on an instance role's credentials.
    InstanceGuard,
}

/// What a breakglass-named policy document is, when it is exactly one that
/// breakglass writes under that name. Anything else under those names
/// (another statement, another condition, an `Allow`, a `NotAction`) is
/// not breakglass's, whoever wrote it: never proof of containment, never
/// restored, never trusted.
pub fn written_by_breakglass(policy_name: &str, document: &str) -> Option<Ours> {
    let doc: serde_json::Value = serde_json::from_str(document).ok()?;
    // The guard is two statements, always the same: exactly them, or not ours.
    if policy_name == INSTANCE_GUARD_POLICY_NAME {
        let ours: serde_json::Value =
            serde_json::from_str(&PolicyKind::InstanceGuard.render(jiff::Timestamp::UNIX_EPOCH))
                .ok()?;
        return (doc == ours).then_some(Ours::InstanceGuard);
    }
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
    // The one condition operator with its one key, and nothing else.
    let only = |c: &serde_json::Value, operator: &str, key: &str| {
        let c = c.as_object()?;
        let op = c.get(operator)?.as_object()?;
        (c.len() == 1 && op.len() == 1).then(|| op.get(key).cloned())?
    };
    match (policy_name, statement.get("Condition")) {
        (QUARANTINE_POLICY_NAME, None) => Some(Ours::Quarantine),
        (REVOKE_POLICY_NAME, Some(c)) => {
            let cutoff = only(c, "DateLessThan", "aws:TokenIssueTime")?;
            Some(Ours::Revocation(cutoff.as_str()?.parse().ok()?))
        }
        (DENY_SESSIONS_POLICY_NAME, Some(c)) => {
            let ids = match only(c, "StringEquals", "aws:userid")? {
                serde_json::Value::String(one) => vec![one],
                serde_json::Value::Array(many) => many
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()?,
                _ => return None,
            };
            // An empty list, or a wildcard, is not a session breakglass named.
            if ids.is_empty() || ids.iter().any(|id| !is_session_userid(id)) {
                return None;
            }
            Some(Ours::Sessions(ids))
        }
        _ => None,
    }
}

/// `AROA…:name`: a role id, then a role session name.
pub fn is_session_userid(id: &str) -> bool {
    let Some((role, session)) = id.split_once(':') else {
        return false;
    };
    role.starts_with("AROA")
        && role.len() > 4
        && role.chars().all(|c| c.is_ascii_alphanumeric())
        && crate::spec::is_role_session_name(session)
}

/// Whether an existing breakglass-named policy already does the job, and
/// why: it must be exactly what breakglass writes (see
/// [`written_by_breakglass`]), and a revocation must cut off no earlier than
/// this run began and no later than now (a planted far-future cutoff is not
/// one of ours).
pub(super) fn already_in_place(ctx: &Ctx, policy: &PolicyKind, document: &str) -> Option<String> {
    match written_by_breakglass(policy.policy_name(), document)? {
        Ours::Quarantine => Some("deny-all quarantine policy already attached".to_string()),
        Ours::InstanceGuard => Some("instance credential guard already attached".to_string()),
        Ours::Sessions(denied) => {
            let PolicyKind::DenySessions { userids } = policy else {
                return None;
            };
            userids
                .iter()
                .all(|id| denied.contains(id))
                .then(|| format!("session(s) {} already denied", userids.join(", ")))
        }
        Ours::Revocation(cutoff) => {
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
    crate::aws::percent_decode(s, false)
}
