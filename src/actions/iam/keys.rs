//! Access keys and console passwords: the calls that cut a user's
//! long-term credentials.

use super::*;

/// Plans every access key of every selected user.
pub(super) async fn plan_user_keys(
    ctx: &Ctx,
    users: Vec<Principal>,
    sink: &Sink,
) -> Result<(), AwsError> {
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
pub(super) async fn plan_named_keys(ctx: &Ctx, ids: &[String]) -> Result<Vec<Planned>, AwsError> {
    let mut out = Vec::new();
    for id in ids {
        let owner = match resolve_key(ctx, id).await? {
            Ok(owner) => owner,
            Err(reason) => {
                out.push(missing_key(ctx, id, reason));
                continue;
            }
        };
        let Some(user) = get_principal(ctx, PrincipalKind::User, &owner).await? else {
            out.push(missing(ctx, PrincipalKind::User, &owner));
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

pub(super) fn plan_key(
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
            op: Op::DeactivateAccessKey(DeactivateAccessKey {
                user: user.to_string(),
                key_id,
                prior_status: status,
                user_arn: owner.arn.clone(),
            }),
        }
    };
    Planned {
        target,
        disposition,
    }
}

pub(super) async fn list_keys(ctx: &Ctx, user: &str) -> Result<Vec<(String, String)>, AwsError> {
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

pub(super) async fn plan_login_profiles(
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
                    op: Op::DeleteLoginProfile(DeleteLoginProfile {
                        user: u.name.clone(),
                    }),
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
