//! `ec2.block_public_sharing`: turns on the account-level "block public
//! access" settings for EBS snapshots and AMIs in each region, so that an
//! attacker (or a hurried insider) cannot publish the account's disks and
//! images to the world (Stratus `aws.exfiltration.ec2-share-ebs-snapshot`
//! with `group=all`). This file is the whole action: its catalog entry, its
//! discovery, its call and its undo.
//!
//! AWS behaviour relied on (Amazon EC2 API reference):
//! - `EnableSnapshotBlockPublicAccess` takes `block-all-sharing` ("snapshots
//!   that are already publicly shared are treated as private", though their
//!   attributes still say public) or `block-new-sharing` (only new public
//!   sharing is refused). "If block public access is enabled in
//!   block-all-sharing mode, and you change the mode to block-new-sharing,
//!   all snapshots that were previously publicly shared ... become publicly
//!   accessible again": so a stricter setting is never lowered.
//! - `EnableImageBlockPublicAccess` has one mode, `block-new-sharing`: AMIs
//!   already public stay public (`ec2.unshare` takes those grants back).
//! - `Get{Snapshot,Image}BlockPublicAccessState` give the state and
//!   `ManagedBy`: `declarative-policy` "is managed by a declarative policy
//!   and can't be modified by the account".
//! - All of them take `DryRun`; enabling a state already set is accepted,
//!   so a retry after a lost answer is harmless.
//! - The AMI setting "can take up to 10 minutes" to take effect after
//!   `Enable`/`DisableImageBlockPublicAccess` (EC2 API reference), and its
//!   state reads the old value until then: a read-back right after a run
//!   may still see it unblocked (verify later), and a rollback that soon
//!   says to run again once it shows.

use aws_sdk_ec2::types::{
    ImageBlockPublicAccessEnabledState, ManagedBy, SnapshotBlockPublicAccessState,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::actions::call::{Call, Inverse, Inverting, Revert};
use crate::actions::regions::{each_region, target_in};
use crate::actions::undo::{Check, Undo};
use crate::actions::{
    Action, ActionInfo, BoundStep, Ctx, Disposition, Op, Planned, Reversibility, Runs, Sink,
};
use crate::aws::AwsError;
use crate::targets::Resource;

const UNBLOCKED: &str = "unblocked";
const BLOCK_NEW: &str = "block-new-sharing";
const BLOCK_ALL: &str = "block-all-sharing";

/// How much a state blocks: a setting is only ever raised.
fn strength(state: &str) -> u8 {
    match state {
        BLOCK_ALL => 2,
        BLOCK_NEW => 1,
        _ => 0,
    }
}

/// What the step sets for snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotBlock {
    /// No new public shares, and snapshots already public are treated as
    /// private.
    #[default]
    BlockAllSharing,
    /// No new public shares; snapshots already public stay public.
    BlockNewSharing,
    /// Leave the snapshot setting as it is.
    Leave,
}

/// `with:` of `ec2.block_public_sharing`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockPublicSharingParams {
    /// `block-all-sharing` (default), `block-new-sharing` or `leave`.
    #[serde(default)]
    pub snapshots: SnapshotBlock,
    /// Block new public sharing of AMIs (the only mode AWS offers; default true).
    #[serde(default = "yes")]
    pub images: bool,
}

impl Default for BlockPublicSharingParams {
    fn default() -> Self {
        BlockPublicSharingParams {
            snapshots: SnapshotBlock::default(),
            images: true,
        }
    }
}

fn yes() -> bool {
    true
}

pub struct BlockPublicSharing;

