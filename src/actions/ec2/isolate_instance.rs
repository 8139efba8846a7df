//! Isolating an instance's interfaces in the quarantine group, and
//! restoring the groups they had.

use super::*;
use crate::actions::call::{Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo, sorted};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolateInstance {
    pub region: String,
    pub instance_id: String,
    pub vpc_id: String,
    /// Each ENI with the security groups it had: what rollback restores.
    pub interfaces: Vec<Interface>,
    /// Interfaces found on the allow-all flush group (a run cut off
    /// between its two moves): open now, and their groups before
    /// breakglass are not these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_flush: Vec<String>,
}

impl Call for IsolateInstance {
    fn describe(&self) -> String {
        let Self {
            instance_id,
            interfaces,
            ..
        } = self;
        format!(
            "ec2:ModifyNetworkInterfaceAttribute ×{} ({instance_id}: flush group, then {QUARANTINE_GROUP})",
            interfaces.len() * 2
        )
    }

    fn drift(&self) -> String {
        match self {
            Self {
                interfaces,
                on_flush,
                ..
            } if !on_flush.is_empty() => format!(
                "is EXPOSED: {} on the allow-all breakglass-flush group (open to the internet)",
                on_flush.join(", ")
            ),
            Self { interfaces, .. } => {
                let groups: Vec<String> = interfaces
                    .iter()
                    .map(|i| format!("{} in {}", i.id, i.groups.join("+")))
                    .collect();
                format!("is not quarantined ({})", groups.join("; "))
            }
        }
    }

    async fn dry_run(&self, ctx: &Ctx) -> Option<Result<(), AwsError>> {
        let r = {
            let Self {
                region, interfaces, ..
            } = self;
            let n = interfaces.first()?;
            let call = ctx
                .clients
                .ec2(region)
                .modify_network_interface_attribute()
                .dry_run(true)
                .network_interface_id(&n.id)
                .set_groups(Some(n.groups.clone()));
            ctx.call_in(region, "ec2:ModifyNetworkInterfaceAttribute", || {
                call.clone().send()
            })
            .await
            .map(|_| ())
        };
        Some(r)
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self {
            region,
            vpc_id,
            interfaces,
            ..
        } = self;
        isolate(ctx, region, vpc_id, interfaces).await.map(Some)
    }

    fn inverse(&self, facts: &Inverting) -> Inverse {
        let effect = facts.effect;
        let undo = Inverse::Undo;
        let Self {
            region,
            interfaces,
            on_flush,
            ..
        } = self;
        let strings = |key: &str| -> Vec<String> {
            effect
                .and_then(|e| e[key].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        // The allow-all flush group is never a state to go back to: an
        // interface found on it had other groups before breakglass, and
        // only the log of the run that moved it there knows them.
        let flush = strings("flush_groups");
        let flushed: Vec<&str> = interfaces
            .iter()
            .filter(|i| on_flush.contains(&i.id) || i.groups.iter().any(|g| flush.contains(g)))
            .map(|i| i.id.as_str())
            .collect();
        if !flushed.is_empty() {
            return Inverse::Kept {
                why: format!(
                    "{} sat on the allow-all flush group when this run began, so its groups before breakglass are not in this log: it stays isolated (roll back the earlier run's log)",
                    flushed.join(", ")
                ),
            };
        }
        let mut quarantine_groups = strings("quarantine_groups");
        if let Some(q) = effect.and_then(|e| e["quarantine_group"].as_str())
            && !quarantine_groups.iter().any(|g| g == q)
        {
            quarantine_groups.push(q.to_string());
        }
        undo(Undo::RestoreGroups(RestoreGroups {
            region: region.clone(),
            interfaces: interfaces.clone(),
            quarantine_group: quarantine_groups.first().cloned().unwrap_or_default(),
            quarantine_groups,
            created_groups: effect
                .and_then(|e| e["created_groups"].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreGroups {
    pub region: String,
    pub interfaces: Vec<Interface>,
    pub quarantine_group: String,
    /// Every quarantine group the interfaces went to (one per VPC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantine_groups: Vec<String>,
    /// Groups the run created: deleted once no interface uses them.
    pub created_groups: Vec<String>,
}

impl Revert for RestoreGroups {
    fn describe(&self) -> String {
        let Self { interfaces, .. } = self;
        format!(
            "ec2:ModifyNetworkInterfaceAttribute ×{} (original groups); ec2:DeleteSecurityGroup for groups the run created",
            interfaces.len()
        )
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let Self {
            region,
            interfaces,
            quarantine_group,
            quarantine_groups,
            ..
        } = self;
        let ec2 = ctx.clients.ec2(region);
        let ids: Vec<String> = interfaces.iter().map(|i| i.id.clone()).collect();
        let out = ctx
            .call_in(region, "ec2:DescribeNetworkInterfaces", || {
                ec2.describe_network_interfaces()
                    .set_network_interface_ids(Some(ids.clone()))
                    .send()
            })
            .await?;
        let now: std::collections::BTreeMap<String, Vec<String>> = out
            .network_interfaces()
            .iter()
            .filter_map(|n| {
                let groups = n
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect();
                Some((n.network_interface_id()?.to_string(), groups))
            })
            .collect();
        let ours = |g: &String| g == quarantine_group || quarantine_groups.contains(g);
        let isolated = interfaces.iter().all(|i| {
            now.get(&i.id)
                .is_some_and(|g| g.len() == 1 && g.iter().all(ours))
        });
        let restored = interfaces.iter().all(|i| {
            now.get(&i.id)
                .is_some_and(|g| sorted(&i.groups) == sorted(g))
        });
        Ok(if restored {
            Check::Done("the original groups are already back".into())
        } else if isolated {
            Check::Ready
        } else {
            Check::Conflict("the interfaces' groups were changed since the run".into())
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let Self {
            region,
            interfaces,
            created_groups,
            ..
        } = self;
        let ec2 = ctx.clients.ec2(region);
        for n in interfaces {
            ctx.call_in(region, "ec2:ModifyNetworkInterfaceAttribute", || {
                ec2.modify_network_interface_attribute()
                    .network_interface_id(&n.id)
                    .set_groups(Some(n.groups.clone()))
                    .send()
            })
            .await?;
        }
        for g in created_groups {
            // Another isolated instance may still use it: then it stays.
            let r = ctx
                .call_in(region, "ec2:DeleteSecurityGroup", || {
                    ec2.delete_security_group().group_id(g).send()
                })
                .await;
            if let Err(e) = r {
                let in_use = matches!(
                    e.code.as_deref(),
                    Some("DependencyViolation" | "InvalidGroup.InUse" | "InvalidGroup.NotFound")
                );
                if !in_use {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
