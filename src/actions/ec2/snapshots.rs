//! Snapshots: taking them (found again by token after a lost answer) and locking them.

use super::*;
use crate::spec::LockParams;

pub(super) async fn discover_locks(
    ctx: &Ctx,
    step: &BoundStep,
    params: &LockParams,
) -> Result<Discovery, AwsError> {
    let Some(sel) = &step.targets.snapshots else {
        return Ok(Discovery::default());
    };
    let mut notes = Vec::new();
    match (params.mode, params.cool_off_hours) {
        (LockModeSpec::Compliance, None) => notes.push(format!(
            "COMPLIANCE mode: nobody, the root user included, can unlock or delete these snapshots for {} days.",
            params.duration_days
        )),
        (LockModeSpec::Compliance, Some(h)) => notes.push(format!(
            "COMPLIANCE mode after a {h}-hour cool-off (anyone with ec2:UnlockSnapshot can lift it until then): after it, nobody, the root user included, can unlock or delete these snapshots for {} days.",
            params.duration_days
        )),
        (LockModeSpec::Governance, _) => notes.push(
            "Governance locks can be lifted by anyone allowed ec2:UnlockSnapshot, the management account's admins included (no SCP binds them): they stop a hurried attacker, not a patient one.".into(),
        ),
    }
    if sel.created_by_run {
        notes.push("Also locks the snapshots earlier steps of this run create (none exist yet in a plan or dry run).".into());
    }
    let criteria = sel.criteria();
    let criteria = &criteria;
    /// A region's planned locks and the named snapshots found there.
    type RegionLocks = Result<(Vec<Planned>, BTreeSet<String>), AwsError>;
    let per_region: Vec<(String, RegionLocks)> = stream::iter(ctx.regions.clone())
        .map(|region| async move {
            let found = async {
                let (ids, named) =
                    select_snapshots(ctx, &region, criteria, sel.older_than_days).await?;
                Ok::<_, AwsError>((plan_locks(ctx, &region, ids, params).await?, named))
            }
            .await;
            (region, found)
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .collect()
        .await;
    let mut planned = Vec::new();
    let mut found = BTreeSet::new();
    let mut all_read = true;
    for (region, r) in per_region {
        match r {
            Ok((p, named)) => {
                planned.extend(p);
                found.extend(named);
            }
            Err(error) => {
                all_read = false;
                planned.push(unreadable_region(ctx, &region, error));
            }
        }
    }
    if let (SnapshotCriteria::Matching { ids, .. }, true) = (criteria, all_read) {
        for id in ids.iter().filter(|id| !found.contains(*id)) {
            planned.push(Planned {
                target: Target {
                    scope: Scope {
                        account: ctx.identity.account.clone(),
                        region: None,
                    },
                    resource: Resource::Snapshot { id: id.clone() },
                },
                disposition: Disposition::Missing {
                    reason: format!(
                        "no snapshot {id} owned by account {} in {}",
                        ctx.identity.account,
                        ctx.regions.join(", ")
                    ),
                },
            });
        }
    }
    Ok(Discovery { planned, notes })
}

/// Snapshot ids in `region` matching any criterion, and which of the
/// named ids were among them. Tag values are compared exactly after the
/// listing: EC2 filters treat `*` and `?` as wildcards.
pub(super) async fn select_snapshots(
    ctx: &Ctx,
    region: &str,
    criteria: &SnapshotCriteria,
    older_than_days: Option<u32>,
) -> Result<(BTreeSet<String>, BTreeSet<String>), AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let mut ids = BTreeSet::new();
    let mut named = BTreeSet::new();
    // (filters, exact tag values, whether `older_than_days` narrows it)
    let mut queries: Vec<(Vec<Filter>, BTreeMap<String, String>, bool)> = Vec::new();
    match criteria {
        SnapshotCriteria::Every => queries.push((Vec::new(), BTreeMap::new(), true)),
        SnapshotCriteria::Matching {
            ids: wanted,
            tags,
            volume_ids,
            instance_ids,
            created_by_run,
        } => {
            if *created_by_run && let Ok(created) = ctx.run.created_snapshots.lock() {
                ids.extend(
                    created
                        .iter()
                        .filter(|(a, r, _)| *a == ctx.identity.account && r == region)
                        .map(|(_, _, id)| id.clone()),
                );
            }
            let any = |name: &str, values: &[String]| {
                vec![
                    Filter::builder()
                        .name(name)
                        .set_values(Some(values.to_vec()))
                        .build(),
                ]
            };
            if !wanted.is_empty() {
                queries.push((any("snapshot-id", wanted), BTreeMap::new(), false));
            }
            if !tags.is_empty() {
                let filters = tags
                    .iter()
                    .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
                    .collect();
                queries.push((filters, tags.clone(), true));
            }
            if !volume_ids.is_empty() {
                queries.push((any("volume-id", volume_ids), BTreeMap::new(), true));
            }
            if !instance_ids.is_empty() {
                queries.push((
                    any(&format!("tag:{SOURCE_TAG}"), instance_ids),
                    BTreeMap::new(),
                    false,
                ));
            }
        }
    }
    let cutoff = older_than_days.map(|d| {
        std::time::SystemTime::now() - std::time::Duration::from_secs(u64::from(d) * 86_400)
    });
    for (filters, exact, aged) in queries {
        let pages = ctx
            .pages(
                Some(region),
                "ec2:DescribeSnapshots",
                |token| {
                    ec2.describe_snapshots()
                        .owner_ids("self")
                        .set_filters(Some(filters.clone()))
                        .set_next_token(token)
                        .send()
                },
                |p| p.next_token().map(str::to_string),
            )
            .await?;
        for snap in pages.iter().flat_map(|p| p.snapshots()) {
            let Some(id) = snap.snapshot_id() else {
                continue;
            };
            let tags: BTreeMap<&str, &str> = snap
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value()?)))
                .collect();
            // Too young for `older_than_days` (a snapshot with no start
            // time is kept: it cannot be shown to be young).
            let started = snap
                .start_time()
                .and_then(|t| std::time::SystemTime::try_from(*t).ok());
            let young = aged && matches!((cutoff, started), (Some(c), Some(s)) if s > c);
            if !young
                && exact
                    .iter()
                    .all(|(k, v)| tags.get(k.as_str()) == Some(&v.as_str()))
            {
                ids.insert(id.to_string());
            }
        }
    }
    if let SnapshotCriteria::Matching { ids: wanted, .. } = criteria {
        named.extend(wanted.iter().filter(|w| ids.contains(*w)).cloned());
    }
    Ok((ids, named))
}

