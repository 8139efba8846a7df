//! Discovery of resources that live in regions, shared by the actions that
//! read them region by region: the region is the unit that fails alone, and
//! a name the playbook gave is missing only when every region was read.

use std::collections::BTreeSet;
use std::future::Future;

use futures_util::{StreamExt, stream};

use super::{Ctx, Disposition, Planned, Sink};
use crate::aws::AwsError;
use crate::targets::{Resource, Scope, Target};

/// A target in `region` of the account `ctx` acts in.
pub fn target_in(ctx: &Ctx, region: &str, resource: Resource) -> Target {
    Target {
        scope: Scope {
            account: ctx.identity.account.clone(),
            region: Some(region.to_string()),
        },
        resource,
    }
}

/// A region whose listing failed: one failed item in the step, so the
/// step reports it and the other regions' targets go ahead.
pub fn unreadable_region(ctx: &Ctx, region: &str, error: AwsError) -> Planned {
    Planned {
        target: target_in(ctx, region, Resource::Region {}),
        disposition: Disposition::Unreadable { error },
    }
}

/// Runs `plan` in every selected region at once; each returns which of
/// `named` it found there. A region that cannot be read fails alone. A
/// name no region found is missing, but only if every region was read (an
/// unread one may hold it), and it never stands for anything else.
pub async fn each_region<F, Fut>(ctx: &Ctx, sink: &Sink, kind: &str, named: &[String], plan: F)
where
    F: Fn(String) -> Fut + Sync,
    Fut: Future<Output = Result<BTreeSet<String>, AwsError>> + Send,
{
    let plan = &plan;
    let found: Vec<(String, Result<BTreeSet<String>, AwsError>)> =
        stream::iter(ctx.regions.clone())
            .map(|region| async move { (region.clone(), plan(region).await) })
            .buffer_unordered(ctx.concurrency.max(1))
            .collect()
            .await;
    let mut seen = BTreeSet::new();
    let mut unread = false;
    for (region, found) in found {
        match found {
            Ok(names) => seen.extend(names),
            Err(error) => {
                unread = true;
                sink.emit(unreadable_region(ctx, &region, error));
            }
        }
    }
    for name in named.iter().filter(|n| !unread && !seen.contains(*n)) {
        sink.emit(Planned {
            target: Target {
                scope: Scope {
                    account: ctx.identity.account.clone(),
                    region: None,
                },
                resource: Resource::Named {
                    kind: kind.to_string(),
                    id: name.clone(),
                },
            },
            disposition: Disposition::Missing {
                reason: format!(
                    "no {kind} {name} in account {} in {}",
                    ctx.identity.account,
                    ctx.regions.join(", ")
                ),
            },
        });
    }
}
