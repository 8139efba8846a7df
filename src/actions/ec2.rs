//! EC2 evidence preservation and isolation, per region.
//!
//! Pitfalls handled here: snapshots are taken per instance with
//! `CreateSnapshots` (crash-consistent across its volumes) and tagged at
//! creation; a new security group allows all egress, so the quarantine group's
//! egress rules are revoked; tracked connections survive a group change, so
//! every ENI goes through an allow-all "flush" group before the empty one;
//! stops are one call per instance, so one protected instance cannot stop the
//! rest, and never follow a failed snapshot of the same instance.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, InstanceSpecification, IpPermission, IpRange, ResourceType, Tag,
    TagSpecification,
};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use super::{
    ActionInfo, ActionKind, ActionParams, Ctx, Discovery, Disposition, Op, Planned, Reversibility,
    Sink, TargetKind,
};
use crate::aws::{self, AwsError, local};
use crate::playbook::{BoundStep, InstanceSelector, LockModeSpec};
use crate::targets::{Resource, Scope, SkipReason, Target};

/// Name of the rule-less security group instances are isolated into.
pub const QUARANTINE_GROUP: &str = "breakglass-quarantine";
/// Name of the allow-all group passed through to drop tracked connections.
pub const FLUSH_GROUP: &str = "breakglass-flush";
/// Tag naming the instance a snapshot was taken from.
pub const SOURCE_TAG: &str = "breakglass:source-instance";

pub const SNAPSHOT_VOLUMES: ActionInfo = ActionInfo {
    id: "ec2.snapshot_volumes",
    summary: "Snapshot every EBS volume of each instance (crash-consistent per instance), tagged at creation.",
    targets: &[TargetKind::Instances],
    params: &[(
        "tags",
        "tags put on each snapshot at creation, such as case: \"{{ case_id }}\"",
    )],
    calls: &["ec2:CreateSnapshots (one per instance, TagSpecifications)"],
    reversibility: Reversibility::Irreversible(
        "snapshots are evidence: breakglass never deletes them",
    ),
    notes: &["Run it before any stop or isolation of the same instances."],
};

pub const ISOLATE_INSTANCES: ActionInfo = ActionInfo {
    id: "ec2.isolate_instances",
    summary: "Move every network interface to a rule-less quarantine security group, via an allow-all group that drops tracked connections.",
    targets: &[TargetKind::Instances],
    params: &[],
    calls: &[
        "ec2:CreateSecurityGroup + RevokeSecurityGroupEgress (once per VPC)",
        "ec2:ModifyNetworkInterfaceAttribute Groups=[flush] then Groups=[quarantine]",
    ],
    reversibility: Reversibility::Reversible(
        "ModifyNetworkInterfaceAttribute with the recorded original groups",
    ),
    notes: &["The original groups of every interface are recorded in the audit log."],
};

pub const ENABLE_TERMINATION_PROTECTION: ActionInfo = ActionInfo {
    id: "ec2.enable_termination_protection",
    summary: "Turn on termination protection (DisableApiTermination).",
    targets: &[TargetKind::Instances],
    params: &[],
    calls: &["ec2:ModifyInstanceAttribute DisableApiTermination=true"],
    reversibility: Reversibility::Reversible("ModifyInstanceAttribute DisableApiTermination=false"),
    notes: &[],
};

pub const STOP_INSTANCES: ActionInfo = ActionInfo {
    id: "ec2.stop_instances",
    summary: "Stop instances, one call each.",
    targets: &[TargetKind::Instances],
    params: &[],
    calls: &["ec2:StopInstances (one instance per call)"],
    reversibility: Reversibility::Irreversible(
        "StartInstances restarts it, but the memory of the running instance is lost for good",
    ),
    notes: &[
        "Stopping destroys memory evidence: snapshot first, and prefer isolation.",
        "An instance whose snapshot failed earlier in the run is not stopped.",
    ],
};

pub const DETACH_INSTANCE_PROFILES: ActionInfo = ActionInfo {
    id: "ec2.detach_instance_profiles",
    summary: "Detach each instance's IAM instance profile and revoke the sessions of the role behind it.",
    targets: &[TargetKind::Instances],
    params: &[],
    calls: &[
        "ec2:DisassociateIamInstanceProfile",
        "iam:PutRolePolicy breakglass-revoke-older-sessions (the profile's role)",
    ],
    reversibility: Reversibility::Reversible(
        "AssociateIamInstanceProfile with the recorded profile",
    ),
    notes: &[
        "Detaching does not end credentials already handed to the instance: the role's sessions are revoked in the same step.",
        "The revocation hits every holder of that role, not only this instance.",
    ],
};

