//! The calls that undo recorded changes, each checked against the
//! resource's state now before it is made. Which change gets which undo is
//! `rollback`'s to decide; making the calls is here, with the actions.

use serde::{Deserialize, Serialize};

use super::iam::{PrincipalRef, PrincipalRefKind};
use super::{Ctx, ec2::Interface};
use crate::aws::{AwsError, ErrorKind};

/// One call that undoes one recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    ReactivateAccessKey {
        user: String,
        key_id: String,
    },
    /// Remove the policy the run added (`prior` None) or put back the one it replaced.
    RestoreInlinePolicy {
        principal: PrincipalRef,
        policy_name: String,
        ours: String,
        prior: Option<String>,
    },
    /// Detach the managed policy a deny went into (the principal's inline
    /// policies were full), and delete it when the run made it.
    RemoveManagedDeny {
        principal: PrincipalRef,
        policy_arn: String,
        delete: bool,
        /// The document the run wrote: the policy must still say it (or
        /// another breakglass deny) to be deleted.
        ours: String,
        policy_name: String,
    },
    DetachScp {
        policy_id: String,
        targets: Vec<String>,
        /// Delete the policy afterwards: the run created it.
        delete: bool,
        /// Content to put back: an earlier document of this same run.
        prior_content: Option<String>,
        /// The policy's name as the run made it.
        #[serde(default)]
        name: String,
        /// Every document the run wrote into an SCP: the policy must still
        /// say one of them, or it is not breakglass's to detach or delete.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ours: Vec<String>,
    },
    AttachScp {
        policy_id: String,
        target_id: String,
    },
    /// Move the account back from `from` (the quarantine OU) to `to`.
    MoveAccount {
        account: String,
        from: String,
        to: String,
    },
    RestoreGroups {
        region: String,
        interfaces: Vec<Interface>,
        quarantine_group: String,
        /// Every quarantine group the interfaces went to (one per VPC).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        quarantine_groups: Vec<String>,
        /// Groups the run created: deleted once no interface uses them.
        created_groups: Vec<String>,
    },
    /// Put termination protection, shutdown behaviour and delete-on-
    /// termination back as they were (`prior` is absent in logs from
    /// before they were recorded: then only the flag is turned off).
    DisableTerminationProtection {
        region: String,
        instance_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prior: Option<crate::actions::ec2::TerminationSettings>,
    },
    StartInstance {
        region: String,
        instance_id: String,
    },
    UnlockSnapshot {
        region: String,
        snapshot_id: String,
    },
    AssociateInstanceProfile {
        region: String,
        instance_id: String,
        profile_arn: String,
    },
}

/// Whether an undo can go ahead, given the resource's state now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Ready,
    /// Already in the state the undo would produce.
    Done(String),
    /// Someone changed the resource since the run.
    Conflict(String),
}

fn conflict(what: &str) -> AwsError {
    AwsError {
        operation: "rollback".into(),
        code: Some("BreakglassConflict".into()),
        message: what.to_string(),
        kind: ErrorKind::Other,
    }
}

