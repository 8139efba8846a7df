//! `backup.lock_vaults`: the Code Spaces lesson is that an intruder with
//! admin rights deletes the backups first. AWS Backup Vault Lock refuses the
//! deletion of recovery points before their minimum retention, for anyone,
//! the root user included. This file is the whole action: its catalog
//! entry, its discovery, its call and the undo of a governance lock.
//!
//! AWS behaviour relied on (AWS Backup API reference and Developer Guide,
//! "AWS Backup Vault Lock"):
//! - `PutBackupVaultLockConfiguration` with no `ChangeableForDays` puts the
//!   vault in governance mode: users with the permission can remove the
//!   lock (`DeleteBackupVaultLockConfiguration`) at any time.
//! - With `ChangeableForDays` (at least 3) the lock is in compliance mode:
//!   after that grace time "the vault lock configuration becomes immutable
//!   and cannot be changed or deleted", even by the root user.
//! - A lock prevents "attempts to delete any recovery point stored in or
//!   created in a backup vault" and to shorten their lifecycle
//!   (PutBackupVaultLockConfiguration). `MinRetentionDays` and
//!   `MaxRetentionDays` are optional and bound only future backup and copy
//!   jobs: a job whose retention is shorter than the minimum fails.
//! - `ListBackupVaults` gives each vault's `Locked`, `MinRetentionDays`,
//!   `MaxRetentionDays` and `LockDate`.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::call::{Call, Inverse, Inverting, Revert};
use super::regions::{each_region, target_in};
use super::undo::{Check, Undo};
use super::{
    Action, ActionInfo, BoundStep, Ctx, Disposition, Op, Planned, Reversibility, Runs, Sink,
};
use crate::aws::{AwsError, ErrorKind};
use crate::targets::Resource;

/// Whether the lock can still be lifted, as the playbook must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VaultLockMode {
    /// No `ChangeableForDays`: anyone allowed
    /// `backup:DeleteBackupVaultLockConfiguration` can lift it.
    Governance,
    /// Immutable once `changeable_for_days` have passed, for everyone.
    Compliance,
}

/// `with:` of `backup.lock_vaults`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockVaultsParams {
    /// governance (can be lifted) or compliance (immutable after
    /// `changeable_for_days`): required, so the playbook says which.
    pub mode: VaultLockMode,
    /// The shortest retention future backups may have (optional: the lock
    /// protects what the vault holds without it).
    #[serde(default)]
    pub min_retention_days: Option<u32>,
    /// The longest retention a recovery point may have (optional).
    #[serde(default)]
    pub max_retention_days: Option<u32>,
    /// Compliance only: days (at least 3) during which the lock can still
    /// be removed; afterwards it is immutable.
    #[serde(default)]
    pub changeable_for_days: Option<u32>,
    /// Vault names. Empty: every vault in the selected regions.
    #[serde(default)]
    pub vaults: Vec<String>,
}

pub struct LockVaults;

