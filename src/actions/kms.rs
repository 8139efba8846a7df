//! `kms.cancel_key_deletion`: an attacker who schedules a customer managed
//! key for deletion holds every ciphertext under it to ransom; when the
//! waiting period ends the data is gone for good. This file is the whole
//! action: its catalog entry, its discovery and its one call.
//!
//! AWS behaviour relied on (AWS KMS API reference):
//! - `CancelKeyDeletion`: "When this operation succeeds, the key state of
//!   the KMS key is `Disabled`. To enable the KMS key, use `EnableKey`."
//!   It is refused with `KMSInvalidStateException` for a key that is not
//!   pending deletion, which is what a retry meets once the first call was
//!   made and its answer lost: the key is then read, not assumed.
//! - `ScheduleKeyDeletion` sets `PendingDeletion` (a multi-Region replica
//!   may show `PendingReplicaDeletion`), with a waiting period of 7 to 30
//!   days; AWS managed keys cannot be scheduled, so only customer managed
//!   keys are considered.
//! - `ListKeys` gives ids and ARNs only; the state is in `DescribeKey`.

use std::collections::BTreeSet;

use futures_util::{StreamExt, stream};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::call::{ArnOf, Call, Inverse, Inverting};
use super::regions::{each_region, target_in};
use super::{Action, ActionInfo, BoundStep, Ctx, Disposition, Planned, Reversibility, Runs, Sink};
use crate::aws::{AwsError, local};
use crate::targets::Resource;

/// States a key waiting to be deleted is in.
const PENDING: [&str; 2] = ["PendingDeletion", "PendingReplicaDeletion"];

/// `with:` of `kms.cancel_key_deletion`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelKeyDeletionParams {
    /// Key ids or key ARNs. Empty: every customer managed key pending
    /// deletion in the selected regions.
    #[serde(default)]
    pub keys: Vec<String>,
}

pub struct CancelKeyDeletions;

