//! Making an instance survive termination attempts, and putting its
//! settings back.

use super::*;
use crate::actions::call::{Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnableTerminationProtection {
    pub region: String,
    pub instance_id: String,
    /// The settings before the change: what rollback restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<TerminationSettings>,
}

impl Call for EnableTerminationProtection {
    fn describe(&self) -> String {
        let Self {
            instance_id, prior, ..
        } = self;
        let mut calls = Vec::new();
        if prior.as_ref().is_none_or(|p| !p.disable_api_termination) {
            calls.push("DisableApiTermination=true".to_string());
        }
        if prior
            .as_ref()
            .is_none_or(|p| p.disable_api_stop != Some(true))
        {
            calls.push("DisableApiStop=true".to_string());
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

    fn drift(&self) -> String {
        match self {
            Self { prior: Some(p), .. } => p.drift(),
            Self { .. } => "has termination protection off".into(),
        }
    }

    async fn dry_run(&self, ctx: &Ctx) -> Option<Result<(), AwsError>> {
        let Self {
            region,
            instance_id,
            prior,
        } = self;
        let call = protect_call(&ctx.clients.ec2(region), instance_id).dry_run(true);
        let r = ctx
            .call_in(region, "ec2:ModifyInstanceAttribute", || {
                call.clone().send()
            })
            .await
            .map(|_| ());
        // Planned without its settings (a check that asks only for
        // permission): a denial on an instance whose settings already hold
        // is a call the step would never make, so it refuses nothing. Once
        // one instance that needs the change is denied in this account and
        // region, the step is refused there: no more reads to tell.
        let Err(e) = &r else { return Some(r) };
        if prior.is_some() || e.kind != crate::aws::ErrorKind::AccessDenied {
            return Some(r);
        }
        let place = (ctx.identity.account.clone(), region.clone());
        let refused_here = ctx
            .run
            .protection_denied
            .lock()
            .map(|d| d.contains(&place))
            .unwrap_or(true);
        if refused_here {
            return Some(r);
        }
        match read_termination(ctx, region, instance_id).await {
            Ok(Some(now)) if now.holds() => Some(Ok(())),
            Ok(Some(_)) => {
                if let Ok(mut d) = ctx.run.protection_denied.lock() {
                    d.insert(place);
                }
                Some(r)
            }
            _ => Some(r),
        }
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self {
            region,
            instance_id,
            prior,
        } = self;
        harden(ctx, region, instance_id, prior.as_ref())
            .await
            .map(|()| None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        let undo = Inverse::Undo;
        let Self {
            region,
            instance_id,
            prior,
        } = self;
        undo(Undo::DisableTerminationProtection(RestoreTermination {
            region: region.clone(),
            instance_id: instance_id.clone(),
            prior: prior.clone(),
        }))
    }
}

/// Put termination protection, shutdown behaviour and delete-on-
/// termination back as they were (`prior` is absent in logs from
/// before they were recorded: then only the flag is turned off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreTermination {
    pub region: String,
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<TerminationSettings>,
}

impl Revert for RestoreTermination {
    fn describe(&self) -> String {
        let Self { instance_id, .. } = self;
        format!(
            "ec2:ModifyInstanceAttribute InstanceId={instance_id} DisableApiTermination, DisableApiStop and the rest back to their recorded values"
        )
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let Self {
            region,
            instance_id,
            prior,
        } = self;
        let now = crate::actions::ec2::read_termination(ctx, region, instance_id).await?;
        Ok(match (now, prior) {
            (None, _) => Check::Conflict("the instance is gone".into()),
            // A log from before stop protection was recorded: compare the rest.
            (Some(now), Some(prior))
                if now == *prior
                    || (prior.disable_api_stop.is_none()
                        && TerminationSettings {
                            disable_api_stop: None,
                            ..now.clone()
                        } == *prior) =>
            {
                Check::Done("already as before the run".into())
            }
            (Some(now), None) if !now.disable_api_termination => {
                Check::Done("termination protection is already off".into())
            }
            _ => Check::Ready,
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let Self {
            region,
            instance_id,
            prior,
        } = self;
        crate::actions::ec2::restore_termination(ctx, region, instance_id, prior.as_ref()).await
    }
}