pub const LOCK_SNAPSHOTS: ActionInfo = ActionInfo {
    id: "ec2.lock_snapshots",
    summary: "Lock snapshots against deletion (the Code Spaces lesson: protect the backups).",
    targets: &[TargetKind::Snapshots],
    params: &[
        (
            "mode",
            "governance (default; ec2:UnlockSnapshot can lift it) or compliance (nobody can, until it expires)",
        ),
        (
            "duration_days",
            "lock length in days, 1 to 36500 (default 30)",
        ),
    ],
    calls: &["ec2:LockSnapshot"],
    reversibility: Reversibility::Reversible(
        "governance: UnlockSnapshot; compliance: irreversible until the lock expires",
    ),
    notes: &[
        "Compliance mode cannot be undone by anyone, the root user included: write it explicitly.",
    ],
};

/// A network interface and the security groups it had before isolation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub id: String,
    pub groups: Vec<String>,
}

/// The two groups isolation uses in one VPC, and which of them this run created.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationGroups {
    pub flush: String,
    pub quarantine: String,
    pub created: Vec<String>,
}

#[derive(Debug, Clone)]
struct Instance {
    id: String,
    region: String,
    vpc_id: String,
    state: String,
    volumes: Vec<String>,
    interfaces: Vec<Interface>,
    /// ARN of the attached instance profile, if any.
    profile: Option<String>,
}

/// Decides every target of an EC2 step; per-instance decisions go to `sink`
/// as they are made, so calls start while other instances are still read.
pub async fn discover(ctx: &Ctx, step: &BoundStep, sink: &Sink) -> Result<Vec<String>, AwsError> {
    if step.action == ActionKind::Ec2LockSnapshots {
        let found = discover_locks(ctx, step).await?;
        sink.emit_all(found.planned);
        return Ok(found.notes);
    }
    let Some(sel) = &step.targets.instances else {
        return Ok(Vec::new());
    };
    // Regions are independent: discover them all at once.
    let per_region: Vec<Vec<Instance>> = stream::iter(ctx.regions.clone())
        .map(|region| async move { select_instances(ctx, &region, sel).await })
        .buffer_unordered(ctx.concurrency.max(1))
        .try_collect()
        .await?;
    let instances: Vec<Instance> = per_region.into_iter().flatten().collect();
    let mut notes = Vec::new();
    if step.action == ActionKind::Ec2StopInstances {
        notes.push("Stopping loses each instance's memory: snapshots keep disks only.".into());
    }
    if step.action == ActionKind::Ec2DetachInstanceProfiles {
        let found = plan_detach(ctx, instances, notes).await?;
        sink.emit_all(found.planned);
        return Ok(found.notes);
    }
    // Each VPC's quarantine group is looked up once, not once per instance.
    let mut quarantine = HashMap::new();
    if step.action == ActionKind::Ec2IsolateInstances {
        let vpcs: BTreeSet<(String, String)> = instances
            .iter()
            .map(|i| (i.region.clone(), i.vpc_id.clone()))
            .collect();
        quarantine = stream::iter(vpcs)
            .map(|(region, vpc)| async move {
                let group = find_group(ctx, &region, &vpc, QUARANTINE_GROUP).await?;
                Ok::<_, AwsError>(((region, vpc), group))
            })
            .buffer_unordered(ctx.concurrency.max(1))
            .try_collect()
            .await?;
    }
    let quarantine = &quarantine;
    stream::iter(instances)
        .map(|i| async move { plan_instance(ctx, step, i, quarantine).await })
        .buffer_unordered(ctx.concurrency.max(1))
        .try_for_each(|p| {
            sink.emit(p);
            std::future::ready(Ok(()))
        })
        .await?;
    Ok(notes)
}

