//! Moving accounts into a quarantine OU, and reading where they were.

use super::*;
use crate::spec::MoveAccountsParams;

/// `MoveAccount`; an account already in `to` counts as moved (a rerun). A
/// retry after a lost answer would name a source parent the account has
/// left, so any failure is checked against where the account is now.
pub async fn move_account(ctx: &Ctx, account: &str, from: &str, to: &str) -> Result<(), AwsError> {
    let org = ctx.clients.org();
    let mut last = None;
    for _ in 0..ctx.retry.transient_attempts {
        let r = ctx
            .call_once(None, "organizations:MoveAccount", || {
                org.move_account()
                    .account_id(account)
                    .source_parent_id(from)
                    .destination_parent_id(to)
                    .send()
            })
            .await
            .map(|_| ());
        let e = match aws::goal_if(r, &["DuplicateAccountException"]) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match parent_of(ctx, account).await {
            Ok(now) if now == to => return Ok(()),
            Ok(now) if now == from && e.kind == aws::ErrorKind::Transient => last = Some(e),
            _ => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| local("organizations:MoveAccount", "not attempted".into())))
}

/// Decides for each account at once (up to the run's concurrency) and hands
/// each decision to `sink` as it is made, the account itself the target.
pub(super) async fn each_account<F, Fut>(ctx: &Ctx, accounts: &[String], decide: F, sink: &Sink)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Disposition>,
{
    let planned = |account: String| {
        let decided = decide(account.clone());
        async move {
            Planned {
                disposition: decided.await,
                target: Target {
                    scope: Scope {
                        account: account.clone(),
                        region: None,
                    },
                    resource: Resource::Account { id: account },
                },
            }
        }
    };
    let mut decided = futures_util::stream::iter(accounts.iter().cloned())
        .map(planned)
        .buffer_unordered(ctx.concurrency.max(1));
    while let Some(p) = decided.next().await {
        sink.emit(p);
    }
}

/// `org.move_accounts`: each selected account not yet in the quarantine OU
/// is moved there, its current parent recorded for rollback.
pub async fn discover_moves(
    ctx: &Ctx,
    step: &BoundStep,
    p: &MoveAccountsParams,
    sink: &Sink,
) -> Result<Vec<String>, AwsError> {
    let accounts = ctx.fleet.accounts(step.index).unwrap_or_default();
    let management = ctx.fleet.management.clone().unwrap_or_default();
    let management = &management;
    let decide = |account: String| async move {
        if account == ctx.identity.account {
            Disposition::Skip {
                reason: SkipReason::Executor,
            }
        } else if account == *management {
            Disposition::Unchanged {
                reason: "the management account cannot be moved into an OU".into(),
            }
        } else {
            match parent_of(ctx, &account).await {
                Err(error) => Disposition::Unreadable { error },
                Ok(parent) if parent == p.to => Disposition::Unchanged {
                    reason: format!("already in {}", p.to),
                },
                Ok(parent) => Disposition::Change {
                    op: Op::MoveAccount(MoveAccount {
                        account,
                        from: parent,
                        to: p.to.clone(),
                    }),
                },
            }
        }
    };
    each_account(ctx, accounts, decide, sink).await;
    Ok(vec![format!(
        "The SCPs attached to {} now bind the moved accounts; those on their old parents no longer do.",
        p.to
    )])
}
