//! Taking an instance's profile (and so its role credentials) away, and
//! giving it back.

use super::*;
use crate::actions::call::{Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo};

/// Recorded with the profile so rollback can associate it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisassociateInstanceProfile {
    pub region: String,
    pub instance_id: String,
    pub association_id: String,
    pub profile_arn: String,
}

impl Call for DisassociateInstanceProfile {
    fn describe(&self) -> String {
        let Self {
            association_id,
            profile_arn,
            ..
        } = self;
        format!("ec2:DisassociateIamInstanceProfile AssociationId={association_id} ({profile_arn})")
    }

    fn drift(&self) -> String {
        let Self { profile_arn, .. } = self;
        format!("has instance profile {profile_arn} attached")
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self {
            region,
            association_id,
            ..
        } = self;
        let ec2 = ctx.clients.ec2(region);
        ctx.call_in(region, "ec2:DisassociateIamInstanceProfile", || {
            ec2.disassociate_iam_instance_profile()
                .association_id(association_id)
                .send()
        })
        .await
        .map(|_| None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        let undo = Inverse::Undo;
        let Self {
            region,
            instance_id,
            profile_arn,
            ..
        } = self;
        undo(Undo::AssociateInstanceProfile(AssociateInstanceProfile {
            region: region.clone(),
            instance_id: instance_id.clone(),
            profile_arn: profile_arn.clone(),
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssociateInstanceProfile {
    pub region: String,
    pub instance_id: String,
    pub profile_arn: String,
}

impl Revert for AssociateInstanceProfile {
    fn describe(&self) -> String {
        let Self {
            instance_id,
            profile_arn,
            ..
        } = self;
        format!("ec2:AssociateIamInstanceProfile InstanceId={instance_id} Arn={profile_arn}")
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let Self {
            region,
            instance_id,
            profile_arn,
        } = self;
        let ec2 = ctx.clients.ec2(region);
        let out = ctx
            .call_in(region, "ec2:DescribeIamInstanceProfileAssociations", || {
                ec2.describe_iam_instance_profile_associations()
                    .filters(
                        aws_sdk_ec2::types::Filter::builder()
                            .name("instance-id")
                            .values(instance_id)
                            .build(),
                    )
                    .send()
            })
            .await?;
        let current = out
            .iam_instance_profile_associations()
            .iter()
            .filter(|a| a.state().map(|s| s.as_str()) == Some("associated"))
            .find_map(|a| a.iam_instance_profile().and_then(|p| p.arn()))
            .map(str::to_string);
        Ok(match current {
            None => Check::Ready,
            Some(arn) if arn == *profile_arn => {
                Check::Done("the profile is already associated".into())
            }
            Some(arn) => Check::Conflict(format!("another profile ({arn}) is associated now")),
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let Self {
            region,
            instance_id,
            profile_arn,
        } = self;
        let ec2 = ctx.clients.ec2(region);
        ctx.call_in(region, "ec2:AssociateIamInstanceProfile", || {
            ec2.associate_iam_instance_profile()
                .instance_id(instance_id)
                .iam_instance_profile(
                    aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                        .arn(profile_arn)
                        .build(),
                )
                .send()
        })
        .await
        .map(|_| ())
    }
}