async fn discover_locks(ctx: &Ctx, step: &BoundStep) -> Result<Discovery, AwsError> {
    let (Some(sel), ActionParams::Lock(params)) = (&step.targets.snapshots, &step.params) else {
        return Ok(Discovery::default());
    };
    let mut notes = Vec::new();
    if params.mode == LockModeSpec::Compliance {
        notes.push(format!(
            "COMPLIANCE mode: nobody, the root user included, can unlock or delete these snapshots for {} days.",
            params.duration_days
        ));
    }
    if sel.created_by_run {
        notes.push("Also locks the snapshots earlier steps of this run create (none exist yet in a plan or dry run).".into());
    }
    let per_region: Vec<Vec<Planned>> = stream::iter(ctx.regions.clone())
        .map(|region| async move {
            let ids = select_snapshots(ctx, &region, &sel.value).await?;
            plan_locks(ctx, &region, ids, params).await
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .try_collect()
        .await?;
    Ok(Discovery {
        planned: per_region.into_iter().flatten().collect(),
        notes,
    })
}

/// Snapshot ids in `region` matching any criterion of the selector.
async fn select_snapshots(
    ctx: &Ctx,
    region: &str,
    sel: &crate::playbook::SnapshotSelector,
) -> Result<BTreeSet<String>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let mut ids = BTreeSet::new();
    if sel.created_by_run
        && let Ok(created) = ctx.run.created_snapshots.lock()
    {
        ids.extend(
            created
                .iter()
                .filter(|(a, r, _)| *a == ctx.identity.account && r == region)
                .map(|(_, _, id)| id.clone()),
        );
    }
    let mut queries: Vec<Vec<Filter>> = Vec::new();
    if sel.all {
        queries.push(Vec::new());
    }
    if !sel.ids.is_empty() {
        queries.push(vec![
            Filter::builder()
                .name("snapshot-id")
                .set_values(Some(sel.ids.clone()))
                .build(),
        ]);
    }
    if !sel.tags.is_empty() {
        queries.push(
            sel.tags
                .iter()
                .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
                .collect(),
        );
    }
    if !sel.volume_ids.is_empty() {
        queries.push(vec![
            Filter::builder()
                .name("volume-id")
                .set_values(Some(sel.volume_ids.clone()))
                .build(),
        ]);
    }
    if !sel.instance_ids.is_empty() {
        queries.push(vec![
            Filter::builder()
                .name(format!("tag:{SOURCE_TAG}"))
                .set_values(Some(sel.instance_ids.clone()))
                .build(),
        ]);
    }
    for filters in queries {
        let snaps = ctx
            .call_in(region, "ec2:DescribeSnapshots", || {
                ec2.describe_snapshots()
                    .owner_ids("self")
                    .set_filters(Some(filters.clone()))
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
            })
            .await?;
        ids.extend(
            snaps
                .iter()
                .filter_map(|s| s.snapshot_id().map(str::to_string)),
        );
    }
    Ok(ids)
}

async fn plan_locks(
    ctx: &Ctx,
    region: &str,
    ids: BTreeSet<String>,
    params: &crate::playbook::model::LockParams,
) -> Result<Vec<Planned>, AwsError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ec2 = ctx.clients.ec2(region);
    let ids: Vec<String> = ids.into_iter().collect();
    let mut locked = BTreeMap::new();
    for chunk in ids.chunks(100) {
        let out = ctx
            .call_in(region, "ec2:DescribeLockedSnapshots", || {
                ec2.describe_locked_snapshots()
                    .set_snapshot_ids(Some(chunk.to_vec()))
                    .send()
            })
            .await?;
        for s in out.snapshots() {
            if let (Some(id), Some(state)) = (s.snapshot_id(), s.lock_state()) {
                locked.insert(id.to_string(), state.as_str().to_string());
            }
        }
    }
    Ok(ids
        .into_iter()
        .map(|id| {
            let state = locked.get(&id).map(String::as_str);
            // A compliance lock is stronger than any governance lock we would add.
            let enough = matches!(
                (state, params.mode),
                (Some("compliance" | "compliance-cooloff"), _)
                    | (Some("governance"), LockModeSpec::Governance)
            );
            let target = Target {
                scope: Scope {
                    account: ctx.identity.account.clone(),
                    region: Some(region.to_string()),
                },
                resource: Resource::Snapshot { id: id.clone() },
            };
            let disposition = if enough {
                Disposition::Unchanged {
                    reason: format!("already locked ({})", state.unwrap_or_default()),
                }
            } else {
                Disposition::Change {
                    op: Op::LockSnapshot {
                        region: region.to_string(),
                        snapshot_id: id,
                        mode: params.mode,
                        duration_days: params.duration_days,
                    },
                }
            };
            Planned {
                target,
                disposition,
            }
        })
        .collect())
}

fn lock_mode(mode: LockModeSpec) -> aws_sdk_ec2::types::LockMode {
    match mode {
        LockModeSpec::Governance => aws_sdk_ec2::types::LockMode::Governance,
        LockModeSpec::Compliance => aws_sdk_ec2::types::LockMode::Compliance,
    }
}