impl Action for BlockPublicSharing {
    const INFO: ActionInfo = ActionInfo {
        id: "ec2.block_public_sharing",
        summary: "Turn on block public access for EBS snapshots and AMIs in each region.",
        targets: &[],
        params: &[
            (
                "snapshots",
                "block-all-sharing (default: already public snapshots turn private too), block-new-sharing, or leave",
            ),
            (
                "images",
                "block new public sharing of AMIs (default true; AWS has no stronger mode)",
            ),
        ],
        calls: &[
            "ec2:EnableSnapshotBlockPublicAccess",
            "ec2:EnableImageBlockPublicAccess",
        ],
        reversibility: Reversibility::Reversible(
            "puts each region's prior setting back (Disable…BlockPublicAccess, or the milder mode it had)",
        ),
        notes: &[
            "block-all-sharing hides snapshots already shared publicly (their attributes still say public); block-new-sharing and the AMI setting only stop new public shares: run ec2.unshare for those.",
            "A stricter setting is never lowered: going from block-all-sharing to block-new-sharing makes every publicly shared snapshot public again.",
            "A setting managed by an EC2 declarative policy cannot be changed from the account: reported failed, for the organization's admins.",
            "The AMI setting takes up to 10 minutes to show after it is enabled: a read-back right after the run may still report it.",
            "Shares with named accounts are not public: this does not stop them (ec2.unshare does).",
        ],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = BlockPublicSharingParams;

    fn check(p: &BlockPublicSharingParams) -> Result<(), String> {
        match (p.snapshots, p.images) {
            (SnapshotBlock::Leave, false) => {
                Err("`snapshots: leave` with `images: false` blocks nothing".into())
            }
            _ => Ok(()),
        }
    }

    async fn discover(
        ctx: &Ctx,
        _step: &BoundStep,
        p: &BlockPublicSharingParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        let plan = |region: String| async move {
            plan_region(ctx, &region, p, sink).await?;
            Ok(Default::default())
        };
        each_region(ctx, sink, "setting", &[], plan).await;
        let mut notes = Vec::new();
        if p.snapshots == SnapshotBlock::BlockNewSharing || p.images {
            notes.push("Snapshots (with block-new-sharing) and AMIs already shared publicly stay public: ec2.unshare takes those grants back.".into());
        }
        Ok(notes)
    }
}

/// Which account-level setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shared {
    Snapshots,
    Images,
}

impl Shared {
    fn label(self) -> &'static str {
        match self {
            Shared::Snapshots => "snapshot block public access",
            Shared::Images => "AMI block public access",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Shared::Snapshots => "Snapshot",
            Shared::Images => "Image",
        }
    }
}

/// Plans one region's two settings.
async fn plan_region(
    ctx: &Ctx,
    region: &str,
    p: &BlockPublicSharingParams,
    sink: &Sink,
) -> Result<(), AwsError> {
    let mut wanted = Vec::new();
    match p.snapshots {
        SnapshotBlock::BlockAllSharing => wanted.push((Shared::Snapshots, BLOCK_ALL)),
        SnapshotBlock::BlockNewSharing => wanted.push((Shared::Snapshots, BLOCK_NEW)),
        SnapshotBlock::Leave => {}
    }
    if p.images {
        wanted.push((Shared::Images, BLOCK_NEW));
    }
    for (what, want) in wanted {
        let (now, managed) = read(ctx, region, what).await?;
        let disposition = if strength(&now) >= strength(want) {
            Disposition::Unchanged {
                reason: format!("already {now}"),
            }
        } else if managed {
            Disposition::OutOfReach {
                reason: format!(
                    "{now}, and managed by an EC2 declarative policy: the account cannot change it; the organization's management account can, in that policy"
                ),
            }
        } else {
            Disposition::Change {
                op: Op::BlockPublicSharing(BlockPublicSharingCall {
                    region: region.to_string(),
                    what,
                    state: want.to_string(),
                    prior: now,
                }),
            }
        };
        sink.emit(Planned {
            target: target_in(
                ctx,
                region,
                Resource::Named {
                    kind: what.label().into(),
                    id: region.to_string(),
                },
            ),
            disposition,
        });
    }
    Ok(())
}

/// A setting's state, and whether a declarative policy manages it.
async fn read(ctx: &Ctx, region: &str, what: Shared) -> Result<(String, bool), AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let declarative = |m: Option<&ManagedBy>| m == Some(&ManagedBy::DeclarativePolicy);
    Ok(match what {
        Shared::Snapshots => {
            let out = ctx
                .call_in(region, "ec2:GetSnapshotBlockPublicAccessState", || {
                    ec2.get_snapshot_block_public_access_state().send()
                })
                .await?;
            let state = out.state().map_or(UNBLOCKED, |s| s.as_str());
            (state.to_string(), declarative(out.managed_by()))
        }
        Shared::Images => {
            let out = ctx
                .call_in(region, "ec2:GetImageBlockPublicAccessState", || {
                    ec2.get_image_block_public_access_state().send()
                })
                .await?;
            let state = out.image_block_public_access_state().unwrap_or(UNBLOCKED);
            (state.to_string(), declarative(out.managed_by()))
        }
    })
}

