//! Moving an account into a quarantine OU, and back to where it was.

use super::*;
use crate::actions::call::{ArnOf, Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo};

/// `from` is where the account was: rollback moves it back there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveAccount {
    pub account: String,
    pub from: String,
    pub to: String,
}

impl Call for MoveAccount {
    fn describe(&self) -> String {
        let Self { account, from, to } = self;
        format!(
            "organizations:MoveAccount AccountId={account} SourceParentId={from} DestinationParentId={to}"
        )
    }

    fn drift(&self) -> String {
        let Self { from, to, .. } = self;
        format!("is in {from}, not in {to}")
    }

    fn management_call(&self) -> bool {
        true
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![("organizations:MoveAccount", "*".to_string())]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self { account, from, to } = self;
        move_account(ctx, account, from, to).await.map(|()| None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        let undo = Inverse::Undo;
        let Self { account, from, to } = self;
        undo(Undo::MoveAccount(MoveBack {
            account: account.clone(),
            from: to.clone(),
            to: from.clone(),
        }))
    }
}

/// Move the account back from `from` (the quarantine OU) to `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveBack {
    pub account: String,
    pub from: String,
    pub to: String,
}

impl Revert for MoveBack {
    fn describe(&self) -> String {
        let Self { account, from, to } = self;
        format!(
            "organizations:MoveAccount AccountId={account} SourceParentId={from} DestinationParentId={to}"
        )
    }

    fn management_call(&self) -> bool {
        true
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let Self { account, from, to } = self;
        let now = crate::actions::org::parent_of(ctx, account).await?;
        Ok(if now == *to {
            Check::Done(format!("the account is back in {to}"))
        } else if now == *from {
            Check::Ready
        } else {
            Check::Conflict(format!("the account was moved to {now} since the run"))
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let Self { account, from, to } = self;
        crate::actions::org::move_account(ctx, account, from, to).await
    }
}