/// One disassociation per instance with a profile, plus one revocation per
/// role behind those profiles (each role once, however many instances use it).
async fn plan_detach(
    ctx: &Ctx,
    instances: Vec<Instance>,
    mut notes: Vec<String>,
) -> Result<Discovery, AwsError> {
    // One listing per region and one read per profile, not one per instance.
    let regions: BTreeSet<String> = instances
        .iter()
        .filter(|i| i.profile.is_some())
        .map(|i| i.region.clone())
        .collect();
    let associations: Vec<BTreeMap<String, String>> = stream::iter(regions)
        .map(|region| async move { active_associations(ctx, &region).await })
        .buffer_unordered(ctx.concurrency.max(1))
        .try_collect()
        .await?;
    let associations: BTreeMap<String, String> = associations.into_iter().flatten().collect();
    let mut planned = Vec::new();
    let mut profiles = BTreeSet::new();
    for i in instances {
        let target = Target {
            scope: Scope {
                account: ctx.identity.account.clone(),
                region: Some(i.region.clone()),
            },
            resource: Resource::Instance { id: i.id.clone() },
        };
        let unchanged = |reason: &str| Planned {
            target: target.clone(),
            disposition: Disposition::Unchanged {
                reason: reason.into(),
            },
        };
        let Some(profile_arn) = i.profile.clone() else {
            planned.push(unchanged("no instance profile attached"));
            continue;
        };
        let Some(association_id) = associations.get(&i.id) else {
            planned.push(unchanged("no active profile association"));
            continue;
        };
        profiles.insert(
            profile_arn
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        );
        planned.push(Planned {
            target,
            disposition: Disposition::Change {
                op: Op::DisassociateInstanceProfile {
                    region: i.region.clone(),
                    instance_id: i.id.clone(),
                    association_id: association_id.clone(),
                    profile_arn,
                },
            },
        });
    }
    let mut roles = BTreeSet::new();
    for profile_name in profiles {
        let profile = ctx
            .call("iam:GetInstanceProfile", || {
                ctx.iam()
                    .get_instance_profile()
                    .instance_profile_name(&profile_name)
                    .send()
            })
            .await;
        match profile {
            Ok(p) => {
                if let Some(p) = p.instance_profile() {
                    roles.extend(p.roles().iter().map(|r| r.role_name().to_string()));
                }
            }
            Err(e) => notes.push(format!(
                "cannot read instance profile {profile_name} ({e}): revoke its role's sessions by hand"
            )),
        }
    }
    let roles: Vec<String> = roles.into_iter().collect();
    planned.extend(super::iam::plan_role_revocations(ctx, &roles).await?);
    Ok(Discovery { planned, notes })
}

/// Instance id → id of its active instance-profile association, in `region`.
async fn active_associations(
    ctx: &Ctx,
    region: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let all = ctx
        .call_in(region, "ec2:DescribeIamInstanceProfileAssociations", || {
            ec2.describe_iam_instance_profile_associations()
                .into_paginator()
                .items()
                .send()
                .try_collect()
        })
        .await?;
    Ok(all
        .iter()
        .filter(|a| a.state().map(|s| s.as_str()) == Some("associated"))
        .filter_map(|a| {
            Some((
                a.instance_id()?.to_string(),
                a.association_id()?.to_string(),
            ))
        })
        .collect())
}

