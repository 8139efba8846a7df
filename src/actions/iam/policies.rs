//! The deny policies (session revocation, quarantine): written inline, or in
//! a managed policy when the inline ones are full, and recognised as ours.

use super::*;

/// Session revocations for roles named by another action (the role behind a
/// detached instance profile): same guards as `iam.revoke_role_sessions`.
pub(crate) async fn plan_role_revocations(
    ctx: &Ctx,
    role_names: &[String],
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
    let revoke = PolicyKind::RevokeSessions;
    plan_policies(ctx, PrincipalKind::Role, roles, revoke, &sink).await?;
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
    let policy_name = match policy {
        PolicyKind::RevokeSessions => REVOKE_POLICY_NAME,
        PolicyKind::DenyAll => QUARANTINE_POLICY_NAME,
    };
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
pub(super) fn already_in_place(ctx: &Ctx, policy: &PolicyKind, document: &str) -> Option<String> {
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
    crate::aws::percent_decode(s, false)
}