impl Action for CancelKeyDeletions {
    const INFO: ActionInfo = ActionInfo {
        id: "kms.cancel_key_deletion",
        summary: "Cancel the scheduled deletion of KMS keys, then enable them (cancelling leaves a key Disabled).",
        targets: &[],
        params: &[(
            "keys",
            "key ids or ARNs (default: every customer managed key pending deletion)",
        )],
        calls: &["kms:CancelKeyDeletion", "kms:EnableKey"],
        reversibility: Reversibility::Reversible(
            "kept: rollback never schedules a key for deletion again (ScheduleKeyDeletion by hand)",
        ),
        notes: &[
            "A key pending deletion cannot encrypt or decrypt: whatever it protects is unreadable until it is cancelled and enabled.",
            "When the waiting period (7 to 30 days) ends the key and every ciphertext under it are lost: run this first.",
            "The permission check reads the executor's IAM policies only: the key policy may still refuse it.",
            "Enabling a key gives decryption back to every principal its key policy and grants allow: check kms:ListGrants for grants the attacker added.",
        ],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = CancelKeyDeletionParams;

    fn check(p: &CancelKeyDeletionParams) -> Result<(), String> {
        // ListKeys names keys by id and ARN only: an alias would match nothing.
        let bad =
            |k: &&String| k.is_empty() || k.contains(char::is_whitespace) || k.contains("alias/");
        match p.keys.iter().find(bad) {
            Some(k) => Err(format!(
                "`{k}` is not a KMS key id or key ARN (aliases are not accepted)"
            )),
            None => Ok(()),
        }
    }

    fn names_subjects(p: &CancelKeyDeletionParams) -> bool {
        !p.keys.is_empty()
    }

    async fn discover(
        ctx: &Ctx,
        _step: &BoundStep,
        p: &CancelKeyDeletionParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        let plan = |region: String| async move { plan_region(ctx, &region, p, sink).await };
        each_region(ctx, sink, KEY, &p.keys, plan).await;
        Ok(Vec::new())
    }
}

/// What a key is called in targets and messages.
const KEY: &str = "KMS key";

fn key(id: &str) -> Resource {
    Resource::Named {
        kind: KEY.into(),
        id: id.to_string(),
    }
}

/// Plans one region's keys; returns the ids and ARNs of the named keys
/// found there.
async fn plan_region(
    ctx: &Ctx,
    region: &str,
    p: &CancelKeyDeletionParams,
    sink: &Sink,
) -> Result<BTreeSet<String>, AwsError> {
    let kms = ctx.clients.kms(region);
    let pages = ctx
        .pages(
            Some(region),
            "kms:ListKeys",
            |marker| kms.list_keys().set_marker(marker).send(),
            |page| page.next_marker().map(str::to_string),
        )
        .await?;
    let listed: Vec<(String, String)> = pages
        .iter()
        .flat_map(|page| page.keys())
        .filter_map(|k| Some((k.key_id()?.to_string(), k.key_arn()?.to_string())))
        .filter(|(id, arn)| p.keys.is_empty() || p.keys.iter().any(|k| k == id || k == arn))
        .collect();
    let named: BTreeSet<String> = listed
        .iter()
        .flat_map(|(id, arn)| [id.clone(), arn.clone()])
        .filter(|k| p.keys.contains(k))
        .collect();
    stream::iter(listed)
        .map(|(id, arn)| async move {
            let disposition = match state(ctx, region, &arn).await {
                // AWS managed keys cannot be scheduled for deletion; one the
                // playbook named is said so, the others are left out.
                Ok(None) if p.keys.is_empty() => return None,
                Ok(None) => Disposition::Unchanged {
                    reason: "AWS managed: it cannot be scheduled for deletion".into(),
                },
                Ok(Some(state)) if PENDING.contains(&state.as_str()) => Disposition::Change {
                    op: super::Op::CancelKeyDeletion(CancelKeyDeletion {
                        region: region.to_string(),
                        key_id: id.clone(),
                        key_arn: arn.clone(),
                    }),
                },
                Ok(Some(state)) if state == "Disabled" => Disposition::Unchanged {
                    reason: "Disabled, not pending deletion (enable it by hand if this run cancelled its deletion and could not enable it)".into(),
                },
                Ok(Some(state)) => Disposition::Unchanged {
                    reason: format!("{state}, not pending deletion"),
                },
                Err(error) => Disposition::Unreadable { error },
            };
            Some(Planned {
                target: target_in(ctx, region, key(&id)),
                disposition,
            })
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .for_each(|planned| {
            if let Some(planned) = planned {
                sink.emit(planned);
            }
            std::future::ready(())
        })
        .await;
    Ok(named)
}

/// A customer managed key's state (`None` for an AWS managed key).
async fn state(ctx: &Ctx, region: &str, arn: &str) -> Result<Option<String>, AwsError> {
    let kms = ctx.clients.kms(region);
    let out = ctx
        .call_in(region, "kms:DescribeKey", || {
            kms.describe_key().key_id(arn).send()
        })
        .await?;
    let meta = out
        .key_metadata()
        .ok_or_else(|| local("kms:DescribeKey", format!("no metadata for {arn}")))?;
    if meta.key_manager() == Some(&aws_sdk_kms::types::KeyManagerType::Aws) {
        return Ok(None);
    }
    Ok(meta.key_state().map(|s| s.as_str().to_string()))
}

/// `CancelKeyDeletion`, then `EnableKey`, on one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelKeyDeletion {
    pub region: String,
    /// What the calls name: AWS takes an id or an ARN, and the id is
    /// what every emulator resolves too.
    pub key_id: String,
    /// What the permission check and the plan name.
    pub key_arn: String,
}

impl Call for CancelKeyDeletion {
    fn describe(&self) -> String {
        let Self {
            region, key_arn, ..
        } = self;
        format!("kms:CancelKeyDeletion KeyId={key_arn}, then kms:EnableKey (in {region})")
    }

    fn drift(&self) -> String {
        "is pending deletion".into()
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![
            ("kms:CancelKeyDeletion", self.key_arn.clone()),
            ("kms:EnableKey", self.key_arn.clone()),
        ]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self { region, key_id, .. } = self;
        let kms = ctx.clients.kms(region);
        let cancelled = ctx
            .call_in(region, "kms:CancelKeyDeletion", || {
                kms.cancel_key_deletion().key_id(key_id).send()
            })
            .await;
        if let Err(e) = cancelled {
            // Refused as not pending deletion: an earlier try whose answer
            // was lost may have cancelled it. The key's state decides, read
            // a few times, since KMS is eventually consistent.
            if e.code.as_deref() != Some("KMSInvalidStateException") {
                return Err(e);
            }
            let mut saved = false;
            for wait in [0, 500, 1000, 2000] {
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                let now = state(ctx, region, key_id).await?;
                if now.as_deref().is_some_and(|s| !PENDING.contains(&s)) {
                    saved = true;
                    break;
                }
            }
            if !saved {
                return Err(e);
            }
        }
        // EnableKey is allowed on an enabled key ("Key states of AWS KMS
        // keys"), so it is safe to retry. KMS is eventually consistent
        // ("AWS KMS eventual consistency"): right after the cancel the key
        // may still read as pending deletion, and EnableKey is refused with
        // KMSInvalidStateException for a moment; it is asked again.
        let mut attempt = 0;
        loop {
            let enabled = ctx
                .call_in(region, "kms:EnableKey", || {
                    kms.enable_key().key_id(key_id).send()
                })
                .await;
            match enabled {
                Err(e) if e.code.as_deref() == Some("KMSInvalidStateException") && attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
                }
                // Saved from deletion but not usable: say both.
                Err(mut e) => {
                    e.message = format!(
                        "its deletion is cancelled, but it stays Disabled: {}",
                        e.message
                    );
                    return Err(e);
                }
                Ok(_) => return Ok(None),
            }
        }
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Kept {
            why: format!(
                "key {} stays: scheduling its deletion again would destroy every ciphertext under it (kms:ScheduleKeyDeletion by hand if wanted)",
                self.key_arn
            ),
        }
    }
}