async fn select_instances(
    ctx: &Ctx,
    region: &str,
    sel: &InstanceSelector,
) -> Result<Vec<Instance>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let mut filters = vec![
        Filter::builder()
            .name("instance-state-name")
            .set_values(Some(
                ["pending", "running", "stopping", "stopped"]
                    .map(String::from)
                    .to_vec(),
            ))
            .build(),
    ];
    for (k, v) in &sel.tags {
        filters.push(Filter::builder().name(format!("tag:{k}")).values(v).build());
    }
    if !sel.vpc_ids.is_empty() {
        filters.push(
            Filter::builder()
                .name("vpc-id")
                .set_values(Some(sel.vpc_ids.clone()))
                .build(),
        );
    }
    if !sel.ids.is_empty() {
        filters.push(
            Filter::builder()
                .name("instance-id")
                .set_values(Some(sel.ids.clone()))
                .build(),
        );
    }
    let reservations = ctx
        .call_in(region, "ec2:DescribeInstances", || {
            ec2.describe_instances()
                .set_filters(Some(filters.clone()))
                .into_paginator()
                .items()
                .send()
                .try_collect()
        })
        .await?;
    let mut out = Vec::new();
    for r in reservations {
        for i in r.instances() {
            let Some(id) = i.instance_id() else { continue };
            if sel.exclude.iter().any(|x| x == id) {
                continue;
            }
            out.push(Instance {
                id: id.to_string(),
                region: region.to_string(),
                vpc_id: i.vpc_id().unwrap_or_default().to_string(),
                state: i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default(),
                volumes: i
                    .block_device_mappings()
                    .iter()
                    .filter_map(|b| b.ebs().and_then(|e| e.volume_id()))
                    .map(str::to_string)
                    .collect(),
                interfaces: i
                    .network_interfaces()
                    .iter()
                    .filter_map(|n| {
                        Some(Interface {
                            id: n.network_interface_id()?.to_string(),
                            groups: n
                                .groups()
                                .iter()
                                .filter_map(|g| g.group_id())
                                .map(str::to_string)
                                .collect(),
                        })
                    })
                    .collect(),
                profile: i
                    .iam_instance_profile()
                    .and_then(|p| p.arn())
                    .map(str::to_string),
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Quarantine group id per (region, VPC), where one exists.
type QuarantineGroups = HashMap<(String, String), Option<String>>;

async fn plan_instance(
    ctx: &Ctx,
    step: &BoundStep,
    i: Instance,
    quarantine: &QuarantineGroups,
) -> Result<Planned, AwsError> {
    let target = Target {
        scope: Scope {
            account: ctx.identity.account.clone(),
            region: Some(i.region.clone()),
        },
        resource: Resource::Instance { id: i.id.clone() },
    };
    let unchanged = |reason: String| Disposition::Unchanged { reason };
    let disposition = match step.action {
        ActionKind::Ec2SnapshotVolumes => {
            let tags = match &step.params {
                ActionParams::Snapshot(p) => p.tags.clone(),
                _ => BTreeMap::new(),
            };
            if i.volumes.is_empty() {
                unchanged("no EBS volumes".into())
            } else {
                let covered = existing_snapshots(ctx, &i, &tags).await?;
                if i.volumes.iter().all(|v| covered.contains_key(v)) {
                    let states: BTreeSet<&str> = covered.values().map(String::as_str).collect();
                    let states: Vec<&str> = states.into_iter().collect();
                    unchanged(format!(
                        "already snapshotted with these tags ({})",
                        states.join(", ")
                    ))
                } else {
                    Disposition::Change {
                        op: Op::CreateSnapshots {
                            region: i.region.clone(),
                            instance_id: i.id.clone(),
                            volume_ids: i.volumes.clone(),
                            tags,
                        },
                    }
                }
            }
        }
        ActionKind::Ec2IsolateInstances => {
            let group = quarantine.get(&(i.region.clone(), i.vpc_id.clone()));
            let isolated = group.and_then(Option::as_ref).is_some_and(|q| {
                !i.interfaces.is_empty() && i.interfaces.iter().all(|n| n.groups == vec![q.clone()])
            });
            if isolated {
                unchanged("every interface is in the quarantine group".into())
            } else if i.interfaces.is_empty() {
                unchanged("no network interfaces".into())
            } else {
                Disposition::Change {
                    op: Op::IsolateInstance {
                        region: i.region.clone(),
                        instance_id: i.id.clone(),
                        vpc_id: i.vpc_id.clone(),
                        interfaces: i.interfaces.clone(),
                    },
                }
            }
        }
        ActionKind::Ec2EnableTerminationProtection => {
            let ec2 = ctx.clients.ec2(&i.region);
            let attr = ctx
                .call_in(&i.region, "ec2:DescribeInstanceAttribute", || {
                    ec2.describe_instance_attribute()
                        .instance_id(&i.id)
                        .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
                        .send()
                })
                .await?;
            if attr.disable_api_termination().and_then(|v| v.value()) == Some(true) {
                unchanged("termination protection already on".into())
            } else {
                Disposition::Change {
                    op: Op::EnableTerminationProtection {
                        region: i.region.clone(),
                        instance_id: i.id.clone(),
                    },
                }
            }
        }
        ActionKind::Ec2StopInstances => {
            let failed = ctx
                .run
                .failed_snapshots
                .lock()
                .map(|f| f.contains(&i.id) || f.contains(crate::executor::ALL_INSTANCES))
                .unwrap_or(true);
            if failed {
                Disposition::Skip {
                    reason: SkipReason::SnapshotFailed,
                }
            } else if i.state == "stopped" || i.state == "stopping" {
                unchanged(format!("already {}", i.state))
            } else {
                Disposition::Change {
                    op: Op::StopInstance {
                        region: i.region.clone(),
                        instance_id: i.id.clone(),
                        prior_state: i.state.clone(),
                    },
                }
            }
        }
        _ => return Err(local("ec2", "not an EC2 action".into())),
    };
    Ok(Planned {
        target,
        disposition,
    })
}

/// Volumes of `i` that already have a snapshot from it carrying every tag,
/// with that snapshot's state (`pending`, `completed`): what verify reports.
async fn existing_snapshots(
    ctx: &Ctx,
    i: &Instance,
    tags: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, AwsError> {
    let ec2 = ctx.clients.ec2(&i.region);
    let mut filters = vec![
        Filter::builder()
            .name(format!("tag:{SOURCE_TAG}"))
            .values(&i.id)
            .build(),
    ];
    for (k, v) in tags {
        filters.push(Filter::builder().name(format!("tag:{k}")).values(v).build());
    }
    let snaps = ctx
        .call_in(&i.region, "ec2:DescribeSnapshots", || {
            ec2.describe_snapshots()
                .owner_ids("self")
                .set_filters(Some(filters.clone()))
                .into_paginator()
                .items()
                .send()
                .try_collect()
        })
        .await?;
    Ok(snaps
        .iter()
        .filter_map(|s| {
            let state = s
                .state()
                .map(|x| x.as_str().to_string())
                .unwrap_or_default();
            let volume = s.volume_id()?.to_string();
            (state != "error").then_some((volume, state))
        })
        .collect())
}

async fn find_group(
    ctx: &Ctx,
    region: &str,
    vpc: &str,
    name: &str,
) -> Result<Option<String>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let out = ctx
        .call_in(region, "ec2:DescribeSecurityGroups", || {
            ec2.describe_security_groups()
                .filters(Filter::builder().name("vpc-id").values(vpc).build())
                .filters(Filter::builder().name("group-name").values(name).build())
                .send()
        })
        .await?;
    Ok(out
        .security_groups()
        .first()
        .and_then(|g| g.group_id())
        .map(str::to_string))
}

fn all_traffic() -> IpPermission {
    IpPermission::builder()
        .ip_protocol("-1")
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build()
}

/// The flush and quarantine groups of a VPC, found or created once per run.
async fn isolation_groups(ctx: &Ctx, region: &str, vpc: &str) -> Result<IsolationGroups, AwsError> {
    let mut cache = ctx.run.isolation_groups.lock().await;
    let key = (
        ctx.identity.account.clone(),
        region.to_string(),
        vpc.to_string(),
    );
    if let Some(g) = cache.get(&key) {
        return Ok(g.clone());
    }
    let ec2 = ctx.clients.ec2(region);
    let mut created = Vec::new();
    let group = |name: &'static str, description: &'static str| {
        let ec2 = ec2.clone();
        async move {
            if let Some(id) = find_group(ctx, region, vpc, name).await? {
                return Ok::<_, AwsError>((id, false));
            }
            let out = ctx
                .call_in(region, "ec2:CreateSecurityGroup", || {
                    ec2.create_security_group()
                        .group_name(name)
                        .description(description)
                        .vpc_id(vpc)
                        .tag_specifications(
                            TagSpecification::builder()
                                .resource_type(ResourceType::SecurityGroup)
                                .tags(Tag::builder().key("breakglass").value(name).build())
                                .build(),
                        )
                        .send()
                })
                .await?;
            let id = out
                .group_id()
                .ok_or_else(|| local("ec2:CreateSecurityGroup", "no group id returned".into()))?
                .to_string();
            Ok((id, true))
        }
    };
    let (flush, flush_new) = group(
        FLUSH_GROUP,
        "breakglass: allow-all, passed through to drop tracked connections",
    )
    .await?;
    if flush_new {
        created.push(flush.clone());
        let r = ctx
            .call_in(region, "ec2:AuthorizeSecurityGroupIngress", || {
                ec2.authorize_security_group_ingress()
                    .group_id(&flush)
                    .ip_permissions(all_traffic())
                    .send()
            })
            .await
            .map(|_| ());
        aws::goal_if(r, &["InvalidPermission.Duplicate"])?;
    }
    let (quarantine, quarantine_new) =
        group(QUARANTINE_GROUP, "breakglass: no traffic in or out").await?;
    if quarantine_new {
        created.push(quarantine.clone());
    }
    // A group made by anyone may carry egress rules: revoke whatever it has.
    let described = ctx
        .call_in(region, "ec2:DescribeSecurityGroups", || {
            ec2.describe_security_groups().group_ids(&quarantine).send()
        })
        .await?;
    let egress: Vec<IpPermission> = described
        .security_groups()
        .first()
        .map(|g| g.ip_permissions_egress().to_vec())
        .unwrap_or_default();
    let ingress: Vec<IpPermission> = described
        .security_groups()
        .first()
        .map(|g| g.ip_permissions().to_vec())
        .unwrap_or_default();
    if !egress.is_empty() {
        ctx.call_in(region, "ec2:RevokeSecurityGroupEgress", || {
            ec2.revoke_security_group_egress()
                .group_id(&quarantine)
                .set_ip_permissions(Some(egress.clone()))
                .send()
        })
        .await
        .map(|_| ())?;
    }
    if !ingress.is_empty() {
        ctx.call_in(region, "ec2:RevokeSecurityGroupIngress", || {
            ec2.revoke_security_group_ingress()
                .group_id(&quarantine)
                .set_ip_permissions(Some(ingress.clone()))
                .send()
        })
        .await
        .map(|_| ())?;
    }
    let groups = IsolationGroups {
        flush,
        quarantine,
        created,
    };
    cache.insert(key, groups.clone());
    Ok(groups)
}

pub fn describe(op: &Op) -> String {
    match op {
        Op::CreateSnapshots {
            instance_id,
            volume_ids,
            ..
        } => format!(
            "ec2:CreateSnapshots InstanceId={instance_id} ({} volume{})",
            volume_ids.len(),
            if volume_ids.len() == 1 { "" } else { "s" }
        ),
        Op::IsolateInstance {
            instance_id,
            interfaces,
            ..
        } => format!(
            "ec2:ModifyNetworkInterfaceAttribute ×{} ({instance_id}: flush group, then {QUARANTINE_GROUP})",
            interfaces.len() * 2
        ),
        Op::EnableTerminationProtection { instance_id, .. } => {
            format!(
                "ec2:ModifyInstanceAttribute InstanceId={instance_id} DisableApiTermination=true"
            )
        }
        Op::StopInstance { instance_id, .. } => {
            format!("ec2:StopInstances InstanceIds=[{instance_id}] (memory is lost)")
        }
        Op::LockSnapshot {
            snapshot_id,
            mode,
            duration_days,
            ..
        } => format!(
            "ec2:LockSnapshot SnapshotId={snapshot_id} LockMode={} LockDuration={duration_days}",
            lock_mode(*mode).as_str()
        ),
        Op::DisassociateInstanceProfile {
            association_id,
            profile_arn,
            ..
        } => format!(
            "ec2:DisassociateIamInstanceProfile AssociationId={association_id} ({profile_arn})"
        ),
        _ => String::new(),
    }
}

fn snapshot_tags(instance_id: &str, tags: &BTreeMap<String, String>) -> TagSpecification {
    let mut spec = TagSpecification::builder()
        .resource_type(ResourceType::Snapshot)
        .tags(Tag::builder().key(SOURCE_TAG).value(instance_id).build());
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(k).value(v).build());
    }
    spec.build()
}

// One builder per mutating call, shared by the call itself and its DryRun check.

fn create_snapshots_call(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
    tags: &BTreeMap<String, String>,
) -> aws_sdk_ec2::operation::create_snapshots::builders::CreateSnapshotsFluentBuilder {
    ec2.create_snapshots()
        .instance_specification(
            InstanceSpecification::builder()
                .instance_id(instance_id)
                .build(),
        )
        .description(format!("breakglass evidence of {instance_id}"))
        .tag_specifications(snapshot_tags(instance_id, tags))
}

fn lock_call(
    ec2: &aws_sdk_ec2::Client,
    snapshot_id: &str,
    mode: LockModeSpec,
    duration_days: u32,
) -> aws_sdk_ec2::operation::lock_snapshot::builders::LockSnapshotFluentBuilder {
    ec2.lock_snapshot()
        .snapshot_id(snapshot_id)
        .lock_mode(lock_mode(mode))
        .lock_duration(i32::try_from(duration_days).unwrap_or(i32::MAX))
}

fn protect_call(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> aws_sdk_ec2::operation::modify_instance_attribute::builders::ModifyInstanceAttributeFluentBuilder
{
    ec2.modify_instance_attribute()
        .instance_id(instance_id)
        .disable_api_termination(AttributeBooleanValue::builder().value(true).build())
}

fn stop_call(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> aws_sdk_ec2::operation::stop_instances::builders::StopInstancesFluentBuilder {
    ec2.stop_instances().instance_ids(instance_id)
}

pub async fn apply(ctx: &Ctx, op: &Op) -> Result<Option<serde_json::Value>, AwsError> {
    match op {
        Op::CreateSnapshots {
            region,
            instance_id,
            tags,
            ..
        } => {
            let ec2 = ctx.clients.ec2(region);
            let r = ctx
                .call_in(region, "ec2:CreateSnapshots", || {
                    create_snapshots_call(&ec2, instance_id, tags).send()
                })
                .await;
            match r {
                Ok(out) => {
                    let ids: Vec<&str> = out
                        .snapshots()
                        .iter()
                        .filter_map(|s| s.snapshot_id())
                        .collect();
                    if let Ok(mut created) = ctx.run.created_snapshots.lock() {
                        let account = &ctx.identity.account;
                        created.extend(
                            ids.iter()
                                .map(|id| (account.clone(), region.clone(), id.to_string())),
                        );
                    }
                    Ok(Some(serde_json::json!({ "snapshot_ids": ids })))
                }
                Err(e) => {
                    if let Ok(mut failed) = ctx.run.failed_snapshots.lock() {
                        failed.insert(instance_id.clone());
                    }
                    Err(e)
                }
            }
        }
        Op::IsolateInstance {
            region,
            vpc_id,
            interfaces,
            ..
        } => {
            let groups = isolation_groups(ctx, region, vpc_id).await?;
            let ec2 = ctx.clients.ec2(region);
            for n in interfaces {
                for group in [&groups.flush, &groups.quarantine] {
                    ctx.call_in(region, "ec2:ModifyNetworkInterfaceAttribute", || {
                        ec2.modify_network_interface_attribute()
                            .network_interface_id(&n.id)
                            .groups(group)
                            .send()
                    })
                    .await
                    .map(|_| ())?;
                }
            }
            Ok(Some(serde_json::json!({
                "quarantine_group": groups.quarantine,
                "flush_group": groups.flush,
                "created_groups": groups.created,
            })))
        }
        Op::EnableTerminationProtection {
            region,
            instance_id,
        } => {
            let ec2 = ctx.clients.ec2(region);
            ctx.call_in(region, "ec2:ModifyInstanceAttribute", || {
                protect_call(&ec2, instance_id).send()
            })
            .await
            .map(|_| None)
        }
        Op::LockSnapshot {
            region,
            snapshot_id,
            mode,
            duration_days,
        } => {
            let ec2 = ctx.clients.ec2(region);
            let out = ctx
                .call_in(region, "ec2:LockSnapshot", || {
                    lock_call(&ec2, snapshot_id, *mode, *duration_days).send()
                })
                .await?;
            Ok(Some(serde_json::json!({
                "lock_state": out.lock_state().map(|s| s.as_str()),
                "lock_expires_on": out.lock_expires_on().map(|t| t.to_string()),
            })))
        }
        Op::DisassociateInstanceProfile {
            region,
            association_id,
            ..
        } => {
            let ec2 = ctx.clients.ec2(region);
            ctx.call_in(region, "ec2:DisassociateIamInstanceProfile", || {
                ec2.disassociate_iam_instance_profile()
                    .association_id(association_id)
                    .send()
            })
            .await
            .map(|_| None)
        }
        Op::StopInstance {
            region,
            instance_id,
            ..
        } => {
            let ec2 = ctx.clients.ec2(region);
            ctx.call_in(region, "ec2:StopInstances", || {
                stop_call(&ec2, instance_id).send()
            })
            .await
            .map(|_| None)
        }
        _ => Ok(None),
    }
}

/// EC2's own permission check: `DryRun=true` answers `DryRunOperation` when
/// the call would be allowed and `UnauthorizedOperation` when not.
pub async fn dry_run(ctx: &Ctx, op: &Op) -> Option<Result<(), AwsError>> {
    let r = match op {
        Op::CreateSnapshots {
            region,
            instance_id,
            tags,
            ..
        } => create_snapshots_call(&ctx.clients.ec2(region), instance_id, tags)
            .dry_run(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws::aws_error("ec2:CreateSnapshots", e)),
        Op::IsolateInstance {
            region, interfaces, ..
        } => {
            let n = interfaces.first()?;
            ctx.clients
                .ec2(region)
                .modify_network_interface_attribute()
                .dry_run(true)
                .network_interface_id(&n.id)
                .set_groups(Some(n.groups.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws::aws_error("ec2:ModifyNetworkInterfaceAttribute", e))
        }
        Op::LockSnapshot {
            region,
            snapshot_id,
            mode,
            duration_days,
        } => lock_call(&ctx.clients.ec2(region), snapshot_id, *mode, *duration_days)
            .dry_run(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws::aws_error("ec2:LockSnapshot", e)),
        Op::EnableTerminationProtection {
            region,
            instance_id,
        } => protect_call(&ctx.clients.ec2(region), instance_id)
            .dry_run(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws::aws_error("ec2:ModifyInstanceAttribute", e)),
        Op::StopInstance {
            region,
            instance_id,
            ..
        } => stop_call(&ctx.clients.ec2(region), instance_id)
            .dry_run(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws::aws_error("ec2:StopInstances", e)),
        _ => return None,
    };
    Some(match r {
        Err(e) if e.code.as_deref() == Some("DryRunOperation") => Ok(()),
        Ok(()) => Ok(()),
        Err(e) => Err(e),
    })
}
