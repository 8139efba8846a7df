//! Which instances a step reaches, read per region, and the call each needs.

use super::*;

/// An instance discovery found: one to act on, or a named one that is gone.
pub(super) enum Found {
    Live(Instance),
    Gone {
        id: String,
        region: String,
        state: String,
    },
}

pub(super) fn missing_instance(
    ctx: &Ctx,
    id: &str,
    region: Option<&str>,
    reason: String,
) -> Planned {
    Planned {
        target: Target {
            scope: Scope {
                account: ctx.identity.account.clone(),
                region: region.map(str::to_string),
            },
            resource: Resource::Instance { id: id.to_string() },
        },
        disposition: Disposition::Missing { reason },
    }
}

/// The instances of `region` the criteria reach. Named ids are asked for
/// whatever their state, so a terminated one is reported, not dropped;
/// tags are compared exactly afterwards (EC2 filters treat `*` as a wildcard).
pub(super) async fn select_instances(
    ctx: &Ctx,
    region: &str,
    criteria: &InstanceCriteria,
) -> Result<Vec<Found>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let f = criteria.filters();
    let mut filters = Vec::new();
    match criteria {
        InstanceCriteria::Every(_) => filters.push(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(LIVE_STATES.map(String::from).to_vec()))
                .build(),
        ),
        InstanceCriteria::Named { ids, .. } => filters.push(
            Filter::builder()
                .name("instance-id")
                .set_values(Some(ids.clone()))
                .build(),
        ),
    }
    for (k, v) in &f.tags {
        filters.push(Filter::builder().name(format!("tag:{k}")).values(v).build());
    }
    if !f.vpc_ids.is_empty() {
        filters.push(
            Filter::builder()
                .name("vpc-id")
                .set_values(Some(f.vpc_ids.clone()))
                .build(),
        );
    }
    let pages = ctx
        .pages(
            Some(region),
            "ec2:DescribeInstances",
            |token| {
                ec2.describe_instances()
                    .set_filters(Some(filters.clone()))
                    .set_next_token(token)
                    .send()
            },
            |p| p.next_token().map(str::to_string),
        )
        .await?;
    let mut out = Vec::new();
    for r in pages.iter().flat_map(|p| p.reservations()) {
        for i in r.instances() {
            let Some(id) = i.instance_id() else { continue };
            let state = i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default();
            let tags: BTreeMap<String, String> = i
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
            if !criteria.admits(id, i.vpc_id().unwrap_or_default(), &tags) {
                continue;
            }
            if !LIVE_STATES.contains(&state.as_str()) {
                out.push(Found::Gone {
                    id: id.to_string(),
                    region: region.to_string(),
                    state,
                });
                continue;
            }
            out.push(Found::Live(Instance {
                id: id.to_string(),
                region: region.to_string(),
                vpc_id: i.vpc_id().unwrap_or_default().to_string(),
                state,
                volumes: i
                    .block_device_mappings()
                    .iter()
                    .filter_map(|b| {
                        let ebs = b.ebs()?;
                        Some(Volume {
                            id: ebs.volume_id()?.to_string(),
                            device: b.device_name().unwrap_or_default().to_string(),
                            delete_on_termination: ebs.delete_on_termination().unwrap_or(false),
                        })
                    })
                    .collect(),
                interfaces: i
                    .network_interfaces()
                    .iter()
                    .filter_map(|n| {
                        Some(Interface {
                            id: n.network_interface_id()?.to_string(),
                            vpc_id: n.vpc_id().or(i.vpc_id()).unwrap_or_default().to_string(),
                            groups: n
                                .groups()
                                .iter()
                                .filter_map(|g| g.group_id())
                                .map(str::to_string)
                                .collect(),
                        })
                    })
                    .collect(),
                profile: i
                    .iam_instance_profile()
                    .and_then(|p| p.arn())
                    .map(str::to_string),
            }));
        }
    }
    out.sort_by(|a, b| found_id(a).cmp(found_id(b)));
    Ok(out)
}

pub(super) fn found_id(f: &Found) -> &str {
    match f {
        Found::Live(i) => &i.id,
        Found::Gone { id, .. } => id,
    }
}

