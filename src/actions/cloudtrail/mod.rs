//! `cloudtrail.ensure_logging`: an attacker's first move is often to stop
//! the trail (Stratus `aws.defense-evasion.cloudtrail-stop`), and every
//! minute it stays stopped is unrecorded. This file is the whole action: its
//! catalog entry, its discovery, and its one call with its inverse.
//!
//! AWS behaviour relied on (CloudTrail API reference):
//! - `StartLogging` "must be called from the Region in which the trail was
//!   created" and "cannot be called on the shadow trails"; elsewhere it
//!   fails with `InvalidHomeRegionException`. Each trail is started in its
//!   `HomeRegion`.
//! - `DescribeTrails` with `includeShadowTrails` (the default) also returns,
//!   in each region, the trails replicated into it: a trail logging all
//!   regions is found from any selected region, wherever it was created.
//!   An organization trail seen from a member account is such a shadow,
//!   owned by the management account: only that account can start it.
//! - `GetTrailStatus` answers `IsLogging`, the state this action checks,
//!   verifies and holds, and `LatestDeliveryError`: a trail can log into a
//!   bucket it can no longer write. For another account's trail it wants
//!   the full ARN, which is what this file always passes.

pub mod selectors;

use std::collections::BTreeMap;

use futures_util::{StreamExt, stream};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::actions::call::{ArnOf, Call, Inverse, Inverting};
use crate::actions::regions::{target_in, unreadable_region};
use crate::actions::{
    Action, ActionInfo, BoundStep, Ctx, Disposition, Planned, Reversibility, Runs, Sink,
};
use crate::aws::AwsError;
use crate::targets::{Resource, Scope, Target};

/// `with:` of `cloudtrail.ensure_logging`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnsureLoggingParams {
    /// Trail names or ARNs. Empty: every trail of the account that a
    /// selected region lists (its own and those logging all regions).
    #[serde(default)]
    pub trails: Vec<String>,
    /// Also make each trail of the account log every management event, read
    /// and write, adding a selector when its own leave some out (default
    /// true; `false` leaves selectors as they are).
    #[serde(default = "yes")]
    pub management_events: bool,
}

impl Default for EnsureLoggingParams {
    fn default() -> Self {
        EnsureLoggingParams {
            trails: Vec::new(),
            management_events: true,
        }
    }
}

fn yes() -> bool {
    true
}

pub struct EnsureLogging;