impl Undo {
    pub fn describe(&self) -> String {
        match self {
            Undo::ReactivateAccessKey { user, key_id } => {
                format!("iam:UpdateAccessKey UserName={user} AccessKeyId={key_id} Status=Active")
            }
            Undo::RestoreInlinePolicy {
                principal,
                policy_name,
                prior,
                ..
            } => {
                let (kind, verb) = match (principal.kind, prior.is_some()) {
                    (PrincipalRefKind::User, false) => ("user", "iam:DeleteUserPolicy"),
                    (PrincipalRefKind::User, true) => {
                        ("user", "iam:PutUserPolicy (prior document)")
                    }
                    (PrincipalRefKind::Role, false) => ("role", "iam:DeleteRolePolicy"),
                    (PrincipalRefKind::Role, true) => {
                        ("role", "iam:PutRolePolicy (prior document)")
                    }
                };
                format!("{verb} {kind} {} PolicyName={policy_name}", principal.name)
            }
            Undo::RemoveManagedDeny {
                principal,
                policy_arn,
                delete,
                ..
            } => {
                let (verb, key) = match principal.kind {
                    PrincipalRefKind::User => ("iam:DetachUserPolicy", "UserName"),
                    PrincipalRefKind::Role => ("iam:DetachRolePolicy", "RoleName"),
                };
                let mut s = format!("{verb} {key}={} PolicyArn={policy_arn}", principal.name);
                if *delete {
                    s.push_str("; iam:DeletePolicy");
                }
                s
            }
            Undo::DetachScp {
                policy_id,
                targets,
                delete,
                prior_content,
                ..
            } => {
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
            Undo::AttachScp {
                policy_id,
                target_id,
            } => format!("organizations:AttachPolicy PolicyId={policy_id} TargetId={target_id}"),
            Undo::MoveAccount { account, from, to } => format!(
                "organizations:MoveAccount AccountId={account} SourceParentId={from} DestinationParentId={to}"
            ),
            Undo::RestoreGroups { interfaces, .. } => format!(
                "ec2:ModifyNetworkInterfaceAttribute ×{} (original groups); ec2:DeleteSecurityGroup for groups the run created",
                interfaces.len()
            ),
            Undo::DisableTerminationProtection { instance_id, .. } => format!(
                "ec2:ModifyInstanceAttribute InstanceId={instance_id} DisableApiTermination=false"
            ),
            Undo::StartInstance { instance_id, .. } => {
                format!("ec2:StartInstances InstanceIds=[{instance_id}]")
            }
            Undo::UnlockSnapshot { snapshot_id, .. } => {
                format!("ec2:UnlockSnapshot SnapshotId={snapshot_id}")
            }
            Undo::AssociateInstanceProfile {
                instance_id,
                profile_arn,
                ..
            } => format!(
                "ec2:AssociateIamInstanceProfile InstanceId={instance_id} Arn={profile_arn}"
            ),
        }
    }

    /// Reads the resource now and says whether the undo still fits it.
    pub async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        match self {
            Undo::ReactivateAccessKey { user, key_id } => {
                let keys = ctx
                    .call("iam:ListAccessKeys", || {
                        ctx.iam().list_access_keys().user_name(user).send()
                    })
                    .await?;
                let status = keys
                    .access_key_metadata()
                    .iter()
                    .find(|k| k.access_key_id() == Some(key_id))
                    .and_then(|k| k.status())
                    .map(|s| s.as_str().to_string());
                Ok(match status.as_deref() {
                    Some("Inactive") => Check::Ready,
                    Some("Active") => Check::Done("already Active".into()),
                    _ => Check::Conflict("the key no longer exists".into()),
                })
            }
            Undo::RestoreInlinePolicy {
                principal,
                policy_name,
                ours,
                prior,
            } => {
                let current = current_policy(ctx, principal, policy_name).await?;
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
            Undo::RemoveManagedDeny {
                principal,
                policy_arn,
                ours,
                policy_name,
                ..
            } => {
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
            Undo::RestoreGroups {
                region,
                interfaces,
                quarantine_group,
                quarantine_groups,
                ..
            } => {
                let ec2 = ctx.clients.ec2(region);
                let ids: Vec<String> = interfaces.iter().map(|i| i.id.clone()).collect();
                let out = ctx
                    .call_in(region, "ec2:DescribeNetworkInterfaces", || {
                        ec2.describe_network_interfaces()
                            .set_network_interface_ids(Some(ids.clone()))
                            .send()
                    })
                    .await?;
                let now: std::collections::BTreeMap<String, Vec<String>> = out
                    .network_interfaces()
                    .iter()
                    .filter_map(|n| {
                        let groups = n
                            .groups()
                            .iter()
                            .filter_map(|g| g.group_id().map(str::to_string))
                            .collect();
                        Some((n.network_interface_id()?.to_string(), groups))
                    })
                    .collect();
                let ours = |g: &String| g == quarantine_group || quarantine_groups.contains(g);
                let isolated = interfaces.iter().all(|i| {
                    now.get(&i.id)
                        .is_some_and(|g| g.len() == 1 && g.iter().all(ours))
                });
                let restored = interfaces.iter().all(|i| {
                    now.get(&i.id)
                        .is_some_and(|g| sorted(&i.groups) == sorted(g))
                });
                Ok(if restored {
                    Check::Done("the original groups are already back".into())
                } else if isolated {
                    Check::Ready
                } else {
                    Check::Conflict("the interfaces' groups were changed since the run".into())
                })
            }
            Undo::DetachScp {
                policy_id,
                name,
                ours,
                ..
            } => {
                let Some(policy_id) = &scp_id(ctx, policy_id, name).await? else {
                    return Ok(Check::Done(format!("no SCP named {name} exists")));
                };
                let org = ctx.clients.org();
                let r = ctx
                    .call("organizations:DescribePolicy", || {
                        org.describe_policy().policy_id(policy_id).send()
                    })
                    .await;
                let policy = match r {
                    Err(e) if e.kind == ErrorKind::NotFound => {
                        return Ok(Check::Done("the SCP no longer exists".into()));
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
                } else if !ours.is_empty()
                    && !ours.iter().any(|d| crate::aws::same_json(d, content))
                {
                    Check::Conflict(
                        "the SCP now says something breakglass did not write: left alone".into(),
                    )
                } else {
                    Check::Ready
                })
            }
            Undo::DisableTerminationProtection {
                region,
                instance_id,
                prior,
            } => {
                let now = crate::actions::ec2::read_termination(ctx, region, instance_id).await?;
                Ok(match (now, prior) {
                    (None, _) => Check::Conflict("the instance is gone".into()),
                    (Some(now), Some(prior)) if now == *prior => {
                        Check::Done("already as before the run".into())
                    }
                    (Some(now), None) if !now.disable_api_termination => {
                        Check::Done("termination protection is already off".into())
                    }
                    _ => Check::Ready,
                })
            }
            Undo::StartInstance {
                region,
                instance_id,
            } => {
                let ec2 = ctx.clients.ec2(region);
                let out = ctx
                    .call_in(region, "ec2:DescribeInstances", || {
                        ec2.describe_instances().instance_ids(instance_id).send()
                    })
                    .await?;
                let state = out
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find_map(|i| {
                        i.state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str().to_string())
                    });
                Ok(match state.as_deref() {
                    Some("stopped") => Check::Ready,
                    Some("running" | "pending") => Check::Done("already running".into()),
                    other => {
                        Check::Conflict(format!("the instance is {}", other.unwrap_or("gone")))
                    }
                })
            }
            Undo::UnlockSnapshot {
                region,
                snapshot_id,
            } => {
                let ec2 = ctx.clients.ec2(region);
                let out = ctx
                    .call_in(region, "ec2:DescribeLockedSnapshots", || {
                        ec2.describe_locked_snapshots()
                            .snapshot_ids(snapshot_id)
                            .send()
                    })
                    .await?;
                let state = out
                    .snapshots()
                    .iter()
                    .find(|s| s.snapshot_id() == Some(snapshot_id))
                    .and_then(|s| s.lock_state())
                    .map(|s| s.as_str().to_string());
                Ok(match state.as_deref() {
                    Some("governance") => Check::Ready,
                    None | Some("expired") => Check::Done("not locked".into()),
                    Some(other) => Check::Conflict(format!("now locked in {other} mode")),
                })
            }
            Undo::AssociateInstanceProfile {
                region,
                instance_id,
                profile_arn,
            } => {
                let ec2 = ctx.clients.ec2(region);
                let out = ctx
                    .call_in(region, "ec2:DescribeIamInstanceProfileAssociations", || {
                        ec2.describe_iam_instance_profile_associations()
                            .filters(
                                aws_sdk_ec2::types::Filter::builder()
                                    .name("instance-id")
                                    .values(instance_id)
                                    .build(),
                            )
                            .send()
                    })
                    .await?;
                let current = out
                    .iam_instance_profile_associations()
                    .iter()
                    .filter(|a| a.state().map(|s| s.as_str()) == Some("associated"))
                    .find_map(|a| a.iam_instance_profile().and_then(|p| p.arn()))
                    .map(str::to_string);
                Ok(match current {
                    None => Check::Ready,
                    Some(arn) if arn == *profile_arn => {
                        Check::Done("the profile is already associated".into())
                    }
                    Some(arn) => {
                        Check::Conflict(format!("another profile ({arn}) is associated now"))
                    }
                })
            }
            Undo::AttachScp { .. } => Ok(Check::Ready),
            Undo::MoveAccount { account, from, to } => {
                let now = crate::actions::org::parent_of(ctx, account).await?;
                Ok(if now == *to {
                    Check::Done(format!("the account is back in {to}"))
                } else if now == *from {
                    Check::Ready
                } else {
                    Check::Conflict(format!("the account was moved to {now} since the run"))
                })
            }
        }
    }

    /// Organizations calls, made from the executor's account.
    pub fn from_management(&self) -> bool {
        matches!(
            self,
            Undo::DetachScp { .. } | Undo::AttachScp { .. } | Undo::MoveAccount { .. }
        )
    }

    pub async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        match self {
            Undo::ReactivateAccessKey { user, key_id } => ctx
                .call("iam:UpdateAccessKey", || {
                    ctx.iam()
                        .update_access_key()
                        .user_name(user)
                        .access_key_id(key_id)
                        .status(aws_sdk_iam::types::StatusType::Active)
                        .send()
                })
                .await
                .map(|_| ()),
            Undo::RemoveManagedDeny {
                principal,
                policy_arn,
                delete,
                ..
            } => {
                use crate::actions::managed_deny;
                managed_deny::detach(ctx, principal, policy_arn).await?;
                if *delete {
                    managed_deny::delete(ctx, policy_arn).await?;
                }
                Ok(())
            }
            Undo::RestoreInlinePolicy {
                principal,
                policy_name,
                prior,
                ..
            } => {
                let iam = ctx.iam();
                let name = &principal.name;
                match (principal.kind, prior) {
                    (PrincipalRefKind::User, None) => ctx
                        .call("iam:DeleteUserPolicy", || {
                            iam.delete_user_policy()
                                .user_name(name)
                                .policy_name(policy_name)
                                .send()
                        })
                        .await
                        .map(|_| ()),
                    (PrincipalRefKind::Role, None) => ctx
                        .call("iam:DeleteRolePolicy", || {
                            iam.delete_role_policy()
                                .role_name(name)
                                .policy_name(policy_name)
                                .send()
                        })
                        .await
                        .map(|_| ()),
                    (PrincipalRefKind::User, Some(doc)) => ctx
                        .call("iam:PutUserPolicy", || {
                            iam.put_user_policy()
                                .user_name(name)
                                .policy_name(policy_name)
                                .policy_document(doc)
                                .send()
                        })
                        .await
                        .map(|_| ()),
                    (PrincipalRefKind::Role, Some(doc)) => ctx
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
            Undo::DetachScp {
                policy_id,
                targets,
                delete,
                prior_content,
                name,
                ..
            } => {
                let Some(policy_id) = &scp_id(ctx, policy_id, name).await? else {
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
            Undo::AttachScp {
                policy_id,
                target_id,
            } => {
                let org = ctx.clients.org();
                let r = ctx
                    .call("organizations:AttachPolicy", || {
                        org.attach_policy()
                            .policy_id(policy_id)
                            .target_id(target_id)
                            .send()
                    })
                    .await
                    .map(|_| ());
                crate::aws::goal_if(r, &["DuplicatePolicyAttachmentException"])
            }
            Undo::MoveAccount { account, from, to } => {
                crate::actions::org::move_account(ctx, account, from, to).await
            }
            Undo::RestoreGroups {
                region,
                interfaces,
                created_groups,
                ..
            } => {
                let ec2 = ctx.clients.ec2(region);
                for n in interfaces {
                    ctx.call_in(region, "ec2:ModifyNetworkInterfaceAttribute", || {
                        ec2.modify_network_interface_attribute()
                            .network_interface_id(&n.id)
                            .set_groups(Some(n.groups.clone()))
                            .send()
                    })
                    .await?;
                }
                for g in created_groups {
                    // Another isolated instance may still use it: then it stays.
                    let r = ctx
                        .call_in(region, "ec2:DeleteSecurityGroup", || {
                            ec2.delete_security_group().group_id(g).send()
                        })
                        .await;
                    if let Err(e) = r {
                        let in_use = matches!(
                            e.code.as_deref(),
                            Some(
                                "DependencyViolation"
                                    | "InvalidGroup.InUse"
                                    | "InvalidGroup.NotFound"
                            )
                        );
                        if !in_use {
                            return Err(e);
                        }
                    }
                }
                Ok(())
            }
            Undo::DisableTerminationProtection {
                region,
                instance_id,
                prior,
            } => {
                crate::actions::ec2::restore_termination(ctx, region, instance_id, prior.as_ref())
                    .await
            }
            Undo::StartInstance {
                region,
                instance_id,
            } => {
                let ec2 = ctx.clients.ec2(region);
                ctx.call_in(region, "ec2:StartInstances", || {
                    ec2.start_instances().instance_ids(instance_id).send()
                })
                .await
                .map(|_| ())
            }
            Undo::UnlockSnapshot {
                region,
                snapshot_id,
            } => {
                let ec2 = ctx.clients.ec2(region);
                ctx.call_in(region, "ec2:UnlockSnapshot", || {
                    ec2.unlock_snapshot().snapshot_id(snapshot_id).send()
                })
                .await
                .map(|_| ())
            }
            Undo::AssociateInstanceProfile {
                region,
                instance_id,
                profile_arn,
            } => {
                let ec2 = ctx.clients.ec2(region);
                ctx.call_in(region, "ec2:AssociateIamInstanceProfile", || {
                    ec2.associate_iam_instance_profile()
                        .instance_id(instance_id)
                        .iam_instance_profile(
                            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                                .arn(profile_arn)
                                .build(),
                        )
                        .send()
                })
                .await
                .map(|_| ())
            }
        }
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

async fn current_policy(
    ctx: &Ctx,
    principal: &PrincipalRef,
    policy_name: &str,
) -> Result<Option<String>, AwsError> {
    let iam = ctx.iam();
    let r = match principal.kind {
        PrincipalRefKind::User => ctx
            .call("iam:GetUserPolicy", || {
                iam.get_user_policy()
                    .user_name(&principal.name)
                    .policy_name(policy_name)
                    .send()
            })
            .await
            .map(|o| o.policy_document().to_string()),
        PrincipalRefKind::Role => ctx
            .call("iam:GetRolePolicy", || {
                iam.get_role_policy()
                    .role_name(&principal.name)
                    .policy_name(policy_name)
                    .send()
            })
            .await
            .map(|o| o.policy_document().to_string()),
    };
    match r {
        Ok(doc) => Ok(Some(crate::actions::iam::url_decode(&doc))),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs a conflict-checked undo: `Ok(None)` when nothing was needed.
pub async fn undo_one(ctx: &Ctx, undo: &Undo, force: bool) -> Result<Option<String>, AwsError> {
    match undo.check(ctx).await? {
        Check::Done(why) => Ok(Some(why)),
        Check::Conflict(why) if !force => Err(conflict(&format!(
            "{why}; left alone (--force undoes it anyway)"
        ))),
        Check::Ready | Check::Conflict(_) => undo.apply(ctx).await.map(|()| None),
    }
}

/// The SCP an undo detaches: the id the log recorded, or, for a freeze that
/// failed before AWS returned one, the policy of the name it made.
async fn scp_id(ctx: &Ctx, recorded: &str, name: &str) -> Result<Option<String>, AwsError> {
    if !recorded.is_empty() {
        return Ok(Some(recorded.to_string()));
    }
    if name.is_empty() {
        return Ok(None);
    }
    crate::actions::org::policy_id_by_name(ctx, name).await
}
