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
use crate::criteria::{InstanceCriteria, SnapshotCriteria};
use crate::spec::{BoundStep, LockModeSpec};
use crate::targets::{Resource, Scope, SkipReason, Target};

/// Name of the rule-less security group instances are isolated into.
pub const QUARANTINE_GROUP: &str = "breakglass-quarantine";
/// Name of the allow-all group passed through to drop tracked connections.
pub const FLUSH_GROUP: &str = "breakglass-flush";
/// Tag naming the instance a snapshot was taken from.
pub const SOURCE_TAG: &str = "breakglass:source-instance";
/// Tag carrying the token of the `CreateSnapshots` call that made a
/// snapshot: the call takes no client token, so this is how a retry after
/// a lost answer finds what the first attempt made.
pub const TOKEN_TAG: &str = "breakglass:token";

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
    notes: &[
        "The original groups of every interface are recorded in the audit log; an interface whose second move fails goes back to them.",
        "Each interface uses its own VPC's groups; the flush group allows all traffic, IPv4 and IPv6, both ways, so that tracked flows become untracked and drop on the move to the empty group.",
        "Always tracked, whatever the groups (EC2 User Guide, Security group connection tracking): ICMP, and flows through Network and Gateway Load Balancers, NAT gateways, transit gateways, PrivateLink endpoints, Global Accelerator and egress-only internet gateways. Only a network ACL (stateless, subnet-wide) cuts those at once.",
    ],
};

pub const ENABLE_TERMINATION_PROTECTION: ActionInfo = ActionInfo {
    id: "ec2.enable_termination_protection",
    summary: "Make termination impossible: termination protection, a shutdown from inside that stops rather than terminates, volumes kept if it ever goes.",
    targets: &[TargetKind::Instances],
    params: &[],
    calls: &[
        "ec2:ModifyInstanceAttribute DisableApiTermination=true",
        "ec2:ModifyInstanceAttribute InstanceInitiatedShutdownBehavior=stop",
        "ec2:ModifyInstanceAttribute BlockDeviceMapping DeleteOnTermination=false (each attached volume set to true)",
    ],
    reversibility: Reversibility::Reversible(
        "ModifyInstanceAttribute back to the recorded flag, shutdown behaviour and DeleteOnTermination",
    ),
    notes: &[
        "DisableApiTermination alone does not stop a termination started by a shutdown inside the instance when its shutdown behaviour is terminate (EC2 User Guide, termination protection), and volumes with DeleteOnTermination go with it.",
    ],
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
    /// The interface's own VPC: an instance may hold interfaces of several
    /// VPCs, and a security group belongs to one. Empty in logs written
    /// before it was recorded (the instance's VPC applies).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vpc_id: String,
    pub groups: Vec<String>,
}

/// The two groups isolation uses in one VPC, and which of them this run created.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationGroups {
    pub flush: String,
    pub quarantine: String,
    pub created: Vec<String>,
}

/// What one VPC holds of breakglass's isolation groups now.
#[derive(Debug, Clone, Default)]
struct VpcGroups {
    /// The quarantine group and how many rules it carries (any is drift).
    quarantine: Option<(String, usize)>,
    /// The allow-all flush group: an interface left on it is open.
    flush: Option<String>,
}

/// An attached EBS volume.
#[derive(Debug, Clone)]
struct Volume {
    id: String,
    device: String,
    delete_on_termination: bool,
}

#[derive(Debug, Clone)]
struct Instance {
    id: String,
    region: String,
    vpc_id: String,
    state: String,
    volumes: Vec<Volume>,
    interfaces: Vec<Interface>,
    /// ARN of the attached instance profile, if any.
    profile: Option<String>,
}

impl Interface {
    fn vpc<'a>(&'a self, instance_vpc: &'a str) -> &'a str {
        if self.vpc_id.is_empty() {
            instance_vpc
        } else {
            &self.vpc_id
        }
    }
}

/// The termination-related settings of an instance: all three must hold
/// for termination protection to protect (the AWS guide on termination
/// protection: `DisableApiTermination` does not stop a shutdown started on
/// the instance when `InstanceInitiatedShutdownBehavior` is `terminate`, and
/// volumes with `DeleteOnTermination` go with a terminated instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminationSettings {
    pub disable_api_termination: bool,
    pub shutdown_behavior: String,
    /// Attached volumes deleted with the instance, as (device, volume id).
    pub delete_on_termination: Vec<(String, String)>,
}

impl TerminationSettings {
    pub fn holds(&self) -> bool {
        self.disable_api_termination
            && self.shutdown_behavior != "terminate"
            && self.delete_on_termination.is_empty()
    }