/// Sets one setting to `state` (`unblocked` disables it).
async fn set(
    ctx: &Ctx,
    region: &str,
    what: Shared,
    state: &str,
    dry: bool,
) -> Result<(), AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let name = format!(
        "ec2:{}{}BlockPublicAccess",
        if state == UNBLOCKED {
            "Disable"
        } else {
            "Enable"
        },
        what.noun()
    );
    match (what, state) {
        (Shared::Snapshots, UNBLOCKED) => {
            let call = ec2.disable_snapshot_block_public_access().dry_run(dry);
            ctx.call_in(region, &name, || call.clone().send())
                .await
                .map(|_| ())
        }
        (Shared::Snapshots, state) => {
            let call = ec2
                .enable_snapshot_block_public_access()
                .state(SnapshotBlockPublicAccessState::from(state))
                .dry_run(dry);
            ctx.call_in(region, &name, || call.clone().send())
                .await
                .map(|_| ())
        }
        (Shared::Images, UNBLOCKED) => {
            let call = ec2.disable_image_block_public_access().dry_run(dry);
            ctx.call_in(region, &name, || call.clone().send())
                .await
                .map(|_| ())
        }
        (Shared::Images, _) => {
            let call = ec2
                .enable_image_block_public_access()
                .image_block_public_access_state(
                    ImageBlockPublicAccessEnabledState::BlockNewSharing,
                )
                .dry_run(dry);
            ctx.call_in(region, &name, || call.clone().send())
                .await
                .map(|_| ())
        }
    }
}

/// Raises one region's setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockPublicSharingCall {
    pub region: String,
    pub what: Shared,
    /// The state set.
    pub state: String,
    /// The state before the run, put back at rollback.
    pub prior: String,
}

impl Call for BlockPublicSharingCall {
    fn describe(&self) -> String {
        let Self {
            region,
            what,
            state,
            prior,
        } = self;
        format!(
            "ec2:Enable{}BlockPublicAccess State={state} (in {region}; was {prior})",
            what.noun()
        )
    }

    fn drift(&self) -> String {
        match self.what {
            Shared::Snapshots => format!("{} is {}", self.what.label(), self.prior),
            Shared::Images => format!(
                "{} is {} (an enable takes up to 10 minutes to show: check again)",
                self.what.label(),
                self.prior
            ),
        }
    }

    async fn dry_run(&self, ctx: &Ctx) -> Option<Result<(), AwsError>> {
        Some(set(ctx, &self.region, self.what, &self.state, true).await)
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        set(ctx, &self.region, self.what, &self.state, false).await?;
        Ok(None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Undo(Undo::RestorePublicSharing(RestorePublicSharing {
            region: self.region.clone(),
            what: self.what,
            set: self.state.clone(),
            prior: self.prior.clone(),
        }))
    }
}

/// Puts a region's setting back as it was before the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePublicSharing {
    pub region: String,
    pub what: Shared,
    /// What the run set: anything else now was set by someone since, and
    /// is left alone.
    pub set: String,
    pub prior: String,
}

impl Revert for RestorePublicSharing {
    fn describe(&self) -> String {
        let Self {
            region,
            what,
            prior,
            ..
        } = self;
        let exposed = match (what, self.set.as_str()) {
            (Shared::Snapshots, BLOCK_ALL) => {
                ": snapshots shared publicly before become public again"
            }
            _ => "",
        };
        match prior.as_str() {
            UNBLOCKED => format!(
                "ec2:Disable{}BlockPublicAccess (in {region}){exposed}",
                what.noun()
            ),
            p => format!(
                "ec2:Enable{}BlockPublicAccess State={p} (in {region}, the setting it had){exposed}",
                what.noun()
            ),
        }
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let (now, managed) = read(ctx, &self.region, self.what).await?;
        Ok(if now == self.prior && self.what == Shared::Images {
            // The run's enable may not show yet: said, and a later rollback
            // (which then reads what the run set) undoes it.
            Check::Done(format!(
                "reads {now}, as before the run; an enable takes up to 10 minutes to show: if the run was less than 10 minutes ago, run this rollback again after that"
            ))
        } else if now == self.prior {
            Check::Done(format!("already {now}"))
        } else if now != self.set {
            Check::Conflict(format!(
                "it is now {now}, not what the run set ({})",
                self.set
            ))
        } else if managed {
            Check::Conflict("now managed by an EC2 declarative policy".into())
        } else {
            Check::Ready
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        set(ctx, &self.region, self.what, &self.prior, false).await
    }
}
