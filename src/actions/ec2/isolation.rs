//! Isolation: the per-VPC quarantine and flush groups, and the two-move
//! group change that drops tracked connections without ever leaving an
//! interface more open than it started.

use super::*;

/// The quarantine and flush groups of one VPC, with the quarantine
/// group's rule count: one read per VPC.
pub(super) async fn vpc_groups(ctx: &Ctx, region: &str, vpc: &str) -> Result<VpcGroups, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let out = ctx
        .call_in(region, "ec2:DescribeSecurityGroups", || {
            ec2.describe_security_groups()
                .filters(Filter::builder().name("vpc-id").values(vpc).build())
                .filters(
                    Filter::builder()
                        .name("group-name")
                        .values(QUARANTINE_GROUP)
                        .values(FLUSH_GROUP)
                        .build(),
                )
                .send()
        })
        .await?;
    let mut found = VpcGroups::default();
    for g in out.security_groups() {
        let Some(id) = g.group_id() else { continue };
        match g.group_name() {
            Some(QUARANTINE_GROUP) => {
                let rules = g.ip_permissions().len() + g.ip_permissions_egress().len();
                found.quarantine = Some((id.to_string(), rules));
            }
            Some(FLUSH_GROUP) => found.flush = Some(id.to_string()),
            _ => {}
        }
    }
    Ok(found)
}

pub(super) async fn find_group(
    ctx: &Ctx,
    region: &str,
    vpc: &str,
    name: &str,
) -> Result<Option<String>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let out = ctx
        .call_in(region, "ec2:DescribeSecurityGroups", || {
            ec2.describe_security_groups()
                .filters(Filter::builder().name("vpc-id").values(vpc).build())
                .filters(Filter::builder().name("group-name").values(name).build())
                .send()
        })
        .await?;
    Ok(out
        .security_groups()
        .first()
        .and_then(|g| g.group_id())
        .map(str::to_string))
}

/// All traffic from or to everywhere in one address family. Both families,
/// both directions make a flow untracked (AWS EC2 User Guide, "Security
/// group connection tracking", Untracked connections), so that the move to
/// the empty group drops it.
pub(super) fn all_traffic(v6: bool) -> IpPermission {
    let p = IpPermission::builder().ip_protocol("-1");
    if v6 {
        p.ipv6_ranges(
            aws_sdk_ec2::types::Ipv6Range::builder()
                .cidr_ipv6("::/0")
                .build(),
        )
        .build()
    } else {
        p.ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build()
    }
}

/// Whether a group's rules already allow all traffic in one family.
pub(super) fn allows_all(rules: &[IpPermission], v6: bool) -> bool {
    rules.iter().any(|p| {
        p.ip_protocol() == Some("-1")
            && if v6 {
                p.ipv6_ranges()
                    .iter()
                    .any(|r| r.cidr_ipv6() == Some("::/0"))
            } else {
                p.ip_ranges()
                    .iter()
                    .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
            }
    })
}

/// Creates a security group exactly once: a lost answer is followed by a
/// read by name before anything is sent again (`CreateSecurityGroup` takes
/// no client token). Returns the id and whether this run made it.
pub(super) async fn ensure_group(
    ctx: &Ctx,
    region: &str,
    vpc: &str,
    name: &'static str,
    description: &'static str,
) -> Result<(String, bool), AwsError> {
    if let Some(id) = find_group(ctx, region, vpc, name).await? {
        return Ok((id, false));
    }
    let ec2 = ctx.clients.ec2(region);
    let created = aws::create_once(
        &["InvalidGroup.Duplicate"],
        || async {
            let out = ctx
                .call_once(Some(region), "ec2:CreateSecurityGroup", || {
                    ec2.create_security_group()
                        .group_name(name)
                        .description(description)
                        .vpc_id(vpc)
                        .tag_specifications(
                            TagSpecification::builder()
                                .resource_type(ResourceType::SecurityGroup)
                                .tags(Tag::builder().key("breakglass").value(name).build())
                                .build(),
                        )
                        .send()
                })
                .await?;
            out.group_id()
                .map(str::to_string)
                .ok_or_else(|| local("ec2:CreateSecurityGroup", "no group id returned".into()))
        },
        || find_group(ctx, region, vpc, name),
    )
    .await?;
    let new = created.by_this_run();
    Ok((created.into_inner(), new))
}