impl Action for EnsureLogging {
    const INFO: ActionInfo = ActionInfo {
        id: "cloudtrail.ensure_logging",
        summary: "Start logging on every trail an attacker stopped, and make each log every management event again (in the trail's home region).",
        targets: &[],
        params: &[
            (
                "trails",
                "trail names or ARNs (default: every trail the selected regions list)",
            ),
            (
                "management_events",
                "add a selector for every management event where a trail's own leave some out (default true)",
            ),
        ],
        calls: &["cloudtrail:StartLogging", "cloudtrail:PutEventSelectors"],
        reversibility: Reversibility::Reversible(
            "kept on: rollback never stops a trail nor narrows its selectors (by hand if it was meant to be off)",
        ),
        notes: &[
            "What happened while the trail was stopped or narrowed is not recorded anywhere: starting it again does not fill the gap.",
            "Narrowed selectors get one more selector that takes every management event; the trail's own (its data events) stay, so check what the attacker changed (GetEventSelectors).",
            "An organization trail is started from the management account; a member account only sees its shadow.",
            "A trail logging all regions is started in the region it was created in, even one outside `regions:` (a region-deny SCP there refuses the call).",
            "Run it right after the freeze: --hold restarts a trail the attacker stops again.",
        ],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = EnsureLoggingParams;

    fn check(p: &EnsureLoggingParams) -> Result<(), String> {
        // Trail names are 3 to 128 characters, with no spaces (CreateTrail,
        // `Name`).
        let bad = |t: &&String| t.len() < 3 || t.chars().any(char::is_whitespace);
        match p.trails.iter().find(bad) {
            Some(t) => Err(format!("`{t}` is not a trail name or ARN")),
            None => Ok(()),
        }
    }

    fn names_subjects(p: &EnsureLoggingParams) -> bool {
        !p.trails.is_empty()
    }

    async fn discover(
        ctx: &Ctx,
        _step: &BoundStep,
        p: &EnsureLoggingParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        let listed: Vec<(String, Result<Vec<Trail>, AwsError>)> = stream::iter(ctx.regions.clone())
            .map(|region| async move {
                let trails = list_trails(ctx, &region).await;
                (region, trails)
            })
            .buffer_unordered(ctx.concurrency.max(1))
            .collect()
            .await;
        let mut trails: BTreeMap<String, Trail> = BTreeMap::new();
        let mut unread = Vec::new();
        for (region, found) in listed {
            match found {
                Ok(found) => {
                    for t in found {
                        trails.entry(t.arn.clone()).or_insert(t);
                    }
                }
                Err(error) => {
                    sink.emit(unreadable_region(ctx, &region, error));
                    unread.push(region);
                }
            }
        }
        let named = |t: &Trail| p.trails.iter().any(|n| *n == t.name || *n == t.arn);
        let mut notes = Vec::new();
        let selected: Vec<Trail> = trails
            .values()
            .filter(|t| p.trails.is_empty() || named(t))
            .cloned()
            .collect();
        // A name no region listed is missing only if every region was read.
        if unread.is_empty() {
            for n in p
                .trails
                .iter()
                .filter(|n| !trails.values().any(|t| *n == &t.name || *n == &t.arn))
            {
                sink.emit(Planned {
                    target: Target {
                        scope: Scope {
                            account: ctx.identity.account.clone(),
                            region: None,
                        },
                        resource: Resource::Named {
                            kind: "trail".into(),
                            id: n.clone(),
                        },
                    },
                    disposition: Disposition::Missing {
                        reason: format!(
                            "no trail {n} in account {} seen from {}",
                            ctx.identity.account,
                            ctx.regions.join(", ")
                        ),
                    },
                });
            }
        }
        if trails.is_empty() && unread.is_empty() {
            notes.push(format!(
                "No trail in {}: nothing records this account's API calls there, and this action creates none.",
                ctx.regions.join(", ")
            ));
        }
        stream::iter(selected)
            .map(|t| async move {
                // Another account's trail (an organization trail, seen from a
                // member) is read by its ARN, but only its owner, or the
                // organization's delegated CloudTrail administrator, can start it.
                let owner = (t.account != ctx.identity.account).then_some(&t.account);
                let status = status(ctx, &t).await;
                let failing = match &status {
                    Ok((true, Some(error))) => Some(format!(
                        "Trail {} logs, but its last delivery failed ({error}): check its bucket and the bucket's policy.",
                        t.arn
                    )),
                    _ => None,
                };
                let disposition = match (status.map(|(logging, _)| logging), owner) {
                    (Ok(true), None) => Disposition::Unchanged {
                        reason: "logging".into(),
                    },
                    (Ok(true), Some(owner)) => Disposition::Unchanged {
                        reason: format!("logging (an organization trail of account {owner})"),
                    },
                    (Ok(false), Some(owner)) => Disposition::OutOfReach {
                        reason: format!(
                            "an organization trail of account {owner}, not logging: start it from that account (or the organization's delegated CloudTrail administrator)"
                        ),
                    },
                    (Ok(false), None) => Disposition::Change {
                        op: super::Op::StartLogging(StartLogging {
                            region: t.home_region.clone(),
                            trail_arn: t.arn.clone(),
                        }),
                    },
                    (Err(error), _) => Disposition::Unreadable { error },
                };
                let mut planned = vec![Planned {
                    target: target_in(
                        ctx,
                        &t.home_region,
                        Resource::Named {
                            kind: "trail".into(),
                            id: t.name.clone(),
                        },
                    ),
                    disposition,
                }];
                // Another account's trail has its selectors set there.
                if p.management_events && owner.is_none() {
                    planned.push(plan_selectors(ctx, &t).await);
                }
                (planned, failing)
            })
            .buffer_unordered(ctx.concurrency.max(1))
            .for_each(|(planned, failing)| {
                sink.emit_all(planned);
                notes.extend(failing);
                std::future::ready(())
            })
            .await;
        Ok(notes)
    }
}

/// Whether the trail logs every management event, and the call when not.
async fn plan_selectors(ctx: &Ctx, t: &Trail) -> Planned {
    let disposition = match selectors::read(ctx, &t.home_region, &t.arn).await {
        Ok(s) if s.log_management() => Disposition::Unchanged {
            reason: "logs every management event".into(),
        },
        Ok(_) => Disposition::Change {
            op: super::Op::LogManagementEvents(selectors::LogManagementEvents {
                region: t.home_region.clone(),
                trail_arn: t.arn.clone(),
            }),
        },
        Err(error) => Disposition::Unreadable { error },
    };
    Planned {
        target: target_in(
            ctx,
            &t.home_region,
            Resource::Named {
                kind: "trail event selectors".into(),
                id: t.name.clone(),
            },
        ),
        disposition,
    }
}

/// A trail as a region lists it.
#[derive(Debug, Clone)]
struct Trail {
    name: String,
    arn: String,
    home_region: String,
    /// The account in the trail's ARN: its owner.
    account: String,
}

/// The trails `region` lists, shadows of trails logging all regions included.
async fn list_trails(ctx: &Ctx, region: &str) -> Result<Vec<Trail>, AwsError> {
    let ct = ctx.clients.cloudtrail(region);
    let out = ctx
        .call_in(region, "cloudtrail:DescribeTrails", || {
            ct.describe_trails().include_shadow_trails(true).send()
        })
        .await?;
    Ok(out
        .trail_list()
        .iter()
        .filter_map(|t| {
            let arn = t.trail_arn()?.to_string();
            // arn:partition:cloudtrail:region:account:trail/name
            let account = arn.split(':').nth(4)?.to_string();
            Some(Trail {
                name: t.name().unwrap_or_default().to_string(),
                home_region: t.home_region().unwrap_or(region).to_string(),
                arn,
                account,
            })
        })
        .collect())
}

/// Whether the trail is logging now, and its last delivery error, asked in
/// its home region.
async fn status(ctx: &Ctx, t: &Trail) -> Result<(bool, Option<String>), AwsError> {
    let ct = ctx.clients.cloudtrail(&t.home_region);
    let status = ctx
        .call_in(&t.home_region, "cloudtrail:GetTrailStatus", || {
            ct.get_trail_status().name(&t.arn).send()
        })
        .await?;
    let error = status
        .latest_delivery_error()
        .filter(|e| !e.is_empty())
        .map(str::to_string);
    Ok((status.is_logging() == Some(true), error))
}

/// `StartLogging` on one trail, in its home region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartLogging {
    /// The trail's home region: the only one that accepts the call.
    pub region: String,
    pub trail_arn: String,
}

impl Call for StartLogging {
    fn describe(&self) -> String {
        let Self { region, trail_arn } = self;
        format!("cloudtrail:StartLogging Name={trail_arn} (in {region})")
    }

    fn drift(&self) -> String {
        "is not logging".into()
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![("cloudtrail:StartLogging", self.trail_arn.clone())]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self { region, trail_arn } = self;
        let ct = ctx.clients.cloudtrail(region);
        // It sets a state, so a retry after a lost answer leaves the trail
        // as the first call did.
        ctx.call_in(region, "cloudtrail:StartLogging", || {
            ct.start_logging().name(trail_arn).send()
        })
        .await
        .map(|_| None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Kept {
            why: format!(
                "trail {} stays logging: stopping it would repeat the attacker's move (cloudtrail:StopLogging by hand if it was meant to be off)",
                self.trail_arn
            ),
        }
    }
}