pub(super) async fn plan_locks(
    ctx: &Ctx,
    region: &str,
    ids: BTreeSet<String>,
    params: &LockParams,
) -> Result<Vec<Planned>, AwsError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ec2 = ctx.clients.ec2(region);
    let ids: Vec<String> = ids.into_iter().collect();
    let mut locked: BTreeMap<String, (String, Option<std::time::SystemTime>)> = BTreeMap::new();
    for chunk in ids.chunks(100) {
        let out = ctx
            .call_in(region, "ec2:DescribeLockedSnapshots", || {
                ec2.describe_locked_snapshots()
                    .set_snapshot_ids(Some(chunk.to_vec()))
                    .send()
            })
            .await?;
        for s in out.snapshots() {
            if let (Some(id), Some(state)) = (s.snapshot_id(), s.lock_state()) {
                let expires = s
                    .lock_expires_on()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok());
                locked.insert(id.to_string(), (state.as_str().to_string(), expires));
            }
        }
    }
    Ok(ids
        .into_iter()
        .map(|id| {
            let state = locked.get(&id).map(|(s, _)| s.as_str());
            let expires = locked.get(&id).and_then(|(_, e)| *e);
            // A compliance lock past its cool-off is stronger than any lock
            // we would add; one still in its cool-off can be lifted by anyone
            // allowed ec2:UnlockSnapshot (LockSnapshot, EC2 API reference),
            // so it is worth a governance lock, not a compliance one. Either
            // must also last about as long as this step asks (a day's slack,
            // so a rerun does not re-lock what it just locked).
            let wanted = std::time::SystemTime::now()
                + std::time::Duration::from_secs(
                    u64::from(params.duration_days.saturating_sub(1)) * 86_400,
                );
            let long_enough = expires.is_some_and(|e| e >= wanted);
            // A step that asks for a cool-off itself is met by one.
            let cool_off_asked = params.cool_off_hours.is_some();
            let enough = long_enough
                && match (state, params.mode) {
                    (Some("compliance"), _) => true,
                    (Some("governance"), LockModeSpec::Governance) => true,
                    (Some("compliance-cooloff"), LockModeSpec::Governance) => true,
                    (Some("compliance-cooloff"), LockModeSpec::Compliance) => cool_off_asked,
                    _ => false,
                };
            let target = Target {
                scope: Scope {
                    account: ctx.identity.account.clone(),
                    region: Some(region.to_string()),
                },
                resource: Resource::Snapshot { id: id.clone() },
            };
            let disposition = if enough {
                Disposition::Unchanged {
                    reason: format!("already locked ({})", state.unwrap_or_default()),
                }
            } else {
                Disposition::Change {
                    op: Op::LockSnapshot(LockSnapshot {
                        region: region.to_string(),
                        snapshot_id: id,
                        mode: params.mode,
                        duration_days: params.duration_days,
                        cool_off_hours: params.cool_off_hours,
                    }),
                }
            };
            Planned {
                target,
                disposition,
            }
        })
        .collect())
}

pub(super) fn lock_mode(mode: LockModeSpec) -> aws_sdk_ec2::types::LockMode {
    match mode {
        LockModeSpec::Governance => aws_sdk_ec2::types::LockMode::Governance,
        LockModeSpec::Compliance => aws_sdk_ec2::types::LockMode::Compliance,
    }
}

