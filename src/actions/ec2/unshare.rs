//! `ec2.unshare`: an attacker shares the account's snapshots and images with
//! an account of their own (or with everyone), then copies them out at
//! leisure (Stratus `aws.exfiltration.ec2-share-ebs-snapshot`,
//! `aws.exfiltration.ec2-share-ami`). This file is the whole action: its
//! catalog entry, its discovery, and its call. Rollback shares nothing
//! again (the grants may be the attacker's); it lists them.
//!
//! AWS behaviour relied on (Amazon EC2 API reference):
//! - `DescribeSnapshotAttribute` / `DescribeImageAttribute` list the
//!   `createVolumePermission` / `launchPermission` grants: an account id, or
//!   the group `all` (public); images may also be shared with an
//!   organization or OU ARN.
//! - `ModifySnapshotAttribute` / `ModifyImageAttribute` with `Remove` take
//!   those grants away, and take `DryRun`. Removing a grant stops new
//!   volumes or launches from the share; copies the other account already
//!   made are theirs (snapshot sharing, EBS User Guide).

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{
    ImageAttributeName, LaunchPermission, LaunchPermissionModifications, OperationType,
    PermissionGroup, SnapshotAttributeName,
};
use futures_util::{StreamExt, stream};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::actions::call::{Call, Inverse, Inverting};
use crate::actions::regions::{each_region, target_in};
use crate::actions::{
    Action, ActionInfo, BoundStep, Ctx, Disposition, Op, Planned, Reversibility, Runs, Sink,
};
use crate::aws::AwsError;
use crate::targets::Resource;

/// `with:` of `ec2.unshare`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnshareParams {
    /// Account ids (quoted) whose grants stay, such as the organization's
    /// backup account. Public grants are always removed.
    #[serde(default)]
    pub keep_accounts: Vec<String>,
}

pub struct Unshare;

impl Action for Unshare {
    const INFO: ActionInfo = ActionInfo {
        id: "ec2.unshare",
        summary: "Take back every share of the account's EBS snapshots and AMIs: other accounts and public.",
        targets: &[],
        params: &[(
            "keep_accounts",
            "account ids whose grants stay (default: none; public grants always go)",
        )],
        calls: &[
            "ec2:ModifySnapshotAttribute createVolumePermission Remove",
            "ec2:ModifyImageAttribute launchPermission Remove",
        ],
        reversibility: Reversibility::Reversible(
            "kept: rollback lists the removed grants and shares nothing again (they may be the attacker's)",
        ),
        notes: &[
            "Copies another account already made are beyond reach: find them in CloudTrail (CopySnapshot, CopyImage, CreateVolume with this account's snapshot ids).",
            "Every snapshot and image the account owns is read: one attribute call each, per region.",
            "Grants to an organization or OU ARN (images only) are removed too unless their accounts are kept one by one.",
        ],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = UnshareParams;

    fn check(p: &UnshareParams) -> Result<(), String> {
        let account = |a: &String| a.len() == 12 && a.chars().all(|c| c.is_ascii_digit());
        match p.keep_accounts.iter().find(|a| !account(a)) {
            Some(a) => Err(format!("`{a}` is not a 12-digit account id")),
            None => Ok(()),
        }
    }

    async fn discover(
        ctx: &Ctx,
        _step: &BoundStep,
        p: &UnshareParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        let keep: BTreeSet<&str> = p.keep_accounts.iter().map(String::as_str).collect();
        let keep = &keep;
        let plan = |region: String| async move {
            plan_region(ctx, &region, keep, sink)
                .await
                .map(|()| BTreeSet::new())
        };
        each_region(ctx, sink, "snapshot or image", &[], plan).await;
        Ok(Vec::new())
    }
}

/// Who a snapshot or image is shared with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "with", content = "id", rename_all = "snake_case")]
pub enum Grant {
    Account(String),
    /// The group `all`: anyone.
    Public,
    Organization(String),
    OrganizationalUnit(String),
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::Account(a) => write!(f, "account {a}"),
            Grant::Public => f.write_str("everyone (public)"),
            Grant::Organization(o) => write!(f, "organization {o}"),
            Grant::OrganizationalUnit(o) => write!(f, "OU {o}"),
        }
    }
}

/// What is shared: a snapshot's volumes or an image's launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shared {
    Snapshot,
    Image,
}

impl Shared {
    fn kind(self) -> &'static str {
        match self {
            Shared::Snapshot => "snapshot",
            Shared::Image => "image",
        }
    }
}

