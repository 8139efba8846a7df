//! Stopping an instance (its memory is lost), and starting it again.

use super::*;
use crate::actions::call::{Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopInstance {
    pub region: String,
    pub instance_id: String,
    pub prior_state: String,
}

impl Call for StopInstance {
    fn describe(&self) -> String {
        let Self { instance_id, .. } = self;
        format!("ec2:StopInstances InstanceIds=[{instance_id}] (memory is lost)")
    }

    fn drift(&self) -> String {
        let Self { prior_state, .. } = self;
        format!("is {prior_state}")
    }

    async fn dry_run(&self, ctx: &Ctx) -> Option<Result<(), AwsError>> {
        let r = {
            let Self {
                region,
                instance_id,
                ..
            } = self;
            let call = stop_call(&ctx.clients.ec2(region), instance_id).dry_run(true);
            ctx.call_in(region, "ec2:StopInstances", || call.clone().send())
                .await
                .map(|_| ())
        };
        Some(r)
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self {
            region,
            instance_id,
            ..
        } = self;
        let ec2 = ctx.clients.ec2(region);
        ctx.call_in(region, "ec2:StopInstances", || {
            stop_call(&ec2, instance_id).send()
        })
        .await
        .map(|_| None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        let undo = Inverse::Undo;
        let Self {
            region,
            instance_id,
            prior_state,
        } = self;
        if prior_state == "running" || prior_state == "pending" {
            undo(Undo::StartInstance(StartInstance {
                region: region.clone(),
                instance_id: instance_id.clone(),
            }))
        } else {
            Inverse::Kept {
                why: format!("it was {prior_state} before the run"),
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartInstance {
    pub region: String,
    pub instance_id: String,
}

impl Revert for StartInstance {
    fn describe(&self) -> String {
        let Self { instance_id, .. } = self;
        format!("ec2:StartInstances InstanceIds=[{instance_id}]")
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let Self {
            region,
            instance_id,
        } = self;
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
            other => Check::Conflict(format!("the instance is {}", other.unwrap_or("gone"))),
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let Self {
            region,
            instance_id,
        } = self;
        let ec2 = ctx.clients.ec2(region);
        ctx.call_in(region, "ec2:StartInstances", || {
            ec2.start_instances().instance_ids(instance_id).send()
        })
        .await
        .map(|_| ())
    }
}
