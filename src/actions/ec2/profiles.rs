//! Detaching instance profiles, with the sessions of their roles revoked;
//! or, asked for, guarding their roles so that the credentials work only on
//! their own instance while it keeps running.

use super::*;

/// `with:` of `ec2.detach_instance_profiles`.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetachParams {
    /// `detach` (default): take the profile away and revoke its role's
    /// sessions. `guard`: keep the profile and put a deny on the role for
    /// its instance credentials used anywhere but through a VPC endpoint
    /// of their own VPC, from their own primary private IP. Only where
    /// every instance using the role reaches AWS through VPC endpoints:
    /// otherwise their own calls are denied too.
    #[serde(default)]
    pub mode: DetachMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DetachMode {
    #[default]
    Detach,
    Guard,
}

/// The roles behind the instances' profiles guarded, the instances left as
/// they are: one policy per role, however many instances use it.
pub(super) async fn plan_guard(
    ctx: &Ctx,
    instances: Vec<Instance>,
    mut notes: Vec<String>,
) -> Result<Discovery, AwsError> {
    let profiles: BTreeSet<String> = instances
        .iter()
        .filter_map(|i| i.profile.as_deref())
        .filter_map(|arn| arn.rsplit('/').next())
        .map(str::to_string)
        .collect();
    let roles = profile_roles(ctx, profiles, &mut notes).await;
    if !roles.is_empty() {
        notes.push(GUARD_NOTE.into());
    }
    let mut planned: Vec<Planned> = instances
        .iter()
        .filter(|i| i.profile.is_none())
        .map(|i| Planned {
            target: Target {
                scope: Scope {
                    account: ctx.identity.account.clone(),
                    region: Some(i.region.clone()),
                },
                resource: Resource::Instance { id: i.id.clone() },
            },
            disposition: Disposition::Unchanged {
                reason: "no instance profile attached".into(),
            },
        })
        .collect();
    planned.extend(
        crate::actions::iam::plan_role_policies(
            ctx,
            &roles,
            crate::actions::iam::PolicyKind::InstanceGuard,
        )
        .await?,
    );
    Ok(Discovery { planned, notes })
}

/// What the guard does beyond the selected instances, and what it leaves.
const GUARD_NOTE: &str = "The guard is on the role: it binds every instance using the role, selected or not, in every region. It denies the role's instance credentials unless the request comes through a VPC endpoint in the instance's own VPC, from the instance's primary private IPv4 (IAM User Guide, aws:Ec2InstanceSourcePrivateIPv4): calls over public endpoints, to other regions, to services without a VPC endpoint, over IPv6 or from secondary addresses (pods, tasks using the node role) are denied too, the SSM and CloudWatch agents included. Sessions the stolen credentials already assumed onward carry no instance ARN and escape it: revoke those roles' sessions (mode: detach does so for this role).";

/// The roles of these instance profiles; a profile that cannot be read is
/// a note saying what to do by hand.
async fn profile_roles(
    ctx: &Ctx,
    profiles: BTreeSet<String>,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let mut roles = BTreeSet::new();
    for profile_name in profiles {
        let profile = ctx
            .call("iam:GetInstanceProfile", || {
                ctx.iam()
                    .get_instance_profile()
                    .instance_profile_name(&profile_name)
                    .send()
            })
            .await;
        match profile {
            Ok(p) => {
                if let Some(p) = p.instance_profile() {
                    roles.extend(p.roles().iter().map(|r| r.role_name().to_string()));
                }
            }
            Err(e) => notes.push(format!(
                "cannot read instance profile {profile_name} ({e}): contain its role by hand"
            )),
        }
    }
    roles.into_iter().collect()
}

/// One disassociation per instance with a profile, plus one revocation per
/// role behind those profiles (each role once, however many instances use it).
pub(super) async fn plan_detach(
    ctx: &Ctx,
    instances: Vec<Instance>,
    mut notes: Vec<String>,
) -> Result<Discovery, AwsError> {
    // One listing per region and one read per profile, not one per instance.
    let regions: BTreeSet<String> = instances
        .iter()
        .filter(|i| i.profile.is_some())
        .map(|i| i.region.clone())
        .collect();
    let associations: Vec<BTreeMap<String, String>> = stream::iter(regions)
        .map(|region| async move { active_associations(ctx, &region).await })
        .buffer_unordered(ctx.concurrency.max(1))
        .try_collect()
        .await?;
    let associations: BTreeMap<String, String> = associations.into_iter().flatten().collect();
    let mut planned = Vec::new();
    let mut profiles = BTreeSet::new();
    for i in instances {
        let target = Target {
            scope: Scope {
                account: ctx.identity.account.clone(),
                region: Some(i.region.clone()),
            },
            resource: Resource::Instance { id: i.id.clone() },
        };
        let unchanged = |reason: &str| Planned {
            target: target.clone(),
            disposition: Disposition::Unchanged {
                reason: reason.into(),
            },
        };
        let Some(profile_arn) = i.profile.clone() else {
            planned.push(unchanged("no instance profile attached"));
            continue;
        };
        let Some(association_id) = associations.get(&i.id) else {
            planned.push(unchanged("no active profile association"));
            continue;
        };
        profiles.insert(
            profile_arn
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        );
        planned.push(Planned {
            target,
            disposition: Disposition::Change {
                op: Op::DisassociateInstanceProfile(DisassociateInstanceProfile {
                    region: i.region.clone(),
                    instance_id: i.id.clone(),
                    association_id: association_id.clone(),
                    profile_arn,
                }),
            },
        });
    }
    let roles = profile_roles(ctx, profiles, &mut notes).await;
    planned.extend(crate::actions::iam::plan_role_revocations(ctx, &roles).await?);
    Ok(Discovery { planned, notes })
}

/// Instance id → id of its active instance-profile association, in `region`.
pub(super) async fn active_associations(
    ctx: &Ctx,
    region: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let all = ctx
        .call_in(region, "ec2:DescribeIamInstanceProfileAssociations", || {
            ec2.describe_iam_instance_profile_associations()
                .into_paginator()
                .items()
                .send()
                .try_collect()
        })
        .await?;
    Ok(all
        .iter()
        .filter(|a| a.state().map(|s| s.as_str()) == Some("associated"))
        .filter_map(|a| {
            Some((
                a.instance_id()?.to_string(),
                a.association_id()?.to_string(),
            ))
        })
        .collect())
}