impl Action for LockVaults {
    const INFO: ActionInfo = ActionInfo {
        id: "backup.lock_vaults",
        summary: "Lock AWS Backup vaults so no recovery point can be deleted before its minimum retention.",
        targets: &[],
        params: &[
            (
                "mode",
                "governance (can be lifted) or compliance (immutable after changeable_for_days)",
            ),
            (
                "min_retention_days",
                "the shortest retention future backups may have (optional)",
            ),
            (
                "max_retention_days",
                "the longest retention allowed (optional)",
            ),
            (
                "changeable_for_days",
                "compliance only: the grace time, at least 3 days",
            ),
            (
                "vaults",
                "vault names (default: every vault in the selected regions)",
            ),
        ],
        calls: &["backup:PutBackupVaultLockConfiguration"],
        reversibility: Reversibility::Reversible(
            "governance: DeleteBackupVaultLockConfiguration (or the prior lock put back); compliance: irreversible",
        ),
        notes: &[
            "Governance locks can be lifted by anyone allowed backup:DeleteBackupVaultLockConfiguration, the management account's admins included (no SCP binds them).",
            "A compliance lock becomes immutable for everyone, the root user included, once changeable_for_days pass: write it on purpose.",
            "A locked vault refuses the deletion of its recovery points and any shortening of their lifecycle.",
            "A minimum retention longer than a backup plan's lifecycle makes that plan's new backups fail: leave it out unless you know the plans.",
        ],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = LockVaultsParams;

    fn check(p: &LockVaultsParams) -> Result<(), String> {
        if let Some(min) = p.min_retention_days
            && !(1..=36500).contains(&min)
        {
            return Err(format!("min_retention_days {min} is outside 1..36500"));
        }
        if let Some(max) = p.max_retention_days
            && (max < p.min_retention_days.unwrap_or(1) || max > 36500)
        {
            return Err(format!(
                "max_retention_days {max} is below min_retention_days or above 36500"
            ));
        }
        match (p.mode, p.changeable_for_days) {
            (VaultLockMode::Governance, Some(_)) => Err(
                "changeable_for_days makes a compliance lock: write `mode: compliance`, or drop it for governance".into(),
            ),
            (VaultLockMode::Compliance, None) => Err(
                "a compliance lock needs changeable_for_days (at least 3): the days it can still be removed".into(),
            ),
            (VaultLockMode::Compliance, Some(d)) if d < 3 => {
                Err(format!("changeable_for_days {d} is below AWS's minimum of 3"))
            }
            _ => Ok(()),
        }
    }

    fn irreversible(p: &LockVaultsParams) -> Option<&'static str> {
        (p.mode == VaultLockMode::Compliance).then_some(
            "a compliance vault lock becomes immutable, for the root user too, once changeable_for_days pass",
        )
    }

    fn names_subjects(p: &LockVaultsParams) -> bool {
        !p.vaults.is_empty()
    }

    async fn discover(
        ctx: &Ctx,
        _step: &BoundStep,
        p: &LockVaultsParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        let plan = |region: String| async move { plan_region(ctx, &region, p, sink).await };
        each_region(ctx, sink, VAULT, &p.vaults, plan).await;
        Ok(Vec::new())
    }
}

/// What a vault is called in targets and messages.
const VAULT: &str = "backup vault";

fn vault(name: &str) -> Resource {
    Resource::Named {
        kind: VAULT.into(),
        id: name.to_string(),
    }
}

/// A vault's lock as AWS reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultLock {
    pub min_retention_days: Option<i64>,
    pub max_retention_days: Option<i64>,
    /// When a compliance lock becomes immutable (RFC 3339); none for governance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_date: Option<String>,
    /// The lock date has passed: nobody can change or remove the lock.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immutable: bool,
}

/// A vault: its name, its ARN, and its lock (`None`: unlocked).
type Vault = (String, String, Option<VaultLock>);

/// A lock as `ListBackupVaults` and `DescribeBackupVault` report it.
fn lock_of(
    min_retention_days: Option<i64>,
    max_retention_days: Option<i64>,
    lock_date: Option<&aws_sdk_backup::primitives::DateTime>,
) -> VaultLock {
    let now = jiff::Timestamp::now().as_second();
    VaultLock {
        min_retention_days,
        max_retention_days,
        lock_date: lock_date.map(|d| d.to_string()),
        immutable: lock_date.is_some_and(|d| d.secs() <= now),
    }
}

/// Every vault in `region`.
async fn vaults(ctx: &Ctx, region: &str) -> Result<Vec<Vault>, AwsError> {
    let backup = ctx.clients.backup(region);
    let pages = ctx
        .pages(
            Some(region),
            "backup:ListBackupVaults",
            |token| backup.list_backup_vaults().set_next_token(token).send(),
            |p| p.next_token().map(str::to_string),
        )
        .await?;
    Ok(pages
        .iter()
        .flat_map(|p| p.backup_vault_list())
        .filter_map(|v| {
            let name = v.backup_vault_name()?.to_string();
            let arn = v.backup_vault_arn().unwrap_or_default().to_string();
            let lock = (v.locked() == Some(true)).then(|| {
                lock_of(
                    v.min_retention_days(),
                    v.max_retention_days(),
                    v.lock_date(),
                )
            });
            Some((name, arn, lock))
        })
        .collect())
}

