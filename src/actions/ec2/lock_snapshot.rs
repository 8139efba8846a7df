//! Locking a snapshot against deletion, and unlocking a governance lock.

use super::*;
use crate::actions::call::{Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockSnapshot {
    pub region: String,
    pub snapshot_id: String,
    pub mode: LockModeSpec,
    pub duration_days: u32,
    /// Compliance only: hours in which the lock can still be lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cool_off_hours: Option<u32>,
}

impl Call for LockSnapshot {
    fn describe(&self) -> String {
        let Self {
            snapshot_id,
            mode,
            duration_days,
            cool_off_hours,
            ..
        } = self;
        let cool_off = cool_off_hours
            .map(|h| format!(" CoolOffPeriod={h}"))
            .unwrap_or_default();
        format!(
            "ec2:LockSnapshot SnapshotId={snapshot_id} LockMode={} LockDuration={duration_days}{cool_off}",
            lock_mode(*mode).as_str()
        )
    }

    fn drift(&self) -> String {
        "is not locked".into()
    }

    async fn dry_run(&self, ctx: &Ctx) -> Option<Result<(), AwsError>> {
        let r = {
            let Self {
                region,
                snapshot_id,
                mode,
                duration_days,
                cool_off_hours,
            } = self;
            let call = lock_call(
                &ctx.clients.ec2(region),
                snapshot_id,
                *mode,
                *duration_days,
                *cool_off_hours,
            )
            .dry_run(true);
            ctx.call_in(region, "ec2:LockSnapshot", || call.clone().send())
                .await
                .map(|_| ())
        };
        Some(r)
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self {
            region,
            snapshot_id,
            mode,
            duration_days,
            cool_off_hours,
        } = self;
        let ec2 = ctx.clients.ec2(region);
        let out = ctx
            .call_in(region, "ec2:LockSnapshot", || {
                lock_call(&ec2, snapshot_id, *mode, *duration_days, *cool_off_hours).send()
            })
            .await?;
        Ok(Some(serde_json::json!({
            "lock_state": out.lock_state().map(|s| s.as_str()),
            "lock_expires_on": out.lock_expires_on().map(|t| t.to_string()),
        })))
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        let undo = Inverse::Undo;
        let Self {
            region,
            snapshot_id,
            mode,
            cool_off_hours,
            ..
        } = self;
        match (mode, cool_off_hours) {
            // Within the cool-off a compliance lock can still be lifted; the
            // undo's check refuses once it is over.
            (LockModeSpec::Governance, _) | (LockModeSpec::Compliance, Some(_)) => {
                undo(Undo::UnlockSnapshot(UnlockSnapshot {
                    region: region.clone(),
                    snapshot_id: snapshot_id.clone(),
                }))
            }
            (LockModeSpec::Compliance, None) => Inverse::Irreversible {
                why: "a compliance-mode lock lasts until it expires".into(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnlockSnapshot {
    pub region: String,
    pub snapshot_id: String,
}

impl Revert for UnlockSnapshot {
    fn describe(&self) -> String {
        let Self { snapshot_id, .. } = self;
        format!("ec2:UnlockSnapshot SnapshotId={snapshot_id}")
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let Self {
            region,
            snapshot_id,
        } = self;
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
            Some("governance" | "compliance-cooloff") => Check::Ready,
            Some("compliance") => Check::Conflict(
                "locked in compliance mode past any cool-off: nobody can unlock it before it expires".into(),
            ),
            None | Some("expired") => Check::Done("not locked".into()),
            Some(other) => Check::Conflict(format!("now locked in {other} mode")),
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let Self {
            region,
            snapshot_id,
        } = self;
        let ec2 = ctx.clients.ec2(region);
        ctx.call_in(region, "ec2:UnlockSnapshot", || {
            ec2.unlock_snapshot().snapshot_id(snapshot_id).send()
        })
        .await
        .map(|_| ())
    }
}