/// The flush and quarantine groups of a VPC, found or created once per run.
/// The flush group lets everything in and out (IPv4 and IPv6); the
/// quarantine group keeps no rule, whoever added one.
pub(super) async fn isolation_groups(
    ctx: &Ctx,
    region: &str,
    vpc: &str,
) -> Result<IsolationGroups, AwsError> {
    let mut cache = ctx.run.isolation_groups.lock().await;
    let key = (
        ctx.identity.account.clone(),
        region.to_string(),
        vpc.to_string(),
    );
    if let Some(g) = cache.get(&key) {
        return Ok(g.clone());
    }
    let ec2 = ctx.clients.ec2(region);
    let mut created = Vec::new();
    let (flush, flush_new) = ensure_group(
        ctx,
        region,
        vpc,
        FLUSH_GROUP,
        "breakglass: allow-all, passed through to drop tracked connections",
    )
    .await?;
    if flush_new {
        created.push(flush.clone());
    }
    // Both directions, both address families, checked on every run: a rule
    // missing from the flush group would leave connections tracked. One
    // rule per call: a call whose rules are partly there fails whole.
    let described = ctx
        .call_in(region, "ec2:DescribeSecurityGroups", || {
            ec2.describe_security_groups().group_ids(&flush).send()
        })
        .await?;
    let (ingress, egress) = described
        .security_groups()
        .first()
        .map(|g| {
            (
                g.ip_permissions().to_vec(),
                g.ip_permissions_egress().to_vec(),
            )
        })
        .unwrap_or_default();
    for v6 in [false, true] {
        if !allows_all(&ingress, v6) {
            let r = ctx
                .call_in(region, "ec2:AuthorizeSecurityGroupIngress", || {
                    ec2.authorize_security_group_ingress()
                        .group_id(&flush)
                        .ip_permissions(all_traffic(v6))
                        .send()
                })
                .await
                .map(|_| ());
            aws::goal_if(r, &["InvalidPermission.Duplicate"])?;
        }
        if !allows_all(&egress, v6) {
            let r = ctx
                .call_in(region, "ec2:AuthorizeSecurityGroupEgress", || {
                    ec2.authorize_security_group_egress()
                        .group_id(&flush)
                        .ip_permissions(all_traffic(v6))
                        .send()
                })
                .await
                .map(|_| ());
            aws::goal_if(r, &["InvalidPermission.Duplicate"])?;
        }
    }
    let (quarantine, quarantine_new) = ensure_group(
        ctx,
        region,
        vpc,
        QUARANTINE_GROUP,
        "breakglass: no traffic in or out",
    )
    .await?;
    if quarantine_new {
        created.push(quarantine.clone());
    }
    // A new group allows all egress, and a group made by anyone may carry
    // rules: revoke whatever it has.
    let described = ctx
        .call_in(region, "ec2:DescribeSecurityGroups", || {
            ec2.describe_security_groups().group_ids(&quarantine).send()
        })
        .await?;
    let egress: Vec<IpPermission> = described
        .security_groups()
        .first()
        .map(|g| g.ip_permissions_egress().to_vec())
        .unwrap_or_default();
    let ingress: Vec<IpPermission> = described
        .security_groups()
        .first()
        .map(|g| g.ip_permissions().to_vec())
        .unwrap_or_default();
    if !egress.is_empty() {
        let r = ctx
            .call_in(region, "ec2:RevokeSecurityGroupEgress", || {
                ec2.revoke_security_group_egress()
                    .group_id(&quarantine)
                    .set_ip_permissions(Some(egress.clone()))
                    .send()
            })
            .await
            .map(|_| ());
        aws::goal_if(r, &["InvalidPermission.NotFound"])?;
    }
    if !ingress.is_empty() {
        let r = ctx
            .call_in(region, "ec2:RevokeSecurityGroupIngress", || {
                ec2.revoke_security_group_ingress()
                    .group_id(&quarantine)
                    .set_ip_permissions(Some(ingress.clone()))
                    .send()
            })
            .await
            .map(|_| ());
        aws::goal_if(r, &["InvalidPermission.NotFound"])?;
    }
    let groups = IsolationGroups {
        flush,
        quarantine,
        created,
    };
    cache.insert(key, groups.clone());
    Ok(groups)
}