/// Reads every snapshot and image the account owns in `region` and plans
/// the removal of the grants not kept.
async fn plan_region(
    ctx: &Ctx,
    region: &str,
    keep: &BTreeSet<&str>,
    sink: &Sink,
) -> Result<(), AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let snapshots = ctx
        .pages(
            Some(region),
            "ec2:DescribeSnapshots",
            |token| {
                ec2.describe_snapshots()
                    .owner_ids("self")
                    .set_next_token(token)
                    .send()
            },
            |p| p.next_token().map(str::to_string),
        )
        .await?;
    let images = ctx
        .pages(
            Some(region),
            "ec2:DescribeImages",
            |token| {
                ec2.describe_images()
                    .owners("self")
                    .set_next_token(token)
                    .send()
            },
            |p| p.next_token().map(str::to_string),
        )
        .await?;
    let owned: Vec<(Shared, String)> = snapshots
        .iter()
        .flat_map(|p| p.snapshots())
        .filter_map(|s| s.snapshot_id().map(|id| (Shared::Snapshot, id.to_string())))
        .chain(
            images
                .iter()
                .flat_map(|p| p.images())
                .filter_map(|i| i.image_id().map(|id| (Shared::Image, id.to_string()))),
        )
        .collect();
    stream::iter(owned)
        .map(|(what, id)| async move {
            let disposition = match grants(ctx, region, what, &id).await {
                Err(error) => Disposition::Unreadable { error },
                Ok(all) => {
                    let (kept, removed): (Vec<Grant>, Vec<Grant>) = all
                        .into_iter()
                        .partition(|g| matches!(g, Grant::Account(a) if keep.contains(a.as_str())));
                    match (removed.is_empty(), kept.is_empty()) {
                        (true, true) => Disposition::Unchanged {
                            reason: "not shared".into(),
                        },
                        (true, false) => Disposition::Unchanged {
                            reason: format!("shared only with kept {}", list(&kept)),
                        },
                        (false, _) => Disposition::Change {
                            op: Op::RemoveSharing(RemoveSharing {
                                region: region.to_string(),
                                what,
                                id: id.clone(),
                                grants: removed,
                            }),
                        },
                    }
                }
            };
            Planned {
                target: target_in(
                    ctx,
                    region,
                    Resource::Named {
                        kind: what.kind().into(),
                        id,
                    },
                ),
                disposition,
            }
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .for_each(|planned| {
            sink.emit(planned);
            std::future::ready(())
        })
        .await;
    Ok(())
}

fn list(grants: &[Grant]) -> String {
    grants
        .iter()
        .map(Grant::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The grants a snapshot or image carries now, sorted.
async fn grants(ctx: &Ctx, region: &str, what: Shared, id: &str) -> Result<Vec<Grant>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let mut out: Vec<Grant> = match what {
        Shared::Snapshot => {
            let attr = ctx
                .call_in(region, "ec2:DescribeSnapshotAttribute", || {
                    ec2.describe_snapshot_attribute()
                        .snapshot_id(id)
                        .attribute(SnapshotAttributeName::CreateVolumePermission)
                        .send()
                })
                .await?;
            attr.create_volume_permissions()
                .iter()
                .filter_map(|p| match (p.group(), p.user_id()) {
                    (Some(PermissionGroup::All), _) => Some(Grant::Public),
                    (_, Some(user)) => Some(Grant::Account(user.to_string())),
                    _ => None,
                })
                .collect()
        }
        Shared::Image => {
            let attr = ctx
                .call_in(region, "ec2:DescribeImageAttribute", || {
                    ec2.describe_image_attribute()
                        .image_id(id)
                        .attribute(ImageAttributeName::LaunchPermission)
                        .send()
                })
                .await?;
            attr.launch_permissions()
                .iter()
                .filter_map(|p| {
                    if p.group() == Some(&PermissionGroup::All) {
                        Some(Grant::Public)
                    } else if let Some(user) = p.user_id() {
                        Some(Grant::Account(user.to_string()))
                    } else if let Some(org) = p.organization_arn() {
                        Some(Grant::Organization(org.to_string()))
                    } else {
                        p.organizational_unit_arn()
                            .map(|ou| Grant::OrganizationalUnit(ou.to_string()))
                    }
                })
                .collect()
        }
    };
    out.sort();
    out.dedup();
    Ok(out)
}

/// Removes `grants` from one snapshot or image (or asks whether it may,
/// with `dry_run`).
async fn remove(
    ctx: &Ctx,
    region: &str,
    what: Shared,
    id: &str,
    grants: &[Grant],
    dry_run: bool,
) -> Result<(), AwsError> {
    let ec2 = ctx.clients.ec2(region);
    match what {
        // The account ids and the group `all` as the top-level `UserId.N` and
        // `GroupName.N` parameters, which ModifySnapshotAttribute takes
        // beside the structured form (EC2 API reference); snapshots are
        // shared with accounts or the public only.
        Shared::Snapshot => {
            let users: Vec<String> = grants
                .iter()
                .filter_map(|g| match g {
                    Grant::Account(a) => Some(a.clone()),
                    _ => None,
                })
                .collect();
            let mut public = grants
                .contains(&Grant::Public)
                .then(|| vec!["all".to_string()]);
            // "Up to 500 modifications to a snapshot in a single operation"
            // (ModifySnapshotAttribute, EC2 API reference).
            let batches: Vec<&[String]> = match users.is_empty() {
                true => vec![&[]],
                false => users.chunks(500).collect(),
            };
            for batch in batches {
                let group = public.take();
                ctx.call_in(region, "ec2:ModifySnapshotAttribute", || {
                    ec2.modify_snapshot_attribute()
                        .snapshot_id(id)
                        .attribute(SnapshotAttributeName::CreateVolumePermission)
                        .operation_type(OperationType::Remove)
                        .set_user_ids(Some(batch.to_vec()).filter(|u| !u.is_empty()))
                        .set_group_names(group.clone())
                        .dry_run(dry_run)
                        .send()
                })
                .await?;
            }
            Ok(())
        }
        Shared::Image => {
            let permissions: Vec<LaunchPermission> = grants
                .iter()
                .map(|g| match g {
                    Grant::Public => LaunchPermission::builder()
                        .group(PermissionGroup::All)
                        .build(),
                    Grant::Account(a) => LaunchPermission::builder().user_id(a).build(),
                    Grant::Organization(o) => {
                        LaunchPermission::builder().organization_arn(o).build()
                    }
                    Grant::OrganizationalUnit(o) => LaunchPermission::builder()
                        .organizational_unit_arn(o)
                        .build(),
                })
                .collect();
            let change = LaunchPermissionModifications::builder();
            let change = change.set_remove(Some(permissions)).build();
            ctx.call_in(region, "ec2:ModifyImageAttribute", || {
                ec2.modify_image_attribute()
                    .image_id(id)
                    .launch_permission(change.clone())
                    .dry_run(dry_run)
                    .send()
            })
            .await
            .map(|_| ())
        }
    }
}

/// Removes the grants a snapshot or image was found with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoveSharing {
    pub region: String,
    pub what: Shared,
    pub id: String,
    pub grants: Vec<Grant>,
}

impl RemoveSharing {
    fn operation(&self) -> &'static str {
        match self.what {
            Shared::Snapshot => "ec2:ModifySnapshotAttribute CreateVolumePermission.Remove",
            Shared::Image => "ec2:ModifyImageAttribute LaunchPermission.Remove",
        }
    }
}