    /// What is wrong, for plans and read-backs.
    pub fn drift(&self) -> String {
        let mut v = Vec::new();
        if !self.disable_api_termination {
            v.push("termination protection is off".to_string());
        }
        if self.shutdown_behavior == "terminate" {
            v.push("a shutdown from inside terminates it".to_string());
        }
        if !self.delete_on_termination.is_empty() {
            let vols: Vec<&str> = self
                .delete_on_termination
                .iter()
                .map(|(_, v)| v.as_str())
                .collect();
            v.push(format!("{} would be deleted with it", vols.join(", ")));
        }
        v.join("; ")
    }
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
    let criteria = sel.criteria();
    let criteria = &criteria;
    // Regions are independent: discover them all at once, and a region
    // that cannot be read fails alone (its item says so), never the others.
    let per_region: Vec<(String, Result<Vec<Found>, AwsError>)> = stream::iter(ctx.regions.clone())
        .map(|region| async move {
            let found = select_instances(ctx, &region, criteria).await;
            (region, found)
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .collect()
        .await;
    let mut instances = Vec::new();
    let mut seen = BTreeSet::new();
    let mut unread = Vec::new();
    let mut found_all = Vec::new();
    for (region, found) in per_region {
        match found {
            Ok(f) => found_all.extend(f),
            Err(error) => {
                sink.emit(unreadable_region(ctx, &region, error));
                unread.push(region);
            }
        }
    }
    for found in found_all {
        match found {
            Found::Live(i) => {
                seen.insert(i.id.clone());
                instances.push(i);
            }
            Found::Gone { id, region, state } => {
                seen.insert(id.clone());
                sink.emit(missing_instance(
                    ctx,
                    &id,
                    Some(&region),
                    format!("instance {id} is {state}"),
                ));
            }
        }
    }
    // A named id not seen is missing only if every region was read.
    if let (InstanceCriteria::Named { ids, .. }, true) = (criteria, unread.is_empty()) {
        for id in ids.iter().filter(|id| !seen.contains(*id)) {
            sink.emit(missing_instance(
                ctx,
                id,
                None,
                format!(
                    "no instance {id} in account {} in {}",
                    ctx.identity.account,
                    ctx.regions.join(", ")
                ),
            ));
        }
    }
    let mut notes = Vec::new();
    if step.action == ActionKind::Ec2StopInstances {
        notes.push("Stopping loses each instance's memory: snapshots keep disks only.".into());
    }
    if step.action == ActionKind::Ec2DetachInstanceProfiles {
        let found = plan_detach(ctx, instances, notes).await?;
        sink.emit_all(found.planned);
        return Ok(found.notes);
    }
    // Each VPC's isolation groups are read once, not once per instance.
    let mut groups = HashMap::new();
    let mut unreadable_vpcs: HashMap<(String, String), AwsError> = HashMap::new();
    if step.action == ActionKind::Ec2IsolateInstances {
        let vpcs: BTreeSet<(String, String)> = instances
            .iter()
            .flat_map(|i| {
                i.interfaces
                    .iter()
                    .map(|n| (i.region.clone(), n.vpc(&i.vpc_id).to_string()))
            })
            .collect();
        // A VPC whose groups cannot be read fails its own instances only.
        let read: Vec<((String, String), Result<VpcGroups, AwsError>)> = stream::iter(vpcs)
            .map(|(region, vpc)| async move {
                let found = vpc_groups(ctx, &region, &vpc).await;
                ((region, vpc), found)
            })
            .buffer_unordered(ctx.concurrency.max(1))
            .collect()
            .await;
        for (key, found) in read {
            match found {
                Ok(g) => {
                    groups.insert(key, g);
                }
                Err(e) => {
                    unreadable_vpcs.insert(key, e);
                }
            }
        }
    }
    let (groups, unreadable_vpcs) = (&groups, &unreadable_vpcs);
    // One instance whose state cannot be read fails alone; the others, in
    // every region, go on.
    stream::iter(instances)
        .map(|i| async move {
            let target = Target {
                scope: Scope {
                    account: ctx.identity.account.clone(),
                    region: Some(i.region.clone()),
                },
                resource: Resource::Instance { id: i.id.clone() },
            };
            let blocked = i.interfaces.iter().find_map(|n| {
                unreadable_vpcs.get(&(i.region.clone(), n.vpc(&i.vpc_id).to_string()))
            });
            let found = match blocked {
                Some(e) => Err(e.clone()),
                None => plan_instance(ctx, step, i, groups).await,
            };
            found.unwrap_or_else(|error| Planned {
                target,
                disposition: Disposition::Unreadable { error },
            })
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .for_each(|p| {
            sink.emit(p);
            std::future::ready(())
        })
        .await;
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
    let criteria = sel.criteria();
    let criteria = &criteria;
    /// A region's planned locks and the named snapshots found there.
    type RegionLocks = Result<(Vec<Planned>, BTreeSet<String>), AwsError>;
    let per_region: Vec<(String, RegionLocks)> = stream::iter(ctx.regions.clone())
        .map(|region| async move {
            let found = async {
                let (ids, named) = select_snapshots(ctx, &region, criteria).await?;
                Ok::<_, AwsError>((plan_locks(ctx, &region, ids, params).await?, named))
            }
            .await;
            (region, found)
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .collect()
        .await;
    let mut planned = Vec::new();
    let mut found = BTreeSet::new();
    let mut all_read = true;
    for (region, r) in per_region {
        match r {
            Ok((p, named)) => {
                planned.extend(p);
                found.extend(named);
            }
            Err(error) => {
                all_read = false;
                planned.push(unreadable_region(ctx, &region, error));
            }
        }
    }
    if let (SnapshotCriteria::Matching { ids, .. }, true) = (criteria, all_read) {
        for id in ids.iter().filter(|id| !found.contains(*id)) {
            planned.push(Planned {
                target: Target {
                    scope: Scope {
                        account: ctx.identity.account.clone(),
                        region: None,
                    },
                    resource: Resource::Snapshot { id: id.clone() },
                },
                disposition: Disposition::Missing {
                    reason: format!(
                        "no snapshot {id} owned by account {} in {}",
                        ctx.identity.account,
                        ctx.regions.join(", ")
                    ),
                },
            });
        }
    }
    Ok(Discovery { planned, notes })
}

/// Snapshot ids in `region` matching any criterion, and which of the
/// named ids were among them. Tag values are compared exactly after the
/// listing: EC2 filters treat `*` and `?` as wildcards.
async fn select_snapshots(
    ctx: &Ctx,
    region: &str,
    criteria: &SnapshotCriteria,
) -> Result<(BTreeSet<String>, BTreeSet<String>), AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let mut ids = BTreeSet::new();
    let mut named = BTreeSet::new();
    let mut queries: Vec<(Vec<Filter>, BTreeMap<String, String>)> = Vec::new();
    match criteria {
        SnapshotCriteria::Every => queries.push((Vec::new(), BTreeMap::new())),
        SnapshotCriteria::Matching {
            ids: wanted,
            tags,
            volume_ids,
            instance_ids,
            created_by_run,
        } => {
            if *created_by_run && let Ok(created) = ctx.run.created_snapshots.lock() {
                ids.extend(
                    created
                        .iter()
                        .filter(|(a, r, _)| *a == ctx.identity.account && r == region)
                        .map(|(_, _, id)| id.clone()),
                );
            }
            let any = |name: &str, values: &[String]| {
                vec![
                    Filter::builder()
                        .name(name)
                        .set_values(Some(values.to_vec()))
                        .build(),
                ]
            };
            if !wanted.is_empty() {
                queries.push((any("snapshot-id", wanted), BTreeMap::new()));
            }
            if !tags.is_empty() {
                let filters = tags
                    .iter()
                    .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
                    .collect();
                queries.push((filters, tags.clone()));
            }
            if !volume_ids.is_empty() {
                queries.push((any("volume-id", volume_ids), BTreeMap::new()));
            }
            if !instance_ids.is_empty() {
                queries.push((
                    any(&format!("tag:{SOURCE_TAG}"), instance_ids),
                    BTreeMap::new(),
                ));
            }
        }
    }
    for (filters, exact) in queries {
        let pages = ctx
            .pages(
                Some(region),
                "ec2:DescribeSnapshots",
                |token| {
                    ec2.describe_snapshots()
                        .owner_ids("self")
                        .set_filters(Some(filters.clone()))
                        .set_next_token(token)
                        .send()
                },
                |p| p.next_token().map(str::to_string),
            )
            .await?;
        for snap in pages.iter().flat_map(|p| p.snapshots()) {
            let Some(id) = snap.snapshot_id() else {
                continue;
            };
            let tags: BTreeMap<&str, &str> = snap
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value()?)))
                .collect();
            if exact
                .iter()
                .all(|(k, v)| tags.get(k.as_str()) == Some(&v.as_str()))
            {
                ids.insert(id.to_string());
            }
        }
    }
    if let SnapshotCriteria::Matching { ids: wanted, .. } = criteria {
        named.extend(wanted.iter().filter(|w| ids.contains(*w)).cloned());
    }
    Ok((ids, named))
}

async fn plan_locks(
    ctx: &Ctx,
    region: &str,
    ids: BTreeSet<String>,
    params: &crate::spec::LockParams,
) -> Result<Vec<Planned>, AwsError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ec2 = ctx.clients.ec2(region);
    let ids: Vec<String> = ids.into_iter().collect();
    let mut locked: BTreeMap<String, (String, Option<std::time::SystemTime>)> = BTreeMap::new();
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
                let expires = s
                    .lock_expires_on()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok());
                locked.insert(id.to_string(), (state.as_str().to_string(), expires));
            }
        }
    }
    Ok(ids
        .into_iter()
        .map(|id| {
            let state = locked.get(&id).map(|(s, _)| s.as_str());
            let expires = locked.get(&id).and_then(|(_, e)| *e);
            // A compliance lock is stronger than any governance lock we would
            // add; either must also last about as long as this step asks (a
            // day's slack, so a rerun does not re-lock what it just locked).
            let wanted = std::time::SystemTime::now()
                + std::time::Duration::from_secs(
                    u64::from(params.duration_days.saturating_sub(1)) * 86_400,
                );
            let long_enough = expires.is_some_and(|e| e >= wanted);
            let enough = long_enough
                && matches!(
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

/// An instance discovery found: one to act on, or a named one that is gone.
enum Found {
    Live(Instance),
    Gone {
        id: String,
        region: String,
        state: String,
    },
}

/// A region whose listing failed: one failed item in the step, so the
/// step reports it and the other regions' targets go ahead.
fn unreadable_region(ctx: &Ctx, region: &str, error: AwsError) -> Planned {
    Planned {
        target: Target {
            scope: Scope {
                account: ctx.identity.account.clone(),
                region: Some(region.to_string()),
            },
            resource: Resource::Region {},
        },
        disposition: Disposition::Unreadable { error },
    }
}

fn missing_instance(ctx: &Ctx, id: &str, region: Option<&str>, reason: String) -> Planned {
    Planned {
        target: Target {
            scope: Scope {
                account: ctx.identity.account.clone(),
                region: region.map(str::to_string),
            },
            resource: Resource::Instance { id: id.to_string() },
        },
        disposition: Disposition::Missing { reason },
    }
}

/// The instances of `region` the criteria reach. Named ids are asked for
/// whatever their state, so a terminated one is reported, not dropped;
/// tags are compared exactly afterwards (EC2 filters treat `*` as a wildcard).
async fn select_instances(
    ctx: &Ctx,
    region: &str,
    criteria: &InstanceCriteria,
) -> Result<Vec<Found>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let f = criteria.filters();
    let mut filters = Vec::new();
    match criteria {
        InstanceCriteria::Every(_) => filters.push(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(LIVE_STATES.map(String::from).to_vec()))
                .build(),
        ),
        InstanceCriteria::Named { ids, .. } => filters.push(
            Filter::builder()
                .name("instance-id")
                .set_values(Some(ids.clone()))
                .build(),
        ),
    }
    for (k, v) in &f.tags {
        filters.push(Filter::builder().name(format!("tag:{k}")).values(v).build());
    }
    if !f.vpc_ids.is_empty() {
        filters.push(
            Filter::builder()
                .name("vpc-id")
                .set_values(Some(f.vpc_ids.clone()))
                .build(),
        );
    }
    let pages = ctx
        .pages(
            Some(region),
            "ec2:DescribeInstances",
            |token| {
                ec2.describe_instances()
                    .set_filters(Some(filters.clone()))
                    .set_next_token(token)
                    .send()
            },
            |p| p.next_token().map(str::to_string),
        )
        .await?;
    let mut out = Vec::new();
    for r in pages.iter().flat_map(|p| p.reservations()) {
        for i in r.instances() {
            let Some(id) = i.instance_id() else { continue };
            let state = i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default();
            let tags: BTreeMap<String, String> = i
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
            if !criteria.admits(id, i.vpc_id().unwrap_or_default(), &tags) {
                continue;
            }
            if !LIVE_STATES.contains(&state.as_str()) {
                out.push(Found::Gone {
                    id: id.to_string(),
                    region: region.to_string(),
                    state,
                });
                continue;
            }
            out.push(Found::Live(Instance {
                id: id.to_string(),
                region: region.to_string(),
                vpc_id: i.vpc_id().unwrap_or_default().to_string(),
                state,
                volumes: i
                    .block_device_mappings()
                    .iter()
                    .filter_map(|b| {
                        let ebs = b.ebs()?;
                        Some(Volume {
                            id: ebs.volume_id()?.to_string(),
                            device: b.device_name().unwrap_or_default().to_string(),
                            delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
                        })
                    })
                    .collect(),
                interfaces: i
                    .network_interfaces()
                    .iter()
                    .filter_map(|n| {
                        Some(Interface {
                            id: n.network_interface_id()?.to_string(),
                            vpc_id: n.vpc_id().or(i.vpc_id()).unwrap_or_default().to_string(),
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
            }));
        }
    }
    out.sort_by(|a, b| found_id(a).cmp(found_id(b)));
    Ok(out)
}

fn found_id(f: &Found) -> &str {
    match f {
        Found::Live(i) => &i.id,
        Found::Gone { id, .. } => id,
    }
}

/// States an instance can be contained in; the others are gone or going.
const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// Isolation groups per (region, VPC).
type GroupsByVpc = HashMap<(String, String), VpcGroups>;

async fn plan_instance(
    ctx: &Ctx,
    step: &BoundStep,
    i: Instance,
    groups: &GroupsByVpc,
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
            let volume_ids: Vec<String> = i.volumes.iter().map(|v| v.id.clone()).collect();
            if i.volumes.is_empty() {
                unchanged("no EBS volumes".into())
            } else {
                let covered = existing_snapshots(ctx, &i, &tags).await?;
                if volume_ids.iter().all(|v| covered.contains_key(v)) {
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
                            volume_ids,
                            tags,
                            token: None,
                        },
                    }
                }
            }
        }
        ActionKind::Ec2IsolateInstances => {
            let mut open = Vec::new();
            let mut exposed = Vec::new();
            for n in &i.interfaces {
                let g = groups
                    .get(&(i.region.clone(), n.vpc(&i.vpc_id).to_string()))
                    .cloned()
                    .unwrap_or_default();
                let quarantined = matches!(&g.quarantine, Some((q, 0)) if n.groups == [q.clone()]);
                if !quarantined {
                    open.push(n.id.clone());
                }
                if g.flush.as_ref().is_some_and(|f| n.groups.contains(f)) {
                    exposed.push(n.id.clone());
                }
            }
            if i.interfaces.is_empty() {
                unchanged("no network interfaces".into())
            } else if open.is_empty() {
                unchanged("every interface is in a rule-less quarantine group".into())
            } else {
                Disposition::Change {
                    op: Op::IsolateInstance {
                        region: i.region.clone(),
                        instance_id: i.id.clone(),
                        vpc_id: i.vpc_id.clone(),
                        interfaces: i.interfaces.clone(),
                        on_flush: exposed,
                    },
                }
            }
        }
        ActionKind::Ec2EnableTerminationProtection => {
            let now = termination_settings(ctx, &i).await?;
            if now.holds() {
                unchanged(
                    "termination protection on, shutdown stops it, no volume goes with it".into(),
                )
            } else {
                Disposition::Change {
                    op: Op::EnableTerminationProtection {
                        region: i.region.clone(),
                        instance_id: i.id.clone(),
                        prior: Some(now),
                    },
                }
            }
        }
        ActionKind::Ec2StopInstances => {
            let failed = ctx
                .run
                .failed_snapshots
                .lock()
                .map(|f| f.covers(&i.id))
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

/// The instance's termination settings now: two attribute reads (EC2
/// answers one attribute per call) and its block devices as listed.
async fn termination_settings(ctx: &Ctx, i: &Instance) -> Result<TerminationSettings, AwsError> {
    use aws_sdk_ec2::types::InstanceAttributeName as A;
    let ec2 = ctx.clients.ec2(&i.region);
    let read = |attribute: A| {
        let ec2 = ec2.clone();
        async move {
            ctx.call_in(&i.region, "ec2:DescribeInstanceAttribute", || {
                ec2.describe_instance_attribute()
                    .instance_id(&i.id)
                    .attribute(attribute.clone())
                    .send()
            })
            .await
        }
    };
    let (protection, behavior) = tokio::try_join!(
        read(A::DisableApiTermination),
        read(A::InstanceInitiatedShutdownBehavior)
    )?;
    Ok(TerminationSettings {
        disable_api_termination: protection
            .disable_api_termination()
            .and_then(|v| v.value())
            .unwrap_or(false),
        shutdown_behavior: behavior
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value())
            .unwrap_or("stop")
            .to_string(),
        delete_on_termination: i
            .volumes
            .iter()
            .filter(|v| v.delete_on_termination)
            .map(|v| (v.device.clone(), v.id.clone()))
            .collect(),
    })
}

/// The quarantine and flush groups of one VPC, with the quarantine
/// group's rule count: one read per VPC.
async fn vpc_groups(ctx: &Ctx, region: &str, vpc: &str) -> Result<VpcGroups, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let out = ctx
        .call_in(region, "ec2:DescribeSecurityGroups", || {
            ec2.describe_security_groups()
                .filters(Filter::builder().name("vpc-id").values(vpc).build())
                .filters(
                    Filter::builder()
                        .name("group-name")
                        .values(QUARANTINE_GROUP)
                        .values(FLUSH_GROUP)
                        .build(),
                )
                .send()
        })
        .await?;
    let mut found = VpcGroups::default();
    for g in out.security_groups() {
        let Some(id) = g.group_id() else { continue };
        match g.group_name() {
            Some(QUARANTINE_GROUP) => {
                let rules = g.ip_permissions().len() + g.ip_permissions_egress().len();
                found.quarantine = Some((id.to_string(), rules));
            }
            Some(FLUSH_GROUP) => found.flush = Some(id.to_string()),
            _ => {}
        }
    }
    Ok(found)
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
    // Tags anyone can write: a snapshot counts only when its token is a MAC
    // this responder's audit key made for this instance, and only once (a
    // token copied onto a second snapshot makes neither count).
    let Some(key) = &ctx.audit_key else {
        return Ok(BTreeMap::new());
    };
    let token = |s: &aws_sdk_ec2::types::Snapshot| {
        s.tags()
            .iter()
            .find(|t| t.key() == Some(TOKEN_TAG))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let mut uses: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in &snaps {
        if let (Some(t), Some(v)) = (token(s), s.volume_id()) {
            *uses.entry((t, v.to_string())).or_default() += 1;
        }
    }
    Ok(snaps
        .iter()
        .filter_map(|s| {
            let state = s
                .state()
                .map(|x| x.as_str().to_string())
                .unwrap_or_default();
            let volume = s.volume_id()?.to_string();
            let t = token(s)?;
            let ours = key.owns_token(&i.id, &t) && uses.get(&(t, volume.clone())) == Some(&1);
            (ours && state != "error").then_some((volume, state))
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

/// All traffic from or to everywhere in one address family. Both families,
/// both directions make a flow untracked (AWS EC2 User Guide, "Security
/// group connection tracking", Untracked connections), so that the move to
/// the empty group drops it.
fn all_traffic(v6: bool) -> IpPermission {
    let p = IpPermission::builder().ip_protocol("-1");
    if v6 {
        p.ipv6_ranges(
            aws_sdk_ec2::types::Ipv6Range::builder()
                .cidr_ipv6("::/0")
                .build(),
        )
        .build()
    } else {
        p.ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build()
    }
}

/// Whether a group's rules already allow all traffic in one family.
fn allows_all(rules: &[IpPermission], v6: bool) -> bool {
    rules.iter().any(|p| {
        p.ip_protocol() == Some("-1")
            && if v6 {
                p.ipv6_ranges()
                    .iter()
                    .any(|r| r.cidr_ipv6() == Some("::/0"))
            } else {
                p.ip_ranges()
                    .iter()
                    .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
            }
    })
}

/// Creates a security group exactly once: a lost answer is followed by a
/// read by name before anything is sent again (`CreateSecurityGroup` takes
/// no client token). Returns the id and whether this run made it.
async fn ensure_group(
    ctx: &Ctx,
    region: &str,
    vpc: &str,
    name: &'static str,
    description: &'static str,
) -> Result<(String, bool), AwsError> {
    if let Some(id) = find_group(ctx, region, vpc, name).await? {
        return Ok((id, false));
    }
    let ec2 = ctx.clients.ec2(region);
    let created = aws::create_once(
        &["InvalidGroup.Duplicate"],
        || async {
            let out = ctx
                .call_once(Some(region), "ec2:CreateSecurityGroup", || {
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
            out.group_id()
                .map(str::to_string)
                .ok_or_else(|| local("ec2:CreateSecurityGroup", "no group id returned".into()))
        },
        || find_group(ctx, region, vpc, name),
    )
    .await?;
    let new = created.by_this_run();
    Ok((created.into_inner(), new))
}

/// The flush and quarantine groups of a VPC, found or created once per run.
/// The flush group lets everything in and out (IPv4 and IPv6); the
/// quarantine group keeps no rule, whoever added one.
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
    let (flush, flush_new) = ensure_group(
        ctx,
        region,
        vpc,
        FLUSH_GROUP,
        "breakglass: allow-all, passed through to drop tracked connections",
    )
    .await?;
    if flush_new {
        created.push(flush.clone());
    }
    // Both directions, both address families, checked on every run: a rule
    // missing from the flush group would leave connections tracked. One
    // rule per call: a call whose rules are partly there fails whole.
    let described = ctx
        .call_in(region, "ec2:DescribeSecurityGroups", || {
            ec2.describe_security_groups().group_ids(&flush).send()
        })
        .await?;
    let (ingress, egress) = described
        .security_groups()
        .first()
        .map(|g| {
            (
                g.ip_permissions().to_vec(),
                g.ip_permissions_egress().to_vec(),
            )
        })
        .unwrap_or_default();
    for v6 in [false, true] {
        if !allows_all(&ingress, v6) {
            let r = ctx
                .call_in(region, "ec2:AuthorizeSecurityGroupIngress", || {
                    ec2.authorize_security_group_ingress()
                        .group_id(&flush)
                        .ip_permissions(all_traffic(v6))
                        .send()
                })
                .await
                .map(|_| ());
            aws::goal_if(r, &["InvalidPermission.Duplicate"])?;
        }
        if !allows_all(&egress, v6) {
            let r = ctx
                .call_in(region, "ec2:AuthorizeSecurityGroupEgress", || {
                    ec2.authorize_security_group_egress()
                        .group_id(&flush)
                        .ip_permissions(all_traffic(v6))
                        .send()
                })
                .await
                .map(|_| ());
            aws::goal_if(r, &["InvalidPermission.Duplicate"])?;
        }
    }
    let (quarantine, quarantine_new) = ensure_group(
        ctx,
        region,
        vpc,
        QUARANTINE_GROUP,
        "breakglass: no traffic in or out",
    )
    .await?;
    if quarantine_new {
        created.push(quarantine.clone());
    }
    // A new group allows all egress, and a group made by anyone may carry
    // rules: revoke whatever it has.
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
        let r = ctx
            .call_in(region, "ec2:RevokeSecurityGroupEgress", || {
                ec2.revoke_security_group_egress()
                    .group_id(&quarantine)
                    .set_ip_permissions(Some(egress.clone()))
                    .send()
            })
            .await
            .map(|_| ());
        aws::goal_if(r, &["InvalidPermission.NotFound"])?;
    }
    if !ingress.is_empty() {
        let r = ctx
            .call_in(region, "ec2:RevokeSecurityGroupIngress", || {
                ec2.revoke_security_group_ingress()
                    .group_id(&quarantine)
                    .set_ip_permissions(Some(ingress.clone()))
                    .send()
            })
            .await
            .map(|_| ());
        aws::goal_if(r, &["InvalidPermission.NotFound"])?;
    }
    let groups = IsolationGroups {
        flush,
        quarantine,
        created,
    };
    cache.insert(key, groups.clone());
    Ok(groups)
}

/// Moves one interface onto exactly these groups.
async fn set_groups(ctx: &Ctx, region: &str, eni: &str, groups: &[String]) -> Result<(), AwsError> {
    let ec2 = ctx.clients.ec2(region);
    ctx.call_in(region, "ec2:ModifyNetworkInterfaceAttribute", || {
        ec2.modify_network_interface_attribute()
            .network_interface_id(eni)
            .set_groups(Some(groups.to_vec()))
            .send()
    })
    .await
    .map(|_| ())
}

/// The security groups of one interface now.
async fn eni_groups(ctx: &Ctx, region: &str, eni: &str) -> Result<Vec<String>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let out = ctx
        .call_in(region, "ec2:DescribeNetworkInterfaces", || {
            ec2.describe_network_interfaces()
                .network_interface_ids(eni)
                .send()
        })
        .await?;
    Ok(out
        .network_interfaces()
        .iter()
        .flat_map(|n| n.groups())
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect())
}

/// Isolates every interface: to the flush group (tracked connections
/// become untracked), then to the empty quarantine group (they drop). The
/// flush group is open to the internet, so an interface must never stay
/// there: when either move fails (a refusal, or retries that ran out after
/// AWS may have acted), the interface goes back where it came from (to
/// quarantine, if it came from the flush group), is read back, and the
/// failure says where it is.
async fn isolate(
    ctx: &Ctx,
    region: &str,
    instance_vpc: &str,
    interfaces: &[Interface],
) -> Result<serde_json::Value, AwsError> {
    let mut used: Vec<IsolationGroups> = Vec::new();
    let mut isolated: Vec<&str> = Vec::new();
    for n in interfaces {
        let groups = isolation_groups(ctx, region, n.vpc(instance_vpc)).await?;
        let flush = std::slice::from_ref(&groups.flush);
        let quarantine = std::slice::from_ref(&groups.quarantine);
        let (fallback, fallback_name) = if n.groups.contains(&groups.flush) {
            (quarantine.to_vec(), "the quarantine group".to_string())
        } else {
            (
                n.groups.clone(),
                format!("its original groups {}", n.groups.join(", ")),
            )
        };
        let moved = match set_groups(ctx, region, &n.id, flush).await {
            Ok(()) => set_groups(ctx, region, &n.id, quarantine).await,
            Err(e) => Err(e),
        };
        if let Err(mut e) = moved {
            let back = set_groups(ctx, region, &n.id, &fallback).await;
            let open = match eni_groups(ctx, region, &n.id).await {
                Ok(now) => now.contains(&groups.flush),
                // Unreadable: open unless the move back is known to have landed.
                Err(_) => back.is_err(),
            };
            e.message = if open {
                format!(
                    "{}; interface {} is LEFT ON THE ALLOW-ALL GROUP {} (open to the internet){}: rerun, or move it by hand",
                    e.message,
                    n.id,
                    groups.flush,
                    back.err()
                        .map(|b| format!(" and could not be moved back ({b})"))
                        .unwrap_or_default()
                )
            } else {
                format!(
                    "{}; interface {} was put back on {fallback_name} (not isolated)",
                    e.message, n.id
                )
            };
            if !isolated.is_empty() {
                // Failed closed: these stay quarantined, and a rollback of
                // this failed change does not know them.
                e.message = format!(
                    "{}; already quarantined, and left so: {} (restore their groups by hand if wanted)",
                    e.message,
                    isolated.join(", ")
                );
            }
            return Err(e);
        }
        isolated.push(&n.id);
        if !used.iter().any(|g| g.quarantine == groups.quarantine) {
            used.push(groups);
        }
    }
    let created: Vec<&String> = used.iter().flat_map(|g| &g.created).collect();
    Ok(serde_json::json!({
        "quarantine_group": used.first().map(|g| &g.quarantine),
        "flush_group": used.first().map(|g| &g.flush),
        "quarantine_groups": used.iter().map(|g| &g.quarantine).collect::<Vec<_>>(),
        "flush_groups": used.iter().map(|g| &g.flush).collect::<Vec<_>>(),
        "created_groups": created,
    }))
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
        Op::EnableTerminationProtection {
            instance_id, prior, ..
        } => {
            let mut calls = Vec::new();
            if prior.as_ref().is_none_or(|p| !p.disable_api_termination) {
                calls.push("DisableApiTermination=true".to_string());
            }
            if prior
                .as_ref()
                .is_none_or(|p| p.shutdown_behavior == "terminate")
            {
                calls.push("InstanceInitiatedShutdownBehavior=stop".to_string());
            }
            for (device, volume) in prior.iter().flat_map(|p| &p.delete_on_termination) {
                calls.push(format!("{device} ({volume}) DeleteOnTermination=false"));
            }
            format!(
                "ec2:ModifyInstanceAttribute InstanceId={instance_id} {}",
                calls.join(", ")
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

fn snapshot_tags(
    instance_id: &str,
    tags: &BTreeMap<String, String>,
    token: &str,
) -> TagSpecification {
    let mut spec = TagSpecification::builder()
        .resource_type(ResourceType::Snapshot)
        .tags(Tag::builder().key(SOURCE_TAG).value(instance_id).build())
        .tags(Tag::builder().key(TOKEN_TAG).value(token).build());
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
    token: &str,
) -> aws_sdk_ec2::operation::create_snapshots::builders::CreateSnapshotsFluentBuilder {
    ec2.create_snapshots()
        .instance_specification(
            InstanceSpecification::builder()
                .instance_id(instance_id)
                .build(),
        )
        .description(format!("breakglass evidence of {instance_id}"))
        .tag_specifications(snapshot_tags(instance_id, tags, token))
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

/// The changes to an instance's termination settings, one
/// `ModifyInstanceAttribute` call each (it takes one attribute per call).
struct TerminationChange<'a> {
    disable_api_termination: Option<bool>,
    shutdown_behavior: Option<&'static str>,
    /// Devices whose `DeleteOnTermination` is set to this value.
    delete_on_termination: (&'a [(String, String)], bool),
}

async fn change_termination(
    ctx: &Ctx,
    region: &str,
    instance_id: &str,
    change: TerminationChange<'_>,
) -> Result<(), AwsError> {
    use aws_sdk_ec2::types::{
        EbsInstanceBlockDeviceSpecification, InstanceAttributeName,
        InstanceBlockDeviceMappingSpecification,
    };
    let ec2 = ctx.clients.ec2(region);
    let modify = || ec2.modify_instance_attribute().instance_id(instance_id);
    if let Some(on) = change.disable_api_termination {
        ctx.call_in(region, "ec2:ModifyInstanceAttribute", || {
            modify()
                .disable_api_termination(AttributeBooleanValue::builder().value(on).build())
                .send()
        })
        .await?;
    }
    if let Some(behavior) = change.shutdown_behavior {
        ctx.call_in(region, "ec2:ModifyInstanceAttribute", || {
            modify()
                .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
                .value(behavior)
                .send()
        })
        .await?;
    }
    let (devices, delete) = change.delete_on_termination;
    for (device, _) in devices {
        ctx.call_in(region, "ec2:ModifyInstanceAttribute", || {
            modify()
                .block_device_mappings(
                    InstanceBlockDeviceMappingSpecification::builder()
                        .device_name(device)
                        .ebs(
                            EbsInstanceBlockDeviceSpecification::builder()
                                .delete_on_termination(delete)
                                .build(),
                        )
                        .build(),
                )
                .send()
        })
        .await?;
    }
    Ok(())
}

/// Termination protection that holds: the API flag, a shutdown from inside
/// the instance that stops it rather than terminates it, and attached
/// volumes that outlive it. Only what `prior` shows wrong is changed (a log
/// from before the other two were recorded has `None`: the flag and the
/// behaviour).
async fn harden(
    ctx: &Ctx,
    region: &str,
    instance_id: &str,
    prior: Option<&TerminationSettings>,
) -> Result<(), AwsError> {
    let change = TerminationChange {
        disable_api_termination: prior
            .is_none_or(|p| !p.disable_api_termination)
            .then_some(true),
        shutdown_behavior: prior
            .is_none_or(|p| p.shutdown_behavior == "terminate")
            .then_some("stop"),
        delete_on_termination: (
            prior
                .map(|p| p.delete_on_termination.as_slice())
                .unwrap_or_default(),
            false,
        ),
    };
    change_termination(ctx, region, instance_id, change).await
}

/// The termination settings of one instance now, `None` when it is gone.
pub async fn read_termination(
    ctx: &Ctx,
    region: &str,
    instance_id: &str,
) -> Result<Option<TerminationSettings>, AwsError> {
    let criteria = InstanceCriteria::Named {
        ids: vec![instance_id.to_string()],
        filters: Default::default(),
    };
    let found = select_instances(ctx, region, &criteria).await?;
    match found.into_iter().next() {
        Some(Found::Live(i)) => termination_settings(ctx, &i).await.map(Some),
        _ => Ok(None),
    }
}

/// Rollback of [`harden`]: each setting back to what `prior` recorded.
pub async fn restore_termination(
    ctx: &Ctx,
    region: &str,
    instance_id: &str,
    prior: Option<&TerminationSettings>,
) -> Result<(), AwsError> {
    let change = TerminationChange {
        disable_api_termination: prior
            .is_none_or(|p| !p.disable_api_termination)
            .then_some(false),
        shutdown_behavior: prior
            .is_some_and(|p| p.shutdown_behavior == "terminate")
            .then_some("terminate"),
        delete_on_termination: (
            prior
                .map(|p| p.delete_on_termination.as_slice())
                .unwrap_or_default(),
            true,
        ),
    };
    change_termination(ctx, region, instance_id, change).await
}

/// The snapshots one `CreateSnapshots` call made, found by the token it
/// tagged them with: how a call whose answer was lost is recognised.
async fn snapshots_by_token(
    ctx: &Ctx,
    region: &str,
    token: &str,
) -> Result<Option<Vec<String>>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let snaps = ctx
        .call_in(region, "ec2:DescribeSnapshots", || {
            ec2.describe_snapshots()
                .owner_ids("self")
                .filters(
                    Filter::builder()
                        .name(format!("tag:{TOKEN_TAG}"))
                        .values(token)
                        .build(),
                )
                .into_paginator()
                .items()
                .send()
                .try_collect()
        })
        .await?;
    let ids: Vec<String> = snaps
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_string))
        .collect();
    Ok((!ids.is_empty()).then_some(ids))
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
            token,
            ..
        } => {
            let ec2 = ctx.clients.ec2(region);
            let token = token.as_deref().unwrap_or_default();
            let r = aws::create_once(
                &[],
                || async {
                    let out = ctx
                        .call_once(Some(region), "ec2:CreateSnapshots", || {
                            create_snapshots_call(&ec2, instance_id, tags, token).send()
                        })
                        .await?;
                    Ok(out
                        .snapshots()
                        .iter()
                        .filter_map(|s| s.snapshot_id().map(str::to_string))
                        .collect::<Vec<String>>())
                },
                || snapshots_by_token(ctx, region, token),
            )
            .await;
            match r {
                Ok(created) => {
                    let adopted = !created.is_new();
                    let ids = created.into_inner();
                    if let Ok(mut made) = ctx.run.created_snapshots.lock() {
                        let account = &ctx.identity.account;
                        made.extend(
                            ids.iter()
                                .map(|id| (account.clone(), region.clone(), id.clone())),
                        );
                    }
                    let mut effect = serde_json::json!({ "snapshot_ids": ids });
                    if adopted {
                        effect["adopted"] = serde_json::Value::Bool(true);
                    }
                    Ok(Some(effect))
                }
                Err(e) => {
                    if let Ok(mut failed) = ctx.run.failed_snapshots.lock() {
                        failed.instance(instance_id);
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
        } => isolate(ctx, region, vpc_id, interfaces).await.map(Some),
        Op::EnableTerminationProtection {
            region,
            instance_id,
            prior,
        } => harden(ctx, region, instance_id, prior.as_ref())
            .await
            .map(|()| None),
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
    // Paced and retried like the real call: a throttled check is asked
    // again, never read as a denial.
    let r = match op {
        Op::CreateSnapshots {
            region,
            instance_id,
            tags,
            ..
        } => {
            let call =
                create_snapshots_call(&ctx.clients.ec2(region), instance_id, tags, "dry-run")
                    .dry_run(true);
            ctx.call_in(region, "ec2:CreateSnapshots", || call.clone().send())
                .await
                .map(|_| ())
        }
        Op::IsolateInstance {
            region, interfaces, ..
        } => {
            let n = interfaces.first()?;
            let call = ctx
                .clients
                .ec2(region)
                .modify_network_interface_attribute()
                .dry_run(true)
                .network_interface_id(&n.id)
                .set_groups(Some(n.groups.clone()));
            ctx.call_in(region, "ec2:ModifyNetworkInterfaceAttribute", || {
                call.clone().send()
            })
            .await
            .map(|_| ())
        }
        Op::LockSnapshot {
            region,
            snapshot_id,
            mode,
            duration_days,
        } => {
            let call = lock_call(&ctx.clients.ec2(region), snapshot_id, *mode, *duration_days)
                .dry_run(true);
            ctx.call_in(region, "ec2:LockSnapshot", || call.clone().send())
                .await
                .map(|_| ())
        }
        Op::EnableTerminationProtection {
            region,
            instance_id,
            ..
        } => {
            let call = protect_call(&ctx.clients.ec2(region), instance_id).dry_run(true);
            ctx.call_in(region, "ec2:ModifyInstanceAttribute", || {
                call.clone().send()
            })
            .await
            .map(|_| ())
        }
        Op::StopInstance {
            region,
            instance_id,
            ..
        } => {
            let call = stop_call(&ctx.clients.ec2(region), instance_id).dry_run(true);
            ctx.call_in(region, "ec2:StopInstances", || call.clone().send())
                .await
                .map(|_| ())
        }
        _ => return None,
    };
    Some(match r {
        Err(e) if e.code.as_deref() == Some("DryRunOperation") => Ok(()),
        Ok(()) => Ok(()),
        Err(e) => Err(e),
    })
}