/// Plans one region's vaults; returns the names found there.
async fn plan_region(
    ctx: &Ctx,
    region: &str,
    p: &LockVaultsParams,
    sink: &Sink,
) -> Result<BTreeSet<String>, AwsError> {
    let mut names = BTreeSet::new();
    for (name, arn, lock) in vaults(ctx, region).await? {
        if !p.vaults.is_empty() && !p.vaults.contains(&name) {
            continue;
        }
        let min = p.min_retention_days.map(i64::from);
        let disposition = match &lock {
            // A compliance lock is kept as it is: past its lock date nobody
            // can change it (AWS would refuse the call on every run), and
            // before it, replacing it could only make it weaker or reset
            // its date.
            Some(l) if l.lock_date.is_some() => Disposition::Unchanged {
                reason: format!(
                    "compliance lock, immutable {} {}",
                    if l.immutable { "since" } else { "from" },
                    l.lock_date.as_deref().unwrap_or("its lock date")
                ),
            },
            // A lock at least as strong stays as it is: weakening it is not
            // containment. A governance lock is not as strong as the
            // compliance lock the playbook asks for: it can be lifted.
            Some(l)
                if min.is_none_or(|m| l.min_retention_days.is_some_and(|now| now >= m))
                    && p.mode == VaultLockMode::Governance =>
            {
                Disposition::Unchanged {
                    reason: match l.min_retention_days {
                        Some(m) => format!("locked, minimum retention {m} days"),
                        None => "locked".into(),
                    },
                }
            }
            _ => Disposition::Change {
                op: Op::LockVault(LockVault {
                    region: region.to_string(),
                    vault: name.clone(),
                    vault_arn: arn,
                    mode: p.mode,
                    min_retention_days: min,
                    max_retention_days: p.max_retention_days.map(i64::from),
                    changeable_for_days: p.changeable_for_days.map(i64::from),
                    prior: lock.clone(),
                }),
            },
        };
        sink.emit(Planned {
            target: target_in(ctx, region, vault(&name)),
            disposition,
        });
        names.insert(name);
    }
    Ok(names)
}

/// `PutBackupVaultLockConfiguration` on one vault, with the lock it had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockVault {
    pub region: String,
    pub vault: String,
    /// What the permission check asks about.
    pub vault_arn: String,
    pub mode: VaultLockMode,
    pub min_retention_days: Option<i64>,
    pub max_retention_days: Option<i64>,
    pub changeable_for_days: Option<i64>,
    /// The lock before the run (`None`: unlocked).
    pub prior: Option<VaultLock>,
}

impl Call for LockVault {
    fn describe(&self) -> String {
        let mut text = format!(
            "backup:PutBackupVaultLockConfiguration BackupVaultName={}",
            self.vault
        );
        if let Some(min) = self.min_retention_days {
            text.push_str(&format!(" MinRetentionDays={min}"));
        }
        if let Some(max) = self.max_retention_days {
            text.push_str(&format!(" MaxRetentionDays={max}"));
        }
        if let Some(days) = self.changeable_for_days {
            text.push_str(&format!(
                " ChangeableForDays={days} (COMPLIANCE: immutable after that)"
            ));
        }
        text
    }

    fn drift(&self) -> String {
        match &self.prior {
            None => "is not locked".into(),
            Some(l) if l.lock_date.is_none() && self.mode == VaultLockMode::Compliance => {
                "has a governance lock, which can be lifted".into()
            }
            Some(l) => format!(
                "is locked with a minimum retention of {}",
                l.min_retention_days
                    .map_or("none".to_string(), |m| format!("{m} days"))
            ),
        }
    }