/// Moves one interface onto exactly these groups.
pub(super) async fn set_groups(
    ctx: &Ctx,
    region: &str,
    eni: &str,
    groups: &[String],
) -> Result<(), AwsError> {
    let ec2 = ctx.clients.ec2(region);
    ctx.call_in(region, "ec2:ModifyNetworkInterfaceAttribute", || {
        ec2.modify_network_interface_attribute()
            .network_interface_id(eni)
            .set_groups(Some(groups.to_vec()))
            .send()
    })
    .await
    .map(|_| ())
}

/// The security groups of one interface now.
pub(super) async fn eni_groups(
    ctx: &Ctx,
    region: &str,
    eni: &str,
) -> Result<Vec<String>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let out = ctx
        .call_in(region, "ec2:DescribeNetworkInterfaces", || {
            ec2.describe_network_interfaces()
                .network_interface_ids(eni)
                .send()
        })
        .await?;
    Ok(out
        .network_interfaces()
        .iter()
        .flat_map(|n| n.groups())
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect())
}

/// Isolates every interface: to the flush group (tracked connections
/// become untracked), then to the empty quarantine group (they drop). The
/// flush group is open to the internet, so an interface must never stay
/// there: when either move fails (a refusal, or retries that ran out after
/// AWS may have acted), the interface goes back where it came from (to
/// quarantine, if it came from the flush group), is read back, and the
/// failure says where it is.
pub(super) async fn isolate(
    ctx: &Ctx,
    region: &str,
    instance_vpc: &str,
    interfaces: &[Interface],
) -> Result<serde_json::Value, AwsError> {
    let mut used: Vec<IsolationGroups> = Vec::new();
    let mut isolated: Vec<&str> = Vec::new();
    for n in interfaces {
        let groups = isolation_groups(ctx, region, n.vpc(instance_vpc)).await?;
        let flush = std::slice::from_ref(&groups.flush);
        let quarantine = std::slice::from_ref(&groups.quarantine);
        let (fallback, fallback_name) = if n.groups.contains(&groups.flush) {
            (quarantine.to_vec(), "the quarantine group".to_string())
        } else {
            (
                n.groups.clone(),
                format!("its original groups {}", n.groups.join(", ")),
            )
        };
        let moved = match set_groups(ctx, region, &n.id, flush).await {
            Ok(()) => set_groups(ctx, region, &n.id, quarantine).await,
            Err(e) => Err(e),
        };
        if let Err(mut e) = moved {
            let back = set_groups(ctx, region, &n.id, &fallback).await;
            let open = match eni_groups(ctx, region, &n.id).await {
                Ok(now) => now.contains(&groups.flush),
                // Unreadable: open unless the move back is known to have landed.
                Err(_) => back.is_err(),
            };
            e.message = if open {
                format!(
                    "{}; interface {} is LEFT ON THE ALLOW-ALL GROUP {} (open to the internet){}: rerun, or move it by hand",
                    e.message,
                    n.id,
                    groups.flush,
                    back.err()
                        .map(|b| format!(" and could not be moved back ({b})"))
                        .unwrap_or_default()
                )
            } else {
                format!(
                    "{}; interface {} was put back on {fallback_name} (not isolated)",
                    e.message, n.id
                )
            };
            if !isolated.is_empty() {
                // Failed closed: these stay quarantined, and a rollback of
                // this failed change does not know them.
                e.message = format!(
                    "{}; already quarantined, and left so: {} (restore their groups by hand if wanted)",
                    e.message,
                    isolated.join(", ")
                );
            }
            return Err(e);
        }
        isolated.push(&n.id);
        if !used.iter().any(|g| g.quarantine == groups.quarantine) {
            used.push(groups);
        }
    }
    let created: Vec<&String> = used.iter().flat_map(|g| &g.created).collect();
    Ok(serde_json::json!({
        "quarantine_group": used.first().map(|g| &g.quarantine),
        "flush_group": used.first().map(|g| &g.flush),
        "quarantine_groups": used.iter().map(|g| &g.quarantine).collect::<Vec<_>>(),
        "flush_groups": used.iter().map(|g| &g.flush).collect::<Vec<_>>(),
        "created_groups": created,
    }))
}
