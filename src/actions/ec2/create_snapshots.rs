//! Snapshotting an instance's volumes: evidence, never deleted by rollback;
//! found again by token when an answer is lost.

use super::*;
use crate::actions::call::{Call, Inverse, Inverting};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateSnapshots {
    pub region: String,
    pub instance_id: String,
    pub volume_ids: Vec<String>,
    pub tags: std::collections::BTreeMap<String, String>,
    /// Tagged on every snapshot the call makes: how a retry after a lost
    /// answer finds them. Filled in by [`Op::prepare`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Call for CreateSnapshots {
    fn describe(&self) -> String {
        let Self {
            instance_id,
            volume_ids,
            ..
        } = self;
        format!(
            "ec2:CreateSnapshots InstanceId={instance_id} ({} volume{})",
            volume_ids.len(),
            if volume_ids.len() == 1 { "" } else { "s" }
        )
    }

    fn drift(&self) -> String {
        let Self { volume_ids, .. } = self;
        format!("has no breakglass snapshot of {}", volume_ids.join(", "))
    }

    fn prepare(&mut self, now: jiff::Timestamp, key: Option<&crate::signing::AuditKey>) {
        let Self {
            instance_id, token, ..
        } = self;
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(instance_id.as_bytes());
        h.update(now.as_nanosecond().to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        let nonce = hex::encode(&h.finalize()[..8]);
        // A MAC of the audit key, so no tag an attacker writes can
        // pass for breakglass's (see `AuditKey::token`).
        *token = Some(match key {
            Some(k) => k.token(instance_id, &nonce),
            None => nonce,
        });
    }

    async fn dry_run(&self, ctx: &Ctx) -> Option<Result<(), AwsError>> {
        let r = {
            let Self {
                region,
                instance_id,
                tags,
                ..
            } = self;
            let call =
                create_snapshots_call(&ctx.clients.ec2(region), instance_id, tags, "dry-run")
                    .dry_run(true);
            ctx.call_in(region, "ec2:CreateSnapshots", || call.clone().send())
                .await
                .map(|_| ())
        };
        Some(r)
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self {
            region,
            instance_id,
            tags,
            token,
            ..
        } = self;
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

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Kept {
            why: "snapshots are evidence: breakglass never deletes them".into(),
        }
    }
}