    fn permission_checks(&self, _arn_of: &super::call::ArnOf) -> Vec<(&'static str, String)> {
        vec![(
            "backup:PutBackupVaultLockConfiguration",
            self.vault_arn.clone(),
        )]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let backup = ctx.clients.backup(&self.region);
        // It sets the whole configuration: a retry after a lost answer puts
        // the same one.
        ctx.call_in(
            &self.region,
            "backup:PutBackupVaultLockConfiguration",
            || {
                backup
                    .put_backup_vault_lock_configuration()
                    .backup_vault_name(&self.vault)
                    .set_min_retention_days(self.min_retention_days)
                    .set_max_retention_days(self.max_retention_days)
                    .set_changeable_for_days(self.changeable_for_days)
                    .send()
            },
        )
        .await
        .map(|_| None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        // A compliance lock can still be removed before its lock date
        // (DeleteBackupVaultLockConfiguration, AWS Backup Developer Guide):
        // the undo's check refuses once it has become immutable.
        Inverse::Undo(Undo::RestoreVaultLock(RestoreVaultLock {
            region: self.region.clone(),
            vault: self.vault.clone(),
            min_retention_days: self.min_retention_days,
            prior: self.prior.clone(),
        }))
    }
}

/// Puts back the vault's lock as it was before the run: none, or its own
/// governance lock (a compliance lock still in its grace time is never
/// replaced, so it is never the prior one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreVaultLock {
    pub region: String,
    pub vault: String,
    /// The minimum retention the run set: a different one now means someone
    /// changed the lock since, and it is left alone.
    pub min_retention_days: Option<i64>,
    pub prior: Option<VaultLock>,
}

impl Revert for RestoreVaultLock {
    fn describe(&self) -> String {
        match &self.prior {
            None => format!(
                "backup:DeleteBackupVaultLockConfiguration BackupVaultName={}",
                self.vault
            ),
            Some(l) => format!(
                "backup:PutBackupVaultLockConfiguration BackupVaultName={}{} (the lock it had)",
                self.vault,
                l.min_retention_days
                    .map(|m| format!(" MinRetentionDays={m}"))
                    .unwrap_or_default()
            ),
        }
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let backup = ctx.clients.backup(&self.region);
        let described = ctx
            .call_in(&self.region, "backup:DescribeBackupVault", || {
                backup
                    .describe_backup_vault()
                    .backup_vault_name(&self.vault)
                    .send()
            })
            .await;
        let v = match described {
            Err(e) if e.kind == ErrorKind::NotFound => {
                return Ok(Check::Conflict(format!("vault {} is gone", self.vault)));
            }
            other => other?,
        };
        let lock = (v.locked() == Some(true)).then(|| {
            lock_of(
                v.min_retention_days(),
                v.max_retention_days(),
                v.lock_date(),
            )
        });
        Ok(match lock {
            None if self.prior.is_none() => Check::Done("not locked".into()),
            Some(l) if l.immutable => Check::Conflict(format!(
                "a compliance lock, immutable since {}: nobody can remove it",
                l.lock_date.as_deref().unwrap_or("its lock date")
            )),
            Some(l) if l.min_retention_days != self.min_retention_days => Check::Conflict(format!(
                "its lock was changed since the run (minimum retention {} days)",
                l.min_retention_days.unwrap_or(0)
            )),
            _ => Check::Ready,
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let backup = ctx.clients.backup(&self.region);
        match &self.prior {
            None => ctx
                .call_in(
                    &self.region,
                    "backup:DeleteBackupVaultLockConfiguration",
                    || {
                        backup
                            .delete_backup_vault_lock_configuration()
                            .backup_vault_name(&self.vault)
                            .send()
                    },
                )
                .await
                .map(|_| ()),
            Some(l) => ctx
                .call_in(
                    &self.region,
                    "backup:PutBackupVaultLockConfiguration",
                    || {
                        backup
                            .put_backup_vault_lock_configuration()
                            .backup_vault_name(&self.vault)
                            .set_min_retention_days(l.min_retention_days)
                            .set_max_retention_days(l.max_retention_days)
                            .send()
                    },
                )
                .await
                .map(|_| ()),
        }
    }
}