/// Every snapshot of the account in `region` that breakglass tagged with a
/// source instance and that carries every tag of the step: one paginated
/// listing per region, not one per instance (issue 18).
pub(super) async fn tagged_snapshots(
    ctx: &Ctx,
    region: &str,
    tags: &BTreeMap<String, String>,
) -> Result<Vec<aws_sdk_ec2::types::Snapshot>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let mut filters = vec![Filter::builder().name("tag-key").values(SOURCE_TAG).build()];
    for (k, v) in tags {
        filters.push(Filter::builder().name(format!("tag:{k}")).values(v).build());
    }
    ctx.call_in(region, "ec2:DescribeSnapshots", || {
        ec2.describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(filters.clone()))
            .into_paginator()
            .items()
            .send()
            .try_collect()
    })
    .await
}

/// Volumes of `i` that already have a snapshot from it carrying every tag,
/// with that snapshot's state (`pending`, `completed`): what verify reports.
/// `listed` is its region's [`tagged_snapshots`].
pub(super) fn existing_snapshots(
    ctx: &Ctx,
    i: &Instance,
    listed: &[aws_sdk_ec2::types::Snapshot],
) -> BTreeMap<String, String> {
    let from_it = |s: &&aws_sdk_ec2::types::Snapshot| {
        s.tags()
            .iter()
            .any(|t| t.key() == Some(SOURCE_TAG) && t.value() == Some(i.id.as_str()))
    };
    let snaps: Vec<&aws_sdk_ec2::types::Snapshot> = listed.iter().filter(from_it).collect();
    // Tags anyone can write: a snapshot counts only when its token is a MAC
    // this responder's audit key made for this instance, and only once (a
    // token copied onto a second snapshot makes neither count).
    let Some(key) = &ctx.audit_key else {
        return BTreeMap::new();
    };
    let token = |s: &aws_sdk_ec2::types::Snapshot| {
        s.tags()
            .iter()
            .find(|t| t.key() == Some(TOKEN_TAG))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let mut uses: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in &snaps {
        if let (Some(t), Some(v)) = (token(s), s.volume_id()) {
            *uses.entry((t, v.to_string())).or_default() += 1;
        }
    }
    snaps
        .iter()
        .filter_map(|s| {
            let state = s
                .state()
                .map(|x| x.as_str().to_string())
                .unwrap_or_default();
            let volume = s.volume_id()?.to_string();
            let t = token(s)?;
            let ours = key.owns_token(&i.id, &t) && uses.get(&(t, volume.clone())) == Some(&1);
            (ours && state != "error").then_some((volume, state))
        })
        .collect()
}

pub(super) fn snapshot_tags(
    instance_id: &str,
    tags: &BTreeMap<String, String>,
    token: &str,
) -> TagSpecification {
    let mut spec = TagSpecification::builder()
        .resource_type(ResourceType::Snapshot)
        .tags(Tag::builder().key(SOURCE_TAG).value(instance_id).build())
        .tags(Tag::builder().key(TOKEN_TAG).value(token).build());
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(k).value(v).build());
    }
    spec.build()
}

pub(super) fn create_snapshots_call(
    ec2: &aws_sdk_ec2::Client,
    instance_id: &str,
    tags: &BTreeMap<String, String>,
    token: &str,
) -> aws_sdk_ec2::operation::create_snapshots::builders::CreateSnapshotsFluentBuilder {
    ec2.create_snapshots()
        .instance_specification(
            InstanceSpecification::builder()
                .instance_id(instance_id)
                .build(),
        )
        .description(format!("breakglass evidence of {instance_id}"))
        .tag_specifications(snapshot_tags(instance_id, tags, token))
}

pub(super) fn lock_call(
    ec2: &aws_sdk_ec2::Client,
    snapshot_id: &str,
    mode: LockModeSpec,
    duration_days: u32,
    cool_off_hours: Option<u32>,
) -> aws_sdk_ec2::operation::lock_snapshot::builders::LockSnapshotFluentBuilder {
    ec2.lock_snapshot()
        .snapshot_id(snapshot_id)
        .lock_mode(lock_mode(mode))
        .lock_duration(i32::try_from(duration_days).unwrap_or(i32::MAX))
        .set_cool_off_period(cool_off_hours.and_then(|h| i32::try_from(h).ok()))
}

/// The snapshots one `CreateSnapshots` call made, found by the token it
/// tagged them with: how a call whose answer was lost is recognised.
pub(super) async fn snapshots_by_token(
    ctx: &Ctx,
    region: &str,
    token: &str,
) -> Result<Option<Vec<String>>, AwsError> {
    let ec2 = ctx.clients.ec2(region);
    let snaps = ctx
        .call_in(region, "ec2:DescribeSnapshots", || {
            ec2.describe_snapshots()
                .owner_ids("self")
                .filters(
                    Filter::builder()
                        .name(format!("tag:{TOKEN_TAG}"))
                        .values(token)
                        .build(),
                )
                .into_paginator()
                .items()
                .send()
                .try_collect()
        })
        .await?;
    let ids: Vec<String> = snaps
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_string))
        .collect();
    Ok((!ids.is_empty()).then_some(ids))
}
