//! Termination protection and stops: the settings that make an instance
//! survive (termination and stop protection, shutdown behaviour,
//! delete-on-termination), and putting them back.

use super::*;

/// The instance's termination settings now: three attribute reads (EC2
/// answers one attribute per call) and its block devices as listed.
pub(super) async fn termination_settings(
    ctx: &Ctx,
    i: &Instance,
) -> Result<TerminationSettings, AwsError> {
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
    let (protection, stop, behavior) = tokio::try_join!(
        read(A::DisableApiTermination),
        read(A::DisableApiStop),
        read(A::InstanceInitiatedShutdownBehavior)
    )?;
    Ok(TerminationSettings {
        disable_api_termination: protection
            .disable_api_termination()
            .and_then(|v| v.value())
            .unwrap_or(false),
        disable_api_stop: Some(
            stop.disable_api_stop()
                .and_then(|v| v.value())
                .unwrap_or(false),
        ),
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

pub(super) fn protect_call(
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
pub(super) struct TerminationChange<'a> {
    pub(super) disable_api_termination: Option<bool>,
    pub(super) disable_api_stop: Option<bool>,
    pub(super) shutdown_behavior: Option<&'static str>,
    /// Devices whose `DeleteOnTermination` is set to this value.
    pub(super) delete_on_termination: (&'a [(String, String)], bool),
}

pub(super) async fn change_termination(
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
    // Last: the older protections land first should EC2 refuse this one.
    if let Some(on) = change.disable_api_stop {
        ctx.call_in(region, "ec2:ModifyInstanceAttribute", || {
            modify()
                .disable_api_stop(AttributeBooleanValue::builder().value(on).build())
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
pub(super) async fn harden(
    ctx: &Ctx,
    region: &str,
    instance_id: &str,
    prior: Option<&TerminationSettings>,
) -> Result<(), AwsError> {
    let change = TerminationChange {
        disable_api_termination: prior
            .is_none_or(|p| !p.disable_api_termination)
            .then_some(true),
        disable_api_stop: prior
            .is_none_or(|p| p.disable_api_stop != Some(true))
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
        // A log from before stop protection was recorded never set it.
        disable_api_stop: prior
            .is_some_and(|p| p.disable_api_stop == Some(false))
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

pub(super) fn stop_call(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
) -> aws_sdk_ec2::operation::stop_instances::builders::StopInstancesFluentBuilder {
    ec2.stop_instances().instance_ids(instance_id)
}