impl Call for RemoveSharing {
    fn describe(&self) -> String {
        format!("{} {} [{}]", self.operation(), self.id, list(&self.grants))
    }

    fn drift(&self) -> String {
        format!("is shared with {}", list(&self.grants))
    }

    async fn dry_run(&self, ctx: &Ctx) -> Option<Result<(), AwsError>> {
        let Self {
            region,
            what,
            id,
            grants,
        } = self;
        Some(remove(ctx, region, *what, id, grants, true).await)
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self {
            region, what, id, ..
        } = self;
        let removed = remove(ctx, region, *what, id, &self.grants, false).await;
        match removed {
            Ok(()) => Ok(None),
            // After a lost answer the retry may meet grants already gone,
            // which AWS does not document as harmless: what counts is that
            // none of them remains.
            Err(e) => {
                let now = grants(ctx, region, *what, id).await?;
                match self.grants.iter().any(|g| now.contains(g)) {
                    true => Err(e),
                    false => Ok(None),
                }
            }
        }
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        // Shares found during an incident are the attacker's until shown
        // otherwise, as keys are compromised until shown otherwise: rollback
        // restores none and says how to, grant by grant.
        let operation = match self.what {
            Shared::Snapshot => "ec2:ModifySnapshotAttribute CreateVolumePermission.Add",
            Shared::Image => "ec2:ModifyImageAttribute LaunchPermission.Add",
        };
        Inverse::Kept {
            why: format!(
                "not shared again (the grants may be the attacker's): {operation} {} [{}] by hand for those that were legitimate",
                self.id,
                list(&self.grants)
            ),
        }
    }
}
