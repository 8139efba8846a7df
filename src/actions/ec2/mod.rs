//! EC2 evidence preservation and isolation, per region.
//!
//! Pitfalls handled here: snapshots are taken per instance with
//! `CreateSnapshots` (crash-consistent across its volumes) and tagged at
//! creation; a new security group allows all egress, so the quarantine group's
//! egress rules are revoked; tracked connections survive a group change, so
//! every ENI goes through an allow-all "flush" group before the empty one;
//! stops are one call per instance, so one protected instance cannot stop the
//! rest, and never follow a failed snapshot of the same instance.

pub mod block_public_sharing;
pub mod create_snapshots;
pub mod disassociate_instance_profile;
pub mod enable_termination_protection;
mod instances;
pub mod isolate_instance;
mod isolation;
pub mod lock_snapshot;
mod profiles;
mod snapshots;
pub mod steps;
pub mod stop_instance;
mod termination;
pub mod unshare;
pub use create_snapshots::CreateSnapshots;
pub use disassociate_instance_profile::DisassociateInstanceProfile;
pub use enable_termination_protection::EnableTerminationProtection;
use instances::*;
pub use isolate_instance::IsolateInstance;
use isolation::*;
pub use lock_snapshot::LockSnapshot;
use profiles::*;
use snapshots::*;
pub use stop_instance::StopInstance;
use termination::*;
pub use termination::{read_termination, restore_termination};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, InstanceSpecification, IpPermission, IpRange, ResourceType, Tag,
    TagSpecification,
};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use super::BoundStep;
use super::regions::unreadable_region;
use super::{
    ActionInfo, ActionKind, ActionParams, Ctx, Discovery, Disposition, Op, Planned, Reversibility,
    Sink, TargetKind,
};
use crate::aws::{self, AwsError, local};
use crate::criteria::{InstanceCriteria, SnapshotCriteria};
use crate::spec::LockModeSpec;
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

/// The termination-related settings of an instance: all must hold for
/// termination protection to protect (the AWS guide on termination
/// protection: `DisableApiTermination` does not stop a shutdown started on
/// the instance when `InstanceInitiatedShutdownBehavior` is `terminate`, and
/// volumes with `DeleteOnTermination` go with a terminated instance), and
/// stop protection (`DisableApiStop`, EC2 User Guide "Enable stop
/// protection"): a stop loses the instance's memory, evidence too, and is
/// how an attacker rewrites its user data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminationSettings {
    pub disable_api_termination: bool,
    /// `None` in logs written before it was recorded (they read and write
    /// back unchanged, and their rollback leaves it alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_api_stop: Option<bool>,
    pub shutdown_behavior: String,
    /// Attached volumes deleted with the instance, as (device, volume id).
    pub delete_on_termination: Vec<(String, String)>,
}

impl TerminationSettings {
    pub fn holds(&self) -> bool {
        self.disable_api_termination
            && self.disable_api_stop == Some(true)
            && self.shutdown_behavior != "terminate"
            && self.delete_on_termination.is_empty()
    }

    /// What is wrong, for plans and read-backs.
    pub fn drift(&self) -> String {
        let mut v = Vec::new();
        if !self.disable_api_termination {
            v.push("termination protection is off".to_string());
        }
        if self.disable_api_stop != Some(true) {
            v.push("stop protection is off (a stop loses its memory)".to_string());
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
    if let ActionParams::Ec2DetachInstanceProfiles(p) = &step.params {
        let found = match p.mode {
            DetachMode::Detach => plan_detach(ctx, instances, notes).await?,
            DetachMode::Guard => plan_guard(ctx, instances, notes).await?,
        };
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
    // Each region's breakglass snapshots are listed once, not once per
    // instance; a region whose listing fails fails its own instances only.
    let mut snapshots = SnapshotsByRegion::new();
    let mut unreadable_regions: HashMap<String, AwsError> = HashMap::new();
    if let ActionParams::Ec2SnapshotVolumes(p) = &step.params {
        let regions: BTreeSet<String> = instances
            .iter()
            .filter(|i| !i.volumes.is_empty())
            .map(|i| i.region.clone())
            .collect();
        let tags = &p.tags;
        let read: Vec<(String, Result<Vec<aws_sdk_ec2::types::Snapshot>, AwsError>)> =
            stream::iter(regions)
                .map(|region| async move {
                    let found = tagged_snapshots(ctx, &region, tags).await;
                    (region, found)
                })
                .buffer_unordered(ctx.concurrency.max(1))
                .collect()
                .await;
        for (region, found) in read {
            match found {
                Ok(s) => {
                    snapshots.insert(region, s);
                }
                Err(e) => {
                    unreadable_regions.insert(region, e);
                }
            }
        }
    }
    let (groups, unreadable_vpcs) = (&groups, &unreadable_vpcs);
    let (snapshots, unreadable_regions) = (&snapshots, &unreadable_regions);
    // One instance whose state cannot be read fails alone; the others, in
    // every region, go on. Each region is planned on its own, as many at
    // once as `--concurrency` allows: in one queue sorted by region,
    // planning that reads (termination protection's attributes) would wait
    // out one region's read bucket before the next region's first read.
    let mut by_region: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
    for i in instances {
        by_region.entry(i.region.clone()).or_default().push(i);
    }
    let plan = |(n, i): (usize, Instance)| async move {
        let target = Target {
            scope: Scope {
                account: ctx.identity.account.clone(),
                region: Some(i.region.clone()),
            },
            resource: Resource::Instance { id: i.id.clone() },
        };
        let blocked = i
            .interfaces
            .iter()
            .find_map(|n| unreadable_vpcs.get(&(i.region.clone(), n.vpc(&i.vpc_id).to_string())))
            .or_else(|| {
                (!i.volumes.is_empty())
                    .then(|| unreadable_regions.get(&i.region))
                    .flatten()
            });
        let found = match blocked {
            Some(e) => Err(e.clone()),
            None => plan_instance(ctx, step, i, groups, snapshots, n == 0).await,
        };
        found.unwrap_or_else(|error| Planned {
            target,
            disposition: Disposition::Unreadable { error },
        })
    };
    let regions = by_region.into_values().map(|instances| {
        stream::iter(instances.into_iter().enumerate())
            .map(plan)
            .buffer_unordered(ctx.concurrency.max(1))
    });
    stream::select_all(regions)
        .for_each(|p| {
            sink.emit(p);
            std::future::ready(())
        })
        .await;
    Ok(notes)
}

/// Isolation groups per (region, VPC).
type GroupsByVpc = HashMap<(String, String), VpcGroups>;

/// Breakglass's tagged snapshots per region (see [`tagged_snapshots`]).
type SnapshotsByRegion = HashMap<String, Vec<aws_sdk_ec2::types::Snapshot>>;

/// The regions enabled for the account, sorted: what `regions: all` means.
pub async fn enabled_regions(
    clients: &crate::aws::Clients,
    region: &str,
    account: &str,
    retry: &crate::aws::RetryPolicy,
    telemetry: &crate::aws::Telemetry,
) -> Result<Vec<String>, AwsError> {
    let ec2 = clients.ec2(region);
    let lane = telemetry.lane(account, "ec2:DescribeRegions", Some(region));
    let out = aws::call(retry, telemetry, &lane, || async {
        ec2.describe_regions()
            .send()
            .await
            .map_err(|e| aws::aws_error("ec2:DescribeRegions", e))
    })
    .await?;
    let mut names: Vec<String> = out
        .regions()
        .iter()
        .filter_map(|r| r.region_name().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}