/// States an instance can be contained in; the others are gone or going.
pub(super) const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// What `step` does to instance `i`. `first` marks the first instance of
/// its region: a check that asks only for permission still reads its
/// termination settings, so a denied read refuses the step as it would
/// when every instance is read.
pub(super) async fn plan_instance(
    ctx: &Ctx,
    step: &BoundStep,
    i: Instance,
    groups: &GroupsByVpc,
    snapshots: &SnapshotsByRegion,
    first: bool,
) -> Result<Planned, AwsError> {
    let target = Target {
        scope: Scope {
            account: ctx.identity.account.clone(),
            region: Some(i.region.clone()),
        },
        resource: Resource::Instance { id: i.id.clone() },
    };
    let unchanged = |reason: String| Disposition::Unchanged { reason };
    let disposition = match step.action {
        ActionKind::Ec2SnapshotVolumes => {
            let tags = match &step.params {
                ActionParams::Ec2SnapshotVolumes(p) => p.tags.clone(),
                _ => BTreeMap::new(),
            };
            let volume_ids: Vec<String> = i.volumes.iter().map(|v| v.id.clone()).collect();
            if i.volumes.is_empty() {
                unchanged("no EBS volumes".into())
            } else {
                let listed = snapshots.get(&i.region).map_or(&[][..], Vec::as_slice);
                let covered = existing_snapshots(ctx, &i, listed);
                if volume_ids.iter().all(|v| covered.contains_key(v)) {
                    let states: BTreeSet<&str> = covered.values().map(String::as_str).collect();
                    let states: Vec<&str> = states.into_iter().collect();
                    unchanged(format!(
                        "already snapshotted with these tags ({})",
                        states.join(", ")
                    ))
                } else {
                    Disposition::Change {
                        op: Op::CreateSnapshots(CreateSnapshots {
                            region: i.region.clone(),
                            instance_id: i.id.clone(),
                            volume_ids,
                            tags,
                            token: None,
                        }),
                    }
                }
            }
        }
        ActionKind::Ec2IsolateInstances => {
            let mut open = Vec::new();
            let mut exposed = Vec::new();
            for n in &i.interfaces {
                let g = groups
                    .get(&(i.region.clone(), n.vpc(&i.vpc_id).to_string()))
                    .cloned()
                    .unwrap_or_default();
                let quarantined = matches!(&g.quarantine, Some((q, 0)) if n.groups == [q.clone()]);
                if !quarantined {
                    open.push(n.id.clone());
                }
                if g.flush.as_ref().is_some_and(|f| n.groups.contains(f)) {
                    exposed.push(n.id.clone());
                }
            }
            if i.interfaces.is_empty() {
                unchanged("no network interfaces".into())
            } else if open.is_empty() {
                unchanged("every interface is in a rule-less quarantine group".into())
            } else {
                Disposition::Change {
                    op: Op::IsolateInstance(IsolateInstance {
                        region: i.region.clone(),
                        instance_id: i.id.clone(),
                        vpc_id: i.vpc_id.clone(),
                        interfaces: i.interfaces.clone(),
                        on_flush: exposed,
                    }),
                }
            }
        }
        // Three attribute reads per instance, on a read bucket of 20 a
        // second per region: a check that asks only for permission skips
        // them (but for the region's first instance) and checks every live
        // instance as a change (see `EnableTerminationProtection::dry_run`).
        ActionKind::Ec2EnableTerminationProtection if ctx.permissions_only && !first => {
            Disposition::Change {
                op: Op::EnableTerminationProtection(EnableTerminationProtection {
                    region: i.region.clone(),
                    instance_id: i.id.clone(),
                    prior: None,
                }),
            }
        }
        ActionKind::Ec2EnableTerminationProtection => {
            let now = termination_settings(ctx, &i).await?;
            if now.holds() {
                unchanged(
                    "termination protection on, shutdown stops it, no volume goes with it".into(),
                )
            } else {
                Disposition::Change {
                    op: Op::EnableTerminationProtection(EnableTerminationProtection {
                        region: i.region.clone(),
                        instance_id: i.id.clone(),
                        prior: Some(now),
                    }),
                }
            }
        }
        ActionKind::Ec2StopInstances => {
            let failed = ctx
                .run
                .failed_snapshots
                .lock()
                .map(|f| f.covers(&i.id))
                .unwrap_or(true);
            if failed {
                Disposition::Skip {
                    reason: SkipReason::SnapshotFailed,
                }
            } else if i.state == "stopped" || i.state == "stopping" {
                unchanged(format!("already {}", i.state))
            } else {
                Disposition::Change {
                    op: Op::StopInstance(StopInstance {
                        region: i.region.clone(),
                        instance_id: i.id.clone(),
                        prior_state: i.state.clone(),
                    }),
                }
            }
        }
        _ => return Err(local("ec2", "not an EC2 action".into())),
    };
    Ok(Planned {
        target,
        disposition,
    })
}
